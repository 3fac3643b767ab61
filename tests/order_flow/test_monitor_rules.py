"""The monitor's pure rules (flip, flow fitness, stops) and the config keys they read."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.order_flow_model import OrderFlowConfig, OrderFlowParams
from engines.order_flow import FlowMetrics
from engines.order_flow_signals import Signal
from monitors.order_flow_rules import check_flip, flow_problem, plan_stops


# ------------------------------------------------------------------------------------------ flip

@pytest.mark.parametrize("side, entry, current, flipped", [
    ("buy", 10.0, -7.99, False),
    ("buy", 10.0, -8.0, True),  # exactly -0.8 x entry: fires
    ("buy", 10.0, -30.0, True),
    ("buy", 10.0, 5.0, False),
    ("sell", -10.0, 7.99, False),
    ("sell", -10.0, 8.0, True),
    ("sell", -10.0, 30.0, True),
    ("sell", -10.0, -3.0, False),
])
def test_flip_both_directions_and_the_edge(side, entry, current, flipped):
    verdict = check_flip(side, entry, current, 0.8)
    assert verdict.armed and verdict.flipped is flipped
    assert verdict.trigger == pytest.approx(-0.8 * entry)


@pytest.mark.parametrize("side, entry", [("buy", -5.0), ("buy", 0.0), ("sell", 5.0), ("sell", 0.0)])
def test_an_entry_delta_against_the_position_never_arms(side, entry):
    verdict = check_flip(side, entry, -1e9 if side == "buy" else 1e9)
    assert not verdict.armed and not verdict.flipped and verdict.trigger is None


def test_flip_percentage_and_bad_values():
    assert check_flip("buy", 10.0, -8.0).flip_pct == pytest.approx(180.0)  # the spec's "80 %" rule is 180 % here
    assert check_flip("buy", 10.0, -5.0, threshold=0.5).flipped
    assert not check_flip("buy", float("nan"), -5.0).armed
    with pytest.raises(ValueError, match="side must be 'buy' or 'sell'"):
        check_flip("long", 1.0, 1.0)


# ------------------------------------------------------------------------------------------ flow fitness

def metrics(**changes) -> FlowMetrics:
    base = dict(symbol="X", window_seconds=30, now_ms=100_000, buy_volume=3.0, sell_volume=1.0, delta=2.0, trades=4,
                notional=400.0, vwap=100.0, cvd=2.0, cvd_slope=0.1, cvd_slope_norm=0.5, aggressor_ratio=0.75,
                imbalance=0.5, price_open=100.0, price_high=101.0, price_low=99.0, last_price=100.0,
                last_trade_ms=99_000, staleness_ms=1_000, discontinuous=False, complete=True)
    base.update(changes)
    return FlowMetrics(**base)


@pytest.mark.parametrize("m, gate", [
    (None, "flow_missing"),
    (metrics(staleness_ms=10_001), "flow_stale"),
    (metrics(staleness_ms=None), "flow_stale"),
    (metrics(discontinuous=True), "flow_gap"),
    (metrics(complete=False), "flow_incomplete"),
])
def test_unfit_flow_is_named(m, gate):
    assert flow_problem(m, 10.0)[0] == gate


def test_fresh_flow_at_the_age_limit_passes():
    assert flow_problem(metrics(staleness_ms=10_000), 10.0) is None


# ------------------------------------------------------------------------------------------ stops

def params(**changes) -> OrderFlowParams:
    return OrderFlowParams(**{"min_sl_spreads": 0.0, **changes})


def zone(side: str, low: float, high: float) -> Signal:
    return Signal("absorption", side, 0.8, {"price": (low + high) / 2, "low": low, "high": high})


def test_stop_beyond_an_agreeing_absorption_zone_measured_on_the_tape():
    # tape (Binance) at 60010, zone low 59990: 20 below, + 0.1 ATR (ATR 50) = 25; broker entry 42000
    plan = plan_stops("buy", 42_000.0, 50.0, params(), [zone("buy", 59_990.0, 60_005.0)], tape_price=60_010.0)
    assert plan.sl == pytest.approx(41_975.0) and plan.tp == pytest.approx(42_000.0 + 1.5 * 25.0)
    assert plan.basis.startswith("absorption zone 59990")
    sell = plan_stops("sell", 42_000.0, 50.0, params(), [zone("sell", 59_990.0, 60_020.0)], tape_price=60_010.0)
    assert sell.sl == pytest.approx(42_015.0) and sell.tp == pytest.approx(42_000.0 - 1.5 * 15.0)


def test_a_zone_on_the_other_side_or_atr_mode_uses_atr():
    plan = plan_stops("buy", 100.0, 2.0, params(), [zone("sell", 99.0, 101.0)], tape_price=100.0)
    assert (plan.sl, plan.tp) == (pytest.approx(98.0), pytest.approx(103.0)) and plan.basis == "1/1.5 ATR"
    atr_mode = plan_stops("buy", 100.0, 2.0, params(stop_mode="atr"), [zone("buy", 99.0, 101.0)], tape_price=100.0)
    assert atr_mode.basis == "1/1.5 ATR"


def test_stops_are_clamped_to_atr_bounds_and_the_spread():
    near = plan_stops("buy", 100.0, 2.0, params(), [zone("buy", 99.99, 100.0)], tape_price=100.0)
    assert near.sl == pytest.approx(100.0 - 0.3 * 2.0)  # min_sl_atr
    far = plan_stops("buy", 100.0, 2.0, params(), [zone("buy", 80.0, 100.0)], tape_price=100.0)
    assert far.sl == pytest.approx(100.0 - 3.0 * 2.0)  # max_sl_atr
    wide_spread = plan_stops("sell", 100.0, 2.0, params(min_sl_spreads=2.0), spread=1.5)
    assert wide_spread.sl == pytest.approx(103.0) and wide_spread.tp == pytest.approx(97.0)
    assert plan_stops("buy", 100.0, None, params()) is None


# ------------------------------------------------------------------------------------------ config

def test_sessions_wrap_midnight():
    p = OrderFlowParams(sessions_utc=[(22, 3), (8, 12)])
    assert [h for h in range(24) if p.in_session(h)] == [0, 1, 2, 8, 9, 10, 11, 22, 23]
    assert OrderFlowParams().in_session(5)


@pytest.mark.parametrize("changes, message", [
    ({"defaults": {"sessions_utc": [[5, 5]]}}, "start!=end"),
    ({"defaults": {"sessions_utc": [[0, 25]]}}, "1<=end<=24"),
    ({"defaults": {"min_sl_atr": 2.0, "max_sl_atr": 1.0}}, "max_sl_atr must be >= min_sl_atr"),
    ({"defaults": {"stop_mode": "fixed"}}, "'atr' or 'absorption'"),
    ({"defaults": {"entry_delta_window_seconds": 1200}}, "entry_delta_window_seconds 1200 of defaults"),
    ({"overrides": {"XAUUSD": {"absorption_window_seconds": 1000}}, "proxy": {"flow": {"windows_seconds": [30, 900]}}},
     "absorption_window_seconds 1000 of XAUUSD is longer than the longest proxy.flow"),
    ({"flip_exit": {"window_seconds": 3600}}, "flip_exit.window_seconds 3600"),
    ({"flip_exit": {"threshold": 0}}, "greater than 0"),
    ({"proxy": {"warmup_seconds": 10}}, "greater than or equal to 60"),
])
def test_bad_monitor_keys_are_refused(changes, message):
    with pytest.raises(ValidationError, match=message):
        OrderFlowConfig(symbols=["BTCUSD", "XAUUSD"], binance={"symbols": {"BTCUSD": "BTCUSDT"}}, **changes)


def test_flow_routing_follows_the_config():
    cfg = OrderFlowConfig(symbols=["BTCUSD", "XAUUSD"], binance={"symbols": {"BTCUSD": "BTCUSDT"}})
    assert (cfg.flow_source("BTCUSD"), cfg.flow_source("XAUUSD")) == ("binance", "tick_proxy")
    off = OrderFlowConfig(symbols=["BTCUSD", "XAUUSD"], binance={"symbols": {"BTCUSD": "BTCUSDT"}, "enabled": False},
                          proxy={"enabled": False})
    assert (off.flow_source("BTCUSD"), off.flow_source("XAUUSD")) == (None, None)
