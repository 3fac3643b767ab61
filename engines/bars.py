"""Bars as numpy columns: what the broker boundary hands out and the engines read.

MT5's ``copy_rates_*`` returns a structured numpy array; the adapter subtracts the server's UTC
offset and hands the columns on as a ``BarSeries`` without building a pandas DataFrame. A frame
of 1,500 bars costs about half a millisecond to build and index, a ``BarSeries`` a few
microseconds, and the bar feed serves one at every monitor step (in a backtest, every bar).
Slicing returns views, never copies: nothing may write into the arrays after construction.

Columns: ``time_s`` (int64 UTC epoch seconds, the bar's OPEN time, strictly increasing once the
bar feed has validated it) and the MT5 rate fields with their MT5 dtypes: open, high, low, close
(float64), tick_volume (uint64), spread (int32), real_volume (uint64). Readers' frames may carry
other dtypes (NaN volume when a file has none); ``from_frame`` keeps what it is given.

``to_frame()`` gives the pandas form (UTC ``DatetimeIndex`` named ``time``) for tools, reports and
tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

FIELDS = ("open", "high", "low", "close", "tick_volume", "spread", "real_volume")
_EMPTY_DTYPES = {"open": np.float64, "high": np.float64, "low": np.float64, "close": np.float64,
                 "tick_volume": np.float64, "spread": np.float64, "real_volume": np.float64}


@dataclass(frozen=True, eq=False)
class BarSeries:
    """OHLC bars of one symbol and timeframe, oldest first (see the module docstring)."""

    time_s: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    tick_volume: np.ndarray
    spread: np.ndarray
    real_volume: np.ndarray

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls) -> "BarSeries":
        return cls(np.empty(0, dtype=np.int64), *(np.empty(0, dtype=_EMPTY_DTYPES[f]) for f in FIELDS))

    @classmethod
    def from_rates(cls, rates: Any, offset_s: int = 0) -> "BarSeries":
        """From an MT5 rates array (fields ``time`` + ``FIELDS``), times shifted by ``-offset_s``
        (server time to UTC). Each column is copied once into its own contiguous array."""
        if rates is None or len(rates) == 0:
            return cls.empty()
        time_s = np.asarray(rates["time"], dtype=np.int64)
        time_s = time_s - int(offset_s) if offset_s else time_s.copy()
        copy = np.ascontiguousarray
        return cls(time_s, copy(rates["open"]), copy(rates["high"]), copy(rates["low"]), copy(rates["close"]),
                   copy(rates["tick_volume"]), copy(rates["spread"]), copy(rates["real_volume"]))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "BarSeries":
        """From a frame indexed by UTC bar open time (the readers' and the old adapter's layout).
        Missing volume/spread columns become NaN (not recorded)."""
        if frame.empty:
            return cls.empty()
        index = frame.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            raise ValueError("bars frame needs a timezone-aware DatetimeIndex")
        time_s = index.tz_convert("UTC").as_unit("s").asi8.astype(np.int64)
        columns = []
        for name in FIELDS:
            if name in frame.columns:
                columns.append(frame[name].to_numpy())
            else:
                columns.append(np.full(len(frame), np.nan))
        return cls(time_s, *columns)

    @staticmethod
    def concat(first: "BarSeries", second: "BarSeries") -> "BarSeries":
        """``first`` then ``second`` in new arrays (the caller checks that times keep increasing)."""
        if second.is_empty:
            return first
        if first.is_empty:
            return second
        join = np.concatenate
        return BarSeries(join((first.time_s, second.time_s)), join((first.open, second.open)),
                         join((first.high, second.high)), join((first.low, second.low)),
                         join((first.close, second.close)), join((first.tick_volume, second.tick_volume)),
                         join((first.spread, second.spread)), join((first.real_volume, second.real_volume)))

    def same_bar(self, position: int, other: "BarSeries", other_position: int) -> bool:
        """Do both bars have the same open time, prices and tick volume?"""
        return bool(self.time_s[position] == other.time_s[other_position]
                    and self.open[position] == other.open[other_position]
                    and self.high[position] == other.high[other_position]
                    and self.low[position] == other.low[other_position]
                    and self.close[position] == other.close[other_position]
                    and self.tick_volume[position] == other.tick_volume[other_position])

    # ------------------------------------------------------------------ shape
    def __len__(self) -> int:
        return int(self.time_s.shape[0])

    @property
    def is_empty(self) -> bool:
        return self.time_s.shape[0] == 0

    def slice(self, start: int | None, stop: int | None) -> "BarSeries":
        """Bars ``[start:stop]`` as views (Python slice semantics, negative indices allowed)."""
        window = slice(start, stop)
        return BarSeries(self.time_s[window], self.open[window], self.high[window], self.low[window],
                         self.close[window], self.tick_volume[window], self.spread[window],
                         self.real_volume[window])

    def tail(self, count: int) -> "BarSeries":
        """The last ``count`` bars (all of them when there are fewer); ``count <= 0`` gives none."""
        if count <= 0:
            return self.slice(0, 0)
        return self if count >= len(self) else self.slice(len(self) - count, None)

    def since(self, time_s: int) -> "BarSeries":
        """Bars that open at or after ``time_s`` (UTC epoch seconds)."""
        start = int(np.searchsorted(self.time_s, time_s, side="left"))
        return self if start == 0 else self.slice(start, None)

    # ------------------------------------------------------------------ times
    def open_time(self, position: int = -1) -> datetime:
        """The UTC open time of the bar at ``position`` (the last by default)."""
        return datetime.fromtimestamp(int(self.time_s[position]), tz=timezone.utc)

    def times(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(pd.to_datetime(self.time_s, unit="s", utc=True), name="time")

    # ------------------------------------------------------------------ pandas
    def to_frame(self) -> pd.DataFrame:
        """The pandas form: one column per field, indexed by UTC open time (named ``time``)."""
        return pd.DataFrame({name: getattr(self, name) for name in FIELDS}, index=self.times())
