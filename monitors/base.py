"""The loop every periodic thread runs: ``step(now)`` at a fixed cadence, supervised.

The cadence does not drift (the next tick is the previous one plus the interval, not "now plus
the interval"); a step that overruns skips the ticks it missed and counts them instead of
firing them in a burst. The loop waits on its stop event (through the clock) rather than
sleeping, so shutdown is prompt and tests run on a fake clock. Exceptions are logged and
counted; after ``error_budget`` consecutive failures the loop marks itself faulted and ends,
and the supervisor decides about a restart.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from monitors.clock import Clock

log = logging.getLogger(__name__)


class Monitor(Protocol):
    """One job run periodically. ``interval_seconds`` is read every cycle (hot-reloadable)."""

    name: str

    @property
    def interval_seconds(self) -> float: ...

    def step(self, now: datetime) -> None: ...


@dataclass
class LoopStats:
    state: str = "new"  # new, running, faulted, stopped, crashed
    steps: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    overruns: int = 0
    last_error: str | None = None
    heartbeat: float | None = None  # clock.monotonic() of the last finished step


class DayStart:
    """``now.replace(hour=0, minute=0, second=0, microsecond=0)`` (midnight of ``now``'s day),
    remembered for the day: monitors ask it every step, and ``replace`` with keywords costs
    about as much as the rest of a cheap gate.

    The remembered midnight is handed out only for a ``now`` with the very same fixed-offset
    ``timezone`` object inside [midnight, midnight + 1 day): there ``replace`` gives the same
    fields and the same tzinfo (a fixed offset has no DST and ignores ``fold``). Any other
    ``now`` (another or a DST zone, another day) is computed as before."""

    __slots__ = ("_day",)

    def __init__(self) -> None:
        self._day: tuple[datetime, datetime] | None = None  # (midnight, next midnight), one tuple: never torn

    def __call__(self, now: datetime) -> datetime:
        day = self._day
        if day is not None and day[0].tzinfo is now.tzinfo and day[0] <= now < day[1]:
            return day[0]
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if type(start.tzinfo) is timezone:
            self._day = (start, start + timedelta(days=1))
        return start


class IsoText:
    """``when.isoformat()``, remembered for the last datetime OBJECT asked (identity, not
    equality: two equal instants in different zones print differently). A step asks its clock's
    ``now`` several times, and a backtest clock hands out one object per step; ``isoformat``
    is among the costlier datetime calls."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[datetime | None, str] = (None, "")  # one tuple: a reader never sees half an update

    def __call__(self, when: datetime) -> str:
        last = self._last
        if last[0] is when:
            return last[1]
        text = when.isoformat()
        self._last = (when, text)
        return text


class MonitorLoop:
    """Runs one monitor on its own daemon thread (or inline with ``run`` for tests)."""

    def __init__(self, monitor: Monitor, clock: Clock, error_budget: int = 5) -> None:
        self.monitor = monitor
        self.clock = clock
        self.error_budget = error_budget
        self.stop_event = threading.Event()
        self.stats = LoopStats()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.monitor.name

    def start(self) -> None:
        self._thread = threading.Thread(target=self._guarded_run, name=self.name, daemon=True)
        self._thread.start()

    def _guarded_run(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # never die silently
            self.stats.state = "crashed"
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.critical("%s crashed outside its step: %s", self.name, exc, exc_info=True)

    def run(self) -> None:
        """The loop itself; returns when stopped or faulted."""
        stats = self.stats
        stats.state = "running"
        next_due = self.clock.monotonic()
        while not self.stop_event.is_set():
            try:
                self.monitor.step(self.clock.now())
                stats.consecutive_errors = 0
            except Exception as exc:
                stats.errors += 1
                stats.consecutive_errors += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
                log.error("%s step failed (%d in a row): %s", self.name, stats.consecutive_errors,
                          stats.last_error, exc_info=True)
                if stats.consecutive_errors >= self.error_budget:
                    stats.state = "faulted"
                    log.error("%s faulted after %d consecutive failures", self.name,
                              stats.consecutive_errors)
                    return
            stats.steps += 1
            stats.heartbeat = self.clock.monotonic()
            interval = max(0.01, float(self.monitor.interval_seconds))
            next_due += interval
            now_mono = self.clock.monotonic()
            if now_mono >= next_due:
                missed = int((now_mono - next_due) // interval) + 1
                stats.overruns += missed
                next_due += missed * interval
                log.warning("%s step overran; skipped %d tick(s)", self.name, missed)
            self.clock.wait(self.stop_event, next_due - now_mono)
        stats.state = "stopped"

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def heartbeat_age(self) -> float | None:
        if self.stats.heartbeat is None:
            return None
        return max(0.0, self.clock.monotonic() - self.stats.heartbeat)

    def health(self) -> dict[str, Any]:
        s = self.stats
        age = self.heartbeat_age()
        return {"state": s.state, "alive": self.is_alive(), "steps": s.steps, "errors": s.errors,
                "consecutive_errors": s.consecutive_errors, "overruns": s.overruns,
                "last_error": s.last_error,
                "heartbeat_age_s": None if age is None else round(age, 3),
                "interval_s": self.monitor.interval_seconds}
