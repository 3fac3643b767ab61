"""Reconciliation cost with 50 open positions and 1,000 deals in the history window.

The real reconciler runs over the MT5 adapter over the simulated terminal; a timing proxy around
the adapter adds up the seconds spent inside broker calls, which are subtracted (the target is
the reconciler's own work: indexing the deals, comparing, deciding). Figures:

- ``reconcile_50pos_1000deals_ms``: a pass where registry and broker agree (the every-10-s case),
  median of 30 passes; ``..._p95`` its 95th percentile;
- ``reconcile_recovery_50pos_1000deals_ms``: the first pass after a "crash" that lost the whole
  registry: 50 positions adopted and 475 round trips recorded from the deal history (this one
  includes the registry's persisted writes, which are the reconciler's work).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import percentile, sim_stack
from execution.breaker import BreakerBroker, CircuitBreaker
from execution.executor import Executor, magic_for
from execution.reconciler import Reconciler
from execution.simterminal import SimTerminal
from state.registry import STRATEGIES

POSITIONS = 50
ROUND_TRIPS = 475  # 50 opening deals + 2 x 475 = 1,000 deals


def _send(terminal: SimTerminal, symbol: str, buy: bool, volume: float, magic: int, comment: str,
          position: int | None = None) -> int:
    tick = terminal.symbol_info_tick(symbol)
    request = {"action": terminal.TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume,
               "type": terminal.ORDER_TYPE_BUY if buy else terminal.ORDER_TYPE_SELL,
               "price": tick.ask if buy else tick.bid, "deviation": 100, "magic": magic, "comment": comment,
               "type_filling": terminal.ORDER_FILLING_IOC}
    if position is None:
        request["sl"] = round((tick.bid - 30) if buy else (tick.ask + 30), 2)
        request["tp"] = round((tick.ask + 30) if buy else (tick.bid - 30), 2)
    else:
        request["position"] = position
    result = terminal.order_send(request)
    if result is None or result.retcode != terminal.TRADE_RETCODE_DONE:
        raise RuntimeError(f"sim order failed: {result}")
    return int(result.order)


def run(passes: int = 30) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        stack = sim_stack(Path(folder))
        clock, broker, terminal, timed = stack.clock, stack.broker, stack.terminal, stack.timed
        holder, snapshot, registry, journal = stack.holder, stack.snapshot, stack.registry, stack.journal
        terminal.initialize()
        reliability = lambda: holder.current.bot.reliability  # noqa: E731
        wrapped = BreakerBroker(timed, CircuitBreaker("broker", clock, reliability))
        executor = Executor(wrapped, registry, stack.risk, journal, lambda: holder.current,  # type: ignore[arg-type]
                            clock)
        reconciler = Reconciler(wrapped, registry, journal, lambda: holder.current, clock, executor=executor)

        magics = [magic_for(snapshot, s) for s in STRATEGIES]
        for i in range(ROUND_TRIPS):  # history: opened and closed while "away"
            magic = magics[i % 3]
            ticket = _send(terminal, "XAUUSD", i % 2 == 0, 0.01, magic, f"bench-rt-{i}")
            clock.advance(1)
            _send(terminal, "XAUUSD", i % 2 != 0, 0.01, magic, f"bench-rt-{i}-x", position=ticket)
            clock.advance(1)
        for i in range(POSITIONS):
            _send(terminal, "XAUUSD", i % 2 == 0, 0.01, magics[i % 3], f"bench-open-{i}")
            clock.advance(1)
        deals = len(broker.deals(clock.now().replace(hour=0, minute=0), clock.now()))
        assert deals == 1000 and len(broker.positions()) == POSITIONS, (deals, len(broker.positions()))

        timed.inside = 0.0
        started = time.perf_counter()
        first = reconciler.run("startup")
        recovery_ms = (time.perf_counter() - started - timed.inside) * 1000
        assert len(first.adopted) == POSITIONS and len(first.history_recorded) == ROUND_TRIPS, first.summary()

        samples = []
        for _ in range(passes):
            timed.inside = 0.0
            started = time.perf_counter()
            report = reconciler.run("periodic")
            samples.append((time.perf_counter() - started - timed.inside) * 1000)
            assert report.ok and report.found == 0 and report.deals == 1000, report.summary()
            clock.advance(10)
        journal.close()
    return {"reconcile_50pos_1000deals_ms": round(statistics.median(samples), 3),
            "reconcile_50pos_1000deals_ms_p95": round(percentile(samples, 95), 3),
            "reconcile_recovery_50pos_1000deals_ms": round(recovery_ms, 1)}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:40} {value}")
