"""The monitor over the simulated terminal (real engine, real bars, real executor) places trades,
logs every decision and the periodic summary, and reports its health."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from config.micro_scalp_model import MicroScalpParams
from monitors.micro_scalp import bars_needed, in_sessions
from tests.micro_scalp.test_monitor_harness import MonitorStack, make_monitor_stack, no_news


@pytest.fixture
def ms(tmp_path: Path) -> MonitorStack:
    ms = make_monitor_stack(tmp_path)
    no_news(ms)
    return ms


def test_the_monitor_places_micro_scalp_trades_with_default_params(ms: MonitorStack) -> None:
    # Default shipped params, all three symbols, the real 5 s cadence, from Monday 12:00 UTC.
    steps = ms.step_until(lambda: bool(ms.stack.registry.open_trades("micro_scalp"))
                          or bool(ms.stack.registry.closed_trades("micro_scalp")), max_steps=12 * 60 * 2)
    trades = ms.stack.registry.open_trades("micro_scalp") + ms.stack.registry.closed_trades("micro_scalp")
    trade = trades[0]
    assert steps * 5 <= 2 * 3600
    assert trade.strategy == "micro_scalp"
    assert trade.meta["checker"] in ("edge_based", "vwap_reversion", "range_scalp", "balanced_zone")
    assert trade.magic == ms.stack.holder.current.bot.execution.magic_base + 1
    assert (trade.sl < trade.entry < trade.tp) if trade.side == "buy" else (trade.tp < trade.entry < trade.sl)
    position = ms.stack.broker.position(trade.ticket)
    assert position is None or position.sl == pytest.approx(trade.sl)
    sym = ms.sym(trade.symbol)
    assert sym.last_gate == "TRADE" or sym.last_entry() is not None
    assert ms.state.counters["opened"] >= 1
    latency = ms.monitor.health()["performance"]["latency_ms"]
    assert latency["pipeline"]["samples"] >= 1 and latency["round_trip"]["samples"] >= 1
    assert latency["round_trip"]["mean_ms"] >= latency["pipeline"]["mean_ms"] > 0


def test_each_check_logs_one_debug_line_per_symbol_and_a_periodic_info_summary(
        ms: MonitorStack, caplog: pytest.LogCaptureFixture) -> None:
    ms.edit_micro(lambda d: d.update(summary_minutes=1))
    with caplog.at_level(logging.DEBUG, logger="monitors.micro_scalp"):
        for _ in range(13):  # 65 s: the summary period (1 min) passes once
            ms.step(5)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.name == "monitors.micro_scalp"
             and r.getMessage().startswith("micro_scalp ")]
    assert len(debug) == 13 * 3
    for symbol in ("XAUUSD", "EURUSD", "BTCUSD"):
        assert sum(symbol in r.getMessage() for r in debug) == 13
    summaries = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "waiting for:" in r.getMessage()]
    assert len(summaries) == 3 and all("checks" in line for line in summaries)
    summary = ms.monitor.health()["why_no_trade"]
    assert set(summary) == {"XAUUSD", "EURUSD", "BTCUSD"}
    assert all(info["checks"] == 13 and sum(info["waiting_for"].values()) + info["trades"] == 13
               for info in summary.values())
    failing = [r.getMessage() for r in debug if "no trade (" in r.getMessage()]
    for line in failing:  # the detail is the failing gate's own reason
        gate = line.split("no trade (")[1].split(")")[0]
        if gate.startswith("L"):
            assert f" - {gate}: FAIL" in line, line


def test_health_reports_symbols_counters_performance_and_news(ms: MonitorStack) -> None:
    ms.step(5)
    health = ms.monitor.health()
    assert health["strategy"] == "micro_scalp"
    assert set(health["symbols"]) == {"XAUUSD", "EURUSD", "BTCUSD"}
    assert health["symbols"]["XAUUSD"]["last_gate"]
    assert health["news"]["status"] == "ok"
    assert health["performance"]["trades"] == 0 and health["performance"]["win_rate"] is None
    assert ms.monitor.interval_seconds == 5


@pytest.mark.parametrize("hour, sessions, inside", [
    (12, [(8, 21)], True), (21, [(8, 21)], False), (23, [(22, 2)], True), (1, [(22, 2)], True),
    (2, [(22, 2)], False), (23, [(0, 24)], True), (5, [(1, 3), (5, 6)], True)])
def test_sessions_are_half_open_utc_hour_windows_that_may_wrap(hour, sessions, inside) -> None:
    assert in_sessions(hour, sessions) is inside


def test_bars_reach_back_to_the_vwap_anchor_within_the_limits() -> None:
    params = MicroScalpParams(vwap_anchor_hour_utc=22, min_bars=60, max_bars=1500)
    assert bars_needed(params, datetime(2026, 1, 5, 12, 0, 30, tzinfo=timezone.utc)) == 14 * 60 + 1
    assert bars_needed(params, datetime(2026, 1, 5, 22, 10, tzinfo=timezone.utc)) == 60
    assert bars_needed(MicroScalpParams(vwap_anchor_hour_utc=0, max_bars=300),
                       datetime(2026, 1, 5, 23, 0, tzinfo=timezone.utc)) == 300
