"""Range-scalp engine latency on the real XAUUSD and EURUSD M5 exports in data/bars.

    python benchmarks/range_bench.py          (or: python -m benchmarks --only range)

- ``range_engine_ms_p50`` / ``range_engine_ms_p99``: one full ``evaluate_entry`` per symbol per
  closed M5 bar (target < 10 ms): the M5 window arrives as the DataFrame a bar feed hands over
  (720 bars, UTC index), H1 is aggregated inside, the shipped per-symbol config, a quote from the
  last close plus a typical spread. Every gate, all five strategies and the scorer run (the
  engine computes all indicators before its first gate that needs them).
- ``range_engine_cpu_ms_p99``: the same p99 in thread CPU time (wall-clock p99 on a loaded
  machine mostly measures preemption).
- ``range_exit_pass_50_ms`` (p50) / ``range_exit_pass_50_ms_p99``: one exit-manager pass over 50
  open trades, 25 per symbol (target < 50 ms, broker time excluded): the market state built once
  per symbol with ``prepare_market``, then ``exit_action`` for every trade.
- ``range_monitor_idle_step_ms`` (p50): one ``RangeScalpMonitor.step`` between bars (no new closed
  M5 bar, no exit pass due) over the simulated terminal: what the 5 s loop costs most of the time.
- ``range_monitor_bar_step_ms`` (p50): one step when a new M5 bar closed, for XAUUSD and EURUSD
  (bars from a warm bar-feed cache, the quote, both engine evaluations, the state save).
- ``range_monitor_exit_plan_50_ms`` (p50): the monitor's exit-pass planning over 50 open range
  trades (25 per symbol): cached bars, one quote and symbol spec per symbol, ``prepare_market``
  and the rules; broker orders excluded (nothing to close or move in this set).
"""
from __future__ import annotations

import gc
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config.range_scalp_model import RangeScalpConfig  # noqa: E402
from engines.range_data import M5, to_bars  # noqa: E402
from engines.range_detection import detect_range  # noqa: E402
from engines.range_exits import RangeTrade, exit_action  # noqa: E402
from engines.range_scalp import evaluate_entry, prepare_market  # noqa: E402
from feeds.readers import read_bars  # noqa: E402

SERVER_UTC_OFFSET_HOURS = 3  # the MT5 exports are in broker server time, UTC+3
FILES = {  # symbol: (file name, spread in price)
    "XAUUSD": ("XAUUSD_M5_2026-04-24_2026-07-09_mt5.csv", 0.20),
    "EURUSD": ("EURUSD_M5_2026-05-13_2026-07-09_mt5.csv", 0.00008),
}
BAR_DIRS = (ROOT / "data" / "bars", ROOT.parent / "shared" / "data" / "bars")


def _path(name: str) -> Path:
    for folder in BAR_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} not found in {[str(d) for d in BAR_DIRS]}")


def _config() -> RangeScalpConfig:
    return RangeScalpConfig.model_validate(json.loads((ROOT / "config" / "range_scalp.json").read_text()))


