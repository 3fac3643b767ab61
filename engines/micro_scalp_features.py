"""Bars in, one bundle of indicator values out: everything the micro-scalp rules read.

Computed once per evaluation so regimes and checkers agree on the same numbers: the values every
evaluation reads (ATR, session VWAP, EMA, ADX, the average range, the Bollinger width ratio, the
micro pivots) at once, as plain attributes, the others only when a rule first reads them.
``Bars`` is the engine's array form of M1 bars (epoch seconds, UTC); ``Bars.from_frame`` accepts a DataFrame
with a UTC DatetimeIndex (or a ``time`` column) and open/high/low/close columns, plus
``tick_volume`` and/or ``volume`` (feeds/readers.py's layout; tick volume is preferred).

The recursive series (Wilder ATR and ADX, EMA, session VWAP) and the swing pivots can be kept in
a ``SeriesMemo`` between evaluations of one symbol: while each new window is the previous one
plus new bars, they are extended by the new bars instead of recomputed from the first bar (see
``SeriesMemo`` for why that gives the same bits). The memo also keeps the bars as plain lists
(``Features.cols``): the rules read a few recent values per evaluation, and a list index costs a
fraction of a numpy call; and a rule may keep its own per-bar state in it (``Features.kept``).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import reduce
from types import SimpleNamespace
from typing import Any, Callable, ClassVar, NamedTuple, TypeVar, cast

import numpy as np
import pandas as pd

from config.micro_scalp_model import MicroScalpParams
from engines import indicators as ind
from engines.bars import FLOAT64 as _FLOAT64, INT64 as _INT64, BarSeries, Lineage, carried
from engines.frozen import direct_init

_NAN = float("nan")
_INF = math.inf
_PRICES = ("open", "high", "low", "close")
_TICKS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_SMALL_TAIL = 8  # new bars validated as plain numbers


class BadBars(ValueError):
    """The bars cannot be traded on (NaN, non-positive prices, high < low, time not increasing)."""


class _lazy:
    """A read-only attribute computed on first access and then stored on the instance."""

    def __init__(self, compute: Callable[[Any], Any], name: str | None = None) -> None:
        self.compute = compute
        self.name = name or compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self.compute(instance)
        instance.__dict__[self.name] = value
        return value


@direct_init
@dataclass(frozen=True)
class Bars:
    """The engine's bars (see the module docstring). Made from MT5's bars (``from_series``), they
    keep the series' lineage (``engines.bars.Lineage``), and their volume is converted from the
    tick counts only when it is read whole (``row`` reads one bar's without it)."""

    lineage: ClassVar[Lineage | None] = None  # not a field: set by ``from_series`` only

    time_s: np.ndarray  # int64 epoch seconds (UTC), bar open time, strictly increasing
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Bars":
        names = frame.columns.tolist()
        if "time" in names:
            times = pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True))
        elif isinstance(frame.index, pd.DatetimeIndex):
            times = frame.index
            if not isinstance(times.dtype, pd.DatetimeTZDtype):
                raise BadBars("bars index must be timezone-aware UTC (got a naive DatetimeIndex)")
        else:
            raise BadBars("bars need a UTC DatetimeIndex or a 'time' column")
        missing = [c for c in _PRICES if c not in names]
        if missing:
            raise BadBars(f"bars are missing columns: {', '.join(missing)}")
        return cls(_epoch_seconds(times), *_columns(frame, names))

    @classmethod
    def from_series(cls, series: BarSeries) -> "Bars":
        """From the broker's ``BarSeries``: tick volume as the volume (MT5 always records it).

        MT5's bars (float64 prices, integer tick counts) are the series' own arrays and its
        lineage; their volume, ``tick_volume`` as float64, is converted when first read whole
        (``_converted_volume``): converting 1,500 counts costs more than the rest of the hand-over,
        and an evaluation that extends its memo reads only the new bar's (``row``). The counts
        do not change meanwhile: a series with a lineage is read-only store rows that never change
        (``Lineage``), and any other series is read whole at ``SeriesMemo.begin``, as before."""
        o, h, lo, c, ticks = series.open, series.high, series.low, series.close, series.tick_volume
        if not (o.dtype is _FLOAT64 and h.dtype is _FLOAT64 and lo.dtype is _FLOAT64 and c.dtype is _FLOAT64
                and ticks.dtype.kind in "iu" and series.time_s.dtype is _INT64):
            o, h, lo, c = _as_float64(o), _as_float64(h), _as_float64(lo), _as_float64(c)  # (MT5's are float64)
            return cls(series.time_s, o, h, lo, c, _series_volume(series))
        bars = cls.__new__(cls)
        # one new dict, as ``direct_init`` sets it (engines/frozen.py: attribute reads stay fast)
        object.__setattr__(bars, "__dict__", {"time_s": series.time_s, "open": o, "high": h, "low": lo, "close": c,
                                              "_ticks": ticks, "lineage": series.lineage})
        return bars

    @classmethod
    def coerce(cls, bars: Any) -> "Bars":
        if isinstance(bars, BarSeries):  # (first: the monitor's, every evaluation; never a Bars)
            return cls.from_series(bars)
        if isinstance(bars, Bars):
            return bars
        if isinstance(bars, pd.DataFrame):
            return cls.from_frame(bars)
        raise BadBars(f"bars must be a BarSeries, a DataFrame or engines.micro_scalp_features.Bars, not {type(bars).__name__}")

    def row(self, i: int) -> tuple[int, float, float, float, float, float]:
        """Bar ``i`` (``i >= 0``)'s time, open, high, low, close and volume as plain numbers (the
        arrays' values, as ``item`` reads them), without converting the whole volume (see
        ``from_series``): from the store row for bars with a lineage (the same values: the arrays
        are views of those rows), else from the arrays."""
        lineage = self.lineage
        if lineage is not None:
            t, o, h, lo, c, count = lineage[0].row(lineage[1] + i)[:6]
            return t, o, h, lo, c, float(count) if -_EXACT < count < _EXACT else self._volume_at(i)
        return (self.time_s.item(i), self.open.item(i), self.high.item(i), self.low.item(i), self.close.item(i),
                self.volume.item(i))

    def _volume_at(self, i: int) -> float:
        """``volume[i]``, converting that one tick count only when the volume was not read whole."""
        volume = self.__dict__.get("volume")
        if volume is None:
            return cast(float, self.__dict__["_ticks"][i:i + 1].astype(np.float64).item(0))
        return cast(float, volume.item(i))

    def tail(self, count: int) -> "Bars":
        return Bars(self.time_s[-count:], self.open[-count:], self.high[-count:], self.low[-count:],
                    self.close[-count:], self.volume[-count:])

    def validate(self) -> None:
        """Raise BadBars naming the first problem; the engine turns it into a 'data' decision."""
        problem = _first_problem(self.time_s, self.open, self.high, self.low, self.close, self.volume)
        if problem is not None:
            raise BadBars(problem)

    def validate_from(self, start: int) -> None:
        """``validate`` for bars whose first ``start`` are known valid: only bars[start-1:] are
        checked (the last known one for the time step), the same problems in the same order.
        Float64 prices and volume, int64 times."""
        start = max(start - 1, 0)
        if len(self.close) - start <= _SMALL_TAIL:
            problem = _first_problem_small(self.time_s[start:].tolist(), self.open[start:].tolist(),
                                           self.high[start:].tolist(), self.low[start:].tolist(),
                                           self.close[start:].tolist(), self.volume[start:].tolist())
        else:
            problem = _first_problem(self.time_s[start:], self.open[start:], self.high[start:],
                                     self.low[start:], self.close[start:], self.volume[start:])
        if problem is not None:
            raise BadBars(problem)


