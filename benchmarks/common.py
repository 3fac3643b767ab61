"""What several benchmarks share: the percentile they report, a timing proxy around the broker,
and the trading stack over the simulated terminal that the executor and reconciler benches run."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.loader import ConfigSnapshot
from config.secrets import Secrets
from config.watcher import ConfigHolder
from execution.mt5 import Mt5Broker
from execution.risk import RiskManager
from execution.simterminal import SimTerminal
from monitors.clock import FakeClock
from state.journal import Journal
from state.registry import TradeRegistry
from state.store import StateStore
from tests.execution.harness import load_test_config

# Risk limits wide enough that hundreds of benchmark orders are never refused.
WIDE_RISK = {"max_open_total": 200, "max_open_per_symbol": 50, "max_open_per_strategy": 100,
             "max_trades_per_hour": 1000, "max_trades_per_day": 10000}


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile (``pct`` in 0..100) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))]


class TimedBroker:
    """Forwards every call and adds up the seconds spent inside the broker."""

    def __init__(self, broker: Mt5Broker) -> None:
        self._broker = broker
        self.inside = 0.0
        self.before_send = 0.0  # broker seconds spent before the latest market_order call

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._broker, name)
        if not callable(target):
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            if name == "market_order":
                self.before_send = self.inside
            started = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.inside += time.perf_counter() - started
        return timed


@dataclass
class SimStack:
    clock: FakeClock
    snapshot: ConfigSnapshot
    holder: ConfigHolder
    terminal: SimTerminal
    broker: Mt5Broker
    timed: TimedBroker
    store: StateStore
    registry: TradeRegistry
    risk: RiskManager
    journal: Journal


def sim_stack(folder: Path) -> SimStack:
    """Config (``WIDE_RISK``), simulated terminal, MT5 adapter behind a ``TimedBroker``, state
    store, registry, risk manager and journal in ``folder``: what an executor needs."""
    clock = FakeClock()
    snapshot = load_test_config(folder, {"risk": WIDE_RISK})
    holder = ConfigHolder(snapshot)
    terminal = SimTerminal(clock, None, starting_balance=1e9)
    broker = Mt5Broker(terminal, Secrets(), snapshot.bot, clock, sleep=clock.advance)
    broker.connect()
    store = StateStore(folder / "state")
    registry = TradeRegistry(store)
    risk = RiskManager(lambda: holder.current.bot.risk, registry, store)
    journal = Journal(folder / "journal.jsonl", now=clock.now)
    return SimStack(clock, snapshot, holder, terminal, broker, TimedBroker(broker), store, registry, risk, journal)
