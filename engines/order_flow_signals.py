"""Order-flow signals with scale-free definitions, and the weighted-confluence classifier.

Every signal is a direction (``buy``/``sell``) and a strength in 0..1 that means the same on
BTC, gold or EURUSD: prices are measured in ATR, flow in fractions of the volume traded, VWAP
distance in standard deviations. The original's versions compared dollars with BTC quantities,
ignored direction and scored any price move as at least 0.5; these do not.

- CVD divergence: the last two M1 swing highs (lows) make a higher high (lower low) while CVD
  *sampled at those same bars* falls (rises). Strength = mean of the price difference in ATR
  (full at ``cvd_div_price_atr``) and the CVD change as a fraction of the volume traded between
  the two pivots (|sum of deltas| / sum of volume, always 0..1).
- Delta divergence: least-squares trend of the last N closes (move along the fit, in ATR)
  against the trend of the per-bar deltas (change along the fit, in mean |delta|): price down
  while delta rises is bullish. Strength 0.5 at the thresholds, 1.0 at twice them.
- Absorption: in a short window, volume well above its typical level, one-sided aggression
  (|imbalance|) and almost no price movement (range in ATR). Sellers hitting a level that does
  not give way is support: a ``buy``; absorbed buying is a ``sell``. The zone is the window's
  VWAP and range.
- Liquidity sweep: within the last few bars price traded through a liquidity level (the
  reference window's extreme, or a cluster of equal swing highs/lows within a fraction of ATR)
  and the last close is back on the other side: a sweep of lows reclaimed is a ``buy``.
- VWAP deviation: distance of the price from the volume-weighted mean of the typical price in
  weighted standard deviations; beyond ``vwap_min_sigma`` it signals reversion towards VWAP.

The classifier sums weight x strength of the signals that agree with a side (weights
normalised to sum to 1), so a bearish divergence never helps a buy. Pure: arrays in, values out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from engines.indicators import atr_last, swing_pivots
from engines.order_flow import FlowBarColumns, fast_mean

Side = Literal["buy", "sell"]
SIGNAL_NAMES = ("absorption", "delta_divergence", "liquidity_sweep", "cvd_divergence", "vwap_deviation")
DEFAULT_WEIGHTS: dict[str, float] = {"absorption": 0.30, "delta_divergence": 0.25, "liquidity_sweep": 0.20,
                                     "cvd_divergence": 0.15, "vwap_deviation": 0.10}
SCORE_EPSILON = 1e-9  # 0.30 + 0.25 + 0.20 must pass a 0.75 threshold whatever the float order


@dataclass(frozen=True)
class Signal:
    name: str
    side: Side
    strength: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignalParams:
    """Thresholds of the detectors, all in the instrument's own units (ATR, volume fractions, sigma)."""

    atr_period: int = 14
    pivot_lookback_bars: int = 20
    cvd_div_price_atr: float = 1.0
    delta_div_bars: int = 10
    delta_div_price_threshold: float = 0.5
    delta_div_delta_threshold: float = 0.5
    absorption_window_seconds: int = 60
    absorption_volume_ratio: float = 2.0
    absorption_imbalance: float = 0.3
    absorption_max_move_atr: float = 0.25
    absorption_typical_bars: int = 30
    sweep_lookback_bars: int = 60
    sweep_recent_bars: int = 3
    sweep_cluster_atr: float = 0.1
    sweep_reclaim_atr: float = 0.25
    vwap_bars: int = 200
    vwap_min_sigma: float = 1.0
    vwap_full_sigma: float = 2.0
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    threshold: float = 0.75

    @classmethod
    def from_params(cls, params: Any) -> "SignalParams":
        """From ``config.order_flow_model.OrderFlowParams`` (same field names; duck-typed)."""
        values = {name: getattr(params, name) for name in cls.__dataclass_fields__
                  if name not in ("weights", "threshold") and hasattr(params, name)}
        if hasattr(params, "pattern_weights"):
            values["weights"] = dict(params.pattern_weights)
        if hasattr(params, "pattern_threshold"):
            values["threshold"] = params.pattern_threshold
        return cls(**values)


