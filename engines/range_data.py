"""Inputs of the range-scalp engine, normalised: bars as plain arrays, quote, order-flow metrics.

The engine accepts what the rest of the bot hands it (the bar feed's ``BarSeries``, a pandas
DataFrame from a reader, an MT5-style numpy structured array, or a mapping of arrays) and turns
it into ``Bars``: epoch-second open times in UTC plus float arrays. Everything downstream works on
``Bars`` only, so the rule code never cares where the data came from.

Time conventions: a bar's ``time`` is its OPEN time in UTC epoch seconds; it is closed once
``time + period_s <= now``. Naive datetimes in a DataFrame are read as UTC (the broker adapter
converts server time at the boundary; DESIGN.md "All times inside the bot are UTC").
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from engines.bars import FLOAT64 as _FLOAT64, INT64 as _INT64, BarSeries, Lineage
from engines.frozen import direct_init

M5 = 300
M15 = 900
H1 = 3600
DAY = 86400


class BarDataError(ValueError):
    """The bars given to the engine cannot be read (missing column, wrong shape or type)."""


@direct_init
@dataclass(frozen=True, eq=False)
class Bars:
    """OHLCV bars of one timeframe, oldest first. Arrays are never mutated after construction.
    ``lineage``: which rows of the bar feed's store they are (``to_bars`` of a feed series, and
    their slices), else None; see ``engines.bars.Lineage``."""

    # Not a field (not compared, not a constructor argument): bars converted from the same store
    # rows by ``to_bars`` have the same bits (the same conversion of values that never change), so
    # two windows' lineages tell how they overlap without reading them (range_window.carried_count).
    lineage: ClassVar[Lineage | None] = None

    time: np.ndarray  # int64 epoch seconds, bar open time, UTC
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # tick volume (0 when the source has none)
    period_s: int

    def __len__(self) -> int:  # a Python-level call: the hot paths read ``len(bars.time)``
        return len(self.time)

    def tail(self, count: int) -> "Bars":
        n = len(self.time)
        if count >= n:
            return self
        return self.slice(n - count, n)

    def slice(self, start: int, stop: int) -> "Bars":
        """Bars ``[start:stop]`` (views); they keep their rows' lineage for ``0 <= start <= stop <= len``."""
        bars = Bars(self.time[start:stop], self.open[start:stop], self.high[start:stop],
                    self.low[start:stop], self.close[start:stop], self.volume[start:stop], self.period_s)
        lineage = self.lineage
        if lineage is not None and 0 <= start <= stop <= len(self.time):
            _set_lineage(bars, (lineage[0], lineage[1] + start, lineage[1] + stop))
        return bars

    def since(self, time_s: int) -> "Bars":
        """Bars that open at or after ``time_s``."""
        return self.slice(int(self.time.searchsorted(time_s, side="left")), len(self.time))

    def closed_at(self, now_s: float) -> "Bars":
        """Drop the bars still forming at ``now_s`` (open time + period > now)."""
        time = self.time
        # for integer open times (to_bars' int64) flooring gives the same cut as ``now_s -
        # period_s`` and spares numpy converting every time to float to search it
        last_open = math.floor(now_s) - self.period_s if time.dtype.kind == "i" else now_s - self.period_s
        if not len(time) or time.item(-1) <= last_open:  # (plain numbers: exact for int and float times)
            return self
        stop = int(time.searchsorted(last_open, side="right"))
        return self if stop == len(time) else self.slice(0, stop)


def _column(data: Any, names: tuple[str, ...], what: str, required: bool = True) -> np.ndarray | None:
    for name in names:
        try:
            return np.asarray(data[name])
        except (KeyError, ValueError, IndexError):
            continue
    if required:
        raise BarDataError(f"{what}: no '{names[0]}' column (have {_field_names(data)})")
    return None


def _field_names(data: Any) -> str:
    if isinstance(data, np.ndarray) and data.dtype.names:
        return ", ".join(data.dtype.names)
    if hasattr(data, "columns"):
        return ", ".join(str(c) for c in data.columns)
    if isinstance(data, Mapping):
        return ", ".join(str(k) for k in data)
    return type(data).__name__


