"""Exit rules in priority order, the breakeven move sent once, the real side, and re-entry."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from engines.range_data import Bars, RangeFlow
from engines.range_exits import (
    ExitAction, ExitRecord, RangeTrade, apply_exit_action, best_r_within, exit_action, reentry_allowed,
)
from engines.range_market import RangeMarket
from engines.range_metrics import BreakOfStructure
from engines.range_scalp import evaluate_exit
from tests.range_scalp.helpers import (
    MONDAY, bars_from_rows, close_time, make_range, make_trade, market, params, set_last,
)

FLAT = (100.0, 100.01, 99.99, 100.0)
N = 24 * 12 + 10 * 12  # Monday 00:00 .. Tuesday 10:00
CALM = {"vwap_momentum": 0.0, "bb_expansion_pct": 0.0, "bos": None}


def flat_bars(rows: list[tuple[float, float, float, float]] | None = None) -> Bars:
    bars = bars_from_rows(MONDAY, [FLAT] * N)
    return set_last(bars, rows) if rows else bars


def now_of(bars: Bars) -> datetime:
    return close_time(bars)


def mkt(bid: float, ask: float | None = None, rows=None, flow: RangeFlow | None = None, **values) -> RangeMarket:
    bars = flat_bars(rows)
    return market(bars, quote=(bid, ask if ask is not None else bid), flow=flow, **{**CALM, **values})


def trade(side: str = "buy", minutes_ago: float = 10, entry: float = 100.0, **extra) -> RangeTrade:
    return make_trade(side, entry=entry, risk=0.2, rr=1.5, opened_at=now_of(flat_bars()) - timedelta(minutes=minutes_ago),
                      **extra)


# ----------------------------------------------------------------------------------------------
# Invalidation exits
# ----------------------------------------------------------------------------------------------

def test_m15_bos_closes_whatever_the_profit() -> None:
    m = mkt(100.4, bos=BreakOfStructure("bearish", 99.5, 99.3))  # +2 R for a buy
    action = exit_action(trade(), m, params())
    assert (action.kind, action.reason, action.priority) == ("close", "m15_bos_confirmed", "critical")
    assert action.profit_r == pytest.approx(2.0)
    assert exit_action(trade(), m, params(exits={"bos_exit": False})).reason != "m15_bos_confirmed"


def test_closes_outside_with_a_second_signal_close_below_0_8_r() -> None:
    outside = make_range(101.5, 100.5)  # every flat close (100.0) is below it
    m = mkt(100.0, vwap_momentum=0.3)
    losing = trade(entry=100.9, range_=outside)  # -4.5 R
    action = exit_action(losing, m, params())
    assert (action.kind, action.reason, action.priority) == ("close", "candles_outside_range", "high")
    assert "range invalidated at -4.50 R" in action.detail
    winning = trade(side="sell", entry=100.6, range_=outside, minutes_ago=45)  # +3 R: not closed
    assert exit_action(winning, m, params()).kind != "close"
    # one signal alone does not invalidate the range
    assert exit_action(losing, mkt(100.0), params()).reason != "candles_outside_range"


def test_vwap_momentum_with_a_second_signal_closes_below_0_8_r() -> None:
    m = mkt(100.1, vwap_momentum=-0.3, bb_expansion_pct=80.0)  # +0.5 R for a buy
    action = exit_action(trade(minutes_ago=45), m, params())
    assert (action.kind, action.reason, action.priority) == ("close", "vwap_momentum_high", "high")
    rich = mkt(100.2, vwap_momentum=-0.3, bb_expansion_pct=80.0)  # +1 R
    assert exit_action(trade(minutes_ago=45), rich, params()).kind == "none"


def test_bb_expansion_closes_below_0_3_r() -> None:
    single = params(invalidation={"signals_required": 1})
    action = exit_action(trade(minutes_ago=45), mkt(100.04, bb_expansion_pct=80.0), single)  # +0.2 R
    assert (action.kind, action.reason, action.priority) == ("close", "bb_width_expansion", "medium")
    assert exit_action(trade(minutes_ago=45), mkt(100.08, bb_expansion_pct=80.0), single).kind == "none"  # +0.4 R


# ----------------------------------------------------------------------------------------------
# Breakeven: armed once
# ----------------------------------------------------------------------------------------------

SPIKE = [(100.0, 100.16, 99.99, 100.12), (100.12, 100.14, 100.1, 100.12)]  # high 100.16: +0.8 R


def test_quick_move_moves_the_stop_to_breakeven_once() -> None:
    m = mkt(100.12, rows=SPIKE)  # +0.6 R now, 10 min after entry
    t = trade(minutes_ago=10)
    sent: list[ExitAction] = []
    for _ in range(3):  # three exit passes over the same state
        action = exit_action(t, m, params())
        if action.kind == "move_sl":
            sent.append(action)
        t = apply_exit_action(t, action)
    assert len(sent) == 1
    assert (sent[0].reason, sent[0].priority) == ("breakeven_move", "high")
    assert sent[0].new_sl == pytest.approx(100.0 + 0.1 * 0.2)  # entry + 0.1 x the range's ATRe
    assert t.breakeven_armed and t.sl == pytest.approx(100.02)
    assert t.risk == pytest.approx(0.2)  # 1 R stays the initial stop distance


def test_a_spike_between_two_checks_still_arms_breakeven() -> None:
    # the +0.8 R high happened 20-25 min after entry; the check runs at 40 min, price +0.6 R
    rows = [(100.0, 100.16, 99.99, 100.12)] + [(100.12, 100.13, 100.11, 100.12)] * 3
    t = trade(minutes_ago=40)
    action = exit_action(t, mkt(100.12, rows=rows), params())
    assert action.kind == "move_sl"
    # a spike only after the 30-minute window does not count
    late = trade(minutes_ago=45)
    late_rows = [(100.0, 100.01, 99.99, 100.0)] * 5 + [(100.0, 100.16, 99.99, 100.12)] * 2  # from 09:50
    assert best_r_within(late, mkt(100.12, rows=late_rows), 30) < 0.5
    assert exit_action(late, mkt(100.12, rows=late_rows), params()).kind == "none"


def test_breakeven_stop_too_close_to_price_is_not_sent() -> None:
    action = exit_action(trade(), mkt(100.12, rows=SPIKE), params(), min_stop_distance=0.15)
    assert action.kind == "none" and "too close to price" in action.detail


def test_back_to_entry_after_a_quick_move_closes() -> None:
    rows = SPIKE + [(100.12, 100.12, 99.97, 99.98)]
    for armed in (False, True):
        action = exit_action(trade(breakeven_armed=armed), mkt(99.98, rows=rows), params())
        assert (action.kind, action.reason) == ("close", "breakeven_retrace")
    assert exit_action(trade(), mkt(99.98), params()).kind == "none"  # never reached +0.5 R: keep


def test_sell_breakeven_is_mirrored() -> None:
    rows = [(100.0, 100.01, 99.84, 99.88)]  # low 99.84: +0.8 R for a sell at 100.0
    action = exit_action(trade(side="sell"), mkt(99.87, 99.88, rows=rows), params())
    assert action.kind == "move_sl" and action.new_sl == pytest.approx(99.98)


# ----------------------------------------------------------------------------------------------
# Time, divergence and flow exits
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("minutes, bid, closes", [
    (65, 100.02, True),   # +0.1 R after an hour
    (65, 99.96, True),    # -0.2 R after an hour
    (55, 100.02, False),  # not an hour yet
    (65, 100.08, False),  # +0.4 R: moving
])
def test_stagnation(minutes: float, bid: float, closes: bool) -> None:
    action = exit_action(trade(minutes_ago=minutes), mkt(bid), params())
    assert (action.reason == "stagnation_energy_loss") is closes
    if closes:
        assert action.priority == "medium"


@pytest.mark.parametrize("flow, bid, closes", [
    (RangeFlow(cvd_divergence_type="bearish", cvd_divergence_strength=0.75), 100.04, True),
    (RangeFlow(cvd_divergence_type=None, cvd_divergence_strength=0.75), 100.04, True),
    (RangeFlow(cvd_divergence_type="bullish", cvd_divergence_strength=0.9), 100.04, False),  # with the trade
    (RangeFlow(cvd_divergence_type="bearish", cvd_divergence_strength=0.65), 100.04, False),
    (RangeFlow(cvd_divergence_type="bearish", cvd_divergence_strength=0.75), 100.01, False),  # +0.05 R
])
def test_strong_divergence(flow: RangeFlow, bid: float, closes: bool) -> None:
    action = exit_action(trade(minutes_ago=45), mkt(bid, flow=flow), params())
    assert (action.reason == "strong_divergence") is closes


@pytest.mark.parametrize("side, shift, price, closes", [
    ("buy", -0.7, 100.14, True),    # +0.7 R
    ("buy", -0.7, 100.06, False),   # +0.3 R: wait
    ("buy", -0.7, 99.96, True),     # losing: exit_if_losing
    ("buy", -0.5, 99.96, False),    # shift not strong enough
    ("buy", 0.7, 99.96, False),     # flow with the trade
    ("sell", 0.7, 100.04, True),    # losing sell
])
def test_opposite_order_flow(side: str, shift: float, price: float, closes: bool) -> None:
    action = exit_action(trade(side=side, minutes_ago=45), mkt(price, flow=RangeFlow(tape_pressure_shift=shift)),
                         params())
    assert (action.reason == "opposite_order_flow") is closes
    if closes:
        assert action.priority == "low"


def test_opposite_flow_keeps_a_loser_when_configured() -> None:
    action = exit_action(trade(minutes_ago=45), mkt(99.96, flow=RangeFlow(tape_pressure_shift=-0.7)),
                         params(exits={"exit_if_losing": False}))
    assert action.kind == "none"


def test_profit_uses_the_real_side_and_the_closing_price() -> None:
    losing_sell = exit_action(trade(side="sell", minutes_ago=45), mkt(100.09, 100.1), params())
    assert losing_sell.profit_r == pytest.approx(-0.5)  # closes at the ask: 100.1 vs 100.0
    winning_buy = exit_action(trade(minutes_ago=45), mkt(100.09, 100.1), params())
    assert winning_buy.profit_r == pytest.approx(0.45)  # closes at the bid


def test_evaluate_exit_holds_when_the_data_cannot_support_a_decision() -> None:
    bars = flat_bars()
    t = trade()
    stale = evaluate_exit(t, bars, (100.0, 100.0), params(), close_time(bars, 3600))
    assert (stale.kind, stale.reason) == ("none", "hold") and "no exit decision" in stale.detail
    live = evaluate_exit(t, bars, (100.0, 100.0), params(), close_time(bars))
    assert live.kind == "none" and live.reason == "hold"


# ----------------------------------------------------------------------------------------------
# The trade record
# ----------------------------------------------------------------------------------------------

def test_trade_record_round_trip_and_validation() -> None:
    t = apply_exit_action(trade(ticket=123456), ExitAction("move_sl", "breakeven_move", "high", 100.02))
    again = RangeTrade.from_dict(t.to_dict())
    assert again == t and again.ticket == 123456 and again.risk == pytest.approx(0.2) and again.breakeven_armed
    with pytest.raises(ValueError, match="side must be"):
        replace(t, side="long")
    with pytest.raises(ValueError, match="naive"):
        replace(t, opened_at=datetime(2026, 6, 1))
    with pytest.raises(ValueError, match="malformed"):
        RangeTrade.from_dict({"symbol": "X"})


# ----------------------------------------------------------------------------------------------
# Re-entry
# ----------------------------------------------------------------------------------------------

NOW = MONDAY + timedelta(hours=10)
RANGE = make_range(101.0, 99.0)


@pytest.mark.parametrize("record, current, allowed, text", [
    (None, RANGE, True, "no earlier exit"),
    (ExitRecord("stagnation_energy_loss", NOW - timedelta(minutes=10), RANGE), RANGE, False, "cool-down"),
    (ExitRecord("stagnation_energy_loss", NOW - timedelta(minutes=20), RANGE), RANGE, True, "last exit"),
    (ExitRecord("breakeven_retrace", NOW - timedelta(minutes=16), RANGE), RANGE, True, "last exit"),
    (ExitRecord("candles_outside_range", NOW - timedelta(hours=2), RANGE), make_range(101.1, 99.05), False,
     "was invalidated"),
    (ExitRecord("m15_bos_confirmed", NOW - timedelta(hours=2), RANGE), make_range(102.0, 100.5), True, "last exit"),
])
def test_reentry_rules(record: ExitRecord | None, current, allowed: bool, text: str) -> None:
    ok, reason = reentry_allowed(record, current, NOW, params())
    assert ok is allowed and text in reason


def test_reentry_block_after_invalidation_can_be_switched_off() -> None:
    record = ExitRecord("vwap_momentum_high", NOW - timedelta(hours=1), RANGE)
    assert not reentry_allowed(record, RANGE, NOW, params())[0]
    assert reentry_allowed(record, RANGE, NOW, params(reentry={"block_after_invalidation": False}))[0]
