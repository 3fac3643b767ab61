"""Technical indicators as plain numpy functions on arrays, plus incremental twins.

Conventions (every function follows them, so results line up bar for bar):
- Inputs are 1-D float arrays of equal length, oldest bar first. Outputs have the same length;
  positions without enough history are ``NaN`` (never a made-up value).
- ``true_range[0]`` is ``high[0] - low[0]`` (there is no previous close for the first bar).
- Wilder smoothing ("RMA"), used by ATR, RSI and ADX: seed = simple mean of the first ``period``
  values, then ``x[i] = x[i-1] + (v[i] - x[i-1]) / period``. So ``atr(period)`` is first defined
  at index ``period - 1``; ``atr(..., 1)`` equals the true range itself.
- EMA uses ``alpha = 2 / (period + 1)`` seeded with the first value (pandas ``ewm(adjust=False)``),
  so it is defined from bar 0; after ~10 periods the seed no longer matters.
- Bollinger bands use the population standard deviation (``ddof=0``, Bollinger's definition).
- Session VWAP resets at a UTC hour, weights bars by tick volume and uses the typical price
  ``(H+L+C)/3``. Data without volume (HistData FX files, volume 0) would make VWAP undefined, so
  while a session's cumulative volume is still 0 every bar weighs 1 (a time-weighted average);
  once volume appears, zero-volume bars carry no weight.

Recursive indicators (EMA, Wilder) are computed with a short Python loop: for the few hundred bars
an engine looks at this is faster than any vectorised trick and exactly reproducible by the
incremental state objects below (the tests assert identical values). Engines that re-evaluate a
growing window keep those state objects (``AtrState``, ``EmaState``, ``AdxState``, ``VwapState``)
and extend them by the new bars instead of recomputing from the first bar.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import reduce
from operator import add as _add

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "true_range", "atr", "wilder_smooth", "ema", "sma", "rsi", "bollinger", "BollingerBands",
    "session_ids", "session_vwap", "VwapBands", "swing_pivots", "average_range", "adx", "AdxResult",
    "AtrState", "EmaState", "RsiState", "VwapState", "AdxState", "window_view", "row_mean_std",
    "wilder_list", "wilder_continue", "true_range_step", "last_session_vwap", "pairwise_sum",
    "bollinger_width_step", "mean_std",
]

_NAN = float("nan")


def _as_float(values: np.ndarray | list[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    return array


def _check_period(period: int, name: str = "period") -> None:
    if not isinstance(period, (int, np.integer)) or period < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {period!r}")


def window_view(values: np.ndarray, width: int) -> np.ndarray:
    """Read-only rows of ``width`` consecutive values: ``sliding_window_view(values, width)``
    without its Python-level argument handling (the same memory, strides and results)."""
    if not values.flags.c_contiguous or width < 1 or len(values) < width:
        return sliding_window_view(values, width)
    view = np.ndarray((len(values) - width + 1, width), values.dtype, values, 0,
                      (values.itemsize, values.itemsize))
    view.flags.writeable = False
    return view


def row_mean_std(rows: np.ndarray, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``rows.mean(axis=1)`` and ``rows.std(axis=1, ddof=ddof)`` (population by default) with
    numpy's own steps (the same pairwise sums, the same squared deviations, so the same bits)
    without the wrappers."""
    count = rows.shape[1]
    mean = np.true_divide(np.add.reduce(rows, axis=1, keepdims=True), count)
    deviation = rows - mean
    np.multiply(deviation, deviation, out=deviation)
    variance = np.true_divide(np.add.reduce(deviation, axis=1), max(count - ddof, 0))
    return mean[:, 0], np.sqrt(variance)


# ----------------------------------------------------------------------------------------------
# Range and volatility
# ----------------------------------------------------------------------------------------------

