"""Candle and structure patterns on constructed bars (see scenarios.py for the flat base)."""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from config.micro_scalp_model import MicroScalpParams
from engines.micro_scalp_signals import (bb_squeeze, choppy, compression_block, cvd_divergence, engulfing,
                                         equal_highs_lows, in_sessions, increasing_volume, micro_choch,
                                         micro_order_blocks, micro_sweep, volatility_expanding, volume_spike,
                                         vwap_tap_rejection, wick_ratio, wick_trap)
from tests.micro_scalp.scenarios import features, flat_base, path

P = MicroScalpParams()


def test_flat_base_is_what_the_scenarios_assume():
    f = features(flat_base())
    assert f.atr_now == pytest.approx(0.4)
    assert f.vwap_now == pytest.approx(100.1)
    assert len(f.pivot_high) == 0 and len(f.pivot_low) == 0


@pytest.mark.parametrize("bar,expected", [
    ((100.0, 100.15, 99.7, 100.1), "buy"),     # lower wick 0.3 >= 1.5 x body 0.1
    ((100.1, 100.4, 99.95, 100.0), "sell"),    # upper wick 0.3
    ((100.0, 100.1, 99.9, 100.1), None),       # lower wick 0.1 < 0.15
    ((100.0, 100.3, 99.7, 100.0), None),       # doji: zero body never traps
    ((100.0, 100.3, 99.6, 100.1), "buy"),      # both long: the longer (lower 0.4) wins
])
def test_long_wick_trap(bar, expected):
    f = features(flat_base() + [bar])
    assert wick_trap(f, 1.5) == expected


def test_wick_ratio_for_quality_points():
    assert wick_ratio(features(flat_base() + [(100.0, 100.15, 99.7, 100.1)])) == pytest.approx(3.0)
    assert wick_ratio(features(flat_base() + [(100.0, 100.3, 99.7, 100.0)])) == 0.0


def test_strong_engulfing_allows_open_at_previous_close():
    base = flat_base()  # last base bar is bearish: open 100.2, close 100.0
    assert engulfing(features(base + [(100.0, 100.35, 99.95, 100.3)])) == "buy"
    assert engulfing(features(base + [(100.0, 100.25, 99.95, 100.15)])) is None  # does not cover 100.2
    bullish_prev = base[:-1]  # ends with the bullish (100.0 -> 100.2) bar
    assert engulfing(features(bullish_prev + [(100.2, 100.25, 99.85, 99.9)])) == "sell"


def test_vwap_tap_rejection():
    base = flat_base()  # VWAP ~100.1
    tol = 0.05
    assert vwap_tap_rejection(features(base + [(100.0, 100.3, 99.9, 99.95)]), tol, 1.5) == "sell"
    assert vwap_tap_rejection(features(base + [(100.2, 100.25, 99.9, 100.25)]), tol, 1.5) == "buy"
    assert vwap_tap_rejection(features(base + [(99.95, 100.3, 99.9, 100.25)]), tol, 1.5) is None  # no long wick
    # far below the band: no tap at all
    assert vwap_tap_rejection(features(base + [(99.0, 99.2, 98.6, 98.9)]), tol, 1.5) is None


def test_sweep_of_lows_is_a_buy_fade_with_confidence():
    f = features(flat_base() + [(100.0, 100.1, 99.5, 100.05)])
    sweep = micro_sweep(f, P)
    # took the 99.9 lows, closed back above: +0.5 close back, +0.3 wick 0.5 >= 1.5 x 0.05, no volume
    assert (sweep.side, sweep.trade_side, sweep.level, sweep.extreme) == ("low", "buy", 99.9, 99.5)
    assert sweep.bars_ago == 0 and sweep.confidence == pytest.approx(0.8)


def test_sweep_of_highs_is_a_sell_and_volume_adds_confidence():
    volume = [100.0] * 60 + [200.0]
    f = features(flat_base() + [(100.2, 100.7, 100.1, 100.15)], volume=volume)
    sweep = micro_sweep(f, P)
    assert (sweep.side, sweep.trade_side) == ("high", "sell")
    assert sweep.confidence == pytest.approx(1.0)


def test_break_that_closes_beyond_is_not_a_sweep():
    assert micro_sweep(features(flat_base() + [(100.0, 100.1, 99.5, 99.8)]), P) is None


