"""The four strategy checkers (Layers 2-4 and stops), pass and fail, on constructed sequences.

Numbers quoted in comments are worked out from scenarios.py: the flat base has ATR 0.4, VWAP 100.1.
"""
from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from config.micro_scalp_model import MicroScalpParams
from engines.micro_scalp_checkers import (Context, Trace, check_balanced, check_edge, check_range,
                                          check_vwap_reversion, layer1)
from engines.micro_scalp_regimes import detect_all
from engines.spread import SpreadStats
from tests.micro_scalp.scenarios import features, flat_base, oscillation, path

P = MicroScalpParams()
NOW = datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)      # inside the 08-21 UTC active session
NIGHT = datetime(2024, 3, 5, 3, 0, tzinfo=timezone.utc)

# flat base then a bar sweeping the 99.9 lows to 99.45 and closing back at 100.05 (long lower wick)
EDGE_ROWS = flat_base() + [(100.0, 100.1, 99.45, 100.05)]
# flat base then a stretched bar 0.35 under VWAP with a long lower wick, on doubled volume
VWAP_ROWS = flat_base() + [(100.0, 100.05, 99.3, 99.75)]
VWAP_VOLUME = [100.0] * 60 + [200.0]
# a 98.9..101.1 range, ending at its low; then a sweep of the lows and a follow-through bar
RANGE_ROWS = flat_base(20) + oscillation(3) + [(99.0, 99.1, 98.6, 99.0), (99.0, 99.2, 98.95, 99.15)]
# a wide alternating market, then a 99.75..100.25 box with equal highs and lows
WIDE = path([100.5 if i % 2 else 99.5 for i in range(50)], 100.0)
BOX = oscillation(3, low=99.8, high=100.2, step=0.2, wick=0.05, start=99.8)
FADE_BAR = (100.1, 100.24, 100.05, 100.06)        # upper-wick rejection near the box top
BREAKOUT_BAR = (100.0, 100.6, 99.98, 100.55)       # closes above the 3-bar box


def run(checker, f, p=P, now=NOW, flow=None, stops_level=0.0):
    return checker(Context(f, p, now, flow, detect_all(f, p), stops_level), Trace())


def reason(outcome, prefix: str) -> str:
    return next(r for r in outcome.reasons if r.startswith(prefix))


# ----------------------------------------------------------------------------------------------
# edge-based
# ----------------------------------------------------------------------------------------------

def edge_features(p=P):
    return features(EDGE_ROWS, p, bid=100.04, ask=100.06)


def test_edge_passes_with_worked_out_score_and_stops():
    f = edge_features()
    outcome = run(check_edge, f)
    assert outcome.passed and outcome.failed is None and outcome.side == "buy"
    # location: VWAP band (|100.05 - 100.096| = 0.046 <= 0.05 % of VWAP) and the bearish order
    # block formed by the last base bar and the small-bodied sweep bar; no range edge
    assert "tags ['VWAP_BAND', 'OB_ZONE']" in reason(outcome, "L2.location: pass")
    assert "from sweep: lows swept at 99.9" in reason(outcome, "L3.direction")
    assert "LONG_WICK_TRAP(buy), MICRO_LIQUIDITY_SWEEP(buy)" in reason(outcome, "L3.primary: pass")
    assert "SESSION_MOMENTUM" in reason(outcome, "L3.secondary: pass")
    # wick 2 (0.55/0.05) + vwap 1 (outside half band) + edges 2 + volatility 1 + session 1 = 7/8
    assert outcome.score == pytest.approx(8.75) and outcome.aplus
    atr = 0.4 + (0.65 - 0.4) / 14  # the sweep bar's true range is 0.65
    assert f.atr_now == pytest.approx(atr)
    assert outcome.entry == 100.06  # the ask
    assert outcome.sl == pytest.approx(100.06 - atr) and outcome.tp == pytest.approx(100.06 + 2 * atr)


def test_edge_fails_location_away_from_every_edge():
    f = features(flat_base(), bid=100.17, ask=100.19)  # 0.08 above VWAP, 0.12 under the highs
    outcome = run(check_edge, f)
    assert not outcome.passed and outcome.failed == "L2.location"
    assert "tags none" in outcome.reasons[0]


def test_edge_fails_primary_without_a_candle_signal():
    f = features(flat_base(), bid=100.07, ask=100.09)  # in the band, below VWAP -> buy
    outcome = run(check_edge, f)
    assert outcome.failed == "L3.primary" and outcome.side == "buy"


