"""Scoring components, ADX-regime weights (explicit for every strategy) and buy/sell conflicts."""
from __future__ import annotations

import pytest

from config.range_scalp_model import STRATEGY_NAMES
from engines.range_data import RangeFlow
from engines.range_scorer import ScoredSetup, flow_points, mtf_points, resolve_conflicts, score_setup
from engines.range_strategies import Setup, Signal
from tests.range_scalp.helpers import MONDAY, market, params, sine_bars

N = 24 * 12 + 10 * 12


def setup(strategy: str = "vwap_reversion", side: str = "buy", confidence: int = 57) -> Setup:
    entry = 100.0
    sign = 1 if side == "buy" else -1
    return Setup(Signal(strategy, side, confidence, "t"), entry, entry - sign * 0.3, entry + sign * 0.36, 1.2, 0.3)


def scored(strategy: str, side: str, total: float, weight: float) -> ScoredSetup:
    return ScoredSetup(setup(strategy, side), total, 0.0, 0.0, 0.0, weight)


@pytest.mark.parametrize("directions, side, points", [
    ({"m5": 1, "m15": 1, "h1": 1}, "buy", 20),
    ({"m5": -1, "m15": 1, "h1": 1}, "buy", 12),
    ({"m5": -1, "m15": 1, "h1": 1}, "sell", 6),
    ({"m5": 0, "m15": 0, "h1": 0}, "buy", 0),
])
def test_multi_timeframe_points(directions: dict, side: str, points: float) -> None:
    assert mtf_points(side, directions, params()) == points


@pytest.mark.parametrize("flow, side, points", [
    (None, "buy", 6),                                            # absent: neutral
    (RangeFlow(), "buy", 6),                                     # neutral
    (RangeFlow(signal="BULLISH"), "buy", 12),
    (RangeFlow(signal="STRONG_BUY", pressure_side="BUY"), "buy", 20),
    (RangeFlow(pressure_side="BULLISH"), "buy", 14),
    (RangeFlow(signal="BEARISH", pressure_side="SELL"), "buy", 0),
    (RangeFlow(signal="BEARISH", pressure_side="SELL"), "sell", 20),
])
def test_order_flow_points(flow: RangeFlow | None, side: str, points: float) -> None:
    assert flow_points(side, market(sine_bars(MONDAY, N), flow=flow), params()) == points


def test_total_score_and_weight_per_regime() -> None:
    m = market(sine_bars(MONDAY, N), session_key="london", directions={"m5": -1, "m15": 1, "h1": 1})
    result = score_setup(setup("pdh_pdl_rejection", "buy", 57), m, params(), "normal")
    # entry int(57 * 0.4) = 22, mtf 12, flow 6 (none given), London pdh_pdl_rejection 20
    assert (result.entry_points, result.mtf_points, result.flow_points, result.session_points) == (22, 12, 6, 20)
    assert result.total == 60 and result.weight == 0.24 and result.weighted == pytest.approx(14.4)
    low = score_setup(setup("pdh_pdl_rejection", "buy", 57), m, params(), "low_adx")
    assert low.weight == 0.18
    capped = score_setup(setup("rsi_bounce", "buy", 100), m, params(), "normal")
    assert capped.entry_points == 40
    overlap = score_setup(setup("bb_fade"), market(sine_bars(MONDAY, N), session_key="overlap"), params(), "normal")
    assert overlap.session_points == 10


def test_every_strategy_has_an_explicit_weight_in_both_tables() -> None:
    scoring = params().scoring
    for table in (scoring.weights_low_adx, scoring.weights_normal):
        weights = [getattr(table, name) for name in STRATEGY_NAMES]
        assert all(0 < w < 1 for w in weights) and sum(weights) == pytest.approx(1.0)
    assert scoring.weights_low_adx.liquidity_sweep == 0.10 and scoring.weights_normal.liquidity_sweep == 0.20


def test_one_direction_keeps_all_best_weighted_first() -> None:
    items = [scored("rsi_bounce", "buy", 60, 0.2), scored("vwap_reversion", "buy", 50, 0.315),
             scored("bb_fade", "buy", 50, 0.27)]
    kept, note = resolve_conflicts(items, params())
    assert [s.strategy for s in kept] == ["vwap_reversion", "bb_fade", "rsi_bounce"] and note == "one direction only"


def test_a_clear_winner_survives_a_conflict() -> None:
    items = [scored("vwap_reversion", "buy", 62, 0.2), scored("bb_fade", "sell", 41, 0.16),
             scored("rsi_bounce", "buy", 55, 0.2)]
    kept, note = resolve_conflicts(items, params())
    assert [(s.strategy, s.side) for s in kept] == [("vwap_reversion", "buy"), ("rsi_bounce", "buy")]
    assert note == "buy 62 vs sell 41: gap 21 > 20, buy kept"
    sells_win, _ = resolve_conflicts([scored("bb_fade", "buy", 30, 0.5), scored("rsi_bounce", "sell", 70, 0.1)],
                                     params())
    assert [s.side for s in sells_win] == ["sell"]  # compared on the total, not the weighted score


def test_close_opposite_setups_cancel_out() -> None:
    items = [scored("vwap_reversion", "buy", 55, 0.2), scored("bb_fade", "sell", 40, 0.16)]
    kept, note = resolve_conflicts(items, params())
    assert kept == [] and note == "conflict: best buy vwap_reversion 55 vs best sell bb_fade 40, gap 15 <= 20"
    kept, _ = resolve_conflicts(items, params(scoring={"conflict_min_gap": 10}))
    assert [s.side for s in kept] == ["buy"]
