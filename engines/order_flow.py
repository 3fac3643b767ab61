"""The delta engine: buy/sell volume, delta, CVD, VWAP and bars from a trade tape.

Fed trade by trade (``add_trade``, the live stream) or in batches (``add_trades``, replays);
both paths give the same numbers. Pure: no clock, no I/O, no threads. Time comes from the
trades, and every query takes an explicit ``now_ms`` (UTC epoch milliseconds).

Sign rule (Binance ``m``, is-buyer-maker): true means the resting order was the buyer, so the
taker sold: the quantity is sell volume and negative delta. False is an aggressive buy.

Storage, and why: the original kept a list of the last 60 s of trades, which silently cut every
longer window to 60 s. Here each symbol keeps one-second buckets in a ring sized for the longest
configured window (a day is about 6 MB per symbol), so any window up to that length is exact and
the cost of a query depends on the window in seconds, not on the number of trades. The second
being filled lives in plain attributes (the hot path touches no numpy) and is committed when a
trade of a later second arrives: kept in a list of the recent seconds, and written to the ring
and folded into each bar builder (M1, M5, ...) when that one is next read, many seconds at once.
A window with few seconds with trades (a tick proxy's, a quiet tape) is summed from the recent
seconds in Python, bit for bit as numpy sums the ring's columns; a busier one from the ring.

Tape integrity: aggregate ids must rise. A repeated id is a duplicate and is dropped; an id below
the last one is rejected (a late trade from a known gap counts as out of order, anything else we
have already seen counts as a duplicate). An id that skips ahead means trades are missing: the
gap is counted and the second it appears in is flagged ``discontinuous`` so every window and bar
that contains it says so. The stream client backfills gaps before delivering, so a flag here
means a gap that could not be filled.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import IntEnum
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from engines.indicators import PAIRWISE_BLOCK  # numpy's block size, shared with its dense pairwise_sum

_INF = float("inf")
DEFAULT_WINDOWS = (30, 60, 300, 900)
DEFAULT_BAR_SECONDS = (60, 300)
KNOWN_GAPS_KEPT = 256
FEW_TRADES = 32  # batches up to this size take the per-trade path when every trade has its own second
SPARSE_SECONDS = 64  # windows with up to this many seconds with trades are summed in Python, not numpy
# a committed second, in ``_SecondRing.commit``'s order, plus the CVD at its end:
# (second, open, high, low, close, buy volume, sell volume, trades, notional, discontinuous, cvd)
_Second = tuple[int, float, float, float, float, float, float, int, float, bool, float]
UNFLUSHED_SECONDS = 1024  # committed seconds kept before the ring and the bars take them anyway


class TradeStatus(IntEnum):
    ACCEPTED = 0
    DUPLICATE = 1
    OUT_OF_ORDER = 2
    INVALID = 3


ACCEPTED, DUPLICATE, OUT_OF_ORDER, INVALID = (TradeStatus.ACCEPTED, TradeStatus.DUPLICATE,
                                              TradeStatus.OUT_OF_ORDER, TradeStatus.INVALID)


@dataclass(frozen=True, slots=True)
class FlowBar:
    """One bar built from the tape. ``cvd`` is the running CVD at the bar's last trade."""

    start_ms: int
    seconds: int
    open: float
    high: float
    low: float
    close: float
    buy_volume: float
    sell_volume: float
    trades: int
    notional: float  # sum of price * quantity (quote volume)
    cvd: float
    discontinuous: bool

    @property
    def delta(self) -> float:
        return self.buy_volume - self.sell_volume

    @property
    def volume(self) -> float:
        return self.buy_volume + self.sell_volume

    @property
    def vwap(self) -> float:
        return self.notional / self.volume

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.seconds * 1000

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.start_ms / 1000, tz=timezone.utc)


@dataclass(frozen=True)
class FlowBarColumns:
    """Flow bars as columns, oldest first: what the signal inputs read, without one ``FlowBar``
    object per bar (a monitor reads a day of M1 bars every step). ``delta`` and ``volume`` are
    the same single float operation per bar as ``FlowBar``'s properties, so they are
    bit-identical to reading the bars one by one."""

    start_ms: np.ndarray  # int64
    seconds: np.ndarray  # int64
    buy_volume: np.ndarray  # float64
    sell_volume: np.ndarray
    cvd: np.ndarray

    @classmethod
    def from_bars(cls, bars: Sequence[FlowBar]) -> "FlowBarColumns":
        return cls(np.array([b.start_ms for b in bars], dtype=np.int64),
                   np.array([b.seconds for b in bars], dtype=np.int64),
                   np.array([b.buy_volume for b in bars], dtype=np.float64),
                   np.array([b.sell_volume for b in bars], dtype=np.float64),
                   np.array([b.cvd for b in bars], dtype=np.float64))

    def __len__(self) -> int:
        return int(self.start_ms.shape[0])

    @property
    def delta(self) -> np.ndarray:
        return self.buy_volume - self.sell_volume

    @property
    def volume(self) -> np.ndarray:
        return self.buy_volume + self.sell_volume

    @property
    def end_ms(self) -> np.ndarray:
        return self.start_ms + self.seconds * 1000

    def take(self, index: np.ndarray | slice) -> "FlowBarColumns":
        """The bars at ``index`` (positions or a slice), in that order."""
        return FlowBarColumns(self.start_ms[index], self.seconds[index], self.buy_volume[index],
                              self.sell_volume[index], self.cvd[index])


class FlowMetrics(NamedTuple):
    """Order flow over the ``window_seconds`` ending at ``now_ms`` (one-second resolution).

    The window is the current second plus the ``window_seconds - 1`` before it. Ratios are None
    when nothing traded. ``cvd_slope`` is the least-squares slope of CVD sampled each second
    (base units per second); ``cvd_slope_norm`` is that slope times the window divided by the
    window's volume: scale-free, +1 for a steady one-sided buying tape, 0 for balanced flow
    (a sudden burst can push it a little beyond +-1). ``complete`` is False while the engine has
    not yet seen a whole window of tape; ``discontinuous`` is True when the window contains a
    gap in the tape that was not filled.

    A named tuple rather than a frozen dataclass: built twice a step, and a frozen dataclass
    sets its 22 fields one ``object.__setattr__`` call at a time. Immutable as before, and
    equal only to another ``FlowMetrics`` of equal values (``named_tuple_eq``).
    """

    symbol: str
    window_seconds: int
    now_ms: int
    buy_volume: float
    sell_volume: float
    delta: float
    trades: int
    notional: float
    vwap: float | None
    cvd: float
    cvd_slope: float
    cvd_slope_norm: float
    aggressor_ratio: float | None
    imbalance: float | None
    price_open: float | None
    price_high: float | None
    price_low: float | None
    last_price: float | None
    last_trade_ms: int | None
    staleness_ms: int | None
    discontinuous: bool
    complete: bool

    @property
    def volume(self) -> float:
        return self.buy_volume + self.sell_volume

    def __eq__(self, other: object) -> bool:
        return named_tuple_eq(self, other)

    def __ne__(self, other: object) -> bool:
        return named_tuple_ne(self, other)

    __hash__ = tuple.__hash__