def _epoch_seconds(values: np.ndarray, what: str) -> np.ndarray:
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[s]").astype(np.int64)
    if values.dtype == object and len(values) and isinstance(values[0], datetime):
        return np.array([_aware(v).timestamp() for v in values], dtype=np.int64)
    if np.issubdtype(values.dtype, np.number):
        return values.astype(np.int64)
    raise BarDataError(f"{what}: 'time' must be epoch seconds or datetimes, got dtype {values.dtype}")


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def to_bars(data: Any, period_s: int, what: str = "bars") -> Bars:
    """Read bars from the bar feed's ``BarSeries``, a DataFrame (``time`` column or
    DatetimeIndex), an MT5 structured array (``time, open, high, low, close, tick_volume``), a
    mapping of arrays, or ``Bars``.
    Volume comes from ``tick_volume``, else ``volume``, else zeros."""
    if isinstance(data, Bars):
        if data.period_s != period_s:
            raise BarDataError(f"{what}: expected {period_s} s bars, got {data.period_s} s bars")
        return data
    if data is None:
        raise BarDataError(f"{what}: no bars given")
    if isinstance(data, BarSeries):  # the bar feed's numpy columns: no conversion but the dtype
        return _series_bars(data, period_s, what)
    fast = _indexed_frame_bars(data, period_s, what)
    if fast is not None:
        return fast
    time_s = _epoch_seconds(_time_values(data, what), what)
    columns = []
    for name in ("open", "high", "low", "close"):
        columns.append(np.ascontiguousarray(_column(data, (name,), what), dtype=np.float64))
    volume = _column(data, ("tick_volume", "volume"), what, required=False)
    volume = np.zeros(len(time_s)) if volume is None else np.ascontiguousarray(volume, dtype=np.float64)
    return _checked_bars(time_s, columns, volume, period_s, what)


def _checked_bars(time_s: np.ndarray, columns: list[np.ndarray], volume: np.ndarray, period_s: int,
                  what: str, may_be_nan: bool = True) -> Bars:
    if may_be_nan and np.isnan(volume).any():  # "not recorded" in the readers' frames: no volume, not bad data
        volume = np.nan_to_num(volume, nan=0.0)
    lengths = {len(time_s), len(volume), *map(len, columns)}
    if len(lengths) != 1:
        raise BarDataError(f"{what}: columns have different lengths {sorted(lengths)}")
    return Bars(_contiguous(time_s, _INT64), *columns, volume, period_s)


_PRICE_COLUMNS = ("open", "high", "low", "close")


def _series_bars(series: BarSeries, period_s: int, what: str) -> Bars:
    """``Bars`` of a bar feed series, with its lineage: the same conversion of the same rows
    gives the same bits. Columns already contiguous float64 (MT5's prices) are the series' own
    arrays, as ``np.ascontiguousarray`` would return them, without its call. A series with a
    lineage and an integer volume (the bar feed's, at every step) is built without
    ``_checked_bars``: its columns are all rows ``[start, stop)`` of one store, so of one length,
    and its converted volume cannot be NaN."""
    volume = series.tick_volume  # MT5's is an integer count: never NaN once converted
    columns = [_contiguous(series.open, _FLOAT64), _contiguous(series.high, _FLOAT64),
               _contiguous(series.low, _FLOAT64), _contiguous(series.close, _FLOAT64)]
    converted = np.ascontiguousarray(volume, dtype=np.float64)
    lineage = series.lineage
    integer = volume.dtype.kind in "iub"
    if lineage is not None and integer:
        bars = Bars(_contiguous(series.time_s, _INT64), *columns, converted, period_s)
    else:
        bars = _checked_bars(series.time_s, columns, converted, period_s, what, may_be_nan=not integer)
    if lineage is not None:
        _set_lineage(bars, lineage)
    return bars


def _set_lineage(bars: Bars, lineage: Lineage) -> None:
    """Mark freshly built ``bars`` as these store rows (``Bars.lineage``, not a field; written
    into the frozen instance's dict as its constructor writes the fields)."""
    bars.__dict__["lineage"] = lineage


