"""The market core, the complete market and a detected range carry each value in its own field.

``MarketCore``, ``RangeMarket`` and ``RangeStructure`` are built positionally on the hot path
(no keyword dictionary per M5 bar), so two values of the same type in swapped positions would
go unnoticed by the type checks. Every field is compared here with a value worked out
independently (plain numpy over the same bars, the full-array indicators, or an invariant of
the field), at windows of the real XAUUSD M5 export, along the plain path and the MarketMemo
path the monitor takes.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest

from engines import indicators
from engines.range_data import M5, Bars, to_bars
from engines.range_detection import CriticalGaps, RangeStructure, detect_range
from engines.range_indicators import rsi_last
from engines.range_market import (
    H1Values, LateValues, M15Values, MarketCore, MarketMemo, RangeMarket, compute_market, m15_values, market_core,
    previous_day_levels, read_inputs, session_start_s,
)
from engines.range_metrics import bb_width_expansion_pct, body_expansion, break_of_structure, expansion_state
from engines.range_sessions import session_key_at
from tests.range_scalp.helpers import XAU_M5, params, read_real_m5

SPREAD = 0.20
STEP = 157  # M5 bars between evaluated windows (13 h 5 min: every hour of the day comes round)


@pytest.fixture(scope="module")
def xau_bars() -> Bars:
    return to_bars(read_real_m5(XAU_M5), M5)


def windows(bars: Bars, lookback: int, count: int) -> list[tuple[Bars, datetime]]:
    """``count`` windows of ``lookback`` bars, ``STEP`` bars apart, each with ``now`` 3 s after
    its last bar closed."""
    out = []
    for end in range(lookback, len(bars), STEP)[:count]:
        window = bars.slice(end - lookback, end)
        out.append((window, datetime.fromtimestamp(int(window.time[-1]) + M5 + 3, tz=timezone.utc)))
    return out


def quote_of(window: Bars) -> tuple[float, float]:
    close = float(window.close[-1])
    return close, close + SPREAD


def mean_true_range(bars: Bars, period: int, end: int | None = None) -> float:
    """Simple mean of the last ``period`` true ranges of ``bars[:end]``, in plain numpy."""
    high, low, close = bars.high[:end], bars.low[:end], bars.close[:end]
    prev = close[:-1]
    tr = np.maximum(high[1:] - low[1:], np.maximum(np.abs(high[1:] - prev), np.abs(low[1:] - prev)))
    return float(np.mean(tr[-period:]))


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True)


def touches(bars: Bars, high: float, low: float, tolerance_pct: float) -> tuple[int, int]:
    """Fresh visits of each edge, bar by bar (spec A3.5): within the tolerance of the level, the
    close not settled beyond it, and the bar before not already within the tolerance."""
    tol_h, tol_l = tolerance_pct / 100.0 * high, tolerance_pct / 100.0 * low
    upper = lower = 0
    near_h_before = near_l_before = False
    for h, l, c in zip(bars.high.tolist(), bars.low.tolist(), bars.close.tolist()):
        near_h, near_l = abs(h - high) <= tol_h, abs(l - low) <= tol_l
        upper += near_h and not near_h_before and c <= high + tol_h
        lower += near_l and not near_l_before and c >= low - tol_l
        near_h_before, near_l_before = near_h, near_l
    return upper, lower


def markets(bars: Bars, p, count: int):
    """(window, inputs, core, market) along the plain path and along one MarketMemo's path."""
    memo = MarketMemo()
    for window, now in windows(bars, p.data.lookback_m5_bars, count):
        for kept in (None, memo):
            inputs = read_inputs(window, None, quote_of(window), p, "XAUUSD", now, memo=kept)
            core = market_core(inputs, p, kept)
            yield window, inputs, core, compute_market(inputs, p, kept)


# ----------------------------------------------------------------------------------------------
# The fields one at a time
# ----------------------------------------------------------------------------------------------

def test_the_cores_h1_atr_and_previous_atr_are_those_of_the_h1_bars(xau_bars) -> None:
    """``atr_h1`` is the mean true range of the last 14 H1 bars, ``atr_h1_prev`` the same 24 H1
    bars earlier (the anchors rule compares them); the two differ on real bars."""
    p = params()
    period, lookback = p.indicators.atr_period, p.detection.anchor_atr_lookback_h1_bars
    differing = 0
    for _, inputs, core, market in markets(xau_bars, p, 30):
        h1 = inputs.h1
        assert len(h1) > period + lookback + 1
        atr, atr_prev = mean_true_range(h1, period), mean_true_range(h1, period, len(h1) - lookback)
        for built in (core, market):
            assert (built.atr_h1, built.atr_h1_prev) == (approx(atr), approx(atr_prev))
            assert (built.h1_values.atr, built.h1_values.atr_prev) == (approx(atr), approx(atr_prev))
        differing += abs(atr - atr_prev) > 1e-6 * atr
    assert differing >= 50


