"""Position sizing and exposure limits, checked and reserved atomically.

Two monitors may want to open at the same instant. ``check_and_reserve`` checks every limit
and records a pending reservation under one lock hold, so the second caller already sees the
first one's reservation: limits can never be exceeded by a race. A reservation is confirmed
when the trade is registered (the registry then carries it) or released when the order fails.
"""
from __future__ import annotations

import itertools
import logging
import math
import threading
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, Callable, Iterable

from config.models import RiskConfig
from execution.broker import AccountInfo, SymbolSpec
from state.registry import Trade, TradeRegistry
from state.store import StateStore

log = logging.getLogger(__name__)

LEDGER_DOCUMENT = "risk_ledger"
_ENTRY_TIME = itemgetter(0)  # an entry (time, client id) by its time


@dataclass(frozen=True)
class Sizing:
    volume: float
    risk_money: float
    loss_per_lot: float
    reason: str | None = None  # set when no trade is possible

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class Reservation:
    id: int
    strategy: str
    symbol: str
    volume: float
    risk_money: float
    created_at: datetime


@dataclass(frozen=True)
class RiskDecision:
    approved: bool
    reasons: tuple[str, ...]
    reservation: Reservation | None = None
    sizing: Sizing | None = None


def size_position(config: RiskConfig, spec: SymbolSpec, equity: float, entry: float, sl: float) -> Sizing:
    """Lots for a trade: ``fixed`` lots, or ``risk_percent`` of equity lost if the SL is hit.

    Loss per lot = (stop distance / tick size) x tick value (the broker's money value of one
    tick for one lot, in the account currency). The volume is rounded DOWN to the step, so the
    trade never risks more than asked; below the minimum volume there is no trade.
    """
    distance = abs(entry - sl)
    if distance <= 0 or not math.isfinite(distance):
        return Sizing(0.0, 0.0, 0.0, f"stop distance {distance} is not positive")
    if spec.tick_size <= 0 or spec.tick_value <= 0:
        return Sizing(0.0, 0.0, 0.0, f"{spec.name}: tick size/value unknown ({spec.tick_size}/{spec.tick_value})")
    loss_per_lot = distance / spec.tick_size * spec.tick_value
    if config.sizing == "fixed":
        raw = config.fixed_lots
    else:
        raw = equity * config.risk_percent / 100.0 / loss_per_lot
    steps = math.floor(raw / spec.volume_step + 1e-9)
    volume = round(steps * spec.volume_step, 8)
    volume = min(volume, spec.volume_max)
    if volume + 1e-12 < spec.volume_min:
        return Sizing(0.0, 0.0, loss_per_lot,
                      f"sizing gives {raw:.4f} lots, below the minimum {spec.volume_min} for {spec.name} "
                      f"(stop distance {distance:g}, {config.sizing})")
    return Sizing(volume, round(volume * loss_per_lot, 2), loss_per_lot)


@dataclass
class _Ledger:
    """Entry times per strategy (for the hourly and daily caps), persisted across restarts."""

    entries: dict[str, list[str]] = field(default_factory=dict)


def _read_ledger(ledger: dict[str, Any]) -> dict[str, list[tuple[datetime, str]]]:
    """Entry times per strategy with their client ids; the older format (times only) too. An
    entry that cannot be read is skipped with a warning naming it (the registry's trades are
    counted again at start, so a trade it stood for is not lost from the caps)."""
    out: dict[str, list[tuple[datetime, str]]] = {}
    for strategy, items in (ledger.get("entries") or {}).items():
        entries = []
        for item in items or ():
            try:
                when, client_id = (item, "") if isinstance(item, str) else (item[0], str(item[1] or ""))
                entries.append((datetime.fromisoformat(when), client_id))
            except (TypeError, ValueError, IndexError, KeyError):
                log.warning("%s.json: entries.%s: unreadable entry %r skipped (expected [ISO time, client id])",
                            LEDGER_DOCUMENT, strategy, item)
        out[strategy] = sorted(entries, key=lambda entry: entry[0])
    return out


