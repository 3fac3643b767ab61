"""The backtest's clock: simulated market time that moves only when the driver moves it.

It implements ``monitors.clock.Clock``. Unlike ``FakeClock`` it keeps no record of waits (a year
of replay would grow that list without bound) and takes no lock: a backtest runs every monitor
step in one thread, one after the other. ``wait`` advances the time instead of sleeping, so a
retry pause inside a step (the executor's close retries, the adapter's reconnect backoff) costs
market time, as it does live, and no wall time.

Besides the datetime it keeps the same instant as whole microseconds since the epoch, exactly:
``timestamp()`` and the driver's ``set_epoch`` answer from it with integer arithmetic instead of
datetime arithmetic (each datetime subtraction, ``timestamp()`` or ``timedelta`` of a large
number of seconds costs a few thousand instructions, and the replay asks at every step).
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

_US = 1_000_000  # microseconds per second
_ONE_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_KEPT_STEPS = 64  # distinct step lengths kept as timedeltas (a replay steps by a handful)


class BacktestClock:
    """Market time for one backtest segment; forwards only."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the backtest clock needs a timezone-aware UTC start")
        self._now = start.astimezone(timezone.utc)
        self._now_us = (self._now - _EPOCH) // _ONE_US  # the same instant, exactly
        self._mono = 0.0
        self._steps: dict[int, timedelta] = {}  # microseconds -> that timedelta (``set_epoch``)

    def now(self) -> datetime:
        return self._now

    def timestamp(self) -> float:
        """``now().timestamp()``: an aware datetime's is its microseconds since the epoch divided
        by 10**6 (``(now - epoch).total_seconds()``), the division made here on the kept count."""
        return self._now_us / _US

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            step = timedelta(seconds=seconds)
            self._now += step
            self._now_us += step // _ONE_US
            self._mono += seconds

    def set(self, when: datetime) -> None:
        """Move to ``when``; a time at or before now leaves the clock where it is (a retry pause
        inside the previous step may already have carried it past the next scheduled step)."""
        delta = when - self._now
        seconds = delta.total_seconds()
        if seconds > 0:
            self._now = when
            self._now_us += delta // _ONE_US
            self._mono += seconds

    def set_epoch(self, seconds: int) -> datetime:
        """``set`` to the instant ``seconds`` (whole UTC epoch seconds) and return ``now()``: the
        driver's move to each step. The same datetime and monotonic time as ``set(epoch +
        timedelta(0, seconds))`` gives: the difference is taken in whole microseconds (exact),
        the new time is now plus that difference (datetime arithmetic is exact), and
        ``total_seconds`` of it is those microseconds divided by 10**6, as here. The difference's
        timedelta is kept per length: steps repeat a few lengths (one minute, mostly)."""
        delta_us = seconds * _US - self._now_us
        if delta_us > 0:
            step = self._steps.get(delta_us)
            if step is None:
                if len(self._steps) >= _KEPT_STEPS:
                    self._steps.clear()
                step = self._steps[delta_us] = timedelta(microseconds=delta_us)
            self._now += step
            self._now_us += delta_us
            self._mono += delta_us / _US
        return self._now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, timeout))
        return event.is_set()
