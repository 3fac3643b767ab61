"""The trading state: each trigger puts the bot in REDUCING or HALTED and each one ends by its
own condition (next day, cool-down, data fresh again) or by the operator; the state survives a
restart, refuses entries with its reason and never blocks exits."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from execution.trading_state import ACTIVE, HALTED, REDUCING, TradingGuard, day_of
from feeds.bar_feed import BarFeed
from state.registry import Trade
from tests.reliability.rig import Rig, account, build_rig, set_reliability

RISKY = {"risk": {"max_open_total": 50, "max_open_per_symbol": 20, "max_open_per_strategy": 40,
                  "max_trades_per_hour": 100, "max_trades_per_day": 1000}}


def guard_with(rig: Rig, equity: list[float]) -> TradingGuard:
    """A guard on the rig's store whose equity follows ``equity`` (one value per step)."""
    values = iter(equity)
    current = {"value": equity[0]}

    def next_account():
        current["value"] = next(values, current["value"])
        return account(current["value"])

    config = lambda: rig.stack.holder.current.bot.reliability  # noqa: E731
    return TradingGuard(rig.stack.store, config, rig.clock, journal=rig.journal,
                        events=lambda kind, data: rig.events.append((kind, data)), account=next_account)


def state_lines(rig: Rig) -> list[dict]:
    return rig.journal_events("trading_state")


def test_daily_loss_halts_until_the_next_day_in_the_configured_zone(tmp_path: Path) -> None:
    rig = build_rig(tmp_path, reliability={"daily_loss_limit_percent": 0.3, "loss_streak_count": None})
    rig.guard.step(rig.clock.now())  # the day's starting equity is recorded
    opened = rig.executor.open(rig.idea(sl_distance=1.0, tp_distance=200.0))
    assert opened.opened
    for _ in range(600):  # let the sim market hit the stop (a real loss of about 0.5 % of equity)
        rig.clock.advance(30)
        if rig.executor.sync_closed():
            break
    closed = rig.registry.closed_trades()[-1]
    assert closed.pnl < 0
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == HALTED
    assert "daily loss" in rig.guard.reason and "0.3%" in rig.guard.reason
    figures = rig.guard.health()["figures"]
    assert figures["day_loss_percent"] >= 0.3
    [lock] = rig.guard.locks()
    _, day_end = day_of(rig.clock.now(), "UTC")
    assert lock.name == "daily_loss" and lock.until == day_end == datetime(2026, 1, 6, tzinfo=timezone.utc)
    refused = rig.executor.open(rig.idea())
    assert refused.status == "halted" and "HALTED" in refused.reason and "daily loss" in refused.reason
    assert rig.journal_events()[-1]["event"] == "halted"
    assert [e["new"] for e in rig.events_of("trading_state_changed")] == [HALTED]
    rig.clock.set(datetime(2026, 1, 6, 0, 0, 5, tzinfo=timezone.utc))
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == ACTIVE
    assert rig.guard.health()["figures"]["day"] == "2026-01-06"
    assert [(e["old"], e["new"]) for e in rig.events_of("trading_state_changed")] == [(ACTIVE, HALTED), (HALTED, ACTIVE)]
    assert [(line["lock"], line["action"]) for line in state_lines(rig)] == [("daily_loss", "set"),
                                                                             ("daily_loss", "cleared")]


def test_the_day_boundary_follows_the_configured_time_zone() -> None:
    now = datetime(2026, 1, 5, 23, 30, tzinfo=timezone.utc)  # 18:30 in New York (EST, UTC-5)
    assert day_of(now, "America/New_York") == ("2026-01-05", datetime(2026, 1, 6, 5, 0, tzinfo=timezone.utc))
    assert day_of(now, "Asia/Tokyo") == ("2026-01-06", datetime(2026, 1, 6, 15, 0, tzinfo=timezone.utc))
    assert day_of(datetime(2026, 7, 1, 3, 0, tzinfo=timezone.utc), "Europe/London")[1] == \
        datetime(2026, 7, 1, 23, 0, tzinfo=timezone.utc)  # BST: midnight is 23:00 UTC


def test_daily_loss_counts_unrealised_losses_too(tmp_path: Path) -> None:
    rig = build_rig(tmp_path, reliability={"daily_loss_limit_percent": 2.0})
    guard = guard_with(rig, [10_000.0, 9_900.0, 9_790.0])  # balance unchanged: the loss is floating
    guard.step(rig.clock.now())
    guard.step(rig.clock.now())
    assert guard.state == ACTIVE
    guard.step(rig.clock.now())
    assert guard.state == HALTED and "2.10%" in guard.reason