def _converted_volume(bars: Bars) -> np.ndarray:
    """The volume of bars made by ``from_series`` from integer tick counts: them as float64, as
    ``_series_volume`` converts them."""
    return cast(np.ndarray, bars.__dict__["_ticks"].astype(np.float64))


Bars.volume = _lazy(_converted_volume, "volume")  # type: ignore[assignment]  # (instances made whole hold their own)

_EXACT = 2 ** 53  # every integer of smaller magnitude is a float64 exactly: ``float`` gives numpy's value


def _as_float64(values: np.ndarray) -> np.ndarray:
    """``values.astype(np.float64, copy=False)``, without the call when they are float64 already
    (MT5's prices always are)."""
    return values if values.dtype == _FLOAT64 else values.astype(np.float64)


def _series_volume(series: BarSeries) -> np.ndarray:
    """As ``_volume`` for a frame: tick volume unless it is all NaN (a reader's file without it);
    then zeros (the VWAP weighs bars equally)."""
    ticks = series.tick_volume
    values = ticks.astype(np.float64, copy=False)
    if ticks.dtype.kind in "iu":  # MT5's counts: never NaN
        return values
    if len(values) and (not math.isnan(values[0]) or not np.isnan(values).all()):  # a number first: not all NaN
        return values
    return np.zeros(len(series))


def _epoch_seconds(times: pd.DatetimeIndex) -> np.ndarray:
    """``times.as_unit("s").asi8`` as int64; integer division instead of pandas' conversion when
    every time is a whole second (always, for bars), the conversion itself otherwise."""
    ticks = times.asi8
    per_second = _TICKS_PER_SECOND.get(times.unit)
    if per_second == 1:
        return ticks.astype(np.int64)
    if per_second is not None:
        seconds, rest = np.divmod(ticks, per_second)
        if not rest.any():
            return seconds
    return times.as_unit("s").asi8.astype(np.int64)


def _columns(frame: pd.DataFrame, names: list[Any]) -> tuple[np.ndarray, ...]:
    """open, high, low, close and volume as float64 arrays. One ``to_numpy`` of the whole frame
    (pandas' per-column access costs more than that copy) when its columns are numeric and
    uniquely named; column by column otherwise. The same numbers either way."""
    positions = {name: i for i, name in enumerate(names)}
    table = None
    if len(positions) == len(names):
        try:
            table = frame.to_numpy(np.float64)
        except (TypeError, ValueError):
            table = None
    if table is None:
        def column(name: str) -> np.ndarray | None:
            return frame[name].to_numpy(np.float64) if name in positions else None
    else:
        def column(name: str) -> np.ndarray | None:
            return np.ascontiguousarray(table[:, positions[name]]) if name in positions else None
    prices = [column(name) for name in _PRICES]
    return (*prices, _volume(column, len(frame)))


