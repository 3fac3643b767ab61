"""Kill and restart: the range-scalp book, the registry and the simulated terminal's book are
files in tmp_path; a "kill" drops every object without any shutdown (as SIGKILL would), the
clock moves on while the bot is "down", and a NEW stack and monitor are built on the same files."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

from execution.executor import magic_for
from monitors.range_scalp_state import RangeBook
from tests.range_scalp.test_monitor_rig import EUR_SETUP_AT, ONLY_CANDLES_INVALIDATE, XAU_NOON, Rig, deep_update

# XAUUSD trades sit in constructed wide ranges: only candles outside them may invalidate them (an
# M15 break of structure inside such a range would otherwise close them at the first pass)
XAU_CALM = {"overrides": {"XAUUSD": ONLY_CANDLES_INVALIDATE["defaults"]}}
AUTO = deep_update({"defaults": {"execution": {"auto_execute": True, "auto_execute_min_score": 55}}}, XAU_CALM)


def wide_xau_trade(rig: Rig):
    """An XAUUSD buy with $25 stops inside a wide range: nothing closes it for hours."""
    return rig.open_range_trade("XAUUSD", "buy", sl_distance=25.0, tp_distance=25.0, range_low=1950.0,
                                range_high=2100.0, range_atr=1.5)


def restart(rig: Rig, changes: dict | None = XAU_CALM, symbols=("EURUSD", "XAUUSD"), recover: bool = True) -> Rig:
    """A new process on the same files and the same (moved) clock."""
    return Rig(rig.tmp_path, clock=rig.clock, symbols=symbols, changes=changes, recover=recover)


def test_kill_and_restart_recovers_open_trades_journals_the_close_while_down_and_duplicates_nothing(tmp_path):
    rig = Rig(tmp_path, symbols=("EURUSD", "XAUUSD"), changes=AUTO)
    xau = wide_xau_trade(rig)
    rig.run_until(EUR_SETUP_AT)
    [eur] = rig.monitor.book.open_trades("EURUSD")  # the monitor's own auto-executed trade
    assert eur.strategy == "vwap_reversion" and eur.side == "buy"
    rig.run_until(EUR_SETUP_AT + timedelta(seconds=30))
    # SIGKILL: no shutdown, no flush; the objects are simply dropped
    clock, del_rig = rig.clock, rig
    del rig
    clock.advance(20 * 60)  # while down, the EURUSD stop (1.13292) is hit at 03:49:30

    new = restart(del_rig, changes=AUTO, recover=False)
    report = new.monitor.recover(clock.now())
    assert report is not None
    assert report.loaded == 2 and report.resumed == [xau.ticket]
    [down] = report.closed_while_down
    assert down["ticket"] == eur.ticket and down["reason"] == "broker:sl" and down["while_down"] is True
    assert down["exit"] is not None and down["pnl"] < 0 and down["r"] < 0
    assert report.orphans == [] and report.pending == []
    # the registry recorded the close (exit price, P&L and reason from the deal history)
    [closed] = new.stack.registry.closed_trades("range_scalp")
    assert closed.ticket == eur.ticket and closed.close_reason == "broker:sl" and closed.pnl < 0
    assert closed.closed_at == "2026-01-06T03:49:30+00:00"
    # the surviving trade is managed again: the exit manager runs at the first step
    assert [t.ticket for t in new.monitor.book.open_trades()] == [xau.ticket]
    assert new.monitor.book.get(xau.ticket) == xau
    new.step()
    assert new.monitor.last_pass is not None and new.monitor.last_pass.trades == 1
    assert new.notes_of("range_recovered")[0]["closed_while_down"][0]["ticket"] == eur.ticket
    # the re-entry memory survived: the EURUSD stop-out is the symbol's last exit
    last_exit = new.monitor.book.history("EURUSD", clock.now()).last_exit
    assert last_exit is not None and last_exit.reason == "broker:sl"

    # nothing duplicated: a second recovery and more steps add no close, no exit, no entry
    new.monitor.recover(clock.now())
    new.run_until(clock.now() + timedelta(minutes=10))
    events = Counter(e["event"] for e in new.events())
    assert events["opened"] == 2 and events["intent"] == 2
    assert events["closed"] == 1 and events["range_exit"] == 1 and events["range_registered"] == 2
    assert [p.ticket for p in new.stack.broker.positions()] == [xau.ticket]
    assert [t.ticket for t in new.stack.registry.open_trades("range_scalp")] == [xau.ticket]
    # no bar was evaluated twice across the restart
    bars = [bar for s, bar in del_rig.evaluations + new.evaluations if s == "EURUSD"]
    assert len(bars) == len(set(bars)) and bars == sorted(bars)


def test_a_trade_the_crash_left_out_of_the_book_is_rebuilt_from_the_registry_and_managed(tmp_path):
    rig = Rig(tmp_path, start=XAU_NOON, symbols=("XAUUSD",), changes=XAU_CALM)
    # filled and registered by the executor, but the process died before the book's save
    trade = rig.open_range_trade("XAUUSD", "buy", sl_distance=40.0, tp_distance=40.0, range_low=1990.0,
                                 range_high=2030.0, range_atr=1.0, register=False)
    rig.clock.advance(61 * 60)
    new = restart(rig, symbols=("XAUUSD",), recover=False)
    report = new.monitor.recover(rig.clock.now())
    assert report.rebuilt == [trade.ticket] and report.resumed == [trade.ticket]
    rebuilt = new.monitor.book.get(trade.ticket)
    assert rebuilt is not None and rebuilt.strategy == "bb_fade" and rebuilt.range.high == 2030.0
    assert rebuilt.risk == trade.entry - trade.initial_sl
    new.step()  # managed: an hour in, near its entry: the stagnation exit closes it
    assert new.stack.broker.position(trade.ticket) is None
    assert [e["reason"] for e in new.events("range_exit")] == ["stagnation_energy_loss"]


def test_a_position_at_the_range_magic_without_state_is_an_orphan_left_to_its_stops(tmp_path):
    rig = Rig(tmp_path, start=XAU_NOON, symbols=("XAUUSD",), changes=XAU_CALM, recover=False)
    quote = rig.stack.broker.quote("XAUUSD")
    magic = magic_for(rig.stack.holder.current, "range_scalp")
    result = rig.stack.broker.market_order("XAUUSD", "sell", 0.01, quote.ask + 20, quote.bid - 20, magic,
                                           "manual-1", 20)
    report = rig.monitor.recover(rig.clock.now())
    [orphan] = report.orphans
    assert orphan["ticket"] == result.position and orphan["magic"] == magic
    assert rig.events("orphan")[0]["ticket"] == result.position
    [note] = rig.notes_of("range_orphans")
    assert note["count"] == 1
    assert any(e["error_type"] == "orphaned_trades" and e["severity"] == "high" for e in rig.events("range_error"))
    assert rig.monitor.book.open_trades() == [] and rig.stack.broker.position(result.position) is not None
    assert rig.monitor.book.entries_disabled is None  # an orphan is HIGH, not critical


def test_a_corrupt_state_file_is_kept_aside_reported_as_critical_and_rebuilt(tmp_path):
    rig = Rig(tmp_path, start=XAU_NOON, symbols=("XAUUSD",), changes=XAU_CALM)
    trade = wide_xau_trade(rig)
    state = rig.stack.runtime / "state" / "range_scalp.json"
    state.write_text('{"version": 1, "trades": {"', encoding="utf-8")  # torn by a crash or an editor
    (state.parent / "range_scalp.json.bak").unlink(missing_ok=True)  # no good backup either
    new = restart(rig, symbols=("XAUUSD",), recover=False)
    report = new.monitor.recover(rig.clock.now())
    assert report.problems and "unparsable" in report.problems[0]
    assert list(state.parent.glob("range_scalp.json.corrupt-*"))  # the evidence is kept
    assert report.rebuilt == [trade.ticket]  # the registry's copy of the range
    [error] = [e for e in new.events("range_error") if e["error_type"] == "state_corruption"]
    assert error["severity"] == "critical"
    reloaded = RangeBook(new.stack.store)
    assert reloaded.load().trades == 1  # and the book is whole again on disk


def test_a_breakeven_move_that_reached_the_broker_before_the_crash_counts_as_made(tmp_path):
    # a sell at 12:28 (bid ~2007.44); at 12:31 the ask is ~2004.9, so a stop at the entry is valid
    rig = Rig(tmp_path, start=XAU_NOON + timedelta(minutes=28), symbols=("XAUUSD",), changes=XAU_CALM)
    trade = rig.open_range_trade("XAUUSD", "sell", sl_distance=10.0, tp_distance=20.0, range_low=1995.0,
                                 range_high=2020.0, range_atr=1.0, risk=2.0)
    rig.clock.advance(180)
    breakeven = round(trade.entry - 0.1, 2)
    rig.stack.broker.modify_sltp(trade.ticket, breakeven, trade.tp)  # sent; the process dies before saving
    new = restart(rig, symbols=("XAUUSD",), recover=False)
    new.monitor.recover(rig.clock.now())
    recovered = new.monitor.book.get(trade.ticket)
    assert recovered is not None and recovered.sl == breakeven and recovered.breakeven_armed
    assert recovered.risk == 2.0  # 1 R stays the initial one
    new.step()  # the exit pass: +1 R in the first 30 min, but the move is made: nothing is sent again
    assert new.monitor.last_pass is not None and new.monitor.last_pass.trades == 1
    assert new.monitor.last_pass.stops_moved == [] and not new.events("modified")
    assert new.stack.broker.position(trade.ticket).sl == breakeven


def test_an_unreachable_broker_at_start_defers_recovery_until_it_answers(tmp_path):
    rig = Rig(tmp_path, start=XAU_NOON, symbols=("XAUUSD",), changes=XAU_CALM)
    trade = wide_xau_trade(rig)
    new = restart(rig, symbols=("XAUUSD",), recover=False)
    new.stack.terminal.faults.schedule("disconnect", seconds=20)
    assert new.monitor.recover(rig.clock.now()) is None
    new.step()  # no exits and no entries before the book is matched with the broker
    assert not new.monitor.recovered and new.monitor.last_pass is None and new.evaluations == []
    new.stack.clock.advance(30)
    new.stack.broker.connect()  # the adapter's reconnect (bot.py's supervisor does this live)
    new.step()
    assert new.monitor.recovered and new.monitor.recovery.resumed == [trade.ticket]
    assert new.monitor.last_pass is not None and new.monitor.last_pass.trades == 1


def test_a_trade_the_registry_lost_is_adopted_from_the_book_and_managed(tmp_path):
    rig = Rig(tmp_path, start=XAU_NOON, symbols=("XAUUSD",), changes=XAU_CALM)
    trade = rig.open_range_trade("XAUUSD", "buy", sl_distance=40.0, tp_distance=40.0, range_low=1990.0,
                                 range_high=2030.0, range_atr=1.0, opened_minutes_ago=61)
    rig.stack.store.save("trades_range_scalp", {"open": {}, "closed": []})  # e.g. an older registry file
    new = restart(rig, symbols=("XAUUSD",), recover=False)
    report = new.monitor.recover(rig.clock.now())
    assert report.adopted == [trade.ticket] and report.resumed == [trade.ticket] and report.orphans == []
    adopted = new.stack.registry.get(trade.ticket)
    assert adopted is not None and adopted.client_id == trade.meta["client_id"]
    assert adopted.meta["range"] == trade.range.to_dict() and adopted.initial_sl == trade.sl
    new.step()
    assert new.stack.broker.position(trade.ticket) is None
    [closed] = new.stack.registry.closed_trades("range_scalp")
    assert closed.close_reason == "stagnation_energy_loss" and closed.pnl is not None
