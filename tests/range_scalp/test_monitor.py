"""The range-scalp monitor over the simulated terminal: entries on new M5 bars, signal-only and
auto-execute modes, registration with the range and the state file (see test_monitor_rig.py for
the rig and the data moments the tests use)."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from engines.range_detection import RangeStructure
from monitors.range_scalp import last_closed_bar_open
from monitors.range_scalp_state import RangeBook
from tests.range_scalp.test_monitor_rig import EUR_SETUP_AT, EUR_SETUP_START, UTC, Rig

SIGNAL_FIELDS = {"symbol", "side", "entry", "sl", "tp", "range_high", "range_low", "reasons"}


def test_last_closed_bar_open() -> None:
    at = datetime(2026, 1, 6, 3, 40, 0, tzinfo=UTC)
    assert last_closed_bar_open(at) == int(datetime(2026, 1, 6, 3, 35, tzinfo=UTC).timestamp())
    assert last_closed_bar_open(at - timedelta(seconds=1)) == int(datetime(2026, 1, 6, 3, 30, tzinfo=UTC).timestamp())


def test_entries_are_evaluated_once_per_new_closed_m5_bar_not_every_step(tmp_path) -> None:
    rig = Rig(tmp_path, symbols=("EURUSD", "XAUUSD"), changes={"summary_minutes": 120})
    steps = rig.run_until(EUR_SETUP_START + timedelta(minutes=20))  # 03:30:00 .. 03:50:00, every 5 s
    assert steps == 241
    bars = [int((EUR_SETUP_START + timedelta(minutes=m)).timestamp()) for m in (-5, 0, 5, 10, 15)]
    for symbol in ("EURUSD", "XAUUSD"):
        seen = [bar for s, bar in rig.evaluations if s == symbol]
        assert seen == bars, symbol  # each closed bar exactly once, in order, none skipped
    assert len(rig.evaluations) == 10
    # every evaluated bar is one decision in WhyNoTrade, and only those
    assert sum(rig.monitor.why._checks.values()) == 10
    # the bar is persisted: a new monitor on the same state does not evaluate it again
    again = rig.make_monitor()
    again.recover(rig.clock.now())
    rig.evaluations.clear()
    again.step(rig.clock.now())
    assert rig.evaluations == []


def test_signal_only_mode_journals_and_notifies_and_places_nothing(tmp_path) -> None:
    rig = Rig(tmp_path)  # the shipped config: auto_execute is false
    assert rig.config().defaults.execution.auto_execute is False
    rig.run_until(EUR_SETUP_AT)
    [signal] = rig.notes_of("range_signal")
    assert SIGNAL_FIELDS <= set(signal)
    assert signal["symbol"] == "EURUSD" and signal["side"] == "buy" and signal["setup"] == "vwap_reversion"
    assert signal["sl"] < signal["entry"] < signal["tp"]
    assert signal["range_low"] < signal["range_high"] and signal["reasons"]
    [journaled] = rig.events("signal")
    assert journaled["symbol"] == "EURUSD" and journaled["entry"] == signal["entry"]
    assert journaled["strategy"] == "range_scalp" and journaled["reason"] == "auto_execute is off"
    assert rig.monitor.last_decisions["EURUSD"]["failed"] == "signal_only"
    assert rig.stack.broker.positions() == [] and rig.stack.registry.open_trades() == []
    assert not rig.events("intent")
    # the 03:45 bar is another vwap_reversion buy: the same signal is not sent again within the spacing
    rig.run_until(EUR_SETUP_AT + timedelta(minutes=10))
    assert len(rig.notes_of("range_signal")) == 1
    assert rig.monitor.last_decisions["EURUSD"]["failed"] == "signal_only"
    assert "same signal sent at 03:40Z" in rig.monitor.last_decisions["EURUSD"]["detail"]


def test_a_setup_below_the_auto_execute_score_is_only_a_signal(tmp_path) -> None:
    rig = Rig(tmp_path, changes={"defaults": {"execution": {"auto_execute": True, "auto_execute_min_score": 90}}})
    rig.run_until(EUR_SETUP_AT)
    assert rig.monitor.last_decisions["EURUSD"]["failed"] == "score_below_auto"
    assert len(rig.notes_of("range_signal")) == 1
    assert rig.stack.broker.positions() == []


def test_auto_execute_places_a_trade_registered_with_its_range(tmp_path) -> None:
    rig = Rig(tmp_path, changes={"defaults": {"execution": {"auto_execute": True, "auto_execute_min_score": 55}}})
    rig.run_until(EUR_SETUP_AT)
    assert rig.monitor.last_decisions["EURUSD"]["failed"] is None
    assert rig.notes_of("range_signal") == []
    [position] = rig.stack.broker.positions()
    assert position.magic == rig.range_magic() and position.side == "buy"
    [trade] = rig.stack.registry.open_trades("range_scalp")
    assert trade.ticket == position.ticket and trade.meta["setup"] == "vwap_reversion"
    # the book: range, setup, R from the fill, entry context
    [book_trade] = rig.monitor.book.open_trades()
    assert book_trade.ticket == trade.ticket and book_trade.strategy == "vwap_reversion"
    assert book_trade.range == RangeStructure.from_dict(trade.meta["range"])
    assert book_trade.entry == trade.entry and book_trade.sl == trade.sl
    assert book_trade.risk == pytest.approx(abs(trade.entry - trade.sl))
    assert book_trade.meta["confluence_score"] == trade.meta["confluence_score"]
    assert book_trade.meta["planned_rr"] == trade.meta["rr"] and book_trade.meta["session"] == "asian"
    assert book_trade.meta["client_id"] == trade.client_id
    # saved: what a restart reads from runtime/state/range_scalp.json
    assert (rig.stack.runtime / "state" / "range_scalp.json").is_file()
    reloaded = RangeBook(rig.stack.store)
    report = reloaded.load()
    assert report.trades == 1 and not report.corrupt
    assert reloaded.get(trade.ticket) == book_trade
    [registered] = rig.events("range_registered")
    assert registered["ticket"] == trade.ticket and registered["setup"] == "vwap_reversion"
    assert registered["range_high"] == book_trade.range.high and registered["range_low"] == book_trade.range.low
    assert registered["trade_type"] == "range_scalp" and registered["lot"] == trade.volume
    assert [e["event"] for e in rig.events()][-3:] == ["intent", "opened", "range_registered"]
    # the next bar with a setup does not open a second trade on the symbol
    rig.run_until(EUR_SETUP_AT + timedelta(minutes=5))
    assert len(rig.stack.registry.open_trades("range_scalp")) + len(
        rig.stack.registry.closed_trades("range_scalp")) == 1
    assert rig.monitor.last_decisions["EURUSD"]["failed"] in ("open_trade", "activity", "reentry")


def test_switched_off_symbol_is_not_evaluated(tmp_path) -> None:
    rig = Rig(tmp_path, symbols=("EURUSD", "XAUUSD"), changes={"overrides": {"XAUUSD": {"enabled": False}}})
    rig.run_until(EUR_SETUP_START + timedelta(minutes=5))
    assert {s for s, _ in rig.evaluations} == {"EURUSD"}
    rig.set_config(changes={"enabled": False})
    rig.evaluations.clear()
    rig.run_until(EUR_SETUP_START + timedelta(minutes=15))
    assert rig.evaluations == []


def test_h1_bars_are_asked_for_once_per_closable_hour_and_shared_with_the_exits(tmp_path) -> None:
    """Entries and exits read the H1 bars through the monitor's HourBars: asked of the feed again
    only once another H1 bar can have closed; the decisions see what a fetch would give."""
    rig = Rig(tmp_path, symbols=("EURUSD",), changes={"summary_minutes": 120})
    asked: list[datetime] = []
    real_get = rig.feed.get
    rig.feed.get = lambda symbol, timeframe, count: (timeframe == "H1" and asked.append(rig.clock.now())) or \
        real_get(symbol, timeframe, count)
    assert rig.monitor.exits._hour_bars is rig.monitor.hour_bars
    rig.run_until(EUR_SETUP_START + timedelta(minutes=50))  # 03:30 .. 04:20: the 03:00 bar closes at 04:00
    assert asked == [EUR_SETUP_START, EUR_SETUP_START.replace(hour=4, minute=0)]  # the first step, then
    # the step at 04:00, when the 03:00 bar closed (601 steps in all)
    fresh = rig.feed.get("EURUSD", "H1", rig.config().for_symbol("EURUSD").data.lookback_h1_bars)
    kept = rig.monitor.hour_bars.get("EURUSD", rig.config().for_symbol("EURUSD").data.lookback_h1_bars,
                                     rig.clock.now())
    assert np.array_equal(kept.time_s, fresh.time_s) and np.array_equal(kept.close, fresh.close)
