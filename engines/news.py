"""News blackout: pure logic over an operator-maintained calendar (config/news.json).

    calendar = parse_news_calendar(text, source="config/news.json")
    verdict = blackout_status(calendar, "XAUUSD", now)
    if verdict.blocked: ...            # verdict.reason names the event and the window

Rules
- Impacts are low, medium, high, ultra. An event blocks only if its impact has a window (by
  default high: 30 min before and after; ultra: 60 before, 90 after; low and medium: none).
- Events of category "crypto" use the "crypto" window (default 15 before, 30 after) instead of
  their impact's, when their impact blocks at all.
- An event applies to a symbol when they share a currency (an event currency "ALL" matches every
  symbol) or the event's category is one of the symbol's categories. Symbols are profiled from
  their name (XAUUSD -> XAU+USD, category metals; BTCUSD -> BTC+USD, category crypto; EURUSD ->
  EUR+USD, category fx) unless the file's "symbols" section says otherwise.
- All times are UTC; an event time without a zone is an error (the original's local-zone bug).
The file reading itself (missing file = no blackout plus one warning, hot reload) is the
monitor's job: this module takes text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

IMPACTS = ("low", "medium", "high", "ultra")
CRYPTO = "crypto"
CRYPTO_BASES = frozenset({"BTC", "ETH", "XRP", "LTC", "SOL", "ADA", "DOGE", "BNB", "DOT", "BCH"})
METALS = frozenset({"XAU", "XAG", "XPT", "XPD"})


class NewsCalendarError(ValueError):
    """The calendar text is invalid; the message names the source, the entry and the field."""


@dataclass(frozen=True)
class Window:
    before: timedelta
    after: timedelta


DEFAULT_WINDOWS: dict[str, Window] = {
    "high": Window(timedelta(minutes=30), timedelta(minutes=30)),
    "ultra": Window(timedelta(minutes=60), timedelta(minutes=90)),
    CRYPTO: Window(timedelta(minutes=15), timedelta(minutes=30)),
}


@dataclass(frozen=True)
class NewsEvent:
    time: datetime                 # aware UTC
    title: str
    impact: str                    # one of IMPACTS
    currencies: frozenset[str] = frozenset()
    category: str | None = None


@dataclass(frozen=True)
class SymbolProfile:
    currencies: frozenset[str]
    categories: frozenset[str]


@dataclass(frozen=True)
class NewsCalendar:
    events: tuple[NewsEvent, ...] = ()
    windows: dict[str, Window] = field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    symbols: dict[str, SymbolProfile] = field(default_factory=dict)


@dataclass(frozen=True)
class Blackout:
    blocked: bool
    reason: str
    event: NewsEvent | None = None
    start: datetime | None = None
    end: datetime | None = None


# ----------------------------------------------------------------------------------------------
# symbols
# ----------------------------------------------------------------------------------------------

def profile_symbol(symbol: str) -> SymbolProfile:
    """Currencies and categories from a plain six-letter name (broker suffixes such as 'c' or
    '.m' are ignored): BTCUSD -> {BTC, USD} / {crypto}; XAUUSD -> {XAU, USD} / {metals};
    EURUSD -> {EUR, USD} / {fx}. Other names get no currencies (configure them in the file)."""
    core = "".join(ch for ch in symbol.upper() if ch.isalpha())
    if len(core) >= 6 and core[:3] in CRYPTO_BASES:
        return SymbolProfile(frozenset({core[:3], core[3:6]}), frozenset({CRYPTO}))
    if len(core) >= 6:
        base, quote = core[:3], core[3:6]
        category = "metals" if base in METALS else "fx"
        return SymbolProfile(frozenset({base, quote}), frozenset({category}))
    return SymbolProfile(frozenset(), frozenset())


def symbol_profile(calendar: NewsCalendar, symbol: str) -> SymbolProfile:
    return calendar.symbols.get(symbol) or profile_symbol(symbol)


# ----------------------------------------------------------------------------------------------
# blackout
# ----------------------------------------------------------------------------------------------

def window_for(calendar: NewsCalendar, event: NewsEvent) -> Window | None:
    """The window an event imposes, or None if its impact does not block."""
    impact_window = calendar.windows.get(event.impact)
    if impact_window is None:
        return None
    if event.category == CRYPTO and CRYPTO in calendar.windows:
        return calendar.windows[CRYPTO]
    return impact_window


def applies_to(event: NewsEvent, profile: SymbolProfile) -> bool:
    if "ALL" in event.currencies or event.currencies & profile.currencies:
        return True
    return event.category is not None and event.category in profile.categories


def blackout_status(calendar: NewsCalendar, symbol: str, now: datetime) -> Blackout:
    """Is ``now`` inside a blackout for ``symbol``? When several windows cover ``now``, the one
    ending last is reported (that is when trading may resume)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware UTC datetime")
    profile = symbol_profile(calendar, symbol)
    hit: Blackout | None = None
    for event in calendar.events:
        window = window_for(calendar, event)
        if window is None or not applies_to(event, profile):
            continue
        start, end = event.time - window.before, event.time + window.after
        if start <= now <= end and (hit is None or end > hit.end):  # type: ignore[operator]
            reason = (f"news blackout: {event.title} ({event.impact}"
                      f"{', ' + event.category if event.category else ''}) at {event.time:%Y-%m-%d %H:%M}Z, "
                      f"window {start:%H:%M}-{end:%H:%M}Z")
            hit = Blackout(True, reason, event, start, end)
    return hit or Blackout(False, f"no blackout for {symbol}")


