"""The M5 window carried from one evaluation of a symbol to the next (owned by its MarketMemo).

Evaluated bar after bar, each M5 window is the previous one with the oldest bar(s) dropped and
the newest closed bar(s) appended. ``carried_count`` finds how many bars of the new window are
the tail of the last one, BIT FOR BIT (told by the bars' lineages when both windows are rows of
the bar feed's store, else every column compared as bytes), and the values below are then
derived from the last window's instead of from all bars, reading only the new bars' values:

- the bar check: the carried bars passed it, so only the new ones (and their order after the
  last carried bar) are checked;
- the M15 buckets: complete buckets made of carried bars are the same bars; only the buckets
  after them are built from the few bars after the reused buckets (on plain numbers when the
  result cannot depend on the order of the reductions, ``new_buckets``; else by ``aggregate``);
- the session VWAP: its running sums (numpy's cumulative sums are sequential additions) go on
  from where the last window left them;
- the previous day's levels: the same day inside carried bars has the same high and low;
- the M5 ATR: a carried bar's true range is the same, so only the new bars' are stepped.

Every shortcut gives exactly what the whole-window computation gives (the same operations in the
same order on the same bits); whenever a case is not the plain "same bars plus new ones" case it
falls back to that computation. tests/range_scalp/test_window.py compares them window by window.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from engines.bars import FLOAT64 as _FLOAT64, INT64 as _INT64, carried
from engines.range_data import M5, M15, Bars, aggregate, all_clean, bar_problem
from engines.indicators import pairwise_sum, true_range_step
from engines.range_indicators import VwapSums, last_session_sums, mean_atr_last, true_ranges_last
from engines.range_metrics import (
    bb_width_expansion_pct, bb_width_pct_step, bb_width_rows, bb_widths, width_expansion_pct,
)
from engines.range_sessions import trading_day_start

_COLUMNS = ("time", "open", "high", "low", "close", "volume")
_SMALL = 6  # at most this many new M5 bars extend the last M15 buckets; more: the whole-window aggregate


def same_bars(a: Bars, b: Bars, columns: tuple[str, ...] = _COLUMNS) -> bool:
    """The same bars to the last bit in ``columns`` (all by default): the same object, or the
    same length and bytes (times first: a new bar differs there at once)."""
    if a is b:
        return True
    if a.period_s != b.period_s or len(a.time) != len(b.time):
        return False
    for name in columns:
        if getattr(a, name).tobytes() != getattr(b, name).tobytes():
            return False
    return True


def carried_count(last: Bars, new: Bars) -> int:
    """How many bars at the start of ``new`` are the last bars of ``last``, bit for bit, with no
    bar of ``last`` after them (``new[:count]`` is ``last[-count:]``); 0 when unrelated. Told by
    the bars' lineages when they have them (rows of one store that never change, converted the
    same way: ``range_data.Bars``), else by comparing every column's bytes."""
    n_last, n_new = len(last.time), len(new.time)
    if last is new:
        return n_new
    if not n_last or not n_new or last.period_s != new.period_s:
        return 0
    known = carried(new.lineage, last.lineage)
    if known is not None:
        return known if known == 0 or _same_last_bar(last, new, known - 1) else 0
    first = int(last.time.searchsorted(new.time[0]))
    count = n_last - first
    if count <= 0 or count > n_new:
        return 0
    for name in _COLUMNS:
        if getattr(last, name)[first:].tobytes() != getattr(new, name)[:count].tobytes():
            return 0
    return count


def _same_last_bar(last: Bars, new: Bars, at: int) -> bool:
    """A tripwire for a lineage's promise: ``last``'s last bar has the open time and close of
    ``new[at]``. It catches a store that rewrote that one row (then nothing is carried), not a
    rewrite of an earlier row: the store's append-only rule (``engines.bars``) is what makes
    the lineage true."""
    return last.time.item(-1) == new.time.item(at) and last.close.item(-1) == new.close.item(at)


def clean_rows(bars: Bars, start: int) -> bool:
    """``range_data.all_clean`` of the bars from ``start`` on, knowing the bars before were clean:
    each new bar consistent and positive with a finite high and volume, and opening after the
    bar before it (the same comparisons on the exact values, read one by one as plain numbers,
    so NaN fails them as there)."""
    n = len(bars.time)
    if n - start > _SMALL:  # many: the whole-array reductions over them and the bar before
        return all_clean(bars.slice(max(start - 1, 0), n))
    o_, h_, l_, c_, v_ = bars.open, bars.high, bars.low, bars.close, bars.volume
    for i in range(start, n):
        o, h, l, c, v = o_.item(i), h_.item(i), l_.item(i), c_.item(i), v_.item(i)
        if not (h >= o and h >= c and l <= o and l <= c and l > 0 and h < math.inf and v >= 0 and v < math.inf):
            return False
    return _ordered_from(bars, start)


