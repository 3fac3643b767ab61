"""The daily summary: when it is due (with restarts) and the numbers it reports."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from notify.daily import (DailySummarySchedule, SummarySlot, due_slot, latest_slot, next_slot_time,
                          parse_utc_time, summarize_trades, trades_in_window)
from state.store import StateStore

UTC = timezone.utc
NINE_PM = time(21, 0)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def test_parse_utc_time():
    assert parse_utc_time("21:00") == NINE_PM
    assert parse_utc_time("00:05") == time(0, 5)
    for bad in ("25:00", "9:00", "21h", "", "21:60"):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_utc_time(bad)


def test_a_slot_covers_the_24_hours_before_the_summary_time():
    slot = latest_slot(at(5, 22), NINE_PM)
    assert slot == SummarySlot(date(2026, 1, 5), at(4, 21), at(5, 21))
    assert latest_slot(at(5, 20, 59), NINE_PM).day == date(2026, 1, 4)
    assert latest_slot(at(5, 21), NINE_PM).day == date(2026, 1, 5)  # exactly on time counts
    assert next_slot_time(at(5, 21), NINE_PM) == at(6, 21)
    assert next_slot_time(at(5, 8), NINE_PM) == at(5, 21)


@pytest.mark.parametrize("now, last_sent, due", [
    (at(5, 20, 59), date(2026, 1, 4), None),             # not yet time
    (at(5, 21), date(2026, 1, 4), date(2026, 1, 5)),     # time: today's is due
    (at(5, 23), date(2026, 1, 5), None),                 # already sent today
    (at(6, 8), date(2026, 1, 4), date(2026, 1, 5)),      # was down at 21:00: sent on restart
    (at(9, 8), date(2026, 1, 2), date(2026, 1, 8)),      # down for days: only the latest, no backlog
    (at(5, 22), None, None),                             # never sent: nothing stale on a first start
])
def test_due_slot(now, last_sent, due):
    slot = due_slot(now, NINE_PM, last_sent)
    assert (slot.day if slot else None) == due


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        latest_slot(datetime(2026, 1, 5, 22), NINE_PM)


def test_schedule_sends_once_per_day_and_survives_a_restart(tmp_path):
    store = StateStore(tmp_path)
    schedule = DailySummarySchedule("21:00", store)
    assert schedule.due(at(5, 10)) is None             # first start: remembers the 4th as done
    assert schedule.due(at(5, 20)) is None
    slot = schedule.due(at(5, 21, 0))
    assert slot is not None and slot.day == date(2026, 1, 5)
    assert schedule.due(at(5, 21, 0)) == slot          # due until marked sent
    schedule.mark_sent(slot)
    assert schedule.due(at(5, 23)) is None
    assert store.load("daily_summary")["last_sent_day"] == "2026-01-05"
    restarted = DailySummarySchedule("21:00", store)   # a restart the next morning
    assert restarted.last_sent_day == date(2026, 1, 5)
    assert restarted.due(at(6, 9)) is None
    assert restarted.due(at(6, 21, 1)).day == date(2026, 1, 6)
    missed = DailySummarySchedule("21:00", store)      # down over the 6th's summary time
    assert missed.due(at(7, 3)).day == date(2026, 1, 6)


def test_schedule_follows_a_reloaded_time(tmp_path):
    schedule = DailySummarySchedule("21:00", StateStore(tmp_path))
    schedule.due(at(5, 8))
    schedule.set_time("07:30")
    assert schedule.due(at(5, 8)).day == date(2026, 1, 5)


def test_summary_numbers_per_strategy():
    slot = latest_slot(at(5, 22), NINE_PM)
    trades = [
        {"strategy": "micro_scalp", "pnl": 12.5, "r": 1.25, "symbol": "XAUUSD"},
        {"strategy": "micro_scalp", "pnl": -5.0, "r": -0.5, "symbol": "EURUSD"},
        {"strategy": "micro_scalp", "pnl": 0.0, "r": 0.0, "symbol": "BTCUSD"},
        {"strategy": "micro_scalp", "pnl": 7.5, "r": None, "symbol": "XAUUSD"},
        {"strategy": "order_flow", "pnl": -2.25, "r": -1.0, "symbol": "BTCUSD"},
    ]
    summary = summarize_trades(trades, slot, strategies=["micro_scalp", "range_scalp", "order_flow"])
    by_name = {s.strategy: s for s in summary.strategies}
    micro = by_name["micro_scalp"]
    assert (micro.trades, micro.wins, micro.losses, micro.breakeven) == (4, 2, 1, 1)
    assert micro.win_rate == 0.5
    assert micro.pnl == 15.0
    assert micro.avg_r == pytest.approx((1.25 - 0.5 + 0.0) / 3)  # trades without R are left out
    assert (micro.best.pnl, micro.best.symbol) == (12.5, "XAUUSD")
    assert (micro.worst.pnl, micro.worst.symbol) == (-5.0, "EURUSD")
    assert by_name["range_scalp"].trades == 0 and by_name["range_scalp"].win_rate is None
    assert by_name["order_flow"].win_rate == 0.0
    assert (summary.total.trades, summary.total.pnl) == (5, 12.75)
    assert [s.strategy for s in summary.strategies] == ["micro_scalp", "order_flow", "range_scalp"]


@pytest.mark.parametrize("trade, message", [
    ({"pnl": 1.0}, "trade #0: missing 'strategy'"),
    ({"strategy": "m"}, "trade #0: missing 'pnl'"),
    ({"strategy": "m", "pnl": "ten"}, "trade #0: 'pnl' must be a number, got 'ten'"),
    ({"strategy": "m", "pnl": float("nan")}, "trade #0: 'pnl' must be finite"),
    ({"strategy": "m", "pnl": 1.0, "r": True}, "trade #0: 'r' must be a number"),
])
def test_bad_trades_are_named(trade, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        summarize_trades([trade], latest_slot(at(5, 22), NINE_PM))


def test_trades_in_window_reads_several_time_forms():
    start, end = at(4, 21), at(5, 21)
    trades = [
        {"id": 1, "closed_at": "2026-01-04T21:00:00+00:00"},        # start is inside
        {"id": 2, "closed_at": "2026-01-05T20:59:59Z"},
        {"id": 3, "closed_at": at(5, 21)},                          # end is outside
        {"id": 4, "closed_at": (at(5, 12) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()},
        {"id": 5, "closed_at": "garbage"},
        {"id": 6},
        {"id": 7, "closed_at": datetime(2026, 1, 5, 3, 0)},          # naive: taken as UTC
        {"id": 8, "closed_at": at(4, 20, 59) + timedelta(seconds=59)},
    ]
    assert [t["id"] for t in trades_in_window(trades, start, end)] == [1, 2, 4, 7]