def _contiguous(column: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``np.ascontiguousarray(column, dtype=dtype)``: the array itself when it already is one
    (what that call returns then), without the call."""
    if column.dtype is dtype and column.flags.c_contiguous:
        return column
    return np.ascontiguousarray(column, dtype=dtype)


def _indexed_frame_bars(data: Any, period_s: int, what: str) -> Bars | None:
    """The bar feed's frames (numeric columns, DatetimeIndex, no ``time`` column) in one
    conversion: all values as float64 at once instead of a pandas Series per column. The same
    numbers as the general path (the same casts of the same values); None for any other
    shape, which the general path then reads (and reports on)."""
    columns = getattr(data, "columns", None)
    if columns is None:
        return None
    names = columns.tolist() if hasattr(columns, "tolist") else list(columns)
    position = {name: i for i, name in enumerate(names)}
    if "time" in position or len(position) != len(names) or not all(name in position for name in _PRICE_COLUMNS):
        return None
    import pandas as pd

    index = data.index
    if not isinstance(index, pd.DatetimeIndex):
        return None
    volume_name = next((name for name in ("tick_volume", "volume") if name in position), None)
    positions = [position[name] for name in (*_PRICE_COLUMNS, *((volume_name,) if volume_name else ()))]
    try:
        values = data.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):  # a column that is not a number: the general path decides
        return None
    arrays = [np.ascontiguousarray(values[:, p]) for p in positions]
    volume = arrays.pop() if volume_name else np.zeros(len(index))
    # a tz-aware index stores UTC instants; a naive one is read as UTC (module doc)
    time_s = index.asi8.view(f"datetime64[{index.unit}]").astype("datetime64[s]").astype(np.int64)
    return _checked_bars(time_s, arrays, volume, period_s, what)


def _time_values(data: Any, what: str) -> np.ndarray:
    """The bar open times as a numpy array; tz-aware pandas times are converted to UTC."""
    if hasattr(data, "columns"):  # a pandas DataFrame
        import pandas as pd

        if "time" in data.columns:
            series = data["time"]
        elif isinstance(data.index, pd.DatetimeIndex):
            series = data.index.to_series()
        else:
            raise BarDataError(f"{what}: no 'time' column or datetime index (have {_field_names(data)})")
        if pd.api.types.is_datetime64_any_dtype(series):
            if series.dt.tz is not None:
                series = series.dt.tz_convert("UTC").dt.tz_localize(None)
            return series.to_numpy(dtype="datetime64[ns]")
        return series.to_numpy()
    values = _column(data, ("time",), what)
    assert values is not None
    return values


def bar_problem(bars: Bars, what: str) -> str | None:
    """The first reason these bars must not be traded on, or None. Checks what DESIGN.md lists
    as bad market data: NaN, non-positive prices, high below low or outside open/close, bars out
    of order or duplicated."""
    if len(bars) == 0:
        return f"{what}: no bars"
    if all_clean(bars):
        return None
    return _first_problem(bars, what)


def all_clean(bars: Bars) -> bool:
    """True when none of ``_first_problem``'s checks can fail, in a few whole-array reductions:
    low <= open, close <= high with a positive lowest low and a finite highest high mean every
    price is finite, positive and consistent (NaN fails every comparison)."""
    o, h, l, c, v, t = bars.open, bars.high, bars.low, bars.close, bars.volume, bars.time
    every = np.logical_and.reduce
    return bool(every(h >= o) and every(h >= c) and every(l <= o) and every(l <= c)
                and np.minimum.reduce(l) > 0 and np.maximum.reduce(h) < math.inf
                and (len(t) < 2 or every(t[1:] > t[:-1]))
                and np.minimum.reduce(v) >= 0 and np.maximum.reduce(v) < math.inf)


def _first_problem(bars: Bars, what: str) -> str | None:
    """The checks one by one, in their reporting order (only run when ``all_clean`` failed)."""
    prices = np.stack([bars.open, bars.high, bars.low, bars.close])
    if not np.isfinite(prices).all():
        return f"{what}: NaN or infinite price"
    if (prices <= 0).any():
        return f"{what}: zero or negative price"
    if (bars.high < bars.low).any():
        index = int(np.argmax(bars.high < bars.low))
        return f"{what}: high below low at {iso(bars.time[index])}"
    if (bars.high < np.maximum(bars.open, bars.close)).any() or (bars.low > np.minimum(bars.open, bars.close)).any():
        return f"{what}: open/close outside the bar's high-low"
    if len(bars) > 1 and (np.diff(bars.time) <= 0).any():
        index = int(np.argmax(np.diff(bars.time) <= 0)) + 1
        return f"{what}: bars out of order or duplicated at {iso(bars.time[index])}"
    if not np.isfinite(bars.volume).all() or (bars.volume < 0).any():
        return f"{what}: bad volume"
    return None


def aggregate(bars: Bars, period_s: int, now_s: float, drop_partial_first: bool = True) -> Bars:
    """Resample to a longer timeframe; keep only buckets that are complete at ``now_s``
    (bucket open + period <= now). Buckets are aligned on the epoch (UTC), as MT5's are for
    M15 and H1. Gaps (weekends, holidays) simply yield fewer bars. A first bucket that the
    given bars enter midway (a lookback window cut mid-hour) is dropped unless
    ``drop_partial_first`` is False: its open, high and low would be partial."""
    if period_s % bars.period_s:
        raise ValueError(f"cannot aggregate {bars.period_s} s bars into {period_s} s bars")
    if len(bars) == 0:
        return Bars(*(np.empty(0, dtype=t) for t in (np.int64,) + (np.float64,) * 5), period_s)
    bucket = bars.time - bars.time % period_s
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    keep = bucket[starts] + period_s <= now_s
    if drop_partial_first and bars.time[0] != bucket[0]:
        keep[0] = False
    starts_kept = starts[keep]
    if len(starts_kept) == 0:
        return Bars(*(np.empty(0, dtype=t) for t in (np.int64,) + (np.float64,) * 5), period_s)
    ends = np.append(starts[1:], len(bars))[keep]
    last = ends - 1
    return Bars(bucket[starts_kept], bars.open[starts_kept],  # (integer indexing copies)
                np.maximum.reduceat(bars.high, starts)[keep], np.minimum.reduceat(bars.low, starts)[keep],
                bars.close[last], np.add.reduceat(bars.volume, starts)[keep], period_s)


@dataclass(frozen=True, init=False)
class Quote:
    """Best bid and ask. Buys enter at the ask, sells at the bid."""

    bid: float
    ask: float

    def __init__(self, bid: float, ask: float) -> None:
        """Checked, then given its fields as one new dict, as ``engines.frozen.direct_init`` does
        (one quote per evaluation: the generated frozen ``__init__`` and a ``__post_init__`` cost
        several times more)."""
        if not (math.isfinite(bid) and math.isfinite(ask)) or bid <= 0 or ask < bid:
            raise ValueError(f"bad quote: bid={bid} ask={ask} (need 0 < bid <= ask)")
        object.__setattr__(self, "__dict__", {"bid": bid, "ask": ask})

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


def to_quote(quote: Any) -> Quote:
    """Accept ``Quote``, anything with ``bid``/``ask`` attributes (an MT5 tick), a mapping with
    those keys, or a ``(bid, ask)`` pair."""
    if isinstance(quote, Quote):
        return quote
    if isinstance(quote, Mapping):
        return Quote(float(quote["bid"]), float(quote["ask"]))
    if hasattr(quote, "bid") and hasattr(quote, "ask"):
        return Quote(float(quote.bid), float(quote.ask))
    if isinstance(quote, (tuple, list)) and len(quote) == 2:
        return Quote(float(quote[0]), float(quote[1]))
    raise ValueError(f"quote must have bid and ask, got {type(quote).__name__}")


BULLISH_SIGNALS = frozenset({"BULLISH", "STRONG_BUY"})
BEARISH_SIGNALS = frozenset({"BEARISH", "STRONG_SELL"})
BUY_PRESSURE = frozenset({"BULLISH", "BUY"})
SELL_PRESSURE = frozenset({"BEARISH", "SELL"})


@dataclass(frozen=True)
class RangeFlow:
    """The order-flow facts the range engine uses; every field is optional-neutral.

    - ``signal``: composite tape signal, BULLISH / BEARISH / STRONG_BUY / STRONG_SELL / NEUTRAL.
    - ``pressure_side``: the dominant aggressor side of the short window (BUY/SELL or
      BULLISH/BEARISH), or None.
    - ``cvd_divergence_type`` ('bullish' | 'bearish' | None) and ``cvd_divergence_strength``
      (0..1): price swings against CVD swings.
    - ``tape_pressure_shift``: signed -1..+1, buy minus sell volume over their sum in the recent
      window (+1 all buying). The opposite-flow exit compares it with the position's side.
    """

    signal: str = "NEUTRAL"
    pressure_side: str | None = None
    cvd_divergence_type: str | None = None
    cvd_divergence_strength: float = 0.0
    tape_pressure_shift: float = 0.0

    def __post_init__(self) -> None:
        if self.cvd_divergence_type not in (None, "bullish", "bearish"):
            raise ValueError(f"cvd_divergence_type must be 'bullish', 'bearish' or None, "
                             f"got {self.cvd_divergence_type!r}")
        if not 0.0 <= self.cvd_divergence_strength <= 1.0:
            raise ValueError(f"cvd_divergence_strength must be in 0..1, got {self.cvd_divergence_strength}")
        if not -1.0 <= self.tape_pressure_shift <= 1.0:
            raise ValueError(f"tape_pressure_shift must be in -1..1, got {self.tape_pressure_shift}")

    def confirms(self, side: str) -> bool:
        return self.signal.upper() in (BULLISH_SIGNALS if side == "buy" else BEARISH_SIGNALS)

    def is_directional(self) -> bool:
        return self.signal.upper() in BULLISH_SIGNALS | BEARISH_SIGNALS

    def pressure_with(self, side: str) -> bool:
        return (self.pressure_side or "").upper() in (BUY_PRESSURE if side == "buy" else SELL_PRESSURE)

    @classmethod
    def from_volumes(cls, buy_volume: float, sell_volume: float, *, ratio_threshold: float = 1.2,
                     divergence_type: str | None = None, divergence_strength: float = 0.0) -> "RangeFlow":
        """Build from a window's aggressor volumes: BULLISH when buy/sell > ratio_threshold,
        BEARISH when below its inverse (the order-flow spec's dominant-side rule)."""
        total = buy_volume + sell_volume
        if total <= 0:
            return cls(cvd_divergence_type=divergence_type, cvd_divergence_strength=divergence_strength)
        ratio = buy_volume / sell_volume if sell_volume > 0 else math.inf
        signal = "BULLISH" if ratio > ratio_threshold else "BEARISH" if ratio < 1 / ratio_threshold else "NEUTRAL"
        side = "BUY" if signal == "BULLISH" else "SELL" if signal == "BEARISH" else None
        return cls(signal, side, divergence_type, divergence_strength, (buy_volume - sell_volume) / total)


def to_flow(flow: Any) -> RangeFlow | None:
    if flow is None or isinstance(flow, RangeFlow):
        return flow
    if isinstance(flow, Mapping):
        known = {k: flow[k] for k in ("signal", "pressure_side", "cvd_divergence_type",
                                       "cvd_divergence_strength", "tape_pressure_shift") if k in flow}
        unknown = sorted(set(flow) - set(known))
        if unknown:
            raise ValueError(f"flow: unknown keys {', '.join(map(str, unknown))}")
        return RangeFlow(**known)
    raise ValueError(f"flow must be a RangeFlow or a mapping, got {type(flow).__name__}")


def epoch_s(moment: datetime) -> float:
    """Epoch seconds of an AWARE datetime; a naive one is refused (all bot times are UTC-aware)."""
    if not isinstance(moment, datetime):
        raise ValueError(f"expected an aware datetime, got {type(moment).__name__}")
    tz = moment.tzinfo  # UTC (every bot time) is aware without asking it for its offset
    if tz is not timezone.utc and (tz is None or moment.utcoffset() is None):
        raise ValueError("naive datetime: the engine needs timezone-aware UTC times")
    return moment.timestamp()


@lru_cache(maxsize=256)
def iso(time_s: float) -> str:
    """``YYYY-MM-DD HH:MM`` UTC of epoch seconds (cached: reason texts name the same few times
    bar after bar)."""
    return datetime.fromtimestamp(float(time_s), tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