@dataclass(frozen=True)
class Classification:
    """The classifier's answer. ``probability`` is the chosen side's score (0..1)."""

    side: Side | None
    probability: float
    meets_threshold: bool
    threshold: float
    buy_score: float
    sell_score: float
    contributions: dict[str, float]
    pattern_type: str


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _f(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def last_atr(high, low, close, period: int = 14) -> float | None:
    """ATR (Wilder) at the last bar, None without enough bars."""
    high, low, close = _f(high), _f(low), _f(close)
    if len(close) < period:
        return None
    value = atr_last(high, low, close, period)
    return value if math.isfinite(value) and value > 0 else None


def all_finite(values: np.ndarray) -> bool:
    """``np.isfinite(values).all()`` without ``ndarray.all``'s Python layers (the same reduction)."""
    return bool(np.logical_and.reduce(np.isfinite(values)))


_TREND_X: dict[int, tuple[np.ndarray, np.float64]] = {}


def _trend(values: np.ndarray) -> float:
    """Least-squares slope times (n - 1): the change along the fitted line over the window.
    The centred x and its sum of squares depend on n only: made once per n."""
    n = len(values)
    cached = _TREND_X.get(n)
    if cached is None:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        cached = (x, x @ x)
        if len(_TREND_X) < 64:
            _TREND_X[n] = cached
    x, xx = cached
    return float(x @ (values - fast_mean(values)) / xx) * (n - 1)


def flow_columns(flow_bars: Sequence[Any] | FlowBarColumns) -> FlowBarColumns:
    """Flow bars as columns (``OrderFlowEngine.bar_columns`` gives them so directly)."""
    return flow_bars if isinstance(flow_bars, FlowBarColumns) else FlowBarColumns.from_bars(flow_bars)


def align_flow_to_bars(bar_start_ms: Sequence[int], flow_bars: Sequence[Any] | FlowBarColumns
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cvd at each bar's close, delta, volume) for price bars, matched on the bar start (UTC).

    Flow bars come from ``OrderFlowEngine.bars`` (or ``bar_columns``) with the same timeframe. A
    minute without trades has delta and volume 0 and carries the CVD of the last matched minute;
    minutes before the first flow bar are NaN (not aligned) so detectors refuse them instead of
    reading made-up zeros. Vectorised (``searchsorted``): a monitor aligns every step.
    """
    starts = np.asarray(bar_start_ms, dtype=np.int64)
    n = len(starts)
    flow = _unique_by_start(flow_columns(flow_bars))
    if len(flow) == 0 or n == 0:
        return np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    at = np.minimum(np.searchsorted(flow.start_ms, starts), len(flow) - 1)
    found = flow.start_ms[at] == starts
    missing = ~found
    buy, sell = flow.buy_volume[at], flow.sell_volume[at]
    cvd, delta, volume = flow.cvd[at], buy - sell, buy + sell
    if cvd.dtype == delta.dtype == np.float64:  # the engine's columns: NaN written in place, cheaper
        cvd[missing] = np.nan
        delta[missing] = np.nan
        volume[missing] = np.nan
    else:
        cvd, delta, volume = (np.where(found, values, np.nan) for values in (cvd, delta, volume))
    quiet = missing & (starts > flow.start_ms[0])
    if np.logical_or.reduce(quiet):  # quiet.any() without its Python layers
        last_found = np.maximum.accumulate(np.where(found, np.arange(n), -1))
        carried = np.where(last_found >= 0, cvd[np.maximum(last_found, 0)], np.nan)
        cvd[quiet], delta[quiet], volume[quiet] = carried[quiet], 0.0, 0.0
    return cvd, delta, volume


def _unique_by_start(flow: FlowBarColumns) -> FlowBarColumns:
    """Sorted by start, one bar per start (the last given wins). The engine's bars already are."""
    starts = flow.start_ms
    if len(starts) < 2 or bool(np.logical_and.reduce(starts[1:] > starts[:-1])):
        return flow
    order = np.argsort(starts, kind="stable")
    ordered = starts[order]
    last_of_start = np.append(ordered[1:] != ordered[:-1], True)
    return flow.take(order[last_of_start])


# ---------------------------------------------------------------------------------------------
# detectors
# ---------------------------------------------------------------------------------------------

def cvd_divergence(high, low, cvd, volume, atr_value: float | None,
                   params: SignalParams = SignalParams()) -> Signal | None:
    """Price makes HH (LL) on its last two M1 swing highs (lows) while CVD at those bars falls (rises)."""
    n = params.pivot_lookback_bars
    high, low, cvd, volume = _f(high)[-n:], _f(low)[-n:], _f(cvd)[-n:], _f(volume)[-n:]
    if len(high) < n or not atr_value or not all_finite(cvd) or not all_finite(volume):
        return None
    is_high, is_low = swing_pivots(high, low, 1, 1)
    candidates = []
    highs, lows = is_high.nonzero()[0], is_low.nonzero()[0]
    if len(highs) >= 2:
        i1, i2 = int(highs[-2]), int(highs[-1])
        if high[i2] > high[i1] and cvd[i2] < cvd[i1]:
            candidates.append(("sell", i1, i2, high[i2] - high[i1]))
    if len(lows) >= 2:
        i1, i2 = int(lows[-2]), int(lows[-1])
        if low[i2] < low[i1] and cvd[i2] > cvd[i1]:
            candidates.append(("buy", i1, i2, low[i1] - low[i2]))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[2])  # the most recent pivot pair speaks for now
    if len(candidates) == 2 and candidates[0][2] == candidates[1][2]:
        return None  # both at the same bar: no direction
    side, i1, i2, price_move = candidates[-1]
    traded = float(np.add.reduce(volume[i1 + 1:i2 + 1]))
    cvd_move = abs(float(cvd[i2] - cvd[i1]))
    price_part = min(1.0, price_move / (params.cvd_div_price_atr * atr_value))
    flow_part = min(1.0, cvd_move / traded) if traded > 0 else 0.0
    return Signal("cvd_divergence", side, 0.5 * (price_part + flow_part),
                  {"pivots": (i1 - len(high), i2 - len(high)), "price_move_atr": price_move / atr_value,
                   "cvd_move_fraction": flow_part})


def delta_divergence(close, delta, atr_value: float | None,
                     params: SignalParams = SignalParams()) -> Signal | None:
    """Price trend (in ATR) against the trend of per-bar delta (in mean |delta|) over N bars."""
    n = params.delta_div_bars
    close, delta = _f(close)[-n:], _f(delta)[-n:]
    if len(close) < n or n < 3 or not atr_value or not all_finite(delta):
        return None
    scale = fast_mean(np.abs(delta))
    if scale <= 0:
        return None
    price_trend = _trend(close) / atr_value
    delta_trend = _trend(delta) / scale
    pt, dt = params.delta_div_price_threshold, params.delta_div_delta_threshold
    if price_trend <= -pt and delta_trend >= dt:
        side: Side = "buy"
    elif price_trend >= pt and delta_trend <= -dt:
        side = "sell"
    else:
        return None
    strength = min(1.0, 0.5 * min(abs(price_trend) / pt, abs(delta_trend) / dt))
    return Signal("delta_divergence", side, strength,
                  {"price_trend_atr": price_trend, "delta_trend": delta_trend})


def typical_window_volume(flow_bars: Sequence[Any] | FlowBarColumns, window_seconds: int,
                          bars: int = 30) -> float | None:
    """Mean volume per ``window_seconds`` from the last completed flow bars (their own timeframe)."""
    done = flow_columns(flow_bars).take(slice(-bars, None))
    return mean_window_volume(done.volume.tolist(), done.seconds.tolist(), window_seconds)


def mean_window_volume(volumes: list[float], seconds: list[int], window_seconds: int) -> float | None:
    """``typical_window_volume`` of bars given by their volumes and lengths (None without bars)."""
    if not volumes:
        return None
    # Python's sum, bar after bar, as summing the bars' volumes one by one always did
    per_second = sum(volumes) / sum(seconds)
    return per_second * window_seconds if per_second > 0 else None


def absorption_possible(buy_volume: float, sell_volume: float, price_high: float | None,
                        price_low: float | None, vwap: float | None, typical_volume: float | None,
                        params: SignalParams = SignalParams()) -> bool:
    """False when ``absorption`` returns None whatever the ATR (its tests that do not read the
    ATR fail): a caller can then skip what only the other detectors need."""
    volume = buy_volume + sell_volume
    if volume <= 0 or not typical_volume or price_high is None or price_low is None or vwap is None:
        return False
    return not (volume / typical_volume < params.absorption_volume_ratio
                or abs((buy_volume - sell_volume) / volume) < params.absorption_imbalance)


def absorption(buy_volume: float, sell_volume: float, price_high: float | None, price_low: float | None,
               vwap: float | None, typical_volume: float | None, atr_value: float | None,
               params: SignalParams = SignalParams()) -> Signal | None:
    """Heavy one-sided aggression that does not move price (one window of ``FlowMetrics``).
    (``absorption_possible`` repeats the tests that do not read the ATR: keep them alike.)"""
    volume = buy_volume + sell_volume
    if (volume <= 0 or not typical_volume or not atr_value or price_high is None or price_low is None
            or vwap is None):
        return None
    ratio = volume / typical_volume
    imbalance = (buy_volume - sell_volume) / volume
    move = (price_high - price_low) / atr_value
    if (ratio < params.absorption_volume_ratio or abs(imbalance) < params.absorption_imbalance
            or move > params.absorption_max_move_atr):
        return None
    side: Side = "buy" if imbalance < 0 else "sell"  # absorbed selling holds price up: support
    strength = (min(1.0, ratio / (2 * params.absorption_volume_ratio))
                + min(1.0, abs(imbalance) / (2 * params.absorption_imbalance))
                + (1.0 - move / params.absorption_max_move_atr if params.absorption_max_move_atr > 0 else 1.0)) / 3
    return Signal("absorption", side, strength,
                  {"price": vwap, "low": price_low, "high": price_high, "volume_ratio": ratio,
                   "imbalance": imbalance, "move_atr": move})


def _liquidity_levels(high: np.ndarray, low: np.ndarray, tolerance: float) -> tuple[list[float], list[float]]:
    """Resting-liquidity levels: the window's extremes and clusters of >= 2 equal 5-bar swing points."""
    is_high, is_low = swing_pivots(high, low, 2, 2)
    levels_high, levels_low = [float(np.maximum.reduce(high))], [float(np.minimum.reduce(low))]
    for values, out in ((high[is_high], levels_high), (low[is_low], levels_low)):
        points = np.sort(values)
        plain = points.tolist()  # the same doubles: the same differences, without numpy scalars
        start = 0
        for i in range(1, len(plain) + 1):
            if i == len(plain) or plain[i] - plain[i - 1] > tolerance:
                if i - start >= 2:
                    out.append(fast_mean(points[start:i]))
                start = i
    return levels_high, levels_low


def liquidity_sweep(high, low, close, atr_value: float | None,
                    params: SignalParams = SignalParams()) -> Signal | None:
    """Price ran through a liquidity level in the last few bars and closed back inside."""
    recent, lookback = params.sweep_recent_bars, params.sweep_lookback_bars
    high, low, close = _f(high), _f(low), _f(close)
    if len(close) < lookback + recent or not atr_value:
        return None
    ref_high, ref_low = high[-(lookback + recent):-recent], low[-(lookback + recent):-recent]
    levels_high, levels_low = _liquidity_levels(ref_high, ref_low, params.sweep_cluster_atr * atr_value)
    last = float(close[-1])
    reach_high, reach_low = float(np.maximum.reduce(high[-recent:])), float(np.minimum.reduce(low[-recent:]))
    full = params.sweep_reclaim_atr * atr_value
    swept_lows = [lv for lv in levels_low if reach_low < lv < last]  # ran the stops below, closed above
    swept_highs = [lv for lv in levels_high if last < lv < reach_high]
    buy = max(swept_lows, key=lambda lv: last - lv, default=None)
    sell = max(swept_highs, key=lambda lv: lv - last, default=None)
    buy_strength = 0.5 + 0.5 * min(1.0, (last - buy) / full) if buy is not None else 0.0
    sell_strength = 0.5 + 0.5 * min(1.0, (sell - last) / full) if sell is not None else 0.0
    if buy_strength == sell_strength:
        return None  # nothing swept, or both sides swept alike (an outside bar): no direction
    if buy_strength > sell_strength:
        return Signal("liquidity_sweep", "buy", buy_strength, {"level": buy, "extreme": reach_low})
    return Signal("liquidity_sweep", "sell", sell_strength, {"level": sell, "extreme": reach_high})


def vwap_deviation(high, low, close, volume, price: float,
                   params: SignalParams = SignalParams()) -> Signal | None:
    """Distance of ``price`` from the bars' VWAP in weighted standard deviations (reversion)."""
    n = params.vwap_bars
    high, low, close, volume = _f(high)[-n:], _f(low)[-n:], _f(close)[-n:], _f(volume)[-n:]
    if len(close) < min(n, 20) or not all_finite(volume):
        return None
    typical = (high + low + close) / 3.0
    add = np.add.reduce  # ndarray.sum without its Python layers (the same reduction)
    weights = volume if add(volume) > 0 else np.ones_like(volume)
    total = add(weights)
    vwap = float(add(typical * weights) / total)
    sigma = math.sqrt(float(add(weights * (typical - vwap) ** 2) / total))
    if sigma <= 0:
        return None
    deviation = (price - vwap) / sigma
    if abs(deviation) < params.vwap_min_sigma:
        return None
    side: Side = "sell" if deviation > 0 else "buy"
    return Signal("vwap_deviation", side, min(1.0, abs(deviation) / params.vwap_full_sigma),
                  {"vwap": vwap, "sigma": sigma, "deviation_sigma": deviation})


def detect_signals(high, low, close, volume, cvd, delta, *, buy_volume: float, sell_volume: float,
                   window_high: float | None, window_low: float | None, window_vwap: float | None,
                   typical_volume: float | None, price: float,
                   params: SignalParams = SignalParams()) -> list[Signal]:
    """All five detectors over closed M1 bars (oldest first) aligned with their flow, plus the
    absorption window's flow. Inputs that are missing make the affected detectors stay silent."""
    atr_value = last_atr(high, low, close, params.atr_period)
    found = [
        absorption(buy_volume, sell_volume, window_high, window_low, window_vwap, typical_volume, atr_value,
                   params),
        delta_divergence(close, delta, atr_value, params),
        liquidity_sweep(high, low, close, atr_value, params),
        cvd_divergence(high, low, cvd, volume, atr_value, params),
        vwap_deviation(high, low, close, volume, price, params),
    ]
    return [s for s in found if s is not None]


# ---------------------------------------------------------------------------------------------
# classifier
# ---------------------------------------------------------------------------------------------

def normalised_weights(weights: Mapping[str, float] | None = None) -> dict[str, float]:
    raw = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(raw) - set(SIGNAL_NAMES))
    if unknown:
        raise ValueError(f"unknown signal weights: {', '.join(unknown)}; known: {', '.join(SIGNAL_NAMES)}")
    if any(v < 0 or not math.isfinite(v) for v in raw.values()) or sum(raw.values()) <= 0:
        raise ValueError("signal weights must be >= 0 with a positive sum")
    total = sum(raw.values())
    return {name: raw.get(name, 0.0) / total for name in SIGNAL_NAMES}


