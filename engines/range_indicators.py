"""Indicators the range engine needs that engines/indicators.py does not provide.

Same conventions as engines/indicators.py: 1-D float arrays, oldest first, NaN where the
history is too short. The shared module's ATR is Wilder-smoothed; the range rules define ATR14
as the SIMPLE mean of the last 14 true ranges, hence ``mean_atr``.

The ``*_last`` functions return only the newest value of an indicator the range engine reads
once per bar. They are BIT-IDENTICAL to the last element of the full-array function they are
named after (same numpy reductions on the same elements, same scalar operations in the same
order), only without computing the hundreds of values nobody reads; the tests compare them
exactly. Sums are numpy reductions, or ``pairwise_sum`` in numpy's pairwise order for a few plain
floats (a plain Python sum would add in another order). ``rsi_estimate`` is the exception: an
approximation, only for telling which side of a threshold the RSI is on when it is not close.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from engines.frozen import direct_init
from engines.indicators import mean_std, pairwise_sum, sma, swing_pivots, true_range, true_range_step, window_view

__all__ = ["mean_atr", "stochastic", "rolling_vwap", "rolling_vwap_last", "candle_cvd", "candle_cvd_values",
           "ema_direction", "mean_atr_last", "true_ranges_last", "bollinger_last", "stochastic_last", "rsi_last",
           "rsi_estimate", "session_vwap_last", "last_session_sums", "VwapSums", "pivots", "last_pivot_points",
           "last_swing_levels", "last_pivot_high_low"]

_NAN = math.nan


def _divide(a: float, b: float) -> float:
    """``a / b`` with numpy's IEEE result for a zero divisor instead of an exception."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return _NAN
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def mean_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """ATR as the simple mean of the last ``period`` true ranges (the range rules' ATR14)."""
    return sma(true_range(high, low, close), period)


def mean_atr_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> float:
    """``mean_atr(...)[-1]`` from the last ``period + 1`` bars (a true range needs the previous close)."""
    n = len(close)
    if n < period or n == 0:
        return _NAN
    if n == period or not (isinstance(high, np.ndarray) and isinstance(low, np.ndarray)
                           and isinstance(close, np.ndarray) and high.dtype == low.dtype == close.dtype == np.float64):
        start = max(n - period - 1, 0)
        ranges = true_range(high[start:], low[start:], close[start:])
        return float(np.add.reduce(ranges[len(ranges) - period:]) / period)
    return pairwise_sum(true_ranges_last(high, low, close, period)) / period


def true_ranges_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, count: int) -> list[float]:
    """``true_range``'s last ``count`` values (fewer than ``len(close)``: each needs the close
    before), stepped on plain floats: a dozen values cost less in Python than in numpy calls."""
    n = len(close)
    return list(map(true_range_step, high[n - count:].tolist(), low[n - count:].tolist(),
                    close[n - count - 1:n - 1].tolist()))


def bollinger_last(close: np.ndarray, period: int = 20, num_std: float = 2.0) -> tuple[float, float, float, float]:
    """(middle, upper, lower, width) of ``engines.indicators.bollinger`` at the last bar."""
    close = np.asarray(close, dtype=np.float64)
    if len(close) < period:
        return _NAN, _NAN, _NAN, _NAN
    middle, sigma = mean_std(close[len(close) - period:].tolist())
    upper = middle + num_std * sigma
    lower = middle - num_std * sigma
    return middle, upper, lower, _divide(upper - lower, middle)