def _volume(column: Callable[[str], np.ndarray | None], count: int) -> np.ndarray:
    """Tick volume when the frame records it, else the ``volume`` column; a column that is
    entirely NaN (the file has no such data) is skipped, and no volume at all means zeros (the
    VWAP then weighs bars equally). A partly-NaN column is kept so validation rejects it."""
    for name in ("tick_volume", "volume"):
        values = column(name)
        if values is not None and not np.isnan(values).all():
            return values
    return np.zeros(count)


_NOT_FINITE = "bars contain NaN or infinite prices"
_NOT_POSITIVE = "bars contain zero or negative prices"
_INCONSISTENT = "bars have high below low/open/close or low above open/close"
_BAD_VOLUME = "bars contain NaN or negative volume"
_NOT_INCREASING = "bar times are not strictly increasing"


def _first_problem(time_s: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray,
                   close: np.ndarray, volume: np.ndarray) -> str | None:
    """What ``Bars.validate`` reports for these bars (checks in that order), None if fine."""
    prices = np.stack([open_, high, low, close])
    # the usual case in two reductions (NaN fails both comparisons); otherwise find the problem
    if prices.size and not (prices.min() > 0 and prices.max() < math.inf):
        if not np.isfinite(prices).all():
            return _NOT_FINITE
        if (prices <= 0).any():
            return _NOT_POSITIVE
    # high >= max(open, close) and low <= min(open, close) imply high >= low
    if (high < np.maximum(open_, close)).any() or (low > np.minimum(open_, close)).any():
        return _INCONSISTENT
    if volume.size and not (volume.min() >= 0 and volume.max() < math.inf):  # NaN, negative or infinite
        return _BAD_VOLUME
    if len(time_s) > 1 and (np.diff(time_s) <= 0).any():
        return _NOT_INCREASING
    return None


def _first_problem_small(time_s: list, open_: list, high: list, low: list, close: list, volume: list
                         ) -> str | None:
    """``_first_problem`` for a few valid-typed bars, on plain numbers (the same tests, the same
    order: numpy's per-call cost dominates for a handful of bars). Good bars (the usual case) in
    one pass: ``0 < low <= open, close <= high < inf`` holds exactly when the four prices are
    finite, positive and consistent (NaN fails every comparison), ``0 <= volume < inf`` when the
    volume is finite and not negative; anything else is explained by the checks in order."""
    if not time_s:
        return _explain_problem_small(time_s, open_, high, low, close, volume)
    previous = -_INF
    for t, o, h, lo, c, v in zip(time_s, open_, high, low, close, volume):
        if not _good_bar(previous, t, o, h, lo, c, v):
            return _explain_problem_small(time_s, open_, high, low, close, volume)
        previous = t
    return None


def _good_bar(previous: float, t: int, o: float, h: float, lo: float, c: float, v: float) -> bool:
    """Is this bar (opening after ``previous``) good: ``0 < low <= open, close <= high < inf`` and
    ``0 <= volume < inf`` (see ``_first_problem_small``)?"""
    return previous < t and 0 < lo <= o <= h < _INF and lo <= c <= h and 0 <= v < _INF


def _explain_problem_small(time_s: list, open_: list, high: list, low: list, close: list, volume: list
                           ) -> str | None:
    """``_first_problem_small``'s checks one by one, in ``_first_problem``'s order."""
    prices = open_ + high + low + close
    if not all(map(math.isfinite, prices)):
        return _NOT_FINITE
    if min(prices) <= 0:
        return _NOT_POSITIVE
    for o, h, lo, c in zip(open_, high, low, close):
        if h < lo or h < max(o, c) or lo > min(o, c):
            return _INCONSISTENT
    if not all(map(math.isfinite, volume)) or min(volume) < 0:
        return _BAD_VOLUME
    if not all(map(operator.lt, time_s, time_s[1:])):
        return _NOT_INCREASING
    return None


def array_mean(values: np.ndarray) -> float:
    """``float(np.mean(values))`` of a 1-D float array without the wrapper: numpy's mean is this
    same pairwise ``add.reduce`` divided by the count, so the bits are the same."""
    return float(np.add.reduce(values) / len(values))


def list_mean(values: list[float]) -> float:
    """``array_mean(np.array(values))`` on plain floats: numpy's pairwise summation order
    (``ind.pairwise_sum``), so the same bits; NaN for no values, as numpy's 0 / 0. The rules'
    5-bar means take ``pairwise_sum``'s first case here, without its call."""
    count = len(values)
    if count < 8:
        return reduce(operator.add, values, 0.0) / count if count else _NAN  # numpy's loop for a short row
    return ind.pairwise_sum(values) / count


# ----------------------------------------------------------------------------------------------
# Series kept between evaluations
# ----------------------------------------------------------------------------------------------