def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high-low, |high-prev close|, |low-prev close|); the first bar uses high-low."""
    high, low, close = _as_float(high, "high"), _as_float(low, "low"), _as_float(close, "close")
    tr = high - low
    if len(tr) > 1:
        prev_close = close[:-1]
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(high[1:] - prev_close), np.abs(low[1:] - prev_close)))
    return tr


def wilder_smooth(values: np.ndarray, period: int) -> np.ndarray:
    """Wilder's running mean (RMA): SMA seed over the first ``period`` values, then
    ``x += (v - x) / period``. Leading NaNs in ``values`` are skipped (the seed starts at the first
    non-NaN value), which lets ADX smooth a DX series that itself starts late."""
    _check_period(period)
    return np.array(wilder_list(_as_float(values, "values"), period))


def wilder_list(values: np.ndarray, period: int) -> list[float]:
    """``wilder_smooth`` of a float64 array, as a list (NaN where undefined)."""
    n = len(values)
    seeded = _wilder_seed(values, period)
    if seeded is None:
        return [_NAN] * n
    seed_end, current = seeded
    result = [_NAN] * (seed_end - 1)
    result.append(current)
    result += wilder_continue(current, values[seed_end:].tolist(), period)
    return result


def wilder_last(values: np.ndarray, period: int) -> float:
    """``wilder_smooth(values, period)[-1]`` of a float64 array (NaN when undefined), without
    building the series: the same operations in the same order."""
    seeded = _wilder_seed(values, period)
    if seeded is None:
        return _NAN
    seed_end, current = seeded
    for value in values[seed_end:].tolist():
        current = current + (value - current) / period
    return current


def _wilder_seed(values: np.ndarray, period: int) -> tuple[int, float] | None:
    """(index after the seed, the seed: the mean of the first ``period`` non-NaN-led values), or
    None when there are not enough values after the leading NaNs."""
    n = len(values)
    if n and values[0] == values[0]:
        start = 0
    else:
        valid = np.flatnonzero(~np.isnan(values))
        if len(valid) == 0:
            return None
        start = int(valid[0])
    if n - start < period:
        return None
    seed_end = start + period
    return seed_end, float(np.mean(values[start:seed_end]))


def wilder_continue(current: float, values: list[float], period: int) -> list[float]:
    """Wilder's recursion ``x += (v - x) / period`` from ``current`` over ``values`` (plain
    floats): the values ``wilder_smooth`` produces after its seed, one per input."""
    result: list[float] = []
    append = result.append
    for value in values:
        current = current + (value - current) / period
        append(current)
    return result


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Average true range, Wilder smoothing (see module doc). ``period=1`` gives the true range."""
    _check_period(period)
    tr = true_range(high, low, close)
    if period == 1:
        return tr
    return wilder_smooth(tr, period)


def atr_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> float:
    """``atr(high, low, close, period)[-1]`` (NaN when undefined) for callers that read only the
    newest value: the same operations in the same order, without the whole series."""
    _check_period(period)
    tr = true_range(high, low, close)
    if period == 1:
        return float(tr[-1]) if len(tr) else _NAN
    return wilder_last(tr, period)


def average_range(high: np.ndarray, low: np.ndarray, period: int = 10) -> np.ndarray:
    """Simple mean of (high - low) over the last ``period`` bars: the "average M1 range" filter."""
    _check_period(period)
    return sma(_as_float(high, "high") - _as_float(low, "low"), period)


# ----------------------------------------------------------------------------------------------
# Averages and oscillators
# ----------------------------------------------------------------------------------------------