def stochastic(high: np.ndarray, low: np.ndarray, close: np.ndarray, k_period: int = 14,
               d_period: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Fast stochastic: %K = 100 (C - LL) / (HH - LL) over ``k_period`` bars (50 when the window
    is flat), %D = simple mean of the last ``d_period`` %K values."""
    high, low, close = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    n = len(close)
    k = np.full(n, np.nan)
    if n >= k_period:
        hh = np.maximum.reduce(window_view(high, k_period), axis=1)
        ll = np.minimum.reduce(window_view(low, k_period), axis=1)
        span = hh - ll
        value = np.full(len(span), 50.0)
        np.divide(100.0 * (close[k_period - 1:] - ll), span, out=value, where=span > 0)
        k[k_period - 1:] = value
    d = np.full(n, np.nan)
    valid = n - (k_period - 1)
    if valid >= d_period:
        d[k_period - 1:] = sma(k[k_period - 1:], d_period)
    return k, d


def stochastic_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, k_period: int = 14,
                    d_period: int = 3) -> tuple[float, float]:
    """(%K, %D) of ``stochastic`` at the last bar: only the ``d_period`` newest %K values."""
    n = len(close)
    if n < k_period:
        return _NAN, _NAN
    count = min(d_period, n - k_period + 1)
    first = n - count - k_period + 1  # the first bar of the oldest window needed
    highest = np.maximum.reduce(window_view(high[first:], k_period), axis=1).tolist()
    lowest = np.minimum.reduce(window_view(low[first:], k_period), axis=1).tolist()
    k_values = []
    for hh, ll, c in zip(highest, lowest, np.asarray(close[n - count:], dtype=np.float64).tolist()):
        span = hh - ll
        k_values.append(100.0 * (c - ll) / span if span > 0 else 50.0)
    if count < d_period:
        return k_values[-1], _NAN
    return k_values[-1], float(np.add.reduce(np.array(k_values)) / d_period)


def rsi_last(close: np.ndarray, period: int = 14) -> float:
    """``engines.indicators.rsi(close, period)[-1]``: the same gains and losses, the same seed
    mean and the same Wilder recursion, keeping only the running averages."""
    close = np.asarray(close, dtype=np.float64)
    if len(close) <= period:
        return _NAN
    change = close[1:] - close[:-1]
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    avg_gain = float(np.add.reduce(gain[:period]) / period)
    avg_loss = float(np.add.reduce(loss[:period]) / period)
    divisor = float(period)  # the same division, without converting the int at every step
    for g, l in zip(gain[period:].tolist(), loss[period:].tolist()):  # the Wilder recursion, as indicators.py
        avg_gain += (g - avg_gain) / divisor
        avg_loss += (l - avg_loss) / divisor
    if avg_loss == 0:
        if avg_gain > 0:
            return 100.0
        if avg_gain == 0:
            return 50.0
        return _NAN if math.isnan(avg_gain) else 100.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


@lru_cache(maxsize=16)
def _wilder_weights(period: int, count: int) -> np.ndarray:
    """The weight of each of ``count`` values in Wilder's mean after seeding on the first
    ``period`` of them: the recursion ``x += (v - x) / period`` unrolled into one weighted sum."""
    keep = 1.0 - 1.0 / period
    steps = count - period
    weights = np.empty(count)
    weights[:period] = keep ** steps / period  # the seed mean, decayed by every later step
    weights[period:] = keep ** np.arange(steps - 1, -1, -1, dtype=np.float64) / period
    weights.flags.writeable = False  # shared by every caller through the cache
    return weights


def rsi_estimate(close: np.ndarray, period: int = 14) -> float:
    """``rsi_last`` within about 1e-11 in a few numpy calls instead of a Python loop: Wilder's
    averages as weighted sums of the gains and the losses (another rounding order, so not the
    same bits). Every term is >= 0, so nothing cancels: both ways round to within a few hundred
    ulps of the exact averages, and the RSI moves less than 50 times their relative error. For
    deciding which side of a threshold the RSI is on when it is not within ~1e-6 of it; NaN when
    it cannot say (too few closes, a non-finite average)."""
    close = np.asarray(close, dtype=np.float64)
    if len(close) <= period:
        return _NAN
    change = close[1:] - close[:-1]
    gain = np.maximum(change, 0.0)
    loss = gain - change  # max(-change, 0) exactly
    weights = _wilder_weights(period, len(change))
    avg_gain, avg_loss = float(np.dot(weights, gain)), float(np.dot(weights, loss))
    if not (math.isfinite(avg_gain) and math.isfinite(avg_loss)):
        return _NAN
    if avg_loss == 0:  # no loss at all, as for rsi_last (a positive term never decays to 0 here)
        return 100.0 if avg_gain > 0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


@direct_init
@dataclass(frozen=True)
class VwapSums:
    """The running sums of ``session_vwap_last`` over the last session of a window (carried bar
    by bar in ``engines.range_window``)."""

    session: int  # session id of the window's last bar
    start_time: int  # open time of the session's first bar in the window
    whole_window: bool  # the session starts at the window's first bar (the head decides)
    typical0: float
    weight: float  # cumulative sum of the weights
    weighted_dev: float  # cumulative sum of weight * (typical - typical0)
    dev: float  # cumulative sum of (typical - typical0)
    count: int

    def value(self) -> float:
        if self.weight > 0:
            mean_dev = self.weighted_dev / self.weight
        else:
            mean_dev = self.dev / float(self.count)
        return self.typical0 + mean_dev


def last_session_sums(time_s: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                      volume: np.ndarray, anchor_hour_utc: int = 0) -> VwapSums | None:
    """The last session's running sums of ``engines.indicators.session_vwap`` (numpy cumulative
    sums of the same terms, so the same additions in the same order); None without bars."""
    if len(close) == 0:
        return None
    sid = (np.asarray(time_s, dtype=np.int64) - anchor_hour_utc * 3600) // 86400
    other = np.flatnonzero(sid != sid[-1])
    start = int(other[-1]) + 1 if len(other) else 0
    typical = (np.asarray(high[start:], np.float64) + np.asarray(low[start:], np.float64)
               + np.asarray(close[start:], np.float64)) / 3.0
    volume = np.asarray(volume[start:], dtype=np.float64)
    dev = typical - typical[0]
    weight = np.where(volume > 0, volume, 0.0)
    return VwapSums(int(sid[-1]), int(time_s[start]), start == 0, float(typical[0]), float(np.cumsum(weight)[-1]),
                    float(np.cumsum(weight * dev)[-1]), float(np.cumsum(dev)[-1]), len(dev))


def session_vwap_last(time_s: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                      volume: np.ndarray, anchor_hour_utc: int = 0) -> float:
    """``engines.indicators.session_vwap(...).vwap[-1]``, from the last session's sums only."""
    sums = last_session_sums(time_s, high, low, close, volume, anchor_hour_utc)
    return _NAN if sums is None else sums.value()


