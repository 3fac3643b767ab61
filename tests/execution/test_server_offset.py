"""The measured server offset is not corrupted by a stale tick read after a long pause."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from execution.simterminal import make_test_terminal
from monitors.clock import FakeClock
from tests.execution.harness import build_stack


def test_a_stale_friday_tick_after_sleeping_into_the_weekend_does_not_change_the_offset(tmp_path: Path) -> None:
    clock = FakeClock()  # Monday 12:00 UTC
    stack = build_stack(tmp_path, clock, terminal=make_test_terminal(tmp_path, clock, server_utc_offset_hours=2))
    assert stack.broker.server_utc_offset() == timedelta(hours=2)
    stack.broker.quote("XAUUSD")
    stack.clock.advance(60)
    stack.broker.quote("XAUUSD")
    stack.clock.set(datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc))  # the PC slept into Saturday
    stack.broker.quote("XAUUSD")  # Friday's last tick, seen for the first time
    assert stack.broker.server_utc_offset() == timedelta(hours=2)
