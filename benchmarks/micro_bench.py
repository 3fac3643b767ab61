"""Micro-scalp engine latency: one ``evaluate`` per symbol per step with 200 M1 bars.

    python benchmarks/micro_bench.py

- ``micro_engine_ms_p50`` / ``micro_engine_ms_p99``: wall time of one evaluation (target < 2 ms),
  over consecutive 200-bar windows of the real XAUUSD and EURUSD M1 bars in data/bars, with the
  shipped per-symbol config, the regime state threaded through as the monitor does, a quote
  derived from the last close, and spread statistics present (so every layer can run).
- ``micro_engine_cpu_ms_p99``: the same p99 in thread CPU time: on a loaded machine the wall-clock
  p99 mostly measures preemption by other processes, the CPU figure the engine itself.
- ``micro_step_10sym_ms_p50`` / ``micro_step_10sym_ms_p99`` (target < 50 ms): one
  ``MicroScalpMonitor.step`` over 10 symbols on the real stack (MT5 adapter over the simulated
  terminal, risk manager, registry, journal, executor) at the 5 s cadence from Monday 12:00 UTC.
  The simulated terminal has 3 instruments, so the 10 symbols are XAUUSD, EURUSD, BTCUSD plus 7
  aliases (``XAUUSD_2``...) that bot.json maps to the same instruments (broker_symbol): each alias
  is a full symbol for the monitor (own gates, bars, engine call, spread tracker, trades). The bar
  feed's cache is refreshed between steps, outside the timing, as its own thread does live; the
  shipped config is used (full-session VWAP: up to 1500 bars per engine call), so steps include
  exits, orders and fills when they happen. ``micro_step_10sym_cpu_ms_p99`` is the CPU-time p99.
"""
from __future__ import annotations

import gc
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config.micro_scalp_model import MicroScalpConfig  # noqa: E402
from engines.micro_scalp import RegimeState, evaluate  # noqa: E402
from engines.micro_scalp_features import Bars  # noqa: E402
from engines.spread import SpreadStats  # noqa: E402
from feeds.readers import read_bars  # noqa: E402

WINDOW = 200
FILES = {  # symbol: (file name, spread in price)
    "XAUUSD": ("XAUUSD_M1_2023-04-16_2023-05-01.csv", 0.20),
    "EURUSD": ("EURUSD_M1_2015-02-01_2015-02-13_EST_histdata.csv", 0.00010),
}
BAR_DIRS = (ROOT / "data" / "bars", ROOT.parent / "shared" / "data" / "bars")


def _path(name: str) -> Path:
    for folder in BAR_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} not found in {[str(d) for d in BAR_DIRS]}")


def bench_engine(steps_per_symbol: int = 3000) -> dict[str, float]:
    config = MicroScalpConfig.model_validate(json.loads((ROOT / "config" / "micro_scalp.json").read_text()))
    timings: list[float] = []
    cpu: list[float] = []
    per_symbol: dict[str, float] = {}
    ideas = 0
    for symbol, (name, spread) in FILES.items():
        params = config.for_symbol(symbol)
        bars = Bars.from_frame(read_bars(_path(name)))
        stats = SpreadStats(spread, spread, spread, 100)
        state = RegimeState()
        mine: list[float] = []
        last = min(len(bars), WINDOW + steps_per_symbol)
        windows = [Bars(*(a[end - WINDOW:end] for a in (bars.time_s, bars.open, bars.high, bars.low, bars.close,
                                                          bars.volume))) for end in range(WINDOW, last + 1)]
        gc.collect()
        for window in windows:
            close = float(window.close[-1])
            now = datetime.fromtimestamp(int(window.time_s[-1]) + 60, tz=timezone.utc)
            start, cpu_start = time.perf_counter(), time.thread_time()
            decision = evaluate(window, (close - spread / 2, close + spread / 2), stats, None, params, symbol,
                                now, state)
            mine.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - cpu_start)
            state = decision.regime_state
            ideas += decision.idea is not None
        per_symbol[f"micro_engine_ms_p50_{symbol}"] = float(np.percentile(mine, 50) * 1000)
        timings += mine
    assert ideas > 0  # the loop really exercised the full path
    ms = np.asarray(timings) * 1000
    cpu_ms = np.asarray(cpu) * 1000
    return {"micro_engine_ms_p50": float(np.percentile(ms, 50)), "micro_engine_ms_p99": float(np.percentile(ms, 99)),
            "micro_engine_cpu_ms_p99": float(np.percentile(cpu_ms, 99)),
            **per_symbol, "micro_engine_evaluations": float(len(ms))}


