"""Restart to trading again with 20 open trades (issue 8 target: under 5 s).

20 trades are opened across the three strategies through the production executor
(tests/recovery/seed.py: 7 range trades registered with the range monitor's book, 7
micro-scalp and 6 order-flow trades; wide stops so they stay open), then ``bot.py run`` is
started as a subprocess on that runtime folder (paper mode on the simulated terminal, every
strategy enabled) and timed from the process start until health.json shows it trading again:
status running, the reconciler's start-up pass done, the range monitor recovered, every
strategy monitor stepped at least once (exits managed, entries checked) and the trading
state ACTIVE. The bot is then stopped cleanly and started again: ``REPEATS`` restarts.

Figures (wall seconds, median of the restarts): ``restart_to_trading_s`` (the target),
``restart_to_health_running_s`` (imports, config, broker connection, start-up reconciliation,
range recovery and the first health write), ``restart_open_trades`` (what the bot found open),
``restart_reconcile_ms`` (the reconciler's last pass when trading resumed, as health.json
reports it: the start-up pass or the first periodic one). health.json is written
every 0.5 s (the smallest interval the config allows), so the figures carry up to 0.5 s of
reporting lag (the bot may be trading that much earlier).
"""
from __future__ import annotations

import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.recovery import botproc as bp  # noqa: E402
from tests.recovery.seed import RangeSeed, TradeSeed, seed_range_trades, seed_trades  # noqa: E402

REPEATS = 3
OPEN_TRADES = 20
SEED_AT = datetime(2026, 1, 5, 12, 1, tzinfo=timezone.utc)
MONITORS = ("micro-scalp", "range-scalp", "order-flow")
CONFIG = {
    "bot.json": {"sim": {"speed": 60, "start": None},
                 "runtime": {"health_interval_seconds": 0.5},
                 "risk": {"max_open_total": 30, "max_open_per_symbol": 10, "max_open_per_strategy": 10,
                          "max_trades_per_hour": 40, "max_trades_per_day": 100}},
    # range trades in wide ranges, invalidated only by candles outside them (held for the run)
    "range_scalp.json": {"defaults": {"invalidation": {"signals_required": 1, "vwap_momentum_atr": 1.0,
                                                       "bb_width_expansion_pct": 1000, "require_m15_bos": False}}},
}
WIDE = {"XAUUSD": (30.0, 1950.0, 2100.0, 1.5), "EURUSD": (0.01, 1.10, 1.16, 0.0004),
        "BTCUSD": (1500.0, 40000.0, 45000.0, 60.0)}


def _seed(config_dir: Path, runtime: Path) -> int:
    symbols = list(WIDE)
    ranges = [RangeSeed(symbols[i % 3], ("buy", "sell")[i % 2], WIDE[symbols[i % 3]][0], WIDE[symbols[i % 3]][0],
                        WIDE[symbols[i % 3]][1], WIDE[symbols[i % 3]][2], WIDE[symbols[i % 3]][3]) for i in range(7)]
    seeded = seed_range_trades(config_dir, runtime, SEED_AT, ranges)
    others = [TradeSeed(symbols[i % 3], ("sell", "buy")[i % 2], "micro_scalp" if i < 7 else "order_flow",
                        WIDE[symbols[i % 3]][0], WIDE[symbols[i % 3]][0],
                        {"atr": WIDE[symbols[i % 3]][3]} if i < 7 else {"entry_delta": 5.0 if i % 2 else -5.0,
                                                                         "flow_source": "tick_proxy"})
              for i in range(OPEN_TRADES - len(ranges))]
    seeded += seed_trades(config_dir, runtime, None, others)
    return len(seeded)


def _trading(runtime: Path, pid: int) -> bool:
    h = bp.health(runtime)
    if h.get("pid") != pid or h.get("status") != "running":
        return False
    threads = h.get("threads", {})
    reconciled = (h.get("reconciler") or {}).get("last_run") is not None
    recovered = ((threads.get("range-scalp") or {}).get("detail") or {}).get("recovered") is True
    stepped = all((threads.get(name) or {}).get("steps", 0) >= 1 for name in MONITORS)
    active = (h.get("trading") or {}).get("state") == "ACTIVE"
    return reconciled and recovered and stepped and active


def _one_restart(config_dir: Path, runtime: Path, label: str) -> dict[str, float]:
    bot = bp.BotProcess(config_dir, runtime, label=label)
    started = bot.started
    running_at = trading_at = None
    try:
        deadline = started + 60.0
        while time.monotonic() < deadline:
            if not bot.alive():
                raise RuntimeError(f"the bot exited early:\n{bot.output()[-2000:]}")
            now = time.monotonic()
            if running_at is None and bp.pid_running(runtime, bot.pid):
                running_at = now
            if _trading(runtime, bot.pid):
                trading_at = now
                break
            time.sleep(0.01)
        if trading_at is None:
            raise RuntimeError(f"not trading again within 60 s:\n{bot.output()[-2000:]}")
        h = bp.health(runtime)
        open_trades = sum(len(v) for v in ((h.get("positions") or {}).get("registry") or {}).values())
        reconcile_ms = float((h.get("reconciler") or {}).get("last_duration_ms") or 0.0)
    finally:
        if bot.alive():
            bot.proc.send_signal(signal.SIGTERM)
        bot.wait(timeout=30)
    return {"to_trading": trading_at - started, "to_running": (running_at or trading_at) - started,
            "open_trades": float(open_trades), "reconcile_ms": reconcile_ms}


def run(repeats: int = REPEATS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="restart-bench-") as tmp:
        config_dir, runtime = bp.prepare_folders(Path(tmp), CONFIG)
        seeded = _seed(config_dir, runtime)
        if seeded != OPEN_TRADES:
            raise RuntimeError(f"seeded {seeded} trades, not {OPEN_TRADES}")
        runs = [_one_restart(config_dir, runtime, f"restart{i + 1}") for i in range(repeats)]
    median = lambda key: round(statistics.median(r[key] for r in runs), 3)  # noqa: E731
    return {"restart_to_trading_s": median("to_trading"),
            "restart_to_trading_max_s": round(max(r["to_trading"] for r in runs), 3),
            "restart_to_health_running_s": median("to_running"),
            "restart_open_trades": runs[0]["open_trades"],
            "restart_reconcile_ms": median("reconcile_ms")}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:32} {value}")