class RiskManager:
    def __init__(self, config: Callable[[], RiskConfig], registry: TradeRegistry, store: StateStore) -> None:
        self._config = config
        self.registry = registry
        self.store = store
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Reservation] = {}
        self._entries: dict[str, list[tuple[datetime, str]]] = _read_ledger(
            store.load(LEDGER_DOCUMENT, {"entries": {}}))
        self.rejections: dict[str, int] = {}
        self._pairs: dict[tuple[datetime, str], tuple[datetime, list[str]]] = {}  # see _ledger
        self._record_registered()

    # ------------------------------------------------------------------ counting
    def _open_counts(self) -> tuple[int, dict[str, int], dict[str, int]]:
        total = 0
        per_symbol: dict[str, int] = {}
        per_strategy: dict[str, int] = {}
        items = [(t.symbol, t.strategy) for t in self.registry.open_trades()]
        items += [(r.symbol, r.strategy) for r in self._pending.values()]
        for symbol, strategy in items:
            total += 1
            per_symbol[symbol] = per_symbol.get(symbol, 0) + 1
            per_strategy[strategy] = per_strategy.get(strategy, 0) + 1
        return total, per_symbol, per_strategy

    def _entries_since(self, strategy: str, since: datetime) -> int:
        recorded = sum(1 for t, _ in self._entries.get(strategy, []) if t >= since)
        pending = sum(1 for r in self._pending.values() if r.strategy == strategy)
        return recorded + pending

    # ------------------------------------------------------------------ the check
    def check_and_reserve(self, strategy: str, symbol: str, spec: SymbolSpec, account: AccountInfo,
                          entry: float, sl: float, now: datetime) -> RiskDecision:
        config = self._config()
        sizing = size_position(config, spec, account.equity, entry, sl)
        if not sizing.ok:
            return self._reject(sizing.reason or "sizing failed", sizing)
        with self._lock:
            total, per_symbol, per_strategy = self._open_counts()
            reasons = []
            if total >= config.max_open_total:
                reasons.append(f"open positions {total} at the limit of {config.max_open_total}")
            if per_symbol.get(symbol, 0) >= config.max_open_per_symbol:
                reasons.append(f"{symbol} has {per_symbol[symbol]} open, limit {config.max_open_per_symbol}")
            if per_strategy.get(strategy, 0) >= config.max_open_per_strategy:
                reasons.append(f"{strategy} has {per_strategy[strategy]} open, limit {config.max_open_per_strategy}")
            last_hour = self._entries_since(strategy, now - timedelta(hours=1))
            if last_hour >= config.max_trades_per_hour:
                reasons.append(f"{strategy} made {last_hour} trades in the last hour, limit {config.max_trades_per_hour}")
            day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            today = self._entries_since(strategy, day_start)
            if today >= config.max_trades_per_day:
                reasons.append(f"{strategy} made {today} trades today (UTC), limit {config.max_trades_per_day}")
            margin_free = account.margin_free
            if margin_free <= 0:
                reasons.append(f"no free margin ({margin_free:.2f})")
            if reasons:
                return self._reject("; ".join(reasons), sizing)
            reservation = Reservation(next(self._ids), strategy, symbol, sizing.volume, sizing.risk_money, now)
            self._pending[reservation.id] = reservation
        return RiskDecision(True, (f"size {sizing.volume} lots risking {sizing.risk_money:.2f}",),
                            reservation, sizing)

    def _reject(self, reason: str, sizing: Sizing | None) -> RiskDecision:
        key = reason.split(" ")[0]
        self.rejections[key] = self.rejections.get(key, 0) + 1
        return RiskDecision(False, (reason,), None, sizing)

    def confirm(self, reservation: Reservation, filled_at: datetime, trade: Trade | None = None,
                client_id: str = "") -> None:
        """The order filled: register ``trade`` and drop the reservation in one step under the
        lock, so no other check ever sees the slot counted twice or not at all. The entry is
        counted once per client id (an adoption may report the same fill again)."""
        with self._lock:
            if trade is not None:
                self.registry.add(trade)
            self._pending.pop(reservation.id, None)
            self._add_entry(reservation.strategy, filled_at, client_id or (trade.client_id if trade else ""))
            ledger = self._ledger()
        self.store.save(LEDGER_DOCUMENT, ledger)

    def record_entry(self, strategy: str, opened_at: datetime, client_id: str) -> bool:
        """Count an entry the executor did not confirm: a position adopted by the reconciler
        (the bot stopped between the fill and its registration). Without this, the hourly and
        daily trade caps would not see it. False when the client id is counted already."""
        return self.record_entries([(strategy, opened_at, client_id)]) == 1

    def record_entries(self, entries: Iterable[tuple[str, datetime, str]]) -> int:
        """``record_entry`` for several (strategy, opened at, client id) at once, with one ledger
        write (a recovery may adopt dozens). Returns how many were new."""
        with self._lock:
            added = sum(self._add_entry(strategy, at, client_id) for strategy, at, client_id in entries)
            ledger = self._ledger() if added else None
        if ledger is not None:
            self.store.save(LEDGER_DOCUMENT, ledger)
        return added

    def _record_registered(self) -> None:
        """At start: count the registry's trades of the last two days that the ledger misses (a
        stop between the registry's write and the ledger's loses the ledger's line)."""
        trades = self.registry.open_trades() + self.registry.closed_trades()
        added = False
        for trade in trades:
            try:
                opened = datetime.fromisoformat(trade.opened_at)
            except (TypeError, ValueError):
                continue
            added = self._add_entry(trade.strategy, opened, trade.client_id) or added
        if added:
            self.store.save(LEDGER_DOCUMENT, self._ledger())

    def _add_entry(self, strategy: str, at: datetime, client_id: str) -> bool:
        """Caller holds the lock (or is the constructor). Keeps two days per strategy.

        The entries are kept sorted by time (``_read_ledger`` sorts them, and this keeps them so):
        the newest is the last, a new entry goes after those of the same time (where a stable sort
        of the appended list puts it), and the ones kept after the cutoff are a tail."""
        entries = self._entries.setdefault(strategy, [])
        if client_id and any(known == client_id for _, known in entries):
            return False
        newest = at if not entries or at >= entries[-1][0] else entries[-1][0]
        cutoff = newest - timedelta(days=2)
        if at < cutoff:
            return False
        insort(entries, (at, client_id), key=_ENTRY_TIME)
        self._entries[strategy] = entries[bisect_left(entries, cutoff, key=_ENTRY_TIME):]
        return True

    def _ledger(self) -> dict[str, Any]:
        """The ledger document (caller holds the lock). Each entry's ``[ISO time, client id]`` is
        made once and shared by the documents after it: every fill rewrites up to two days of
        entries, and a saved document is never changed. A pair is reused only for the very
        datetime object it was printed from (equal instants in other zones print differently)."""
        known, kept = self._pairs, {}
        document: dict[str, list[list[str]]] = {}
        for strategy, entries in self._entries.items():
            pairs = document[strategy] = []
            for entry in entries:
                cached = known.get(entry)
                if cached is None or cached[0] is not entry[0]:
                    cached = (entry[0], [entry[0].isoformat(), entry[1]])
                kept[entry] = cached
                pairs.append(cached[1])
        self._pairs = kept  # only the entries still kept
        return {"entries": document}

    def release(self, reservation: Reservation) -> None:
        with self._lock:
            self._pending.pop(reservation.id, None)

    def pending(self) -> list[Reservation]:
        with self._lock:
            return list(self._pending.values())

    def health(self) -> dict[str, Any]:
        total, per_symbol, per_strategy = self._open_counts()
        return {"open_total": total, "open_per_symbol": per_symbol, "open_per_strategy": per_strategy,
                "pending_reservations": len(self._pending), "rejections": dict(self.rejections)}