def test_edge_ignores_signals_against_the_direction():
    # a bearish long-upper-wick bar while price sits below VWAP (direction buy) is not a primary
    rows = flat_base() + [(100.05, 100.3, 99.95, 100.0)]
    outcome = run(check_edge, features(rows, bid=100.0, ask=100.0))
    assert outcome.failed == "L3.primary"
    assert "seen LONG_WICK_TRAP(sell)" in reason(outcome, "L3.primary")


def test_edge_fails_secondary_outside_the_session():
    outcome = run(check_edge, edge_features(), now=NIGHT)
    assert outcome.failed == "L3.secondary"


def test_edge_secondary_from_cvd_divergence_when_flow_exists():
    outcome = run(check_edge, edge_features(), now=NIGHT, flow={"divergence": "bullish"},
                  p=MicroScalpParams(min_score=5.0))
    assert outcome.passed and "CVD_DIVERGENCE" in reason(outcome, "L3.secondary")


def test_edge_fails_score_below_threshold():
    outcome = run(check_edge, edge_features(), p=MicroScalpParams(min_score=9.0, aplus_score=9.5))
    assert outcome.failed == "L4.score" and outcome.score == pytest.approx(8.75)
    assert "7/8 = 8.75/10 >= 9.0" in reason(outcome, "L4.score")


@pytest.mark.parametrize("overrides,in_band", [
    ({"vwap_tolerance_mode": "fixed_pct", "vwap_tolerance_pct": 0.05}, True),    # 0.0500 >= 0.0462
    ({"vwap_tolerance_mode": "fixed_pct", "vwap_tolerance_pct": 0.04}, False),   # 0.0400
    ({"vwap_tolerance_mode": "atr", "vwap_tolerance_atr": 0.15}, True),          # 0.0627
    ({"vwap_tolerance_mode": "atr", "vwap_tolerance_atr": 0.10}, False),         # 0.0418
])
def test_vwap_band_tolerance_fixed_or_atr_scaled(overrides, in_band):
    p = MicroScalpParams(**overrides)
    outcome = run(check_edge, edge_features(p), p=p)
    location = reason(outcome, "L2.location")
    assert ("VWAP_BAND" in location) is in_band
    assert outcome.passed  # the order block keeps it located either way


def test_edge_stops_in_percent_of_price():
    p = MicroScalpParams(stop_unit="pct", edge_sl=0.1, edge_tp=0.25)
    outcome = run(check_edge, edge_features(p), p=p)
    assert outcome.sl == pytest.approx(100.06 * (1 - 0.001))
    assert outcome.tp == pytest.approx(100.06 * (1 + 0.0025))


def test_stops_pushed_outside_the_broker_stops_level():
    # a 0.6 minimum distance exceeds the ATR-sized SL (0.418): SL pushed to 0.6 x 1.05
    outcome = run(check_edge, edge_features(), stops_level=0.6)
    assert outcome.passed
    assert outcome.entry - outcome.sl == pytest.approx(0.63)
    assert outcome.tp - outcome.entry == pytest.approx(2 * edge_features().atr_now)
    assert "pushed sl" in reason(outcome, "stops.min_distance")


def test_stops_push_can_break_reward_risk():
    outcome = run(check_edge, edge_features(), stops_level=1.0)  # both pushed to 1.05: R:R 1.0
    assert outcome.passed and outcome.meta["reward_risk"] == pytest.approx(1.0)
    strict_params = MicroScalpParams(min_reward_risk=1.5, edge_tp=3.0, vwap_tp=1.5, balanced_tp_r=1.5)
    strict = run(check_edge, edge_features(), p=strict_params, stops_level=1.0)
    assert strict.failed == "stops.reward_risk"


# ----------------------------------------------------------------------------------------------
# VWAP reversion
# ----------------------------------------------------------------------------------------------

def vwap_features(volume=VWAP_VOLUME, bid=99.74, ask=99.76):
    return features(VWAP_ROWS, volume=volume, bid=bid, ask=ask)


def test_vwap_reversion_passes_toward_vwap():
    f = vwap_features()
    outcome = run(check_vwap_reversion, f)
    assert outcome.passed and outcome.side == "buy" and outcome.entry == 99.76
    assert "['LONG_WICK_TRAP']" in reason(outcome, "L3.primary")      # lower wick 0.45 >= 1.5 x 0.25
    assert "['VOLUME_CONFIRMED']" in reason(outcome, "L3.secondary")  # 200 >= 1.3 x 100
    # deviation 2.0x2 (sigma >= 2.5) + primary 1.0x2 + volume 2.0x2 + slope 1 + absorption 0 = 11
    assert outcome.score == pytest.approx(10 * 11 / 14) and not outcome.aplus
    assert outcome.sl == pytest.approx(99.76 - f.atr_now) and outcome.tp == pytest.approx(99.76 + 1.5 * f.atr_now)


