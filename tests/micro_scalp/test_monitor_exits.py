"""Exits of micro-scalp trades: the trailing-stop rule, and the monitor applying it, the time exit
and broker-side SL/TP closes over the simulated terminal."""
from __future__ import annotations

from pathlib import Path

import pytest

from config.micro_scalp_model import MicroScalpParams
from monitors.micro_scalp_exits import trailing_stop
from state.registry import Trade
from tests.micro_scalp.test_monitor_harness import MonitorStack, make_monitor_stack, no_news

PARAMS = MicroScalpParams(trail_start_r=0.5, trail_atr=0.3, trail_min_step_atr=0.05)


def trade(side: str = "buy", entry: float = 100.0, sl: float = 99.0, initial_sl: float | None = None) -> Trade:
    tp = entry + 5 if side == "buy" else entry - 5
    return Trade(ticket=1, client_id="ms-test", strategy="micro_scalp", symbol="XAUUSD", side=side, volume=0.1,
                 entry=entry, sl=sl, tp=tp, initial_sl=sl if initial_sl is None else initial_sl, magic=1,
                 opened_at="2026-01-05T12:00:00+00:00")


# ---------------------------------------------------------------------------- the rule
def test_no_trailing_before_half_an_r_of_profit() -> None:
    assert trailing_stop(trade(), 100.49, atr=1.0, params=PARAMS) is None


def test_buy_trails_at_0_3_atr_behind_the_bid_once_half_an_r_up() -> None:
    assert trailing_stop(trade(), 100.5, atr=1.0, params=PARAMS) == pytest.approx(100.2)
    assert trailing_stop(trade(), 101.0, atr=2.0, params=PARAMS) == pytest.approx(100.4)


def test_sell_trails_above_the_ask() -> None:
    short = trade("sell", entry=100.0, sl=101.0)
    assert trailing_stop(short, 99.4, atr=1.0, params=PARAMS) == pytest.approx(99.7)
    assert trailing_stop(short, 99.6, atr=1.0, params=PARAMS) is None  # only 0.4 R


def test_the_stop_never_loosens() -> None:
    trailed = trade(sl=100.6, initial_sl=99.0)  # already trailed to 100.6
    assert trailing_stop(trailed, 100.8, atr=1.0, params=PARAMS) is None  # wants 100.5 < 100.6
    short = trade("sell", entry=100.0, sl=99.3, initial_sl=101.0)
    assert trailing_stop(short, 99.2, atr=1.0, params=PARAMS) is None  # wants 99.5 > 99.3


def test_small_improvements_wait_for_the_minimum_step() -> None:
    trailed = trade(sl=100.2, initial_sl=99.0)
    assert trailing_stop(trailed, 100.54, atr=1.0, params=PARAMS) is None  # +0.04 < 0.05 ATR
    assert trailing_stop(trailed, 100.56, atr=1.0, params=PARAMS) == pytest.approx(100.26)


def test_the_unit_of_r_is_the_initial_stop_not_the_trailed_one() -> None:
    trailed = trade(sl=100.2, initial_sl=99.0)  # risk stays 1.0
    assert trailing_stop(trailed, 101.0, atr=1.0, params=PARAMS) == pytest.approx(100.7)


def test_the_brokers_stops_level_is_respected() -> None:
    assert trailing_stop(trade(), 101.0, atr=1.0, params=PARAMS, min_distance=0.5) == pytest.approx(100.5)


def test_trailing_can_be_switched_off() -> None:
    assert trailing_stop(trade(), 102.0, atr=1.0, params=MicroScalpParams(trail_enabled=False)) is None


# ---------------------------------------------------------------------------- over the sim
@pytest.fixture
def ms(tmp_path: Path) -> MonitorStack:
    ms = make_monitor_stack(tmp_path)
    no_news(ms)
    ms.only("XAUUSD")
    ms.set_params("XAUUSD", enabled=False, time_exit_minutes=None)  # no entries: only our trades
    return ms


def test_the_monitor_trails_open_trades_through_the_executor_and_never_loosens(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", trail_atr=1.0)
    buy = ms.open_trade("XAUUSD", "buy", 1.0, 20.0, atr=0.5)
    sell = ms.open_trade("XAUUSD", "sell", 1.0, 20.0, atr=0.5)
    history: dict[int, list[float]] = {buy.ticket: [buy.sl], sell.ticket: [sell.sl]}
    for _ in range(400):
        ms.step()
        for open_trade in ms.micro_trades():
            history[open_trade.ticket].append(open_trade.sl)
            assert ms.stack.broker.position(open_trade.ticket).sl == pytest.approx(open_trade.sl)
        if not ms.micro_trades():
            break
    assert ms.state.exit_counters.trail_moves >= 2
    assert history[buy.ticket] == sorted(history[buy.ticket]) and max(history[buy.ticket]) > buy.sl
    assert history[sell.ticket] == sorted(history[sell.ticket], reverse=True) and min(history[sell.ticket]) < sell.sl
    closed = {t.ticket: t for t in ms.stack.registry.closed_trades("micro_scalp")}
    assert closed[buy.ticket].close_reason == "broker:sl" and closed[buy.ticket].r > 0  # the trail locked a profit
    assert closed[sell.ticket].r > 0
    assert closed[buy.ticket].initial_sl == buy.sl and closed[buy.ticket].tp == buy.tp  # TP kept
    modified = [e for e in ms.stack.journal_events() if e["event"] == "modified"]
    assert len(modified) == ms.state.exit_counters.trail_moves and "trailing stop" in modified[0]["reason"]
    assert ms.monitor.health()["performance"]["trades"] == 2


def test_time_exit_closes_a_trade_held_too_long(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", time_exit_minutes=2, trail_enabled=False)
    held = ms.open_trade("XAUUSD", "buy", 20.0, 20.0, atr=0.5)
    for _ in range(23):  # 115 s
        ms.step()
        assert ms.stack.registry.get(held.ticket) is not None
    ms.step(10)
    assert ms.stack.registry.get(held.ticket) is None
    assert ms.stack.broker.position(held.ticket) is None
    closed = ms.stack.registry.closed_trades("micro_scalp")[-1]
    assert closed.ticket == held.ticket and closed.close_reason.startswith("time exit: held 2.")
    assert ms.state.exit_counters.time_exits == 1
    performance = ms.monitor.health()["performance"]
    assert performance["trades"] == 1 and performance["avg_hold_seconds"] == pytest.approx(125, abs=1)


def test_broker_side_stop_loss_is_detected_and_scored(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", trail_enabled=False)
    lost = ms.open_trade("XAUUSD", "sell", 0.5, 30.0, atr=0.5)
    ms.step_until(lambda: ms.stack.registry.get(lost.ticket) is None, max_steps=2000)
    closed = ms.stack.registry.closed_trades("micro_scalp")[-1]
    assert closed.close_reason == "broker:sl" and closed.r < 0
    assert ms.state.exit_counters.broker_closes == 1
    performance = ms.monitor.health()["performance"]
    assert performance["losses"] == 1 and performance["current_streak"] == -1
    assert performance["last_trade"]["ticket"] == lost.ticket
