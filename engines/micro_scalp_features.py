"""Bars in, one bundle of indicator values out: everything the micro-scalp rules read.

Computed once per evaluation so regimes and checkers agree on the same numbers. ``Bars`` is the
engine's array form of M1 bars (epoch seconds, UTC); ``Bars.from_frame`` accepts a DataFrame
with a UTC DatetimeIndex (or a ``time`` column) and open/high/low/close columns, plus
``tick_volume`` and/or ``volume`` (feeds/readers.py's layout; tick volume is preferred).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from config.micro_scalp_model import MicroScalpParams
from engines.bars import BarSeries
from engines import indicators as ind


class BadBars(ValueError):
    """The bars cannot be traded on (NaN, non-positive prices, high < low, time not increasing)."""


@dataclass(frozen=True)
class Bars:
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
        if "time" in frame.columns:
            times = pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True))
        elif isinstance(frame.index, pd.DatetimeIndex):
            times = frame.index
            if times.tz is None:
                raise BadBars("bars index must be timezone-aware UTC (got a naive DatetimeIndex)")
            times = times.tz_convert("UTC")
        else:
            raise BadBars("bars need a UTC DatetimeIndex or a 'time' column")
        missing = [c for c in ("open", "high", "low", "close") if c not in frame.columns]
        if missing:
            raise BadBars(f"bars are missing columns: {', '.join(missing)}")
        return cls(times.as_unit("s").asi8.astype(np.int64),
                   frame["open"].to_numpy(np.float64), frame["high"].to_numpy(np.float64),
                   frame["low"].to_numpy(np.float64), frame["close"].to_numpy(np.float64),
                   _volume(frame))

    @classmethod
    def from_series(cls, series: BarSeries) -> "Bars":
        """From the broker's ``BarSeries``: tick volume as the volume (MT5 always records it)."""
        return cls(series.time_s, series.open.astype(np.float64, copy=False),
                   series.high.astype(np.float64, copy=False), series.low.astype(np.float64, copy=False),
                   series.close.astype(np.float64, copy=False), _series_volume(series))

    @classmethod
    def coerce(cls, bars: Any) -> "Bars":
        if isinstance(bars, Bars):
            return bars
        if isinstance(bars, BarSeries):
            return cls.from_series(bars)
        if isinstance(bars, pd.DataFrame):
            return cls.from_frame(bars)
        raise BadBars(f"bars must be a BarSeries, a DataFrame or engines.micro_scalp_features.Bars, not {type(bars).__name__}")

    def tail(self, count: int) -> "Bars":
        return Bars(self.time_s[-count:], self.open[-count:], self.high[-count:], self.low[-count:],
                    self.close[-count:], self.volume[-count:])

    def validate(self) -> None:
        """Raise BadBars naming the first problem; the engine turns it into a 'data' decision."""
        prices = np.stack([self.open, self.high, self.low, self.close])
        if not np.isfinite(prices).all():
            raise BadBars("bars contain NaN or infinite prices")
        if (prices <= 0).any():
            raise BadBars("bars contain zero or negative prices")
        if (self.high < self.low).any() or (self.high < np.maximum(self.open, self.close)).any() \
                or (self.low > np.minimum(self.open, self.close)).any():
            raise BadBars("bars have high below low/open/close or low above open/close")
        if not np.isfinite(self.volume).all() or (self.volume < 0).any():
            raise BadBars("bars contain NaN or negative volume")
        if len(self.time_s) > 1 and (np.diff(self.time_s) <= 0).any():
            raise BadBars("bar times are not strictly increasing")


def _series_volume(series: BarSeries) -> np.ndarray:
    """As ``_volume`` for a frame: tick volume unless it is all NaN (a reader's file without it);
    then zeros (the VWAP weighs bars equally)."""
    values = series.tick_volume.astype(np.float64, copy=False)
    return values if len(values) and not np.isnan(values).all() else np.zeros(len(series))


def _volume(frame: pd.DataFrame) -> np.ndarray:
    """Tick volume when the frame records it, else the ``volume`` column; a column that is
    entirely NaN (the file has no such data) is skipped, and no volume at all means zeros (the
    VWAP then weighs bars equally). A partly-NaN column is kept so validation rejects it."""
    for column in ("tick_volume", "volume"):
        if column in frame.columns:
            values = frame[column].to_numpy(np.float64)
            if not np.isnan(values).all():
                return values
    return np.zeros(len(frame))


@dataclass(frozen=True)
class Features:
    """Indicator values for one evaluation. Arrays are full-length; scalars describe the last bar
    (the signal bar: the caller passes closed bars only)."""

    bars: Bars
    n: int
    bid: float
    ask: float
    mid: float
    spread: float
    tr: np.ndarray
    atr: np.ndarray           # Wilder ATR(atr_period)
    atr_now: float
    atr1: float               # ATR(1) = true range of the last bar
    avg_range: float          # mean high-low of the last m1_range_avg_bars bars
    vwap: np.ndarray
    vwap_std: np.ndarray
    vwap_now: float
    vwap_std_now: float
    vwap_session_start: int   # index of the first bar of the current VWAP session
    vwap_partial: bool        # the session began before the first bar given
    ema_now: float
    bb_width: np.ndarray      # Bollinger width of the last 20 bars (NaN while incomplete)
    adx_now: float
    pivot_high: np.ndarray    # micro structure pivots (pivot_left/right)
    pivot_low: np.ndarray
    body: np.ndarray          # |close - open|
    upper_wick: np.ndarray
    lower_wick: np.ndarray


def compute_features(bars: Bars, bid: float, ask: float, p: MicroScalpParams) -> Features:
    h, l, c, o = bars.high, bars.low, bars.close, bars.open
    tr = ind.true_range(h, l, c)
    atr_values = ind.wilder_smooth(tr, p.atr_period)
    vw = ind.session_vwap(bars.time_s, h, l, c, bars.volume, p.vwap_anchor_hour_utc, 2.0)
    session_start = int(vw.session_start[-1])
    first_session_anchor = (int(bars.time_s[0]) - p.vwap_anchor_hour_utc * 3600) % 86400 != 0
    partial = session_start == 0 and first_session_anchor
    ema_values = ind.ema(c, p.ema_period)
    # only the last 20 widths are read (bb_squeeze): band the tail that produces them
    bb = ind.bollinger(c[-(p.bb_period + 19):], p.bb_period, p.bb_std)
    adx_values = ind.adx(h, l, c, p.adx_period).adx
    ph, pl = ind.swing_pivots(h, l, p.pivot_left, p.pivot_right)
    top = np.maximum(o, c)
    bottom = np.minimum(o, c)
    k = p.m1_range_avg_bars
    return Features(
        bars=bars, n=len(bars), bid=bid, ask=ask, mid=(bid + ask) / 2.0, spread=ask - bid,
        tr=tr, atr=atr_values, atr_now=float(atr_values[-1]), atr1=float(tr[-1]),
        avg_range=float(np.mean(h[-k:] - l[-k:])),
        vwap=vw.vwap, vwap_std=vw.std, vwap_now=float(vw.vwap[-1]), vwap_std_now=float(vw.std[-1]),
        vwap_session_start=session_start, vwap_partial=bool(partial),
        ema_now=float(ema_values[-1]), bb_width=bb.width, adx_now=float(adx_values[-1]),
        pivot_high=np.flatnonzero(ph), pivot_low=np.flatnonzero(pl),
        body=top - bottom, upper_wick=h - top, lower_wick=bottom - l,
    )
