"""Why no trade was taken: per-symbol counts of the first failing gate or layer.

A monitor records every decision (``record(symbol, failed)`` with ``failed=None`` for a trade)
and logs one DEBUG line per decision; every ``summary_minutes`` it logs one INFO line per
symbol, e.g. ``micro_scalp XAUUSD: 60 checks, 0 trades; waiting for: L3.primary 41, spread 12,
session 7``, so an operator sees what the bot is waiting for without reading DEBUG logs.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any


class WhyNoTrade:
    def __init__(self, strategy: str, summary_minutes: float = 15.0,
                 logger: logging.Logger | None = None) -> None:
        self.strategy = strategy
        self.summary_minutes = summary_minutes
        self.log = logger or logging.getLogger(f"monitors.{strategy}")
        self._lock = threading.Lock()
        # Plain dicts, not Counters: a Counter's item access misses the interpreter's dict fast
        # path (about 1,000 instructions more each), and every decision counts twice.
        self._failed: dict[str, dict[str, int]] = {}
        self._checks: dict[str, int] = {}
        self._trades: dict[str, int] = {}
        self._since: datetime | None = None
        self._period: tuple[float, timedelta] = (summary_minutes, timedelta(minutes=summary_minutes))
        self.last_summary: dict[str, Any] = {}

    def record(self, symbol: str, failed: str | None, detail: Any = "") -> None:
        """One decision: ``failed`` is the first failing gate/layer, None when a trade was taken.
        ``detail``: its text, a function giving it, or an object whose ``str()`` is it; it is read
        only for the DEBUG line, so a monitor hands it over unformatted (nearly every step fails a
        gate, and its text is rarely read)."""
        with self._lock:
            checks = self._checks
            checks[symbol] = checks.get(symbol, 0) + 1
            if failed is None:
                self._trades[symbol] = self._trades.get(symbol, 0) + 1
            else:  # the symbol's dict built only the first time (not a setdefault per decision)
                counts = self._failed.get(symbol)
                if counts is None:
                    counts = self._failed[symbol] = {}
                counts[failed] = counts.get(failed, 0) + 1
        if self.log.isEnabledFor(logging.DEBUG):
            detail = detail() if callable(detail) else str(detail)
            self.log.debug("%s %s: %s%s", self.strategy, symbol, "TRADE" if failed is None else f"no trade ({failed})",
                           f" - {detail}" if detail else "")

    def _close_window(self) -> None:
        """Start counting a new summary window (the caller holds the lock)."""
        self._failed.clear()
        self._checks.clear()
        self._trades.clear()

    def _summary_period(self) -> timedelta:
        """``summary_minutes`` as a timedelta, rebuilt only when the monitor changes the minutes."""
        if self._period[0] != self.summary_minutes:
            self._period = (self.summary_minutes, timedelta(minutes=self.summary_minutes))
        return self._period[1]

    def maybe_summarize(self, now: datetime) -> bool:
        """Log and reset the counts when ``summary_minutes`` have passed; True if it did."""
        since = self._since
        if since is not None and now - since < self._summary_period():
            return False  # the common answer, without the lock (only this thread moves ``_since``)
        with self._lock:
            if self._since is None:
                self._since = now
                return False
            if now - self._since < self._summary_period():
                return False
            summary = {}
            for symbol in sorted(self._checks):
                top = Counter(self._failed.get(symbol, {})).most_common()
                summary[symbol] = {"checks": self._checks[symbol], "trades": self._trades.get(symbol, 0),
                                   "waiting_for": dict(top)}
            self._close_window()
            self._since = now
            self.last_summary = summary
        for symbol, info in summary.items():
            waiting = ", ".join(f"{gate} {count}" for gate, count in info["waiting_for"].items()) or "-"
            self.log.info("%s %s: %d checks, %d trades in the last %g min; waiting for: %s", self.strategy,
                          symbol, info["checks"], info["trades"], self.summary_minutes, waiting)
        return True