def vwap_sums(bars: Bars, anchor_hour_utc: int) -> VwapSums | None:
    """The running sums of the window's last session (``last_session_sums``); None without bars."""
    return last_session_sums(bars.time, bars.high, bars.low, bars.close, bars.volume, anchor_hour_utc)


def extend_vwap(sums: VwapSums, bars: Bars, start: int, anchor_hour_utc: int) -> VwapSums | None:
    """``sums`` carried over the bars from ``start`` on, when they belong to the same session
    (the same scalar operations as numpy's element-wise ones and its sequential cumulative sums);
    None when a new session begins among them."""
    weight, weighted_dev, dev, typical0 = sums.weight, sums.weighted_dev, sums.dev, sums.typical0
    time, high, low, close, volumes = bars.time, bars.high, bars.low, bars.close, bars.volume
    n = len(time)
    for i in range(start, n):
        if (int(time.item(i)) - anchor_hour_utc * 3600) // 86400 != sums.session:
            return None
        typical = (float(high.item(i)) + float(low.item(i)) + float(close.item(i))) / 3.0
        volume = float(volumes.item(i))
        d = typical - typical0
        w = volume if volume > 0 else 0.0
        weight += w
        weighted_dev += w * d
        dev += d
    return VwapSums(sums.session, sums.start_time, sums.whole_window, typical0, weight, weighted_dev, dev,
                    sums.count + n - start)


def extend_m15(last_m15: Bars, bars: Bars, carried: int, now_s: float) -> Bars | None:
    """``aggregate(bars, M15, now_s)`` from the last window's M15 bars: those of the buckets made
    of carried bars (and not cut by the new window's first bar) plus the buckets after them,
    built from the bars after the reused ones (``new_buckets`` on plain numbers when the result
    cannot depend on the order of the reductions, else ``aggregate`` of those bars: the same
    numpy reductions of the same values in the same memory). None when the buckets cannot be
    split that way."""
    n, m = len(bars.time), len(last_m15.time)
    if not m or not n:
        return None
    end = int(last_m15.time.item(-1)) + M15  # the last reused bucket ends here
    if carried < n and int(bars.time.item(carried)) < end:
        return None  # a new bar falls into a reused bucket
    t0 = int(bars.time.item(0))
    first_full = t0 if t0 % M15 == 0 else t0 - t0 % M15 + M15  # a partial first bucket is dropped
    # the first reused bucket (``searchsorted``'s answer, at once when it is the first one)
    keep = 0 if first_full <= last_m15.time.item(0) else int(last_m15.time.searchsorted(first_full))
    if keep >= m:
        return None
    head = last_m15.tail(m - keep)
    if end + M15 > now_s:
        return head  # no bucket after the reused ones is complete yet
    start = int(bars.time.searchsorted(end))
    if start == n:
        return head  # no bar after the reused buckets
    added: tuple[Any, ...] | None = new_buckets(bars, start, now_s)  # lists, or the aggregate's arrays
    if added is None:
        made = aggregate(bars.slice(start, n), M15, now_s, drop_partial_first=False)
        added = tuple(getattr(made, name) for name in _COLUMNS)
    if not len(added[0]):
        return head
    return Bars(*(np.concatenate((getattr(head, name), column)) for name, column in zip(_COLUMNS, added)), M15)


_EXACT = 2.0 ** 53  # below this every integer is a double and every sum of such integers is exact


def new_buckets(bars: Bars, start: int, now_s: float) -> tuple[list[Any], ...] | None:
    """The columns of ``aggregate(bars[start:], M15, now_s, drop_partial_first=False)`` as plain
    lists for a few bars in time order, or None (then ``aggregate`` builds them). Taken only for
    int64 times and float64 values, when every high and low is finite and positive and every
    volume a non-negative integer (not -0.0) whose bucket total stays below 2**53. Why it is the
    same: the open and close are copies; the max and min of finite positive numbers do not
    depend on the order they are read in, so Python's pick the values numpy's do; every partial
    sum of such integers is an integer below 2**53, so exact: the total is the same in every
    order and ``np.add.reduceat``'s order (not a documented contract) cannot matter. The lists
    concatenated with the reused int64 and float64 columns keep those dtypes."""
    if len(bars) - start > _SMALL + 2 or not _plain_dtypes(bars):
        return None
    rows = zip(bars.time[start:].tolist(), bars.open[start:].tolist(), bars.high[start:].tolist(),
               bars.low[start:].tolist(), bars.close[start:].tolist(), bars.volume[start:].tolist())
    buckets: list[list[Any]] = []  # [open time, open, high, low, close, volume]
    for t, o, h, l, c, v in rows:
        if not (0.0 < l < math.inf and 0.0 < h < math.inf and 0.0 <= v < _EXACT and v.is_integer()
                and math.copysign(1.0, v) > 0.0):
            return None
        bucket = t - t % M15
        if buckets and buckets[-1][0] == bucket:
            last = buckets[-1]
            last[2], last[3], last[4], last[5] = max(last[2], h), min(last[3], l), c, last[5] + v
            if last[5] >= _EXACT:
                return None
        else:
            buckets.append([bucket, o, h, l, c, v])
    complete = [b for b in buckets if b[0] + M15 <= now_s]
    return tuple([b[i] for b in complete] for i in range(len(_COLUMNS)))