def test_the_markets_volume_is_the_last_m5_bars_and_the_average_its_last_bars(xau_bars) -> None:
    """``volume_current`` is the last closed M5 bar's tick volume, ``volume_avg`` the mean of
    the last ``volume_avg_bars`` (12) bars' volumes; the two differ on real bars."""
    p = params()
    n = p.indicators.volume_avg_bars
    differing = 0
    for window, _, _, market in markets(xau_bars, p, 30):
        last, average = float(window.volume[-1]), float(np.mean(window.volume[-n:]))
        assert market.volume_current == last
        assert market.volume_avg == approx(average)
        differing += abs(last - average) > 1e-6 * average
    assert differing >= 50


def test_a_session_range_has_the_session_levels_and_each_edges_own_touches(xau_bars) -> None:
    """A detected session range: ``high`` the highest M15 high since the session start (at or
    above every close then), ``low`` the lowest low, each edge's touch count that edge's fresh
    visits, counted bar by bar here; on real bars the two counts often differ."""
    p = params(detection={"range_types": ["session"]})
    tolerance = p.detection.touch_tolerance_pct
    found = differing = 0
    memo = MarketMemo()
    for window, now in windows(xau_bars, p.data.lookback_m5_bars, 80):
        inputs = read_inputs(window, None, quote_of(window), p, "XAUUSD", now)
        core = market_core(inputs, p)
        range_, _ = detect_range(core, p)
        kept_inputs = read_inputs(window, None, quote_of(window), p, "XAUUSD", now, memo=memo)
        kept, _ = detect_range(market_core(kept_inputs, p, memo), p, memo)
        assert repr(kept) == repr(range_)
        if range_ is None:
            continue
        found += 1
        m15 = inputs.m15
        session = m15.slice(int(np.searchsorted(m15.time, session_start_s(core, p))), len(m15))
        high, low = float(session.high.max()), float(session.low.min())
        assert (range_.range_type, range_.high, range_.low) == ("session", high, low)
        assert range_.high > range_.low
        assert range_.high >= float(session.close.max()) and range_.low <= float(session.close.min())
        upper, lower = touches(session, high, low, tolerance)
        assert (range_.touches_upper, range_.touches_lower) == (upper, lower)
        assert range_.validated == (upper >= 2 and lower >= 2)
        differing += upper != lower
    assert found >= 20 and differing >= 5, (found, differing)


# ----------------------------------------------------------------------------------------------
# Every field at once
# ----------------------------------------------------------------------------------------------

def _check_core(core: MarketCore, inputs, p) -> None:
    ind, det = p.indicators, p.detection
    m5, m15, h1 = inputs.m5, inputs.m15, inputs.h1
    bid, ask = inputs.quote.bid, inputs.quote.ask
    closes = m5.close[-ind.bb_period:]
    middle, sigma = float(np.mean(closes)), float(np.std(closes))
    upper, lower = middle + ind.bb_std * sigma, middle - ind.bb_std * sigma
    width = (upper - lower) / middle
    atr = mean_true_range(m5, ind.atr_period)
    price = (bid + ask) / 2.0
    day, note = previous_day_levels(m5, inputs.now_s, det.day_start_hour_utc, det.min_previous_day_hours)
    adx = float(indicators.adx(h1.high, h1.low, h1.close, ind.adx_period).adx[-1])
    vwap = float(indicators.session_vwap(m5.time, m5.high, m5.low, m5.close, m5.volume,
                                         ind.vwap_anchor_hour_utc).vwap[-1])
    atr_h1 = mean_true_range(h1, ind.atr_period)
    atr_h1_prev = mean_true_range(h1, ind.atr_period, len(h1) - det.anchor_atr_lookback_h1_bars)
    assert core.inputs is inputs
    assert core.price == approx(price) and bid < core.price < ask
    assert core.atr == approx(atr)
    assert core.atr_eff == approx(max(atr, width * price * ind.bb_width_multiplier)) and core.atr_eff >= core.atr
    assert (core.atr_h1, core.atr_h1_prev) == (approx(atr_h1), approx(atr_h1_prev))
    assert (core.bb_upper, core.bb_middle, core.bb_lower) == (approx(upper), approx(middle), approx(lower))
    assert core.bb_upper > core.bb_middle > core.bb_lower
    assert core.bb_width == approx(width) and 0 < core.bb_width < 1
    assert core.vwap == approx(vwap)
    assert core.expansion_state == expansion_state(m15.high[-60:], m15.low[-60:], m15.close[-60:], ind.atr_period,
                                                   ind.bb_period, det.expansion_ratio_high, det.expansion_ratio_low)
    assert core.expansion_state in ("expanding", "contracting", "stable", "forming")
    assert core.adx == approx(adx) and 0 <= core.adx <= 100
    assert core.previous_day == day and core.previous_day_note == note
    if day is not None:
        assert day.high > day.low and day.day_start_s < inputs.now_s
    assert core.session_key == session_key_at(inputs.now_s, p.sessions)
    assert type(core.h1_values) is H1Values
    assert (core.h1_values.atr, core.h1_values.atr_prev, core.h1_values.adx) == (core.atr_h1, core.atr_h1_prev, core.adx)


