"""The order-flow monitor's decision rules, kept pure so they can be tested with plain values.

- ``flow_problem``: is a flow window fit to trade on (present, fresh, gap-free, complete)?
  Entries fail CLOSED on any problem; the flip exit fails OPEN on the same problems.
- ``check_flip``: the order-flow flip exit rule (buy: entry delta > 0 and the current delta
  <= -threshold x entry delta; a sell mirrors it; an entry delta of the wrong sign never arms).
- ``signal_inputs`` / ``default_signals``: M1 price bars (broker) aligned by UTC minute with the
  flow bars of the tape (Binance or tick proxy), plus the absorption window's flow, through the
  five detectors of ``engines.order_flow_signals``. ``classifier_may_pass`` tells, before any of
  that, when the classifier cannot pass (no absorption and the other four weigh too little).
- ``plan_stops``: stop and target from ATR, or beyond an agreeing absorption zone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from engines.bars import BarSeries
from engines.order_flow import FlowBar, FlowBarColumns, FlowMetrics
from engines.order_flow_signals import (SIGNAL_NAMES, Signal, SignalParams, absorption, absorption_possible,
                                        align_flow_to_bars, all_finite, can_meet_threshold, cvd_divergence,
                                        delta_divergence, flow_columns, last_atr, liquidity_sweep,
                                        mean_window_volume, vwap_deviation)


# ---------------------------------------------------------------------------------------------
# flow fitness

def flow_problem(metrics: FlowMetrics | None, max_age_seconds: float) -> tuple[str, str] | None:
    """(gate, detail) when the window cannot be trusted, else None."""
    if metrics is None:
        return "flow_missing", "no flow for this symbol yet"
    if metrics.staleness_ms is None or metrics.staleness_ms > max_age_seconds * 1000:
        age = "never" if metrics.staleness_ms is None else f"{metrics.staleness_ms / 1000:.1f} s ago"
        return "flow_stale", f"last trade/tick {age} (limit {max_age_seconds:g} s)"
    if metrics.discontinuous:
        return "flow_gap", f"the {metrics.window_seconds} s window contains an unfilled gap in the tape"
    if not metrics.complete:
        return "flow_incomplete", f"less than {metrics.window_seconds} s of tape seen so far"
    return None


# ---------------------------------------------------------------------------------------------
# flip exit

@dataclass(frozen=True)
class FlipCheck:
    armed: bool  # the entry delta has the position's sign
    flipped: bool
    trigger: float | None  # the current delta at which the exit fires
    flip_pct: float | None  # |(current - entry) / entry| x 100 (180 % at the default trigger)


def check_flip(side: str, entry_delta: float, current_delta: float, threshold: float = 0.8) -> FlipCheck:
    """Buy: armed when entry_delta > 0, flips when current <= -threshold x entry. Sell: armed
    when entry_delta < 0, flips when current >= -threshold x entry (a positive number)."""
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    if not (math.isfinite(entry_delta) and math.isfinite(current_delta)):
        return FlipCheck(False, False, None, None)
    armed = entry_delta > 0 if side == "buy" else entry_delta < 0
    if not armed:
        return FlipCheck(False, False, None, None)
    trigger = -threshold * entry_delta
    flipped = current_delta <= trigger if side == "buy" else current_delta >= trigger
    return FlipCheck(True, flipped, trigger, abs((current_delta - entry_delta) / entry_delta) * 100.0)


# ---------------------------------------------------------------------------------------------
# signals

@dataclass(frozen=True)
class SignalInputs:
    """Everything the detectors read for one symbol at one instant."""

    high: np.ndarray  # closed M1 bars, oldest first (broker prices)
    low: np.ndarray
    close: np.ndarray
    bar_volume: np.ndarray  # broker tick volume per bar (VWAP fallback)
    cvd: np.ndarray  # flow aligned to the bars (NaN before the tape starts)
    delta: np.ndarray
    flow_volume: np.ndarray
    window: FlowMetrics  # the absorption window (its CVD slopes are NaN with the default detectors: unread)
    typical_volume: float | None  # mean flow volume per absorption window
    price: float  # current broker mid
    atr: float | None


def signal_inputs(bars: BarSeries, flow_bars: Sequence[FlowBar] | FlowBarColumns, window: FlowMetrics,
                  price: float, params: SignalParams) -> SignalInputs:
    """Align closed M1 bars (UTC open times) with the tape's completed M1 flow bars
    (``OrderFlowEngine.bars``, or the same as columns from ``bar_columns``: no object per bar)."""
    starts, high, low, close, bar_volume = bar_arrays(bars)
    flow = flow_columns(flow_bars)
    cvd, delta, flow_volume = align_flow_to_bars(starts, flow)
    return SignalInputs(high, low, close, bar_volume, cvd, delta, flow_volume, window,
                        typical_volume(flow, window, params), price, last_atr(high, low, close, params.atr_period))


_BESIDES_ABSORPTION = tuple(name for name in SIGNAL_NAMES if name != "absorption")


def typical_volume(flow: FlowBarColumns, window: FlowMetrics, params: SignalParams) -> float | None:
    """The absorption detector's typical volume per window: from the last
    ``absorption_typical_bars`` flow bars that end before the window starts."""
    picked = (flow.end_ms <= window.now_ms - window.window_seconds * 1000).nonzero()[0]
    picked = picked[-params.absorption_typical_bars:]
    # typical_window_volume(flow.take(picked), ...), reading only the two columns it needs
    return mean_window_volume((flow.buy_volume[picked] + flow.sell_volume[picked]).tolist(),
                              flow.seconds[picked].tolist(), window.window_seconds)


def classifier_may_pass(window: FlowMetrics, flow: FlowBarColumns, params: SignalParams,
                        others_pass: bool | None = None) -> bool:
    """False when the classifier cannot reach its threshold at this step: the absorption window
    cannot be absorption (whatever the ATR) and the other four detectors together weigh less
    than the threshold (0.70 against 0.75 with the default weights). Then the decision is
    "classifier" without aligning the flow or running any detector. The typical volume (from
    ``flow``) is computed only when the window's own numbers leave absorption possible.
    ``others_pass``: ``others_may_pass(params)`` when the caller keeps it (None: computed here)."""
    if _window_may_absorb(window, params) and absorption_possible(
            window.buy_volume, window.sell_volume, window.price_high, window.price_low, window.vwap,
            typical_volume(flow, window, params), params):
        return True
    return others_may_pass(params) if others_pass is None else others_pass


def others_may_pass(params: SignalParams) -> bool:
    """Whether the four detectors besides absorption can reach the threshold on their own."""
    return can_meet_threshold(_BESIDES_ABSORPTION, params.weights, params.threshold)


def _window_may_absorb(window: FlowMetrics, params: SignalParams) -> bool:
    """The tests of ``absorption_possible`` that do not read the typical volume: when one fails,
    so does ``absorption_possible``, whatever the typical volume."""
    volume = window.buy_volume + window.sell_volume
    return (volume > 0 and window.price_high is not None and window.price_low is not None and window.vwap is not None
            and not abs((window.buy_volume - window.sell_volume) / volume) < params.absorption_imbalance)


def flow_bars_since(bar_start_ms: int, window: FlowMetrics, params: SignalParams, bar_seconds: int = 60
                    ) -> tuple[int, int]:
    """(since_ms, before) for ``bar_columns``: a superset of the flow bars ``signal_inputs``
    reads, so it gives the same inputs as with the whole history. The alignment reads the bars
    from the first price bar on, plus one earlier bar (it tells whether the tape started
    before a price bar); the typical volume reads the last ``absorption_typical_bars`` bars
    that end before the absorption window. Bars are sorted by start, so the bars starting
    after ``since_ms`` and the ``before`` bars ahead of them hold both (one bar of margin)."""
    window_start_ms = window.now_ms - window.window_seconds * 1000
    since_ms = min(bar_start_ms, window_start_ms - 2 * bar_seconds * 1000)
    return since_ms, params.absorption_typical_bars + 1


def bar_arrays(bars: BarSeries) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start ms, high, low, close, tick volume) of the broker's bars, as float64 (int64 ms)."""
    return (bars.time_s * 1000, bars.high.astype(np.float64, copy=False), bars.low.astype(np.float64, copy=False),
            bars.close.astype(np.float64, copy=False), bars.tick_volume.astype(np.float64))


