"""Proxy order flow from MT5 ticks, for symbols without an exchange tape (gold, FX, CFDs).

What it is. Each tick is turned into a pseudo-trade and fed to the same ``OrderFlowEngine`` the
Binance tape feeds, so the proxy serves the SAME ``FlowMetrics`` (delta, CVD and its slope,
aggressor ratio, imbalance, windows, M1/M5 flow bars) and the same signal detectors and
classifier run on it, with their own (per-symbol) thresholds.

How a tick is signed, in this order:
1. Broker aggressor flags: a tick flagged TICK_FLAG_BUY (32) and not SELL is a buy, SELL (64)
   and not BUY a sell. Exchange-traded instruments on some brokers carry them; FX and CFD quote
   ticks never do.
2. Tick rule on the tick's price, which is ``last`` when the broker fills it (a trade print),
   else the bid/ask mid: a higher price than the previous tick is a buy, lower a sell, and an
   unchanged price repeats the direction of the last change (the classic zero-tick rule).
   Ticks before the first price change have no direction and are left out (counted).
Size: ``volume_real`` when positive, else ``volume`` when positive, else 1 (one unit per tick).
On an instrument that prints trades (``last`` > 0), ticks that only update bid/ask (flags set,
none of LAST/VOLUME/BUY/SELL) are quote updates, not trades: they are skipped.

LIMITS (why it is a proxy). FX and CFD ticks carry no aggressor side and no traded volume: a
rising mid is not proof that buyers hit the offer, and one tick is one quote update of one
liquidity provider, not a size. The "delta" is therefore net up-ticks minus down-ticks
(tick-count pressure), CVD is the running sum of that, absorption means "many one-directional
ticks without range", and the numbers are broker-specific (another feed has other tick counts).
Use conservative thresholds for proxy symbols and treat the proxy as a fallback, not the
primary signal. Quote-only feeds also make the zero-tick rule matter more: a stale side repeats.

Pure: arrays in, state and engine updates out; no clock, no I/O, no locks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from engines.order_flow import BatchResult, FlowBar, FlowBarColumns, FlowMetrics, OrderFlowEngine, SecondSeries
from engines.ticks import TickSeries

FEW_TICKS = 32  # batches up to this size are classified tick by tick (same result, less numpy overhead)
TICK_FIELDS = ("bid", "ask", "last", "volume", "flags", "volume_real")
_EXACT_INT_IN_FLOAT = 2.0 ** 53  # integers below this survive a round trip through float64
_INF = math.inf
TICK_FLAG_BID = 2
TICK_FLAG_ASK = 4
TICK_FLAG_LAST = 8
TICK_FLAG_VOLUME = 16
TICK_FLAG_BUY = 32
TICK_FLAG_SELL = 64
TRADE_FLAGS = TICK_FLAG_LAST | TICK_FLAG_VOLUME | TICK_FLAG_BUY | TICK_FLAG_SELL


@dataclass
class TickRuleState:
    """What the tick rule carries from one batch to the next (per symbol)."""

    last_price: float | None = None
    last_direction: int = 0  # +1 up, -1 down, 0 no price change seen yet


@dataclass(frozen=True)
class ClassifiedTicks:
    """Pseudo-trades, in tick order, ready for ``OrderFlowEngine.add_trades``."""

    time_ms: np.ndarray  # int64, UTC epoch ms
    price: np.ndarray  # float64
    qty: np.ndarray  # float64
    is_sell: np.ndarray  # bool (the engine's is_buyer_maker: True = sell volume)
    by_flag: int = 0  # signed by the broker's BUY/SELL flags
    by_tick_rule: int = 0  # signed by the tick rule
    unclassified: int = 0  # no direction yet (before the first price change)
    quote_updates: int = 0  # bid/ask-only ticks of an instrument that prints trades
    invalid: int = 0  # non-finite or non-positive price

    def __len__(self) -> int:
        return int(self.time_ms.shape[0])


def _column(values: Any, n: int, dtype: Any, name: str) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=dtype)
    array = np.asarray(values, dtype=dtype)
    if array.shape != (n,):
        raise ValueError(f"tick column {name!r} has shape {array.shape}; expected ({n},) like time_ms")
    return array


def _list_column(values: list | None, n: int, zero: float | int, name: str) -> list:
    """``_column`` for a column given as a list (None: ``n`` zeros)."""
    if values is None:
        return [zero] * n
    if len(values) != n:
        raise ValueError(f"tick column {name!r} has {len(values)} values; expected {n} like time_ms")
    return values


def classify_ticks(time_ms: Any, bid: Any, ask: Any, last: Any = None, volume: Any = None,
                   flags: Any = None, volume_real: Any = None,
                   state: TickRuleState | None = None) -> tuple[ClassifiedTicks, TickRuleState]:
    """Sign a batch of ticks (oldest first). Returns the pseudo-trades and the state to carry.

    ``last``, ``volume``, ``flags`` and ``volume_real`` may be None (a quote-only recording such
    as HistData ticks): then every tick is a quote tick priced at the mid, size 1.
    """
    state = state or TickRuleState()
    columns = _tick_columns(time_ms, bid, ask, last, volume, flags, volume_real)
    if columns[0].shape[0] <= FEW_TICKS:
        return _classify_few(*columns, state)
    return _classify_many(*columns, state)


def _tick_columns(time_ms: Any, bid: Any, ask: Any, last: Any, volume: Any, flags: Any, volume_real: Any
                  ) -> tuple[np.ndarray, ...]:
    """(time_ms, bid, ask, last, volume, flags, volume_real) as arrays of the dtypes the classifier reads."""
    time_ms = np.asarray(time_ms, dtype=np.int64)
    n = time_ms.shape[0]
    return (time_ms, _column(bid, n, np.float64, "bid"), _column(ask, n, np.float64, "ask"),
            _column(last, n, np.float64, "last"), _column(volume, n, np.float64, "volume"),
            _column(flags, n, np.int64, "flags"), _column(volume_real, n, np.float64, "volume_real"))


def _classify_many(time_ms: np.ndarray, bid: np.ndarray, ask: np.ndarray, last: np.ndarray, volume: np.ndarray,
                   flags: np.ndarray, volume_real: np.ndarray,
                   state: TickRuleState) -> tuple[ClassifiedTicks, TickRuleState]:
    """``classify_ticks`` vectorised (a batch too large for the tick-by-tick loop)."""
    with np.errstate(invalid="ignore"):
        prints_trades = last > 0
    is_print = prints_trades & ((flags == 0) | ((flags & TRADE_FLAGS) != 0))
    quote_updates = int(np.count_nonzero(prints_trades & ~is_print))
    price = np.where(prints_trades, last, (bid + ask) / 2.0)
    with np.errstate(invalid="ignore"):
        valid_price = np.isfinite(price) & (price > 0)
        valid_quote = prints_trades | (np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask >= bid))
    valid = valid_price & valid_quote
    used = (is_print | ~prints_trades) & valid
    invalid = int(np.count_nonzero((is_print | ~prints_trades) & ~valid))

    t, p, fl = time_ms[used], price[used], flags[used]
    size = np.where(volume_real[used] > 0, volume_real[used], np.where(volume[used] > 0, volume[used], 1.0))
    m = t.shape[0]
    if m == 0:
        empty = ClassifiedTicks(np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, bool),
                                quote_updates=quote_updates, invalid=invalid)
        return empty, TickRuleState(state.last_price, state.last_direction)

    buy_flag = (fl & TICK_FLAG_BUY) != 0
    sell_flag = (fl & TICK_FLAG_SELL) != 0
    flag_side = np.where(buy_flag & ~sell_flag, 1, np.where(sell_flag & ~buy_flag, -1, 0))

    previous = np.empty(m)
    previous[0] = np.nan if state.last_price is None else state.last_price
    previous[1:] = p[:-1]
    with np.errstate(invalid="ignore"):
        change = np.sign(p - previous)
    change = np.where(np.isfinite(change), change, 0.0).astype(np.int64)
    # zero-tick rule: an unchanged price repeats the direction of the last change
    last_change_at = np.maximum.accumulate(np.where(change != 0, np.arange(m), -1))
    carried = np.where(last_change_at >= 0, change[np.maximum(last_change_at, 0)], state.last_direction)

    side = np.where(flag_side != 0, flag_side, carried)
    signed = side != 0
    result = ClassifiedTicks(
        time_ms=t[signed], price=p[signed], qty=size[signed], is_sell=side[signed] < 0,
        by_flag=int(np.count_nonzero(flag_side != 0)),
        by_tick_rule=int(np.count_nonzero((flag_side == 0) & signed)),
        unclassified=int(np.count_nonzero(~signed)), quote_updates=quote_updates, invalid=invalid)
    return result, TickRuleState(float(p[-1]), int(carried[-1]))


class _FewTicks:
    """The pseudo-trades of a few ticks as Python lists (what the engine's per-trade path reads),
    with ``ClassifiedTicks``' counts. A plain slotted class: one is built every poll."""

    __slots__ = ("time_ms", "price", "qty", "is_sell", "by_flag", "by_tick_rule", "unclassified",
                 "quote_updates", "invalid")

    def __init__(self, time_ms: list[int], price: list[float], qty: list[float], is_sell: list[bool],
                 by_flag: int, by_tick_rule: int, unclassified: int, quote_updates: int, invalid: int) -> None:
        self.time_ms = time_ms
        self.price = price
        self.qty = qty
        self.is_sell = is_sell
        self.by_flag = by_flag
        self.by_tick_rule = by_tick_rule
        self.unclassified = unclassified
        self.quote_updates = quote_updates
        self.invalid = invalid

    def arrays(self) -> ClassifiedTicks:
        return ClassifiedTicks(np.array(self.time_ms, dtype=np.int64), np.array(self.price, dtype=np.float64),
                               np.array(self.qty, dtype=np.float64), np.array(self.is_sell, dtype=bool),
                               by_flag=self.by_flag, by_tick_rule=self.by_tick_rule,
                               unclassified=self.unclassified, quote_updates=self.quote_updates,
                               invalid=self.invalid)


def _classify_few(time_ms: np.ndarray, bid: np.ndarray, ask: np.ndarray, last: np.ndarray, volume: np.ndarray,
                  flags: np.ndarray, volume_real: np.ndarray,
                  state: TickRuleState) -> tuple[ClassifiedTicks, TickRuleState]:
    """``classify_ticks`` tick by tick for the few ticks of one poll, where numpy's cost per call
    dominates: the same tests and the same float operations in the same order, so the result is
    identical (tests/order_flow/test_fast_paths.py compares both on random batches)."""
    few, state = _classify_few_lists(time_ms.tolist(), bid.tolist(), ask.tolist(), last.tolist(), volume.tolist(),
                                     flags.tolist(), volume_real.tolist(), state)
    return few.arrays(), state


def _classify_few_lists(time_ms: list[int], bid: list[float], ask: list[float], last: list[float],
                        volume: list[float], flags: list[int], volume_real: list[float],
                        state: TickRuleState) -> tuple[_FewTicks, TickRuleState]:
    """``_classify_few`` on the columns as lists (ints and floats, as ``tolist`` of
    ``_tick_columns`` gives them), the pseudo-trades left as lists (the tick proxy feeds them to
    the engine as they are)."""
    kept_time: list[int] = []
    kept_price: list[float] = []
    kept_qty: list[float] = []
    kept_sell: list[bool] = []
    by_flag = by_tick_rule = unclassified = quote_updates = invalid = used = 0
    previous = math.nan if state.last_price is None else state.last_price
    direction = state.last_direction
    for t, b, a, lst, vol, fl, real in zip(time_ms, bid, ask, last, volume, flags, volume_real):
        prints_trades = lst > 0
        if prints_trades and not (fl == 0 or (fl & TRADE_FLAGS) != 0):
            quote_updates += 1
            continue
        price = lst if prints_trades else (b + a) / 2.0
        # finite and positive (NaN fails every comparison); a quote also needs ask >= bid
        if not (0.0 < price < _INF and (prints_trades or (0.0 < b < _INF and b <= a < _INF))):
            invalid += 1
            continue
        used += 1
        change = price - previous  # NaN (no previous price) is no change
        if change > 0:
            direction = 1
        elif change < 0:
            direction = -1
        previous = price
        buy_flag, sell_flag = (fl & TICK_FLAG_BUY) != 0, (fl & TICK_FLAG_SELL) != 0
        flag_side = 1 if buy_flag and not sell_flag else -1 if sell_flag and not buy_flag else 0
        side = flag_side or direction
        if flag_side:
            by_flag += 1
        elif side:
            by_tick_rule += 1
        if not side:
            unclassified += 1
            continue
        kept_time.append(t)
        kept_price.append(price)
        kept_qty.append(real if real > 0 else vol if vol > 0 else 1.0)
        kept_sell.append(side < 0)
    result = _FewTicks(kept_time, kept_price, kept_qty, kept_sell, by_flag, by_tick_rule, unclassified,
                       quote_updates, invalid)
    if not used:
        return result, TickRuleState(state.last_price, state.last_direction)
    return result, TickRuleState(float(previous), int(direction))


def frame_columns(frame: pd.DataFrame | TickSeries) -> dict[str, np.ndarray | None]:
    """The tick columns of the broker's ``TickSeries`` or a reader's DataFrame (UTC
    DatetimeIndex); absent ones are None.

    A frame is converted to float64 in one go when that is exact for what ``classify_ticks``
    reads (prices and sizes are read as float64 anyway; integer flags survive a float64 round
    trip below 2**53), else column by column. A ``TickSeries`` gives the same dtypes."""
    if isinstance(frame, TickSeries):
        return _series_columns(frame)
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError("ticks need a DatetimeIndex (UTC)")
    index = frame.index
    if index.tz is None:
        raise ValueError("tick times must be timezone-aware UTC")
    out: dict[str, np.ndarray | None] = {"time_ms": datetime_index_ms(index)}
    names = list(frame.columns)
    out.update(_float_columns(frame, names) or
               {name: frame[name].to_numpy() if name in names else None for name in TICK_FIELDS})
    if out["bid"] is None or out["ask"] is None:
        raise ValueError("ticks need bid and ask columns")
    return out


_INT64, _FLOAT64 = np.dtype(np.int64), np.dtype(np.float64)


def few_series_lists(ticks: TickSeries) -> dict[str, list] | None:
    """``frame_columns`` of a ``TickSeries`` of at most ``FEW_TICKS`` ticks as Python lists (what
    ``TickFlowProxy.ingest_lists`` takes), converted to the same dtypes first, so the same
    values; None for more ticks. One ``tolist`` per column, no intermediate arrays: a poll in a
    backtest fetches a handful of ticks every step."""
    time_ms = ticks.time_ms
    if time_ms.shape[0] > FEW_TICKS:
        return None
    out = {"time_ms": (time_ms if time_ms.dtype == _INT64 else time_ms.astype(np.int64)).tolist()}
    for name in TICK_FIELDS:
        column = getattr(ticks, name)
        dtype = _INT64 if name == "flags" else _FLOAT64
        out[name] = (column if column.dtype == dtype else column.astype(dtype)).tolist()
    return out


def _series_columns(ticks: TickSeries) -> dict[str, np.ndarray | None]:
    out: dict[str, np.ndarray | None] = {"time_ms": ticks.time_ms}
    for name in TICK_FIELDS:
        out[name] = getattr(ticks, name).astype(np.int64 if name == "flags" else np.float64, copy=False)
    return out


def _float_columns(frame: pd.DataFrame, names: list[str]) -> dict[str, np.ndarray | None] | None:
    """The tick fields from one float64 copy of the frame; None when that would not be exact."""
    try:
        values = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):  # a column that is not numeric
        return None
    out: dict[str, np.ndarray | None] = {name: values[:, names.index(name)] if name in names else None
                                         for name in TICK_FIELDS}
    flags = out["flags"]
    if flags is not None:
        if not bool((np.abs(flags) < _EXACT_INT_IN_FLOAT).all()):
            return None
        out["flags"] = flags.astype(np.int64)
    return out