ALIASES = {"XAUUSD_2": "XAUUSD", "XAUUSD_3": "XAUUSD", "XAUUSD_4": "XAUUSD", "EURUSD_2": "EURUSD",
           "EURUSD_3": "EURUSD", "BTCUSD_2": "BTCUSD", "BTCUSD_3": "BTCUSD"}


def _ten_symbol_config(folder: Path) -> Path:
    """A copy of config/ whose bot.json and micro_scalp.json list the 3 symbols plus 7 aliases."""
    config_dir = folder / "config"
    config_dir.mkdir()
    for path in (ROOT / "config").glob("*.json"):
        (config_dir / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    bot = json.loads((config_dir / "bot.json").read_text())
    micro = json.loads((config_dir / "micro_scalp.json").read_text())
    for alias, real in ALIASES.items():
        bot["symbols"][alias] = {**bot["symbols"][real], "broker_symbol": real}
        micro["symbols"].append(alias)
        if real in micro["overrides"]:
            micro["overrides"][alias] = micro["overrides"][real]
    (config_dir / "bot.json").write_text(json.dumps(bot))
    (config_dir / "micro_scalp.json").write_text(json.dumps(micro))
    return config_dir


def bench_monitor_step(steps: int = 600) -> dict[str, float]:
    import logging
    import tempfile

    from config.loader import load_config
    from config.secrets import Secrets
    from config.watcher import ConfigHolder
    from execution.executor import Executor
    from execution.mt5 import Mt5Broker
    from execution.risk import RiskManager
    from execution.simterminal import make_test_terminal
    from feeds.bar_feed import BarFeed
    from monitors.clock import FakeClock
    from monitors.micro_scalp import MicroScalpMonitor
    from monitors.news_file import NewsFile
    from state.journal import Journal
    from state.registry import TradeRegistry
    from state.store import StateStore

    logging.disable(logging.WARNING)  # the adapter's and executor's INFO lines are not the subject
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            config_dir = _ten_symbol_config(folder)
            holder = ConfigHolder(load_config(config_dir))
            clock = FakeClock()
            terminal = make_test_terminal(folder, clock)
            broker = Mt5Broker(terminal, Secrets(), holder.current.bot, clock, sleep=clock.advance)
            broker.connect()
            store = StateStore(folder / "runtime" / "state")
            registry = TradeRegistry(store)
            risk = RiskManager(lambda: holder.current.bot.risk, registry, store)
            journal = Journal(folder / "runtime" / "journal.jsonl", now=clock.now)
            executor = Executor(broker, registry, risk, journal, lambda: holder.current, clock, sleep=clock.advance)
            symbols = holder.current.micro_scalp.active_symbols()
            assert len(symbols) == 10, symbols
            feed = BarFeed(broker, clock, lambda: [(s, "M1") for s in symbols], depth=1500)
            monitor = MicroScalpMonitor(holder, feed, broker, executor, registry,
                                        news=NewsFile(config_dir / "news.json"))
            wall: list[float] = []
            cpu: list[float] = []
            gc.collect()
            for _ in range(steps):
                clock.advance(5)
                feed.step(clock.now())  # the feed thread's job, not timed
                now = clock.now()
                start, cpu_start = time.perf_counter(), time.thread_time()
                monitor.step(now)
                wall.append(time.perf_counter() - start)
                cpu.append(time.thread_time() - cpu_start)
            opened = monitor.state.counters.get("opened", 0)
            engine_checks = monitor.state.counters.get("engine_checks", 0)
    finally:
        logging.disable(logging.NOTSET)
    ms = np.asarray(wall) * 1000
    return {"micro_step_10sym_ms_p50": float(np.percentile(ms, 50)),
            "micro_step_10sym_ms_p99": float(np.percentile(ms, 99)),
            "micro_step_10sym_cpu_ms_p99": float(np.percentile(np.asarray(cpu) * 1000, 99)),
            "micro_step_10sym_steps": float(steps), "micro_step_10sym_engine_calls": float(engine_checks),
            "micro_step_10sym_orders_opened": float(opened)}


def run() -> dict[str, float]:
    return {**bench_engine(), **bench_monitor_step()}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}")
