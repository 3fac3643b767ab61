"""Ticks as numpy columns: what the broker boundary's ``ticks`` hands out.

MT5's ``copy_ticks_range`` returns a structured array; the adapter shifts ``time_msc`` from server
time to UTC and passes the columns on without building a pandas frame (the tick proxy polls every
few seconds per symbol, and in a backtest at every bar). Columns keep MT5's dtypes: ``time_ms``
(int64 UTC epoch milliseconds), bid, ask, last, volume_real (float64), volume (uint64), flags (uint32).
Slices are views: nothing may write into the arrays after construction. A few ticks (``VIEW_TICKS``,
the usual poll) keep their price and size columns as views of the terminal's array (strided): its
answer is a new array at every call, owned by nobody else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from engines.frozen import direct_init

FIELDS = ("bid", "ask", "last", "volume", "flags", "volume_real")
VIEW_TICKS = 32  # up to this many ticks, ``from_ticks`` columns are views of the ticks array


@direct_init
@dataclass(frozen=True, eq=False)
class TickSeries:
    """Ticks of one symbol, oldest first (see the module docstring)."""

    time_ms: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    last: np.ndarray
    volume: np.ndarray
    flags: np.ndarray
    volume_real: np.ndarray

    @classmethod
    def empty(cls) -> "TickSeries":
        return cls(np.empty(0, dtype=np.int64), *(np.empty(0, dtype=np.float64) for _ in FIELDS))

    @classmethod
    def from_ticks(cls, ticks: object, offset_ms: int = 0) -> "TickSeries":
        """From an MT5 ticks array (fields ``time_msc`` + ``FIELDS``), times shifted by
        ``-offset_ms`` (server time to UTC). Each column is copied into its own contiguous array,
        except for a few ticks (``VIEW_TICKS``): the caller hands the array over (the terminal's
        answer), and six copies cost more than a reader of a few ticks does with them."""
        if ticks is None or len(ticks) == 0:  # type: ignore[arg-type]
            return cls.empty()
        time_ms = np.asarray(ticks["time_msc"], dtype=np.int64)  # type: ignore[index]
        if len(ticks) <= VIEW_TICKS:  # type: ignore[arg-type]
            return cls(time_ms - int(offset_ms) if offset_ms else time_ms,
                       *[ticks[f] for f in FIELDS])  # type: ignore[index]
        time_ms = time_ms - int(offset_ms) if offset_ms else time_ms.copy()
        copy = np.array  # always a new C-contiguous array of the field's dtype
        return cls(time_ms, *[copy(ticks[f]) for f in FIELDS])  # type: ignore[index]

    def __len__(self) -> int:
        return len(self.time_ms)

    @property
    def is_empty(self) -> bool:
        return not len(self.time_ms)

    def since(self, time_ms: int) -> "TickSeries":
        """Ticks at or after ``time_ms`` (views)."""
        start = int(np.searchsorted(self.time_ms, time_ms, side="left"))
        if start == 0:
            return self
        return TickSeries(self.time_ms[start:], *(getattr(self, f)[start:] for f in FIELDS))

    def to_frame(self) -> pd.DataFrame:
        """The pandas form: one column per field, indexed by UTC time (ms precision, named ``time``)."""
        index = pd.DatetimeIndex(pd.to_datetime(self.time_ms, unit="ms", utc=True), name="time")
        return pd.DataFrame({f: getattr(self, f) for f in FIELDS}, index=index)