def datetime_index_ms(index: pd.DatetimeIndex) -> np.ndarray:
    """``index.as_unit("ms").asi8`` as int64, without building a new index (as_unit floors, as // does)."""
    unit = index.unit
    if unit == "ms":
        return index.asi8.astype(np.int64)
    if unit == "s":
        return index.asi8 * 1000
    if unit in ("us", "ns"):
        return index.asi8 // (1_000 if unit == "us" else 1_000_000)
    return index.as_unit("ms").asi8.astype(np.int64)


@dataclass
class ProxyCounters:
    ticks: int = 0
    trades: int = 0
    by_flag: int = 0
    by_tick_rule: int = 0
    unclassified: int = 0
    quote_updates: int = 0
    invalid: int = 0
    rejected_by_engine: int = 0

    def add(self, classified: ClassifiedTicks | _FewTicks, ticks: int, result: BatchResult) -> None:
        self.ticks += ticks
        self.trades += result.accepted
        self.by_flag += classified.by_flag
        self.by_tick_rule += classified.by_tick_rule
        self.unclassified += classified.unclassified
        self.quote_updates += classified.quote_updates
        self.invalid += classified.invalid
        self.rejected_by_engine += result.duplicates + result.out_of_order + result.invalid


@dataclass
class _ProxySymbol:
    state: TickRuleState = field(default_factory=TickRuleState)
    next_id: int = 1
    counters: ProxyCounters = field(default_factory=ProxyCounters)


