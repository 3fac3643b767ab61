"""The backtest's clock: simulated market time that moves only when the driver moves it.

It implements ``monitors.clock.Clock``. Unlike ``FakeClock`` it keeps no record of waits (a year
of replay would grow that list without bound) and takes no lock: a backtest runs every monitor
step in one thread, one after the other. ``wait`` advances the time instead of sleeping, so a
retry pause inside a step (the executor's close retries, the adapter's reconnect backoff) costs
market time, as it does live, and no wall time.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone


class BacktestClock:
    """Market time for one backtest segment; forwards only."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the backtest clock needs a timezone-aware UTC start")
        self._now = start.astimezone(timezone.utc)
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, when: datetime) -> None:
        """Move to ``when``; a time at or before now leaves the clock where it is (a retry pause
        inside the previous step may already have carried it past the next scheduled step)."""
        delta = (when - self._now).total_seconds()
        if delta > 0:
            self._now = when
            self._mono += delta

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, timeout))
        return event.is_set()