@lru_cache(maxsize=64)
def _normalised(items: tuple[tuple[str, float], ...] | None) -> Mapping[str, float]:
    """``normalised_weights`` memoised on the weights' items, in order (the order of the sum is
    part of the result); read-only because it is shared. The classifier runs every step."""
    return MappingProxyType(normalised_weights(None if items is None else dict(items)))


CEILING_MARGIN = 1e-9  # far above the rounding of a sum of five products, each at most its weight


def can_meet_threshold(names: Iterable[str], weights: Mapping[str, float] | None = None,
                       threshold: float = 0.75) -> bool:
    """False when ``classify`` cannot reach ``threshold`` with signals from the detectors
    ``names`` only, whatever they find: a side scores at most the sum of their normalised
    weights (a strength is at most 1, a weight at least 0), so the others need not run."""
    ceiling = _ceiling(tuple(names), None if weights is None else tuple(weights.items()))
    return ceiling + CEILING_MARGIN >= threshold - SCORE_EPSILON


@lru_cache(maxsize=64)
def _ceiling(names: tuple[str, ...], items: tuple[tuple[str, float], ...] | None) -> float:
    """The most the detectors ``names`` can score together: the sum of their normalised weights
    (memoised like ``_normalised``: the monitor asks every step)."""
    w = _normalised(items)
    return sum(w[name] for name in names)