def default_signals(inputs: SignalInputs, params: SignalParams) -> list[Signal]:
    """The five detectors. VWAP uses the tape's volume once it covers the VWAP bars, the
    broker's tick volume before that (one unit per series, never mixed)."""
    w, atr_value = inputs.window, inputs.atr
    vwap_volume = inputs.flow_volume[-params.vwap_bars:]
    if not all_finite(vwap_volume) or np.add.reduce(vwap_volume) <= 0:
        vwap_volume = inputs.bar_volume[-params.vwap_bars:]
    found = [
        absorption(w.buy_volume, w.sell_volume, w.price_high, w.price_low, w.vwap, inputs.typical_volume,
                   atr_value, params),
        delta_divergence(inputs.close, inputs.delta, atr_value, params),
        liquidity_sweep(inputs.high, inputs.low, inputs.close, atr_value, params),
        cvd_divergence(inputs.high, inputs.low, inputs.cvd, inputs.flow_volume, atr_value, params),
        vwap_deviation(inputs.high[-params.vwap_bars:], inputs.low[-params.vwap_bars:],
                       inputs.close[-params.vwap_bars:], vwap_volume, inputs.price, params),
    ]
    return [s for s in found if s is not None]


# ---------------------------------------------------------------------------------------------
# stops

@dataclass(frozen=True)
class StopPlan:
    sl: float
    tp: float
    basis: str