class _Columns:
    """The bars as plain lists (times, prices, volume) and each bar's candle parts (range
    ``high - low``, body ``|close - open|``, upper and lower wick) computed as the array expressions would
    (``np.maximum``/``np.minimum`` of open and close pick the same value as the comparison below
    for the validated, NaN-free bars), and the wicks' and the body's share of the bar's range
    (NaN for a bar without range). The rules read a handful of recent values and the series
    extend themselves by the new bars: from a list that costs no numpy call and no scalar boxing.
    Append-only: read by index below the evaluation's n, never from the end."""

    def __init__(self) -> None:
        self.upto = 0
        self.time: list[int] = []
        self.open: list[float] = []
        self.high: list[float] = []
        self.low: list[float] = []
        self.close: list[float] = []
        self.volume: list[float] = []
        self.span: list[float] = []
        self.body: list[float] = []
        self.upper: list[float] = []
        self.lower: list[float] = []
        self.wick_share: list[float] = []
        self.body_share: list[float] = []

    def at(self, bars: Bars, n: int) -> "_Columns":
        """Bring the lists to ``bars[:n]`` (appending the new bars when they extend the last)."""
        if self.upto != n:
            if self.upto > n:
                self.__init__()  # type: ignore[misc]
            start = self.upto
            self.append(bars.time_s[start:n].tolist(), bars.open[start:n].tolist(), bars.high[start:n].tolist(),
                        bars.low[start:n].tolist(), bars.close[start:n].tolist(), bars.volume[start:n].tolist())
        return self

    def append(self, times: list[int], opens: list[float], highs: list[float], lows: list[float],
               closes: list[float], volumes: list[float]) -> None:
        """Append the bars that follow the last one."""
        for row in zip(times, opens, highs, lows, closes, volumes):
            self.append_row(*row)

    def row(self, i: int) -> tuple[int, float, float, float, float, float]:
        """Bar ``i`` as ``Bars.row`` gives it."""
        return self.time[i], self.open[i], self.high[i], self.low[i], self.close[i], self.volume[i]

    def append_row(self, t: int, o: float, h: float, lo: float, c: float, v: float) -> None:
        """Append the bar that follows the last one (the usual step: one new bar)."""
        self.upto += 1
        self.time.append(t)
        self.open.append(o)
        self.high.append(h)
        self.low.append(lo)
        self.close.append(c)
        self.volume.append(v)
        top, bottom = (o, c) if o >= c else (c, o)
        candle, upper_wick, lower_wick, span = top - bottom, h - top, bottom - lo, h - lo
        self.span.append(span)
        self.body.append(candle)
        self.upper.append(upper_wick)
        self.lower.append(lower_wick)
        self.wick_share.append((upper_wick + lower_wick) / span if span > 0 else _NAN)
        self.body_share.append(candle / span if span > 0 else _NAN)


class _Series:
    """One indicator series over bars[:upto]; the store brings it to ``n`` bars, extending it by
    the new bars (``extend``, from the column lists) when it can (bars[:upto] unchanged,
    guaranteed by the memo) and recomputing it from the arrays (``compute``) otherwise."""

    upto = 0
    extendable = True
    """Can ``extend`` continue the series? A recursive one cannot from an undefined (NaN) value:
    it sets this after each ``compute`` and ``extend`` (an attribute: no call per series and bar)."""

    def compute(self, bars: Bars, n: int) -> None:
        raise NotImplementedError

    def extend(self, cols: _Columns, start: int, n: int) -> None:
        raise NotImplementedError


class _Atr(_Series):
    """Wilder ATR of the true range (``wilder_smooth(true_range(...), period)``), every value kept
    (the regimes compare ATR now with ATR some bars ago), and the true ranges themselves (ATR(1)
    and the volatility rule read the last ones)."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.values: list[float] = []
        self.true_ranges: list[float] = []

    def compute(self, bars: Bars, n: int) -> None:
        true_ranges = ind.true_range(bars.high[:n], bars.low[:n], bars.close[:n])
        self.values = ind.wilder_list(true_ranges, self.period)
        self.true_ranges = true_ranges.tolist()
        self.extendable = bool(self.values) and not math.isnan(self.values[-1])

    def extend(self, cols: _Columns, start: int, n: int) -> None:
        values, true_ranges, period, step = self.values, self.true_ranges, self.period, ind.true_range_step
        high, low, close = cols.high, cols.low, cols.close
        current = values[-1]
        for i in range(start, n):  # ``ind.wilder_continue`` of the new true ranges
            true_range = step(high[i], low[i], close[i - 1])
            true_ranges.append(true_range)
            current = current + (true_range - current) / period
            values.append(current)
        self.extendable = current == current  # not NaN


class _Ema(_Series):
    """The EMA now (not extendable while NaN: ``EmaState`` would restart from the next close)."""

    def __init__(self, period: int) -> None:
        self.state = ind.EmaState(period)

    def compute(self, bars: Bars, n: int) -> None:
        self.state.value = value = float(ind.ema(bars.close[:n], self.state.period)[-1])
        self.extendable = value == value  # not NaN

    def extend(self, cols: _Columns, start: int, n: int) -> None:
        value = self.state.update_all(cols.close, start, n)
        self.extendable = value == value


class _Adx(_Series):
    """The ADX now (extendable once ``state.ready``)."""

    def __init__(self, period: int) -> None:
        self.state = ind.AdxState(period)

    def compute(self, bars: Bars, n: int) -> None:
        self.state = ind.AdxState.from_arrays(bars.high[:n], bars.low[:n], bars.close[:n], self.state.period)
        self.extendable = self.state.ready

    def extend(self, cols: _Columns, start: int, n: int) -> None:
        value = self.state.update_all(cols.high, cols.low, cols.close, start, n)
        self.extendable = value == value


class _SessionVwap(_Series):
    """The current session's VWAP: where it began, its last values (the slope reads a few), the
    std now, and the running sums to continue it."""

    KEEP = 256  # last VWAP values kept (the rules read at most 2 x vwap_slope_bars <= 120)

    def __init__(self, anchor_hour_utc: int) -> None:
        self.anchor = anchor_hour_utc
        self.start = 0
        self.values: list[float] = []
        self.std = _NAN
        self.state = ind.VwapState(anchor_hour_utc)

    def compute(self, bars: Bars, n: int) -> None:
        self.start, vwap, std, self.state = ind.last_session_vwap(
            bars.time_s[:n], bars.high[:n], bars.low[:n], bars.close[:n], bars.volume[:n], self.anchor)
        self.values = vwap[-self.KEEP:].tolist()
        self.std = float(std[-1])

    def extend(self, cols: _Columns, start: int, n: int) -> None:
        vwaps, began, self.std = self.state.update_all(cols.time, cols.high, cols.low, cols.close, cols.volume,
                                                       start, n)
        if began >= 0:  # a new session: a new list (an older evaluation's view keeps the old one)
            self.start, self.values = began, vwaps[began - start:]
        else:
            self.values += vwaps
        if len(self.values) > 2 * self.KEEP:
            self.values = self.values[-self.KEEP:]  # a new list: views of the old one stay valid


class _BollingerWidths(_Series):
    """Bollinger width at every bar (NaN while the window is incomplete). A width depends on its
    own window only, so new bars' widths are appended, computed on plain floats with the array
    path's steps (``ind.bollinger_width_step``): the same bits."""

    def __init__(self, period: int, num_std: float) -> None:
        self.period, self.num_std = period, num_std
        self.values: list[float] = []

    def compute(self, bars: Bars, n: int) -> None:
        period = self.period
        self.values = [_NAN] * min(n, period - 1)
        if n >= period:
            close = np.ascontiguousarray(bars.close[:n], dtype=np.float64)
            middle, std = ind.row_mean_std(ind.window_view(close, period))
            band = self.num_std * std
            with np.errstate(divide="ignore", invalid="ignore"):
                self.values += (((middle + band) - (middle - band)) / middle).tolist()

    def extend(self, cols: _Columns, start: int, n: int) -> None:
        period, num_std, closes = self.period, self.num_std, cols.close
        for i in range(start, n):
            if i < period - 1:
                self.values.append(_NAN)
            else:
                self.values.append(ind.bollinger_width_step(closes[i - period + 1:i + 1], num_std))