def named_tuple_eq(self: tuple, other: object) -> bool:
    """A dataclass's equality for a named tuple: equal to an instance of the same class with
    equal fields, never to a plain tuple or another named tuple (False, not NotImplemented:
    a tuple on the other side would compare the values)."""
    return other.__class__ is self.__class__ and tuple.__eq__(self, other)


def named_tuple_ne(self: tuple, other: object) -> bool:
    return other.__class__ is not self.__class__ or tuple.__ne__(self, other)


@dataclass(frozen=True)
class SecondSeries:
    """Per-second buckets of one window, oldest first; empty seconds hold 0 volume and NaN prices."""

    start_sec: int
    buy_volume: np.ndarray
    sell_volume: np.ndarray
    trades: np.ndarray
    notional: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    discontinuous: np.ndarray
    cvd_end: np.ndarray  # CVD at the end of each second (carried over empty seconds)

    @property
    def delta(self) -> np.ndarray:
        return self.buy_volume - self.sell_volume

    @property
    def vwap(self) -> np.ndarray:
        volume = self.buy_volume + self.sell_volume
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(volume > 0, self.notional / np.where(volume > 0, volume, 1.0), np.nan)


class BatchResult(NamedTuple):
    """What a batch of trades did (a named tuple: one per poll; see ``FlowMetrics``)."""

    accepted: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    invalid: int = 0

    def __eq__(self, other: object) -> bool:
        return named_tuple_eq(self, other)

    def __ne__(self, other: object) -> bool:
        return named_tuple_ne(self, other)

    __hash__ = tuple.__hash__