def test_recent_sweep_counts_only_while_the_level_holds():
    sweep_bar = (100.0, 100.1, 99.5, 100.05)
    held = features(flat_base() + [sweep_bar, (100.05, 100.2, 100.0, 100.15)])
    assert micro_sweep(held, P).bars_ago == 1
    lost = features(flat_base() + [sweep_bar, (100.05, 100.1, 99.8, 99.85)])
    assert micro_sweep(lost, P) is None or micro_sweep(lost, P).bars_ago == 0


def test_tiny_break_halves_confidence():
    f = features(flat_base() + [(100.0, 100.1, 99.88, 100.05)])  # break 0.02 < 0.1 ATR
    assert micro_sweep(f, P).confidence == pytest.approx(0.4)


def test_outside_bar_sweeping_both_sides():
    tie = features(flat_base() + [(100.0, 100.5, 99.5, 100.1)])
    assert micro_sweep(tie, P) is None  # both 0.8: ambiguous
    lower = features(flat_base() + [(100.0, 100.5, 99.5, 100.25)])
    assert micro_sweep(lower, P).side == "low"  # lower wick qualifies (0.8), upper does not (0.5)


def test_micro_order_block_impulse_then_pause():
    rows = flat_base() + [(100.0, 100.65, 99.95, 100.6), (100.6, 100.7, 100.5, 100.55)]
    f = features(rows)
    blocks = micro_order_blocks(f, P)
    assert len(blocks) == 1
    block = blocks[0]
    assert (block.side, block.low, block.high) == ("buy", 99.95, 100.7)
    assert block.contains(100.6) and not block.contains(100.75)
    assert block.contains(100.75, tolerance=0.05)
    # the zone (0.75) is taller than 1 ATR: excluded when the cap is 1 ATR
    assert micro_order_blocks(f, MicroScalpParams(ob_zone_max_atr=1.0)) == []


def test_equal_highs_within_tolerance():
    peaks = path([100.6, 101.0, 100.6, 100.2, 100.6, 101.02, 100.6, 100.2, 100.1], 100.2)
    f = features(flat_base() + peaks)
    levels = equal_highs_lows(f, P)
    assert levels.highs == (pytest.approx(101.06),)
    apart = path([100.6, 101.0, 100.6, 100.2, 100.6, 101.3, 100.6, 100.2, 100.1], 100.2)
    assert equal_highs_lows(features(flat_base() + apart), P).highs == ()


DOWN_THEN_BREAK = [100.5, 101, 101.5, 102, 101.5, 101, 100.5, 101, 101.5, 101, 100.5, 100, 100.5, 101, 101.6]


def test_bullish_choch_after_lower_highs_and_lows():
    f = features(flat_base() + path(DOWN_THEN_BREAK, 100.0))
    choch = micro_choch(f, P)
    assert choch is not None and choch.side == "buy" and choch.level == pytest.approx(101.55)
    assert choch.bars_ago == 0


def test_choch_stays_fresh_for_choch_recent_bars_only():
    rows = flat_base() + path(DOWN_THEN_BREAK + [101.7] * 4, 100.0)
    assert micro_choch(features(rows), P).bars_ago == 4
    assert micro_choch(features(rows), MicroScalpParams(choch_recent_bars=4)) is None


def test_no_choch_without_a_down_structure():
    higher_second_peak = [100.5, 101, 101.5, 102, 101.5, 101, 100.5, 101, 101.5, 102.5, 101.5, 101, 100.5, 100,
                          100.5, 101, 102.6]
    assert micro_choch(features(flat_base() + path(higher_second_peak, 100.0)), P) is None


def test_bearish_choch_mirror():
    mirrored = [200 - c for c in DOWN_THEN_BREAK]
    base = [(200 - o, 200 - l, 200 - h, 200 - c) for o, h, l, c in flat_base()]
    choch = micro_choch(features(base + path(mirrored, 100.0)), P)
    assert choch is not None and choch.side == "sell"


def test_compression_block_inside_bars_or_small_ranges():
    inside = flat_base() + [(100.0, 100.5, 99.5, 100.2), (100.2, 100.4, 99.6, 100.1), (100.1, 100.3, 99.7, 100.2)]
    ok, detail = compression_block(features(inside), P, len(inside))
    assert ok and "inside_bars=True" in detail
    assert not compression_block(features(flat_base()), P, 60)[0]  # ranges = 1.0 ATR > 0.75
    small = flat_base() + [(100.1, 100.15, 100.05, 100.1)] * 5
    assert compression_block(features(small), P, 65)[0]


