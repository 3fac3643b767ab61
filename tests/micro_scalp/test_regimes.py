"""The three regime detectors on constructed sequences, with the intended formulas."""
from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from config.micro_scalp_model import MicroScalpParams
from engines.micro_scalp_features import Bars, SeriesMemo, compute_features
from engines.micro_scalp_regimes import (atr_ratio, count_respects, detect_all, detect_balanced, detect_range,
                                         detect_vwap_reversion, find_range, vwap_slope_atr)
from tests.micro_scalp.scenarios import features, flat_base, oscillation, path

P = MicroScalpParams()
DROP = (100.0, 100.05, 99.6, 99.7)      # one bar 0.4 below a VWAP of 100.1 whose band is ~0.05 wide
WIDE = path([100.5 if i % 2 else 99.5 for i in range(50)], 100.0)
NARROW = path([100.3, 99.7, 100.2, 99.8, 100.1, 99.9, 100.05, 99.95, 100.02, 99.98], 99.5)
TREND = path([100 + 0.3 * i for i in range(1, 60)], 100.0)


def test_vwap_reversion_stretched_flat_stable_scores_80():
    score = detect_vwap_reversion(features(flat_base() + [DROP]), P)
    # +40 sigma (~7.6 >= 2), +0 volume, +20 slope flat, +20 ATR stable (0.4036/0.4)
    assert score.confidence == 80 and score.detected
    assert any("flat=True" in d for d in score.details) and any("stable=True" in d for d in score.details)


def test_vwap_reversion_volume_spike_adds_20():
    score = detect_vwap_reversion(features(flat_base() + [DROP], volume=[100.0] * 60 + [200.0]), P)
    assert score.confidence == 100


def test_vwap_reversion_gate_at_the_vwap():
    score = detect_vwap_reversion(features(flat_base(), bid=100.1), P)
    assert score.confidence == 0 and not score.detected and "gate: not stretched" in score.details[-1]


def test_vwap_reversion_trend_is_not_flat():
    score = detect_vwap_reversion(features(TREND), P)
    slope = vwap_slope_atr(features(TREND), P)
    # the VWAP climbs ~0.75 ATR per 5 bars; sigma < 2 so only the % gate admits it: 0 + 0 + 20 stable
    assert slope > P.vwap_max_slope_atr
    assert score.confidence == 20 and not score.detected


def test_vwap_slope_is_undefined_across_a_session_reset():
    start = datetime(2024, 3, 5, 23, 8, tzinfo=timezone.utc)  # 00:00 is bar 52 of 60
    f = features(flat_base(), start=start)
    assert f.vwap_session_start == 52
    assert vwap_slope_atr(f, P) is None
    assert abs(vwap_slope_atr(features(flat_base()), P)) < 1e-3  # alternating bars: VWAP barely moves


def test_atr_comparison_needs_complete_windows():
    assert atr_ratio(features(flat_base(27)), P) is None   # ATR(14) 14 bars earlier does not exist yet
    assert atr_ratio(features(flat_base(28)), P) == pytest.approx(1.0)


def test_range_regime_on_a_textbook_range():
    score = detect_range(features(flat_base(20) + oscillation(3)), P)
    # 98.9..101.1 is 3.8 ATR wide, price inside: +30; 6 rejected touches on both edges: +30;
    # Bollinger width not contracting: +0; oscillation has no trend, ADX ~15 < 25: +20
    assert score.confidence == 80 and score.detected
    assert score.range.high == pytest.approx(101.1) and score.range.low == pytest.approx(98.9)
    assert score.range.respects == 6


def test_range_regime_rejects_trend_and_too_wide_or_narrow_ranges():
    assert detect_range(features(TREND), P).confidence == 0
    textbook = features(flat_base(20) + oscillation(3))
    too_narrow = detect_range(textbook, MicroScalpParams(range_min_width_atr=5, range_max_width_atr=12))
    assert too_narrow.confidence == 0 and "gate: width outside" in too_narrow.details[-1]


def test_range_regime_needs_price_inside():
    rows = flat_base(20) + oscillation(3)
    broken = features(rows, bid=102.0)
    assert detect_range(broken, P).details[-1] == "gate: price outside the range"


def test_range_respects_require_both_edges():
    score = detect_range(features(flat_base(20) + oscillation(3)), MicroScalpParams(range_min_respects=7))
    assert score.confidence == 50  # respects 6 < 7 loses its 30 points


def test_balanced_zone_on_a_contracting_market():
    score = detect_balanced(features(WIDE + NARROW), P)
    # +30 Bollinger squeeze, +30 compression (5-bar ranges 0.29 ATR), +20 ATR dropping (0.66x),
    # +0 choppy, +10 equilibrium (EMA ~ VWAP)
    assert score.confidence == 90 and score.detected