def sma(values: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average; NaN for the first ``period - 1`` bars."""
    _check_period(period)
    values = _as_float(values, "values")
    out = np.full(len(values), np.nan)
    if len(values) >= period:
        out[period - 1:] = sliding_window_view(values, period).mean(axis=1)
    return out


def ema(values: np.ndarray, period: int) -> np.ndarray:
    """Exponential moving average, alpha = 2/(period+1), seeded with the first value."""
    _check_period(period)
    values = _as_float(values, "values")
    if len(values) == 0:
        return values.copy()
    alpha = 2.0 / (period + 1.0)
    data = values.tolist()
    current = data[0]
    result = [current]
    append = result.append
    for value in data[1:]:
        current = current + alpha * (value - current)
        append(current)
    return np.asarray(result)


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder RSI. Gains/losses are close-to-close changes (first defined at index 1); average
    gain and loss are Wilder-smoothed, so RSI is first defined at index ``period``.
    No losses -> 100; no gains -> 0; no movement at all -> 50."""
    _check_period(period)
    close = _as_float(close, "close")
    out = np.full(len(close), np.nan)
    if len(close) <= period:
        return out
    change = np.diff(close)
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    avg_gain = wilder_smooth(gain, period)
    avg_loss = wilder_smooth(loss, period)
    out[1:] = _rsi_from_averages(avg_gain, avg_loss)
    return out


def _rsi_from_averages(avg_gain: np.ndarray, avg_loss: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    value = np.where((avg_loss == 0) & (avg_gain > 0), 100.0, value)
    value = np.where((avg_loss == 0) & (avg_gain == 0), 50.0, value)
    return value


@dataclass(frozen=True)
class BollingerBands:
    middle: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    width: np.ndarray  # (upper - lower) / middle: a unit-free squeeze measure


def bollinger(close: np.ndarray, period: int = 20, num_std: float = 2.0) -> BollingerBands:
    """SMA +/- ``num_std`` population standard deviations; width relative to the middle band."""
    _check_period(period)
    close = _as_float(close, "close")
    middle = np.full(len(close), np.nan)
    std = np.full(len(close), np.nan)
    if len(close) >= period:
        middle[period - 1:], std[period - 1:] = row_mean_std(window_view(close, period))
    upper = middle + num_std * std
    lower = middle - num_std * std
    with np.errstate(divide="ignore", invalid="ignore"):
        width = (upper - lower) / middle
    return BollingerBands(middle, upper, lower, width)


@dataclass(frozen=True)
class AdxResult:
    adx: np.ndarray
    plus_di: np.ndarray
    minus_di: np.ndarray


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> AdxResult:
    """Wilder's ADX. +DM/-DM and TR from bar 1 on; each is Wilder-smoothed (SMA seed, so DI is
    first defined at index ``period``); DX = 100|+DI - -DI|/(+DI + -DI) (0 when both are 0);
    ADX = Wilder smoothing of DX, first defined at index ``2*period - 1``."""
    _check_period(period)
    high, low, close = _as_float(high, "high"), _as_float(low, "low"), _as_float(close, "close")
    n = len(high)
    nan = np.full(n, np.nan)
    if n < 2:
        return AdxResult(nan, nan.copy(), nan.copy())
    lines = _adx_lines(high, low, close, period)
    pad = np.array([np.nan])
    return AdxResult(np.concatenate([pad, lines.adx]), np.concatenate([pad, lines.plus_di]),
                     np.concatenate([pad, lines.minus_di]))


@dataclass(frozen=True)
class _AdxLines:
    """ADX's intermediate lines, aligned to bars[1:] (each bar's change from the previous)."""

    s_tr: np.ndarray
    s_plus: np.ndarray
    s_minus: np.ndarray
    plus_di: np.ndarray
    minus_di: np.ndarray
    adx: np.ndarray


def _adx_lines(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> _AdxLines:
    up = high[1:] - high[:-1]
    down = low[:-1] - low[1:]
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    tr = true_range(high, low, close)[1:]
    s_tr = wilder_smooth(tr, period)
    s_plus = wilder_smooth(plus_dm, period)
    s_minus = wilder_smooth(minus_dm, period)
    with np.errstate(divide="ignore", invalid="ignore"):
        plus_di = np.where(s_tr > 0, 100.0 * s_plus / s_tr, 0.0)
        minus_di = np.where(s_tr > 0, 100.0 * s_minus / s_tr, 0.0)
        di_sum = plus_di + minus_di
        dx = np.where(di_sum > 0, 100.0 * np.abs(plus_di - minus_di) / di_sum, 0.0)
    undefined = np.isnan(s_tr)
    plus_di[undefined] = np.nan
    minus_di[undefined] = np.nan
    dx[undefined] = np.nan
    return _AdxLines(s_tr, s_plus, s_minus, plus_di, minus_di, wilder_smooth(dx, period))


# ----------------------------------------------------------------------------------------------
# Session VWAP
# ----------------------------------------------------------------------------------------------

def session_ids(time_s: np.ndarray, anchor_hour_utc: int = 0) -> np.ndarray:
    """Integer id of the VWAP session each bar belongs to: sessions start at ``anchor_hour_utc``
    every UTC day. ``time_s`` is bar open time in epoch seconds (UTC)."""
    if not 0 <= anchor_hour_utc <= 23:
        raise ValueError(f"anchor_hour_utc must be 0..23, got {anchor_hour_utc}")
    time_s = np.asarray(time_s, dtype=np.int64)
    return (time_s - anchor_hour_utc * 3600) // 86400


@dataclass(frozen=True)
class VwapBands:
    vwap: np.ndarray
    std: np.ndarray        # volume-weighted standard deviation of typical price around the VWAP
    upper: np.ndarray      # vwap + num_std * std
    lower: np.ndarray
    session_start: np.ndarray  # index of the first bar of each bar's session (within the arrays)


def session_vwap(time_s: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                 volume: np.ndarray, anchor_hour_utc: int = 0, num_std: float = 2.0) -> VwapBands:
    """Session-anchored VWAP of the typical price with volume-weighted std bands.

    Cumulative sums restart at each session. Squares are taken relative to the session's first
    typical price, which keeps the variance free of catastrophic cancellation at large prices.
    A session that starts before the first bar given is anchored at the first bar (the caller
    passes enough bars for a full session when that matters)."""
    high, low, close = _as_float(high, "high"), _as_float(low, "low"), _as_float(close, "close")
    volume = _as_float(volume, "volume")
    n = len(close)
    if not (len(high) == len(low) == len(volume) == len(time_s) == n):
        raise ValueError("session_vwap: time, high, low, close and volume must have the same length")
    if n == 0:
        empty = np.empty(0)
        return VwapBands(empty, empty, empty, empty, np.empty(0, dtype=np.int64))
    typical = (high + low + close) / 3.0
    sid = session_ids(time_s, anchor_hour_utc)
    new_session = np.ones(n, dtype=bool)
    new_session[1:] = sid[1:] != sid[:-1]
    starts = np.flatnonzero(new_session)
    session_start = starts[np.cumsum(new_session) - 1]
    vwap, std = _SessionSums.of(typical, volume, typical[session_start], np.append(starts, n)).vwap_std()
    return VwapBands(vwap, std, vwap + num_std * std, vwap - num_std * std, session_start)


def last_session_vwap(time_s: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                      volume: np.ndarray, anchor_hour_utc: int = 0
                      ) -> tuple[int, np.ndarray, np.ndarray, "VwapState"]:
    """``session_vwap`` of the last session only: (index of its first bar, its VWAP and std lines,
    the ``VwapState`` after the last bar, ready to ``update`` with the next bars). The values are
    those ``session_vwap`` gives over all the bars (same sums, same order)."""
    high, low, close = _as_float(high, "high"), _as_float(low, "low"), _as_float(close, "close")
    volume = _as_float(volume, "volume")
    n = len(close)
    if n == 0 or not (len(high) == len(low) == len(volume) == len(time_s) == n):
        raise ValueError("last_session_vwap: time, high, low, close and volume must be non-empty, same length")
    sid = session_ids(time_s, anchor_hour_utc)
    changes = np.flatnonzero(sid[1:] != sid[:-1])
    start = int(changes[-1]) + 1 if len(changes) else 0
    typical = (high[start:] + low[start:] + close[start:]) / 3.0
    count = n - start
    sums = _SessionSums.of(typical, volume[start:], typical[0], np.array([0, count]))
    vwap, std = sums.vwap_std()
    state = VwapState(anchor_hour_utc, int(sid[-1]), float(typical[0]), float(sums.cum_w[-1]),
                      float(sums.cum_n[-1]), float(sums.cum_dw[-1]), float(sums.cum_d2w[-1]),
                      float(sums.cum_d[-1]), float(sums.cum_d2[-1]))
    return start, vwap, std, state


@dataclass(frozen=True)
class _SessionSums:
    """The running sums behind the session VWAP, restarting at each session, bar by bar."""

    ref: np.ndarray | float  # the session's first typical price (squares are taken relative to it)
    cum_w: np.ndarray
    cum_n: np.ndarray
    cum_dw: np.ndarray
    cum_d2w: np.ndarray
    cum_d: np.ndarray
    cum_d2: np.ndarray

    @classmethod
    def of(cls, typical: np.ndarray, volume: np.ndarray, ref: np.ndarray | float, bounds: np.ndarray
           ) -> "_SessionSums":
        """``ref``: each bar's session-first typical price (one float for a single session);
        ``bounds``: the sessions' first bars, then ``len(typical)``."""
        n = len(typical)
        dev = typical - ref
        weight = np.where(volume > 0, volume, 0.0)

        def session_cumsum(values: np.ndarray) -> np.ndarray:
            # sequential cumsum per session: the same additions, in the same order, as VwapState
            if len(bounds) == 2:
                return np.cumsum(values)
            out = np.empty(n)
            for a, b in zip(bounds[:-1], bounds[1:]):
                out[a:b] = np.cumsum(values[a:b])
            return out

        # A bar's weights depend only on whether its session has seen volume yet, so both
        # cumulative families are computed and picked per bar.
        return cls(ref, session_cumsum(weight), session_cumsum(np.ones(n)), session_cumsum(weight * dev),
                   session_cumsum(weight * dev * dev), session_cumsum(dev), session_cumsum(dev * dev))

    def vwap_std(self) -> tuple[np.ndarray, np.ndarray]:
        use_volume = self.cum_w > 0
        denom = np.where(use_volume, self.cum_w, self.cum_n)
        mean_dev = np.where(use_volume, self.cum_dw, self.cum_d) / denom
        second = np.where(use_volume, self.cum_d2w, self.cum_d2) / denom
        variance = np.maximum(second - mean_dev * mean_dev, 0.0)
        return self.ref + mean_dev, np.sqrt(variance)


# ----------------------------------------------------------------------------------------------
# Structure
# ----------------------------------------------------------------------------------------------

def swing_pivots(high: np.ndarray, low: np.ndarray, left: int = 3, right: int = 3
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean arrays (is_pivot_high, is_pivot_low). A pivot high at ``i`` is strictly above the
    ``left`` highs before it and at least as high as the ``right`` highs after it (so a flat top
    yields its first bar); pivot lows mirror this. A pivot is only known ``right`` bars later:
    the last ``right`` bars are never pivots."""
    _check_period(left, "left")
    _check_period(right, "right")
    high, low = _as_float(high, "high"), _as_float(low, "low")
    n = len(high)
    is_high = np.zeros(n, dtype=bool)
    is_low = np.zeros(n, dtype=bool)
    if n < left + right + 1:
        return is_high, is_low
    is_high[left:n - right] = _pivot_flags(high, left, right, np.greater, np.greater_equal)
    is_low[left:n - right] = _pivot_flags(low, left, right, np.less, np.less_equal)
    return is_high, is_low


def _pivot_flags(values: np.ndarray, left: int, right: int, before: np.ufunc, after: np.ufunc) -> np.ndarray:
    """For every centre in ``[left, n - right)``: ``before(centre, v)`` for each of the ``left``
    values before it and ``after(centre, v)`` for each of the ``right`` after it. Comparing with
    each neighbour is the same test as comparing with their max/min (NaN fails both ways)."""
    n = len(values)
    centre = values[left:n - right]
    flags = before(centre, values[left - 1:n - right - 1])
    for k in range(2, left + 1):
        flags &= before(centre, values[left - k:n - right - k])
    for k in range(1, right + 1):
        flags &= after(centre, values[left + k:n - right + k])
    return flags


# ----------------------------------------------------------------------------------------------
# Incremental variants: same numbers as the array functions, one bar at a time
# ----------------------------------------------------------------------------------------------

@dataclass
class AtrState:
    """Wilder ATR updated bar by bar; ``update`` returns the same value as ``atr(...)[i]``
    (NaN until ``period`` bars have been seen)."""

    period: int = 14
    value: float = _NAN
    prev_close: float = _NAN
    _seed_trs: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        _check_period(self.period)

    def update(self, high: float, low: float, close: float) -> float:
        tr = high - low
        if not math.isnan(self.prev_close):
            tr = max(tr, abs(high - self.prev_close), abs(low - self.prev_close))
        self.prev_close = close
        if self.period == 1:
            self.value = tr
        elif math.isnan(self.value):
            self._seed_trs.append(tr)
            if len(self._seed_trs) == self.period:
                # same numpy routine as the array version, so the seed matches to the last bit
                self.value = float(np.mean(np.asarray(self._seed_trs)))
                self._seed_trs = []
        else:
            self.value = self.value + (tr - self.value) / self.period
        return self.value


@dataclass
class EmaState:
    """EMA updated bar by bar; identical to ``ema(values, period)``."""

    period: int
    value: float = _NAN

    def __post_init__(self) -> None:
        _check_period(self.period)

    def update(self, value: float) -> float:
        return self.update_all([value])

    def update_all(self, values: list[float], start: int = 0, stop: int | None = None) -> float:
        """The EMA after each of ``values[start:stop]`` in turn (the first value starts it), without
        a call per value (nor a copy of the range)."""
        current, alpha = self.value, 2.0 / (self.period + 1.0)
        for i in range(start, len(values) if stop is None else stop):
            value = values[i]
            current = float(value) if current != current else current + alpha * (value - current)
        self.value = current
        return current


@dataclass
class RsiState:
    """Wilder RSI updated bar by bar; identical to ``rsi(close, period)``."""

    period: int = 14
    prev_close: float = _NAN
    avg_gain: float = _NAN
    avg_loss: float = _NAN
    _gains: list[float] = field(default_factory=list, repr=False)
    _losses: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        _check_period(self.period)

    def update(self, close: float) -> float:
        if math.isnan(self.prev_close):
            self.prev_close = close
            return _NAN
        change = close - self.prev_close
        self.prev_close = close
        gain, loss = (change, 0.0) if change > 0 else (0.0, -change if change < 0 else 0.0)
        if math.isnan(self.avg_gain):
            self._gains.append(gain)
            self._losses.append(loss)
            if len(self._gains) < self.period:
                return _NAN
            self.avg_gain = float(np.mean(np.asarray(self._gains)))
            self.avg_loss = float(np.mean(np.asarray(self._losses)))
            self._gains, self._losses = [], []
        else:
            self.avg_gain = self.avg_gain + (gain - self.avg_gain) / self.period
            self.avg_loss = self.avg_loss + (loss - self.avg_loss) / self.period
        return float(_rsi_from_averages(np.array([self.avg_gain]), np.array([self.avg_loss]))[0])

    @property
    def value(self) -> float:
        if math.isnan(self.avg_gain):
            return _NAN
        return float(_rsi_from_averages(np.array([self.avg_gain]), np.array([self.avg_loss]))[0])


@dataclass
class VwapState:
    """Session VWAP updated bar by bar; identical (to rounding) to ``session_vwap``.

    ``update`` takes the bar's open time in epoch seconds and returns (vwap, std)."""

    anchor_hour_utc: int = 0
    session: int | None = None
    ref: float = _NAN
    cum_w: float = 0.0
    cum_n: float = 0.0
    cum_dw: float = 0.0
    cum_d2w: float = 0.0
    cum_d: float = 0.0
    cum_d2: float = 0.0

    def update(self, time_s: int, high: float, low: float, close: float, volume: float
               ) -> tuple[float, float]:
        vwaps, _, std = self.update_all([time_s], [high], [low], [close], [volume], 0, 1)
        return vwaps[0], std

    def update_all(self, times: list[int], highs: list[float], lows: list[float], closes: list[float],
                   volumes: list[float], start: int, stop: int) -> tuple[list[float], int, float]:
        """The session VWAP after each bar ``start..stop-1`` of the lists (plain numbers) in turn,
        on locals instead of attributes: (each bar's VWAP, the index of the last bar that began a
        session or -1, the std after the last bar)."""
        anchor_s, session, ref = self.anchor_hour_utc * 3600, self.session, self.ref
        cum_w, cum_n, cum_dw, cum_d2w, cum_d, cum_d2 = (self.cum_w, self.cum_n, self.cum_dw, self.cum_d2w,
                                                        self.cum_d, self.cum_d2)
        vwaps: list[float] = []
        began = -1
        for i in range(start, stop):
            volume = volumes[i]
            sid = (int(times[i]) - anchor_s) // 86400
            typical = (highs[i] + lows[i] + closes[i]) / 3.0
            if sid != session:
                session, ref, began = sid, typical, i
                cum_w = cum_n = cum_dw = cum_d2w = cum_d = cum_d2 = 0.0
            dev = typical - ref
            weight = volume if volume > 0 else 0.0
            cum_w += weight
            cum_n += 1.0
            cum_dw += weight * dev
            cum_d2w += weight * dev * dev
            cum_d += dev
            cum_d2 += dev * dev
            if cum_w > 0:
                mean_dev = cum_dw / cum_w
            else:
                mean_dev = cum_d / cum_n
            vwaps.append(ref + mean_dev)
        self.session, self.ref = session, ref
        self.cum_w, self.cum_n, self.cum_dw, self.cum_d2w, self.cum_d, self.cum_d2 = (cum_w, cum_n, cum_dw, cum_d2w,
                                                                                      cum_d, cum_d2)
        if not vwaps:
            return vwaps, began, self.value[1]
        second = cum_d2w / cum_w if cum_w > 0 else cum_d2 / cum_n  # ``value``'s std, its mean_dev known
        variance = second - mean_dev * mean_dev
        # max(variance, 0.0) without the call: the same pick, NaN and -0.0 included
        return vwaps, began, math.sqrt(0.0 if variance < 0.0 else variance)

    @property
    def value(self) -> tuple[float, float]:
        if self.session is None:
            return _NAN, _NAN
        if self.cum_w > 0:
            mean_dev, second = self.cum_dw / self.cum_w, self.cum_d2w / self.cum_w
        else:
            mean_dev, second = self.cum_d / self.cum_n, self.cum_d2 / self.cum_n
        return self.ref + mean_dev, math.sqrt(max(second - mean_dev * mean_dev, 0.0))


PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE


def pairwise_sum(values: list[float]) -> float:
    """``np.add.reduce`` of a contiguous float64 row on plain floats, in numpy's order (its
    pairwise summation: eight running sums per block of at most 128 values, blocks split in
    halves, added to the reduction's start of 0.0), so the bits are the same, -0.0 included; for a
    handful of values numpy's per-call cost dominates. The rules' short rows (up to 23 values: the
    5-, 10- and 20-bar means) are written out here, one or two rounds of the eight sums, without a
    further call."""
    n = len(values)
    if n < 8:
        return reduce(_add, values, 0.0)  # ((0.0 + v0) + v1) + ...: numpy's loop for a short row
    # below, 0.0 + x is x, but for -0.0: numpy's 0.0 (the reduction's start)
    if n == 10:  # one round and two values (the 10-bar means: every bar)
        return _pairwise_10(*values)
    if n < 16:  # one round: the eight sums are the first eight values, then the rest in order
        r0, r1, r2, r3, r4, r5, r6, r7 = values[:8]
        return 0.0 + reduce(_add, values[8:], ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)))
    if n == 20:  # two rounds and four values (the Bollinger and 20-bar means: every bar)
        return _pairwise_20(*values)
    if n < 24:  # two rounds
        v = values
        return 0.0 + reduce(_add, v[16:], (((v[0] + v[8]) + (v[1] + v[9])) + ((v[2] + v[10]) + (v[3] + v[11])))
                            + (((v[4] + v[12]) + (v[5] + v[13])) + ((v[6] + v[14]) + (v[7] + v[15]))))
    return 0.0 + _pairwise_blocks(values, n)


def _pairwise_10(v0: float, v1: float, v2: float, v3: float, v4: float, v5: float, v6: float, v7: float, v8: float,
                 v9: float) -> float:
    """``pairwise_sum`` of exactly 10 values (its one-round case written out: the eight values
    summed as a tree, then the last two in order), as arguments: no slice or ``reduce``."""
    return 0.0 + ((((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7))) + v8 + v9)


def _pairwise_20(v0: float, v1: float, v2: float, v3: float, v4: float, v5: float, v6: float, v7: float, v8: float,
                 v9: float, v10: float, v11: float, v12: float, v13: float, v14: float, v15: float, v16: float,
                 v17: float, v18: float, v19: float) -> float:
    """``pairwise_sum`` of exactly 20 values (its two-round case written out: the eight sums, then
    the last four in order), as arguments: no list, slice or index per value."""
    return 0.0 + ((((v0 + v8) + (v1 + v9)) + ((v2 + v10) + (v3 + v11)))
                  + (((v4 + v12) + (v5 + v13)) + ((v6 + v14) + (v7 + v15))) + v16 + v17 + v18 + v19)


def _pairwise_blocks(values: list[float], n: int) -> float:
    """numpy's pairwise sum of n >= 24 values (without the reduction's start)."""
    if n > PAIRWISE_BLOCK:
        half = n // 2
        half -= half % 8
        return _pairwise_blocks(values[:half], half) + _pairwise_blocks(values[half:], n - half)  # both >= 64
    full = n - n % 8
    sums = values[:8]  # the eight running sums, each advanced by one value of every full block
    for i in range(8, full, 8):
        sums = list(map(_add, sums, values[i:i + 8]))
    r0, r1, r2, r3, r4, r5, r6, r7 = sums
    return reduce(_add, values[full:], ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)))