def test_vwap_reversion_fails_location_near_vwap():
    outcome = run(check_vwap_reversion, features(flat_base(), bid=100.09, ask=100.11))
    assert outcome.failed == "L2.location"


def test_vwap_reversion_fails_location_when_vwap_trends():
    trend = path([100 + 0.3 * i for i in range(1, 60)], 100.0)
    outcome = run(check_vwap_reversion, features(trend))
    assert outcome.failed == "L2.location" and "flat=False" in outcome.reasons[0]


def test_vwap_reversion_fails_secondary_without_volume_or_absorption():
    outcome = run(check_vwap_reversion, vwap_features(volume=None))
    assert outcome.failed == "L3.secondary"


def test_vwap_reversion_choch_at_extreme_with_order_flow_secondary():
    # a low-volume slide far below a VWAP anchored by 120 flat bars: lower highs (99.15, 98.85) and
    # lower lows (98.15, 97.85), then a close at 98.9 above the last pivot high 98.85 = bullish CHOCH
    slide = [99.5, 99.0, 98.5, 98.8, 99.1, 98.8, 98.5, 98.2, 98.5, 98.8, 98.5, 98.2, 97.9, 98.2, 98.5, 98.9]
    f = features(flat_base(120) + path(slide, 100.0), volume=[100.0] * 120 + [10.0] * 16)
    without_flow = run(check_vwap_reversion, f)
    assert without_flow.failed == "L3.secondary"  # no spike, no absorption wick, no order flow
    outcome = run(check_vwap_reversion, f, flow={"divergence": "bullish", "cvd_slope": 1.0})
    assert outcome.passed and outcome.side == "buy"
    assert "['CHOCH_AT_EXTREME']" in reason(outcome, "L3.primary")
    assert "['CVD_DIVERGENCE']" in reason(outcome, "L3.secondary")
    # deviation 2.0x2 + CHOCH 2.0x2 + volume 0 + slope 1 = 9/14
    assert outcome.score == pytest.approx(10 * 9 / 14)


# ----------------------------------------------------------------------------------------------
# range scalp
# ----------------------------------------------------------------------------------------------

def test_range_passes_on_a_swept_low():
    f = features(RANGE_ROWS, bid=99.14, ask=99.16)
    outcome = run(check_range, f)
    assert outcome.passed and outcome.side == "buy" and outcome.entry == 99.16
    assert "regime swing range 98.9-101.1 position 0.11 edge low" in reason(outcome, "L2.location")
    assert "lows swept at 98.9 (extreme 98.6, 1 bars ago" in reason(outcome, "L3.primary")
    assert "FOLLOW_THROUGH" in reason(outcome, "L3.secondary")
    # proximity 1x2 (0.11 > 0.05) + sweep quality 2x2 + respects(6) 2x2 = 10/14
    assert outcome.score == pytest.approx(10 * 10 / 14)
    assert outcome.sl == pytest.approx(98.6 - 0.25 * f.atr_now)
    assert outcome.tp == pytest.approx(100.0) and outcome.meta["tp2"] == pytest.approx(101.1)


def test_range_fails_location_mid_range():
    rows = flat_base(20) + oscillation(3)[:-3]  # ends at 100.2, the middle of 98.9..101.1
    assert run(check_range, features(rows)).failed == "L2.location"


def test_range_fails_primary_without_a_sweep():
    rows = flat_base(20) + oscillation(3)  # at the low edge, but nothing swept
    outcome = run(check_range, features(rows))
    assert outcome.failed == "L3.primary" and outcome.side == "buy"


def test_range_fails_secondary_without_confirmation():
    rows = RANGE_ROWS[:-1]  # the sweep bar is the last bar: no follow-through yet, no CHOCH
    outcome = run(check_range, features(rows, bid=99.0, ask=99.0))
    assert outcome.failed == "L3.secondary"


# ----------------------------------------------------------------------------------------------
# balanced zone
# ----------------------------------------------------------------------------------------------

def test_balanced_fade_at_the_box_top():
    f = features(WIDE + BOX + [FADE_BAR], bid=100.05, ask=100.07)
    outcome = run(check_balanced, f)
    assert outcome.passed and outcome.side == "sell" and outcome.entry == 100.05
    location = reason(outcome, "L2.location")
    assert "equal highs 1 lows 1" in location and "; fade;" in location
    assert "FADE_EXTREME_WICK" in reason(outcome, "L3.primary")
    # compression 2x2 + both equal levels 2x2 + alignment 2x2 + fade 1 = 13/14
    assert outcome.score == pytest.approx(10 * 13 / 14) and outcome.aplus
    risk = f.atr_now
    assert outcome.sl == pytest.approx(100.05 + risk) and outcome.tp == pytest.approx(100.05 - 1.25 * risk)


