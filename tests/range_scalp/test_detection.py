"""Range detection (session, previous day, swing; touches, gap zones, width limits, anchors),
invalidation (2 of 4) and false-range red flags (2 of 4)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engines.indicators import swing_pivots
from engines.range_data import M15, Bars, RangeFlow, aggregate
from engines.range_detection import (
    Candidate, Invalidation, M15Detection, RangeStructure, adaptive_anchors, count_touches, critical_gaps,
    daily_candidate, detect_range, dynamic_candidate, false_range, invalidation, nested_alignment, range_edges,
    session_candidate, swing_range, width_problem, with_signals,
)
from engines.range_market import DayLevels, previous_day_levels
from engines.range_metrics import BreakOfStructure, Divergence
from tests.range_scalp.helpers import (
    MONDAY, bars_from_rows, close_time, make_range, market, params, set_last, sine_bars, utc,
)

TUESDAY_10 = 24 * 12 + 10 * 12  # M5 bars from Monday 00:00 to Tuesday 10:00
TUESDAY_12 = 24 * 12 + 12 * 12


def test_critical_gap_zones_are_the_outer_15_percent() -> None:
    gaps = critical_gaps(110.0, 100.0, 0.15)
    assert (gaps.upper_start, gaps.upper_end, gaps.lower_start, gaps.lower_end) == (108.5, 110.0, 100.0, 101.5)
    assert gaps.zone_of(109.0) == "upper" and gaps.zone_of(101.0) == "lower" and gaps.zone_of(105.0) is None


def test_touches_count_fresh_visits_to_each_edge() -> None:
    # range 99..101, tolerance 0.2 % -> 0.202 above, 0.198 below
    rows = [
        (100.0, 100.2, 99.9, 100.1),   # nowhere near
        (100.1, 100.9, 100.0, 100.5),  # upper touch 1
        (100.5, 100.95, 100.3, 100.6),  # still hugging the top: same touch
        (100.6, 100.6, 99.8, 99.9),    # left the edge (high outside tolerance)
        (99.9, 101.1, 99.9, 100.9),    # upper touch 2 (0.1 above, close back inside)
        (100.9, 101.5, 100.8, 101.4),  # high 0.5 above: not a touch, resets
        (101.4, 101.15, 101.0, 101.3),  # within tolerance but closed above high + tolerance: no
        (101.3, 101.3, 99.1, 99.2),    # lower touch 1 (low 0.1 above the low)
        (99.2, 99.5, 98.9, 99.0),      # hugging: same touch
        (99.0, 99.6, 99.5, 99.55),     # low 0.5 above the low: resets
        (99.55, 99.6, 98.85, 98.7),    # within 0.198? |98.85-99| = 0.15 yes, but close < 99 - 0.198: no
        (98.7, 99.5, 98.7, 99.4),      # |98.7-99| = 0.3: outside tolerance, nothing
    ]
    bars = bars_from_rows(MONDAY, [r for r in rows], M15)
    assert count_touches(bars, 101.0, 99.0, 0.2) == (2, 1)
    assert count_touches(bars.slice(0, 0), 101.0, 99.0, 0.2) == (0, 0)


def test_session_range_is_the_m15_high_low_since_the_session_start() -> None:
    bars = sine_bars(MONDAY, TUESDAY_10)
    m = market(bars)
    candidate = session_candidate(m, params())
    assert not isinstance(candidate, str)
    start = utc(2026, 6, 2, 8).timestamp()
    since = bars.since(int(start))
    assert candidate.high == pytest.approx(since.high.max()) and candidate.low == pytest.approx(since.low.min())
    assert len(candidate.touch_bars) == 8  # 08:00 .. 09:45, all complete M15 bars


def test_session_range_needs_enough_bars() -> None:
    bars = sine_bars(MONDAY, 24 * 12 + 8 * 12 + 8)  # Tuesday 08:40: two closed M15 bars since 08:00
    reason = session_candidate(market(bars), params())
    assert isinstance(reason, str) and "2 closed M15 bars since 2026-06-02 08:00 UTC, need 4" in reason


def test_previous_day_levels_skip_a_short_sunday_and_need_the_whole_day() -> None:
    friday = utc(2026, 5, 29)
    week = sine_bars(utc(2026, 5, 28), 2 * 288)  # Thursday and Friday
    friday_bars = week.since(int(friday.timestamp()))
    rows = [(100.0, 100.1, 99.9, 100.0)] * 24 + [(100.0, 100.2, 99.8, 100.1)] * 24  # Sunday 22:00 stub + Monday
    stub = bars_from_rows(utc(2026, 5, 31, 22), rows)
    joined = type(week)(*(np.r_[getattr(week, f), getattr(stub, f)] for f in
                          ("time", "open", "high", "low", "close", "volume")), week.period_s)
    now = utc(2026, 6, 1, 2, 0, 5)
    day, note = previous_day_levels(joined.closed_at(now.timestamp()), now.timestamp(), 0, 6)
    assert day == DayLevels(float(friday_bars.high.max()), float(friday_bars.low.min()), int(friday.timestamp()))
    assert note == ""
    # the same day cut in half by the window: refused rather than half-measured
    half = joined.since(int(friday.timestamp()) + 6 * 3600)
    day, note = previous_day_levels(half, now.timestamp(), 0, 6)
    assert day is None and "not fully inside" in note


def test_daily_range_uses_the_previous_day_and_counts_touches_since_then() -> None:
    bars = sine_bars(MONDAY, TUESDAY_10)
    m = market(bars)
    candidate = daily_candidate(m, params(detection={"adaptive_anchors": False}))
    monday = bars.slice(0, 288)
    assert not isinstance(candidate, str)
    assert (candidate.high, candidate.low) == (pytest.approx(monday.high.max()), pytest.approx(monday.low.min()))
    assert int(candidate.touch_bars.time[0]) == int(MONDAY.timestamp())
    short = market(sine_bars(MONDAY, 100))  # Monday only: no previous day
    assert daily_candidate(short, params()) == "daily range: no previous day in the bars given"


def test_adaptive_anchors_follow_a_held_session_extreme() -> None:
    bars = sine_bars(MONDAY, TUESDAY_10)  # session (since 08:00) high ~100.32
    m = replace(market(bars), atr_h1=1.0, atr_h1_prev=1.0)
    p = params()
    # the session high is beyond a PDH of 100.0 by 0.32 % (> 0.25 %) and was set > 15 min ago
    high, low, notes = adaptive_anchors(100.0, 99.0, m, p)
    session_high = float(m.m15.since(int(utc(2026, 6, 2, 8).timestamp())).high.max())
    assert high == pytest.approx(session_high) and low == 99.0 and "high moved" in notes[0]
    # not far enough beyond the anchor: unchanged
    assert adaptive_anchors(100.2, 99.0, m, p)[:2] == (100.2, 99.0)
    # the new extreme must have held for 15 minutes
    strict = params(detection={"anchor_hold_minutes": 600})
    assert adaptive_anchors(100.0, 99.0, m, strict)[:2] == (100.0, 99.0)
    # a 40 % change of the H1 ATR swaps in both (held) session levels
    jumpy = replace(m, atr_h1=1.5, atr_h1_prev=1.0)
    high, low, notes = adaptive_anchors(105.0, 95.0, jumpy, params(detection={"anchor_hold_minutes": 0}))
    assert (high, low) == (pytest.approx(session_high), pytest.approx(float(
        m.m15.since(int(utc(2026, 6, 2, 8).timestamp())).low.min()))) and "H1 ATR changed 50%" in notes[0]
    assert adaptive_anchors(105.0, 95.0, jumpy, params(detection={"adaptive_anchors": False}))[:2] == (105.0, 95.0)


def test_dynamic_range_is_the_latest_m15_swing_high_and_low() -> None:
    bars = sine_bars(MONDAY, TUESDAY_10)
    m = market(bars)
    candidate = dynamic_candidate(m, params())
    assert not isinstance(candidate, str)
    m15 = aggregate(bars, M15, close_time(bars).timestamp())
    is_high, is_low = swing_pivots(m15.high, m15.low, 3, 3)
    i_high, i_low = np.flatnonzero(is_high)[-1], np.flatnonzero(is_low)[-1]
    assert candidate.high == m15.high[i_high] == m15.high[i_high - 3:i_high + 4].max()
    assert candidate.low == m15.low[i_low] == m15.low[i_low - 3:i_low + 4].min()
    flat = market(bars_from_rows(MONDAY, [(100.0, 100.1, 99.9, 100.0)] * 200))
    assert dynamic_candidate(flat, params()) == "dynamic range: no M15 swing high and swing low yet"


@pytest.mark.parametrize("high, low, atr, verdict", [
    (100.04, 99.96, 0.01, "too narrow: 0.080% < 0.1%"),
    (101.0, 99.0, 0.2, None),                                  # 2 %, 10 ATRe
    (101.1, 98.9, 0.2, "too wide: 2.200% > 2%"),
    (100.3, 99.9, 0.25, "too narrow: 1.60 ATRe < 2"),
    (100.6, 99.6, 0.02, "too wide: 50.0 ATRe > 40"),
    (99.0, 100.0, 0.2, "is not above low"),
])
def test_width_limits_in_percent_and_in_atr(high: float, low: float, atr: float, verdict: str | None) -> None:
    problem = width_problem(high, low, atr, params())
    if verdict is None:
        assert problem is None
    else:
        assert problem is not None and verdict in problem


def test_detection_prefers_session_then_daily_then_dynamic() -> None:
    m = market(sine_bars(MONDAY, TUESDAY_12))
    found, passed_over = detect_range(m, params())
    assert found is not None and found.range_type == "session" and passed_over == ()
    # at 08:40 the London session has only two closed M15 bars: the previous day's range is used
    early = market(sine_bars(MONDAY, 24 * 12 + 8 * 12 + 8))
    found, passed_over = detect_range(early, params(detection={"min_width_atr": 1.0}))
    assert found is not None and found.range_type == "daily"
    assert len(passed_over) == 1 and passed_over[0].startswith("session range: 2 closed M15 bars")
    found, _ = detect_range(m, params(detection={"range_types": ["dynamic", "session"]}))
    assert found is not None and found.range_type == "dynamic"
    found, passed_over = detect_range(m, params(detection={"min_width_pct": 1.5, "max_width_pct": 2.0}))
    assert found is None and len(passed_over) == 3 and all("too narrow" in r for r in passed_over)


def test_detected_range_carries_touches_gaps_mid_and_round_trips() -> None:
    m = market(sine_bars(MONDAY, TUESDAY_12))
    found, _ = detect_range(m, params())
    assert found is not None
    assert found.mid == pytest.approx(m.vwap) and found.atr == pytest.approx(m.atr_eff)
    assert found.critical_gaps == critical_gaps(found.high, found.low, 0.15)
    assert found.validated == (found.touches_upper >= 2 and found.touches_lower >= 2)
    assert RangeStructure.from_dict(found.to_dict()) == found
    with pytest.raises(ValueError, match="range record"):
        RangeStructure.from_dict({"range_type": "session"})


# ----------------------------------------------------------------------------------------------
# Invalidation
# ----------------------------------------------------------------------------------------------

def _calm_market(**values):
    calm = {"vwap_momentum": 0.0, "bb_expansion_pct": 0.0, "bos": None}
    return market(sine_bars(MONDAY, TUESDAY_10), **{**calm, **values})


def test_closes_outside_the_range() -> None:
    bars = set_last(sine_bars(MONDAY, TUESDAY_10), [(100.0, 100.6, 99.9, 100.5), (100.5, 100.7, 100.4, 100.6)])
    m = market(bars, vwap_momentum=0.0, bb_expansion_pct=0.0, bos=None)
    both_outside = invalidation(make_range(high=100.4, low=99.0), m, params())
    assert both_outside.signals == ("candles_outside_range",) and not both_outside.invalidated
    assert "last 2 M5 closes outside" in both_outside.details[0]
    only_last = invalidation(make_range(high=100.55, low=99.0), m, params())
    assert only_last.signals == ()
    below = invalidation(make_range(high=102.0, low=100.7), m, params())
    assert below.signals == ("candles_outside_range",)
    # three closes needed (BTC's setting): the third-last close is inside
    assert float(bars.close[-3]) < 100.4
    assert invalidation(make_range(high=100.4, low=99.0), m, params(invalidation={"candles_outside_range": 3})).signals == ()


@pytest.mark.parametrize("values, signal, fires", [
    ({"vwap_momentum": 0.25}, "vwap_momentum_high", True),
    ({"vwap_momentum": -0.25}, "vwap_momentum_high", True),
    ({"vwap_momentum": 0.15}, "vwap_momentum_high", False),
    ({"bb_expansion_pct": 60.0}, "bb_width_expansion", True),
    ({"bb_expansion_pct": 40.0}, "bb_width_expansion", False),
    ({"bb_expansion_pct": None}, "bb_width_expansion", False),
    ({"bos": BreakOfStructure("bullish", 100.9, 101.3)}, "m15_bos_confirmed", True),
    ({"bos": BreakOfStructure("bearish", 99.0, 98.7)}, "m15_bos_confirmed", True),
    ({"bos": BreakOfStructure("bullish", 101.5, 101.8)}, "m15_bos_confirmed", False),
])
def test_each_invalidation_signal(values: dict, signal: str, fires: bool) -> None:
    report = invalidation(make_range(101.0, 99.0), _calm_market(**values), params())
    assert (signal in report.signals) is fires
    assert not report.invalidated  # one signal alone does not invalidate


def test_bos_signal_can_be_switched_off() -> None:
    m = _calm_market(bos=BreakOfStructure("bullish", 100.9, 101.3))
    assert invalidation(make_range(), m, params(invalidation={"require_m15_bos": False})).signals == ()


def test_two_signals_invalidate() -> None:
    m = _calm_market(vwap_momentum=0.3, bb_expansion_pct=80.0)
    report = invalidation(make_range(), m, params())
    assert report.signals == ("vwap_momentum_high", "bb_width_expansion") and report.invalidated
    assert len(report.details) == 2
    single = invalidation(make_range(), _calm_market(vwap_momentum=0.3), params(invalidation={"signals_required": 1}))
    assert single.invalidated


# ----------------------------------------------------------------------------------------------
# False range
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, flow, flag, fires", [
    ({"volume_current": 120.0, "volume_avg": 100.0}, None, "volume_increasing", True),
    ({"volume_current": 110.0, "volume_avg": 100.0}, None, "volume_increasing", False),
    ({"vwap_momentum": 0.12}, None, "vwap_momentum_high", True),
    ({"vwap_momentum": -0.08}, None, "vwap_momentum_high", False),
    ({"body_expansion": True, "body_expansion_ratio": 2.0}, None, "candle_body_expansion", True),
    ({}, RangeFlow(cvd_divergence_type="bearish", cvd_divergence_strength=0.7), "cvd_divergence", True),
    ({"candle_divergence": Divergence("bearish", 0.9)}, RangeFlow(cvd_divergence_strength=0.5),
     "cvd_divergence", False),  # real order flow, when given, outranks the candle fallback
    ({"candle_divergence": Divergence("bullish", 0.9)}, None, "cvd_divergence", True),
    ({"candle_divergence": Divergence("bullish", 0.5)}, None, "cvd_divergence", False),
])
def test_each_false_range_flag(values: dict, flow: RangeFlow | None, flag: str, fires: bool) -> None:
    base = dict(volume_current=100.0, volume_avg=100.0, vwap_momentum=0.0, body_expansion=False,
                candle_divergence=None)
    base.update(values)
    m = market(sine_bars(MONDAY, TUESDAY_10), flow=flow, **base)
    report = false_range(m, params())
    assert (flag in report.flags) is fires
    assert not report.is_false


def test_two_red_flags_make_a_false_range() -> None:
    m = market(sine_bars(MONDAY, TUESDAY_10), volume_current=150.0, volume_avg=100.0, vwap_momentum=0.15,
               body_expansion=False, candle_divergence=None)
    report = false_range(m, params())
    assert report.flags == ("volume_increasing", "vwap_momentum_high") and report.is_false
    assert not false_range(m, params(false_range={"red_flags_required": 3})).is_false


# ----------------------------------------------------------------------------------------------
# Nested ranges (informational)
# ----------------------------------------------------------------------------------------------

ZIGZAG = [100, 100.5, 101, 100.5, 100, 99.5, 99, 99.5, 100, 100.5, 101, 100.5, 100, 99.5, 99, 99.5, 100, 100.2]


def zigzag_bars(scale: float, period_s: int) -> Bars:
    rows = [(100 + (p - 100) * scale,) * 4 for p in ZIGZAG]
    return bars_from_rows(MONDAY, [(o, h + 0.01, l - 0.01, c) for o, h, l, c in rows], period_s)


def test_swing_range_is_the_latest_swing_high_and_low() -> None:
    assert swing_range(zigzag_bars(1.0, M15), 3, 3) == (pytest.approx(101.01), pytest.approx(98.99))
    assert swing_range(bars_from_rows(MONDAY, [(100.0, 100.1, 99.9, 100.0)] * 20), 3, 3) is None


def test_nested_alignment_warns_but_never_blocks() -> None:
    m = market(sine_bars(MONDAY, TUESDAY_12))
    assert nested_alignment(m, params()) == ()  # a regular sine: every swing range is the same box
    narrow_h1 = replace(m, inputs=replace(m.inputs, h1=zigzag_bars(0.1, 3600)))
    warnings = nested_alignment(narrow_h1, params())
    assert len(warnings) == 1 and warnings[0].startswith("nested: M15 range 99.68-100.32 not inside H1")


def test_with_signals_returns_the_range_itself_when_it_has_those_signals_already() -> None:
    plain = make_range()
    assert with_signals(plain, Invalidation((), (), False)) is plain
    signalled = with_signals(plain, Invalidation(("vwap_momentum_high",), ("momentum",), False))
    assert signalled is not plain and signalled == replace(plain, invalidation_signals=("vwap_momentum_high",))
    assert with_signals(signalled, Invalidation((), (), False)) == plain


def test_detection_facts_keep_touches_per_touch_bars_and_levels() -> None:
    """The same levels over other touch bars (another day start) are counted again, not taken
    from the levels' first count; the same bars and levels are the kept answer."""
    p = params()
    m15 = aggregate(sine_bars(MONDAY, TUESDAY_12), M15, close_time(sine_bars(MONDAY, TUESDAY_12)).timestamp())
    facts = M15Detection(m15, int(utc(2026, 6, 2, 8).timestamp()), p)
    high, low = float(m15.high.max()), float(m15.low.min())
    whole = Candidate("daily", high, low, facts.daily_bars(int(MONDAY.timestamp())))
    first = facts.edges(whole)
    assert first == range_edges(whole, p) and facts.edges(whole) is first
    later = Candidate("daily", high, low, facts.daily_bars(int(utc(2026, 6, 2).timestamp())))
    assert facts.edges(later) == range_edges(later, p) != first


def test_candidates_refuse_detection_facts_of_other_bars_or_params() -> None:
    """A stale M15Detection (of another M15 window, or other params) would give another range
    without a word: the candidate builders refuse it."""
    m = market(sine_bars(MONDAY, TUESDAY_12))
    p = params()
    own = M15Detection(m.m15, 0, p)
    assert session_candidate(m, p, own) == own.session_candidate
    other_bars = M15Detection(m.m15.tail(len(m.m15) - 1), 0, p)
    other_params = M15Detection(m.m15, 0, params())
    for stale in (other_bars, other_params):
        with pytest.raises(AssertionError, match="other bars or params"):
            session_candidate(m, p, stale)
        with pytest.raises(AssertionError, match="other bars or params"):
            dynamic_candidate(m, p, stale)