def rolling_vwap(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
                 window: int) -> np.ndarray:
    """VWAP of the typical price over the last ``window`` bars at every bar. A window without
    volume falls back to the mean typical price (data without volume stays usable)."""
    typical = (np.asarray(high, float) + np.asarray(low, float) + np.asarray(close, float)) / 3.0
    volume = np.asarray(volume, dtype=np.float64)
    out = np.full(len(typical), np.nan)
    if len(typical) < window:
        return out
    tw = np.add.reduce(window_view(typical * volume, window), axis=1)
    vw = np.add.reduce(window_view(volume, window), axis=1)
    value = np.true_divide(np.add.reduce(window_view(typical, window), axis=1), window)  # the mean
    np.divide(tw, vw, out=value, where=vw > 0)
    out[window - 1:] = value
    return out


def rolling_vwap_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, window: int,
                      count: int) -> list[float]:
    """``rolling_vwap(...)[-count:]`` when those ``count`` windows are complete (``count + window
    - 1 <= len(close)``), on plain floats: the same typical prices and products element by
    element, each window's sums by ``pairwise_sum`` (numpy's row reductions), the same division
    where the volume is positive, else the same mean. A few windows of a few dozen values cost
    less this way than in the dozen numpy calls of the array path."""
    _same_lengths(high=high, low=low, close=close, volume=volume)
    start = len(close) - (count + window - 1)
    typical = [(h + l + c) / 3.0 for h, l, c in zip(np.asarray(high, dtype=np.float64)[start:].tolist(),
                                                    np.asarray(low, dtype=np.float64)[start:].tolist(),
                                                    np.asarray(close, dtype=np.float64)[start:].tolist())]
    volumes = np.asarray(volume, dtype=np.float64)[start:].tolist()
    weighted = [t * v for t, v in zip(typical, volumes)]
    values = []
    for i in range(count):
        total = pairwise_sum(volumes[i:i + window])
        if total > 0:
            values.append(pairwise_sum(weighted[i:i + window]) / total)
        else:
            values.append(pairwise_sum(typical[i:i + window]) / window)
    return values