def test_drawdown_from_the_peak_halts_survives_a_restart_and_ends_by_operator_resume(tmp_path: Path) -> None:
    rig = build_rig(tmp_path, reliability={"max_drawdown_percent": 10.0, "daily_loss_limit_percent": None})
    guard = guard_with(rig, [10_000.0, 12_000.0, 11_000.0, 10_700.0])
    for _ in range(3):
        guard.step(rig.clock.now())
        rig.clock.advance(60)
    assert guard.state == ACTIVE  # 8.3 % below the 12 000 peak
    guard.step(rig.clock.now())
    assert guard.state == HALTED and "below its peak 12000.00" in guard.reason
    since = guard.health()["since"]
    rig.clock.advance(3 * 86_400)  # days later: a drawdown does not expire by itself
    restarted = guard_with(rig, [10_700.0])
    restarted.step(rig.clock.now())
    assert restarted.state == HALTED and restarted.health()["since"] == since
    set_reliability(rig, resume_token="resume after review 1")
    restarted.step(rig.clock.now())
    assert restarted.state == ACTIVE
    restarted.step(rig.clock.now())  # rebased on the current equity: it does not fire again at once
    assert restarted.state == ACTIVE and restarted.health()["figures"]["peak_equity"] == 10_700.0
    resume = [line for line in state_lines(rig) if line.get("action") == "resume"]
    assert resume and resume[0]["cleared"] == ["drawdown"]


def closed_loss(rig: Rig, ticket: int, minutes_ago: float, pnl: float = -10.0, symbol: str = "XAUUSD") -> None:
    """A trade in the registry closed ``minutes_ago`` with ``pnl`` (one rule's input)."""
    now = rig.clock.now()
    rig.registry.add(Trade(ticket=ticket, client_id=f"ms-test-{ticket}", strategy="micro_scalp", symbol=symbol,
                           side="buy", volume=0.1, entry=2000.0, sl=1995.0, tp=2005.0, initial_sl=1995.0,
                           magic=rig.magic(), opened_at=(now - timedelta(minutes=minutes_ago + 5)).isoformat()))
    exit_price = 2000.0 + (1.0 if pnl > 0 else -5.0)
    rig.registry.close(ticket, exit_price, now - timedelta(minutes=minutes_ago), pnl, "broker:sl")


def test_a_losing_streak_within_the_window_reduces_then_cools_down(tmp_path: Path) -> None:
    rig = build_rig(tmp_path, reliability={"loss_streak_count": 3, "loss_streak_window_minutes": 60,
                                           "loss_streak_cooldown_minutes": 30})
    closed_loss(rig, 1, minutes_ago=90)  # outside the window: does not count
    closed_loss(rig, 2, minutes_ago=40, pnl=12.0)  # a win breaks the streak
    closed_loss(rig, 3, minutes_ago=30)
    closed_loss(rig, 4, minutes_ago=20)
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == ACTIVE
    closed_loss(rig, 5, minutes_ago=1)
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == REDUCING and "3 losing trades in a row" in rig.guard.reason
    assert rig.executor.open(rig.idea()).status == "halted"
    rig.clock.advance(29 * 60)
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == REDUCING
    rig.clock.advance(61)
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == ACTIVE  # the same three losses never lock again
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == ACTIVE
    assert rig.executor.open(rig.idea()).opened


def test_a_burst_of_order_failures_reduces_then_cools_down(tmp_path: Path) -> None:
    rig = build_rig(tmp_path, reliability={"order_failure_burst_count": 3, "order_failure_window_seconds": 60,
                                           "order_failure_cooldown_minutes": 5}, bot_changes=RISKY)
    rig.terminal.faults.schedule("reject", retcode=10019, count=3)  # no money: refused by the server
    for _ in range(3):
        assert rig.executor.open(rig.idea()).status == "rejected"
        rig.clock.advance(5)
    assert rig.guard.state == REDUCING and "3 failed orders within 60 s" in rig.guard.reason
    refused = rig.executor.open(rig.idea())
    assert refused.status == "halted"
    assert len([f for f in rig.terminal.faults.injected if f.kind == "reject"]) == 3  # nothing more was sent
    rig.clock.advance(5 * 60)
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == ACTIVE
    assert rig.executor.open(rig.idea()).opened


def test_the_global_order_rate_cap_stops_a_runaway_strategy(tmp_path: Path) -> None:
    rig = build_rig(tmp_path, reliability={"max_orders_per_minute": 3, "order_rate_cooldown_minutes": 2},
                    bot_changes=RISKY)
    for _ in range(3):
        assert rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).opened
        rig.clock.advance(1)
    runaway = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20))
    assert runaway.status == "halted" and "3 orders in the last minute reached the cap of 3" in runaway.reason
    assert len(rig.terminal.positions_get()) == 3
    trade = rig.registry.open_trades()[0]
    assert rig.executor.close(trade, "exits are never capped").status == "closed"
    rig.clock.advance(2 * 60)
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == ACTIVE
    assert rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).opened


