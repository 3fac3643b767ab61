"""The range-scalp exit manager over the simulated terminal: each rule closes or moves the stop
as it says, by priority; closes are retried, bounded in slippage, then escalated; bad data holds.

Trades are real positions opened through the executor; their ranges (and for some tests the R
unit or the open time) are constructed to force one rule (test_monitor_rig.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from engines.range_exits import ExitAction, reentry_allowed
from monitors.range_scalp_exits import PlannedExit, adverse_move_pct
from tests.range_scalp.test_monitor_rig import ONLY_CANDLES_INVALIDATE, XAU_NOON, Rig

SYMBOLS = ("XAUUSD",)


def stagnant_trade(rig: Rig):
    """An XAUUSD buy opened 61 min ago, 1 R = $20 (price barely moved in R), inside a wide range."""
    return rig.open_range_trade("XAUUSD", "buy", sl_distance=20.0, tp_distance=20.0, range_low=1990.0,
                                range_high=2030.0, range_atr=1.0, opened_minutes_ago=61)


def broken_range_trade(rig: Rig):
    """An XAUUSD buy at ~2009 in a range 2015-2030: the last M5 closes are all below it."""
    return rig.open_range_trade("XAUUSD", "buy", sl_distance=5.0, tp_distance=10.0, range_low=2015.0,
                                range_high=2030.0, range_atr=1.0)


def test_adverse_move_pct() -> None:
    assert adverse_move_pct("buy", 2000.0, 1997.0) == pytest.approx(0.15)
    assert adverse_move_pct("buy", 2000.0, 2003.0) == 0.0  # in favour: no slippage
    assert adverse_move_pct("sell", 2000.0, 2001.0) == pytest.approx(0.05)


def test_invalidation_closes_at_once_and_blocks_reentry_into_that_range(tmp_path) -> None:
    rig = Rig(tmp_path, start=XAU_NOON, symbols=SYMBOLS, changes=ONLY_CANDLES_INVALIDATE)
    trade = broken_range_trade(rig)
    rig.step()  # the exit manager runs once immediately after start
    assert rig.stack.broker.position(trade.ticket) is None
    [closed] = rig.stack.registry.closed_trades("range_scalp")
    assert closed.close_reason == "candles_outside_range" and closed.exit_price is not None
    [exit_line] = rig.events("range_exit")
    assert exit_line["reason"] == "candles_outside_range" and exit_line["priority"] == "high"
    assert exit_line["while_down"] is False and exit_line["ticket"] == trade.ticket
    assert exit_line["r"] < 0.8 and "last 2 M5 closes outside" in exit_line["detail"]
    assert rig.monitor.book.open_trades() == []
    # re-entry: never into the same range after its invalidation, even after the cool-down
    params = rig.config().for_symbol("XAUUSD")
    history = rig.monitor.book.history("XAUUSD", rig.clock.now())
    assert history.last_exit is not None and history.last_exit.reason == "candles_outside_range"
    allowed, why = reentry_allowed(history.last_exit, trade.range, rig.clock.now() + timedelta(minutes=30), params)
    assert not allowed and "waiting for a new range" in why


def test_exits_run_by_priority_high_before_medium(tmp_path) -> None:
    rig = Rig(tmp_path, start=XAU_NOON, symbols=SYMBOLS, changes=ONLY_CANDLES_INVALIDATE)
    stagnant = stagnant_trade(rig)  # registered first
    broken = broken_range_trade(rig)
    rig.step()
    reasons = [(e["ticket"], e["reason"], e["priority"]) for e in rig.events("range_exit")]
    assert reasons == [(broken.ticket, "candles_outside_range", "high"),
                       (stagnant.ticket, "stagnation_energy_loss", "medium")]
    assert rig.stack.broker.positions() == []
    assert rig.monitor.last_pass is not None and sorted(rig.monitor.last_pass.closed) == sorted(
        [stagnant.ticket, broken.ticket])


def test_stagnation_waits_for_the_exit_interval(tmp_path) -> None:
    rig = Rig(tmp_path, start=XAU_NOON, symbols=SYMBOLS)
    rig.step()  # the first pass, with nothing open
    trade = stagnant_trade(rig)
    rig.step(60)  # one minute later: no pass yet (every 300 s)
    assert rig.stack.broker.position(trade.ticket) is not None
    rig.step(240)
    assert rig.stack.broker.position(trade.ticket) is None
    [exit_line] = rig.events("range_exit")
    assert exit_line["reason"] == "stagnation_energy_loss" and exit_line["minutes_in_trade"] >= 60


def test_breakeven_stop_is_moved_once_and_only_after_the_broker_accepted_it(tmp_path) -> None:
    # a sell at 12:28 (bid ~2007.44); by 12:31 the ask is ~2004.9: more than +0.5 R with 1 R = $2
    rig = Rig(tmp_path, start=XAU_NOON + timedelta(minutes=28), symbols=SYMBOLS, changes=ONLY_CANDLES_INVALIDATE)
    trade = rig.open_range_trade("XAUUSD", "sell", sl_distance=10.0, tp_distance=20.0, range_low=1995.0,
                                 range_high=2020.0, range_atr=1.0, risk=2.0)
    rig.stack.terminal.faults.schedule("reject", retcode=10018)  # the broker refuses the first stop change
    rig.step(180)
    assert [e["event"] for e in rig.events() if e["event"] in ("modified", "modify_failed")] == ["modify_failed"]
    book_trade = rig.monitor.book.get(trade.ticket)
    assert book_trade is not None and not book_trade.breakeven_armed and book_trade.sl == trade.sl
    rig.step(300)  # the next pass sends it again, and now it is accepted
    expected = round(trade.entry - 0.1 * 1.0, 2)  # entry - 0.1 ATRe, on the tick
    position = rig.stack.broker.position(trade.ticket)
    assert position is not None and position.sl == pytest.approx(expected)
    book_trade = rig.monitor.book.get(trade.ticket)
    assert book_trade.breakeven_armed and book_trade.sl == pytest.approx(expected)
    rig.step(300)  # armed: never sent again
    assert [e["event"] for e in rig.events() if e["event"] in ("modified", "modify_failed")] == [
        "modify_failed", "modified"]
    assert rig.monitor.exits.counters["stops_moved"] == 1
    assert rig.stack.broker.position(trade.ticket) is not None  # still in profit: held


def test_a_failing_close_is_retried_then_escalated_once_and_closed_later(tmp_path) -> None:
    rig = Rig(tmp_path, start=XAU_NOON, symbols=SYMBOLS)
    rig.step()
    trade = stagnant_trade(rig)
    faults = rig.stack.terminal.faults
    faults.schedule("reject", count=100, retcode=10018)  # market closed: every close refused
    before = rig.clock.now()
    rig.step(300)
    config = rig.config()
    attempts = config.exit_retry_attempts
    per_call = rig.stack.holder.current.bot.execution.close_retries
    assert len([f for f in faults.injected if f.kind == "reject"]) == attempts * per_call
    # 2 s between the monitor's attempts, and between the executor's own retries inside each
    waited = (rig.clock.now() - before).total_seconds() - 300
    assert waited == pytest.approx((attempts - 1) * config.exit_retry_interval_seconds
                                   + attempts * (per_call - 1) * 2.0)
    [escalation] = rig.notes_of("close_failed")
    assert escalation["ticket"] == trade.ticket and escalation["attempts"] == attempts
    assert escalation["action"] == "manual close required" and escalation["reason"] == "stagnation_energy_loss"
    assert rig.events("range_close_failed")[0]["ticket"] == trade.ticket
    assert any(e["error_type"] == "exit_order_fails" for e in rig.events("range_error"))
    assert rig.stack.broker.position(trade.ticket) is not None and rig.monitor.book.get(trade.ticket) is not None
    rig.step(300)  # still refused: journaled again, the operator is not told twice
    assert len(rig.events("range_close_failed")) == 2 and len(rig.notes_of("close_failed")) == 1
    faults.clear("reject")
    rig.step(300)
    assert rig.stack.broker.position(trade.ticket) is None
    assert [e["reason"] for e in rig.events("range_exit")] == ["stagnation_energy_loss"]
    assert rig.monitor.exits.escalated == set()


def test_slippage_bound_stops_chasing_a_price_that_ran_away(tmp_path) -> None:
    rig = Rig(tmp_path, start=XAU_NOON, symbols=SYMBOLS)
    trade = stagnant_trade(rig)
    bid = rig.stack.broker.quote("XAUUSD").bid
    config = rig.config()
    item = PlannedExit(trade, ExitAction("close", "stagnation_energy_loss", "medium"), reference_price=bid * 1.01)
    assert rig.monitor.exits.close(item, config, rig.clock.now()) is False  # 1% worse than decided, bound 0.15%
    assert rig.stack.broker.position(trade.ticket) is not None
    assert not rig.events("close_failed")  # nothing was even sent to the broker
    [escalation] = rig.notes_of("close_failed")
    assert "worse than" in escalation["error"] and "bound 0.15%" in escalation["error"]


def test_exits_hold_on_stale_data_and_the_broker_stops_stay(tmp_path) -> None:
    rig = Rig(tmp_path, start=XAU_NOON, symbols=SYMBOLS)
    rig.step()
    trade = stagnant_trade(rig)
    rig.stack.terminal.faults.schedule("stale_quotes", seconds=1800)  # the terminal's view freezes
    rig.step(420)
    assert rig.monitor.last_pass is not None and "XAUUSD" in rig.monitor.last_pass.skipped_symbols
    assert rig.monitor.last_pass.holds == 1
    assert rig.stack.broker.position(trade.ticket) is not None


def test_a_pass_without_open_range_trades_fetches_nothing_and_is_counted(tmp_path) -> None:
    rig = Rig(tmp_path, start=XAU_NOON, symbols=SYMBOLS, changes=ONLY_CANDLES_INVALIDATE)
    asked: list[tuple[str, str]] = []
    real_get = rig.feed.get
    rig.feed.get = lambda symbol, timeframe, count: asked.append((symbol, timeframe)) or real_get(
        symbol, timeframe, count)
    report = rig.monitor.exits.run_pass(rig.config(), rig.config().for_symbol, rig.clock.now())
    assert report.trades == 0 and report.actions == [] and not asked
    assert rig.monitor.exits.counters["passes"] == 1
    stagnant_trade(rig)  # with a trade the pass builds the market: the M5 and H1 bars are asked for
    rig.monitor.exits.run_pass(rig.config(), rig.config().for_symbol, rig.clock.now())
    assert ("XAUUSD", "M5") in asked and ("XAUUSD", "H1") in asked
    assert rig.monitor.exits.counters["passes"] == 2
