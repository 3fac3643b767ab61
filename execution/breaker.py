"""The broker circuit breaker: stop sending entries to a broker that keeps failing.

CLOSED (normal) -> OPEN after ``breaker_failure_threshold`` consecutive failed broker calls.
OPEN -> HALF_OPEN once ``breaker_recovery_seconds`` have passed since the last failure (checked
lazily whenever the state is read). HALF_OPEN -> CLOSED after ``breaker_close_after_successes``
successful calls in a row; any failure in HALF_OPEN opens it again.

What it blocks: ENTRIES only, and only while not CLOSED. Exits, modifies and reads always go
through (a position must never be left unmanaged because the breaker is cautious) and their
results feed the breaker, so the reconciler's periodic reads are the recovery probes: no real
order is ever used to test the water. This also avoids the seed document's flaw F3 (HALF_OPEN
letting every caller's ORDER through).

``BreakerBroker`` wraps the Broker the executor (and the reconciler) use. What counts:
- failure: the terminal could not be reached or did not answer (``BrokerUnavailable``,
  ``OrderOutcomeUnknown``, a plain ``BrokerError``), or a request exhausted its transient
  retries (``OrderRejected(transient=True)``: requotes or timeouts without end);
- success: any answer, including a business refusal (``OrderRejected`` for no money, invalid
  stops...) and ``TradingDisabled``: the link works, the breaker is about the link.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from config.reliability_model import ReliabilityConfig
from execution.errors import (BrokerError, BrokerUnavailable, OrderOutcomeUnknown, OrderRejected,
                              TradingDisabled)
from monitors.clock import Clock

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"
Listener = Callable[[str, str, dict[str, Any]], None]  # (old, new, info)


@dataclass
class _BreakerState:
    state: str = CLOSED
    failures: int = 0            # consecutive failures (CLOSED) / since opening (OPEN)
    successes: int = 0           # consecutive successes while HALF_OPEN
    last_failure_mono: float | None = None
    last_error: str | None = None
    opened_mono: float | None = None
    changed_at: datetime | None = None
    opened_count: int = 0


class CircuitBreaker:
    """Thread-safe; listeners are called outside the lock, in the thread that caused the change."""

    def __init__(self, name: str, clock: Clock, config: Callable[[], ReliabilityConfig],
                 events: Callable[[str, dict[str, Any]], None] | None = None, journal: Any = None) -> None:
        self.name = name
        self.clock = clock
        self._config = config
        self._events = events or (lambda kind, data: None)
        self._journal = journal
        self._lock = threading.Lock()
        self._s = _BreakerState()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """``listener(old, new, info)`` on every transition (the trading guard, the reconciler)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> str:
        changes = []
        with self._lock:
            self._maybe_half_open(changes)
            state = self._s.state
        self._announce(changes)
        return state

    def allows_entries(self) -> bool:
        return self.state == CLOSED

    def settled(self) -> bool:
        """CLOSED with no failure counted: a successful call would change nothing (a reader may
        answer from a cached reading instead of calling)."""
        s = self._s
        return s.state == CLOSED and not s.failures

    def _maybe_half_open(self, changes: list) -> None:
        s = self._s
        if s.state == OPEN and s.last_failure_mono is not None:
            if self.clock.monotonic() - s.last_failure_mono >= self._config().breaker_recovery_seconds:
                self._set(HALF_OPEN, changes, "recovery time elapsed: the next calls are probes")

    def _set(self, new: str, changes: list, reason: str) -> None:
        s = self._s
        old = s.state
        s.state = new
        s.changed_at = self.clock.now()
        s.successes = 0
        info: dict[str, Any] = {"name": self.name, "reason": reason, "failures": s.failures}
        if new == OPEN and old != OPEN:
            if old == CLOSED:
                s.opened_mono = self.clock.monotonic()
                s.opened_count += 1
            info["retry_in_seconds"] = self._config().breaker_recovery_seconds
        if new == CLOSED and s.opened_mono is not None:
            info["open_seconds"] = round(self.clock.monotonic() - s.opened_mono, 1)
            s.opened_mono = None
            s.failures = 0
        changes.append((old, new, info))

    # ------------------------------------------------------------------ results
    def record_success(self) -> None:
        s = self._s
        if s.state == CLOSED and not s.failures:
            return  # settled: a success changes nothing (the usual case; no lock needed to see it)
        changes: list = []
        with self._lock:
            s = self._s
            self._maybe_half_open(changes)
            if s.state == CLOSED:
                s.failures = 0
            elif s.state == HALF_OPEN:
                s.successes += 1
                if s.successes >= self._config().breaker_close_after_successes:
                    self._set(CLOSED, changes, f"{s.successes} successful broker calls after the pause")
        self._announce(changes)

    def record_failure(self, error: str) -> None:
        changes: list = []
        with self._lock:
            s = self._s
            self._maybe_half_open(changes)
            s.failures += 1
            s.last_failure_mono = self.clock.monotonic()
            s.last_error = error
            if s.state == HALF_OPEN:
                self._set(OPEN, changes, f"probe failed: {error}")
            elif s.state == CLOSED and s.failures >= self._config().breaker_failure_threshold:
                self._set(OPEN, changes, f"{s.failures} consecutive broker failures; last: {error}")
        self._announce(changes)

    def _announce(self, changes: list) -> None:
        for old, new, info in changes:
            level = logging.ERROR if new == OPEN else logging.WARNING
            log.log(level, "circuit breaker %s: %s -> %s (%s)", self.name, old, new, info["reason"])
            if self._journal is not None:
                try:
                    self._journal.append("circuit_breaker", old=old, new=new, reason=info["reason"],
                                         breaker=self.name, failures=info.get("failures"))
                except Exception:
                    log.exception("journal write failed for a breaker transition")
            kind = {OPEN: "circuit_breaker_opened", CLOSED: "circuit_breaker_closed"}.get(new)
            if kind and not (new == OPEN and old == HALF_OPEN):  # a failed probe is not news
                try:
                    self._events(kind, dict(info))
                except Exception:
                    log.exception("event sink failed for %s", kind)
            for listener in list(self._listeners):
                try:
                    listener(old, new, dict(info))
                except Exception:
                    log.exception("breaker listener failed")

    def health(self) -> dict[str, Any]:
        state = self.state
        with self._lock:
            s = self._s
            since = None
            if s.opened_mono is not None:
                since = round(self.clock.monotonic() - s.opened_mono, 1)
            return {"name": self.name, "state": state, "consecutive_failures": s.failures,
                    "half_open_successes": s.successes, "last_error": s.last_error,
                    "changed_at": s.changed_at.isoformat() if s.changed_at else None,
                    "open_for_s": since, "times_opened": s.opened_count}