def test_balanced_breakout_above_the_box():
    outcome = run(check_balanced, features(WIDE + BOX + [BREAKOUT_BAR], bid=100.54, ask=100.56))
    assert outcome.passed and outcome.side == "buy" and outcome.meta["entry_type"] == "breakout"
    assert outcome.sl == pytest.approx(99.75)  # the box low (3 bars before the breakout)
    assert outcome.tp == pytest.approx(100.56 + 1.25 * (100.56 - 99.75))


def test_balanced_fails_location_without_equal_highs_or_lows():
    narrow = path([100.3, 99.7, 100.2, 99.8, 100.1, 99.9, 100.05, 99.95, 100.02, 99.98], 99.5)
    outcome = run(check_balanced, features(WIDE + narrow))
    assert outcome.failed == "L2.location" and "equal highs 0 lows 0" in outcome.reasons[0]


def test_balanced_fade_needs_equilibrium():
    outcome = run(check_balanced, features(WIDE + BOX + [FADE_BAR]), p=MicroScalpParams(equilibrium_max_atr=0.001))
    assert outcome.failed == "L2.location"


def test_balanced_fade_fails_primary_without_rejection():
    plain = (100.0, 100.15, 99.95, 100.1)
    outcome = run(check_balanced, features(WIDE + BOX + [plain]))
    assert outcome.failed == "L3.primary"


# ----------------------------------------------------------------------------------------------
# quiet mode (Trace(explain=False)): the same outcome, only the failing gate's reason
# ----------------------------------------------------------------------------------------------

def _walk_windows():
    """Windows over a random walk that visits every gate of the edge and range checkers."""
    rng = random.Random(5)
    closes = [100.0]
    for _ in range(399):
        closes.append(closes[-1] + rng.choice((-0.3, -0.1, 0.0, 0.1, 0.3)))
    rows = path(closes, 100.0, wick=0.12)
    for n in range(60, len(rows)):
        yield features(rows[:n], bid=closes[n - 1] - 0.01, ask=closes[n - 1] + 0.01)


@pytest.mark.parametrize("checker", [check_edge, check_range])
def test_quiet_checks_equal_explaining_ones(checker):
    """Quiet mode skips what only a kept reason needs (the edge check's liquidity clusters once
    another tag located the price, until the score needs them; layer 1's gate records)."""
    waited = 0
    for f in _walk_windows():
        ctx = Context(f, P, NOW, None, detect_all(f, P), 0.0)
        loud, quiet = checker(ctx, Trace()), checker(ctx, Trace(explain=False))
        assert (quiet.passed, quiet.failed, quiet.side, quiet.score, quiet.entry, quiet.sl, quiet.tp, quiet.meta) == \
               (loud.passed, loud.failed, loud.side, loud.score, loud.entry, loud.sl, loud.tp, loud.meta)
        # the quiet reason may be a LazyText (formatted when read): its text is the loud one
        assert tuple(map(str, quiet.reasons)) == (tuple(r for r in loud.reasons if r.startswith(f"{loud.failed}:"))[:1]
                                                  if loud.failed else ())
        located = next((r for r in loud.reasons if r.startswith("L2.location: pass tags [")), "")
        scored = any(r.startswith("L4.score") for r in loud.reasons)
        waited += scored and "LIQUIDITY_CLUSTER" in located and "', '" in located  # and another tag
    assert checker is check_range or waited > 0  # the quiet check added the clusters only for the score


@pytest.mark.parametrize("stats, failed", [
    (None, None),
    (SpreadStats(0.02, 0.004, 0.02, 50), "L1.spread_median"),   # 5x the median: the median check fails
    (SpreadStats(0.02, 0.02, 0.02, 50), None),
    (SpreadStats(0.02, 0.004, 0.02, 5), None),                   # too few samples: not checked
    (SpreadStats(0.02, float("nan"), 0.02, 50), None),           # no median to compare with: not checked
    (SpreadStats(0.02, 0.0, 0.02, 50), None),
])
def test_quiet_layer1_equals_the_explaining_one(stats, failed):
    f = features(EDGE_ROWS, bid=100.04, ask=100.06)
    loud, quiet = Trace(), Trace(explain=False)
    assert layer1(f, P, stats, loud) == layer1(f, P, stats, quiet) == (failed is None)
    assert loud.failed == quiet.failed == failed
    assert list(map(str, quiet.reasons)) == [r for r in loud.reasons if r.startswith(f"{failed}:")][:1]  # LazyText
