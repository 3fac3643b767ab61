"""Executor overhead from a TradeIdea to the ``order_send`` call (broker time excluded), and
bar-cache read latency. Runs the real executor over the MT5 adapter over the simulated
terminal; a timing proxy around the broker subtracts the time spent inside broker calls."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from config.secrets import Secrets
from config.watcher import ConfigHolder
from engines.types import TradeIdea
from execution.executor import Executor
from execution.mt5 import Mt5Broker
from execution.risk import RiskManager
from execution.simterminal import SimTerminal
from feeds.bar_feed import BarFeed
from monitors.clock import FakeClock
from state.journal import Journal
from state.registry import TradeRegistry
from state.store import StateStore
from tests.execution.harness import load_test_config


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


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run(samples: int = 300) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        clock = FakeClock()
        snapshot = load_test_config(tmp, {"risk": {"max_open_total": 200, "max_open_per_symbol": 50,
                                                   "max_open_per_strategy": 100, "max_trades_per_hour": 1000,
                                                   "max_trades_per_day": 10000}})
        holder = ConfigHolder(snapshot)
        terminal = SimTerminal(clock, None, starting_balance=1e9)
        broker = Mt5Broker(terminal, Secrets(), snapshot.bot, clock, sleep=clock.advance)
        broker.connect()
        timed = TimedBroker(broker)
        store = StateStore(tmp / "state")
        registry = TradeRegistry(store)
        risk = RiskManager(lambda: holder.current.bot.risk, registry, store)
        journal = Journal(tmp / "journal.jsonl", now=clock.now)
        executor = Executor(timed, registry, risk, journal, lambda: holder.current, clock)  # type: ignore[arg-type]
        overheads = []

        for _ in range(samples):
            quote = broker.quote("XAUUSD")
            idea = TradeIdea("XAUUSD", "buy", quote.ask, quote.ask - 5, quote.ask + 5, "micro_scalp")
            timed.inside = 0.0
            executor.latencies_ms.clear()
            executor.open(idea)
            # latencies_ms: idea -> just before market_order; subtract broker calls made before it
            before_send = executor.latencies_ms[0] / 1000.0 if executor.latencies_ms else None
            if before_send is None:
                continue
            overheads.append(max(0.0, before_send - timed.before_send) * 1000)
            for trade in registry.open_trades():
                registry.close(trade.ticket, trade.entry, clock.now(), 0.0, "bench")
            clock.advance(1)

        feed = BarFeed(broker, clock, lambda: [("XAUUSD", "M1")], depth=300, max_age_seconds=1e9)
        feed.step(clock.now())
        reads = []
        for _ in range(2000):
            started = time.perf_counter()
            feed.get("XAUUSD", "M1", 200)
            reads.append((time.perf_counter() - started) * 1000)
    return {"executor_overhead_ms_p50": round(statistics.median(overheads), 3),
            "executor_overhead_ms_p99": round(_percentile(overheads, 99), 3),
            "bar_cache_read_ms_p50": round(statistics.median(reads), 4),
            "bar_cache_read_ms_p99": round(_percentile(reads, 99), 4)}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:28} {value}")
