"""Bars as numpy columns: what the broker boundary hands out and the engines read.

MT5's ``copy_rates_*`` returns a structured numpy array; the adapter subtracts the server's UTC
offset and hands the columns on as a ``BarSeries`` without building a pandas DataFrame. A frame
of 1,500 bars costs about half a millisecond to build and index, a ``BarSeries`` a few
microseconds, and the bar feed serves one at every monitor step (in a backtest, every bar).
Slicing returns views, never copies: nothing may write into a series' arrays once it is handed
out. (The bar feed's store, ``feeds.bar_feed._ClosedStore``, writes new rows into its columns,
but only past the end of every view it has handed out.)
A fetch of a few bars is cheaper as rows of plain numbers (``rates_rows``, ``BarSeries.rows()``)
than as columns: the bar feed merges its incremental fetches that way.

Columns: ``time_s`` (int64 UTC epoch seconds, the bar's OPEN time, strictly increasing once the
bar feed has validated it) and the MT5 rate fields with their MT5 dtypes: open, high, low, close
(float64), tick_volume (uint64), spread (int32), real_volume (uint64). Readers' frames may carry
other dtypes (NaN volume when a file has none); ``from_frame`` keeps what it is given.

``to_frame()`` gives the pandas form (UTC ``DatetimeIndex`` named ``time``) for tools, reports and
tests.

``lineage`` (else None) says which rows of an append-only store a series' bars are, so a reader
holding an earlier series of the same store learns how the two overlap from a few integers
instead of comparing 1,500 bars' bytes (``carried``, ``BarSeries.carried_from``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from engines.frozen import direct_init

FIELDS = ("open", "high", "low", "close", "tick_volume", "spread", "real_volume")
MT5_RATES_DTYPE = np.dtype([("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
                            ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")])
# MT5's time and price dtypes, for the engines' fast paths: ``array.dtype is FLOAT64`` is one
# identity test, where ``== np.float64`` converts its right side at every call
INT64, FLOAT64 = np.dtype(np.int64), np.dtype(np.float64)


class RowStore(Protocol):
    """Where a series with a lineage keeps its bars (the bar feed's ``_ClosedStore``)."""

    def row(self, position: int) -> tuple:
        """Row ``position`` as plain numbers, as ``BarSeries.rows()`` gives it."""


Lineage = tuple[RowStore, int, int]
"""``(store, start, stop)``: the bars are rows ``[start, stop)`` of ``store``, a store that writes
each row once, after every row written before, and never changes a written row (the bar feed's
``_ClosedStore``: any other change makes a new store). A tuple: one is made at every read."""


def carried(new: Lineage | None, old: Lineage | None) -> int | None:
    """How many of the ``new`` bars' first bars are the ``old`` bars' last ones, with no ``old``
    bar after them (``new[:k]`` is ``old[-k:]``; ``k == len(old)``: ``new`` starts with all of
    ``old``), bit for bit, known from where both sit in one store without reading them. None when
    that does not tell (no lineage, another store, ``old`` starts after ``new`` or ends past it)."""
    if new is None or old is None or new[0] is not old[0] or not old[1] <= new[1] <= old[2] <= new[2]:
        return None
    return old[2] - new[1]


_EMPTY_DTYPES = {"open": np.float64, "high": np.float64, "low": np.float64, "close": np.float64,
                 "tick_volume": np.float64, "spread": np.float64, "real_volume": np.float64}


@direct_init
@dataclass(frozen=True, eq=False)
class BarSeries:
    """OHLC bars of one symbol and timeframe, oldest first (see the module docstring)."""

    # Not a field (no constructor argument, not copied by ``dataclasses.replace`` or a slice):
    # None unless the store that made the series says which of its rows they are (``with_lineage``).
    lineage: ClassVar[Lineage | None] = None

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
        copy = np.array  # always a new C-contiguous array of the field's dtype (ascontiguousarray is slower)
        time_s = np.asarray(rates["time"], dtype=np.int64) - int(offset_s) if offset_s else \
            copy(rates["time"], dtype=np.int64)
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

    def with_lineage(self, store: RowStore, start: int, stop: int) -> "BarSeries":
        """This series, marked as rows ``[start, stop)`` of ``store`` (see ``Lineage`` for the
        only stores that may say so); set once, right after construction, before handing it out."""
        self.__dict__["lineage"] = (store, start, stop)
        return self

    def carried_from(self, old: "BarSeries") -> int | None:
        """``carried(self.lineage, old.lineage)``: how many of ``old``'s last bars this series
        starts with, when their lineages tell (else None: compare the values)."""
        return carried(self.lineage, old.lineage)

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
        return len(self.time_s)

    @property
    def is_empty(self) -> bool:
        return not len(self.time_s)

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
        size = len(self.time_s)
        return self if count >= size else self.slice(size - count, None)

    def since(self, time_s: int) -> "BarSeries":
        """Bars that open at or after ``time_s`` (UTC epoch seconds)."""
        start = int(np.searchsorted(self.time_s, time_s, side="left"))
        return self if start == 0 else self.slice(start, None)

    def rows(self) -> list[tuple]:
        """The bars as ``(time_s, open, high, low, close, tick_volume, spread, real_volume)`` tuples
        of plain numbers, exactly the columns' values (float64 to float, integers to int)."""
        return list(zip(self.time_s.tolist(), self.open.tolist(), self.high.tolist(), self.low.tolist(),
                        self.close.tolist(), self.tick_volume.tolist(), self.spread.tolist(),
                        self.real_volume.tolist()))

    # ------------------------------------------------------------------ times
    def open_time(self, position: int = -1) -> datetime:
        """The UTC open time of the bar at ``position`` (the last by default). (``item`` and ``tz`` by
        position: the same datetime without a numpy scalar or keyword parsing; a monitor asks at
        every step.)"""
        return datetime.fromtimestamp(int(self.time_s.item(position)), timezone.utc)

    def times(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(pd.to_datetime(self.time_s, unit="s", utc=True), name="time")

    # ------------------------------------------------------------------ pandas
    def to_frame(self) -> pd.DataFrame:
        """The pandas form: one column per field, indexed by UTC open time (named ``time``)."""
        return pd.DataFrame({name: getattr(self, name) for name in FIELDS}, index=self.times())


def rates_rows(rates: Any, offset_s: int = 0) -> list[tuple]:
    """``BarSeries.from_rates(rates, offset_s).rows()``: the same tuples, read in one call when the
    array has MT5's rates layout (its rows are then ours, field for field), without the columns."""
    if rates is None or len(rates) == 0:
        return []
    if not _mt5_layout(rates.dtype):
        return BarSeries.from_rates(rates, offset_s).rows()
    return shifted_rows(rates.tolist(), offset_s)


def shifted_rows(rows: list[tuple], offset_s: int = 0) -> list[tuple]:
    """Rows of MT5's rates layout as plain numbers (``rates.tolist()``) with their times shifted
    by ``-offset_s``: what ``rates_rows`` makes of the array. (Its eight fields unpacked and
    built again: one tuple per row instead of three.)"""
    offset_s = int(offset_s)
    if not offset_s:
        return rows
    return [(time_s - offset_s, o, h, l, c, tick_volume, spread, real_volume)
            for time_s, o, h, l, c, tick_volume, spread, real_volume in rows]


_MT5_LAYOUTS: list[np.dtype] = [MT5_RATES_DTYPE]  # dtype objects found equal to it (checked once each)


def _mt5_layout(dtype: np.dtype) -> bool:
    """Is ``dtype`` MT5's rates dtype? A terminal hands out one dtype object (or a few): each is
    compared once (a structured comparison costs more than the rest of a small read), then
    recognised by identity."""
    for known in _MT5_LAYOUTS:
        if dtype is known:
            return True
    if dtype != MT5_RATES_DTYPE:
        return False
    if len(_MT5_LAYOUTS) < 16:
        _MT5_LAYOUTS.append(dtype)
    return True
