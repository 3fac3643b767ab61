"""The broker circuit breaker: open after 5 consecutive failures, probe after 60 s, close after 2
successes; while it is not closed the trading state is REDUCING and no entry is sent, and its
closing triggers a reconciliation."""
from __future__ import annotations

from pathlib import Path

import pytest

from config.reliability_model import ReliabilityConfig
from execution.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, is_link_failure
from execution.errors import (BrokerError, BrokerUnavailable, OrderOutcomeUnknown, OrderRejected,
                              TradingDisabled)
from execution.trading_state import ACTIVE, REDUCING
from monitors.clock import FakeClock
from tests.reliability.rig import build_rig


def breaker_on(clock: FakeClock, **config) -> tuple[CircuitBreaker, list]:
    events: list = []
    settings = ReliabilityConfig(**config)
    return CircuitBreaker("broker", clock, lambda: settings, events=lambda k, d: events.append((k, d))), events


def test_open_probe_close_cycle() -> None:
    clock = FakeClock()
    breaker, events = breaker_on(clock)
    transitions: list = []
    breaker.subscribe(lambda old, new, info: transitions.append((old, new)))
    for _ in range(4):
        breaker.record_failure("ipc")
    breaker.record_success()  # a success resets the count: failures must be consecutive
    for _ in range(4):
        breaker.record_failure("ipc")
    assert breaker.state == CLOSED and breaker.allows_entries()
    breaker.record_failure("ipc")
    assert breaker.state == OPEN and not breaker.allows_entries()
    assert events[-1][0] == "circuit_breaker_opened" and events[-1][1]["failures"] == 5
    assert events[-1][1]["retry_in_seconds"] == 60
    clock.advance(59)
    breaker.record_success()  # a success while OPEN does not count: the pause is not over
    assert breaker.state == OPEN
    clock.advance(1)
    assert breaker.state == HALF_OPEN and not breaker.allows_entries()
    breaker.record_failure("probe failed")  # a failed probe re-opens it for another 60 s
    assert breaker.state == OPEN
    clock.advance(60)
    breaker.record_success()
    assert breaker.state == HALF_OPEN
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allows_entries()
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN),
                           (HALF_OPEN, CLOSED)]
    assert [k for k, _ in events] == ["circuit_breaker_opened", "circuit_breaker_closed"]  # no news on a failed probe
    assert events[-1][1]["open_seconds"] == 120.0
    assert breaker.health()["times_opened"] == 1


def test_settled_means_a_success_would_change_nothing() -> None:
    clock = FakeClock()
    breaker, _ = breaker_on(clock)
    assert breaker.settled()
    breaker.record_failure("ipc")
    assert not breaker.settled() and breaker.state == CLOSED  # a success would reset the count
    breaker.record_success()
    assert breaker.settled()
    for _ in range(5):
        breaker.record_failure("ipc")
    clock.advance(60)
    assert breaker.state == HALF_OPEN and not breaker.settled()
    breaker.record_success()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.settled()


def test_thresholds_come_from_the_config_in_force() -> None:
    clock = FakeClock()
    breaker, _ = breaker_on(clock, breaker_failure_threshold=2, breaker_recovery_seconds=5,
                            breaker_close_after_successes=1)
    breaker.record_failure("a")
    breaker.record_failure("b")
    assert breaker.state == OPEN
    clock.advance(5)
    breaker.record_success()
    assert breaker.state == CLOSED


def test_what_counts_as_a_link_failure() -> None:
    assert is_link_failure(BrokerUnavailable(-10004, "no IPC"))
    assert is_link_failure(OrderOutcomeUnknown(-10005, "timeout", client_id="x"))
    assert is_link_failure(BrokerError(-2, "odd"))
    assert is_link_failure(OrderRejected(10004, "requotes without end", transient=True))
    assert not is_link_failure(OrderRejected(10019, "no money"))  # the broker answered
    assert not is_link_failure(TradingDisabled(10027, "off", "press Algo Trading"))


def test_an_open_breaker_sends_no_entry_but_lets_exits_through(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    trade = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    for _ in range(5):
        rig.breaker.record_failure("test")
    with pytest.raises(BrokerUnavailable, match="circuit breaker broker is OPEN: entry not sent"):
        rig.broker.market_order("XAUUSD", "buy", 0.1, None, None, rig.magic(), "ms-direct-1")
    assert len(rig.terminal.positions_get()) == 1
    assert rig.executor.close(trade, "exit while the breaker is open").status == "closed"


def test_sim_disconnect_opens_the_breaker_reduces_then_probes_close_it_and_reconcile(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    rig.reconciler.run("startup")
    trade = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    rig.reconciler.step(rig.clock.now())  # the fill's requested pass
    runs_before = rig.reconciler.runs
    during_outage = rig.idea()
    rig.terminal.faults.schedule("disconnect", seconds=120)
    for _ in range(5):  # each pass's positions query fails (after the adapter's own reconnect attempts)
        report = rig.reconciler.run("periodic")
        assert not report.ok and "not taken as 'no positions'" in report.skipped
    assert rig.breaker.state == OPEN
    assert rig.guard.state == REDUCING and "circuit breaker" in rig.guard.reason
    assert [t.ticket for t in rig.registry.open_trades()] == [trade.ticket]  # nothing changed on failed queries
    refused = rig.executor.open(during_outage)
    assert refused.status == "halted" and "circuit breaker" in refused.reason
    assert [e["event"] for e in rig.journal_events()].count("intent") == 1  # nothing was sent
    rig.clock.advance(125)  # the outage ends; the breaker has waited its 60 s
    assert rig.breaker.state == HALF_OPEN
    report = rig.reconciler.run("periodic")  # the periodic pass is the probe: positions + deals succeed
    assert report.ok
    assert rig.breaker.state == CLOSED and rig.guard.state == ACTIVE
    assert rig.events_of("circuit_breaker_opened") and rig.events_of("circuit_breaker_closed")
    assert [(e["old"], e["new"]) for e in rig.events_of("trading_state_changed")] == [(ACTIVE, REDUCING),
                                                                                     (REDUCING, ACTIVE)]
    rig.reconciler.step(rig.clock.now())  # the breaker's close asked for a pass
    assert rig.reconciler.runs == runs_before + 7
    assert "breaker_closed" in rig.reconciler.last_report.reason
    assert rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).opened
    lines = [e for e in rig.journal_events() if e["event"] == "circuit_breaker"]
    assert [(e["old"], e["new"]) for e in lines] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
