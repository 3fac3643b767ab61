"""Each gate of the monitor forced to fail in its own test, over the simulated terminal.

Every test runs one symbol (XAUUSD unless said otherwise) from Monday 12:00 UTC, where all
gates pass with the shipped config; it then forces one gate, checks that exactly that gate is
recorded (with its reason) and that no order is sent, and lifts it again where that matters."""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

import monitors.micro_scalp as micro_module
from tests.micro_scalp.test_monitor_harness import MonitorStack, make_monitor_stack, no_news



@pytest.fixture
def ms(tmp_path: Path) -> MonitorStack:
    ms = make_monitor_stack(tmp_path)
    no_news(ms)
    ms.only("XAUUSD")
    return ms


def passed_gates(gate: str | None) -> bool:
    """True when the decision got past every monitor gate (to the engine or the executor)."""
    return gate not in (None, "enabled", "session", "cooldown", "caps", "news", "positions", "freshness",
                        "breaker", "spread", "error")


def test_with_nothing_forced_the_symbol_reaches_the_engine(ms: MonitorStack) -> None:
    ms.step()
    assert passed_gates(ms.gate("XAUUSD")), ms.sym("XAUUSD").last_detail


def test_enabled_gate_a_symbol_switched_off(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", enabled=False)
    ms.step()
    assert ms.gate("XAUUSD") == "enabled"
    assert "switched off" in ms.sym("XAUUSD").last_detail
    ms.set_params("XAUUSD", enabled=True)
    ms.step()
    assert passed_gates(ms.gate("XAUUSD"))


def test_session_gate_outside_the_utc_trading_hours(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", trading_sessions_utc=[[13, 14]])
    for _ in range(3):
        ms.step(60)
        assert ms.gate("XAUUSD") == "session"
    assert "outside the trading sessions 13-14 UTC" in ms.sym("XAUUSD").last_detail
    ms.clock.set(ms.clock.now().replace(hour=13, minute=0, second=5))
    ms.step()
    assert passed_gates(ms.gate("XAUUSD")), ms.sym("XAUUSD").last_detail


def test_cooldown_after_a_trade_then_released(ms: MonitorStack) -> None:
    ms.only("EURUSD")
    ms.set_params("EURUSD", max_positions_per_symbol=3, cooldown_after_trade_seconds=120)
    ms.step_until(lambda: ms.sym("EURUSD").last_gate == "TRADE", max_steps=12 * 60)
    entered = ms.clock.now()
    ms.step()
    assert ms.gate("EURUSD") == "cooldown"
    assert "cooldown after the entry" in ms.sym("EURUSD").last_detail
    while ms.clock.now() < entered + timedelta(seconds=115):
        ms.step()
        assert ms.gate("EURUSD") == "cooldown"
    ms.step(10)
    assert ms.gate("EURUSD") != "cooldown"


def test_cooldown_after_a_failed_order(ms: MonitorStack) -> None:
    ms.only("EURUSD")
    ms.set_params("EURUSD", cooldown_after_failure_seconds=60)
    ms.stack.terminal.faults.schedule("reject", count=50, retcode=10019)  # no money: not retried
    ms.step_until(lambda: ms.gate("EURUSD") == "executor.rejected", max_steps=12 * 60)
    failed_at = ms.clock.now()
    assert ms.stack.registry.open_trades("micro_scalp") == []
    ms.stack.terminal.faults.clear()
    ms.step()
    assert ms.gate("EURUSD") == "cooldown"
    assert "failed order" in ms.sym("EURUSD").last_detail
    while ms.clock.now() < failed_at + timedelta(seconds=55):
        ms.step()
        assert ms.gate("EURUSD") == "cooldown"
    ms.step(10)
    assert ms.gate("EURUSD") != "cooldown"


def test_hourly_cap_counts_entries_from_the_registry_across_a_restart(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", cooldown_after_trade_seconds=0, max_positions_per_symbol=5, max_trades_per_hour=1)
    trade = ms.open_trade("XAUUSD", "buy", 3.0, 3.0)  # a micro-scalp entry the monitor did not see
    fresh = ms.new_monitor(state=type(ms.state)())      # a restarted process: empty memory
    ms.state = fresh.state
    ms.step()
    assert ms.gate("XAUUSD") == "caps"
    assert ms.sym("XAUUSD").last_detail == "1 entries in the last hour, cap 1"
    ms.stack.executor.close(ms.stack.registry.get(trade.ticket), "test")
    ms.step()
    assert ms.gate("XAUUSD") == "caps"  # closing does not undo an entry
    ms.clock.advance(3600)
    ms.step()
    assert ms.gate("XAUUSD") != "caps"


def test_daily_cap_counts_since_midnight_utc(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", cooldown_after_trade_seconds=0, max_trades_per_day=2, max_trades_per_hour=10)
    sym = ms.state.symbol("XAUUSD", 100)
    ms.step()
    now = ms.clock.now()
    sym.entries.extend([now - timedelta(hours=3), now - timedelta(hours=2)])
    ms.step()
    assert ms.gate("XAUUSD") == "caps" and ms.sym("XAUUSD").last_detail == "2 entries today (UTC), cap 2"
    ms.clock.set((now + timedelta(days=1)).replace(hour=1, minute=0))  # a new UTC day (in session)
    ms.step()
    assert ms.gate("XAUUSD") != "caps"


def test_a_stricter_cap_after_the_entry_gates_passed_applies_at_once(ms: MonitorStack) -> None:
    """The cooldown and caps gates are not asked again while nothing they read changed: a new
    config snapshot is such a change."""
    ms.set_params("XAUUSD", cooldown_after_trade_seconds=0, max_trades_per_hour=10)
    ms.state.symbol("XAUUSD", 100).add_entry(ms.clock.now() - timedelta(minutes=10))
    ms.step()
    assert passed_gates(ms.gate("XAUUSD")), ms.sym("XAUUSD").last_detail
    ms.step()
    assert passed_gates(ms.gate("XAUUSD")), ms.sym("XAUUSD").last_detail
    ms.set_params("XAUUSD", cooldown_after_trade_seconds=0, max_trades_per_hour=1)
    ms.step()
    assert ms.gate("XAUUSD") == "caps" and ms.sym("XAUUSD").last_detail == "1 entries in the last hour, cap 1"


def test_news_blackout_from_the_calendar_file_and_its_hot_reload(ms: MonitorStack) -> None:
    event_at = ms.clock.now() + timedelta(minutes=20)
    calendar = {"schema_version": 1, "events": [
        {"time": event_at.isoformat().replace("+00:00", "Z"), "title": "US CPI", "impact": "high",
         "currencies": ["USD"]}]}
    path = ms.config_dir / "news.json"
    path.write_text(json.dumps(calendar), encoding="utf-8")
    ms.step()
    assert ms.gate("XAUUSD") == "news"
    assert "US CPI" in ms.sym("XAUUSD").last_detail
    calendar["events"][0]["currencies"] = ["JPY"]  # the operator corrects the entry
    path.write_text(json.dumps(calendar, indent=2), encoding="utf-8")
    ms.step()
    assert passed_gates(ms.gate("XAUUSD"))


def test_position_limit_per_symbol_for_this_strategy(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", cooldown_after_trade_seconds=0, max_positions_per_symbol=1)
    ms.open_trade("XAUUSD", "sell", 30.0, 30.0, atr=0.5)
    ms.step()
    assert ms.gate("XAUUSD") == "positions"
    assert ms.sym("XAUUSD").last_detail == "1 open micro-scalp position(s), limit 1"
    ms.set_params("XAUUSD", max_positions_per_symbol=2)
    ms.step()
    assert passed_gates(ms.gate("XAUUSD"))


def test_stale_data_is_refused(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", max_bar_age_seconds=90, max_quote_age_seconds=60)
    ms.step()
    ms.stack.terminal.faults.schedule("stale_quotes", seconds=600)
    ms.step_until(lambda: ms.gate("XAUUSD") == "freshness", max_steps=40)
    detail = ms.sym("XAUUSD").last_detail
    assert "closed" in detail and "limit 90 s" in detail or "quote is" in detail
    engine_checks = ms.state.counters.get("engine_checks", 0)
    for _ in range(10):
        ms.step()
        assert ms.gate("XAUUSD") == "freshness"
    assert ms.state.counters.get("engine_checks", 0) == engine_checks  # the engine never saw stale data
    ms.clock.advance(600)
    ms.step()
    assert passed_gates(ms.gate("XAUUSD"))


def test_too_few_bars_is_a_freshness_failure(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", min_bars=200, max_bars=200, atr_compare_bars=14)
    original = ms.feed.get
    ms.feed.get = lambda symbol, timeframe, count, include_forming=False: original(symbol, timeframe, 120)
    ms.step()
    assert ms.gate("XAUUSD") == "freshness"
    assert ms.sym("XAUUSD").last_detail == "120 closed M1 bars, the engine needs 200"


def test_spread_above_the_absolute_cap(ms: MonitorStack) -> None:
    ms.set_params("XAUUSD", max_spread_pct=0.005)  # XAUUSD's sim spread is 0.16 on ~2000 = 0.008 %
    ms.step()
    assert ms.gate("XAUUSD") == "spread"
    assert "> cap 0.005%" in ms.sym("XAUUSD").last_detail


def test_spread_above_a_multiple_of_the_rolling_median(ms: MonitorStack) -> None:
    ms.step()
    quote = ms.stack.broker.quote("XAUUSD")
    tracker = ms.state.symbol("XAUUSD", 100).spread
    for _ in range(40):  # a long stretch of quotes four times tighter than now
        tracker.add_quote(quote.bid, quote.bid + 0.04)
    ms.step()
    assert ms.gate("XAUUSD") == "spread"
    assert "x median > 2.5x" in ms.sym("XAUUSD").last_detail


def test_breaker_pauses_a_symbol_after_three_engine_errors_and_resumes(
        ms: MonitorStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("engine bug")

    real = micro_module.evaluate
    ms.set_params("XAUUSD", max_quote_age_seconds=600)  # only the breaker may stop it here
    monkeypatch.setattr(micro_module, "evaluate", broken)
    with caplog.at_level(logging.ERROR, logger="monitors.micro_scalp"):
        for expected in (1, 2):
            ms.step()
            assert ms.gate("XAUUSD") == "engine.error" and len(calls) == expected
            assert ms.notes == []
        ms.step()
    assert len(calls) == 3 and ms.gate("XAUUSD") == "engine.error"
    paused_at = ms.clock.now()
    assert [kind for kind, _ in ms.notes] == ["symbol_paused"]
    note = ms.notes[0][1]
    assert note["symbol"] == "XAUUSD" and note["failures"] == 3 and note["pause_seconds"] == 300
    assert "engine bug" in note["error"]
    assert "engine error 3/3" in caplog.text
    while ms.clock.now() < paused_at + timedelta(seconds=295):
        ms.step()
        assert ms.gate("XAUUSD") == "breaker"
    assert len(calls) == 3  # the engine was not called while paused
    assert "after 3 engine errors" in ms.sym("XAUUSD").last_detail
    monkeypatch.setattr(micro_module, "evaluate", real)
    ms.step(10)
    assert [kind for kind, _ in ms.notes] == ["symbol_paused", "symbol_resumed"]
    assert ms.notes[1][1]["symbol"] == "XAUUSD" and ms.notes[1][1]["paused_seconds"] >= 300
    assert passed_gates(ms.gate("XAUUSD")) and ms.gate("XAUUSD") != "engine.error"
    assert ms.sym("XAUUSD").breaker.failures == 0


def test_a_successful_evaluation_resets_the_error_count(ms: MonitorStack, monkeypatch: pytest.MonkeyPatch) -> None:
    real = micro_module.evaluate
    outcomes = iter([RuntimeError("a"), RuntimeError("b"), None, RuntimeError("c"), RuntimeError("d")])

    def flaky(*args, **kwargs):
        problem = next(outcomes)
        if problem:
            raise problem
        return real(*args, **kwargs)

    monkeypatch.setattr(micro_module, "evaluate", flaky)
    for _ in range(5):
        ms.step()
    assert ms.sym("XAUUSD").breaker.failures == 2 and ms.notes == []  # never three in a row


def test_the_engine_gets_the_spread_figures_with_this_steps_quote(ms: MonitorStack,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The spread gate reads the figures the engine gets (after adding the step's quote, under the
    same lock); a refused spread reads none, and a quote seen before adds no vote."""
    seen = []
    real = micro_module.evaluate

    def spy(bars, quote, spread_stats, *args, **kwargs):
        tracker = ms.state.symbol("XAUUSD", 100).spread
        seen.append((spread_stats, tracker.stats(), len(tracker)))
        return real(bars, quote, spread_stats, *args, **kwargs)

    monkeypatch.setattr(micro_module, "evaluate", spy)
    ms.step()
    ms.step(0.0)  # the same instant: the same quote, counted once
    assert len(seen) == 2 and all(stats is current and stats is not None for stats, current, _ in seen)
    assert seen[0][2] == seen[1][2] == 1
    ms.set_params("XAUUSD", max_spread_pct=0.005)
    ms.step()
    assert ms.gate("XAUUSD") == "spread" and len(seen) == 2
