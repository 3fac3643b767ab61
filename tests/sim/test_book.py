"""The simulated broker's book survives a killed bot, like a real terminal's account."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from execution.simterminal import SimTerminal, make_test_terminal
from execution.simterminal.book import BookError
from monitors.clock import FakeClock
from tests.sim.conftest import MONDAY_NOON
from tests.sim.helpers import close_request, market_order, open_position


def fresh(tmp_path: Path, clock: FakeClock, **options: object) -> SimTerminal:
    terminal = make_test_terminal(tmp_path, clock, **options)
    assert terminal.initialize()
    return terminal


def test_positions_balance_and_history_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    first = fresh(tmp_path, clock)
    tick = first.symbol_info_tick("XAUUSD")
    kept = open_position(first, "XAUUSD", "buy", 0.3, sl=round(tick.bid - 30, 2), tp=round(tick.bid + 30, 2))
    clock.advance(60)
    assert first.order_send(close_request(first, kept, 0.1)).retcode == 10009
    before = (first.positions_get(), first.account_info().balance,
              first.history_deals_get(MONDAY_NOON - timedelta(days=1), MONDAY_NOON + timedelta(days=1)))
    book = tmp_path / "sim_book.json"
    assert json.loads(book.read_text())["positions"][0]["ticket"] == kept.ticket
    del first  # the bot is killed; the book file stays

    second = fresh(tmp_path, clock)
    after = (second.positions_get(), second.account_info().balance,
             second.history_deals_get(MONDAY_NOON - timedelta(days=1), MONDAY_NOON + timedelta(days=1)))
    assert after == before
    assert after[0][0].volume == pytest.approx(0.2)
    new = open_position(second, "EURUSD", "buy", 0.1)
    assert new.ticket > max(d.order for d in after[2])  # ticket counters continue


def test_stops_hit_while_the_bot_was_down_are_found_after_restart(tmp_path: Path, clock: FakeClock) -> None:
    first = fresh(tmp_path, clock)
    tick = first.symbol_info_tick("XAUUSD")
    position = open_position(first, "XAUUSD", "buy", 0.1, sl=round(tick.bid - 3, 2))
    del first
    clock.advance(4 * 3600)  # the bot is down for four hours; gold falls through the stop
    second = fresh(tmp_path, clock)
    assert second.positions_get() == ()
    out = second.history_deals_get(position=position.ticket)[-1]
    assert out.reason == second.DEAL_REASON_SL and out.time < int((MONDAY_NOON + timedelta(hours=4)).timestamp())


def test_the_replay_anchor_is_kept_so_prices_agree_after_restart(tmp_path: Path, clock: FakeClock) -> None:
    first = fresh(tmp_path, clock)
    clock.advance(3600)
    seen = first.copy_rates_from_pos("BTCUSD", first.TIMEFRAME_M1, 0, 50)
    later = FakeClock(clock.now())  # a new process with its own clock, same market time
    second = fresh(tmp_path, later)
    assert second.anchor == MONDAY_NOON
    assert (second.copy_rates_from_pos("BTCUSD", second.TIMEFRAME_M1, 0, 50) == seen).all()
    later.advance(600)
    second.account_info()
    second.shutdown()  # the market time is saved (also every few seconds while running)
    assert SimTerminal.book_market_time(tmp_path / "sim_book.json") == later.now()


def test_a_clock_behind_the_book_freezes_the_market_instead_of_rewinding(tmp_path: Path, clock: FakeClock) -> None:
    first = fresh(tmp_path, clock)
    clock.advance(3600)
    first.account_info()
    behind = FakeClock(MONDAY_NOON)
    second = fresh(tmp_path, behind)
    assert second.account_info() is not None  # no crash, and no stop evaluated backwards


def test_a_damaged_book_falls_back_to_its_backup(tmp_path: Path, clock: FakeClock) -> None:
    first = fresh(tmp_path, clock)
    position = open_position(first, "EURUSD", "buy", 0.1)
    open_position(first, "EURUSD", "buy", 0.1)
    book = tmp_path / "sim_book.json"
    book.write_text("{ half written", encoding="utf-8")
    second = fresh(tmp_path, clock)
    assert [p.ticket for p in second.positions_get()] == [position.ticket]  # the .bak: one write behind


def test_a_book_of_another_account_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    fresh(tmp_path, clock)
    with pytest.raises(BookError, match="belongs to account 5000001"):
        make_test_terminal(tmp_path, clock, login=7777777)


def test_in_memory_book_for_backtests(tmp_path: Path, clock: FakeClock) -> None:
    terminal = SimTerminal(clock, None, symbols=("EURUSD",))
    assert terminal.initialize()
    assert terminal.order_send(market_order(terminal, "EURUSD", "buy", 0.1)).retcode == 10009
    assert not list(tmp_path.iterdir())