def _plain_dtypes(bars: Bars) -> bool:
    """int64 times and float64 values (numpy's own dtype objects; another spelling of them only
    costs the numpy path), the dtypes plain Python ints and floats come back to when the lists
    are concatenated with the reused buckets' columns."""
    return (bars.time.dtype is _INT64 and bars.open.dtype is _FLOAT64 and bars.high.dtype is _FLOAT64
            and bars.low.dtype is _FLOAT64 and bars.close.dtype is _FLOAT64 and bars.volume.dtype is _FLOAT64)


class M5Window:
    """The last M5 windows of one symbol and what was derived from each (module doc). One per
    MarketMemo; it changes speed, never a value. Each remembered value keeps the window it was
    derived from (and whether that window had passed the bar check), so values reach a new
    window only through ``carried_count`` of their own window."""

    def __init__(self) -> None:
        self._pair: tuple[Bars, Bars, int] | None = None  # the last (window, new window, carried count)
        self._clean: tuple[Bars, bool] | None = None  # the last window checked and whether it was clean
        self._m15: tuple[Bars, float, Bars] | None = None  # (window, now_s, its M15 bars)
        self._vwap: tuple[Bars, bool, int, VwapSums | None] | None = None  # (window, was clean, anchor, sums)
        self._day: tuple[Bars, bool, tuple[int, int, float], tuple[Any, str]] | None = None
        self._spans: tuple[Bars, int, list[float]] | None = None  # (window, period, its last true ranges)
        self._widths: tuple[Bars, int, list[float]] | None = None  # (window, period, its last Bollinger widths)

    def _carried(self, last: Bars, bars: Bars) -> int:
        pair = self._pair
        if pair is None or pair[0] is not last or pair[1] is not bars:
            pair = self._pair = (last, bars, carried_count(last, bars))
        return pair[2]

    def _was_clean(self, bars: Bars) -> bool:
        """Did ``bars`` (this very object) pass the bar check here?"""
        return self._clean is not None and self._clean[0] is bars and self._clean[1]

    def bar_problem(self, bars: Bars, what: str) -> str | None:
        """``bar_problem(bars, what)``, checking only the bars not carried over a clean window."""
        last = self._clean
        if last is not None and last[1] and bars.period_s == last[0].period_s:
            count = self._carried(last[0], bars)
            if count and (count == len(bars.time) or clean_rows(bars, count)):
                self._clean = (bars, True)
                return None
        problem = bar_problem(bars, what)
        self._clean = (bars, problem is None)
        return problem

    def aggregate_m15(self, bars: Bars, now_s: float) -> Bars:
        """``aggregate(bars, M15, now_s)``, extending the last window's buckets when it can:
        that window passed the bar check (the last one here, so it was the window before) and
        the new bars follow it in order."""
        last, m15 = self._m15, None
        if last is not None and self._was_clean(last[0]) and last[1] <= now_s and bars.period_s == M5:
            count = self._carried(last[0], bars)
            if count and len(bars.time) - count <= _SMALL and _ordered_from(bars, count):
                m15 = extend_m15(last[2], bars, count, now_s)
        if m15 is None:
            m15 = aggregate(bars, M15, now_s)
        self._m15 = (bars, now_s, m15)
        return m15

    def session_vwap(self, bars: Bars, anchor_hour_utc: int) -> float:
        """``session_vwap_last`` of the window, carrying the last window's session sums while
        both windows are clean and the session began after the new window's first bar."""
        last, sums = self._vwap, None
        clean = self._was_clean(bars)
        if last is not None and last[1] and clean and last[2] == anchor_hour_utc and last[3] is not None \
                and not last[3].whole_window:
            count = self._carried(last[0], bars)
            if count and bars.time.item(0) < last[3].start_time:  # (sorted: ``searchsorted(start) > 0``)
                sums = extend_vwap(last[3], bars, count, anchor_hour_utc)
        if sums is None:
            sums = vwap_sums(bars, anchor_hour_utc)
        self._vwap = (bars, clean, anchor_hour_utc, sums)
        return math.nan if sums is None else sums.value()

    def mean_atr(self, bars: Bars, period: int) -> float:
        """``mean_atr_last(bars.high, bars.low, bars.close, period)``, carrying the last window's
        last ``period`` true ranges: a carried bar's true range reads its own high and low and
        the close before it, all carried (it is never the new window's first bar, which the
        mean does not reach), so only the new bars' are stepped (``true_range_step`` on the same
        floats, as ``mean_atr_last`` does) and the same list is summed in the same order."""
        n = len(bars.time)
        if n <= period or not (bars.high.dtype is _FLOAT64 and bars.low.dtype is _FLOAT64
                               and bars.close.dtype is _FLOAT64):  # else: mean_atr_last decides
            self._spans = None
            return mean_atr_last(bars.high, bars.low, bars.close, period)  # its other branches
        last, spans = self._spans, None
        if last is not None and last[1] == period:
            count = self._carried(last[0], bars)
            if count and n - count <= _SMALL:
                high, low, close = bars.high, bars.low, bars.close
                spans = last[2][n - count:] + [true_range_step(high.item(j), low.item(j), close.item(j - 1))
                                               for j in range(max(count, n - period), n)]
        if spans is None:
            spans = true_ranges_last(bars.high, bars.low, bars.close, period)
        self._spans = (bars, period, spans)
        return pairwise_sum(spans) / period

    def bb_expansion_pct(self, bars: Bars, period: int, min_bars: int) -> float | None:
        """``bb_width_expansion_pct(bars.close[-max(min_bars, 61):], period, min_bars)``, carrying
        the Bollinger widths it reads (those of the windows ending at the last ``bb_width_rows``
        bars): a width depends only on its window's closes, so the windows ending at carried bars
        (all their closes carried: the widths start ``period`` bars after a window's first bar)
        keep theirs and only the new bars' windows are computed (``bb_width_pct_step``, the same
        bits). Taken only for a window that passed the bar check: its closes are positive, so no
        window mean is 0 (where the scalar step would raise instead of giving numpy's inf)."""
        close = bars.close[-max(min_bars, 61):]
        n, rows = len(bars.time), bb_width_rows(len(close), period, min_bars)
        if not rows or bars.close.dtype is not _FLOAT64 or not self._was_clean(bars):
            self._widths = None
            return bb_width_expansion_pct(close, period, min_bars)
        last, widths = self._widths, None
        if last is not None and last[1] == period and len(last[2]) == rows:
            count = self._carried(last[0], bars)
            if count and n - count <= _SMALL and n - count < rows:
                values = bars.close
                widths = last[2][n - count:] + [bb_width_pct_step(values[i - period + 1:i + 1].tolist())
                                                for i in range(count, n)]
        if widths is None:
            widths = bb_widths(close, period, rows)
        self._widths = (bars, period, widths)
        return width_expansion_pct(widths)

    def previous_day(self, bars: Bars, now_s: float, day_start_hour_utc: int, min_hours: float,
                     compute: Callable[[Bars, float, int, float], tuple[Any, str]]) -> tuple[Any, str]:
        """``compute(bars, now_s, day_start_hour_utc, min_hours)`` (previous_day_levels), reused
        while both windows are clean, the current trading day is the same, the day found lies
        inside the carried bars and no new bar is before the current day."""
        last = self._day
        clean = self._was_clean(bars)
        day_start = trading_day_start(now_s, day_start_hour_utc)
        args = (day_start, day_start_hour_utc, min_hours)
        if last is not None and last[1] and clean and last[2] == args and last[3][0] is not None:
            count = self._carried(last[0], bars)
            if (count and int(bars.time.item(0)) <= last[3][0].day_start_s
                    and (count == len(bars.time) or int(bars.time.item(count)) >= day_start)):
                self._day = (bars, clean, args, last[3])
                return last[3]
        result = compute(bars, now_s, day_start_hour_utc, min_hours)
        self._day = (bars, clean, args, result)
        return result


def _ordered_from(bars: Bars, start: int) -> bool:
    """Bars from ``start`` on open in strictly increasing order after the bar before them."""
    time = bars.time
    previous = time.item(start - 1) if start > 0 else None
    for i in range(start, len(time)):
        t = time.item(i)
        if previous is not None and not previous < t:
            return False
        previous = t
    return True


__all__ = ["M5Window", "same_bars", "carried_count", "clean_rows", "extend_m15", "new_buckets", "VwapSums", "vwap_sums",
           "extend_vwap"]
