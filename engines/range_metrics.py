"""Derived metrics of the range rules (spec part A6, A3.6, A3.7), as small pure functions.

Each returns plain numbers (or a tiny dataclass) computed from arrays; the range engine turns
them into signals. The original's bugs are fixed here:
- effective ATR uses the Bollinger width as a FRACTION OF PRICE times the price (A6.1);
- VWAP momentum keeps its sign (positive = rising) instead of the inverted list order (A6.2);
- BOS is measured with an ATR of the BOS timeframe (M15), not the M5 one (A4.4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engines.indicators import mean_std, pairwise_sum, row_mean_std, true_range, window_view
from engines.range_data import Bars
from engines.range_indicators import last_pivot_points, last_swing_levels

__all__ = ["effective_atr", "vwap_momentum", "bb_width_expansion_pct", "bb_width_rows", "bb_widths", "bb_width_pct_step",
           "width_expansion_pct", "expansion_state", "sample_widths", "sample_width_step", "expansion_verdict",
           "body_expansion", "step_divergence", "Divergence", "BreakOfStructure", "break_of_structure",
           "swing_levels", "bos_from_levels", "count_touches", "touch_state", "touches_after", "TouchState"]


def effective_atr(atr: float, bb_width_fraction: float, price: float, multiplier: float,
                  enabled: bool = True) -> float:
    """ATRe = max(ATR, bb_width * price * multiplier), bb_width = (upper - lower) / middle.
    With the default multiplier 0.5 the second term is half the band width in price units.
    A NaN width (too little history) leaves the plain ATR."""
    if not enabled or not math.isfinite(bb_width_fraction):
        return atr
    return max(atr, bb_width_fraction * price * multiplier)


def vwap_momentum(vwap_values: np.ndarray | list[float], atr: float) -> float:
    """Mean change of the VWAP per bar, in ATR units: (newest - oldest) / ATR / (n - 1).
    0 with fewer than 2 values or a non-positive ATR. Values are oldest first."""
    values = [v for v in np.asarray(vwap_values, dtype=np.float64).tolist() if math.isfinite(v)]  # a few values
    if len(values) < 2 or not atr > 0:
        return 0.0
    return (values[-1] - values[0]) / atr / (len(values) - 1)


def _width_pct(windows: np.ndarray) -> np.ndarray:
    mean, std = row_mean_std(windows)
    return 4.0 * std / mean * 100.0


def bb_width_pct_step(window: list[float]) -> float:
    """``_width_pct`` of ONE Bollinger window (``period`` closes, oldest first) on plain floats:
    ``mean_std`` has ``row_mean_std``'s bits and the rest is the same three scalar operations.
    The mean must not be 0 (positive closes: numpy would give inf or NaN, Python raises)."""
    mean, std = mean_std(window)
    return 4.0 * std / mean * 100.0


def bb_width_rows(n: int, period: int = 20, min_bars: int = 60) -> int:
    """How many Bollinger widths ``bb_width_expansion_pct`` of ``n`` closes reads: those of the
    windows ending at its last that many closes (the historical ones first, the current one
    last); 0 when it answers None without reading any."""
    if n < min_bars or n < period + 1:
        return 0
    first, last = max(period, n - 40), n - 21
    return n - first + 1 if last >= first else 0


def width_expansion_pct(widths: list[float]) -> float | None:
    """``bb_width_expansion_pct`` from its ``bb_width_rows`` widths: the last one against the
    mean of all but the last 21 (``pairwise_sum``: numpy's sum, the same bits)."""
    count = len(widths) - 21
    historical = pairwise_sum(widths[:count]) / count
    if not historical > 0:
        return None
    current = widths[-1]
    return (current - historical) / historical * 100.0


def bb_width_expansion_pct(close: np.ndarray, period: int = 20, min_bars: int = 60) -> float | None:
    """How far the current Bollinger width (4 population sigma over the SMA, in %) is above the
    mean width of the earlier windows, in percent (A6.4). Historical windows are the
    ``period``-bar windows ending just before bar i, for i from max(period, N-40) to N-21.
    None with fewer than ``min_bars`` closes or a zero historical mean."""
    close = np.asarray(close, dtype=np.float64)
    n = len(close)
    rows = bb_width_rows(n, period, min_bars)
    if not rows:
        return None
    return width_expansion_pct(bb_widths(close, period, rows))


def bb_widths(close: np.ndarray, period: int, rows: int) -> list[float]:
    """The Bollinger widths (4 population sigma over the SMA, in %) of the ``period``-close
    windows ending at the last ``rows`` closes, oldest first, in one go (each row's value
    depends on its window only)."""
    return _width_pct(window_view(close[len(close) - rows + 1 - period:], period)).tolist()


def expansion_state(high: np.ndarray, low: np.ndarray, close: np.ndarray, atr_period: int = 14,
                    bb_period: int = 20, ratio_high: float = 1.2, ratio_low: float = 0.8) -> str:
    """'expanding' / 'contracting' / 'stable' / 'forming' (A3.7): current ATR and BB width
    (sample sigma) against their own recent history; 'forming' when there is no history."""
    high, low, close = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    n = len(close)
    if n < max(atr_period, bb_period) + 15:
        return "forming"
    tr = true_range(high, low, close)
    current_atr = float(np.add.reduce(tr[-atr_period:]) / atr_period)
    hist_slice = tr[-40:-20] if n >= 40 else tr[-30:-15]
    ratios = []
    hist_atr = float(np.add.reduce(hist_slice) / len(hist_slice)) if len(hist_slice) else 0.0
    if len(hist_slice) and hist_atr > 0:
        ratios.append(current_atr / hist_atr)
    first, last = max(bb_period, n - 40), n - 21
    if last >= first:
        # widths (4 sample sigma) of the windows ending at first..n-1: the historical ones
        # (ending at first..last) and the current one (ending at n-1)
        widths = sample_widths(close, first, bb_period)
        hist = widths[:last - first + 1]
        hist_width = float(np.add.reduce(hist) / len(hist))
        if hist_width > 0:
            ratios.append(float(widths[-1]) / hist_width)
    return expansion_verdict(ratios, ratio_high, ratio_low)


def sample_widths(close: np.ndarray, first: int, bb_period: int) -> np.ndarray:
    """``expansion_state``'s Bollinger widths (4 sample sigma) of the windows ending at
    ``first`` .. the last close, in one go (each row's value depends on its window only)."""
    return 4.0 * row_mean_std(window_view(close[first - bb_period + 1:], bb_period), ddof=1)[1]


def sample_width_step(window: list[float]) -> float:
    """One of ``sample_widths`` (a window of at least 2 closes) on plain floats: ``mean_std``
    with ``ddof=1`` has ``row_mean_std(ddof=1)``'s bits."""
    return 4.0 * mean_std(window, ddof=1)[1]


def expansion_verdict(ratios: list[float], ratio_high: float, ratio_low: float) -> str:
    """``expansion_state``'s answer from its ATR and width ratios (none: 'forming')."""
    if not ratios:
        return "forming"
    if any(r >= ratio_high for r in ratios):
        return "expanding"
    if any(r <= ratio_low for r in ratios):
        return "contracting"
    return "stable"


def body_expansion(open_: np.ndarray, close: np.ndarray, multiplier: float) -> tuple[bool, float]:
    """Candle bodies growing (A5.3): mean |C-O| of the last 5 bars against bars [-15, -10)
    (the first 5 bars when fewer than 15 exist). Needs 10 bars. Returns (fires, ratio)."""
    body = np.abs(np.asarray(close, float) - np.asarray(open_, float))
    if len(body) < 10:
        return False, 0.0
    recent = float(np.add.reduce(body[-5:]) / 5)  # ndarray.mean's own steps without its wrapper
    older = float(np.add.reduce(body[-15:-10] if len(body) >= 15 else body[:5]) / 5)
    if older <= 0:
        return False, 0.0
    ratio = recent / older
    return ratio > multiplier, ratio


@dataclass(frozen=True)
class Divergence:
    kind: str  # 'bullish' | 'bearish'
    strength: float  # 0..1


def step_divergence(price: np.ndarray | list[float], cvd: np.ndarray | list[float]) -> Divergence | None:
    """The detector's fallback divergence over the last 10 closes and CVD values (A6.6).

    Bearish: the last two up-steps of price are rising while the last two CVD up-steps fall.
    Bullish: the last two price down-steps are falling while the last two CVD down-steps rise.
    strength = min(1, (|dp| / p_prev + |dcvd| / max(|cvd_prev|, 1)) * 10).
    On plain floats (ten values): the steps are the same IEEE subtractions as ``np.diff`` and
    NaN steps are neither up nor down there either, so the same values are picked."""
    price = np.asarray(price, dtype=np.float64)[-10:].tolist()
    cvd = np.asarray(cvd, dtype=np.float64)[-10:].tolist()
    if len(price) < 10 or len(cvd) < 10:
        return None
    up_p = [p for p, q in zip(price[1:], price) if p - q > 0]
    up_c = [c for c, d in zip(cvd[1:], cvd) if c - d > 0]
    if len(up_p) >= 2 and len(up_c) >= 2 and up_p[-1] > up_p[-2] and up_c[-1] < up_c[-2]:
        return Divergence("bearish", _divergence_strength(up_p, up_c))
    down_p = [p for p, q in zip(price[1:], price) if p - q < 0]
    down_c = [c for c, d in zip(cvd[1:], cvd) if c - d < 0]
    if len(down_p) >= 2 and len(down_c) >= 2 and down_p[-1] < down_p[-2] and down_c[-1] > down_c[-2]:
        return Divergence("bullish", _divergence_strength(down_p, down_c))
    return None


def _divergence_strength(p: list[float], c: list[float]) -> float:
    return min(1.0, (_ieee_divide(abs(p[-1] - p[-2]), p[-2]) + abs(c[-1] - c[-2]) / max(abs(c[-2]), 1.0)) * 10.0)


def _ieee_divide(a: float, b: float) -> float:
    """``a / b`` as numpy divides (a previous price of 0 gives inf or NaN, not an exception;
    the bar checks keep prices positive, so only a direct caller can meet it)."""
    if b != 0:
        return a / b
    with np.errstate(divide="ignore", invalid="ignore"):  # as ``indicators.bollinger_width_step``
        return float(np.float64(a) / np.float64(b))


TouchState = tuple[int, int, bool, bool]  # upper and lower touches; the last bar near the high, the low


def count_touches(bars: Bars, high: float, low: float, tolerance_pct: float) -> tuple[int, int]:
    """Touches of each edge (A3.5). An upper touch is a bar whose high is within
    ``tolerance_pct`` % of the range high and whose close did not settle above high + tolerance,
    where the previous bar was not already within the tolerance (a run of bars hugging the edge
    is one touch). Lower touches mirror this."""
    if len(bars) == 0:
        return 0, 0
    upper, lower, _, _ = touch_state(bars, high, low, tolerance_pct)
    return upper, lower


def touch_state(bars: Bars, high: float, low: float, tolerance_pct: float) -> TouchState:
    """``count_touches`` of bars (at least one) and whether their last bar is near each edge:
    all ``touches_after`` needs to count on over bars appended to them."""
    tol_h = tolerance_pct / 100.0 * high
    tol_l = tolerance_pct / 100.0 * low
    near_h = np.abs(bars.high - high) <= tol_h
    near_l = np.abs(bars.low - low) <= tol_l
    held_h = bars.close <= high + tol_h
    held_l = bars.close >= low - tol_l
    # a fresh touch: near now and not near at the bar before (``a > b`` is ``a and not b`` on booleans)
    upper = int(near_h[0] and held_h[0]) + int(np.count_nonzero((near_h[1:] > near_h[:-1]) & held_h[1:]))
    lower = int(near_l[0] and held_l[0]) + int(np.count_nonzero((near_l[1:] > near_l[:-1]) & held_l[1:]))
    return upper, lower, bool(near_h[-1]), bool(near_l[-1])


def touches_after(state: TouchState, bars: Bars, start: int, high: float, low: float, tolerance_pct: float
                  ) -> TouchState:
    """``touch_state`` of ``bars`` from ``state``, the touch state of ``bars[:start]`` (``start``
    >= 1, float64 prices): only the bars from ``start`` on are classified, each with the
    comparisons ``touch_state`` makes element by element (the same IEEE operations on the same
    values read as plain floats), so the integer counts are the ones the whole array gives."""
    upper, lower, near_h, near_l = state
    tol_h = tolerance_pct / 100.0 * high
    tol_l = tolerance_pct / 100.0 * low
    top, bottom = high + tol_h, low - tol_l
    highs, lows, closes = bars.high, bars.low, bars.close
    for i in range(start, len(bars)):
        close = closes.item(i)
        now_h = abs(highs.item(i) - high) <= tol_h
        now_l = abs(lows.item(i) - low) <= tol_l
        if now_h and not near_h and close <= top:
            upper += 1
        if now_l and not near_l and close >= bottom:
            lower += 1
        near_h, near_l = now_h, now_l
    return upper, lower, near_h, near_l


@dataclass(frozen=True)
class BreakOfStructure:
    """A close beyond the recent swing structure: ``direction`` 'bullish' or 'bearish', the
    ``level`` it broke (the highest recent swing high or lowest swing low) and the close."""

    direction: str
    level: float
    close: float


def swing_levels(high: np.ndarray, low: np.ndarray, left: int, right: int, count: int
                 ) -> tuple[list[float], list[float], int]:
    """The highs and the lows of the last ``count`` swing points (time order) and how many
    points that was (fewer than ``count`` when the bars hold fewer)."""
    scanned = last_swing_levels(high, low, left, right, count)
    if scanned is not None:
        return scanned
    points, point_is_high, point_is_low = last_pivot_points(high, low, left, right, count)
    highs = [float(high[i]) for i, is_high in zip(points, point_is_high) if is_high]
    lows = [float(low[i]) for i, is_low in zip(points, point_is_low) if is_low]
    return highs, lows, len(points)


def bos_from_levels(highs: list[float], lows: list[float], last: float, atr: float,
                    threshold_atr: float) -> BreakOfStructure | None:
    """The break of the swing levels by the close ``last`` (see ``break_of_structure``)."""
    if highs and last - max(highs) >= threshold_atr * atr:
        return BreakOfStructure("bullish", max(highs), last)
    if lows and min(lows) - last >= threshold_atr * atr:
        return BreakOfStructure("bearish", min(lows), last)
    return None


def break_of_structure(high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: float,
                       threshold_atr: float = 0.2, swing_count: int = 5, left: int = 3,
                       right: int = 3, min_bars: int = 10) -> BreakOfStructure | None:
    """BOS per A3.6: over the last ``swing_count`` swing points (highs and lows in time order),
    ref_high = highest swing high, ref_low = lowest swing low; bullish when the last close is
    at least ``threshold_atr`` ATR above ref_high, bearish when that far below ref_low."""
    if len(close) < min_bars or not atr > 0:
        return None
    highs, lows, found = swing_levels(high, low, left, right, swing_count)
    if found == 0:
        return None
    return bos_from_levels(highs, lows, float(close[-1]), atr, threshold_atr)
