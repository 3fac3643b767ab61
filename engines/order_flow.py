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
being filled lives in plain attributes (the hot path touches no numpy) and is committed to the
ring and to the bar builders (M1, M5, ...) when a trade of a later second arrives.

Tape integrity: aggregate ids must rise. A repeated id is a duplicate and is dropped; an id below
the last one is rejected (a late trade from a known gap counts as out of order, anything else we
have already seen counts as a duplicate). An id that skips ahead means trades are missing: the
gap is counted and the second it appears in is flagged ``discontinuous`` so every window and bar
that contains it says so. The stream client backfills gaps before delivering, so a flag here
means a gap that could not be filled.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import IntEnum
from typing import Iterable, Sequence

import numpy as np

_INF = float("inf")
DEFAULT_WINDOWS = (30, 60, 300, 900)
DEFAULT_BAR_SECONDS = (60, 300)
KNOWN_GAPS_KEPT = 256
FEW_TRADES = 32  # batches up to this size take the per-trade path when every trade has its own second


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


@dataclass(frozen=True, slots=True)
class FlowMetrics:
    """Order flow over the ``window_seconds`` ending at ``now_ms`` (one-second resolution).

    The window is the current second plus the ``window_seconds - 1`` before it. Ratios are None
    when nothing traded. ``cvd_slope`` is the least-squares slope of CVD sampled each second
    (base units per second); ``cvd_slope_norm`` is that slope times the window divided by the
    window's volume: scale-free, +1 for a steady one-sided buying tape, 0 for balanced flow
    (a sudden burst can push it a little beyond +-1). ``complete`` is False while the engine has
    not yet seen a whole window of tape; ``discontinuous`` is True when the window contains a
    gap in the tape that was not filled.
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


@dataclass(frozen=True)
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    invalid: int = 0


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

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.stamp, self.buy, self.sell, self.notional, self.open,
                                      self.high, self.low, self.close, self.trades, self.disc))


class _BarColumnStore:
    """The completed bars of one builder as columns, in step with its ``completed`` deque (same
    bars, same history limit), so reading them costs array copies instead of one Python object
    per bar. Appended once per completed bar; the buffer holds twice the history and is
    compacted when full (amortised O(1) per bar)."""

    def __init__(self, seconds: int, history: int | None) -> None:
        self.seconds = seconds
        self.history = history
        capacity = max(16, 2 * history) if history is not None else 64
        self._start = np.empty(capacity, dtype=np.int64)
        self._values = np.empty((3, capacity))  # buy volume, sell volume, cvd
        self._lo = self._hi = 0

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
        if 2 * keep > self._start.shape[0]:  # unbounded history: grow
            start, values = np.empty(2 * keep, dtype=np.int64), np.empty((3, 2 * keep))
        else:
            start, values = self._start, self._values
        start[:keep] = self._start[self._lo:self._hi]
        values[:, :keep] = self._values[:, self._lo:self._hi]
        self._start, self._values, self._lo, self._hi = start, values, 0, keep

    def read(self, after: Sequence[FlowBar] = (), since_ms: int | None = None, before: int = 0) -> FlowBarColumns:
        """A copy of the stored bars (the buffer is reused as bars complete) followed by
        ``after``, the builder's bars not stored yet. With ``since_ms``, only the stored bars
        starting at or after it and the ``before`` bars preceding those (a reader that needs
        the recent bars copies those, not the whole history)."""
        lo, hi = self._lo, self._hi
        if since_ms is not None:
            first = lo + int(self._start[lo:hi].searchsorted(since_ms)) - before
            lo = min(max(lo, first), hi)
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

    def add_second(self, sec: int, o: float, h: float, lo: float, c: float, buy: float, sell: float,
                   n: int, pv: float, cvd_end: float, disc: bool) -> None:
        start = sec - sec % self.seconds
        if start != self.start:
            if self.n:
                bar = self.current()
                self.completed.append(bar)
                self.columns.append(bar)
            self.start, self.o, self.h, self.l, self.c = start, o, h, lo, c
            self.buy, self.sell, self.n, self.pv, self.cvd, self.disc = buy, sell, n, pv, cvd_end, disc
            return
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
        self.ring = _SecondRing(ring_seconds)
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
        if n <= FEW_TRADES and self._one_trade_per_second(time_ms):
            counts = [0, 0, 0, 0]
            add = self.add
            for t in zip(range(first_id, first_id + n), price, qty, time_ms, is_buyer_maker):
                counts[add(*t)] += 1
            return BatchResult(*counts)
        return self.add_batch(np.arange(first_id, first_id + n, dtype=np.int64), np.array(price, dtype=np.float64),
                              np.array(qty, dtype=np.float64), np.array(time_ms, dtype=np.int64),
                              np.array(is_buyer_maker, dtype=bool))

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
        self.ring.commit(sec, o, h, lo, c, buy, sell, n, pv, disc)
        for builder in self._builder_list:
            builder.add_second(sec, o, h, lo, c, buy, sell, n, pv, self.cvd, disc)

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

    def _check_window(self, window_seconds: int) -> _SecondRing:
        ring = self.ring
        if not 1 <= window_seconds <= ring.size:
            raise ValueError(f"window_seconds must be 1..{ring.size} (the ring is sized for the "
                             f"longest configured window), got {window_seconds}")
        return ring

    def _window(self, window_seconds: int, now_ms: int) -> tuple[int, np.ndarray, np.ndarray, int | None]:
        """(first second, ring slots, slot holds that second, position of the open second or None)."""
        ring = self._check_window(window_seconds)
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

    def metrics_many(self, windows_seconds: Sequence[int], now_ms: int) -> list[FlowMetrics]:
        """``metrics`` of several windows ending at ``now_ms``, in the order given. The ring is
        gathered once for the longest window and each window reads its tail: the same values
        in the same positions, so every number is the one ``metrics`` gives (a monitor asks
        for two windows every step)."""
        for window_seconds in windows_seconds:
            self._check_window(window_seconds)
        now_ms = self._clamp_now(now_ms)
        longest = max(windows_seconds)
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
                                longest - window_seconds, counts, traded, last_broken)
                for window_seconds in windows_seconds]

    def _summarise(self, window_seconds: int, now_ms: int, start_sec: int, slots: np.ndarray, valid: np.ndarray,
                   open_at: int | None, columns: tuple[np.ndarray, ...], extremes: list[np.ndarray],
                   skip: int, counts: list[int], traded: list[int], last_broken: int) -> FlowMetrics:
        """One window's metrics from the longest window's gathered columns, ``skip`` seconds in
        (``counts``, ``traded`` and ``last_broken`` are that window's, see ``metrics_many``)."""
        if skip:
            buy_s, sell_s, notional_s = columns[0][skip:], columns[1][skip:], columns[2][skip:]
        else:
            buy_s, sell_s, notional_s = columns[0], columns[1], columns[2]
        add = np.add.reduce  # what ndarray.sum calls, without its Python layers
        buy = float(add(buy_s))
        sell = float(add(sell_s))
        volume = buy + sell
        notional = float(add(notional_s))
        trades = sum(counts[skip:])
        slope = _least_squares_slope(self._cvd_end(buy_s - sell_s))
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
        last_time_ms = self.last_time_ms
        # positional, in field order (cheaper than keywords on a path taken twice a step)
        return FlowMetrics(
            self.symbol, window_seconds, now_ms, buy, sell, buy - sell, trades, notional,
            notional / volume if volume > 0 else None,  # vwap
            self.cvd, slope,
            slope * window_seconds / volume if volume > 0 else 0.0,  # cvd_slope_norm
            buy / volume if volume > 0 else None,  # aggressor_ratio
            (buy - sell) / volume if volume > 0 else None,  # imbalance
            price_open, price_high, price_low, self.last_price, last_time_ms,
            now_ms - last_time_ms if last_time_ms is not None else None,  # staleness_ms
            last_broken >= skip,  # discontinuous
            self.first_time_ms is not None and self.first_time_ms // 1000 <= start_sec + skip)  # complete

    def bars(self, seconds: int, include_forming: bool = True) -> list[FlowBar]:
        """Completed bars of ``seconds``, oldest first, plus the one still forming if asked."""
        builder = self._builder(seconds)
        return list(builder.completed) + self._unstored_bars(builder, include_forming)

    def bar_columns(self, seconds: int, include_forming: bool = True, since_ms: int | None = None,
                    before: int = 0) -> FlowBarColumns:
        """The same bars as ``bars`` (same values, same order), as columns. ``since_ms``: only
        the bars starting at or after it, plus ``before`` bars before those (when there are)."""
        builder = self._builder(seconds)
        return builder.columns.read(self._unstored_bars(builder, include_forming), since_ms, before)

    def _builder(self, seconds: int) -> _BarBuilder:
        builder = self.builders.get(seconds)
        if builder is None:
            raise ValueError(f"no {seconds} s bars are built; configured: {sorted(self.builders)}")
        return builder

    def _unstored_bars(self, builder: _BarBuilder, include_forming: bool) -> list[FlowBar]:
        """The bars after ``builder.completed``: the builder's bar once the open second belongs
        to a later bar (complete, not yet stored), and the forming bar when asked."""
        seconds = builder.seconds
        current = builder.current() if builder.n else None
        if not self._n:
            return [current] if current is not None and include_forming else []
        out = []
        open_start = self._sec - self._sec % seconds
        if current is not None and current.start_ms // 1000 != open_start:
            out.append(current)  # complete: the open second already belongs to a later bar
            current = None
        if include_forming:
            out.append(_merge(current, open_start, seconds, self._o, self._h, self._l, self._c,
                              self._buy, self._sell, self._n, self._pv, self.cvd, self._disc))
        return out

    def stats(self) -> dict[str, int | float | None]:
        return {
            "accepted": self.accepted, "duplicates": self.duplicates,
            "out_of_order": self.out_of_order, "invalid": self.invalid, "gaps": self.gaps,
            "missing_ids": self.missing_ids, "time_regressions": self.time_regressions,
            "marked_discontinuities": self.marked_discontinuities, "last_id": self.last_id,
            "last_trade_ms": self.last_time_ms, "cvd": self.cvd,
        }


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

    def get_metrics_many(self, symbol: str, windows_seconds: Sequence[int], now_ms: int
                         ) -> list[FlowMetrics | None]:
        """``get_metrics`` of each window, in order, from one pass over the ring."""
        book = self._books.get(symbol)
        if book is None or book.last_time_ms is None:
            for window_seconds in windows_seconds:
                if not 1 <= window_seconds <= self.ring_seconds:
                    raise ValueError(f"window_seconds must be 1..{self.ring_seconds}, got {window_seconds}")
            return [None] * len(windows_seconds)
        return book.metrics_many(windows_seconds, now_ms)

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
