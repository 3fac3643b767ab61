"""Clocks: every thread asks a clock for the time and waits through it, so tests and backtests
can run the real loops on simulated time without sleeping."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""

    def timestamp(self) -> float:
        """``now().timestamp()``: UTC epoch seconds of the current time (a clock that keeps them
        answers without building them from the datetime)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for cadence and ages)."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set."""


class SystemClock:
    """Wall clock in UTC and the process monotonic clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(0.0, timeout))


class FakeClock:
    """A clock that moves only when told to; ``wait`` advances it instead of sleeping.

    Thread-safe, so a test may advance it from one thread while a loop waits in another, but
    most tests run the loop in the test thread and let ``wait`` move time forward.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
        self._mono = 1000.0
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def timestamp(self) -> float:
        return self.now().timestamp()

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forwards only, as real time does)."""
        with self._lock:
            delta = (when - self._now).total_seconds()
            if delta < 0:
                raise ValueError("a FakeClock does not go backwards")
            self._now = when
            self._mono += delta

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        self.waits.append(timeout)
        self.advance(max(0.0, timeout))
        return event.is_set()


class ScaledClock:
    """Simulated market time running ``speed`` times faster than real time from ``start``.

    The whole bot runs on it in sim mode, so a 5 s monitor cadence is 5 market seconds and the
    replayed bars, sessions and cooldowns all agree on one time.
    """

    def __init__(self, start: datetime, speed: float, base: Clock | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware UTC")
        self._base = base or SystemClock()
        self._start = start
        self._mono0 = self._base.monotonic()
        self.speed = speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(self._base.monotonic() - self._mono0) * self.speed)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def monotonic(self) -> float:
        return (self._base.monotonic() - self._mono0) * self.speed

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return self._base.wait(event, max(0.0, timeout) / self.speed)