def is_link_failure(exc: BaseException) -> bool:
    """Did this error come from the link to the broker (True) or from the broker's answer (False)?"""
    if isinstance(exc, OrderRejected):
        return exc.transient
    if isinstance(exc, TradingDisabled):
        return False
    return isinstance(exc, (BrokerUnavailable, OrderOutcomeUnknown, BrokerError))


class BreakerBroker:
    """A Broker that reports every call's outcome to the breaker and refuses entries while it is
    not CLOSED (nothing is sent then: ``BrokerUnavailable``, which callers treat as "not placed").
    Everything else is forwarded unchanged."""

    COUNTED = frozenset({"account", "symbol_spec", "quote", "positions", "position", "deals",
                         "market_order", "close_position", "modify_sltp", "find_by_client_id", "bars", "bar_rows",
                         "ticks"})

    def __init__(self, broker: Any, breaker: CircuitBreaker) -> None:
        self._broker = broker
        self.breaker = breaker

    @property
    def inner(self) -> Any:
        return self._broker

    def __getattr__(self, name: str) -> Any:
        """The wrapped broker's attribute; a counted call for the ``COUNTED`` methods, made once
        per name and kept on the instance (``__getattr__`` only runs when the normal lookup
        fails, so the next call finds it at once). It looks the method up on the wrapped broker
        at every call, so it always calls what a fresh lookup would."""
        target = getattr(self._broker, name)
        if name not in self.COUNTED or not callable(target):
            return target
        counted = self._counted(name)
        self.__dict__[name] = counted
        return counted

    def _counted(self, name: str) -> Callable[..., Any]:
        """The broker's ``name`` reporting its outcome to the breaker (an entry refused while the
        breaker is not CLOSED)."""
        def counted(*args: Any, **kwargs: Any) -> Any:
            breaker = self.breaker
            if name == "market_order" and not breaker.allows_entries():
                raise BrokerUnavailable(0, f"circuit breaker {breaker.name} is {breaker.state}: "
                                           "entry not sent")
            try:
                result = getattr(self._broker, name)(*args, **kwargs)
            except BrokerError as exc:
                if is_link_failure(exc):
                    breaker.record_failure(f"{name}: {exc}")
                else:
                    breaker.record_success()
                raise
            breaker.record_success()
            return result

        counted.__name__ = counted.__qualname__ = name
        return counted