def test_choppy_needs_wicky_bars_and_few_displacement_bars():
    wicky = flat_base() + [(100.0, 100.4, 99.6, 100.05)] * 5
    assert choppy(features(wicky))
    assert not choppy(features(flat_base()))  # wick share exactly 0.5 is not > 0.5
    drives = flat_base() + [(100.0, 100.4, 99.6, 100.05)] * 3 + [(100.0, 100.85, 99.95, 100.8)] * 2
    assert not choppy(features(drives))



def test_choppy_shares_exactly_at_their_thresholds_do_not_count():
    """A displacement bar needs a body share above 0.7 and a wicky bar a wick share above 0.5:
    bars exactly at either share (prices in binary fractions, so the shares are exact) count as
    neither."""
    wicky = (100.0, 100.4, 99.6, 100.05)
    at_70 = (100.0, 101.25, 100.0, 100.875)    # body 0.875 of range 1.25: share exactly 0.7
    over_70 = (100.0, 101.25, 100.0, 100.9375)  # body share 0.75
    at_50 = (100.0, 100.25, 99.75, 100.25)     # wicks 0.25 of range 0.5: share exactly 0.5
    assert choppy(features(flat_base() + [wicky] * 3 + [at_70] * 2))       # no displacement bar
    assert not choppy(features(flat_base() + [wicky] * 3 + [over_70] * 2))  # two displacement bars
    assert not choppy(features(flat_base() + [wicky] * 2 + [at_50] * 3))   # only two wicky bars
    assert choppy(features(flat_base() + [at_50] * 2 + [wicky] * 3))

@pytest.mark.parametrize("wicky,flat,expected", [(3, 2, True), (2, 3, False)])
def test_choppy_counts_bars_without_range_as_neither(wicky, flat, expected):
    """A bar without range has NaN shares: neither mostly wick nor a displacement bar (the
    counting compares NaN as False, as the shares' definition says)."""
    rows = flat_base() + [(100.0, 100.4, 99.6, 100.05)] * wicky + [(100.0, 100.0, 100.0, 100.0)] * flat
    assert choppy(features(rows)) is expected


def test_volume_rules_and_missing_volume():
    rows = flat_base()
    assert volume_spike(features(rows, volume=[100.0] * 59 + [130.0]), P)
    assert not volume_spike(features(rows, volume=[100.0] * 59 + [129.0]), P)
    assert increasing_volume(features(rows, volume=[100.0] * 59 + [121.0]), P)
    assert not increasing_volume(features(rows, volume=[100.0] * 59 + [120.0]), P)
    assert not volume_spike(features(rows, volume=[0.0] * 60), P)
    assert not increasing_volume(features(rows, volume=[0.0] * 60), P)


def test_volatility_expanding_compares_two_five_bar_windows():
    expanding = flat_base() + [(100.0, 100.5, 99.5, 100.2)] * 5  # TR 1.0 vs 0.4
    assert volatility_expanding(features(expanding))
    assert not volatility_expanding(features(flat_base()))


def test_bollinger_squeeze_relative_to_its_own_width():
    wide = path([100.5 if i % 2 else 99.5 for i in range(40)], 100.0)
    narrow = path([100.05 if i % 2 else 99.95 for i in range(8)], 99.5)
    squeezed, ratio = bb_squeeze(features(wide + narrow), P)
    assert squeezed and ratio < 0.9
    assert bb_squeeze(features(wide), P)[0] is False


@pytest.mark.parametrize("hour,expected", [(7, False), (8, True), (20, True), (21, False)])
def test_sessions_half_open_hours(hour, expected):
    assert in_sessions(datetime(2024, 1, 2, hour, 30, tzinfo=timezone.utc), [(8, 21)]) is expected


def test_sessions_wrapping_midnight():
    sessions = [(22, 2)]
    assert in_sessions(datetime(2024, 1, 2, 23, tzinfo=timezone.utc), sessions)
    assert in_sessions(datetime(2024, 1, 2, 1, tzinfo=timezone.utc), sessions)
    assert not in_sessions(datetime(2024, 1, 2, 2, tzinfo=timezone.utc), sessions)


def test_cvd_divergence_reads_objects_and_mappings():
    assert cvd_divergence(None) is None
    assert cvd_divergence({"divergence": "bullish"}) == "buy"
    assert cvd_divergence(SimpleNamespace(divergence="bearish", cvd_slope=1.0)) == "sell"
    assert cvd_divergence(SimpleNamespace(divergence=True, cvd_slope=2.5)) == "buy"
    assert cvd_divergence({"divergence": True, "cvd_slope": -0.1}) == "sell"
    assert cvd_divergence({"divergence": False, "cvd_slope": 3.0}) is None
    assert cvd_divergence({"divergence": True}) is None