def candle_cvd(open_: np.ndarray, close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Candle-based cumulative volume delta: a bar adds +volume when it closes up, -volume when
    it closes down, 0 when flat. The stand-in for real order flow on bars alone."""
    return np.array(candle_cvd_values(open_, close, volume), dtype=np.float64)


def candle_cvd_values(open_: np.ndarray, close: np.ndarray, volume: np.ndarray) -> list[float]:
    """``np.cumsum(np.sign(close - open_) * volume)`` as plain floats, for the few M15 bars the
    divergence reads (a dozen numpy calls on 20 values cost more than the values). The same
    bits: each step is the same IEEE subtraction and product, ``_sign`` is numpy's sign rule,
    and a 1-D cumulative sum is numpy's sequential ``add.accumulate``."""
    _same_lengths(open_=open_, close=close, volume=volume)
    total, out = 0.0, []
    rows = zip(np.asarray(open_, float).tolist(), np.asarray(close, float).tolist(), np.asarray(volume, float).tolist())
    for i, (o, c, v) in enumerate(rows):
        step = _sign(c - o) * v
        total = step if i == 0 else total + step
        out.append(total)
    return out


def _same_lengths(**columns: np.ndarray) -> None:
    """The columns zipped on plain floats are one series: zip would cut a longer one short where
    the array path raised (numpy cannot broadcast them)."""
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of different lengths: {lengths}")


def _sign(value: float) -> float:
    """``np.sign`` of one float: 1.0, -1.0, 0.0 for either zero, NaN for NaN."""
    return 1.0 if value > 0 else -1.0 if value < 0 else 0.0 if value == 0 else value


def ema_direction(close: np.ndarray, period: int, slope_bars: int) -> int:
    """+1 when the EMA rose over the last ``slope_bars`` bars, -1 when it fell, 0 when flat or
    the history is too short. Used as a timeframe's direction in the multi-timeframe score.
    The EMA is ``engines.indicators.ema`` step for step; only the two values compared are kept."""
    if len(close) < max(period, slope_bars + 1):
        return 0
    data = np.asarray(close, dtype=np.float64).tolist()
    alpha = 2.0 / (period + 1.0)
    split = len(data) - slope_bars  # the EMA at index split - 1 is the earlier value
    current = data[0]
    for value in data[1:split]:
        current = current + alpha * (value - current)
    earlier = current
    for value in data[split:]:
        current = current + alpha * (value - current)
    change = current - earlier
    return 1 if change > 0 else -1 if change < 0 else 0


def pivots(high: np.ndarray, low: np.ndarray, left: int = 3, right: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``engines.indicators.swing_pivots`` (same rule, same booleans) on light window views."""
    high, low = np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64)
    n = len(high)
    if left < 1 or right < 1 or n < left + right + 1:
        return swing_pivots(high, low, left, right)
    is_high = np.zeros(n, dtype=bool)
    is_low = np.zeros(n, dtype=bool)
    hw = window_view(high, left + right + 1)
    lw = window_view(low, left + right + 1)
    centre_h, centre_l = hw[:, left], lw[:, left]
    is_high[left:n - right] = ((centre_h > np.maximum.reduce(hw[:, :left], axis=1))
                               & (centre_h >= np.maximum.reduce(hw[:, left + 1:], axis=1)))
    is_low[left:n - right] = ((centre_l < np.minimum.reduce(lw[:, :left], axis=1))
                              & (centre_l <= np.minimum.reduce(lw[:, left + 1:], axis=1)))
    return is_high, is_low


_PIVOT_TAIL = 64  # bars searched first for the latest pivots; all bars only when too few are found


def _tail_pivots(high: np.ndarray, low: np.ndarray, left: int, right: int
                 ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Pivots of the last ``_PIVOT_TAIL`` bars: (is_high, is_low, offset, certain). A pivot
    depends only on the ``left`` bars before it and the ``right`` after, so the flags from
    index ``certain`` on are the ones ``pivots`` over ALL bars gives (before it the tail lacks
    the bars to the left). With fewer bars than the tail this is the full computation."""
    offset = max(0, len(high) - _PIVOT_TAIL)
    is_high, is_low = pivots(high[offset:], low[offset:], left, right)
    return is_high, is_low, offset, (left if offset else 0)


def last_pivot_points(high: np.ndarray, low: np.ndarray, left: int, right: int, count: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The last ``count`` pivot points (a bar that is both a high and a low counts once):
    (indices, is_high, is_low) at those indices, as ``swing_pivots`` over all bars marks them."""
    is_high, is_low, offset, certain = _tail_pivots(high, low, left, right)
    points = np.flatnonzero(is_high | is_low)
    points = points[points >= certain]
    if len(points) < count and offset:
        is_high, is_low = pivots(high, low, left, right)
        points, offset = np.flatnonzero(is_high | is_low), 0
    points = points[max(len(points) - count, 0):]
    return points + offset, is_high[points], is_low[points]


def last_swing_levels(high: np.ndarray, low: np.ndarray, left: int, right: int, count: int
                      ) -> tuple[list[float], list[float], int] | None:
    """``range_metrics.swing_levels`` (the highs and the lows of the last ``count`` pivot points,
    time order, and how many points) read bar by bar backwards from the newest decidable bar
    of the last ``_PIVOT_TAIL`` bars, on plain floats, until ``count`` points are found: a few
    dozen bars instead of the array path's flags for all of them. The same booleans as
    ``pivots``: for finite values Python's max and min return the value numpy's reductions
    return and the comparisons are exact (a bar at tail index >= ``left`` is decided by the
    tail, as in ``_tail_pivots``). None when this cannot tell: other than float64 values, a
    non-finite value in the tail (numpy's NaN rule differs from Python's), too few bars, no
    point asked for, or fewer than ``count`` points in a tail with bars before it (the array
    path then decides)."""
    n = len(high)
    if (count < 1 or left < 1 or right < 1 or n < left + right + 1 or high.dtype != np.float64
            or low.dtype != np.float64):
        return None
    offset = max(0, n - _PIVOT_TAIL)
    hs, ls = high[offset:].tolist(), low[offset:].tolist()
    if not (math.isfinite(sum(hs)) and math.isfinite(sum(ls))):
        return None
    highs: list[float] = []
    lows: list[float] = []
    found = 0
    for i in range(len(hs) - right - 1, left - 1, -1):
        h, l = hs[i], ls[i]
        # the next-door bars first: they are in the windows, so this only settles most bars sooner
        is_high = h > hs[i - 1] and h >= hs[i + 1] and h > max(hs[i - left:i]) and h >= max(hs[i + 1:i + right + 1])
        is_low = l < ls[i - 1] and l <= ls[i + 1] and l < min(ls[i - left:i]) and l <= min(ls[i + 1:i + right + 1])
        if is_high or is_low:
            if is_high:
                highs.append(h)
            if is_low:
                lows.append(l)
            found += 1
            if found == count:
                break
    else:
        if offset:
            return None  # fewer points in the tail: the bars before it decide
    highs.reverse()
    lows.reverse()
    return highs, lows, found


def last_pivot_high_low(high: np.ndarray, low: np.ndarray, left: int, right: int) -> tuple[int | None, int | None]:
    """Indices of the latest pivot high and the latest pivot low over all bars (None: none)."""
    is_high, is_low, offset, certain = _tail_pivots(high, low, left, right)
    highs, lows = np.flatnonzero(is_high[certain:]), np.flatnonzero(is_low[certain:])
    if offset and (len(highs) == 0 or len(lows) == 0):
        is_high, is_low = pivots(high, low, left, right)
        highs, lows, offset, certain = np.flatnonzero(is_high), np.flatnonzero(is_low), 0, 0
    shift = offset + certain
    return (int(highs[-1]) + shift if len(highs) else None), (int(lows[-1]) + shift if len(lows) else None)
