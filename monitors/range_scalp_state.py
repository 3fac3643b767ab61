"""The range-scalp book: every open range trade's exit-manager state, and per-symbol memory.

SOURCE OF TRUTH. This document (``runtime/state/range_scalp.json``, StateStore document
``range_scalp``) is the single source of truth for what the exit manager needs about each open
range trade: its range, setup (strategy), 1 R, the stop as the bot last set it, whether the
breakeven move was made, and the entry context. The trade registry stays the source of truth
for the trade's LIFE (open or closed, fill, volume, P&L); its ``Trade.meta`` keeps the engine's
entry-time copy of the range (the executor stores ``idea.meta``), used only to rebuild a record
that is missing here after a crash between the fill and the save (monitors/range_scalp_recovery.py).

Per symbol it also keeps what must survive a restart so nothing is done twice: the open time of
the last closed M5 bar evaluated (a restarted bot does not evaluate, and so never trades, the
same bar again), the entry times (spacing and the daily cap), and the last exit (cool-down and
no re-entry into an invalidated range). The auto-disable of entries is kept here too, so a
restart does not silently re-enable what the operator has not looked at.

Every change is saved at once (the document is small): the state is copied under the lock and
written outside it; a sequence number makes sure an older copy never overwrites a newer one.
A failed write is reported (``on_save_error``) and retried with the next change; the in-memory
state stays correct meanwhile.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from engines.range_detection import RangeStructure
from engines.range_exits import ExitRecord, RangeHistory, RangeTrade
from monitors.base import DayStart
from state.store import StateFileError, StateStore

log = logging.getLogger(__name__)

DOCUMENT = "range_scalp"
FORMAT_VERSION = 1
ENTRY_MEMORY = timedelta(hours=48)  # entry times older than this are forgotten


@dataclass
class SymbolMemory:
    last_bar: int | None = None  # open time (epoch s, UTC) of the last closed M5 bar evaluated
    entries: list[datetime] = field(default_factory=list)  # entry times, oldest first; replaced, never changed
    last_exit: ExitRecord | None = None


@dataclass(frozen=True)
class DisabledEntries:
    """Entries were switched off by the error policy; ``fingerprint`` is the range_scalp config
    in force then: any change of it re-enables them."""

    at: datetime
    reason: str
    fingerprint: str
    errors: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "reason": self.reason, "fingerprint": self.fingerprint,
                "errors": list(self.errors)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DisabledEntries":
        return cls(datetime.fromisoformat(data["at"]), str(data["reason"]), str(data["fingerprint"]),
                   tuple(data.get("errors", ())))


@dataclass(frozen=True)
class LoadReport:
    source: str  # file, bak, default
    trades: int
    problems: tuple[str, ...] = ()  # each one is state corruption (quarantined file, bad record...)

    @property
    def corrupt(self) -> bool:
        return bool(self.problems)


def _exit_to_json(record: ExitRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"reason": record.reason, "closed_at": record.closed_at.isoformat(),
            "range": record.range.to_dict() if record.range is not None else None}


def _exit_from_json(data: dict[str, Any] | None) -> ExitRecord | None:
    if not data:
        return None
    range_ = RangeStructure.from_dict(data["range"]) if data.get("range") else None
    return ExitRecord(str(data["reason"]), datetime.fromisoformat(data["closed_at"]), range_)


class RangeBook:
    """Thread-safe (one RLock); every mutator saves before it returns."""

    def __init__(self, store: StateStore, save: Callable[[str, dict[str, Any]], None] | None = None,
                 on_save_error: Callable[[Exception], None] | None = None) -> None:
        self.store = store
        self._save_fn = save or store.save
        self.on_save_error = on_save_error or (lambda exc: None)
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        self._trades: dict[int, RangeTrade] = {}
        self._changed_at: dict[int, datetime] = {}
        self._records: dict[int, tuple[RangeTrade, datetime | None, dict[str, Any]]] = {}  # see _trade_record
        self._exit_records: dict[str, tuple[ExitRecord, dict[str, Any] | None]] = {}  # see _exit_record
        self._symbols: dict[str, SymbolMemory] = {}
        self._disabled: DisabledEntries | None = None
        self._day_start = DayStart()  # history() is asked at every M5 bar
        self._histories: dict[str, tuple[datetime, list[datetime], ExitRecord | None, RangeHistory]] = {}
        self._seq = 0
        self._saved_seq = 0
        self.saves = 0
        self.save_errors = 0
        self.last_save_error: str | None = None
        self.loaded = False

    # ------------------------------------------------------------------ loading
    def load(self) -> LoadReport:
        """Replace the in-memory state with the document's. Malformed trade records are
        skipped and reported (the registry copy can rebuild them); a document from a newer bot
        is refused with StateFileError."""
        result = self.store.load_result(DOCUMENT, {})
        data = result.data
        problems: list[str] = []
        if result.quarantined is not None:
            problems.append(f"{DOCUMENT}.json was unparsable; kept aside as {result.quarantined.name}"
                            f" (loaded from {result.source})")
        version = data.get("version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise StateFileError(f"{self.store.path(DOCUMENT)}: format version {version!r} is newer than this "
                                 f"bot understands ({FORMAT_VERSION}); upgrade the bot or move the file away")
        trades: dict[int, RangeTrade] = {}
        changed: dict[int, datetime] = {}
        for key, record in dict(data.get("trades") or {}).items():
            try:
                ticket = int(key)
                record = dict(record)
                record.setdefault("ticket", ticket)
                trade = RangeTrade.from_dict(record)
                if trade.ticket != ticket:
                    raise ValueError(f"record says ticket {trade.ticket}")
                trades[ticket] = trade
                if record.get("last_state_change"):
                    changed[ticket] = datetime.fromisoformat(record["last_state_change"])
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                problems.append(f"trade record {key!r} skipped: {exc}")
        symbols: dict[str, SymbolMemory] = {}
        for symbol, memo in dict(data.get("symbols") or {}).items():
            try:
                symbols[str(symbol)] = SymbolMemory(
                    last_bar=None if memo.get("last_bar") is None else int(memo["last_bar"]),
                    entries=[datetime.fromisoformat(t) for t in memo.get("entries", ())],
                    last_exit=_exit_from_json(memo.get("last_exit")))
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                problems.append(f"memory of {symbol!r} skipped: {exc}")
        disabled = None
        if data.get("entries_disabled"):
            try:
                disabled = DisabledEntries.from_json(data["entries_disabled"])
            except (TypeError, ValueError, KeyError) as exc:
                problems.append(f"entries_disabled record unreadable: {exc}")
        with self._lock:
            self._trades, self._changed_at, self._symbols, self._disabled = trades, changed, symbols, disabled
            self._records, self._exit_records = {}, {}
            self.loaded = True
        for problem in problems:
            log.error("range_scalp state: %s", problem)
        return LoadReport(result.source, len(trades), tuple(problems))

    # ------------------------------------------------------------------ queries
    def has_open_trades(self) -> bool:
        with self._lock:
            return bool(self._trades)

    def open_trades(self, symbol: str | None = None) -> list[RangeTrade]:
        with self._lock:
            return self._open_trades(symbol)

    def _open_trades(self, symbol: str | None) -> list[RangeTrade]:
        """``open_trades()`` for a caller that holds the lock."""
        return [t for t in self._trades.values() if symbol is None or t.symbol == symbol]

    def get(self, ticket: int) -> RangeTrade | None:
        with self._lock:
            return self._trades.get(ticket)

    def tickets(self) -> set[int]:
        with self._lock:
            return set(self._trades)

    def last_bar(self, symbol: str) -> int | None:
        with self._lock:
            memo = self._symbols.get(symbol)
            return memo.last_bar if memo else None

    def history(self, symbol: str, now: datetime) -> RangeHistory:
        """What the engine's spacing, daily cap and re-entry rules need for ``symbol``.

        Asked at every M5 bar, and it reads only the day's start, the symbol's entry list and
        its last exit: the (frozen) answer is handed out again while all three are the same.
        An entry list is replaced at each change, never changed in place (``register``), and
        ``load`` builds new lists, so the list object itself says whether the entries changed."""
        with self._lock:
            return self._history(symbol, now)

    def _history(self, symbol: str, now: datetime) -> RangeHistory:
        """``history()`` for a caller that holds the lock."""
        day_start = self._day_start(now)
        memo = self._symbols.get(symbol) or SymbolMemory()
        entries, last_exit = memo.entries, memo.last_exit
        cached = self._histories.get(symbol)
        if cached is not None and cached[1] is entries and cached[2] is last_exit and cached[0] == day_start:
            return cached[3]
        today = sum(1 for t in entries if t >= day_start)
        history = RangeHistory(entries[-1] if entries else None, today, last_exit)
        self._histories[symbol] = (day_start, entries, last_exit, history)
        return history

    def entry_facts(self, symbol: str, now: datetime) -> tuple[DisabledEntries | None, int, RangeHistory]:
        """``(entries_disabled, len(open_trades(symbol)), history(symbol, now))`` read under one
        hold of the lock: what an entry check asks the book at every M5 bar (one state, and one
        lock round instead of three)."""
        with self._lock:
            return self._disabled, len(self._open_trades(symbol)), self._history(symbol, now)

    @property
    def entries_disabled(self) -> DisabledEntries | None:
        with self._lock:
            return self._disabled

    # ------------------------------------------------------------------ changes (each one saved)
    def register(self, trade: RangeTrade, entered_at: datetime | None, now: datetime) -> None:
        """A new (or adopted, ``entered_at`` None) open range trade."""
        if trade.ticket is None:
            raise ValueError("a range trade needs its ticket to be registered")
        with self._lock:
            if trade.ticket in self._trades:
                raise ValueError(f"range trade {trade.ticket} is already registered")
            self._trades[trade.ticket] = trade
            self._changed_at[trade.ticket] = now
            if entered_at is not None:
                memo = self._memo(trade.symbol)
                memo.entries = [t for t in memo.entries if t >= entered_at - ENTRY_MEMORY] + [entered_at]
            self._changed()
        self.save()

    def update(self, trade: RangeTrade, now: datetime) -> None:
        with self._lock:
            if trade.ticket not in self._trades:
                raise KeyError(f"range trade {trade.ticket} is not registered")
            self._trades[trade.ticket] = trade
            self._changed_at[trade.ticket] = now
            self._changed()
        self.save()

    def close(self, ticket: int, exit_record: ExitRecord) -> RangeTrade | None:
        """Remove a closed trade and remember the exit for the re-entry rule, in ONE save.
        None when it was not registered (already settled: never settle twice)."""
        with self._lock:
            trade = self._trades.pop(ticket, None)
            if trade is None:
                return None
            self._changed_at.pop(ticket, None)
            memo = self._memo(trade.symbol)
            if memo.last_exit is None or memo.last_exit.closed_at <= exit_record.closed_at:
                memo.last_exit = exit_record
            self._changed()
        self.save()
        return trade

    def set_last_bar(self, symbol: str, bar_time: int) -> None:
        """Called at every M5 bar: the change and its document are made under one hold of the
        lock (what ``save`` would copy right after), then written as ``save`` writes them."""
        with self._lock:
            self._memo(symbol).last_bar = int(bar_time)
            self._changed()
            seq, document = self._seq, self._document()
        self._write(seq, document)

    def disable_entries(self, state: DisabledEntries) -> None:
        with self._lock:
            self._disabled = state
            self._changed()
        self.save()

    def enable_entries(self) -> DisabledEntries | None:
        with self._lock:
            was, self._disabled = self._disabled, None
            self._changed()
        self.save()
        return was

    # ------------------------------------------------------------------ persistence
    def _memo(self, symbol: str) -> SymbolMemory:
        """The symbol's memory, made the first time (not a new SymbolMemory per call, as
        ``setdefault`` would build at every M5 bar's ``set_last_bar``)."""
        memo = self._symbols.get(symbol)
        if memo is None:
            memo = self._symbols[symbol] = SymbolMemory()
        return memo

    def _changed(self) -> None:
        self._seq += 1

    def _trade_record(self, ticket: int, trade: RangeTrade) -> dict[str, Any]:
        """The trade's JSON record, built again only when the trade (a new object at every
        change) or its change time is new: the book is saved at every M5 bar, its trades
        change rarely. Saved documents are never modified, so they may share a record."""
        changed = self._changed_at.get(ticket)
        cached = self._records.get(ticket)
        if cached is not None and cached[0] is trade and cached[1] == changed:
            return cached[2]
        record = trade.to_dict()
        record["last_state_change"] = changed.isoformat() if changed else None
        self._records[ticket] = (trade, changed, record)
        return record

    def _exit_record(self, symbol: str, record: ExitRecord | None) -> dict[str, Any] | None:
        """``_exit_to_json(record)``, kept while the symbol's last exit is the same (frozen) record."""
        if record is None:
            return None
        cached = self._exit_records.get(symbol)
        if cached is None or cached[0] is not record:
            cached = self._exit_records[symbol] = (record, _exit_to_json(record))
        return cached[1]

    def document(self) -> dict[str, Any]:
        """A JSON-ready copy of the state (built under the lock; trade records are shared with
        the last documents until the trade changes, see ``_trade_record``)."""
        with self._lock:
            return self._document()

    def _document(self) -> dict[str, Any]:
        """``document()`` for a caller that holds the lock."""
        if len(self._records) > len(self._trades):  # forget the records of closed trades
            self._records = {t: r for t, r in self._records.items() if t in self._trades}
        trades = {str(ticket): self._trade_record(ticket, trade) for ticket, trade in self._trades.items()}
        symbols = {s: {"last_bar": m.last_bar, "entries": [t.isoformat() for t in m.entries],
                       "last_exit": self._exit_record(s, m.last_exit)} for s, m in self._symbols.items()}
        return {"version": FORMAT_VERSION, "trades": trades, "symbols": symbols,
                "entries_disabled": self._disabled.to_json() if self._disabled else None}

    def save(self) -> bool:
        """Write the current state unless a newer copy was already written; False on failure."""
        with self._lock:
            seq, document = self._seq, self._document()
        return self._write(seq, document)

    def _write(self, seq: int, document: dict[str, Any]) -> bool:
        """Write ``document``, the state at change ``seq``, unless a newer copy was already
        written; False on failure (reported to ``on_save_error`` outside the locks)."""
        failure: Exception | None = None
        with self._save_lock:
            if seq <= self._saved_seq and self.saves:
                return True
            try:
                self._save_fn(DOCUMENT, document)
                self._saved_seq = seq
                self.saves += 1
            except Exception as exc:  # disk full, permissions: report, keep running, retry next change
                failure = exc
                self.save_errors += 1
                self.last_save_error = f"{type(exc).__name__}: {exc}"
        if failure is None:
            return True
        log.error("range_scalp state could not be saved: %s", self.last_save_error)
        try:  # outside the save lock: the handler may change (and so save) the book again
            self.on_save_error(failure)
        except Exception:
            log.exception("range_scalp save-error handler failed")
        return False


__all__ = ["RangeBook", "SymbolMemory", "DisabledEntries", "LoadReport", "DOCUMENT", "FORMAT_VERSION"]
