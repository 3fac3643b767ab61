"""The simulated broker's book: balance, open positions, deal and order history, ticket counters.

It lives in its own JSON file, apart from the bot's state, so a killed bot finds its positions
again on restart exactly as it would with a real terminal. Every change is written with
``state.store.atomic_write_json`` (temp file, fsync, replace, ``.bak``) by the terminal; loading
falls back to ``.bak`` when the file is damaged. All times are virtual UTC milliseconds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from execution.simterminal import constants as c
from state.store import atomic_write_bytes, load_json_with_fallback

BOOK_SCHEMA_VERSION = 1
FIRST_ORDER_TICKET = 50_000_001
FIRST_DEAL_TICKET = 30_000_001


class BookError(ValueError):
    """The book file cannot be used with this terminal (other account, newer schema...)."""


@dataclass
class Position:
    ticket: int
    symbol: str
    type: int
    volume: float
    price_open: float
    sl: float
    tp: float
    time_ms: int
    time_update_ms: int
    magic: int
    reason: int
    comment: str
    margin: float
    external_id: str = ""

    @property
    def identifier(self) -> int:
        return self.ticket


@dataclass
class Deal:
    ticket: int
    order: int
    time_ms: int
    type: int
    entry: int
    magic: int
    position_id: int
    reason: int
    volume: float
    price: float
    commission: float
    swap: float
    profit: float
    fee: float
    symbol: str
    comment: str
    external_id: str = ""


@dataclass
class Order:
    ticket: int
    time_setup_ms: int
    time_done_ms: int
    type: int
    type_time: int
    type_filling: int
    state: int
    magic: int
    position_id: int
    reason: int
    volume_initial: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    symbol: str
    comment: str
    external_id: str = ""


def _from_dict(cls: type, raw: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    missing = names - set(raw) - {"external_id"}
    if missing:
        raise BookError(f"{cls.__name__} record lacks {', '.join(sorted(missing))}")
    return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass
class Book:
    login: int
    currency: str
    anchor_ms: int
    last_eval_ms: int
    balance: float
    next_order: int = FIRST_ORDER_TICKET
    next_deal: int = FIRST_DEAL_TICKET
    positions: dict[int, Position] = field(default_factory=dict)
    deals: list[Deal] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    # state a terminal built on this book keeps beside it (execution.paper_terminal stores its
    # per-position tick marks here); written only when not empty, so plain sim books are unchanged
    extra: dict[str, Any] = field(default_factory=dict)
    # deals and orders never change once recorded: their JSON is encoded once and reused, so
    # saving after each trade stays cheap however long the history grows
    _deal_text: list[str] = field(default_factory=list, repr=False, compare=False)
    _order_text: list[str] = field(default_factory=list, repr=False, compare=False)

    def new_order_ticket(self) -> int:
        ticket = self.next_order
        self.next_order += 1
        return ticket

    def new_deal_ticket(self) -> int:
        ticket = self.next_deal
        self.next_deal += 1
        return ticket

    def closed_position_ids(self) -> set[int]:
        return {d.position_id for d in self.deals if d.position_id and d.position_id not in self.positions}

    # --- persistence ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return json.loads(self.encode())

    def encode(self) -> bytes:
        """The book as compact JSON (history records encoded once, see above)."""
        for records, cache in ((self.deals, self._deal_text), (self.orders, self._order_text)):
            if len(cache) > len(records):
                cache.clear()
            cache.extend(_encode(r) for r in records[len(cache):])
        head = {
            "schema_version": BOOK_SCHEMA_VERSION,
            "login": self.login,
            "currency": self.currency,
            "anchor_ms": self.anchor_ms,
            "last_eval_ms": self.last_eval_ms,
            "balance": self.balance,
            "next_order": self.next_order,
            "next_deal": self.next_deal,
            "positions": [vars(p) for p in sorted(self.positions.values(), key=lambda p: p.ticket)],
        }
        if self.extra:
            head["extra"] = self.extra
        text = (json.dumps(head, separators=(",", ":"))[:-1]
                + ',"deals":[' + ",".join(self._deal_text) + "]"
                + ',"orders":[' + ",".join(self._order_text) + "]}\n")
        return text.encode("utf-8")

    @classmethod
    def from_json(cls, raw: dict[str, Any], path: Path) -> "Book":
        if not isinstance(raw, dict):
            raise BookError(f"{path}: expected a JSON object")
        version = raw.get("schema_version")
        if version != BOOK_SCHEMA_VERSION:
            raise BookError(f"{path}: schema_version {version!r} is not {BOOK_SCHEMA_VERSION}")
        try:
            positions = [_from_dict(Position, p) for p in raw["positions"]]
            extra = raw.get("extra", {})
            if not isinstance(extra, dict):
                raise TypeError("'extra' is not an object")
            return cls(
                login=int(raw["login"]), currency=str(raw["currency"]),
                anchor_ms=int(raw["anchor_ms"]), last_eval_ms=int(raw["last_eval_ms"]),
                balance=float(raw["balance"]), next_order=int(raw["next_order"]),
                next_deal=int(raw["next_deal"]),
                positions={p.ticket: p for p in positions},
                deals=[_from_dict(Deal, d) for d in raw["deals"]],
                orders=[_from_dict(Order, o) for o in raw["orders"]],
                extra=extra)
        except (KeyError, TypeError, ValueError) as exc:
            raise BookError(f"{path}: damaged book ({exc})") from None


def new_book(login: int, currency: str, now_ms: int, starting_balance: float) -> Book:
    """A fresh book whose history starts with the initial deposit, as a new MT5 account's does."""
    book = Book(login=int(login), currency=currency, anchor_ms=now_ms, last_eval_ms=now_ms,
                balance=float(starting_balance))
    book.deals.append(Deal(
        ticket=book.new_deal_ticket(), order=0, time_ms=now_ms, type=c.DEAL_TYPE_BALANCE,
        entry=c.DEAL_ENTRY_IN, magic=0, position_id=0, reason=c.DEAL_REASON_CLIENT,
        volume=0.0, price=0.0, commission=0.0, swap=0.0, profit=float(starting_balance),
        fee=0.0, symbol="", comment="Initial deposit"))
    return book


def load_book(path: Path | None) -> Book | None:
    """The book stored at ``path`` (or its ``.bak``); None when there is none yet."""
    if path is None:
        return None
    result = load_json_with_fallback(Path(path), None)
    if result.data is None:
        return None
    return Book.from_json(result.data, Path(path))


def _encode(record: Any) -> str:
    return json.dumps(vars(record), separators=(",", ":"))


def save_book(path: Path | None, book: Book) -> None:
    if path is not None:
        atomic_write_bytes(Path(path), book.encode())