def plan_stops(side: str, entry: float, atr_value: float | None, params: Any,
               signals: Sequence[Signal] = (), tape_price: float | None = None,
               spread: float = 0.0) -> StopPlan | None:
    """Stop and target distances in the broker's prices.

    ``absorption`` mode puts the stop ``zone_buffer_atr`` beyond the low (buy) or high (sell) of
    an absorption zone agreeing with the side; the zone's distance is measured on the tape's own
    price (``tape_price``) so a basis between the tape (Binance) and the broker's CFD does not
    move the stop. The target is ``zone_tp_r`` times that stop. Otherwise (``atr`` mode, or no
    agreeing zone) the stop is ``sl_atr`` and the target ``tp_atr`` ATRs away. Every stop is
    clamped to [min_sl_atr, max_sl_atr] ATR and is never closer than ``min_sl_spreads`` times
    the current ``spread`` (in a quiet market one ATR can be less than the spread, and a stop
    inside the spread is refused by the broker or hit at once). None without an ATR.
    """
    if atr_value is None or not math.isfinite(atr_value) or atr_value <= 0:
        return None
    sign = 1.0 if side == "buy" else -1.0
    lo, hi = params.min_sl_atr * atr_value, params.max_sl_atr * atr_value
    floor = params.min_sl_spreads * max(0.0, spread)

    def clamp(distance: float) -> float:
        return max(floor, min(hi, max(lo, distance)))

    zone = next((s for s in signals if s.name == "absorption" and s.side == side), None)
    if params.stop_mode == "absorption" and zone is not None and tape_price is not None:
        edge = zone.detail.get("low") if side == "buy" else zone.detail.get("high")
        if edge is not None and math.isfinite(edge):
            sl_distance = clamp(sign * (tape_price - edge) + params.zone_buffer_atr * atr_value)
            return StopPlan(entry - sign * sl_distance, entry + sign * params.zone_tp_r * sl_distance,
                            f"absorption zone {edge:g} + {params.zone_buffer_atr:g} ATR")
    sl_distance = clamp(params.sl_atr * atr_value)
    tp_distance = max(params.tp_atr * atr_value, floor)
    return StopPlan(entry - sign * sl_distance, entry + sign * tp_distance, f"{params.sl_atr:g}/{params.tp_atr:g} ATR")
