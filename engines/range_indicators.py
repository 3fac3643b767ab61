"""Indicators the range engine needs that engines/indicators.py does not provide.

Same conventions as engines/indicators.py: 1-D float arrays, oldest first, NaN where the
history is too short. The shared module's ATR is Wilder-smoothed; the range rules define ATR14
as the SIMPLE mean of the last 14 true ranges, hence ``mean_atr``.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engines.indicators import ema, sma, true_range

__all__ = ["mean_atr", "stochastic", "rolling_vwap", "candle_cvd", "ema_direction"]


def mean_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """ATR as the simple mean of the last ``period`` true ranges (the range rules' ATR14)."""
    return sma(true_range(high, low, close), period)


def stochastic(high: np.ndarray, low: np.ndarray, close: np.ndarray, k_period: int = 14,
               d_period: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Fast stochastic: %K = 100 (C - LL) / (HH - LL) over ``k_period`` bars (50 when the window
    is flat), %D = simple mean of the last ``d_period`` %K values."""
    high, low, close = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    n = len(close)
    k = np.full(n, np.nan)
    if n >= k_period:
        hh = sliding_window_view(high, k_period).max(axis=1)
        ll = sliding_window_view(low, k_period).min(axis=1)
        span = hh - ll
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(span > 0, 100.0 * (close[k_period - 1:] - ll) / span, 50.0)
        k[k_period - 1:] = value
    d = np.full(n, np.nan)
    valid = n - (k_period - 1)
    if valid >= d_period:
        d[k_period - 1:] = sma(k[k_period - 1:], d_period)
    return k, d


def rolling_vwap(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
                 window: int) -> np.ndarray:
    """VWAP of the typical price over the last ``window`` bars at every bar. A window without
    volume falls back to the mean typical price (data without volume stays usable)."""
    typical = (np.asarray(high, float) + np.asarray(low, float) + np.asarray(close, float)) / 3.0
    volume = np.asarray(volume, dtype=np.float64)
    out = np.full(len(typical), np.nan)
    if len(typical) < window:
        return out
    tw = sliding_window_view(typical * volume, window).sum(axis=1)
    vw = sliding_window_view(volume, window).sum(axis=1)
    mean_typical = sliding_window_view(typical, window).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[window - 1:] = np.where(vw > 0, tw / vw, mean_typical)
    return out


def candle_cvd(open_: np.ndarray, close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Candle-based cumulative volume delta: a bar adds +volume when it closes up, -volume when
    it closes down, 0 when flat. The stand-in for real order flow on bars alone."""
    direction = np.sign(np.asarray(close, float) - np.asarray(open_, float))
    return np.cumsum(direction * np.asarray(volume, float))


def ema_direction(close: np.ndarray, period: int, slope_bars: int) -> int:
    """+1 when the EMA rose over the last ``slope_bars`` bars, -1 when it fell, 0 when flat or
    the history is too short. Used as a timeframe's direction in the multi-timeframe score."""
    if len(close) < max(period, slope_bars + 1):
        return 0
    line = ema(np.asarray(close, dtype=np.float64), period)
    change = line[-1] - line[-1 - slope_bars]
    return 1 if change > 0 else -1 if change < 0 else 0