def upcoming(calendar: NewsCalendar, symbol: str, now: datetime, horizon: timedelta) -> list[NewsEvent]:
    """Blocking events for ``symbol`` whose window starts within ``horizon`` from ``now``."""
    profile = symbol_profile(calendar, symbol)
    found = []
    for event in calendar.events:
        window = window_for(calendar, event)
        if window is not None and applies_to(event, profile) and now <= event.time - window.before <= now + horizon:
            found.append(event)
    return found


# ----------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------

def parse_news_calendar(text: str, source: str = "news.json") -> NewsCalendar:
    """Parse the calendar file's text. Format::

        {"schema_version": 1,
         "windows": {"high": {"before_minutes": 30, "after_minutes": 30}, ...},   (optional)
         "symbols": {"XAUUSD": {"currencies": ["XAU", "USD"], "categories": ["metals"]}},  (optional)
         "events": [{"time": "2024-06-12T12:30:00Z", "title": "US CPI", "impact": "high",
                     "currencies": ["USD"]},
                    {"time": "...", "title": "...", "impact": "high", "category": "crypto"}]}

    ``windows`` replaces the defaults per key given (a key with null removes that window)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NewsCalendarError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise NewsCalendarError(f"{source}: top level must be an object with an 'events' list")
    unknown = sorted(set(data) - {"schema_version", "windows", "symbols", "events", "comment"})
    if unknown:
        raise NewsCalendarError(f"{source}: unknown keys: {', '.join(unknown)}")
    windows = _parse_windows(data.get("windows", {}), source)
    symbols = _parse_symbols(data.get("symbols", {}), source)
    raw_events = data.get("events", [])
    if not isinstance(raw_events, list):
        raise NewsCalendarError(f"{source}: events must be a list")
    events = tuple(sorted((_parse_event(item, i, source) for i, item in enumerate(raw_events)),
                          key=lambda e: e.time))
    return NewsCalendar(events, windows, symbols)


def _parse_windows(raw: Any, source: str) -> dict[str, Window]:
    if not isinstance(raw, dict):
        raise NewsCalendarError(f"{source}: windows must be an object keyed by impact")
    windows = dict(DEFAULT_WINDOWS)
    for key, value in raw.items():
        if key not in IMPACTS and key != CRYPTO:
            raise NewsCalendarError(f"{source}: windows.{key}: expected one of {', '.join(IMPACTS + (CRYPTO,))}")
        if value is None:
            windows.pop(key, None)
            continue
        if not isinstance(value, dict) or set(value) != {"before_minutes", "after_minutes"}:
            raise NewsCalendarError(f"{source}: windows.{key}: expected {{\"before_minutes\": n, \"after_minutes\": n}}")
        minutes = []
        for name in ("before_minutes", "after_minutes"):
            number = value[name]
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number <= 1440:
                raise NewsCalendarError(f"{source}: windows.{key}.{name}: expected minutes 0..1440, got {number!r}")
            minutes.append(timedelta(minutes=number))
        windows[key] = Window(minutes[0], minutes[1])
    return windows


def _parse_symbols(raw: Any, source: str) -> dict[str, SymbolProfile]:
    if not isinstance(raw, dict):
        raise NewsCalendarError(f"{source}: symbols must be an object keyed by symbol")
    profiles = {}
    for symbol, value in raw.items():
        if not isinstance(value, dict) or not set(value) <= {"currencies", "categories"}:
            raise NewsCalendarError(f"{source}: symbols.{symbol}: expected currencies and/or categories lists")
        profiles[symbol] = SymbolProfile(
            _string_set(value.get("currencies", []), f"{source}: symbols.{symbol}.currencies", upper=True),
            _string_set(value.get("categories", []), f"{source}: symbols.{symbol}.categories", upper=False))
    return profiles


def _string_set(raw: Any, where: str, upper: bool) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise NewsCalendarError(f"{where}: expected a list of non-empty strings")
    return frozenset(x.strip().upper() if upper else x.strip().lower() for x in raw)


def _parse_event(item: Any, index: int, source: str) -> NewsEvent:
    where = f"{source}: events[{index}]"
    if not isinstance(item, dict):
        raise NewsCalendarError(f"{where}: expected an object")
    unknown = sorted(set(item) - {"time", "title", "impact", "currencies", "category", "source", "comment"})
    if unknown:
        raise NewsCalendarError(f"{where}: unknown keys: {', '.join(unknown)}")
    title = item.get("title")
    if not isinstance(title, str) or not title.strip():
        raise NewsCalendarError(f"{where}.title: expected a non-empty string")
    where = f"{where} ({title})"
    impact = item.get("impact")
    if impact not in IMPACTS:
        raise NewsCalendarError(f"{where}.impact: expected one of {', '.join(IMPACTS)}, got {impact!r}")
    currencies = _string_set(item.get("currencies", []), f"{where}.currencies", upper=True)
    category = item.get("category")
    if category is not None and (not isinstance(category, str) or not category.strip()):
        raise NewsCalendarError(f"{where}.category: expected a non-empty string")
    category = category.strip().lower() if category else None
    if not currencies and category is None:
        raise NewsCalendarError(f"{where}: needs currencies (e.g. [\"USD\"] or [\"ALL\"]) or a category")
    return NewsEvent(_parse_time(item.get("time"), f"{where}.time"), title.strip(), impact, currencies, category)


def _parse_time(raw: Any, where: str) -> datetime:
    if isinstance(raw, bool):
        raise NewsCalendarError(f"{where}: expected an ISO-8601 UTC time or epoch seconds")
    if isinstance(raw, (int, float)):
        return datetime.fromtimestamp(raw, tz=timezone.utc)
    if not isinstance(raw, str):
        raise NewsCalendarError(f"{where}: expected an ISO-8601 UTC time or epoch seconds, got {raw!r}")
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise NewsCalendarError(f"{where}: {raw!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        raise NewsCalendarError(f"{where}: {raw!r} has no time zone; write UTC explicitly, e.g. '...Z'")
    return parsed.astimezone(timezone.utc)
