"""The trade registry: every trade the bot opened, while it is open and after it closed.

One document per strategy (``trades_<strategy>.json``) holds its open trades by ticket and its
recent closed trades. Every change is written synchronously before the call returns: the
registry is what a restart recovers from, so it must never lag the broker by more than the
one trade being changed. Tickets are integers in memory and strings in JSON.
"""
from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Callable, Iterator

from engines.frozen import direct_init
from state.store import StateStore

STRATEGIES = ("micro_scalp", "range_scalp", "order_flow")
CLOSED_KEPT = 500


@direct_init  # a new Trade at every registry change (update, close, each stop move): a third fewer instructions
@dataclass(frozen=True)
class Trade:
    ticket: int
    client_id: str
    strategy: str
    symbol: str
    side: str
    volume: float
    entry: float
    sl: float
    tp: float
    initial_sl: float
    magic: int
    opened_at: str  # ISO UTC
    reasons: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    status: str = "open"
    exit_price: float | None = None
    closed_at: str | None = None
    pnl: float | None = None
    r: float | None = None
    close_reason: str | None = None
    partial_closes: tuple[dict[str, Any], ...] = ()

    @property
    def risk_distance(self) -> float:
        return abs(self.entry - self.initial_sl)

    def r_multiple(self, exit_price: float) -> float | None:
        """Price-based R: the move in the trade's favour in units of its initial stop distance."""
        if self.risk_distance <= 0:
            return None
        move = exit_price - self.entry if self.side == "buy" else self.entry - exit_price
        return round(move / self.risk_distance, 4)

    def to_json(self) -> dict[str, Any]:
        """``asdict`` (a deep copy: the caller may change it), with ``reasons`` and
        ``partial_closes`` as lists of the trade's own items. Built field by field: ``asdict``
        goes through ``copy.deepcopy`` value by value, about 60 us for a trade's meta and
        reasons, at every registry write of a new Trade object. Strings, numbers and None are
        kept as they are without a call to ``_copied`` each (its first test)."""
        data: dict[str, Any] = {}
        for name in _TRADE_FIELDS:
            value = None if name in _AS_LISTS else getattr(self, name)
            data[name] = value if type(value) in _ATOMIC else _copied(value)
        data["reasons"] = list(self.reasons)
        data["partial_closes"] = list(self.partial_closes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Trade":
        data = dict(data)
        data["ticket"] = int(data["ticket"])
        data["reasons"] = tuple(data.get("reasons", ()))
        data["partial_closes"] = tuple(data.get("partial_closes", ()))
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


_TRADE_FIELDS = tuple(f.name for f in fields(Trade))
_AS_LISTS = frozenset({"reasons", "partial_closes"})  # replaced by plain lists in to_json
_ATOMIC = (str, int, float, bool, type(None))


@dataclass
class _Box:
    value: Any


def _copied(value: Any) -> Any:
    """What ``asdict`` makes of a field's value: plain JSON-like values (str, numbers, bool, None,
    and dicts, lists and tuples of them) copied here directly; anything else through ``asdict``
    itself (dataclasses, named tuples, subclasses, other objects), so the result is the same."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is dict:  # a trade's meta: mostly numbers and strings, kept without a call each
        return {k if type(k) in _ATOMIC else _copied(k): v if type(v) in _ATOMIC else _copied(v)
                for k, v in value.items()}
    if kind is list:
        return [_copied(v) for v in value]
    if kind is tuple:
        return tuple(_copied(v) for v in value)
    return asdict(_Box(value))["value"]


class TradeRegistry:
    def __init__(self, store: StateStore, on_change: Callable[[str, Trade], None] | None = None) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._open: dict[str, dict[int, Trade]] = {s: {} for s in STRATEGIES}
        self._closed: dict[str, list[Trade]] = {s: [] for s in STRATEGIES}
        self._closed_versions: dict[str, int] = {s: 0 for s in STRATEGIES}  # bumped whenever _closed changes
        self._on_change = on_change or (lambda event, trade: None)
        self._local = threading.local()  # per-thread batch depth and the documents it left unsaved
        self._json: dict[int, tuple[Trade, dict[str, Any]]] = {}  # id(trade) -> (trade, its to_json())
        self._closed_json: dict[str, tuple[int, list[dict[str, Any]]]] = {}  # strategy -> (version, closed list)
        self._recent: tuple[tuple[int, int], list[Trade]] | None = None
        self.load()

    @staticmethod
    def document(strategy: str) -> str:
        return f"trades_{strategy}"

    def load(self) -> None:
        with self._lock:
            for strategy in STRATEGIES:
                data = self.store.load(self.document(strategy), {"open": {}, "closed": []})
                self._open[strategy] = {int(t): Trade.from_json(v) for t, v in data.get("open", {}).items()}
                self._closed[strategy] = [Trade.from_json(v) for v in data.get("closed", [])]
                self._closed_versions[strategy] += 1

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Defer this thread's writes to one per strategy document at the end of the block.

        For bulk rebuilds (the reconciler recording many trades after a long outage): hundreds
        of changes become a few writes. Other threads keep writing at once (their writes carry
        the batch's changes made so far too). A crash inside a batch loses only what the broker
        still knows, and the next reconciliation records it again."""
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth == 0:
            local.dirty = set()
        local.depth = depth + 1
        try:
            yield
        finally:
            local.depth -= 1
            if local.depth == 0:
                dirty, local.dirty = local.dirty, set()
                with self._lock:
                    for strategy in sorted(dirty):
                        self._write(strategy)

    def _save(self, strategy: str) -> None:
        if getattr(self._local, "depth", 0) > 0:
            self._local.dirty.add(strategy)
            return
        self._write(strategy)

    def _write(self, strategy: str) -> None:
        doc = {"open": {str(t): self._encoded(trade) for t, trade in self._open[strategy].items()},
               "closed": self._encoded_closed(strategy)}
        self.store.save(self.document(strategy), doc)
        if len(self._json) > 4 * CLOSED_KEPT + 100:  # forget trades no document holds any more
            kept = {id(t) for trades in self._open.values() for t in trades.values()}
            kept.update(id(t) for closed in self._closed.values() for t in closed[-CLOSED_KEPT:])
            self._json = {key: entry for key, entry in self._json.items() if key in kept}

    def _encoded_closed(self, strategy: str) -> list[dict[str, Any]]:
        """The document's closed list, rebuilt only when the closed trades change: every change of
        an open trade (each trailing-stop move) rewrites the document with up to CLOSED_KEPT closed
        trades. A list once handed out is never changed (a replay store keeps the reference)."""
        version = self._closed_versions[strategy]
        cached = self._closed_json.get(strategy)
        if cached is None or cached[0] != version:
            cached = self._closed_json[strategy] = (
                version, [self._encoded(t) for t in self._closed[strategy][-CLOSED_KEPT:]])
        return cached[1]

    def _encoded(self, trade: Trade) -> dict[str, Any]:
        """``trade.to_json()``, made once per Trade object: a write re-encodes every kept closed
        trade (up to CLOSED_KEPT), and a Trade never changes (changes make a new object). The
        cached dicts are only read (encoded), never modified."""
        entry = self._json.get(id(trade))
        if entry is None or entry[0] is not trade:
            entry = self._json[id(trade)] = (trade, trade.to_json())
        return entry[1]

    def _check_strategy(self, strategy: str) -> None:
        if strategy not in self._open:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")

    # ------------------------------------------------------------------ changes
    def add(self, trade: Trade) -> None:
        self._check_strategy(trade.strategy)
        with self._lock:
            for trades in self._open.values():
                if trade.ticket in trades:
                    raise ValueError(f"ticket {trade.ticket} is already registered")
            self._open[trade.strategy][trade.ticket] = trade
            self._save(trade.strategy)
        self._on_change("opened", trade)

    def update(self, ticket: int, **changes: Any) -> Trade:
        with self._lock:
            trade = self.get(ticket)
            if trade is None:
                raise KeyError(f"ticket {ticket} is not an open trade")
            if "meta" in changes:
                changes["meta"] = {**trade.meta, **changes["meta"]}
            updated = replace(trade, **changes)
            self._open[trade.strategy][ticket] = updated
            self._save(trade.strategy)
        self._on_change("updated", updated)
        return updated

    def close(self, ticket: int, exit_price: float, closed_at: datetime, pnl: float | None,
              reason: str) -> Trade:
        with self._lock:
            trade = self.get(ticket)
            if trade is None:
                raise KeyError(f"ticket {ticket} is not an open trade")
            closed = replace(trade, status="closed", exit_price=exit_price, closed_at=closed_at.isoformat(),
                             pnl=None if pnl is None else round(pnl, 2), r=trade.r_multiple(exit_price),
                             close_reason=reason)
            del self._open[trade.strategy][ticket]
            self._closed[trade.strategy].append(closed)
            self._closed[trade.strategy] = self._closed[trade.strategy][-CLOSED_KEPT:]
            self._closed_versions[trade.strategy] += 1
            self._save(trade.strategy)
        self._on_change("closed", closed)
        return closed

    # ------------------------------------------------------------------ queries
    def get(self, ticket: int) -> Trade | None:
        with self._lock:
            for trades in self._open.values():
                if ticket in trades:
                    return trades[ticket]
        return None

    def open_trades(self, strategy: str | None = None, symbol: str | None = None) -> list[Trade]:
        if strategy and not self._open[strategy]:
            # The monitors' question, several times per step, and the pool is mostly empty: that
            # answer is read without the lock. Reading a dict's size is atomic, and an answer
            # under the lock could be outdated the moment the lock is released just the same.
            return []
        with self._lock:
            if strategy:
                pool = self._open[strategy]
                return list(pool.values()) if symbol is None else [t for t in pool.values() if t.symbol == symbol]
            return [t for pool in self._open.values() for t in pool.values() if symbol is None or t.symbol == symbol]

    def closed_trades(self, strategy: str | None = None) -> list[Trade]:
        with self._lock:
            if strategy:
                return list(self._closed[strategy])
            return sorted((t for pool in self._closed.values() for t in pool), key=lambda t: t.closed_at or "")

    def would_keep_closed(self, strategy: str, closed_at: datetime) -> bool:
        """Whether a trade of ``strategy`` closed at ``closed_at`` would still be among the kept
        closed trades had it been recorded: the pool is not full, or the trade closed after the
        oldest one kept. The reconciler asks it to tell a close the registry trimmed long ago
        (never record it again) from one a crash lost before the registry's write."""
        with self._lock:
            pool = self._closed[strategy]
            if len(pool) < CLOSED_KEPT:
                return True
            oldest = pool[0].closed_at
            return oldest is None or closed_at.isoformat() > oldest

    def recent_closed(self, limit: int) -> list[Trade]:
        """The newest ``limit`` closed trades of all strategies, oldest first, without sorting every
        kept trade of every strategy at each call: the last ``limit`` of each strategy's pool,
        merged by close time. That is the tail of ``closed_trades()`` as long as each pool is in
        close-time order, i.e. trades are recorded closed in the order they closed (the reconciler
        and the exit passes do; a late deal could only move a trade at the ``limit`` boundary).
        Cached until the next close: the trading guard asks at every step, and a long run keeps up
        to 500 closed trades per strategy."""
        with self._lock:
            key = (sum(self._closed_versions.values()), limit)  # versions only grow
            if self._recent is None or self._recent[0] != key:
                newest = (t for pool in self._closed.values() for t in pool[-limit:])
                self._recent = (key, sorted(newest, key=lambda t: t.closed_at or "")[-limit:])
            return list(self._recent[1])

    def closed_version(self, strategy: str) -> int:
        """A number that changes whenever the strategy's closed trades change: readers that
        scan ``closed_trades`` every step can skip the copy while it is unchanged."""
        return self._closed_versions[strategy]

    def by_client_id(self, client_id: str) -> Trade | None:
        with self._lock:
            for pool in self._open.values():
                for trade in pool.values():
                    if trade.client_id == client_id:
                        return trade
        return None

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy for health.json and status."""
        with self._lock:
            return {s: [t.to_json() for t in pool.values()] for s, pool in copy.copy(self._open).items()}
