"""The daily summary: when it is due, and what it says.

A summary is sent once per day at a configured UTC time (``notifications.daily_summary_utc``)
and covers the 24 hours that end at that time, so consecutive summaries neither overlap nor
leave a gap. The last day sent is persisted (through ``state.store.StateStore``), so a restart
neither repeats a summary nor forgets one that was missed while the bot was down; only the
most recent missed one is sent, never a backlog.

Typical use on the main thread::

    slot = schedule.due(clock.now())
    if slot is not None:
        closed = trades_in_window(journal_closed_trades, slot.start, slot.end)
        notifier.notify(events.daily_summary(clock.now(), summarize_trades(closed, slot, strategies)))
        schedule.mark_sent(slot)

The functions here are pure (the time is an argument); only ``DailySummarySchedule`` touches
a file, through the store it is given.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence

from config.notify_model import HHMM
from state.store import StateStore

STATE_NAME = "daily_summary"


# ------------------------------------------------------------------------------ scheduling

@dataclass(frozen=True)
class SummarySlot:
    """One daily summary: ``day`` is the UTC date of ``end``; it covers [start, end)."""

    day: date
    start: datetime
    end: datetime


def parse_utc_time(value: str | time) -> time:
    """``"21:00"`` -> ``time(21, 0)``; a clear error for anything else."""
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    match = HHMM.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"daily summary time must be HH:MM in UTC, got {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


def _aware_utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware UTC datetime")
    return now.astimezone(timezone.utc)


def latest_slot(now: datetime, at_utc: time) -> SummarySlot:
    """The most recent summary time at or before ``now``."""
    now = _aware_utc(now)
    end = datetime.combine(now.date(), at_utc, tzinfo=timezone.utc)
    if end > now:
        end -= timedelta(days=1)
    return SummarySlot(day=end.date(), start=end - timedelta(days=1), end=end)


def next_slot_time(now: datetime, at_utc: time) -> datetime:
    """When the next summary falls due (strictly after ``now``)."""
    return latest_slot(now, at_utc).end + timedelta(days=1)


def due_slot(now: datetime, at_utc: time, last_sent_day: date | None) -> SummarySlot | None:
    """The summary to send now, if any: the latest slot, unless it was already sent.

    ``last_sent_day`` None means "never sent": nothing is due (a first start should not send
    a summary of a day the bot did not trade); the caller records the latest slot as the
    starting point (``DailySummarySchedule`` does).
    """
    slot = latest_slot(now, at_utc)
    if last_sent_day is None or last_sent_day >= slot.day:
        return None
    return slot


class DailySummarySchedule:
    """Remembers the last summary sent, persisted in the state folder, and says when one is due.

    Thread-safe; called from the main thread's supervision loop every few seconds.
    """

    def __init__(self, at_utc: str | time, store: StateStore | None = None) -> None:
        self._at = parse_utc_time(at_utc)
        self._store = store
        self._lock = threading.Lock()
        self._last: date | None = None
        if store is not None:
            text = store.load(STATE_NAME, {}).get("last_sent_day")
            if isinstance(text, str):
                try:
                    self._last = date.fromisoformat(text)
                except ValueError:
                    self._last = None  # unreadable: start afresh rather than spam a backlog

    @property
    def at_utc(self) -> time:
        return self._at

    @property
    def last_sent_day(self) -> date | None:
        return self._last

    def set_time(self, at_utc: str | time) -> None:
        """Apply a reloaded ``daily_summary_utc``."""
        with self._lock:
            self._at = parse_utc_time(at_utc)

    def due(self, now: datetime) -> SummarySlot | None:
        with self._lock:
            if self._last is None:
                self._remember(latest_slot(now, self._at).day)
                return None
            return due_slot(now, self._at, self._last)

    def mark_sent(self, slot: SummarySlot) -> None:
        with self._lock:
            if self._last is None or slot.day > self._last:
                self._remember(slot.day)

    def next_due(self, now: datetime) -> datetime:
        return next_slot_time(now, self._at)

    def _remember(self, day: date) -> None:
        self._last = day
        if self._store is not None:
            self._store.save(STATE_NAME, {"last_sent_day": day.isoformat()})


# ------------------------------------------------------------------------------ the summary

@dataclass(frozen=True)
class TradeRef:
    """The best or worst trade of a group."""

    pnl: float
    r: float | None
    symbol: str | None


@dataclass(frozen=True)
class StrategySummary:
    strategy: str
    trades: int
    wins: int
    losses: int
    breakeven: int
    win_rate: float | None  # wins / trades (breakeven is not a win); None without trades
    pnl: float
    avg_r: float | None     # mean R over the trades that have one
    best: TradeRef | None
    worst: TradeRef | None


@dataclass(frozen=True)
class DailySummary:
    day: date
    start: datetime
    end: datetime
    strategies: tuple[StrategySummary, ...]
    total: StrategySummary
    currency: str = "USD"


def _number(trade: Mapping[str, Any], key: str, index: int, required: bool) -> float | None:
    value = trade.get(key)
    if value is None:
        if required:
            raise ValueError(f"trade #{index}: missing '{key}'")
        return None
    if isinstance(value, bool):
        raise ValueError(f"trade #{index}: '{key}' must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"trade #{index}: '{key}' must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"trade #{index}: '{key}' must be finite, got {value!r}")
    return number


def _summarise(strategy: str, rows: Sequence[tuple[float, float | None, str | None]]) -> StrategySummary:
    if not rows:
        return StrategySummary(strategy, 0, 0, 0, 0, None, 0.0, None, None, None)
    pnls = [pnl for pnl, _, _ in rows]
    rs = [r for _, r, _ in rows if r is not None]
    wins = sum(1 for pnl in pnls if pnl > 0)
    losses = sum(1 for pnl in pnls if pnl < 0)
    best = max(rows, key=lambda row: row[0])  # first of equals: earliest trade
    worst = min(rows, key=lambda row: row[0])
    return StrategySummary(
        strategy=strategy, trades=len(rows), wins=wins, losses=losses,
        breakeven=len(rows) - wins - losses, win_rate=wins / len(rows),
        pnl=round(math.fsum(pnls), 10), avg_r=(math.fsum(rs) / len(rs)) if rs else None,
        best=TradeRef(*best), worst=TradeRef(*worst))


def summarize_trades(trades: Iterable[Mapping[str, Any]], slot: SummarySlot,
                     strategies: Sequence[str] = (), currency: str = "USD") -> DailySummary:
    """Per-strategy results of closed trades (dicts with ``strategy``, ``pnl``, optional ``r``
    and ``symbol``). Strategies listed in ``strategies`` appear even without trades."""
    groups: dict[str, list[tuple[float, float | None, str | None]]] = {name: [] for name in strategies}
    everything: list[tuple[float, float | None, str | None]] = []
    for index, trade in enumerate(trades):
        if not isinstance(trade, Mapping):
            raise ValueError(f"trade #{index}: expected a mapping, got {type(trade).__name__}")
        strategy = trade.get("strategy")
        if not isinstance(strategy, str) or not strategy:
            raise ValueError(f"trade #{index}: missing 'strategy'")
        pnl = _number(trade, "pnl", index, required=True)
        r = _number(trade, "r", index, required=False)
        symbol = trade.get("symbol")
        row = (pnl, r, symbol if isinstance(symbol, str) else None)
        groups.setdefault(strategy, []).append(row)  # type: ignore[arg-type]
        everything.append(row)  # type: ignore[arg-type]
    return DailySummary(
        day=slot.day, start=slot.start, end=slot.end,
        strategies=tuple(_summarise(name, rows) for name, rows in sorted(groups.items())),
        total=_summarise("total", everything), currency=currency)


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        moment = datetime.fromtimestamp(value, tz=timezone.utc)  # epoch seconds
    else:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def trades_in_window(trades: Iterable[Mapping[str, Any]], start: datetime, end: datetime,
                     key: str = "closed_at") -> list[Mapping[str, Any]]:
    """The trades whose ``key`` time (datetime, ISO text or epoch seconds; UTC) is in [start, end).

    A trade without a readable time is left out (it cannot be placed in a day)."""
    start, end = _aware_utc(start), _aware_utc(end)
    chosen = []
    for trade in trades:
        moment = _as_utc(trade.get(key))
        if moment is not None and start <= moment < end:
            chosen.append(trade)
    return chosen