def mean_std(window: list[float], ddof: int = 0) -> tuple[float, float]:
    """``row_mean_std`` of one row (mean, sigma; population by default) on plain floats: the same
    pairwise sums, squared deviations and divisions, so the same bits (see ``pairwise_sum``).
    The window holds more than ``ddof`` values."""
    count = len(window)
    if count == 20:
        return _mean_std_20(window, ddof)
    mean = pairwise_sum(window) / count
    squares = [(deviation := value - mean) * deviation for value in window]
    return mean, math.sqrt(pairwise_sum(squares) / (count - ddof))


def _mean_std_20(window: list[float], ddof: int) -> tuple[float, float]:
    """``mean_std`` of 20 values (the default Bollinger period, a window at every bar) with the
    deviations as locals: the same operations in the same order, without the list of squares
    (half the cost)."""
    mean = _pairwise_20(*window) / 20
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, v16, v17, v18, v19 = window
    v0, v1, v2, v3, v4, v5, v6 = v0 - mean, v1 - mean, v2 - mean, v3 - mean, v4 - mean, v5 - mean, v6 - mean
    v7, v8, v9, v10, v11, v12, v13 = v7 - mean, v8 - mean, v9 - mean, v10 - mean, v11 - mean, v12 - mean, v13 - mean
    v14, v15, v16, v17, v18, v19 = v14 - mean, v15 - mean, v16 - mean, v17 - mean, v18 - mean, v19 - mean
    squares = _pairwise_20(v0 * v0, v1 * v1, v2 * v2, v3 * v3, v4 * v4, v5 * v5, v6 * v6, v7 * v7, v8 * v8, v9 * v9,
                           v10 * v10, v11 * v11, v12 * v12, v13 * v13, v14 * v14, v15 * v15, v16 * v16, v17 * v17,
                           v18 * v18, v19 * v19)
    return mean, math.sqrt(squares / (20 - ddof))


