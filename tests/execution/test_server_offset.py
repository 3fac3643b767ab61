"""The measured server offset is not corrupted by a stale tick read after a long pause."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.execution.harness import build_stack


def test_a_stale_friday_tick_after_sleeping_into_the_weekend_does_not_change_the_offset(tmp_path: Path) -> None:
    stack = build_stack(tmp_path)  # Monday 12:00 UTC; the sim's server clock is UTC+2
    assert stack.broker.server_utc_offset() == timedelta(hours=2)
    stack.broker.quote("XAUUSD")
    stack.clock.advance(60)
    stack.broker.quote("XAUUSD")
    stack.clock.set(datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc))  # the PC slept into Saturday
    stack.broker.quote("XAUUSD")  # Friday's last tick, seen for the first time
    assert stack.broker.server_utc_offset() == timedelta(hours=2)