def _check_market(market: RangeMarket, core: MarketCore, window: Bars, inputs, p) -> None:
    ind, inv, det = p.indicators, p.invalidation, p.detection
    m5, m15 = inputs.m5, inputs.m15
    for name in MarketCore.__dataclass_fields__:  # the core's fields, as the core has them
        value, expected = getattr(market, name), getattr(core, name)
        assert value is expected or value == expected or (value != value and expected != expected), name
    atr_m15 = mean_true_range(m15, ind.atr_period)
    rolling = indicators_rolling_vwap(m15, inv.vwap_window_m15)[-inv.vwap_momentum_bars:]
    momentum = (rolling[-1] - rolling[0]) / core.atr_eff / (len(rolling) - 1)
    ratio_fires, ratio = body_expansion(m15.open, m15.close, p.false_range.body_expansion_multiplier)
    whole = m15_values(m15, len(m15), p)
    n = ind.volume_avg_bars
    assert market.atr_m15 == approx(atr_m15)
    assert market.vwap_momentum == approx(momentum)
    assert market.bb_expansion_pct == approx(bb_width_expansion_pct(m5.close, ind.bb_period, inv.bb_expansion_min_bars))
    assert market.volume_current == float(window.volume[-1])
    assert market.volume_avg == approx(float(np.mean(window.volume[-n:])))
    assert market.bos == break_of_structure(m15.high, m15.low, m15.close, atr_m15, det.bos_threshold_atr,
                                            det.bos_swing_count, det.swing_left, det.swing_right, det.bos_min_bars)
    assert (market.body_expansion, market.body_expansion_ratio) == (ratio_fires, approx(ratio))
    assert market.candle_divergence == whole.divergence
    assert type(market.late) is LateValues and type(market.m15_values) is M15Values
    assert market.rsi == pytest.approx(rsi_last(m5.close, ind.rsi_period), abs=1e-6)


def indicators_rolling_vwap(bars: Bars, window: int) -> list[float]:
    """The rolling VWAP of the typical price at every bar with a full window, in plain numpy."""
    typical = (bars.high + bars.low + bars.close) / 3.0
    values = []
    for end in range(window, len(typical) + 1):
        t, v = typical[end - window:end], bars.volume[end - window:end]
        values.append(float(np.sum(t * v) / np.sum(v)) if np.sum(v) > 0 else float(np.mean(t)))
    return values


def _check_range(range_: RangeStructure, core: MarketCore, p) -> None:
    det = p.detection
    gap = det.critical_gap_fraction * (range_.high - range_.low)
    assert range_.range_type in det.range_types
    assert range_.high > range_.low
    assert range_.mid == (core.vwap if math.isfinite(core.vwap) else (range_.high + range_.low) / 2)
    assert range_.atr == core.atr_eff
    assert range_.critical_gaps == CriticalGaps(range_.high - gap, range_.high, range_.low, range_.low + gap)
    assert range_.validated == (range_.touches_upper >= det.min_touches_per_side
                                and range_.touches_lower >= det.min_touches_per_side)
    assert range_.expansion_state == core.expansion_state
    assert range_.detected_at == core.now_s
    assert range_.invalidation_signals == ()
    assert all(type(note) is str for note in range_.notes)
    if range_.range_type == "session":
        assert range_.notes and range_.notes[0].startswith("session since ")
        m15 = core.m15
        session = m15.slice(int(np.searchsorted(m15.time, session_start_s(core, p))), len(m15))
        assert (range_.high, range_.low) == (float(session.high.max()), float(session.low.min()))
        assert (range_.touches_upper, range_.touches_lower) == touches(session, range_.high, range_.low,
                                                                       det.touch_tolerance_pct)


def test_every_field_of_the_core_the_market_and_the_range_is_its_own_value(xau_bars) -> None:
    """Built through the production path (plain and with the MarketMemo) on real bars, each
    field of MarketCore, RangeMarket and RangeStructure equals its independent computation or
    keeps its invariant, so two same-typed values in swapped positions fail here."""
    p = params()
    seen_types = set()
    for window, inputs, core, market in markets(xau_bars, p, 40):
        _check_core(core, inputs, p)
        _check_market(market, core, window, inputs, p)
        range_, _ = detect_range(core, p)
        if range_ is not None:
            _check_range(range_, core, p)
            seen_types.add(range_.range_type)
    assert seen_types == {"session", "daily", "dynamic"}, seen_types