def bollinger_width_step(window: list[float], num_std: float) -> float:
    """(upper - lower) / middle of ONE complete Bollinger window (``period`` closes, oldest
    first) on plain floats, with ``row_mean_std``'s steps (``mean_std``), so the value is the one
    the array path gives for that bar. (The 20-value case without ``mean_std``'s own call.)"""
    mean, std = _mean_std_20(window, 0) if len(window) == 20 else mean_std(window)
    band = num_std * std
    width = (mean + band) - (mean - band)
    if mean == 0.0:  # numpy's inf/NaN instead of Python's ZeroDivisionError
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(width) / np.float64(mean))
    return width / mean


def true_range_step(high: float, low: float, prev_close: float) -> float:
    """``true_range`` of one bar after the first, on plain floats, with ``np.maximum``'s rule
    (the larger, NaN if either is NaN: Python's max is not), so the same value, NaN included."""
    span, up, down = high - low, abs(high - prev_close), abs(low - prev_close)
    gap = up if up >= down or up != up else down
    return span if span >= gap or span != span else gap


@dataclass
class AdxState:
    """ADX extended bar by bar; ``update`` returns the same value as ``adx(...).adx[i]``.

    There is no incremental seeding: ``from_arrays`` runs the array computation over the bars so
    far and keeps what the next bar needs. Before ``2 * period`` bars the ADX is undefined and the
    state is not ``ready`` (recompute from the arrays instead)."""

    period: int = 14
    prev_high: float = _NAN
    prev_low: float = _NAN
    prev_close: float = _NAN
    s_tr: float = _NAN
    s_plus: float = _NAN
    s_minus: float = _NAN
    value: float = _NAN

    @classmethod
    def from_arrays(cls, high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> "AdxState":
        _check_period(period)
        high, low, close = _as_float(high, "high"), _as_float(low, "low"), _as_float(close, "close")
        if len(high) < 2:
            return cls(period)
        lines = _adx_lines(high, low, close, period)
        return cls(period, float(high[-1]), float(low[-1]), float(close[-1]), float(lines.s_tr[-1]),
                   float(lines.s_plus[-1]), float(lines.s_minus[-1]), float(lines.adx[-1]))

    @property
    def ready(self) -> bool:
        return not math.isnan(self.value)

    def update_all(self, highs: list[float], lows: list[float], closes: list[float], start: int = 0,
                   stop: int | None = None) -> float:
        """The ADX after each bar ``start..stop-1`` of ``highs``, ``lows`` and ``closes`` in turn
        (Wilder's smoothing of +DM, -DM and the true range), on locals instead of attributes (and no
        copies of the range). Raises ValueError unless ``ready`` (see ``from_arrays``)."""
        period, prev_high, prev_low, prev_close = self.period, self.prev_high, self.prev_low, self.prev_close
        s_tr, s_plus, s_minus, value = self.s_tr, self.s_plus, self.s_minus, self.value
        for i in range(start, len(highs) if stop is None else stop):
            high, low, close = highs[i], lows[i], closes[i]
            if value != value:  # not ``ready`` (NaN)
                raise ValueError("AdxState.update needs a ready state (see from_arrays)")
            up, down = high - prev_high, prev_low - low
            plus_dm = up if up > down and up > 0 else 0.0
            minus_dm = down if down > up and down > 0 else 0.0
            tr = true_range_step(high, low, prev_close)
            s_tr = s_tr + (tr - s_tr) / period
            s_plus = s_plus + (plus_dm - s_plus) / period
            s_minus = s_minus + (minus_dm - s_minus) / period
            if s_tr != s_tr:  # NaN
                dx = _NAN
            else:
                plus_di = 100.0 * s_plus / s_tr if s_tr > 0 else 0.0
                minus_di = 100.0 * s_minus / s_tr if s_tr > 0 else 0.0
                di_sum = plus_di + minus_di
                dx = 100.0 * abs(plus_di - minus_di) / di_sum if di_sum > 0 else 0.0
            value = value + (dx - value) / period
            prev_high, prev_low, prev_close = high, low, close
        self.prev_high, self.prev_low, self.prev_close = prev_high, prev_low, prev_close
        self.s_tr, self.s_plus, self.s_minus, self.value = s_tr, s_plus, s_minus, value
        return value

    def update(self, high: float, low: float, close: float) -> float:
        return self.update_all([high], [low], [close])
