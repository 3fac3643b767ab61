"""The broker boundary: what monitors, the feed, the executor and the reconciler may ask a broker.

Only plain, frozen values cross it: symbols are the CONFIG names (``XAUUSD``, never the
broker's ``XAUUSDc``) and every time is an aware UTC datetime (or a UTC DatetimeIndex). The MT5
adapter (``execution/mt5.py``) is the implementation; it runs over the real MetaTrader5 module
or over the simulated terminal, so this protocol is the one the tests exercise.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Mapping, Protocol, runtime_checkable

from engines.bars import FIELDS, BarSeries
from engines.frozen import direct_init
from engines.ticks import FIELDS as TICK_FIELDS
from engines.ticks import TickSeries

Side = Literal["buy", "sell"]
DealEntry = Literal["in", "out", "inout", "out_by"]

CLIENT_ID_MAX_LEN = 31  # MT5's order comment holds at most 31 characters
_CLIENT_ID_CHARS = re.compile(r"^[\x21-\x7e][\x20-\x7e]*$")
BAR_COLUMNS = FIELDS  # the MT5 rate fields a BarSeries carries
TICK_COLUMNS = TICK_FIELDS  # the MT5 tick fields a TickSeries carries


def validate_client_id(client_id: str) -> str:
    """A client id travels in the order comment: 1-31 printable ASCII characters."""
    if not isinstance(client_id, str) or not client_id:
        raise ValueError("client_id must be a non-empty string")
    if len(client_id) > CLIENT_ID_MAX_LEN:
        raise ValueError(f"client_id {client_id!r} is {len(client_id)} characters; the MT5 order comment "
                         f"holds at most {CLIENT_ID_MAX_LEN}")
    if not _CLIENT_ID_CHARS.match(client_id):
        raise ValueError(f"client_id {client_id!r} must be printable ASCII (the MT5 comment field) "
                         "and must not start with a space")
    return client_id


@dataclass(frozen=True)
class AccountInfo:
    login: int
    currency: str
    balance: float
    equity: float
    margin: float
    margin_free: float
    margin_level: float
    leverage: int
    trade_allowed: bool
    hedging: bool
    server: str = ""
    name: str = ""
    trade_expert: bool = True


@dataclass(frozen=True)
class SymbolSpec:
    """The instrument's contract, as the broker states it. ``order_filling`` is the REQUEST enum
    (ORDER_FILLING_*) derived from the ``filling_modes`` bitmask (SYMBOL_FILLING_*)."""

    name: str
    broker_name: str
    digits: int
    point: float
    tick_size: float
    tick_value: float
    contract_size: float
    volume_min: float
    volume_max: float
    volume_step: float
    stops_level_points: int
    freeze_level_points: int
    filling_modes: int
    order_filling: int
    trade_mode: int
    currency_profit: str
    execution_mode: int = 0
    spread_points: int = 0

    def normalize_volume(self, volume: float) -> float:
        return normalize_volume(volume, self.volume_min, self.volume_max, self.volume_step)

    def normalize_price(self, price: float) -> float:
        return normalize_price(price, self.digits, self.tick_size)


@direct_init
@dataclass(frozen=True)
class Quote:
    symbol: str
    bid: float
    ask: float
    time: datetime
    spread_points: int

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


@direct_init
@dataclass(frozen=True)
class Position:
    ticket: int
    symbol: str
    side: Side
    volume: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    profit: float
    swap: float
    magic: int
    comment: str
    time: datetime
    identifier: int
    broker_symbol: str = ""


@direct_init
@dataclass(frozen=True)
class Deal:
    ticket: int
    order: int
    position_id: int
    symbol: str
    side: Side
    entry: DealEntry
    reason: str
    volume: float
    price: float
    profit: float
    commission: float
    swap: float
    fee: float
    magic: int
    comment: str
    time: datetime
    broker_symbol: str = ""


OrderKind = Literal["open", "close", "modify"]


@direct_init
@dataclass(frozen=True)
class OrderRequest:
    """What the caller asked for, before the adapter's normalisation (kept for the journal)."""

    kind: OrderKind
    symbol: str
    side: Side | None = None
    volume: float | None = None
    sl: float | None = None
    tp: float | None = None
    magic: int = 0
    client_id: str = ""
    deviation_points: int = 20
    position: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@direct_init
