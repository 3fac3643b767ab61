"""Executor overhead from a TradeIdea to the ``order_send`` call (broker time excluded), and
bar-cache read latency. Runs the real executor over the MT5 adapter over the simulated
terminal; a timing proxy around the broker subtracts the time spent inside broker calls."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import percentile, sim_stack
from engines.types import TradeIdea
from execution.executor import Executor
from feeds.bar_feed import BarFeed


def run(samples: int = 300) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        stack = sim_stack(Path(folder))
        clock, broker, timed, registry, holder = stack.clock, stack.broker, stack.timed, stack.registry, stack.holder
        executor = Executor(timed, registry, stack.risk, stack.journal, lambda: holder.current,  # type: ignore[arg-type]
                            clock)
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
            "executor_overhead_ms_p99": round(percentile(overheads, 99), 3),
            "bar_cache_read_ms_p50": round(statistics.median(reads), 4),
            "bar_cache_read_ms_p99": round(percentile(reads, 99), 4)}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:28} {value}")