def test_balanced_zone_absent_in_steady_oscillation():
    score = detect_balanced(features(WIDE), P)
    assert score.confidence == 10 and not score.detected  # only the equilibrium leg


def test_detect_all_reports_every_regime_with_numbers():
    scores = detect_all(features(flat_base() + [DROP]), P)
    assert set(scores) == {"vwap_reversion", "range_scalp", "balanced_zone"}
    text = scores["vwap_reversion"].describe()
    assert text.startswith("regime vwap_reversion: 80/70 detected") and "sigma 7.5" in text


def _respects_by_definition(high: list[float], low: list[float], top: float, bottom: float, tol: float,
                            first: int, n: int) -> int:
    """count_respects as first written: every consecutive pair of bars in the window, one pass."""
    h, l = high[first:n], low[first:n]
    tops = bottoms = 0
    was_top = was_bottom = False
    for high_i, low_i, high_next, low_next in zip(h, l, h[1:], l[1:]):
        is_top = high_i >= top - tol and low_next < low_i
        is_bottom = low_i <= bottom + tol and high_next > high_i
        tops += is_top and not was_top
        bottoms += is_bottom and not was_bottom
        was_top, was_bottom = is_top, is_bottom
    return 0 if tops == 0 or bottoms == 0 else tops + bottoms


def test_count_respects_kept_between_evaluations_matches_the_definition():
    """The memo keeps the touches while the levels stay the same: a growing window with levels
    that hold for a while and then change gives the one-pass count at every bar."""
    rng = random.Random(7)
    closes = [100.0]
    for _ in range(299):
        closes.append(closes[-1] + rng.choice((-0.3, -0.1, 0.1, 0.3)))
    rows = path(closes, 100.0)
    memo = SeriesMemo()
    checked = 0
    for n in range(60, len(rows)):
        bars = features(rows[:n]).bars
        data = Bars(*(column.copy() for column in (bars.time_s, bars.open, bars.high, bars.low, bars.close,
                                                   bars.volume)))
        memo.begin(data)
        kept = compute_features(data, 100.0, 100.1, P, memo)
        fresh = compute_features(data, 100.0, 100.1, P)
        high, low = data.high.tolist(), data.low.tolist()
        for start in (n - P.range_lookback, n - 20):
            top = max(high[start:n]) if n % 17 else max(high[start:n]) + 0.05  # some level changes
            bottom = min(low[start:n])
            expected = _respects_by_definition(high, low, top, bottom, P.range_respect_tolerance * (top - bottom),
                                               start, n)
            assert count_respects(kept, top, bottom, P, start) == expected, n
            assert count_respects(fresh, top, bottom, P, start) == expected, n
            checked += expected > 0
    assert checked > 50


def _random_walk(seed: int, count: int = 300) -> list:
    rng = random.Random(seed)
    closes = [100.0]
    for _ in range(count - 1):
        closes.append(closes[-1] + rng.choice((-0.3, -0.1, 0.1, 0.3)))
    return path(closes, 100.0)


def test_find_range_kept_between_evaluations_matches_a_fresh_one():
    """find_range keeps the pivot extremes while the same pivots are inside the window (and the
    edge touches): a growing window, sometimes skipping bars, gives a fresh evaluation's range."""
    rows = _random_walk(11)
    memo = SeriesMemo()
    n, changes, last = 60, 0, None
    rng = random.Random(3)
    while n <= len(rows):
        bars = features(rows[:n]).bars
        memo.begin(bars)
        kept = find_range(compute_features(bars, 100.0, 100.1, P, memo), P)
        fresh = find_range(compute_features(bars, 100.0, 100.1, P), P)
        assert kept == fresh, n
        changes += kept is not None and last is not None and (kept.high, kept.low) != (last.high, last.low)
        last = kept
        n += rng.choice((1, 1, 1, 2, 5))
    assert changes > 10  # the extremes moved (pivots left and entered the window) many times


@pytest.mark.parametrize("left,right", [(3, 3), (2, 2), (4, 1)])
def test_range_pivots_read_with_the_core_are_the_pivots_find_range_asks_for(left, right):
    """``Features.range_pivot_high/low`` (read with the core series) are ``pivots(range_pivot_left,
    range_pivot_right)`` of the same bars, through a growing memo too, whether or not they are the
    micro pivots' parameters."""
    params = MicroScalpParams(range_pivot_left=left, range_pivot_right=right)
    rows = _random_walk(5)
    memo = SeriesMemo()
    for n in range(60, len(rows), 7):
        bars = features(rows[:n]).bars
        memo.begin(bars)
        kept = compute_features(bars, 100.0, 100.1, params, memo)
        fresh = compute_features(bars, 100.0, 100.1, params)
        assert (kept.range_pivot_high, kept.range_pivot_low) == fresh.pivots(left, right), n
