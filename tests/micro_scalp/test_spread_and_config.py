"""Rolling spread tracker, and the micro_scalp.json model (shipped file, ranges, cross-field rules)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.micro_scalp_model import MicroScalpConfig, MicroScalpParams
from engines.spread import SpreadStats, SpreadTracker

REPO = Path(__file__).resolve().parents[2]


def test_tracker_median_mean_and_window():
    tracker = SpreadTracker(window=5)
    for spread in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        assert tracker.add_quote(100.0, 100.0 + spread)
    stats = tracker.stats()
    assert stats.samples == 5  # the oldest (0.1) fell out of the window
    assert stats.median == pytest.approx(0.4) and stats.mean == pytest.approx(0.4)
    assert stats.current == pytest.approx(0.6)


def test_stats_stay_a_frozen_value_with_their_fast_init():
    stats = SpreadStats(0.3, 0.2, 0.25, 4)
    assert stats == SpreadStats(current=0.3, median=0.2, mean=0.25, samples=4)
    assert dataclasses.replace(stats, samples=5).samples == 5 and stats.ratio_to_median == pytest.approx(1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.median = 1.0  # type: ignore[misc]


def test_tracker_stats_follow_every_accepted_quote():
    tracker = SpreadTracker(window=3)
    seen = []
    for spread in (0.3, 0.1, 0.2, 0.5):
        tracker.add_quote(100.0, 100.0 + spread)
        assert tracker.stats() is tracker.stats()  # read twice, summarised once
        seen.append(tracker.stats())
    assert [s.samples for s in seen] == [1, 2, 3, 3]
    assert seen[-1].current == pytest.approx(0.5) and seen[-1].median == pytest.approx(0.2)
    assert not tracker.add_quote(100.0, 99.0) and tracker.stats() is seen[-1]  # a rejected quote changes nothing


def test_tracker_rejects_crossed_locked_and_nan_quotes():
    tracker = SpreadTracker()
    assert not tracker.add_quote(100.0, 100.0)
    assert not tracker.add_quote(100.0, 99.9)
    assert not tracker.add_quote(float("nan"), 100.0)
    assert tracker.rejected == 3 and tracker.stats() is None


def test_acceptable_applies_absolute_cap_and_median_multiple():
    tracker = SpreadTracker()
    for _ in range(20):
        tracker.add_quote(2000.0, 2000.2)  # 0.2 spread = 0.01 %
    ok = tracker.is_acceptable(2000.0, 2000.3, max_spread_pct=0.02, max_median_ratio=2.0, min_samples=20)
    assert ok.ok and "1.50x median" in ok.reason
    wide = tracker.is_acceptable(2000.0, 2000.5, max_spread_pct=0.05, max_median_ratio=2.0, min_samples=20)
    assert not wide.ok and "2.50x median > 2.0x" in wide.reason
    capped = tracker.is_acceptable(2000.0, 2001.0, max_spread_pct=0.02, max_median_ratio=None)
    assert not capped.ok and "> cap 0.02%" in capped.reason


def test_median_check_waits_for_enough_samples():
    tracker = SpreadTracker()
    tracker.add_quote(100.0, 100.01)
    verdict = tracker.is_acceptable(100.0, 100.05, max_spread_pct=0.1, max_median_ratio=2.0, min_samples=20)
    assert verdict.ok and "needs 20 samples, have 1" in verdict.reason


def test_shipped_config_validates_with_three_symbols():
    config = MicroScalpConfig.model_validate(json.loads((REPO / "config" / "micro_scalp.json").read_text()))
    assert set(config.symbols) == {"XAUUSD", "BTCUSD", "EURUSD"}
    assert config.enabled and config.interval_seconds == 5
    btc, xau, eur = (config.for_symbol(s) for s in ("BTCUSD", "XAUUSD", "EURUSD"))
    assert btc.stop_unit == "pct" and btc.vwap_tolerance_mode == "atr"
    assert xau.stop_unit == "atr" and xau.vwap_tolerance_mode == "fixed_pct"
    assert xau.vwap_anchor_hour_utc == 22 and btc.vwap_anchor_hour_utc == 0
    assert eur.atr1_min_pct < xau.atr1_min_pct


@pytest.mark.parametrize("overrides,message", [
    ({"min_score": 8, "aplus_score": 7}, r"aplus_score \(7.0\) must be >= min_score"),
    ({"ob_zone_min_atr": 3, "ob_zone_max_atr": 1}, "ob_zone_min_atr must be < ob_zone_max_atr"),
    ({"edge_sl": 2, "edge_tp": 1}, "edge_tp / edge_sl is below min_reward_risk"),
    ({"min_bars": 40, "range_lookback": 80}, r"min_bars \(40\) is smaller than range_lookback"),
    ({"active_sessions_utc": [[8, 8]]}, "active_sessions_utc entry"),
    ({"stop_unit": "dollars"}, "stop_unit"),
    ({"atr1_min_pct": -1}, "atr1_min_pct"),
    ({"sl_range": [0.5, 1.2]}, "sl_range"),  # the original's dollar keys are not accepted
])
def test_bad_params_are_refused_with_the_key(overrides, message):
    with pytest.raises(ValidationError, match=message):
        MicroScalpParams(**overrides)


def test_symbol_override_is_validated_merged_with_defaults():
    # the override alone is valid (7 >= the model default 6) but not on top of these defaults
    raw = {"symbols": ["XAUUSD"], "defaults": {"min_score": 8.0, "aplus_score": 9.0},
           "overrides": {"XAUUSD": {"aplus_score": 7.0}}}
    with pytest.raises(ValidationError, match=r"overrides.XAUUSD merged with defaults is invalid: .*aplus_score \(7.0\) must be >= min_score \(8.0\)"):
        MicroScalpConfig.model_validate(raw)
