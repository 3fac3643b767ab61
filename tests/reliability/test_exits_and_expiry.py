"""Idempotent orders: entries expire (no late entries), failed exits are retried with a doubling
back-off until done and escalated once."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from execution.executor import idea_created_at
from tests.reliability.rig import Rig, build_rig


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return build_rig(tmp_path, reliability={"exit_retry_base_seconds": 5, "exit_retry_max_seconds": 20,
                                            "exit_escalate_after_failures": 3, "order_failure_burst_count": None})


def sent_orders(rig: Rig) -> int:
    return len(rig.journal_events("intent"))


# ---------------------------------------------------------------------------------------- entry expiry
def test_an_idea_older_than_the_expiry_is_never_sent(rig: Rig) -> None:
    idea = rig.idea()
    outcome = rig.executor.open(idea, created_at=rig.clock.now() - timedelta(seconds=6))
    assert outcome.status == "skipped" and outcome.reason.startswith("expired: the idea is 6.0 s old")
    assert sent_orders(rig) == 0 and rig.terminal.positions_get() == ()
    assert rig.journal_events()[-1]["event"] == "expired" and rig.stack.risk.pending() == []
    fresh = rig.executor.open(idea, created_at=rig.clock.now() - timedelta(seconds=4))
    assert fresh.opened


def test_the_creation_time_may_travel_in_the_ideas_meta(rig: Rig) -> None:
    old = (rig.clock.now() - timedelta(seconds=30)).isoformat()
    assert rig.executor.open(rig.idea(created_at=old)).reason.startswith("expired")
    epoch = rig.clock.now().timestamp()
    assert rig.executor.open(rig.idea(created_at=epoch)).opened
    with pytest.raises(ValueError, match="no time zone"):
        idea_created_at(rig.idea(created_at=datetime(2026, 1, 5, 12, 0)))


class SlowQuotes:
    """The terminal takes ``delay`` seconds to answer a quote (the clock moves meanwhile)."""

    def __init__(self, inner: Any, clock: Any, delay: float) -> None:
        self._inner, self._clock, self._delay = inner, clock, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def quote(self, symbol: str) -> Any:
        self._clock.advance(self._delay)
        return self._inner.quote(symbol)


def test_an_idea_that_ages_inside_the_executor_expires_before_sending(rig: Rig) -> None:
    idea = rig.idea()
    rig.executor.broker = SlowQuotes(rig.broker, rig.clock, delay=6.0)
    outcome = rig.executor.open(idea)  # no creation time given: the call itself is the birth
    assert outcome.status == "skipped" and "expired" in outcome.reason
    assert sent_orders(rig) == 0 and rig.stack.risk.pending() == []  # the reservation was released


# ---------------------------------------------------------------------------------------- exits
def test_a_failing_exit_is_retried_with_backoff_escalated_once_then_done(rig: Rig) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    faults = rig.terminal.faults
    faults.schedule("reject", retcode=10018, count=10_000)  # market closed: every close refused
    outcome = rig.executor.close(trade, "time exit")
    per_call = rig.stack.holder.current.bot.execution.close_retries
    assert outcome.status == "failed"
    assert len([f for f in faults.injected if f.kind == "reject"]) == per_call
    pending = rig.registry.get(trade.ticket).meta["pending_exit"]
    assert pending["failures"] == 1 and pending["reason"] == "time exit" and not pending["escalated"]
    first_due = datetime.fromisoformat(pending["next_retry_at"])
    assert (first_due - rig.clock.now()).total_seconds() == pytest.approx(5)
    assert rig.executor.retry_pending_exits() == []  # not due yet: the back-off holds
    waits = []
    for _ in range(3):
        due = datetime.fromisoformat(rig.registry.get(trade.ticket).meta["pending_exit"]["next_retry_at"])
        waits.append(round((due - rig.clock.now()).total_seconds()))
        rig.clock.set(due)
        report = rig.reconciler.run("periodic")  # the reconciler retries due exits, one attempt each
        assert report.pending_exits_retried == [trade.ticket]
    assert waits == [5, 10, 20]  # doubling, capped at exit_retry_max_seconds (the next would be 20 again)
    pending = rig.registry.get(trade.ticket).meta["pending_exit"]
    assert pending["failures"] == 4 and pending["escalated"]
    [escalation] = rig.events_of("exit_escalated")
    assert escalation["ticket"] == trade.ticket and escalation["failures"] == 3
    assert "manual close" in escalation["action"]
    assert len(rig.journal_events("exit_escalated")) == 1
    assert len(rig.events_of("close_failed")) == 4
    faults.clear("reject")
    rig.clock.set(datetime.fromisoformat(pending["next_retry_at"]))
    report = rig.reconciler.run("periodic")
    assert report.pending_exits_retried == [trade.ticket]
    assert rig.terminal.positions_get(ticket=trade.ticket) == ()
    closed = rig.registry.closed_trades()[-1]
    assert closed.ticket == trade.ticket and closed.close_reason == "time exit"
    assert rig.executor.pending_exits() == []


def test_an_exit_whose_position_vanished_meanwhile_is_settled_not_retried(rig: Rig) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    rig.terminal.faults.schedule("reject", retcode=10018, count=10_000)
    rig.executor.close(trade, "time exit")
    rig.terminal.faults.clear("reject")
    rig.raw_close(trade.ticket)  # the operator closed it by hand
    report = rig.reconciler.run("periodic")
    assert report.closed_while_away == [trade.ticket] and report.pending_exits_retried == []
    assert rig.executor.pending_exits() == []
