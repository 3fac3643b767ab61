"""The range-scalp book (runtime/state/range_scalp.json): round trip, integer tickets, bad records,
versions, the re-entry memory, and saves that never go backwards."""
from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from engines.range_exits import ExitRecord
from monitors.range_scalp_state import DOCUMENT, DisabledEntries, RangeBook
from state.store import StateFileError, StateStore
from tests.range_scalp.helpers import make_range, make_trade

UTC = timezone.utc
NOW = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)


def book_in(tmp_path, **kwargs) -> RangeBook:
    return RangeBook(StateStore(tmp_path / "state"), **kwargs)


def test_round_trip_with_integer_tickets_and_the_symbol_memory(tmp_path) -> None:
    book = book_in(tmp_path)
    trade = make_trade(ticket=123, opened_at=NOW, meta={"confluence_score": 88.0, "client_id": "rs-x"})
    book.register(trade, NOW, NOW)
    book.set_last_bar("TEST", 1767693300)
    other = make_trade(side="sell", ticket=124, opened_at=NOW)
    book.register(other, NOW + timedelta(minutes=20), NOW)
    book.close(124, ExitRecord("candles_outside_range", NOW + timedelta(minutes=30), other.range))
    book.disable_entries(DisabledEntries(NOW, "3 critical errors", "abc123", ({"error_type": "broker_fatal"},)))

    raw = json.loads((tmp_path / "state" / f"{DOCUMENT}.json").read_text())
    assert raw["version"] == 1 and raw["schema_version"] == 1 and list(raw["trades"]) == ["123"]

    again = book_in(tmp_path)
    report = again.load()
    assert report.source == "file" and report.trades == 1 and not report.corrupt
    assert again.get(123) == trade and again.tickets() == {123}  # an int, as in memory
    assert again.last_bar("TEST") == 1767693300
    history = again.history("TEST", NOW + timedelta(hours=1))
    assert history.entries_today == 2 and history.last_entry_at == NOW + timedelta(minutes=20)
    assert history.last_exit == ExitRecord("candles_outside_range", NOW + timedelta(minutes=30), other.range)
    assert again.entries_disabled == DisabledEntries(NOW, "3 critical errors", "abc123",
                                                     ({"error_type": "broker_fatal"},))
    assert again.history("TEST", NOW + timedelta(days=1)).entries_today == 0  # a new UTC day


def test_a_closed_trade_is_settled_once(tmp_path) -> None:
    book = book_in(tmp_path)
    book.register(make_trade(ticket=7, opened_at=NOW), NOW, NOW)
    record = ExitRecord("broker:sl", NOW, make_range())
    assert book.close(7, record) is not None
    assert book.close(7, record) is None
    book.register(make_trade(ticket=8, opened_at=NOW), NOW, NOW)
    with pytest.raises(ValueError, match="already registered"):
        book.register(make_trade(ticket=8, opened_at=NOW), NOW, NOW)


def test_a_malformed_record_is_skipped_and_reported(tmp_path) -> None:
    store = StateStore(tmp_path / "state")
    good = make_trade(ticket=5, opened_at=NOW)
    store.save(DOCUMENT, {"version": 1, "trades": {"5": good.to_dict(), "6": {"symbol": "TEST", "side": "up"}}})
    book = RangeBook(store)
    report = book.load()
    assert report.trades == 1 and book.get(5) == good
    assert report.corrupt and "trade record '6' skipped" in report.problems[0]


def test_a_document_from_a_newer_bot_is_refused(tmp_path) -> None:
    store = StateStore(tmp_path / "state")
    store.save(DOCUMENT, {"version": 2, "trades": {}})
    with pytest.raises(StateFileError, match="format version 2 is newer"):
        RangeBook(store).load()


def test_an_older_copy_never_overwrites_a_newer_one(tmp_path) -> None:
    """A thread copies the state, then is held up before writing it; meanwhile another change is
    copied and written. The late writer must not put the older copy back."""
    store = StateStore(tmp_path / "state")
    book = RangeBook(store)
    main = threading.current_thread()
    held, go = threading.Event(), threading.Event()

    class HeldLock:  # the book's write lock, holding up the first other thread at the door
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def __enter__(self) -> None:
            if threading.current_thread() is not main and not held.is_set():
                held.set()
                go.wait(2)
            self.lock.acquire()

        def __exit__(self, *exc) -> None:
            self.lock.release()

    book._save_lock = HeldLock()  # type: ignore[assignment]
    late = threading.Thread(target=book.set_last_bar, args=("A", 1))
    late.start()
    assert held.wait(2)  # its copy (A only) is made and waits to be written
    book.set_last_bar("B", 2)  # copied (A and B) and written
    go.set()
    late.join(2)
    again = RangeBook(store)
    again.load()
    assert again.last_bar("A") == 1 and again.last_bar("B") == 2
    assert book.saves == 1  # the older copy was dropped, not written


