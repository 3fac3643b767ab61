"""The backtest clock's integer shortcuts give what the datetime arithmetic gives."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from backtest.clock import _KEPT_STEPS, BacktestClock

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
START = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)


def _same(a: BacktestClock, b: BacktestClock) -> None:
    assert a.now() == b.now() and a.now().tzinfo is b.now().tzinfo is timezone.utc
    assert a.monotonic() == b.monotonic()
    assert a.timestamp() == a.now().timestamp() and b.timestamp() == b.now().timestamp()


def test_set_epoch_moves_as_set_of_the_epoch_datetime() -> None:
    """Steps of a minute, a gap, a step the clock is already past (a retry pause carried it
    there: no move), fractional advances in between: the same time, monotonic time and
    timestamp either way."""
    fast, slow = BacktestClock(START), BacktestClock(START)
    t = int(START.timestamp())
    for step, pause in [(60, 0.0), (60, 0.25), (60, 75.5), (3600, 0.0), (60, 1e-7), (1, 0.0), (60, 0.000_001)]:
        t += step
        now = fast.set_epoch(t)
        slow.set(EPOCH + timedelta(0, t))
        assert now is fast.now()
        _same(fast, slow)
        fast.advance(pause)
        slow.advance(pause)
        _same(fast, slow)


def test_set_epoch_at_or_before_now_leaves_the_clock() -> None:
    clock = BacktestClock(START)
    clock.advance(90)
    before = clock.now(), clock.monotonic()
    assert clock.set_epoch(int(START.timestamp()) + 60) is before[0]
    assert (clock.now(), clock.monotonic()) == before and clock.timestamp() == START.timestamp() + 90


def test_set_keeps_the_timestamp_for_any_zone() -> None:
    clock = BacktestClock(START)
    clock.set(datetime(2026, 1, 5, 10, 30, 0, 123_456, tzinfo=timezone(timedelta(hours=2))))
    assert clock.timestamp() == clock.now().timestamp() == START.timestamp() + 1800.123456


def test_kept_step_lengths_stay_bounded() -> None:
    clock = BacktestClock(START)
    t = int(START.timestamp())
    for step in range(1, 3 * _KEPT_STEPS):
        t += step
        clock.set_epoch(t)
    assert len(clock._steps) <= _KEPT_STEPS
    assert clock.now() == EPOCH + timedelta(0, t) and clock.timestamp() == t
