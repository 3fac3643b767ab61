"""Error severity for the range-scalp monitor, and the auto-disable of its ENTRIES.

One catalogue (``ERROR_SEVERITY``) names every error type the monitor reports, so a type can
never be missing from the severity map (the planning document's map and its action table used
different keys). Severities:

- CRITICAL: the monitor cannot trust itself or the broker for new risk: the broker refuses to
  trade (trading disabled, account problem), the state file is corrupt or cannot be written,
  the engine keeps raising on the same symbol. These count toward the auto-disable.
- HIGH: a trade needs the operator (an exit that could not be carried out, a stop that could
  not be moved, a position at our magic that nobody manages, an order whose outcome is unknown).
  Alerted, never disables anything.
- WARNING: recoverable and expected now and then: data missing or stale, the broker briefly
  unreachable, an order refused, an entry price that moved. A lost connection is WARNING, not
  CRITICAL: three disconnects in an hour must not switch a strategy off (seed 11.2 item 2).
- INFO: operational events (breakeven moved, trade registered).

Unknown types default to WARNING. The auto-disable counts CRITICAL events inside a rolling
window (one hour of market time by default), with no cap on how many it remembers, so a
threshold above ten still fires (seed 11.1 item 11). What it disables, who re-enables it and
how are the monitor's business (monitors/range_scalp.py): entries only, by a config edit.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any


class Severity(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"


ERROR_SEVERITY: dict[str, Severity] = {
    # critical: counts toward the auto-disable of entries
    "broker_fatal": Severity.CRITICAL,          # trading disabled / account refused (TradingDisabled)
    "state_corruption": Severity.CRITICAL,      # range_scalp.json unparsable, newer, or bad records
    "state_save_failed": Severity.CRITICAL,     # the state file could not be written
    "engine_failure": Severity.CRITICAL,        # the engine raised on N evaluations in a row
    # high: the operator must look
    "exit_order_fails": Severity.HIGH,          # a close failed after every retry: manual close
    "modify_failed": Severity.HIGH,             # a breakeven stop could not be placed
    "orphaned_trades": Severity.HIGH,           # a position at the range magic with no state
    "unmanaged_trade": Severity.HIGH,           # a registry range trade without a range to manage
    "order_outcome_unknown": Severity.HIGH,      # the executor could not tell whether it filled
    # warning: recoverable
    "data_unavailable": Severity.WARNING,       # bars/quote missing, stale or bad; broker unreachable
    "engine_error": Severity.WARNING,           # one engine exception (a streak becomes engine_failure)
    "order_rejected": Severity.WARNING,         # the executor or the broker refused an entry
    "price_validation_fails": Severity.WARNING,  # the price moved too far from the idea's entry
    "exit_attempt_failed": Severity.WARNING,    # one close attempt failed (retried)
    "recovery_deferred": Severity.WARNING,      # the broker could not be asked at start; retried
    # info
    "breakeven_moved": Severity.INFO,
    "trade_registered": Severity.INFO,
}


def severity_of(error_type: str) -> Severity:
    return ERROR_SEVERITY.get(error_type, Severity.WARNING)


@dataclass(frozen=True)
class ErrorEvent:
    error_type: str
    severity: Severity
    at: datetime
    message: str
    context: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"error_type": self.error_type, "severity": self.severity.value, "at": self.at.isoformat(),
                "message": self.message, "context": dict(self.context)}


class ErrorLedger:
    """Recent errors and the CRITICAL ones inside the auto-disable window.

    ``record`` returns the event and whether the window now holds ``threshold`` CRITICAL
    events (the caller disables entries). Not thread-safe by itself: the monitor records from
    its own thread only."""

    def __init__(self, window: timedelta = timedelta(hours=1), history: int = 200) -> None:
        self.window = window
        self.history: deque[ErrorEvent] = deque(maxlen=history)
        self._critical: deque[datetime] = deque()
        self.counts: dict[str, int] = {s.value: 0 for s in Severity}

    def record(self, error_type: str, message: str, now: datetime, threshold: int,
               context: dict[str, Any] | None = None) -> tuple[ErrorEvent, bool]:
        event = ErrorEvent(error_type, severity_of(error_type), now, message, dict(context or {}))
        self.history.append(event)
        self.counts[event.severity.value] += 1
        if event.severity is not Severity.CRITICAL:
            return event, False
        self._critical.append(now)
        return event, self.critical_in_window(now) >= threshold

    def critical_in_window(self, now: datetime) -> int:
        while self._critical and now - self._critical[0] > self.window:
            self._critical.popleft()
        return len(self._critical)

    def count_in_window(self, now: datetime) -> int:
        """Like ``critical_in_window`` without pruning: safe to call from another thread (status)."""
        return sum(1 for at in list(self._critical) if now - at <= self.window)

    def clear_window(self) -> None:
        """Forget the CRITICAL events counted so far (after the operator re-enabled entries)."""
        self._critical.clear()

    def recent(self, count: int = 10) -> list[dict[str, Any]]:
        return [e.to_json() for e in list(self.history)[-count:]]


__all__ = ["Severity", "ERROR_SEVERITY", "severity_of", "ErrorEvent", "ErrorLedger"]