def test_documents_rebuild_a_trade_record_only_when_the_trade_changed(tmp_path) -> None:
    saved: list[dict] = []
    book = book_in(tmp_path, save=lambda name, document: saved.append(document))
    trade = make_trade(ticket=5, opened_at=NOW)
    book.register(trade, NOW, NOW)
    book.register(make_trade(ticket=6, opened_at=NOW), NOW, NOW)
    book.set_last_bar("TEST", 1767693300)
    assert saved[-1]["trades"]["5"] is saved[-2]["trades"]["5"]  # unchanged: the same record
    moved = replace(trade, sl=trade.entry, breakeven_armed=True)
    book.update(moved, NOW + timedelta(minutes=5))
    record = saved[-1]["trades"]["5"]
    assert record is not saved[-2]["trades"]["5"]
    assert (record["sl"], record["breakeven_armed"]) == (trade.entry, True)
    assert record == {**moved.to_dict(), "last_state_change": (NOW + timedelta(minutes=5)).isoformat()}
    book.close(6, ExitRecord("broker:tp", NOW + timedelta(minutes=6), make_range()))
    book.set_last_bar("TEST", 1767693600)
    assert list(saved[-1]["trades"]) == ["5"] and saved[-1]["symbols"]["TEST"]["last_exit"]["reason"] == "broker:tp"
    assert saved[-1]["symbols"]["TEST"]["last_exit"] is saved[-2]["symbols"]["TEST"]["last_exit"]


def test_history_is_handed_out_again_only_while_entries_exit_and_day_are_the_same(tmp_path) -> None:
    """history() keeps its answer per symbol; every input it reads must make a new one."""
    book = book_in(tmp_path)
    first = book.history("TEST", NOW)
    assert first.entries_today == 0 and first.last_entry_at is None and first.last_exit is None
    book.set_last_bar("TEST", 1767693300)  # the symbol's memory exists from here on
    kept = book.history("TEST", NOW)
    assert kept == first and book.history("TEST", NOW + timedelta(minutes=5)) is kept  # no change: the same answer
    book.set_last_bar("TEST", 1767693600)  # not read by history: the answer stays
    assert book.history("TEST", NOW + timedelta(minutes=6)) is kept

    trade = make_trade(ticket=7, opened_at=NOW)
    book.register(trade, NOW + timedelta(minutes=1), NOW)  # a new entry
    entered = book.history("TEST", NOW + timedelta(minutes=2))
    assert entered.entries_today == 1 and entered.last_entry_at == NOW + timedelta(minutes=1)

    exit_record = ExitRecord("target", NOW + timedelta(minutes=3), trade.range)
    book.close(7, exit_record)  # a new last exit
    exited = book.history("TEST", NOW + timedelta(minutes=4))
    assert exited.last_exit == exit_record and exited.entries_today == 1

    tomorrow = book.history("TEST", NOW + timedelta(days=1))  # a new UTC day: the entry is yesterday's
    assert tomorrow.entries_today == 0 and tomorrow.last_entry_at == NOW + timedelta(minutes=1)

    again = book_in(tmp_path)
    again.load()  # loaded entries are new lists: counted again
    assert again.history("TEST", NOW + timedelta(minutes=4)) == exited


def test_entry_facts_are_the_three_answers_an_entry_check_asks_for(tmp_path) -> None:
    """entry_facts() reads entries_disabled, the symbol's open trades (not another symbol's) and
    history() at once: each must be what the separate calls answer."""
    book = book_in(tmp_path)
    assert book.entry_facts("TEST", NOW) == (None, 0, book.history("TEST", NOW))
    book.register(make_trade(ticket=7, opened_at=NOW), NOW, NOW)
    book.register(replace(make_trade(ticket=8, opened_at=NOW), symbol="OTHER"), NOW, NOW)
    disabled = DisabledEntries(NOW, "3 critical errors", "abc123", ())
    book.disable_entries(disabled)
    later = NOW + timedelta(minutes=5)
    facts = book.entry_facts("TEST", later)
    assert facts == (disabled, len(book.open_trades("TEST")), book.history("TEST", later))
    assert facts[1] == 1 and facts[2].entries_today == 1
    assert book.entry_facts("NONE", later)[1] == 0
