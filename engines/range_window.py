"""The M5 window carried from one evaluation of a symbol to the next (owned by its MarketMemo).

Evaluated bar after bar, each M5 window is the previous one with the oldest bar(s) dropped and
the newest closed bar(s) appended. ``carried_count`` finds how many bars of the new window are
the tail of the last one, BIT FOR BIT (every column compared as bytes), and the values below
are then derived from the last window's instead of from all bars:

- the bar check: the carried bars passed it, so only the new ones (and their order after the
  last carried bar) are checked;
- the M15 buckets: complete buckets made of carried bars are the same bars; only the buckets
  after them are built (by ``aggregate`` itself, from the few bars after the reused buckets);
- the session VWAP: its running sums (numpy's cumulative sums are sequential additions) go on
  from where the last window left them;
- the previous day's levels: the same day inside carried bars has the same high and low.

Every shortcut gives exactly what the whole-window computation gives (the same operations in the
same order on the same bits); whenever a case is not the plain "same bars plus new ones" case it
falls back to that computation. tests/range_scalp/test_window.py compares them window by window.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from engines.range_data import M5, M15, Bars, aggregate, bar_problem
from engines.range_indicators import VwapSums, last_session_sums
from engines.range_sessions import trading_day_start

_COLUMNS = ("time", "open", "high", "low", "close", "volume")
_SMALL = 6  # at most this many new M5 bars extend the last M15 buckets; more: the whole-window aggregate


def same_bars(a: Bars, b: Bars, columns: tuple[str, ...] = _COLUMNS) -> bool:
    """The same bars to the last bit in ``columns`` (all by default): the same object, or the
    same length and bytes (times first: a new bar differs there at once)."""
    if a is b:
        return True
    if a.period_s != b.period_s or len(a) != len(b):
        return False
    for name in columns:
        if getattr(a, name).tobytes() != getattr(b, name).tobytes():
            return False
    return True


def carried_count(last: Bars, new: Bars) -> int:
    """How many bars at the start of ``new`` are the last bars of ``last``, bit for bit, with no
    bar of ``last`` after them (``new[:count]`` is ``last[-count:]``); 0 when unrelated."""
    if last is new:
        return len(new)
    if not len(last) or not len(new) or last.period_s != new.period_s:
        return 0
    first = int(last.time.searchsorted(new.time[0]))
    count = len(last) - first
    if count <= 0 or count > len(new):
        return 0
    for name in _COLUMNS:
        if getattr(last, name)[first:].tobytes() != getattr(new, name)[:count].tobytes():
            return 0
    return count


def clean_rows(bars: Bars, start: int) -> bool:
    """``range_data._clean`` of the bars from ``start`` on, knowing the bars before were clean:
    each new bar consistent and positive with a finite high and volume, and opening after the
    bar before it (the same comparisons on the exact values, so NaN fails them as there)."""
    first = max(start - 1, 0)
    times = bars.time[first:].tolist()
    rows = zip(bars.open[start:].tolist(), bars.high[start:].tolist(), bars.low[start:].tolist(),
               bars.close[start:].tolist(), bars.volume[start:].tolist())
    for o, h, l, c, v in rows:
        if not (h >= o and h >= c and l <= o and l <= c and l > 0 and h < math.inf and v >= 0 and v < math.inf):
            return False
    return all(a < b for a, b in zip(times, times[1:]))


def vwap_sums(bars: Bars, anchor_hour_utc: int) -> VwapSums | None:
    """The running sums of the window's last session (``last_session_sums``); None without bars."""
    return last_session_sums(bars.time, bars.high, bars.low, bars.close, bars.volume, anchor_hour_utc)


def extend_vwap(sums: VwapSums, bars: Bars, start: int, anchor_hour_utc: int) -> VwapSums | None:
    """``sums`` carried over the bars from ``start`` on, when they belong to the same session
    (the same scalar operations as numpy's element-wise ones and its sequential cumulative sums);
    None when a new session begins among them."""
    weight, weighted_dev, dev, typical0 = sums.weight, sums.weighted_dev, sums.dev, sums.typical0
    for i in range(start, len(bars)):
        if (int(bars.time[i]) - anchor_hour_utc * 3600) // 86400 != sums.session:
            return None
        typical = (float(bars.high[i]) + float(bars.low[i]) + float(bars.close[i])) / 3.0
        volume = float(bars.volume[i])
        d = typical - typical0
        w = volume if volume > 0 else 0.0
        weight += w
        weighted_dev += w * d
        dev += d
    return VwapSums(sums.session, sums.start_time, sums.whole_window, typical0, weight, weighted_dev, dev,
                    sums.count + len(bars) - start)


def extend_m15(last_m15: Bars, bars: Bars, carried: int, now_s: float) -> Bars | None:
    """``aggregate(bars, M15, now_s)`` from the last window's M15 bars: those of the buckets made
    of carried bars (and not cut by the new window's first bar) plus the buckets after them,
    which ``aggregate`` builds from the bars after the reused ones: the same numpy reductions
    of the same values in the same memory. None when the buckets cannot be split that way."""
    if not len(last_m15) or not len(bars):
        return None
    end = int(last_m15.time[-1]) + M15  # the last reused bucket ends here
    if carried < len(bars) and int(bars.time[carried]) < end:
        return None  # a new bar falls into a reused bucket
    t0 = int(bars.time[0])
    first_full = t0 if t0 % M15 == 0 else t0 - t0 % M15 + M15  # a partial first bucket is dropped
    keep = int(last_m15.time.searchsorted(first_full))
    if keep >= len(last_m15):
        return None
    head = last_m15.tail(len(last_m15) - keep)
    start = int(bars.time.searchsorted(end))
    if start == len(bars) or end + M15 > now_s:
        return head  # no bar after the reused buckets, or none of their buckets is complete yet
    added = aggregate(bars.slice(start, len(bars)), M15, now_s, drop_partial_first=False)
    if not len(added):
        return head
    return Bars(*(np.concatenate((getattr(head, name), getattr(added, name))) for name in _COLUMNS), M15)


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
            if count and (count == len(bars) or clean_rows(bars, count)):
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
            if count and _ordered_from(bars, count):
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
            if count and int(bars.time.searchsorted(last[3].start_time)) > 0:
                sums = extend_vwap(last[3], bars, count, anchor_hour_utc)
        if sums is None:
            sums = vwap_sums(bars, anchor_hour_utc)
        self._vwap = (bars, clean, anchor_hour_utc, sums)
        return math.nan if sums is None else sums.value()

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
            if (count and int(bars.time[0]) <= last[3][0].day_start_s
                    and (count == len(bars) or int(bars.time[count]) >= day_start)):
                self._day = (bars, clean, args, last[3])
                return last[3]
        result = compute(bars, now_s, day_start_hour_utc, min_hours)
        self._day = (bars, clean, args, result)
        return result


def _ordered_from(bars: Bars, start: int) -> bool:
    """Bars from ``start`` on open in strictly increasing order after the bar before them."""
    if len(bars) - start > _SMALL:
        return False
    times = bars.time[max(start - 1, 0):].tolist()
    return all(a < b for a, b in zip(times, times[1:]))


__all__ = ["M5Window", "same_bars", "carried_count", "clean_rows", "extend_m15", "VwapSums", "vwap_sums", "extend_vwap"]