class _Pivots(_Series):
    """Swing pivot indices (``swing_pivots``), ascending lists; a bar's pivot status is final once
    ``right`` bars follow it, so only the newly decidable bars are examined."""

    def __init__(self, left: int, right: int) -> None:
        self.left, self.right = left, right
        self.highs: list[int] = []
        self.lows: list[int] = []

    def compute(self, bars: Bars, n: int) -> None:
        is_high, is_low = ind.swing_pivots(bars.high[:n], bars.low[:n], self.left, self.right)
        self.highs, self.lows = np.flatnonzero(is_high).tolist(), np.flatnonzero(is_low).tolist()

    def extend(self, cols: _Columns, start: int, n: int) -> None:
        left, right = self.left, self.right
        first = start - right              # centres before it were decided with the old bars
        if first < left:                   # (max(start - right, left), without the call)
            first = left
        last = n - right                   # centres from here on wait for later bars
        if last <= first:
            return
        highs, lows = cols.high, cols.low
        for k in range(first, last):  # max/min of neighbours: the bars are validated (no NaN)
            # the bar just before is one of the neighbours (left >= 1: ``swing_pivots`` checked it
            # when the series was computed): most bars fail on it alone
            high, low = highs[k], lows[k]
            if high > highs[k - 1] and high > max(highs[k - left:k]) and high >= max(highs[k + 1:k + 1 + right]):
                self.highs = self.highs + [k]  # new lists: an older evaluation's pivots stay as they were
            if low < lows[k - 1] and low < min(lows[k - left:k]) and low <= min(lows[k + 1:k + 1 + right]):
                self.lows = self.lows + [k]


S = TypeVar("S", bound=_Series)
T = TypeVar("T")


class _Core(NamedTuple):
    """The series every evaluation reads, for one set of parameters (``Features._read_core``)."""

    params: MicroScalpParams
    atr: _Atr
    vwap: _SessionVwap
    ema: _Ema
    adx: _Adx
    bollinger: "_BollingerWidths"
    pivots: "_Pivots"  # (pivot_left, pivot_right)
    range_pivots: "_Pivots"  # (range_pivot_left, range_pivot_right): the range regime's, also read every time


class _Store:
    """The series of one window lineage, by kind and parameters, and the column lists they are
    extended from."""

    def __init__(self) -> None:
        self.upto = 0
        self.core: _Core | None = None
        self.series: dict[tuple[Any, ...], _Series] = {}
        self.columns = _Columns()
        self.kept: dict[tuple[Any, ...], Any] = {}

    def at(self, bars: Bars, n: int) -> "_Store":
        """This store with its columns and every series it holds brought to bars[:n] at once
        (a series not read this time would be extended by the same bars later: the same work,
        without a trip through the store for each read)."""
        if self.upto != n:
            columns = self.columns
            if columns.upto != n:
                columns.at(bars, n)
            for series in self.series.values():
                upto = series.upto
                if 0 < upto < n and series.extendable:
                    series.extend(columns, upto, n)
                else:
                    series.compute(bars, n)
                series.upto = n
            self.upto = n
        return self

    def add(self, key: tuple[Any, ...], series: S, bars: Bars, n: int) -> S:
        """Keep the new ``series`` as ``key``, computed over bars[:n] (the store is at n)."""
        series.compute(bars, n)
        series.upto = n
        self.series[key] = series
        return series