class _SecondRing:
    """One-second buckets for the last ``size`` seconds; a slot is valid when its stamp matches."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.stamp = np.full(size, -1, dtype=np.int64)
        self.buy = np.zeros(size)
        self.sell = np.zeros(size)
        self.notional = np.zeros(size)
        self.open = np.zeros(size)
        self.high = np.zeros(size)
        self.low = np.zeros(size)
        self.close = np.zeros(size)
        self.trades = np.zeros(size, dtype=np.int32)
        self.disc = np.zeros(size, dtype=bool)

    def commit(self, sec: int, o: float, h: float, lo: float, c: float, buy: float, sell: float,
               n: int, pv: float, disc: bool) -> None:
        i = sec % self.size
        self.stamp[i] = sec
        self.buy[i] = buy
        self.sell[i] = sell
        self.notional[i] = pv
        self.open[i] = o
        self.high[i] = h
        self.low[i] = lo
        self.close[i] = c
        self.trades[i] = n
        self.disc[i] = disc

    def commit_many(self, seconds: Sequence[_Second]) -> None:
        """``commit`` of each second, in order, as one write per column: of seconds that share
        a slot the last one is written, as one by one."""
        latest = {second[0] % self.size: second for second in seconds}
        slots = list(latest)
        sec, o, h, lo, c, buy, sell, n, pv, disc, _ = zip(*latest.values())
        self.stamp[slots] = sec
        self.buy[slots] = buy
        self.sell[slots] = sell
        self.notional[slots] = pv
        self.open[slots] = o
        self.high[slots] = h
        self.low[slots] = lo
        self.close[slots] = c
        self.trades[slots] = n
        self.disc[slots] = disc

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.stamp, self.buy, self.sell, self.notional, self.open,
                                      self.high, self.low, self.close, self.trades, self.disc))


class _BarColumnStore:
    """The completed bars of one builder as columns, in step with its ``completed`` deque (same
    bars, same history limit), so reading them costs array views instead of one Python object
    per bar. Appended once per completed bar; the buffer holds twice the history and is
    replaced by a new one when full (amortised O(1) per bar).

    A written position of a buffer is never written again (appends go past it; making room
    allocates a new buffer), so ``read`` can hand out read-only views of the stored bars: they
    are snapshots that later bars do not change."""

    def __init__(self, seconds: int, history: int | None) -> None:
        self.seconds = seconds
        self.history = history
        self._seconds = np.empty(0, dtype=np.int64)  # ``seconds`` repeated, read-only (see ``_allocate``)
        self._allocate(max(16, 2 * history) if history is not None else 64)
        self._lo = self._hi = 0

    def _allocate(self, capacity: int) -> None:
        self._start = np.empty(capacity, dtype=np.int64)
        self._values = np.empty((3, capacity))  # buy volume, sell volume, cvd
        self._views = (_read_only(self._start), _read_only(self._values))
        if self._seconds.shape[0] < capacity:
            self._seconds = _read_only(np.full(capacity, self.seconds, dtype=np.int64))

    def append(self, bar: FlowBar) -> None:
        if self._hi == self._start.shape[0]:
            self._make_room()
        i = self._hi
        self._start[i] = bar.start_ms
        values = self._values
        values[0, i] = bar.buy_volume
        values[1, i] = bar.sell_volume
        values[2, i] = bar.cvd
        self._hi = i + 1
        if self.history is not None and self._hi - self._lo > self.history:
            self._lo = self._hi - self.history

    def _make_room(self) -> None:
        keep = self._hi - self._lo
        start, values = self._start[self._lo:self._hi], self._values[:, self._lo:self._hi]
        self._allocate(max(self._start.shape[0], 2 * keep))  # unbounded history: grows
        self._start[:keep] = start
        self._values[:, :keep] = values
        self._lo, self._hi = 0, keep

    def read(self, after: Sequence[FlowBar] = (), since_ms: int | None = None, before: int = 0) -> FlowBarColumns:
        """The stored bars followed by ``after``, the builder's bars not stored yet: read-only
        views when there are none (see the class), else a copy. With ``since_ms``, only the
        stored bars starting at or after it and the ``before`` bars preceding those (a reader
        that needs the recent bars gets those, not the whole history)."""
        lo, hi = self._lo, self._hi
        if since_ms is not None:
            first = lo + int(self._start[lo:hi].searchsorted(since_ms)) - before
            lo = min(max(lo, first), hi)
        if not after:
            start, values = self._views
            return FlowBarColumns(start[lo:hi], self._seconds[:hi - lo], values[0, lo:hi], values[1, lo:hi],
                                  values[2, lo:hi])
        stored = hi - lo
        start = np.empty(stored + len(after), dtype=np.int64)
        seconds = np.full(stored + len(after), self.seconds, dtype=np.int64)
        values = np.empty((3, stored + len(after)))
        start[:stored] = self._start[lo:hi]
        values[:, :stored] = self._values[:, lo:hi]
        for i, bar in enumerate(after, stored):
            start[i], seconds[i] = bar.start_ms, bar.seconds
            values[0, i], values[1, i], values[2, i] = bar.buy_volume, bar.sell_volume, bar.cvd
        return FlowBarColumns(start, seconds, values[0], values[1], values[2])


def _read_only(array: np.ndarray) -> np.ndarray:
    """A view of ``array`` that cannot be written through (nor can views of it)."""
    view = array.view()
    view.flags.writeable = False
    return view


class _BarBuilder:
    """Folds committed seconds into bars of ``seconds`` aligned on the UTC epoch."""

    def __init__(self, seconds: int, history: int | None) -> None:
        self.seconds = seconds
        self.completed: deque[FlowBar] = deque(maxlen=history)
        self.columns = _BarColumnStore(seconds, history)
        self.start = -1  # start second of the bar being built; -1: none yet
        self.o = self.h = self.l = self.c = 0.0
        self.buy = self.sell = self.pv = self.cvd = 0.0
        self.n = 0
        self.disc = False
        self.taken = 0  # how many of its flow's unfolded seconds (``SymbolFlow._unfolded``) it has taken

    def add_seconds(self, seconds: Iterable[_Second]) -> None:
        """Fold committed seconds (ascending; ``_Second`` with the CVD at each one's end) into
        the bars, in one call for the seconds a poll committed."""
        size = self.seconds
        for sec, o, h, lo, c, buy, sell, n, pv, disc, cvd_end in seconds:
            start = sec - sec % size
            if start != self.start:
                if self.n:
                    self.complete()
                self.start, self.o, self.h, self.l, self.c = start, o, h, lo, c
                self.buy, self.sell, self.n, self.pv, self.cvd, self.disc = buy, sell, n, pv, cvd_end, disc
                continue
            if h > self.h:
                self.h = h
            if lo < self.l:
                self.l = lo
            self.c = c
            self.buy += buy
            self.sell += sell
            self.n += n
            self.pv += pv
            self.cvd = cvd_end
            self.disc = self.disc or disc

    def complete(self) -> None:
        """Store the bar being built (no second of it can come any more); none is built then."""
        bar = self.current()
        self.completed.append(bar)
        self.columns.append(bar)
        self.n = 0

    def current(self) -> FlowBar:
        return FlowBar(self.start * 1000, self.seconds, self.o, self.h, self.l, self.c, self.buy,
                       self.sell, self.n, self.pv, self.cvd, self.disc)


def _merge(bar: FlowBar | None, start_sec: int, seconds: int, o: float, h: float, lo: float, c: float,
           buy: float, sell: float, n: int, pv: float, cvd: float, disc: bool) -> FlowBar:
    if bar is None:
        return FlowBar(start_sec * 1000, seconds, o, h, lo, c, buy, sell, n, pv, cvd, disc)
    return FlowBar(bar.start_ms, seconds, bar.open, max(bar.high, h), min(bar.low, lo), c,
                   bar.buy_volume + buy, bar.sell_volume + sell, bar.trades + n,
                   bar.notional + pv, cvd, bar.discontinuous or disc)


class SymbolFlow:
    """The tape of one symbol: running totals, the open second, the ring and the bars."""

    def __init__(self, symbol: str, ring_seconds: int, bar_seconds: Sequence[int],
                 bar_history: int | None) -> None:
        self.symbol = symbol
        self._ring = _SecondRing(ring_seconds)
        self.builders = {s: _BarBuilder(s, bar_history) for s in bar_seconds}
        self._builder_list = list(self.builders.values())
        # running state
        self.last_id = -1
        self.first_id: int | None = None
        self.first_time_ms: int | None = None
        self.last_price: float | None = None
        self.last_time_ms: int | None = None
        self.cvd = 0.0
        self.total_buy = 0.0
        self.total_sell = 0.0
        # the open (not yet committed) second
        self._sec = -1
        self._o = self._h = self._l = self._c = 0.0
        self._buy = self._sell = self._pv = 0.0
        self._n = 0
        self._disc = False
        self._pending_disc = False
        # the newest committed seconds still in the ring, oldest first (see ``_recent_seconds``),
        # and those not written to it yet (see ``ring``). One more than SPARSE_SECONDS is enough:
        # a window holding all of them has too many seconds with trades to be summed from them
        # anyway, and a 24 h ring would otherwise keep 86,400 tuples (about 30 MB) per symbol.
        self._recent: deque[_Second] = deque(maxlen=SPARSE_SECONDS + 1)
        self._unflushed: list[_Second] = []
        self._unfolded: list[_Second] = []  # committed seconds the bar builders have not taken yet
        # integrity counters
        self.accepted = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.invalid = 0
        self.gaps = 0
        self.missing_ids = 0
        self.time_regressions = 0
        self.marked_discontinuities = 0
        self.known_gaps: deque[tuple[int, int]] = deque(maxlen=KNOWN_GAPS_KEPT)

    # ------------------------------------------------------------------ feeding
    def add(self, trade_id: int, price: float, qty: float, time_ms: int, is_buyer_maker: bool) -> TradeStatus:
        """Apply one trade. Hot path: plain attributes only, numpy once per second."""
        if trade_id <= self.last_id:
            return self._reject_old(trade_id)
        if not (0.0 < price < _INF and 0.0 < qty < _INF):  # NaN fails both comparisons
            self.invalid += 1
            return INVALID
        sec = time_ms // 1000
        if sec != self._sec:
            if sec > self._sec:
                self._roll(sec, price, trade_id, time_ms)
            else:
                self.time_regressions += 1  # exchange time stepped back: count it in the open second
        if trade_id != self.last_id + 1 and self.accepted:
            self._record_gap(self.last_id + 1, trade_id - 1)
        self.last_id = trade_id
        if is_buyer_maker:
            self._sell += qty
            self.cvd -= qty
        else:
            self._buy += qty
            self.cvd += qty
        self._n += 1
        self._pv += price * qty
        if price > self._h:
            self._h = price
        elif price < self._l:
            self._l = price
        self._c = price
        self.last_price = price
        self.last_time_ms = time_ms
        self.accepted += 1
        return ACCEPTED

    def add_batch(self, ids: np.ndarray, price: np.ndarray, qty: np.ndarray, time_ms: np.ndarray,
                  is_buyer_maker: np.ndarray) -> BatchResult:
        """Apply many trades at once; same result as calling ``add`` for each, in order."""
        ids = np.asarray(ids, dtype=np.int64)
        price = np.asarray(price, dtype=np.float64)
        qty = np.asarray(qty, dtype=np.float64)
        time_ms = np.asarray(time_ms, dtype=np.int64)
        maker = np.asarray(is_buyer_maker, dtype=bool)
        n = ids.shape[0]
        if not (price.shape[0] == qty.shape[0] == time_ms.shape[0] == maker.shape[0] == n):
            raise ValueError("add_batch: all arrays must have the same length")
        if n == 0:
            return BatchResult()
        if n <= FEW_TRADES and self._one_trade_per_second(time_ms.tolist()):
            # a group of one trade sums to itself: trade by trade is the same arithmetic, cheaper
            return self._add_loop(ids, price, qty, time_ms, maker)
        clean = (np.all(np.isfinite(price)) and np.all(price > 0) and np.all(np.isfinite(qty))
                 and np.all(qty > 0) and int(ids[0]) > self.last_id
                 and (n == 1 or bool(np.all(ids[1:] > ids[:-1]))))
        if not clean:
            return self._add_loop(ids, price, qty, time_ms, maker)
        return self._add_vectorised(ids, price, qty, time_ms, maker)

    def add_lists(self, first_id: int, price: list[float], qty: list[float], time_ms: list[int],
                  is_buyer_maker: list[bool]) -> BatchResult:
        """``add_batch`` of trades given as Python lists, with ids ``first_id, first_id + 1, ...``
        (the tick proxy numbers its pseudo-trades so). A few trades, each in its own second, go
        straight to ``add`` (what ``add_batch`` does with them, minus the round trip through
        arrays); anything else takes ``add_batch`` itself."""
        n = len(time_ms)
        valid = self._own_seconds_valid(price, qty, time_ms) if n <= FEW_TRADES else None
        if valid is not None:
            if n and first_id == self.last_id + 1 and valid and self._n and time_ms[0] // 1000 > self._sec:
                # no gap, and the first trade too commits the open second: all of them at once
                self._add_own_seconds(price, qty, time_ms, is_buyer_maker)
                return BatchResult(accepted=n)
            if n and first_id > self.last_id and valid:
                self.add(first_id, price[0], qty[0], time_ms[0], is_buyer_maker[0])  # accepted: new id, valid
                if n > 1:
                    self._add_own_seconds(price[1:], qty[1:], time_ms[1:], is_buyer_maker[1:])
                return BatchResult(accepted=n)
            counts = [0, 0, 0, 0]
            add = self.add
            for t in zip(range(first_id, first_id + n), price, qty, time_ms, is_buyer_maker):
                counts[add(*t)] += 1
            return BatchResult(*counts)
        return self.add_batch(np.arange(first_id, first_id + n, dtype=np.int64), np.array(price, dtype=np.float64),
                              np.array(qty, dtype=np.float64), np.array(time_ms, dtype=np.int64),
                              np.array(is_buyer_maker, dtype=bool))

    def _add_own_seconds(self, price: Sequence[float], qty: Sequence[float], time_ms: Sequence[int],
                         is_buyer_maker: Sequence[bool]) -> None:
        """``add`` of valid trades whose ids follow ``last_id`` and whose seconds rise after the
        open one (which has trades): each commits the open second and opens its own, as ``add``,
        ``_roll`` and ``_commit`` do, with the state in locals. The tests ``add`` makes cannot
        fail here, and a second of one trade is that trade (0.0 + x == x for x > 0)."""
        sec, o, h, lo, c = self._sec, self._o, self._h, self._l, self._c
        buy, sell, n, pv, disc = self._buy, self._sell, self._n, self._pv, self._disc
        cvd, total_buy, total_sell, pending = self.cvd, self.total_buy, self.total_sell, self._pending_disc
        committed = []
        for p, q, t, maker in zip(price, qty, time_ms, is_buyer_maker):
            total_buy += buy
            total_sell += sell
            committed.append((sec, o, h, lo, c, buy, sell, n, pv, disc, cvd))
            sec, o, h, lo, c, n, pv, disc, pending = t // 1000, p, p, p, p, 1, p * q, pending, False
            if maker:
                buy, sell = 0.0, q
                cvd -= q
            else:
                buy, sell = q, 0.0
                cvd += q
        self._sec, self._o, self._h, self._l, self._c = sec, o, h, lo, c
        self._buy, self._sell, self._n, self._pv, self._disc = buy, sell, n, pv, disc
        self.cvd, self.total_buy, self.total_sell, self._pending_disc = cvd, total_buy, total_sell, pending
        self._keep(committed)
        count = len(committed)
        self.last_id += count
        self.last_price = price[-1]
        self.last_time_ms = time_ms[-1]
        self.accepted += count

    def _own_seconds_valid(self, price: list[float], qty: list[float], time_ms: list[int]) -> bool | None:
        """None when two trades share a second (``_one_trade_per_second`` is False), else
        whether every price and quantity is valid (finite and positive): both tests in one pass."""
        previous = self._sec - 1
        valid = True
        for p, q, t in zip(price, qty, time_ms):
            sec = t // 1000
            if sec <= previous:
                return None
            previous = sec
            if not (0.0 < p < _INF and 0.0 < q < _INF):
                valid = False
        return valid

    def _one_trade_per_second(self, time_ms: list[int]) -> bool:
        """No two trades of the batch share a second (nor a second before the open one): then
        ``_add_vectorised``'s per-second sums are the trades themselves and ``add`` gives the
        same state bit for bit (its ``if``/``elif`` on high and low too: low <= high)."""
        previous = self._sec - 1
        for t in time_ms:
            sec = t // 1000
            if sec <= previous:
                return False
            previous = sec
        return True

    def _add_loop(self, ids, price, qty, time_ms, maker) -> BatchResult:
        counts = [0, 0, 0, 0]
        add = self.add
        for t in zip(ids.tolist(), price.tolist(), qty.tolist(), time_ms.tolist(), maker.tolist()):
            counts[add(*t)] += 1
        return BatchResult(*counts)

    def _add_vectorised(self, ids, price, qty, time_ms, maker) -> BatchResult:
        n = ids.shape[0]
        prev = np.empty(n, dtype=np.int64)
        prev[0] = self.last_id if self.accepted else ids[0] - 1
        prev[1:] = ids[:-1]
        gap = ids != prev + 1
        for i in np.flatnonzero(gap).tolist():
            self._count_gap(int(prev[i]) + 1, int(ids[i]) - 1)
        secs = time_ms // 1000
        mono = np.maximum.accumulate(secs)
        if self._sec > mono[0]:
            mono = np.maximum(mono, self._sec)
        self.time_regressions += int(np.count_nonzero(secs < mono))
        starts = np.concatenate(([0], np.flatnonzero(mono[1:] != mono[:-1]) + 1))
        ends = np.concatenate((starts[1:], [n]))
        buy = np.where(maker, 0.0, qty)
        sell = np.where(maker, qty, 0.0)
        groups = zip(
            mono[starts].tolist(), price[starts].tolist(), np.maximum.reduceat(price, starts).tolist(),
            np.minimum.reduceat(price, starts).tolist(), price[ends - 1].tolist(),
            np.add.reduceat(buy, starts).tolist(), np.add.reduceat(sell, starts).tolist(),
            (ends - starts).tolist(), np.add.reduceat(price * qty, starts).tolist(),
            np.logical_or.reduceat(gap, starts).tolist(),
            starts.tolist())
        if self.first_id is None:
            self.first_id, self.first_time_ms = int(ids[0]), int(time_ms[0])
        for sec, o, h, lo, c, b, s, cnt, pv, disc, start in groups:
            if sec != self._sec:
                self._roll(sec, o, int(ids[start]), int(time_ms[start]))
                self._h, self._l = h, lo
            else:
                if h > self._h:
                    self._h = h
                if lo < self._l:
                    self._l = lo
            self._c = c
            self._buy += b
            self._sell += s
            self._n += cnt
            self._pv += pv
            self._disc = self._disc or disc
            self.cvd += b - s
        self.last_id = int(ids[-1])
        self.last_price = float(price[-1])
        self.last_time_ms = int(time_ms[-1])
        self.accepted += n
        return BatchResult(accepted=n)

    def _roll(self, sec: int, price: float, trade_id: int, time_ms: int) -> None:
        """Commit the open second and open ``sec`` with its first trade's price."""
        if self._n:
            self._commit()
        elif self.first_id is None:
            self.first_id, self.first_time_ms = trade_id, time_ms
        self._sec = sec
        self._o = self._h = self._l = self._c = price
        self._buy = self._sell = self._pv = 0.0
        self._n = 0
        self._disc = self._pending_disc
        self._pending_disc = False

    def _commit(self) -> None:
        sec, o, h, lo, c = self._sec, self._o, self._h, self._l, self._c
        buy, sell, n, pv, disc = self._buy, self._sell, self._n, self._pv, self._disc
        self.total_buy += buy
        self.total_sell += sell
        self._keep([(sec, o, h, lo, c, buy, sell, n, pv, disc, self.cvd)])

    def _keep(self, committed: Sequence[_Second]) -> None:
        """Committed seconds (ascending) into the recent ones; the ring and the bars take them
        when they are read (``ring``, ``_builder``), many at once."""
        unflushed, unfolded, recent = self._unflushed, self._unfolded, self._recent
        unflushed.extend(committed)
        if len(unflushed) >= UNFLUSHED_SECONDS:
            self._flush_ring()
        unfolded.extend(committed)
        if len(unfolded) >= UNFLUSHED_SECONDS:
            self._fold_bars()
        recent.extend(committed)
        oldest_kept = committed[-1][0] - self._ring.size
        while recent[0][0] <= oldest_kept:  # its ring slot may be reused from now on
            recent.popleft()

    def _fold_bars(self) -> None:
        """Every builder takes the unfolded seconds it has not taken yet; the list starts anew."""
        unfolded = self._unfolded
        for builder in self._builder_list:
            if builder.taken < len(unfolded):
                builder.add_seconds(unfolded[builder.taken:] if builder.taken else unfolded)
            builder.taken = 0
        self._unfolded = []

    def _fold_into(self, builder: _BarBuilder) -> None:
        """``builder`` takes the unfolded seconds it has not taken yet; the others wait (a monitor
        reads the M1 bars every step, the M5 builder takes its seconds when read or when
        ``UNFLUSHED_SECONDS`` are waiting). The same seconds in the same order either way."""
        unfolded = self._unfolded
        if builder.taken < len(unfolded):
            builder.add_seconds(unfolded[builder.taken:] if builder.taken else unfolded)
            builder.taken = len(unfolded)
            if all(other.taken == builder.taken for other in self._builder_list):
                self._fold_bars()  # all taken: the list starts anew

    def _count_gap(self, from_id: int, to_id: int) -> None:
        self.gaps += 1
        self.missing_ids += to_id - from_id + 1
        self.known_gaps.append((from_id, to_id))

    def _record_gap(self, from_id: int, to_id: int) -> None:
        self._count_gap(from_id, to_id)
        self._disc = True

    def _reject_old(self, trade_id: int) -> TradeStatus:
        if (self.first_id is not None and trade_id >= self.first_id
                and not any(lo <= trade_id <= hi for lo, hi in self.known_gaps)):
            self.duplicates += 1
            return DUPLICATE
        self.out_of_order += 1
        return OUT_OF_ORDER

    def mark_discontinuity(self) -> None:
        """Flag the tape as broken here (e.g. the stream lost trades it could not backfill)."""
        self.marked_discontinuities += 1
        self._pending_disc = True
        if self._n:
            self._disc = True

    # ------------------------------------------------------------------ queries
    def _clamp_now(self, now_ms: int) -> int:
        """A local clock behind the exchange's would put the last trades in the future: clamp."""
        if self.last_time_ms is not None and now_ms < self.last_time_ms:
            return self.last_time_ms
        return now_ms

    def seconds(self, window_seconds: int, now_ms: int) -> SecondSeries:
        """The window's per-second buckets (committed ring plus the open second)."""
        now_ms = self._clamp_now(now_ms)
        start_sec, slots, valid, open_at = self._window(window_seconds, now_ms)
        buy, sell, notional, trades, disc = self._volumes(slots, valid, open_at)
        ring = self.ring
        o, h, lo, c = (self._prices(column, slots, valid, open_at, value) for column, value in
                       ((ring.open, self._o), (ring.high, self._h), (ring.low, self._l), (ring.close, self._c)))
        return SecondSeries(int(start_sec), buy, sell, trades, notional, o, h, lo, c, disc,
                            self._cvd_end(buy - sell))

    @property
    def ring(self) -> _SecondRing:
        """The one-second buckets, every committed second written. Writes are deferred to the
        first read (``_commit``): a window summed from ``_recent`` never reads the ring, and one
        write per column for many seconds costs less than one per second."""
        if self._unflushed:
            self._flush_ring()
        return self._ring

    def _flush_ring(self) -> None:
        self._ring.commit_many(self._unflushed)
        self._unflushed = []

    def _check_window(self, window_seconds: int) -> None:
        size = self._ring.size
        if not 1 <= window_seconds <= size:
            raise ValueError(f"window_seconds must be 1..{size} (the ring is sized for the "
                             f"longest configured window), got {window_seconds}")

    def _window(self, window_seconds: int, now_ms: int) -> tuple[int, np.ndarray, np.ndarray, int | None]:
        """(first second, ring slots, slot holds that second, position of the open second or None)."""
        self._check_window(window_seconds)
        ring = self.ring
        now_sec = now_ms // 1000
        start_sec = now_sec - window_seconds + 1
        secs = np.arange(start_sec, now_sec + 1, dtype=np.int64)
        slots = secs % ring.size
        open_at = self._sec - start_sec if self._n and start_sec <= self._sec <= now_sec else None
        return start_sec, slots, ring.stamp[slots] == secs, open_at

    def _volumes(self, slots: np.ndarray, valid: np.ndarray, open_at: int | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per second of the window: buy, sell, notional, trades, discontinuous. Each column is
        gathered, then its stale slots (seconds without trades) are zeroed: the values of
        ``np.where(valid, column[slots], 0)``, same dtype, for half the cost."""
        ring = self.ring
        stale = ~valid
        buy, sell, notional, trades = ring.buy[slots], ring.sell[slots], ring.notional[slots], ring.trades[slots]
        buy[stale] = 0.0
        sell[stale] = 0.0
        notional[stale] = 0.0
        trades[stale] = 0
        disc = valid & ring.disc[slots]
        if open_at is not None:
            i = open_at
            buy[i], sell[i], notional[i], trades[i], disc[i] = self._buy, self._sell, self._pv, self._n, self._disc
        if self._pending_disc:
            disc[-1] = True
        return buy, sell, notional, trades, disc

    @staticmethod
    def _prices(column: np.ndarray, slots: np.ndarray, valid: np.ndarray, open_at: int | None,
                open_value: float) -> np.ndarray:
        """One price column of the window (NaN in seconds without trades; as in ``_volumes``,
        the values of ``np.where(valid, column[slots], np.nan)``)."""
        out = column[slots]
        out[~valid] = np.nan
        if open_at is not None:
            out[open_at] = open_value
        return out

    def _cvd_end(self, delta: np.ndarray) -> np.ndarray:
        """CVD at the end of each second of a window ending now."""
        return (self.cvd - float(np.add.reduce(delta))) + delta.cumsum()

    def metrics(self, window_seconds: int, now_ms: int) -> FlowMetrics:
        """The numbers of ``seconds`` summed up; only the columns it reads are gathered."""
        return self.metrics_many((window_seconds,), now_ms)[0]

    def metrics_many(self, windows_seconds: Sequence[int], now_ms: int, slope: bool = True) -> list[FlowMetrics]:
        """``metrics`` of several windows ending at ``now_ms``, in the order given: the seconds
        of the longest window are read once and each window sums its tail, so every number is
        the one ``metrics`` gives (a monitor asks for two windows every step). A sparse window
        (few seconds with trades, as a tick proxy's usually is) is summed in Python
        (``_recent_seconds``), any other from the ring's columns; same values either way.
        ``slope=False`` skips the CVD least squares (the costliest part) for a caller that does
        not read it: ``cvd_slope`` and ``cvd_slope_norm`` are NaN then."""
        for window_seconds in windows_seconds:
            self._check_window(window_seconds)
        now_ms = self._clamp_now(now_ms)
        longest = max(windows_seconds)
        seconds = self._recent_seconds(longest, now_ms)
        if seconds is not None:
            delta = self._sparse_delta(seconds, now_ms // 1000 - longest + 1, longest) if slope else None
            return [self._summarise_sparse(window_seconds, now_ms, seconds,
                                           None if delta is None else delta[longest - window_seconds:])
                    for window_seconds in windows_seconds]
        start_sec, slots, valid, open_at = self._window(longest, now_ms)
        columns = self._volumes(slots, valid, open_at)
        # Integer and boolean facts of the longest window, read once (exact whatever the order):
        # trade counts per second, the seconds with trades, the last second with a gap.
        counts = columns[3].tolist()
        traded = columns[3].nonzero()[0].tolist()
        broken = columns[4].nonzero()[0]
        last_broken = int(broken[-1]) if broken.shape[0] else -1
        extremes: list[np.ndarray] = []  # high and low prices per second, gathered when first needed
        return [self._summarise(window_seconds, now_ms, start_sec, slots, valid, open_at, columns, extremes,
                                longest - window_seconds, counts, traded, last_broken, slope)
                for window_seconds in windows_seconds]

    def _summarise(self, window_seconds: int, now_ms: int, start_sec: int, slots: np.ndarray, valid: np.ndarray,
                   open_at: int | None, columns: tuple[np.ndarray, ...], extremes: list[np.ndarray],
                   skip: int, counts: list[int], traded: list[int], last_broken: int, slope: bool) -> FlowMetrics:
        """One window's metrics from the longest window's gathered columns, ``skip`` seconds in
        (``counts``, ``traded`` and ``last_broken`` are that window's, see ``metrics_many``)."""
        if skip:
            buy_s, sell_s, notional_s = columns[0][skip:], columns[1][skip:], columns[2][skip:]
        else:
            buy_s, sell_s, notional_s = columns[0], columns[1], columns[2]
        add = np.add.reduce  # what ndarray.sum calls, without its Python layers
        trades = sum(counts[skip:])
        if trades:
            if not extremes:
                extremes += (self._prices(self.ring.high, slots, valid, open_at, self._h),
                             self._prices(self.ring.low, slots, valid, open_at, self._l))
            first = traded[bisect_left(traded, skip)]  # the window's first second with trades
            price_open = float(self._o if first == open_at else self.ring.open[slots[first]])
            # fmax/fmin skip NaN as nanmax/nanmin do (they are those, plus a warning when all NaN)
            price_high = float(np.fmax.reduce(extremes[0][skip:]))
            price_low = float(np.fmin.reduce(extremes[1][skip:]))
        else:
            price_open = price_high = price_low = None
        return self._metrics(window_seconds, now_ms, start_sec + skip, float(add(buy_s)), float(add(sell_s)),
                             float(add(notional_s)), trades,
                             _least_squares_slope(self._cvd_end(buy_s - sell_s)) if slope else None,
                             price_open, price_high, price_low, last_broken >= skip)

    def _recent_seconds(self, window_seconds: int, now_ms: int) -> list[_Second] | None:
        """The seconds with trades in the window ending at ``now_ms``, oldest first (the open
        second last, when it is in the window); None when the window is better summed from the
        ring's columns: more than ``SPARSE_SECONDS`` seconds with trades, or a second committed
        after ``now_ms`` (exchange time stepped back), whose slot may hold what the ring no
        longer has.

        Why it is the ring's content: ``_recent`` keeps the newest committed seconds (at most
        ``SPARSE_SECONDS + 1``) newer than the newest one minus the ring's size, and a window of at
        most that size ending at or after the newest committed second only holds such seconds,
        none of whose slots is reused yet; a window reaching past the oldest one kept holds more
        than ``SPARSE_SECONDS`` seconds with trades, so the walk gives up before it gets there."""
        recent = self._recent
        now_sec = now_ms // 1000
        if recent and recent[-1][0] > now_sec:
            return None
        start_sec = now_sec - window_seconds + 1
        out: list[_Second] = []
        if self._n and start_sec <= self._sec <= now_sec:
            out.append((self._sec, self._o, self._h, self._l, self._c, self._buy, self._sell, self._n, self._pv,
                        self._disc, self.cvd))
        for second in reversed(recent):
            if second[0] < start_sec:
                break
            if len(out) >= SPARSE_SECONDS:
                return None
            out.append(second)
        out.reverse()
        return out

    @staticmethod
    def _sparse_delta(seconds: list[_Second], start_sec: int, window_seconds: int) -> np.ndarray:
        """The window's delta per second (``buy - sell``, 0.0 in seconds without trades)."""
        delta = np.zeros(window_seconds)
        if seconds:
            delta[[s[0] - start_sec for s in seconds]] = [s[5] - s[6] for s in seconds]
        return delta

    def _summarise_sparse(self, window_seconds: int, now_ms: int, seconds: list[_Second],
                          delta: np.ndarray | None) -> FlowMetrics:
        """``_summarise`` from the seconds with trades of a window at least as long
        (``_recent_seconds``; this window reads their tail) and this window's delta per second
        (None: no slope). The sums are numpy's over the window's columns, bit for bit
        (``_pairwise_sum``); maxima, minima and integer sums are exact in any order."""
        start_sec = now_ms // 1000 - window_seconds + 1
        first = bisect_left(seconds, start_sec, key=_second_of)
        slope = None if delta is None else _least_squares_slope(self._cvd_end(delta))
        if first == len(seconds):  # nothing traded in the window
            return self._metrics(window_seconds, now_ms, start_sec, 0.0, 0.0, 0.0, 0, slope, None, None, None,
                                 self._pending_disc)
        sec, o, h, lo, _, buy, sell, n, pv, disc, _ = zip(*seconds[first:])  # the columns of the seconds
        positions = [s - start_sec for s in sec]
        buy_sum, sell_sum, notional = _pairwise_sums(positions, (buy, sell, pv), window_seconds)
        return self._metrics(window_seconds, now_ms, start_sec, buy_sum, sell_sum, notional, sum(n), slope,
                             o[0], max(h), min(lo), self._pending_disc or any(disc))

    def _metrics(self, window_seconds: int, now_ms: int, start_sec: int, buy: float, sell: float, notional: float,
                 trades: int, slope: float | None, price_open: float | None, price_high: float | None,
                 price_low: float | None, discontinuous: bool) -> FlowMetrics:
        """``FlowMetrics`` of a window starting at ``start_sec`` from its sums (``slope`` None:
        not computed, both slopes NaN)."""
        volume = buy + sell
        if slope is None:
            slope = slope_norm = math.nan
        else:
            slope_norm = slope * window_seconds / volume if volume > 0 else 0.0
        last_time_ms = self.last_time_ms
        # positional, in field order (cheaper than keywords on a path taken twice a step)
        return FlowMetrics(
            self.symbol, window_seconds, now_ms, buy, sell, buy - sell, trades, notional,
            notional / volume if volume > 0 else None,  # vwap
            self.cvd, slope, slope_norm,
            buy / volume if volume > 0 else None,  # aggressor_ratio
            (buy - sell) / volume if volume > 0 else None,  # imbalance
            price_open, price_high, price_low, self.last_price, last_time_ms,
            now_ms - last_time_ms if last_time_ms is not None else None,  # staleness_ms
            discontinuous, self.first_time_ms is not None and self.first_time_ms // 1000 <= start_sec)

    def bars(self, seconds: int, include_forming: bool = True) -> list[FlowBar]:
        """Completed bars of ``seconds``, oldest first, plus the one still forming if asked."""
        builder = self._builder(seconds)
        unstored = self._unstored_bars(builder, include_forming)  # first: it may store a bar
        return list(builder.completed) + unstored

    def bar_columns(self, seconds: int, include_forming: bool = True, since_ms: int | None = None,
                    before: int = 0) -> FlowBarColumns:
        """The same bars as ``bars`` (same values, same order), as columns. ``since_ms``: only
        the bars starting at or after it, plus ``before`` bars before those (when there are)."""
        builder = self._builder(seconds)
        return builder.columns.read(self._unstored_bars(builder, include_forming), since_ms, before)

    def _builder(self, seconds: int) -> _BarBuilder:
        """The builder of ``seconds`` bars, every committed second folded in."""
        builder = self.builders.get(seconds)
        if builder is None:
            raise ValueError(f"no {seconds} s bars are built; configured: {sorted(self.builders)}")
        self._fold_into(builder)
        return builder

    def _unstored_bars(self, builder: _BarBuilder, include_forming: bool) -> list[FlowBar]:
        """The bars after ``builder.completed``: the forming bar, when asked (a builder's bar
        that the open second has left behind is stored first: it is complete)."""
        seconds = builder.seconds
        if not self._n:
            return [builder.current()] if builder.n and include_forming else []
        open_start = self._sec - self._sec % seconds
        if builder.n and builder.start != open_start:
            # The open second already belongs to a later bar, and every second committed from
            # now on is at or after it: the builder's bar is complete, store it now (the next
            # commit would), so the stored bars are all there is before the forming one.
            builder.complete()
        if not include_forming:
            return []
        return [_merge(builder.current() if builder.n else None, open_start, seconds, self._o, self._h, self._l,
                       self._c, self._buy, self._sell, self._n, self._pv, self.cvd, self._disc)]

    def stats(self) -> dict[str, int | float | None]:
        return {
            "accepted": self.accepted, "duplicates": self.duplicates,
            "out_of_order": self.out_of_order, "invalid": self.invalid, "gaps": self.gaps,
            "missing_ids": self.missing_ids, "time_regressions": self.time_regressions,
            "marked_discontinuities": self.marked_discontinuities, "last_id": self.last_id,
            "last_trade_ms": self.last_time_ms, "cvd": self.cvd,
        }


def _second_of(second: _Second) -> int:
    return second[0]




def _pairwise_sum(positions: Sequence[int], values: Sequence[float], first: int, last: int, lo: int, n: int
                  ) -> float:
    """``np.add.reduce`` of the ``n`` float64 values from position ``lo`` of an array that is 0.0
    except ``values[k]`` at ``positions[k]`` for k in [first, last) (ascending), bit for bit.

    It is numpy's pairwise summation (``pairwise_sum`` in its loops): fewer than 8 values are
    added in order; up to 128 go to 8 accumulators by position modulo 8, combined as
    ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the last n % 8 values are added in
    order; longer runs are split in two at a multiple of 8 near the middle. The zeros are left
    out: x + 0.0 == x for every x but -0.0, which no value may be (volumes and notionals are
    positive or +0.0). tests/order_flow/test_fast_paths.py checks it against numpy."""
    if n > PAIRWISE_BLOCK:
        half = n // 2
        half -= half % 8
        middle = bisect_left(positions, lo + half, first, last)
        return (_pairwise_sum(positions, values, first, middle, lo, half)
                + _pairwise_sum(positions, values, middle, last, lo + half, n - half))
    total = 0.0
    k = first
    if n >= 8:
        lanes = [0.0] * 8
        tail = lo + n - n % 8
        while k < last and positions[k] < tail:
            lanes[(positions[k] - lo) & 7] += values[k]
            k += 1
        total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
    while k < last:
        total += values[k]
        k += 1
    return total


def _pairwise_sums(positions: Sequence[int], columns: tuple[Sequence[float], Sequence[float], Sequence[float]],
                   n: int) -> tuple[float, float, float]:
    """``_pairwise_sum`` of three columns at the same ``positions`` of ``n`` values, all of
    them: for a window of up to one block (``PAIRWISE_BLOCK``) in one pass (the same lanes,
    the same additions in the same order), else column by column."""
    last = len(positions)
    if n > PAIRWISE_BLOCK:
        return (_pairwise_sum(positions, columns[0], 0, last, 0, n),
                _pairwise_sum(positions, columns[1], 0, last, 0, n),
                _pairwise_sum(positions, columns[2], 0, last, 0, n))
    a_values, b_values, c_values = columns
    a = b = c = 0.0
    k = 0
    if n >= 8:
        a_lanes, b_lanes, c_lanes = [0.0] * 8, [0.0] * 8, [0.0] * 8
        tail = n - n % 8
        while k < last and positions[k] < tail:
            lane = positions[k] & 7
            a_lanes[lane] += a_values[k]
            b_lanes[lane] += b_values[k]
            c_lanes[lane] += c_values[k]
            k += 1
        a, b, c = _combine_lanes(a_lanes), _combine_lanes(b_lanes), _combine_lanes(c_lanes)
    while k < last:
        a += a_values[k]
        b += b_values[k]
        c += c_values[k]
        k += 1
    return a, b, c


def _combine_lanes(r: list[float]) -> float:
    """numpy's combination of its 8 pairwise accumulators."""
    return ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))


_SLOPE_DENOMINATORS: dict[int, tuple[np.ndarray, float]] = {}


def _least_squares_slope(y: np.ndarray) -> float:
    """Slope of y against 0..n-1 (closed form; the centred x and its sum of squares are cached)."""
    n = y.shape[0]
    if n < 2:
        return 0.0
    cached = _SLOPE_DENOMINATORS.get(n)
    if cached is None:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        cached = (x, float(x @ x))
        if len(_SLOPE_DENOMINATORS) < 64:
            _SLOPE_DENOMINATORS[n] = cached
    x, sxx = cached
    return float(x @ (y - fast_mean(y))) / sxx


def fast_mean(values: np.ndarray) -> float:
    """``values.mean()`` of a non-empty 1-D float array, bit for bit (numpy's mean is this reduction divided
    by the count), without the Python layers numpy wraps it in: hot paths call it every step."""
    return float(np.add.reduce(values)) / values.shape[0]


class OrderFlowEngine:
    """Per-symbol delta books. Not thread-safe by itself: wrap it (``feeds.binance_flow``) when a
    stream thread writes while a monitor reads."""

    def __init__(self, windows_seconds: Iterable[int] = DEFAULT_WINDOWS,
                 bar_seconds: Iterable[int] = DEFAULT_BAR_SECONDS, bar_history: int | None = 1440,
                 ring_seconds: int | None = None) -> None:
        self.windows_seconds = tuple(sorted(set(int(w) for w in windows_seconds)))
        if not self.windows_seconds or self.windows_seconds[0] < 1:
            raise ValueError("windows_seconds must hold at least one positive window")
        self.bar_seconds = tuple(sorted(set(int(b) for b in bar_seconds)))
        if any(b < 1 for b in self.bar_seconds):
            raise ValueError("bar_seconds must be positive")
        self.ring_seconds = int(ring_seconds or self.windows_seconds[-1])
        if self.ring_seconds < self.windows_seconds[-1]:
            raise ValueError(f"ring_seconds {self.ring_seconds} is shorter than the longest window "
                             f"{self.windows_seconds[-1]}")
        self.bar_history = bar_history
        self._books: dict[str, SymbolFlow] = {}

    @classmethod
    def from_config(cls, flow_config) -> "OrderFlowEngine":
        """Build from ``config.order_flow_model.FlowEngineConfig`` (duck-typed: no config import)."""
        return cls(flow_config.windows_seconds, flow_config.bar_seconds, flow_config.bar_history)

    def book(self, symbol: str) -> SymbolFlow:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = SymbolFlow(symbol, self.ring_seconds, self.bar_seconds,
                                                    self.bar_history)
        return book

    @property
    def symbols(self) -> list[str]:
        return sorted(self._books)

    def add_trade(self, symbol: str, trade_id: int, price: float, qty: float, time_ms: int,
                  is_buyer_maker: bool) -> TradeStatus:
        book = self._books.get(symbol)
        if book is None:
            book = self.book(symbol)
        return book.add(trade_id, price, qty, time_ms, is_buyer_maker)

    def add_trades(self, symbol: str, ids, price, qty, time_ms, is_buyer_maker) -> BatchResult:
        return self.book(symbol).add_batch(ids, price, qty, time_ms, is_buyer_maker)

    def add_trade_lists(self, symbol: str, first_id: int, price: list[float], qty: list[float],
                        time_ms: list[int], is_buyer_maker: list[bool]) -> BatchResult:
        """``add_trades`` from Python lists, ids counting up from ``first_id`` (``SymbolFlow.add_lists``)."""
        return self.book(symbol).add_lists(first_id, price, qty, time_ms, is_buyer_maker)

    def mark_discontinuity(self, symbol: str) -> None:
        self.book(symbol).mark_discontinuity()

    def get_metrics(self, symbol: str, window_seconds: int, now_ms: int) -> FlowMetrics | None:
        """Metrics of one window; None when the symbol has never traded (callers fail closed)."""
        book = self._books.get(symbol)
        if book is None or book.last_time_ms is None:
            if not 1 <= window_seconds <= self.ring_seconds:
                raise ValueError(f"window_seconds must be 1..{self.ring_seconds}, got {window_seconds}")
            return None
        return book.metrics(window_seconds, now_ms)

    def get_metrics_many(self, symbol: str, windows_seconds: Sequence[int], now_ms: int, slope: bool = True
                         ) -> list[FlowMetrics | None]:
        """``get_metrics`` of each window, in order, from one pass over the tape (``slope=False``:
        without the CVD slopes, see ``SymbolFlow.metrics_many``)."""
        book = self._books.get(symbol)
        if book is None or book.last_time_ms is None:
            for window_seconds in windows_seconds:
                if not 1 <= window_seconds <= self.ring_seconds:
                    raise ValueError(f"window_seconds must be 1..{self.ring_seconds}, got {window_seconds}")
            return [None] * len(windows_seconds)
        return book.metrics_many(windows_seconds, now_ms, slope)

    def all_metrics(self, symbol: str, now_ms: int) -> dict[int, FlowMetrics]:
        """Metrics for every configured window (empty when the symbol has never traded)."""
        out = {}
        for window in self.windows_seconds:
            m = self.get_metrics(symbol, window, now_ms)
            if m is not None:
                out[window] = m
        return out

    def seconds(self, symbol: str, window_seconds: int, now_ms: int) -> SecondSeries | None:
        book = self._books.get(symbol)
        return None if book is None or book.last_time_ms is None else book.seconds(window_seconds, now_ms)

    def bars(self, symbol: str, seconds: int = 60, include_forming: bool = True) -> list[FlowBar]:
        book = self._books.get(symbol)
        return [] if book is None else book.bars(seconds, include_forming)

    def bar_columns(self, symbol: str, seconds: int = 60, include_forming: bool = True,
                    since_ms: int | None = None, before: int = 0) -> FlowBarColumns:
        """``bars`` as columns (no object per bar); empty when the symbol has never traded.
        ``since_ms`` and ``before`` limit them to the recent ones (``SymbolFlow.bar_columns``)."""
        book = self._books.get(symbol)
        if book is None:
            return FlowBarColumns.from_bars([])
        return book.bar_columns(seconds, include_forming, since_ms, before)

    def stats(self, symbol: str) -> dict[str, int | float | None]:
        book = self._books.get(symbol)
        return {} if book is None else book.stats()

    def memory_bytes(self) -> int:
        """Bytes held by the rings (the dominant cost; bars and counters are small)."""
        return sum(b.ring.nbytes() for b in self._books.values())