class TickFlowProxy:
    """Per-symbol proxy books: ticks in, the delta engine's metrics and bars out (not locked)."""

    source = "tick_proxy"

    def __init__(self, engine: OrderFlowEngine | None = None) -> None:
        self.engine = engine or OrderFlowEngine()
        self._symbols: dict[str, _ProxySymbol] = {}

    @classmethod
    def from_config(cls, flow_config: Any) -> "TickFlowProxy":
        """From a ``FlowEngineConfig`` (windows, bar timeframes, history)."""
        return cls(OrderFlowEngine.from_config(flow_config))

    def _book(self, symbol: str) -> _ProxySymbol:
        book = self._symbols.get(symbol)
        if book is None:
            book = self._symbols[symbol] = _ProxySymbol()
        return book

    def add_ticks(self, symbol: str, time_ms: Any, bid: Any, ask: Any, last: Any = None, volume: Any = None,
                  flags: Any = None, volume_real: Any = None) -> ClassifiedTicks:
        """Classify a batch (oldest first, continuing the previous one) and feed the engine."""
        book = self._book(symbol)
        classified, book.state = classify_ticks(time_ms, bid, ask, last, volume, flags, volume_real, book.state)
        n = len(classified)
        if n:
            ids = np.arange(book.next_id, book.next_id + n, dtype=np.int64)
            book.next_id += n
            result = self.engine.add_trades(symbol, ids, classified.price, classified.qty, classified.time_ms,
                                            classified.is_sell)
        else:
            result = BatchResult()
        book.counters.add(classified, int(np.asarray(time_ms).shape[0]), result)
        return classified

    def ingest(self, symbol: str, time_ms: Any, bid: Any, ask: Any, last: Any = None, volume: Any = None,
               flags: Any = None, volume_real: Any = None) -> int:
        """``add_ticks`` for a caller that only needs the number of pseudo-trades (a poll): the
        few ticks of one poll go from the classifier's lists to the engine without building
        arrays. Same engine state, counters and tick-rule state as ``add_ticks``."""
        columns = _tick_columns(time_ms, bid, ask, last, volume, flags, volume_real)
        if columns[0].shape[0] > FEW_TICKS:
            return len(self.add_ticks(symbol, *columns))
        return self.ingest_lists(symbol, *(column.tolist() for column in columns))

    def ingest_lists(self, symbol: str, time_ms: list[int], bid: list[float], ask: list[float],
                     last: list[float] | None = None, volume: list[float] | None = None,
                     flags: list[int] | None = None, volume_real: list[float] | None = None) -> int:
        """``ingest`` of ticks given as Python lists (int ms and flags, float prices and sizes;
        absent columns None, read as zeros): the tick proxy's poll hands a few ticks so, and
        they go through the tick-by-tick classifier to the engine without any array."""
        n = len(time_ms)
        columns = (bid, ask, last, volume, flags, volume_real)
        complete = None not in columns and (len(bid) == len(ask) == len(last) == len(volume) == len(flags)
                                            == len(volume_real) == n)
        if not complete:  # absent columns read as zeros; a column of another length is refused
            columns = tuple(_list_column(values, n, zero, name) for values, zero, name in
                            ((bid, 0.0, "bid"), (ask, 0.0, "ask"), (last, 0.0, "last"), (volume, 0.0, "volume"),
                             (flags, 0, "flags"), (volume_real, 0.0, "volume_real")))
        book = self._book(symbol)
        few, book.state = _classify_few_lists(time_ms, *columns, book.state)
        trades = len(few.time_ms)
        if trades:
            first_id = book.next_id
            book.next_id += trades
            result = self.engine.add_trade_lists(symbol, first_id, few.price, few.qty, few.time_ms, few.is_sell)
        else:
            result = BatchResult()
        book.counters.add(few, n, result)
        return trades

    def add_frame(self, symbol: str, frame: pd.DataFrame) -> ClassifiedTicks:
        """Same as ``add_ticks`` from a DataFrame (``Broker.ticks`` or ``feeds.readers.read_ticks``)."""
        return self.add_ticks(symbol, **frame_columns(frame))

    def mark_discontinuity(self, symbol: str) -> None:
        """Ticks were lost (a long outage): windows containing this point say ``discontinuous``,
        and the tick rule restarts (the previous price is too old to compare with)."""
        book = self._book(symbol)
        book.state = TickRuleState()
        self.engine.mark_discontinuity(symbol)

    def get_metrics(self, symbol: str, window_seconds: int, now_ms: int) -> FlowMetrics | None:
        return self.engine.get_metrics(symbol, window_seconds, now_ms)

    def get_metrics_many(self, symbol: str, windows_seconds: Sequence[int], now_ms: int, slope: bool = True
                         ) -> list[FlowMetrics | None]:
        return self.engine.get_metrics_many(symbol, windows_seconds, now_ms, slope)

    def bars(self, symbol: str, seconds: int = 60, include_forming: bool = True) -> list[FlowBar]:
        return self.engine.bars(symbol, seconds, include_forming)

    def bar_columns(self, symbol: str, seconds: int = 60, include_forming: bool = True,
                    since_ms: int | None = None, before: int = 0) -> FlowBarColumns:
        return self.engine.bar_columns(symbol, seconds, include_forming, since_ms, before)

    def seconds(self, symbol: str, window_seconds: int, now_ms: int) -> SecondSeries | None:
        return self.engine.seconds(symbol, window_seconds, now_ms)

    def counters(self, symbol: str) -> ProxyCounters:
        return self._book(symbol).counters if symbol in self._symbols else ProxyCounters()

    @property
    def symbols(self) -> list[str]:
        return sorted(self._symbols)