class SeriesMemo:
    """What one symbol's evaluations reuse from the previous one: validated bars and series.

    Reuse is exact or nothing. A Wilder or EMA value depends on the window's first bar (its
    seed), so series are kept only while each new window starts with every bar of the previous
    one, byte for byte (the monitor's window grows from the VWAP anchor hour through the session,
    and a re-check of the same bar repeats it); anything else (a sliding window, a revised bar,
    other dtypes) starts over. Bars from the bar feed's store say which of its never-changing rows
    they are (their lineage): that proves the extension without reading the bytes (``begin``).
    The kept series are extended with the incremental twins of engines/indicators.py, which
    perform the array functions' operations in the same order, so a reused value has the same
    bits as a fresh computation (tests compare them).
    One memo per symbol, used by one caller at a time (not thread-safe)."""

    def __init__(self) -> None:
        self.generation = 0
        self.bars: Bars | None = None   # the window of the current evaluation
        self.size = 0                   # len(bars), counted once (``Bars.__len__`` is a Python call)
        self.store: _Store = _Store()
        self._columns: tuple[bytes, ...] | None = None  # the bytes of ``bars``, None: not comparable
        self._pending = False  # ``bars`` came with a lineage: their bytes are taken when needed
        self._validated = 0
        self._params: MicroScalpParams | None = None
        self._params_view: MicroScalpParams | None = None

    def params_view(self, params: MicroScalpParams) -> MicroScalpParams:
        """``params``' values as plain attributes (a namespace), kept while the same params come
        back (they are frozen): the rules read some sixty parameters per evaluation, and reading
        a pydantic model's attribute costs several times a plain one. The same values, so the
        same decisions."""
        if params is not self._params or self._params_view is None:
            self._params_view = cast(MicroScalpParams, SimpleNamespace(**params.__dict__))
            self._params = params
        return self._params_view

    def begin(self, bars: Bars) -> None:
        """Adopt ``bars`` for this evaluation: keep the series if they extend the last window.
        Bars whose lineage says so are not compared (``_lineage_extends``); any others byte for
        byte, with the last window's bytes (taken then, or, for a window that came with a lineage,
        now: its rows never change)."""
        self.generation += 1
        previous, previous_size = self.bars, self.size
        self.bars, self.size = bars, len(bars.close)  # (``Bars.__len__``, without its call)
        extends = self._lineage_extends(bars, previous, previous_size) if previous is not None else None
        if extends:
            self._columns, self._pending = None, True
            return
        columns = _column_bytes(bars)
        old = _column_bytes(previous) if self._pending and previous is not None else self._columns
        if extends is not None or columns is None or not _extends(columns, old):
            self.store, self._validated = _Store(), 0
        self._columns, self._pending = columns, False

    def _lineage_extends(self, bars: Bars, previous: Bars, previous_size: int) -> bool | None:
        """Do ``bars`` start with every bar of ``previous``, as their lineages prove (rows
        ``[a, b)`` then ``[a, b')``, ``b' >= b``, of one store whose rows never change; see
        ``engines.bars.Lineage``)? None when the lineages do not say. False when they say so but
        the last bar the column lists hold is not there any more: a tripwire, should a store ever
        break its promise (then nothing it held is trusted: the series start over).
        ``previous_size`` is ``len(previous)``."""
        if carried(bars.lineage, previous.lineage) != previous_size:
            return None
        columns = self.store.columns
        last = columns.upto - 1
        return last < 0 or (last < self.size and bars.row(last) == columns.row(last))

    def validate(self, bars: Bars) -> None:
        """``bars.validate()``, checking only the bars this memo has not validated yet.
        ``begin(bars)`` first."""
        if bars is not self.bars or (self._columns is None and not self._pending):
            bars.validate()
            return
        start, n, columns = self._validated, self.size, self.store.columns
        if 0 < start == columns.upto and n - start == 1:
            self._validate_next(bars, columns, start)
        elif 0 < start == columns.upto and n - start < _SMALL_TAIL:
            # the usual step: a few new bars, checked as plain numbers (with the last known bar,
            # for the time step) and then appended to the column lists the series extend from
            first = start - 1
            t, o, h, lo, c, v = rows = (
                bars.time_s[first:].tolist(), bars.open[first:].tolist(), bars.high[first:].tolist(),
                bars.low[first:].tolist(), bars.close[first:].tolist(), bars.volume[first:].tolist())
            problem = _first_problem_small(*rows)
            if problem is not None:
                raise BadBars(problem)
            columns.append(t[1:], o[1:], h[1:], lo[1:], c[1:], v[1:])
        else:
            bars.validate_from(start)
        self._validated = n

    @staticmethod
    def _validate_next(bars: Bars, columns: _Columns, start: int) -> None:
        """``validate`` of the one new bar ``start`` (the monitor's step), read with ``Bars.row`` (no
        array slice), checked against the last known bar's time from the column lists (the
        same values: the memo began with bars that extend them), then appended to the lists."""
        t, o, h, lo, c, v = bars.row(start)
        last = start - 1
        if not _good_bar(columns.time[last], t, o, h, lo, c, v):
            problem = _first_problem_small([columns.time[last], t], [columns.open[last], o], [columns.high[last], h],
                                           [columns.low[last], lo], [columns.close[last], c],
                                           [columns.volume[last], v])
            raise BadBars(cast(str, problem))  # a bad bar always has a problem to name
        columns.append_row(t, o, h, lo, c, v)