def test_stale_data_on_every_feed_reduces_until_a_feed_is_fresh(tmp_path: Path) -> None:
    rig = build_rig(tmp_path, reliability={"stale_data_seconds": 120})
    feed = BarFeed(rig.stack.broker, rig.clock, lambda: [("XAUUSD", "M1"), ("EURUSD", "M1")])
    guard = TradingGuard(rig.stack.store, lambda: rig.stack.holder.current.bot.reliability, rig.clock,
                         journal=rig.journal, bar_times=feed.last_bar_times)
    feed.step(rig.clock.now())
    guard.step(rig.clock.now())
    assert guard.state == ACTIVE
    rig.terminal.faults.schedule("stale_quotes", seconds=600)  # the terminal's market view freezes
    for _ in range(8):
        rig.clock.advance(30)
        feed.step(rig.clock.now())
        guard.step(rig.clock.now())
    assert guard.state == REDUCING and "every bar feed is stale" in guard.reason
    rig.clock.advance(400)  # the freeze ends
    feed.step(rig.clock.now())
    guard.step(rig.clock.now())
    assert guard.state == ACTIVE
    assert [(line["lock"], line["action"]) for line in state_lines(rig)] == [("stale_data", "set"),
                                                                             ("stale_data", "cleared")]


def test_force_state_halts_and_releasing_it_resumes_exits_always_allowed(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    trade = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    set_reliability(rig, force_state="HALTED")
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == HALTED and "force_state" in rig.guard.reason
    assert rig.executor.open(rig.idea()).status == "halted"
    moved = rig.executor.modify(trade, round(trade.sl + 5.0, 2), trade.tp, "trail while halted")
    assert moved is not None and moved.sl == pytest.approx(trade.sl + 5.0)
    set_reliability(rig, force_state="REDUCING")
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == REDUCING
    assert rig.executor.close(rig.registry.get(trade.ticket), "exit while reducing").status == "closed"
    set_reliability(rig, force_state=None)
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == ACTIVE
    assert [(e["old"], e["new"]) for e in rig.events_of("trading_state_changed")] == [
        (ACTIVE, HALTED), (HALTED, REDUCING), (REDUCING, ACTIVE)]
    assert all(e["reason"] for e in rig.events_of("trading_state_changed"))


def test_the_state_is_persisted_and_a_resume_does_not_clear_a_measured_condition(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    set_reliability(rig, force_state="HALTED")
    rig.guard.step(rig.clock.now())
    rig.guard.set_condition("stale_data", True, "every bar feed is stale (test)")
    doc = rig.stack.store.load("trading_state", {})
    assert doc["state"] == HALTED and {lock["name"] for lock in doc["locks"]} == {"operator", "stale_data"}
    restarted = TradingGuard(rig.stack.store, lambda: rig.stack.holder.current.bot.reliability, rig.clock)
    assert restarted.state == HALTED and "force_state" in restarted.reason
    set_reliability(rig, force_state=None, resume_token="go")
    restarted.step(rig.clock.now())
    assert restarted.state == REDUCING and "stale" in restarted.reason  # still measured: still locked


def test_an_unknown_time_zone_is_a_clear_config_error() -> None:
    from pydantic import ValidationError

    from config.reliability_model import ReliabilityConfig
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        ReliabilityConfig(day_timezone="Mars/Olympus")
    with pytest.raises(ValidationError):
        ReliabilityConfig(force_state="ACTIVE")  # resume with resume_token, not by forcing ACTIVE


def test_a_lowered_streak_count_locks_at_once_without_a_new_trade(tmp_path: Path) -> None:
    """A count that found no streak is kept only for the same trades and settings."""
    rig = build_rig(tmp_path, reliability={"loss_streak_count": 3, "loss_streak_window_minutes": 60})
    closed_loss(rig, 1, minutes_ago=20)
    closed_loss(rig, 2, minutes_ago=10)
    rig.guard.step(rig.clock.now())
    rig.clock.advance(60)
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == ACTIVE
    set_reliability(rig, loss_streak_count=2)
    rig.guard.step(rig.clock.now())
    assert rig.guard.state == REDUCING and "2 losing trades in a row" in rig.guard.reason


def test_the_guards_day_is_day_of_at_every_step() -> None:
    """The trading day is kept between steps until its end: across midnights and DST changes it
    is still ``day_of``."""
    guard = TradingGuard.__new__(TradingGuard)
    guard._day_span = None
    start = datetime(2026, 3, 7, 20, 0, tzinfo=timezone.utc)
    for zone in ("UTC", "America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Lord_Howe"):
        for step in range(0, 31 * 24 * 60, 7):  # US, UK and Lord Howe clock changes
            now = start + timedelta(minutes=step)
            assert guard._trading_day(now, zone) == day_of(now, zone)
