"""The operator's news calendar file (config/news.json), hot-reloaded for the blackout gate.

    news = NewsFile(config_dir / "news.json")
    news.refresh()                              # once per monitor step: re-reads only on change
    verdict = news.blackout("XAUUSD", now)      # engines.news.Blackout

The parsing and the blackout rule are pure (engines/news.py); this module owns the file:
- a change is detected by the file's (mtime, size) signature, so an edit is picked up on the
  next step without a restart;
- a missing file means no blackout, logged as ONE warning (again only if the file reappears and
  then goes missing again);
- a file that cannot be read or parsed keeps the last good calendar in force and is logged as an
  error once per broken version (not every step);
- ``watch=False`` (backtests) reads the file at the first ``refresh`` only: a replay runs on the
  calendar it started with, and no step pays for a ``stat``.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from engines.news import (Blackout, NewsCalendar, NewsCalendarError, applies_to, blackout_status,
                          parse_news_calendar, symbol_profile, window_for)

log = logging.getLogger(__name__)

Signature = tuple[int, int]  # (st_mtime_ns, st_size)
Spans = tuple[tuple[datetime, datetime], ...]  # (start, end) of every blocking window of one symbol
Clear = tuple[Spans, Blackout]  # a symbol's windows, and its verdict outside all of them


class NewsFile:
    """The calendar in force and where it came from. ``refresh`` runs in the monitor thread;
    ``blackout`` and ``health`` may be called from any thread (the calendar is swapped whole)."""

    def __init__(self, path: Path, logger: logging.Logger | None = None, *, watch: bool = True) -> None:
        self.path = Path(path)
        self.log = logger or log
        self.watch = watch
        self._looked = False  # refresh has looked at the file once
        self.calendar = NewsCalendar()
        self.status = "not loaded"   # ok, missing, error (last good kept), not loaded
        self.last_error: str | None = None
        self.loads = 0
        self._signature: Signature | None = None   # of the calendar in force
        self._bad_signature: Signature | None = None
        self._missing_warned = False
        # the calendar the spans were computed for (held, so its id cannot be reused) and its spans per symbol
        self._spans: tuple[NewsCalendar, dict[str, Clear]] = (self.calendar, {})

    def _stat(self) -> Signature | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return info.st_mtime_ns, info.st_size

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when a new calendar was put in force."""
        if self._looked and not self.watch:
            return False
        self._looked = True
        try:
            signature = self._stat()
        except OSError as exc:
            return self._broken(None, f"{self.path}: cannot read the news calendar: {exc}")
        if signature is None:
            if not self._missing_warned:
                self.log.warning("news calendar %s not found: no news blackout applies until it exists",
                                 self.path)
                self._missing_warned = True
            if self._signature is not None or self.status != "missing":
                self.calendar = NewsCalendar()
                self._signature = None
                self._bad_signature = None
            self.status = "missing"
            return False
        self._missing_warned = False
        if signature == self._signature or signature == self._bad_signature:
            return False
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            return self._broken(signature, f"{self.path}: cannot read the news calendar: {exc}")
        try:
            calendar = parse_news_calendar(text, source=str(self.path))
        except NewsCalendarError as exc:
            return self._broken(signature, str(exc))
        self.calendar = calendar
        self._signature = signature
        self._bad_signature = None
        self.status = "ok"
        self.last_error = None
        self.loads += 1
        self.log.info("news calendar %s loaded: %d event(s)", self.path, len(calendar.events))
        return True

    def _broken(self, signature: Signature | None, message: str) -> bool:
        if signature is None or signature != self._bad_signature:
            kept = "the previous calendar stays in force" if self._signature is not None else "no blackout applies"
            self.log.error("news calendar rejected (%s): %s", kept, message)
        self._bad_signature = signature
        self.status = "error"
        self.last_error = message
        return False

    def blackout(self, symbol: str, now: datetime) -> Blackout:
        """``blackout_status`` of the calendar in force. Asked every step: outside every window of
        the symbol the answer is known without walking the events (the engine builds the
        verdict, and raises for a naive ``now``, whenever ``now`` is inside a window)."""
        calendar = self.calendar
        if now.tzinfo is not None:
            spans, clear = self._symbol_spans(calendar, symbol)
            for start, end in spans:
                if start <= now <= end:
                    break
            else:
                return clear
        return blackout_status(calendar, symbol, now)

    def _symbol_spans(self, calendar: NewsCalendar, symbol: str) -> Clear:
        """The windows ``blackout_status`` would test for ``symbol``, and its verdict outside them
        (immutable, so shared by every call), computed once per calendar."""
        cached_for, spans = self._spans
        if cached_for is not calendar:
            spans = {}
            self._spans = (calendar, spans)
        found = spans.get(symbol)
        if found is None:
            profile = symbol_profile(calendar, symbol)
            windows = tuple((event.time - window.before, event.time + window.after)
                            for event in calendar.events
                            if (window := window_for(calendar, event)) is not None and applies_to(event, profile))
            found = spans[symbol] = (windows, Blackout(False, f"no blackout for {symbol}"))
        return found

    def health(self) -> dict[str, Any]:
        return {"path": str(self.path), "status": self.status, "events": len(self.calendar.events),
                "loads": self.loads, "last_error": self.last_error}