_DTYPES = (np.dtype(np.int64),) + (np.dtype(np.float64),) * 5


def _column_bytes(bars: Bars) -> tuple[bytes, ...] | None:
    """The bars' bytes, column by column; None unless they are 1-D int64 times and float64 values
    of one length (anything else is never reused)."""
    t, o, h, lo, c, v = bars.time_s, bars.open, bars.high, bars.low, bars.close, bars.volume
    if (t.dtype, o.dtype, h.dtype, lo.dtype, c.dtype, v.dtype) != _DTYPES \
            or not t.ndim == o.ndim == h.ndim == lo.ndim == c.ndim == v.ndim == 1:
        return None
    columns = tb, ob, hb, lb, cb, vb = t.tobytes(), o.tobytes(), h.tobytes(), lo.tobytes(), c.tobytes(), v.tobytes()
    # 8-byte items, 1-D: the same byte count is the same shape
    return columns if len(tb) == len(ob) == len(hb) == len(lb) == len(cb) == len(vb) else None


def _extends(columns: tuple[bytes, ...], old: tuple[bytes, ...] | None) -> bool:
    """Does every column of ``columns`` start with the same column of ``old``?"""
    return old is not None and len(columns[0]) >= len(old[0]) and all(map(bytes.startswith, columns, old))


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------