def bench_entry(steps_per_symbol: int = 1500) -> dict[str, float]:
    config = _config()
    wall: list[float] = []
    cpu: list[float] = []
    for symbol, (name, spread) in FILES.items():
        frame = read_bars(_path(name), SERVER_UTC_OFFSET_HOURS, format="mt5")
        params = config.for_symbol(symbol)
        lookback = params.data.lookback_m5_bars
        stride = max(1, (len(frame) - lookback) // steps_per_symbol)
        for end in range(lookback, len(frame), stride):
            window = frame.iloc[end - lookback:end]
            close = float(window["close"].iloc[-1])
            now = window.index[-1].to_pydatetime() + timedelta(seconds=M5 + 2)
            gc.disable()
            t0, c0 = time.perf_counter(), time.thread_time()
            evaluate_entry(window, None, (close, close + spread), params, symbol, now)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            gc.enable()
    return {
        "range_engine_ms_p50": round(float(np.percentile(wall, 50)) * 1000, 3),
        "range_engine_ms_p99": round(float(np.percentile(wall, 99)) * 1000, 3),
        "range_engine_cpu_ms_p99": round(float(np.percentile(cpu, 99)) * 1000, 3),
    }


def bench_exits(passes: int = 200, trades_per_symbol: int = 25) -> dict[str, float]:
    config = _config()
    data = {}
    for symbol, (name, spread) in FILES.items():
        data[symbol] = (to_bars(read_bars(_path(name), SERVER_UTC_OFFSET_HOURS, format="mt5"), M5), spread)
    timings: list[float] = []
    for k in range(passes):
        inputs = []
        for symbol, (bars, spread) in data.items():
            params = config.for_symbol(symbol)
            lookback = params.data.lookback_m5_bars
            end = lookback + 200 + k * ((len(bars) - lookback - 200) // passes)
            window = bars.slice(end - lookback, end)
            close = float(window.close[-1])
            now = datetime.fromtimestamp(int(window.time[-1]) + M5 + 2, tz=timezone.utc)
            market = prepare_market(window, None, (close, close + spread), params, symbol, now)
            range_, _ = detect_range(market, params)
            if range_ is None:
                continue
            trades = []
            for i in range(trades_per_symbol):  # opened 5..125 min ago, both sides, 1 R = 0.8 ATRe
                side = "buy" if i % 2 else "sell"
                entry = float(window.close[-2 - i])
                risk = 0.8 * market.atr_eff
                sign = 1 if side == "buy" else -1
                trades.append(RangeTrade(symbol, side, entry, entry - sign * risk, entry + sign * 1.2 * risk,
                                         now - timedelta(minutes=5 * (i + 1)), range_, "vwap_reversion"))
            inputs.append((window, (close, close + spread), params, symbol, now, trades))
        gc.disable()
        t0 = time.perf_counter()
        for window, quote, params, symbol, now, trades in inputs:  # what one exit pass does
            market = prepare_market(window, None, quote, params, symbol, now)
            for trade in trades:
                exit_action(trade, market, params)
        timings.append(time.perf_counter() - t0)
        gc.enable()
    return {
        "range_exit_pass_50_ms": round(float(np.percentile(timings, 50)) * 1000, 3),
        "range_exit_pass_50_ms_p99": round(float(np.percentile(timings, 99)) * 1000, 3),
    }


def bench_monitor(bars: int = 60, plans: int = 100) -> dict[str, float]:
    """The monitor over the simulated terminal on a fake clock (see the module doc)."""
    import tempfile

    from engines.range_detection import RangeStructure, critical_gaps
    from feeds.bar_feed import BarFeed
    from monitors.clock import FakeClock
    from monitors.range_scalp import RangeScalpMonitor
    from monitors.range_scalp_exits import PassReport
    from tests.execution.harness import build_stack

    symbols = ("XAUUSD", "EURUSD")
    with tempfile.TemporaryDirectory() as folder:
        clock = FakeClock(datetime(2026, 1, 6, 3, 0, 1, tzinfo=timezone.utc))
        stack = build_stack(Path(folder), clock=clock)
        feed = BarFeed(stack.broker, clock, lambda: [(s, tf) for s in symbols for tf in ("M5", "H1")], depth=800)
        monitor = RangeScalpMonitor(stack.holder, feed, stack.broker, stack.executor, stack.registry, clock,
                                    journal=stack.journal)
        monitor.recover(clock.now())
        monitor.step(clock.now())  # the first exit pass and the first bars
        idle: list[float] = []
        bar: list[float] = []
        for _ in range(bars):
            for _ in range(59):  # 5 s ticks inside the bar
                clock.advance(5)
                t0 = time.perf_counter()
                monitor.step(clock.now())
                idle.append(time.perf_counter() - t0)
            clock.advance(5)  # the bar closes
            feed.step(clock.now())  # the bar feed thread refreshes its cache
            monitor._last_exit_pass = clock.now()  # time the entries alone
            t0 = time.perf_counter()
            monitor.step(clock.now())
            bar.append(time.perf_counter() - t0)
        now = clock.now()
        for symbol in symbols:  # 25 range trades per symbol in the book (no broker positions needed)
            price = stack.broker.quote(symbol).bid
            width = price * 0.004
            range_ = RangeStructure("session", price + width, price - width, price, width / 8,
                                    critical_gaps(price + width, price - width, 0.15), 2, 2, True)
            for i in range(25):
                side = "buy" if i % 2 else "sell"
                sign = 1 if side == "buy" else -1
                risk = width / 4
                monitor.book.register(RangeTrade(symbol, side, price, price - sign * risk, price + sign * risk,
                                                 now - timedelta(minutes=5 * (i + 1)), range_, "bb_fade",
                                                 ticket=len(monitor.book.tickets()) + 1), None, now)
        config = stack.holder.current.range_scalp
        timings: list[float] = []
        for _ in range(plans):
            t0 = time.perf_counter()
            monitor.exits.plan(lambda s: monitor.params(config, s), now, PassReport(at=""))
            timings.append(time.perf_counter() - t0)
        stack.journal.close()
    return {
        "range_monitor_idle_step_ms": round(float(np.percentile(idle, 50)) * 1000, 3),
        "range_monitor_bar_step_ms": round(float(np.percentile(bar, 50)) * 1000, 3),
        "range_monitor_exit_plan_50_ms": round(float(np.percentile(timings, 50)) * 1000, 3),
    }


def run() -> dict[str, float]:
    figures = bench_entry()
    figures.update(bench_exits())
    figures.update(bench_monitor())
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:28} {value}")