def classify(signals: Iterable[Signal], weights: Mapping[str, float] | None = None, threshold: float = 0.75,
             side: Side | None = None) -> Classification:
    """Weighted confluence. Only signals agreeing with a side count towards it.

    With ``side`` given (a trade idea's direction) only that side is scored; otherwise the
    stronger side is chosen and an exact tie (including no signals) gives ``side=None``.
    """
    w = _normalised(None if weights is None else tuple(weights.items()))
    best: dict[tuple[str, str], float] = {}
    for s in signals:
        if s.name not in w:
            raise ValueError(f"unknown signal {s.name!r}")
        if s.side not in ("buy", "sell"):
            raise ValueError(f"signal {s.name} has side {s.side!r}; expected buy or sell")
        strength = min(1.0, max(0.0, float(s.strength))) if math.isfinite(s.strength) else 0.0
        key = (s.side, s.name)
        best[key] = max(best.get(key, 0.0), strength)
    scores = {"buy": {}, "sell": {}}
    for (s_side, name), strength in best.items():
        if strength > 0:
            scores[s_side][name] = w[name] * strength
    buy_score, sell_score = sum(scores["buy"].values()), sum(scores["sell"].values())
    if side is None:
        if abs(buy_score - sell_score) <= SCORE_EPSILON:
            chosen: Side | None = None
        else:
            chosen = "buy" if buy_score > sell_score else "sell"
    else:
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        chosen = side
    contributions = dict(scores[chosen]) if chosen else {}
    probability = min(1.0, sum(contributions.values()))
    pattern = max(contributions, key=contributions.get) if contributions else "unknown"
    return Classification(side=chosen, probability=probability,
                          meets_threshold=chosen is not None and probability >= threshold - SCORE_EPSILON,
                          threshold=threshold, buy_score=buy_score, sell_score=sell_score,
                          contributions=contributions, pattern_type=pattern)