class Features:
    """Indicator values for one evaluation, each computed on first read. Arrays and lists are
    full-length (lists may run on past ``n`` once a later evaluation extended them: index them
    below ``n``); scalars describe the last bar (the signal bar: the caller passes closed bars
    only). The bars are validated first (``Bars.validate``): rules may compare their prices as
    plain floats."""

    def __init__(self, bars: Bars, bid: float, ask: float, p: MicroScalpParams,
                 memo: SeriesMemo | None = None) -> None:
        self.bars = bars
        self.n = memo.size if memo is not None and memo.bars is bars else len(bars)
        self.bid = bid
        self.ask = ask
        self.mid = (bid + ask) / 2.0
        self.spread = ask - bid
        self.params = p
        self._memo = memo if memo is not None and memo.bars is bars else None  # begun with these bars
        self._generation = memo.generation if memo is not None else -1
        self._own: _Store | None = None
        self._read_core()

    def _read_core(self) -> None:
        """Read the values every evaluation needs from their series at once (the columns, ATR,
        session VWAP, EMA, ADX, the average range, the Bollinger width ratio, the micro pivots
        and the range regime's): attributes, instead of a lazy read and a series lookup each."""
        store, p, n = self._store(), self.params, self.n
        core = store.core
        if core is None or core.params is not p:
            core = store.core = _Core(
                p, self._series(_Atr, p.atr_period), self._series(_SessionVwap, p.vwap_anchor_hour_utc),
                self._series(_Ema, p.ema_period), self._series(_Adx, p.adx_period),
                self._series(_BollingerWidths, p.bb_period, p.bb_std),
                self._series(_Pivots, p.pivot_left, p.pivot_right),
                self._series(_Pivots, p.range_pivot_left, p.range_pivot_right))
        self.cols: _Columns = store.columns
        """The bars and candle parts as plain float lists (``_Columns``): index them below ``n``
        (``cols.high[n - 1]`` is the signal bar's high), never from the end."""
        self.atr_values: list[float] = core.atr.values
        """The ATR series' values (append-only: later evaluations only add values after ours,
        so it is read by index below ``n``, like ``atr_at`` without its bounds check)."""
        self.atr_now: float = self.atr_values[n - 1]
        self.true_ranges: list[float] = core.atr.true_ranges
        """The true range of every bar (``ind.true_range``; append-only like the ATR values)."""
        self.atr1: float = self.true_ranges[n - 1]
        """ATR(1) = true range of the last bar."""
        vwap = core.vwap
        self._vwap_values: list[float] = vwap.values
        """The session's last VWAP values as this evaluation saw them: ``_vwap_values[:_vwap_count]``
        (the list is append-only: later evaluations only add after ``_vwap_count``)."""
        self._vwap_count = len(vwap.values)
        self.vwap_now: float = vwap.values[-1]
        self.vwap_std_now: float = vwap.std
        self.vwap_session_start: int = vwap.start
        """Index of the first bar of the current VWAP session."""
        self.ema_now: float = core.ema.state.value
        self.adx_now: float = core.adx.state.value
        first = n - p.m1_range_avg_bars
        self.avg_range: float = list_mean(self.cols.span[first if first > 0 else 0:n])
        """Mean high-low of the last m1_range_avg_bars bars (Layer 1)."""
        self.bb_width_ratio: float | None = _width_ratio(core.bollinger.values, n, p.bb_period)
        """Mean of the last 5 Bollinger widths / mean of the last 20 (``bb_squeeze``, read by the
        range and balanced regimes); None unless those 20 are complete windows (an incomplete one
        is NaN, so is their mean) with a positive mean."""
        self.pivot_high: list[int] = core.pivots.highs
        """Micro structure pivots (pivot_left/right): indices of the swing pivot highs, ascending
        (read-only: a later evaluation's pivots are a new list)."""
        self.pivot_low: list[int] = core.pivots.lows
        self.range_pivot_high: list[int] = core.range_pivots.highs
        """The range regime's swing pivots (range_pivot_left/right; ``pivots(...)`` of those), as
        ``pivot_high``: read by every evaluation's ``find_range``, so read here without a lookup."""
        self.range_pivot_low: list[int] = core.range_pivots.lows

    def _store(self) -> _Store:
        """The memo's store (this evaluation's own once the memo has moved on, or without one),
        brought to these bars."""
        memo = self._memo
        if memo is not None and memo.generation == self._generation:
            store = memo.store
        else:
            if self._own is None:
                self._own = _Store()
            store = self._own
        return store if store.upto == self.n else store.at(self.bars, self.n)

    def _series(self, kind: type[S], *args: Any) -> S:
        """The ``kind(*args)`` series of these bars, kept in the store as ``(kind, *args)``
        (made and computed on first read)."""
        memo = self._memo
        if memo is not None and memo.generation == self._generation and memo.store.upto == self.n:
            store = memo.store  # (the usual case, without the call)
        else:
            store = self._store()
        key = (kind, *args)
        series = store.series.get(key)
        if series is None:
            return store.add(key, kind(*args), self.bars, self.n)
        return series  # type: ignore[return-value]

    def kept(self, key: tuple[Any, ...], make: Callable[[], T]) -> T:
        """A rule's own state for this window lineage, kept in the memo between evaluations like
        the series (``make()`` at first; the rule must give the same answer as from a fresh one)."""
        memo = self._memo
        if memo is not None and memo.generation == self._generation and memo.store.upto == self.n:
            kept = memo.store.kept  # (the usual case, without ``_store``'s call: as ``_series``)
        else:
            kept = self._store().kept
        state = kept.get(key)
        if state is None:
            state = kept[key] = make()
        return state  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- ATR and ranges
    @_lazy
    def atr(self) -> np.ndarray:
        """Wilder ATR(atr_period) at every bar."""
        return np.array(self.atr_values[:self.n])

    def atr_at(self, index: int) -> float:
        """ATR at bar ``index`` (as ``atr[index]``, without building the array)."""
        if not -self.n <= index < self.n:
            raise IndexError(f"bar {index} out of {self.n}")
        return self.atr_values[index if index >= 0 else self.n + index]

    # ---------------------------------------------------------------- VWAP
    @_lazy
    def _vwap_bands(self) -> ind.VwapBands:
        b = self.bars
        return ind.session_vwap(b.time_s, b.high, b.low, b.close, b.volume, self.params.vwap_anchor_hour_utc, 2.0)

    @_lazy
    def vwap(self) -> np.ndarray:
        return self._vwap_bands.vwap

    @_lazy
    def vwap_partial(self) -> bool:
        """The session began before the first bar given."""
        anchor_offset = (int(self.bars.time_s[0]) - self.params.vwap_anchor_hour_utc * 3600) % 86400
        return self.vwap_session_start == 0 and anchor_offset != 0

    def vwap_tail(self, count: int) -> np.ndarray:
        """``vwap[-count:]`` for ``count`` bars inside the current session."""
        return np.array(self.vwap_window(count))

    def vwap_window(self, count: int) -> list[float]:
        """``vwap[-count:]`` as a list, for ``count`` bars inside the current session."""
        values, size = self._vwap_values, self._vwap_count
        if count <= size:
            return values[size - count:size]
        return self.vwap[-count:].tolist()

    # ---------------------------------------------------------------- trend and volatility
    @_lazy
    def bb_width(self) -> np.ndarray:
        """Bollinger width of the last 20 bars (NaN while incomplete), for inspection and tests
        (the rules read ``bb_width_ratio``, extended bar by bar), so only that tail is banded. The width is computed as
        ``ind.bollinger`` does, (upper - lower) / middle, on the complete windows only."""
        p = self.params
        period = p.bb_period
        close = self.bars.close[-(period + 19):]
        width = np.full(len(close), np.nan)
        if len(close) >= period:
            middle, std = ind.row_mean_std(ind.window_view(np.ascontiguousarray(close, dtype=np.float64), period))
            band = p.bb_std * std
            if middle.all():
                width[period - 1:] = ((middle + band) - (middle - band)) / middle
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    width[period - 1:] = ((middle + band) - (middle - band)) / middle
        return width

    # ---------------------------------------------------------------- structure
    def pivots(self, left: int, right: int) -> tuple[list[int], list[int]]:
        """Indices of the swing pivot highs and lows (``swing_pivots`` over all bars), ascending
        (read-only lists)."""
        series = self._series(_Pivots, left, right)
        return series.highs, series.lows


def _width_ratio(widths: list[float], n: int, period: int) -> float | None:
    """``Features.bb_width_ratio`` from the ``period``-bar Bollinger widths of bars[:n]."""
    if n < period + 19:  # some of the last 20 widths are incomplete (NaN): so is their mean
        return None
    denominator = ind.pairwise_sum(widths[n - 20:n]) / 20
    if math.isnan(denominator) or denominator <= 0:
        return None
    return list_mean(widths[n - 5:n]) / denominator  # (pairwise_sum(...) / 5, without its call)


def compute_features(bars: Bars, bid: float, ask: float, p: MicroScalpParams,
                     memo: SeriesMemo | None = None) -> Features:
    """The features of ``bars`` (computed as they are read). ``memo``: the symbol's SeriesMemo,
    begun with these bars (``memo.begin(bars)``), to reuse and extend its series."""
    return Features(bars, bid, ask, p, memo)