@dataclass(frozen=True)
class OrderResult:
    """The outcome of a successful (possibly partial) request.

    ``volume`` is the FILLED volume (a 10010 partial fill carries less than
    ``requested_volume``). ``adjustments`` lists every change the adapter made to the request
    (volume rounded, stops pushed outside the stops level, filling mode switched...).
    ``recovered`` is True when order_send's answer was lost and the fill was found by client id.
    """

    retcode: int
    retcode_class: str
    deal: int
    order: int
    volume: float
    price: float
    comment: str
    client_id: str
    position: int | None
    symbol: str = ""
    side: Side | None = None
    requested_volume: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    filling: int | None = None
    attempts: int = 1
    adjustments: tuple[str, ...] = ()
    recovered: bool = False
    request: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.retcode_class == "success"

    @property
    def partial(self) -> bool:
        return self.retcode == 10010 or (self.requested_volume > 0 and self.volume + 1e-12 < self.requested_volume)


# ---------------------------------------------------------------------------------------------
# Normalisation helpers (pure)

def _decimals_of(step: float) -> int:
    """Decimal places needed to print ``step`` exactly (0.01 -> 2, 0.5 -> 1, 1 -> 0)."""
    text = f"{step:.10f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def normalize_volume(volume: float, volume_min: float, volume_max: float, volume_step: float) -> float:
    """Round DOWN to the step (never risk more than asked), then clamp to [min, max].

    A volume below the minimum is raised to the minimum: callers that must not exceed their
    risk (the risk manager) check ``volume_min`` themselves before ordering.
    """
    if not math.isfinite(volume) or volume <= 0:
        raise ValueError(f"volume must be a positive number, got {volume!r}")
    if volume_step <= 0:
        raise ValueError(f"volume_step must be positive, got {volume_step!r}")
    steps = math.floor(volume / volume_step + 1e-9)  # 1e-9 absorbs float noise (0.3/0.1 = 2.9999...)
    decimals = max(_decimals_of(volume_step), _decimals_of(volume_min))
    rounded = round(steps * volume_step, decimals)
    return round(min(max(rounded, volume_min), volume_max), decimals)


def normalize_price(price: float, digits: int, tick_size: float = 0.0) -> float:
    """Round to the tick size (when set) and to the symbol's digits."""
    if not math.isfinite(price):
        raise ValueError(f"price must be finite, got {price!r}")
    if tick_size and tick_size > 0:
        price = round(price / tick_size) * tick_size
    return round(price, digits)


# ---------------------------------------------------------------------------------------------

@runtime_checkable
class Broker(Protocol):
    """What the rest of the bot may ask a broker. Symbols are config names; times are UTC."""

    def connect(self) -> None: ...

    def shutdown(self) -> None: ...

    def account(self) -> AccountInfo: ...

    def symbol_spec(self, symbol: str) -> SymbolSpec: ...

    def quote(self, symbol: str) -> Quote: ...

    def bars(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> BarSeries: ...

    def bar_rows(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> list[tuple]:
        """The bars ``bars`` gives, as its ``rows()``: ``(time_s, open, high, low, close, tick_volume,
        spread, real_volume)`` tuples of plain numbers, the same values and types. For a few bars
        (the bar feed's incremental fetch) cheaper than building numpy columns."""
        ...

    def ticks(self, symbol: str, start_utc: datetime, end_utc: datetime) -> TickSeries: ...

    def positions(self, symbol: str | None = None, magic: int | None = None) -> list[Position]: ...

    def position(self, ticket: int) -> Position | None: ...

    def deals(self, start_utc: datetime, end_utc: datetime, symbol: str | None = None,
              magic: int | None = None, position: int | None = None) -> list[Deal]: ...

    def market_order(self, symbol: str, side: Side, volume: float, sl: float | None, tp: float | None,
                     magic: int, client_id: str, deviation_points: int | None = None) -> OrderResult: ...

    def close_position(self, ticket: int, volume: float | None = None, magic: int | None = None,
                       client_id: str = "", deviation_points: int | None = None) -> OrderResult: ...

    def modify_sltp(self, ticket: int, sl: float | None, tp: float | None) -> OrderResult: ...

    def find_by_client_id(self, client_id: str, since_utc: datetime) -> Position | Deal | None: ...

    def server_utc_offset(self) -> timedelta: ...

    def connection_state(self) -> dict[str, Any]: ...

    def entries_blocked(self) -> str | None: ...

    def normalize_volume(self, symbol: str, volume: float) -> float: ...

    def normalize_price(self, symbol: str, price: float) -> float: ...
