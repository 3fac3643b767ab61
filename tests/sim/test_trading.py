"""Orders on the simulated terminal: fills, stops, partial closes, modifications and every retcode."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from execution.simterminal import SimTerminal, make_test_terminal
from feeds.readers import read_bars
from monitors.clock import FakeClock
from tests.sim.conftest import MONDAY_NOON
from tests.sim.helpers import close_request, market_order, open_position, spec_file

DATA = Path(__file__).resolve().parents[2] / "data"
XAU_FILE = DATA / "bars" / "XAUUSD_M1_2023-04-16_2023-05-01.csv"
WEEK = timedelta(days=7)


def run_until_flat(clock: FakeClock, mt5: SimTerminal, limit_minutes: int) -> None:
    for _ in range(limit_minutes):
        clock.advance(60)
        if not mt5.positions_get():
            return
    raise AssertionError("the position never closed")


def recorded_xau() -> Any:
    bars = read_bars(XAU_FILE)
    for column in ("open", "high", "low", "close"):
        bars[column] = np.round(np.round(bars[column] / 0.01) * 0.01, 2)
    return bars


def xau_source(virtual_epoch: int) -> Any:
    """The recorded XAUUSD minute that plays at ``virtual_epoch`` (server time = UTC)."""
    bars = recorded_xau()
    virtual = datetime.fromtimestamp(virtual_epoch, timezone.utc)
    weeks = (MONDAY_NOON - bars.index[0].to_pydatetime()) // WEEK
    return bars, virtual - weeks * WEEK


# --- fills ----------------------------------------------------------------------------------

def test_a_market_buy_opens_at_ask_with_commission(mt5: SimTerminal) -> None:
    tick = mt5.symbol_info_tick("XAUUSD")
    result = mt5.order_send(market_order(mt5, "XAUUSD", "buy", 0.1, sl=round(tick.bid - 3, 2)))
    assert (result.retcode, result.comment, result.price, result.volume) == (10009, "Request executed", tick.ask, 0.1)
    assert (result.bid, result.ask) == (tick.bid, tick.ask)
    assert result.request.comment == "cid-0001" and result.request.magic == 7001
    position = mt5.positions_get()[0]
    assert (position.ticket, position.identifier, position.type) == (result.order, result.order, 0)
    assert (position.price_open, position.price_current, position.magic) == (tick.ask, tick.bid, 7001)
    assert position.profit == pytest.approx((tick.bid - tick.ask) * 100 * 0.1)
    assert position.reason == mt5.POSITION_REASON_EXPERT and position.comment == "cid-0001"
    deal = mt5.history_deals_get(ticket=result.order)[0]
    assert (deal.ticket, deal.entry, deal.type, deal.reason) == (result.deal, mt5.DEAL_ENTRY_IN, 0, mt5.DEAL_REASON_EXPERT)
    assert (deal.commission, deal.position_id, deal.magic, deal.comment) == (-0.35, result.order, 7001, "cid-0001")
    account = mt5.account_info()
    assert account.balance == 10000 - 0.35
    assert account.margin == mt5.order_calc_margin(mt5.ORDER_TYPE_BUY, "XAUUSD", 0.1, tick.ask)
    assert account.equity == pytest.approx(account.balance + position.profit)
    assert account.margin_free == pytest.approx(account.equity - account.margin)


def test_longs_close_at_bid_and_shorts_at_ask(clock: FakeClock, mt5: SimTerminal) -> None:
    long = open_position(mt5, "EURUSD", "buy", 0.1)
    short = open_position(mt5, "EURUSD", "sell", 0.1)
    tick = mt5.symbol_info_tick("EURUSD")
    assert (long.price_open, short.price_open) == (tick.ask, tick.bid)
    clock.advance(600)
    tick = mt5.symbol_info_tick("EURUSD")
    closed_long = mt5.order_send(close_request(mt5, long))
    closed_short = mt5.order_send(close_request(mt5, short))
    assert (closed_long.price, closed_short.price) == (tick.bid, tick.ask)
    deals = mt5.history_deals_get(position=long.ticket)
    assert [d.entry for d in deals] == [mt5.DEAL_ENTRY_IN, mt5.DEAL_ENTRY_OUT]
    assert deals[1].profit == pytest.approx(round((tick.bid - long.price_open) * 100000 * 0.1, 2))
    assert deals[1].type == mt5.DEAL_TYPE_SELL and deals[1].comment == "close"
    short_out = mt5.history_deals_get(position=short.ticket)[1]
    assert short_out.profit == pytest.approx(round((short.price_open - tick.ask) * 100000 * 0.1, 2))
    assert mt5.positions_get() == () and mt5.positions_total() == 0
    expected = 10000 - 4 * 0.35 + deals[1].profit + short_out.profit
    assert mt5.account_info().balance == pytest.approx(expected)


def test_stop_loss_hit_closes_at_the_stop_price(clock: FakeClock, mt5: SimTerminal) -> None:
    tick = mt5.symbol_info_tick("XAUUSD")
    sl = round(tick.bid - 3.0, 2)
    position = open_position(mt5, "XAUUSD", "buy", 0.1, sl=sl, tp=round(tick.bid + 20, 2))
    run_until_flat(clock, mt5, 240)
    out = mt5.history_deals_get(position=position.ticket)[-1]
    assert (out.reason, out.entry, out.price, out.volume) == (mt5.DEAL_REASON_SL, mt5.DEAL_ENTRY_OUT, sl, 0.1)
    assert out.comment == f"[sl {sl:.2f}]" and out.magic == 7001
    assert out.profit == pytest.approx(round((sl - position.price_open) * 100 * 0.1, 2))
    order = mt5.history_orders_get(ticket=out.order)[0]
    assert order.reason == mt5.ORDER_REASON_SL and order.state == mt5.ORDER_STATE_FILLED
    # independent check against the recording: the first minute whose low reaches the stop
    bars, hit_at = xau_source(out.time)
    opened_at = hit_at - (datetime.fromtimestamp(out.time, timezone.utc) - MONDAY_NOON)
    window = bars.loc[(bars.index >= opened_at) & (bars.index <= hit_at)]
    assert window.low.iloc[-1] <= sl < window.low.iloc[:-1].min()
    assert mt5.account_info().balance == pytest.approx(10000 - 0.7 + out.profit)


def test_take_profit_of_a_short_triggers_on_the_ask(clock: FakeClock, mt5: SimTerminal) -> None:
    tick = mt5.symbol_info_tick("XAUUSD")
    tp = round(tick.ask - 5.0, 2)
    position = open_position(mt5, "XAUUSD", "sell", 0.2, sl=round(tick.ask + 5, 2), tp=tp)
    run_until_flat(clock, mt5, 240)
    out = mt5.history_deals_get(position=position.ticket)[-1]
    assert (out.reason, out.price, out.type) == (mt5.DEAL_REASON_TP, tp, mt5.DEAL_TYPE_BUY)
    assert out.profit == pytest.approx(round((position.price_open - tp) * 100 * 0.2, 2))
    bars, hit_at = xau_source(out.time)
    opened = hit_at - (datetime.fromtimestamp(out.time, timezone.utc) - MONDAY_NOON)
    window = bars.loc[(bars.index >= opened) & (bars.index <= hit_at)]
    ask_low = window.low + 0.16  # ask = bid + 16 points
    assert ask_low.iloc[-1] <= tp + 1e-9 < ask_low.iloc[:-1].min()


def test_partial_close_keeps_the_ticket(clock: FakeClock, mt5: SimTerminal) -> None:
    position = open_position(mt5, "EURUSD", "buy", 0.10)
    margin = mt5.account_info().margin
    clock.advance(120)
    result = mt5.order_send(close_request(mt5, position, 0.04))
    assert result.retcode == 10009 and result.volume == 0.04
    remaining = mt5.positions_get(ticket=position.ticket)[0]
    assert remaining.volume == pytest.approx(0.06) and remaining.price_open == position.price_open
    assert mt5.account_info().margin == pytest.approx(margin * 0.6, abs=0.01)
    clock.advance(120)
    assert mt5.order_send(close_request(mt5, remaining)).retcode == 10009
    deals = mt5.history_deals_get(position=position.ticket)
    assert [(d.entry, d.volume) for d in deals] == [(0, 0.1), (1, 0.04), (1, pytest.approx(0.06))]
    assert mt5.positions_get() == ()


def test_modify_stops(mt5: SimTerminal) -> None:
    tick = mt5.symbol_info_tick("XAUUSD")
    position = open_position(mt5, "XAUUSD", "buy", 0.1)
    request = {"action": mt5.TRADE_ACTION_SLTP, "symbol": "XAUUSD", "position": position.ticket,
               "sl": round(tick.bid - 2, 2), "tp": round(tick.bid + 2, 2)}
    result = mt5.order_send(request)
    assert result.retcode == 10009
    modified = mt5.positions_get(ticket=position.ticket)[0]
    assert (modified.sl, modified.tp) == (request["sl"], request["tp"])
    assert mt5.order_send(request).retcode == mt5.TRADE_RETCODE_NO_CHANGES
    assert mt5.order_send({**request, "sl": round(tick.bid + 1, 2)}).retcode == mt5.TRADE_RETCODE_INVALID_STOPS
    assert mt5.order_send({**request, "position": 1}).retcode == mt5.TRADE_RETCODE_INVALID
    assert mt5.order_send({**request, "symbol": "EURUSD"}).retcode == mt5.TRADE_RETCODE_INVALID
    assert len(mt5.history_deals_get(position=position.ticket)) == 1  # a modification is no deal


# --- retcodes ---------------------------------------------------------------------------------

def test_invalid_volume(mt5: SimTerminal) -> None:
    for volume in (0.001, 0.015, 0.0, 150.0):
        result = mt5.order_send(market_order(mt5, "XAUUSD", "buy", volume))
        assert (result.retcode, result.comment) == (10014, "Invalid volume"), volume
    assert mt5.positions_total() == 0


def test_invalid_stops(mt5: SimTerminal) -> None:
    tick = mt5.symbol_info_tick("XAUUSD")
    cases = [round(tick.bid - 0.05, 2),  # inside the 10-point stops level
             round(tick.bid + 1, 2),     # stop loss above the price of a long
             tick.bid - 1.234]           # not on the 0.01 price grid
    for sl in cases:
        assert mt5.order_send(market_order(mt5, "XAUUSD", "buy", 0.1, sl=sl)).retcode == 10016, sl
    assert mt5.order_send(market_order(mt5, "XAUUSD", "buy", 0.1, tp=round(tick.bid - 1, 2))).retcode == 10016
    assert mt5.order_send(market_order(mt5, "XAUUSD", "sell", 0.1, sl=round(tick.ask - 1, 2))).retcode == 10016
    ok = mt5.order_send(market_order(mt5, "XAUUSD", "buy", 0.1, sl=round(tick.bid - 0.10, 2)))
    assert ok.retcode == 10009  # exactly the stops level is allowed


def test_filling_mode_against_the_symbol_bitmask(mt5: SimTerminal) -> None:
    assert mt5.symbol_info("XAUUSD").filling_mode == 2  # IOC only
    fok = mt5.order_send(market_order(mt5, "XAUUSD", "buy", 0.1, type_filling=mt5.ORDER_FILLING_FOK))
    assert (fok.retcode, fok.comment) == (10030, "Unsupported filling mode")
    # the classic trap: passing the bitmask value 2 as the request's filling = RETURN
    trap = mt5.order_send(market_order(mt5, "XAUUSD", "buy", 0.1, type_filling=mt5.symbol_info("XAUUSD").filling_mode))
    assert trap.retcode == 10030  # RETURN is not allowed under market execution
    assert mt5.order_send(market_order(mt5, "BTCUSD", "buy", 0.01, type_filling=mt5.ORDER_FILLING_IOC)).retcode == 10030
    assert mt5.order_send(market_order(mt5, "XAUUSD", "buy", 0.1, type_filling=mt5.ORDER_FILLING_IOC)).retcode == 10009
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1, type_filling=mt5.ORDER_FILLING_IOC)).retcode == 10009


def test_no_money(mt5: SimTerminal) -> None:
    result = mt5.order_send(market_order(mt5, "EURUSD", "buy", 50.0))  # ~56,600 USD margin at 1:100
    assert (result.retcode, result.comment) == (10019, "No money")
    check = mt5.order_check(market_order(mt5, "EURUSD", "buy", 50.0))
    assert check.retcode == 10019 and check.margin_free == 10000.0


def test_market_closed_at_the_weekend(clock: FakeClock, mt5: SimTerminal) -> None:
    position = open_position(mt5, "EURUSD", "buy", 0.1)
    clock.set(datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc))
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1)).retcode == 10018
    assert mt5.order_send(close_request(mt5, mt5.positions_get()[0])).retcode == 10018
    assert mt5.order_send(market_order(mt5, "BTCUSD", "buy", 0.01)).retcode == 10009
    assert mt5.positions_get(ticket=position.ticket)


@pytest.mark.parametrize("trade_mode, side, retcode", [
    (0, "buy", 10017), (3, "buy", 10044), (1, "sell", 10042), (2, "buy", 10043), (1, "buy", 10009)])
def test_symbol_trade_modes(tmp_path: Path, clock: FakeClock, trade_mode: int, side: str, retcode: int) -> None:
    mt5 = make_test_terminal(tmp_path, clock, symbols=("EURUSD",),
                             symbols_spec_path=spec_file(tmp_path, "EURUSD", trade_mode=trade_mode))
    assert mt5.initialize()
    assert mt5.order_send(market_order(mt5, "EURUSD", side, 0.1)).retcode == retcode
    assert mt5.symbol_info("EURUSD").trade_mode == trade_mode


def test_close_errors(clock: FakeClock, mt5: SimTerminal) -> None:
    position = open_position(mt5, "EURUSD", "buy", 0.1)
    assert mt5.order_send(close_request(mt5, position, 0.2)).retcode == 10038
    assert mt5.order_send(close_request(mt5, position, type=mt5.ORDER_TYPE_BUY)).retcode == 10013
    assert mt5.order_send(close_request(mt5, position)).retcode == 10009
    again = mt5.order_send(close_request(mt5, position))
    assert (again.retcode, again.comment) == (10036, "Position already closed")


def test_freeze_level_blocks_changes_near_the_stops(tmp_path: Path, clock: FakeClock) -> None:
    mt5 = make_test_terminal(tmp_path, clock, symbols=("EURUSD",),
                             symbols_spec_path=spec_file(tmp_path, "EURUSD", trade_freeze_level=30))
    assert mt5.initialize()
    tick = mt5.symbol_info_tick("EURUSD")
    position = open_position(mt5, "EURUSD", "buy", 0.1, sl=round(tick.bid - 0.0002, 5))
    assert mt5.order_send(close_request(mt5, position)).retcode == mt5.TRADE_RETCODE_FROZEN


def test_other_request_errors(mt5: SimTerminal) -> None:
    assert mt5.order_send({**market_order(mt5, "XAUUSD", "buy", 0.1), "symbol": "GOLD"}).retcode == 10013
    assert mt5.order_send(market_order(mt5, "XAUUSD", "buy", 0.1, type=mt5.ORDER_TYPE_BUY_LIMIT)).retcode == 10035
    pending = market_order(mt5, "XAUUSD", "buy", 0.1, action=mt5.TRADE_ACTION_PENDING)
    assert mt5.order_send(pending).retcode == 10013  # pending orders are not simulated
    assert mt5.orders_total() == 0 and mt5.orders_get() == ()


def test_instant_execution_requotes_a_stale_price(tmp_path: Path, clock: FakeClock) -> None:
    mt5 = make_test_terminal(tmp_path, clock, symbols=("EURUSD",),
                             symbols_spec_path=spec_file(tmp_path, "EURUSD", trade_exemode=1))
    assert mt5.initialize()
    request = market_order(mt5, "EURUSD", "buy", 0.1, deviation=5)
    assert mt5.order_send({**request, "price": request["price"] + 0.0010}).retcode == 10004
    assert mt5.order_send(request).retcode == 10009


def test_volume_limit(tmp_path: Path, clock: FakeClock) -> None:
    mt5 = make_test_terminal(tmp_path, clock, symbols=("EURUSD",),
                             symbols_spec_path=spec_file(tmp_path, "EURUSD", volume_limit=0.15))
    assert mt5.initialize()
    open_position(mt5, "EURUSD", "buy", 0.1)
    assert mt5.order_send(market_order(mt5, "EURUSD", "sell", 0.1)).retcode == 10034


def test_bad_arguments_are_refused_like_the_package(mt5: SimTerminal) -> None:
    long_comment = "x" * 32
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1, comment=long_comment)) is None
    assert mt5.last_error() == (-2, 'Invalid "comment" argument')
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1, comment="x" * 31)).retcode == 10009
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", "0.1")) is None
    assert mt5.last_error() == (-2, 'Invalid "volume" argument')
    request = market_order(mt5, "EURUSD", "buy", 0.1)
    del request["action"]
    assert mt5.order_send(request) is None and mt5.last_error() == (-2, 'Invalid "action" argument')
    assert mt5.order_send("buy") is None and mt5.last_error()[0] == -2
    assert mt5.order_check(market_order(mt5, "EURUSD", "buy", 0.1, sl="x")) is None


def test_order_check_reports_the_account_after_the_trade(mt5: SimTerminal) -> None:
    request = market_order(mt5, "XAUUSD", "buy", 0.1)
    check = mt5.order_check(request)
    margin = mt5.order_calc_margin(mt5.ORDER_TYPE_BUY, "XAUUSD", 0.1, request["price"])
    assert (check.retcode, check.comment, check.margin) == (0, "Done", margin)
    assert check.balance == 10000 - 0.35 and check.margin_free == pytest.approx(check.equity - margin)
    assert check.request.volume == 0.1 and mt5.positions_total() == 0
    bad = mt5.order_check(market_order(mt5, "XAUUSD", "buy", 0.1, sl=round(request["price"], 2)))
    assert (bad.retcode, bad.comment) == (10016, "Invalid stops")


def test_margin_and_profit_worked_examples(mt5: SimTerminal) -> None:
    # XAUUSD forex mode: 0.1 lot x 100 oz x 2000 / 100 leverage
    assert mt5.order_calc_margin(mt5.ORDER_TYPE_BUY, "XAUUSD", 0.1, 2000.0) == 200.0
    assert mt5.order_calc_profit(mt5.ORDER_TYPE_BUY, "XAUUSD", 0.1, 2000.0, 2001.5) == 15.0
    # EURUSD: 1 lot x 100,000 EUR / 100 = 1,000 EUR = 1,130 USD at 1.13
    assert mt5.order_calc_margin(mt5.ORDER_TYPE_SELL, "EURUSD", 1.0, 1.13) == 1130.0
    assert mt5.order_calc_profit(mt5.ORDER_TYPE_SELL, "EURUSD", 1.0, 1.13, 1.1290) == 100.0
    # BTCUSD CFD leverage with a 5x margin rate: effectively 1:20
    assert mt5.order_calc_margin(mt5.ORDER_TYPE_BUY, "BTCUSD", 1.0, 40000.0) == 2000.0
    assert mt5.order_calc_profit(mt5.ORDER_TYPE_BUY, "BTCUSD", 0.5, 40000.0, 39000.0) == -500.0
    assert mt5.order_calc_margin(mt5.ORDER_TYPE_BUY, "NOPE", 1.0, 1.0) is None
    assert mt5.last_error()[0] == -2


def test_stop_out_closes_the_losing_position(tmp_path: Path, clock: FakeClock) -> None:
    mt5 = make_test_terminal(tmp_path, clock, symbols=("BTCUSD",), starting_balance=1000)
    assert mt5.initialize()
    position = open_position(mt5, "BTCUSD", "buy", 0.2)  # margin ~427 USD; BTC fell 20% that week
    for _ in range(7 * 24):
        clock.advance(3600)
        if not mt5.positions_get():
            break
    out = mt5.history_deals_get(position=position.ticket)[-1]
    assert out.reason == mt5.DEAL_REASON_SO and out.comment.startswith("[so ")
    margin = mt5.order_calc_margin(mt5.ORDER_TYPE_BUY, "BTCUSD", 0.2, position.price_open)
    assert (1000 + out.profit) / margin * 100 < 50  # margin level under the 50 % stop-out level
    assert mt5.account_info().balance == pytest.approx(1000 + out.profit)


def test_positions_filters_and_history_queries(mt5: SimTerminal) -> None:
    assert mt5.positions_get() == ()
    gold = open_position(mt5, "XAUUSD", "buy", 0.1)
    euro = open_position(mt5, "EURUSD", "sell", 0.1)
    assert [p.ticket for p in mt5.positions_get(symbol="EURUSD")] == [euro.ticket]
    assert [p.ticket for p in mt5.positions_get(group="*USD*,!EUR*")] == [gold.ticket]
    assert mt5.positions_get(ticket=123) == ()
    assert mt5.positions_get("EURUSD") is None and mt5.last_error() == (-2, "Unnamed arguments not allowed")
    since, until = MONDAY_NOON - timedelta(days=1), MONDAY_NOON + timedelta(days=1)
    deals = mt5.history_deals_get(since, until)
    assert [d.type for d in deals] == [mt5.DEAL_TYPE_BALANCE, mt5.DEAL_TYPE_BUY, mt5.DEAL_TYPE_SELL]
    assert mt5.history_deals_total(since, until) == 3
    assert [d.symbol for d in mt5.history_deals_get(since, until, group="EUR*")] == ["EURUSD"]
    assert mt5.history_deals_get(int(since.timestamp()), int(until.timestamp())) == deals  # epoch ints too
    assert mt5.history_deals_get(until, until + timedelta(days=1)) == ()
    assert mt5.history_orders_total(since, until) == 2
    assert mt5.history_orders_get(position=euro.ticket)[0].ticket == euro.ticket
    assert mt5.history_deals_get() is None and mt5.last_error()[0] == -2


def test_concurrent_orders_from_many_threads(clock: FakeClock) -> None:
    mt5 = SimTerminal(clock, None, symbols=("EURUSD",))  # in-memory book: no fsync per order
    assert mt5.initialize()
    results: list[Any] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            result = mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.01))
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.retcode == 10009 for r in results)
    assert len({r.order for r in results}) == len({r.deal for r in results}) == 200
    assert mt5.positions_total() == 200
    assert mt5.account_info().balance == pytest.approx(10000 - 200 * 0.04, abs=1e-6)


def test_a_stop_jumped_over_fills_at_the_first_price_beyond_it(clock: FakeClock, mt5: SimTerminal) -> None:
    """Between bars the price jumps (previous close -> next open): no fill at a level never quoted."""
    bars = recorded_xau().loc[xau_source(int(MONDAY_NOON.timestamp()))[1]:]
    running_low = np.minimum.accumulate(bars.low.to_numpy())
    gap = next(j for j in range(1, len(bars)) if bars.open.iloc[j] < running_low[j - 1] - 0.015)
    sl = round((bars.open.iloc[gap] + running_low[gap - 1]) / 2, 2)
    assert bars.open.iloc[gap] < sl < running_low[gap - 1]
    position = open_position(mt5, "XAUUSD", "buy", 0.1, sl=sl)
    run_until_flat(clock, mt5, gap + 5)
    out = mt5.history_deals_get(position=position.ticket)[-1]
    assert out.reason == mt5.DEAL_REASON_SL and out.price == bars.open.iloc[gap] < sl
    assert out.time == int((MONDAY_NOON + timedelta(minutes=gap)).timestamp())


def test_slippage_applies_to_market_fills_and_stop_losses(tmp_path: Path, clock: FakeClock) -> None:
    mt5 = make_test_terminal(tmp_path, clock, symbols=("XAUUSD",), slippage_points=3)
    assert mt5.initialize()
    tick = mt5.symbol_info_tick("XAUUSD")
    sl = round(tick.bid - 3.0, 2)
    result = mt5.order_send(market_order(mt5, "XAUUSD", "buy", 0.1, sl=sl))
    assert result.price == round(tick.ask + 0.03, 2)
    run_until_flat(clock, mt5, 240)
    assert mt5.history_deals_get(position=result.order)[-1].price == round(sl - 0.03, 2)


def test_a_long_jump_of_the_clock_finds_the_first_stop_hit(clock: FakeClock, mt5: SimTerminal) -> None:
    position = open_position(mt5, "BTCUSD", "buy", 0.01, sl=35000.0)
    clock.advance(12 * 86400)  # one call twelve days later (scanned a week at a time)
    assert mt5.positions_get() == ()
    out = mt5.history_deals_get(position=position.ticket)[-1]
    btc = read_bars(DATA / "bars" / "BTCPERP_M1_2022-01-16_2022-01-29.csv")
    weeks = (MONDAY_NOON - btc.index[0].to_pydatetime()) // WEEK
    first_touch = btc.loc[btc.index >= MONDAY_NOON - weeks * WEEK].query("low <= 35000").index[0]
    assert out.time // 60 * 60 == int((first_touch + weeks * WEEK).timestamp())
    assert out.price == 35000.0 and out.reason == mt5.DEAL_REASON_SL


def test_the_echoed_request_carries_the_packages_defaults_for_fields_left_out(mt5: SimTerminal) -> None:
    """A request with only action, symbol, volume, type and filling: order_check and order_send
    echo every other field at MT5's default, with its type (comment the empty string, the price
    fields 0.0 floats, the integer fields 0 ints)."""
    request = {"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1, "type": mt5.ORDER_TYPE_BUY,
               "type_filling": mt5.ORDER_FILLING_FOK}
    expected = {"action": mt5.TRADE_ACTION_DEAL, "magic": 0, "order": 0, "symbol": "EURUSD", "volume": 0.1,
                "price": 0.0, "stoplimit": 0.0, "sl": 0.0, "tp": 0.0, "deviation": 0, "type": mt5.ORDER_TYPE_BUY,
                "type_filling": mt5.ORDER_FILLING_FOK, "type_time": 0, "expiration": 0, "comment": "",
                "position": 0, "position_by": 0}
    types = {name: float if name in ("volume", "price", "stoplimit", "sl", "tp") else
             str if name in ("symbol", "comment") else int for name in expected}
    check = mt5.order_check(dict(request))
    sent = mt5.order_send(dict(request))
    assert (check.retcode, sent.retcode) == (0, mt5.TRADE_RETCODE_DONE)
    for echoed in (check.request, sent.request):
        assert echoed._fields == tuple(expected)
        assert echoed._asdict() == expected
        assert {name: type(value) for name, value in echoed._asdict().items()} == types
        assert type(echoed.comment) is str and echoed.comment == ""
        assert type(echoed.stoplimit) is float and echoed.stoplimit == 0.0
