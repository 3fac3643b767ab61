"""Regime hysteresis (per bar, idempotent per bar) and the router's thresholds and fallback."""
from __future__ import annotations

from config.micro_scalp_model import MicroScalpParams
from engines.micro_scalp import route
from engines.micro_scalp_regimes import (BALANCED, NONE, RANGE, VWAP_REVERSION, RegimeScore, RegimeState,
                                         advance_regime)

P = MicroScalpParams(vwap_reversion_threshold=70, range_threshold=70, balanced_threshold=65,
                     regime_exit_margin=10, regime_switch_margin=10, regime_confirm_bars=2)


def scores(vwap: float = 0, rng: float = 0, bal: float = 0) -> dict[str, RegimeScore]:
    return {VWAP_REVERSION: RegimeScore(VWAP_REVERSION, vwap, 70, ()),
            RANGE: RegimeScore(RANGE, rng, 70, ()),
            BALANCED: RegimeScore(BALANCED, bal, 65, ())}


def run(sequence: list[dict[str, RegimeScore]], params: MicroScalpParams = P,
        state: RegimeState | None = None) -> list[RegimeState]:
    state = state or RegimeState()
    out = []
    for i, s in enumerate(sequence):
        state, _ = advance_regime(state, s, 60 * (i + 1), params)
        out.append(state)
    return out


def test_new_regime_needs_confirmation_bars():
    states = run([scores(rng=80), scores(rng=80), scores(rng=80)])
    assert [s.regime for s in states] == [NONE, RANGE, RANGE]
    assert states[0].pending == RANGE and states[0].pending_count == 1
    assert states[1].since_s == 120


def test_single_bar_blip_is_not_adopted():
    states = run([scores(rng=80), scores(), scores(rng=80)])
    assert [s.regime for s in states] == [NONE, NONE, NONE]


def test_held_regime_survives_dip_within_exit_margin_then_drops():
    # adopted at bar 2; 65 is below the 70 threshold but above the exit level 60: held
    states = run([scores(rng=80), scores(rng=80), scores(rng=65), scores(rng=61), scores(rng=59)])
    assert [s.regime for s in states] == [NONE, RANGE, RANGE, RANGE, NONE]
    assert states[3].confidence == 61


def test_no_flip_flop_on_oscillating_scores():
    # confidence oscillating around the threshold keeps one regime instead of flipping each bar
    seq = [scores(rng=80), scores(rng=80)] + [scores(rng=72 if i % 2 else 66) for i in range(20)]
    regimes = [s.regime for s in run(seq)]
    assert regimes[1:] == [RANGE] * 21


def test_challenger_must_beat_by_switch_margin_and_confirm():
    base = [scores(rng=75), scores(rng=75)]
    close_call = run(base + [scores(rng=75, vwap=80)] * 3)
    assert [s.regime for s in close_call][-1] == RANGE          # 80 < 75 + 10: no switch
    clear_win = run(base + [scores(rng=75, vwap=90)] * 2)
    assert [s.regime for s in clear_win][-2:] == [RANGE, VWAP_REVERSION]  # confirmed on 2nd bar
    assert clear_win[-2].pending == VWAP_REVERSION


def test_dropped_regime_falls_to_confirmed_challenger_or_none():
    states = run([scores(rng=80), scores(rng=80), scores(bal=70), scores(bal=70)])
    assert [s.regime for s in states] == [NONE, RANGE, NONE, BALANCED]


def test_tie_break_order_vwap_then_range_then_balanced():
    states = run([scores(vwap=80, rng=80, bal=80)] * 2)
    assert states[-1].regime == VWAP_REVERSION


def test_same_bar_evaluated_again_does_not_advance_counters():
    state, _ = advance_regime(RegimeState(), scores(rng=80), 60, P)
    for _ in range(5):  # the 5-second monitor re-evaluating bar 60
        state, _ = advance_regime(state, scores(rng=80), 60, P)
    assert state.regime == NONE and state.pending_count == 1
    state, _ = advance_regime(state, scores(rng=80), 120, P)
    assert state.regime == RANGE


def test_same_bar_again_restarts_from_the_prior_fields_and_keeps_the_memo():
    memo = object()
    held = RegimeState(RANGE, 80, 60, None, 0, 60, None, memo)  # type: ignore[arg-type]
    first, _ = advance_regime(held, scores(vwap=95, rng=75), 120, P)
    assert first.base == (RANGE, 80, 60, None, 0, 60)  # the prior state's fields: no chain of states
    assert first.regime == RANGE and first.pending == VWAP_REVERSION and first.memo is memo
    again, _ = advance_regime(first, scores(vwap=95, rng=75), 120, P)
    assert again == first and again.base == first.base and again.memo is memo
    confirmed, _ = advance_regime(again, scores(vwap=95, rng=75), 180, P)
    assert confirmed.regime == VWAP_REVERSION and confirmed.since_s == 180 and confirmed.memo is memo


def test_time_going_backwards_restarts_memory():
    states = run([scores(rng=80)] * 3)
    state, _ = advance_regime(states[-1], scores(), 30, P)
    assert state.regime == NONE and state.bar_time_s == 30


def test_confirm_one_adopts_immediately():
    states = run([scores(bal=66)], MicroScalpParams(regime_confirm_bars=1))
    assert states[0].regime == BALANCED and states[0].confidence == 66


def test_router_thresholds_and_fallback():
    p = MicroScalpParams(router_min_confidence=60)
    assert route(p, RegimeState(RANGE, 75))[0] == RANGE
    assert route(p, RegimeState(VWAP_REVERSION, 80))[0] == VWAP_REVERSION
    assert route(p, RegimeState(BALANCED, 65))[0] == BALANCED
    strategy, why = route(p, RegimeState(RANGE, 59))
    assert strategy == "edge_based" and "59 < 60" in why
    assert route(p, RegimeState())[0] == "edge_based"
    strategy, why = route(MicroScalpParams(regime_detection_enabled=False), RegimeState(RANGE, 90))
    assert strategy == "edge_based" and why == "regime detection disabled"
