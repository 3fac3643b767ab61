"""Micro-scalp statistics: the scoring rules, the latency figures, and persistence across restarts
(reload from ``stats_micro_scalp``, rebuild from the registry when the document is missing)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitors.micro_scalp_state import MicroScalpState
from monitors.micro_scalp_stats import DOCUMENT, LATENCY_WINDOW, Aggregate, LatencySeries, MicroScalpStats
from state.registry import TradeRegistry
from tests.micro_scalp.test_monitor_harness import MonitorStack, make_monitor_stack, no_news


def test_wins_losses_breakeven_streaks_and_profit_factor() -> None:
    agg = Aggregate()
    outcomes = [agg.add(r, pnl, hold) for r, pnl, hold in
                [(1.0, 10.0, 60), (-1.0, -10.0, 30), (2.0, 20.0, 90), (0.01, 0.1, 10), (-0.5, -5.0, None)]]
    assert outcomes == ["win", "loss", "win", "breakeven", "loss"]
    s = agg.summary()
    assert (s["trades"], s["wins"], s["losses"], s["breakevens"]) == (5, 2, 2, 1)
    assert s["win_rate"] == pytest.approx(0.4)
    assert s["total_r"] == pytest.approx(1.51) and s["avg_r"] == pytest.approx(0.302)
    assert s["profit_factor"] == pytest.approx(3.01 / 1.5, abs=1e-4)  # gross win R / gross loss R
    assert s["profit_factor_money"] == pytest.approx(30.1 / 15.0, abs=1e-4)
    assert (s["current_streak"], s["best_streak"], s["worst_streak"]) == (-1, 1, -1)
    assert s["largest_win_r"] == 2.0 and s["largest_loss_r"] == -1.0
    assert s["avg_hold_seconds"] == pytest.approx(47.5)  # a true mean of the four known holds


def test_streaks_count_runs() -> None:
    agg = Aggregate()
    for r in (1, 1, 1, -1, -1, 1):
        agg.add(r, None, None)
    assert (agg.current_streak, agg.best_streak, agg.worst_streak) == (1, 3, -2)


def test_a_trade_without_r_is_counted_by_its_money_result() -> None:
    agg = Aggregate()
    assert agg.add(None, 5.0, None) == "win"
    s = agg.summary()
    assert s["trades"] == 1 and s["r_trades"] == 0 and s["avg_r"] is None and s["profit_factor"] is None


def test_latency_true_mean_and_p95() -> None:
    series = LatencySeries()
    samples = [float(x) for x in range(1, 101)]
    for ms in samples:
        series.add(ms)
    summary = series.summary()
    assert summary["mean_ms"] == pytest.approx(50.5) and summary["samples"] == 100
    assert summary["p95_ms"] == pytest.approx(np.percentile(samples, 95))
    for _ in range(LATENCY_WINDOW):
        series.add(1.0)
    summary = series.summary()
    assert summary["samples"] == 100 + LATENCY_WINDOW
    assert summary["mean_ms"] == pytest.approx((5050 + LATENCY_WINDOW) / (100 + LATENCY_WINDOW), abs=1e-3)
    assert summary["p95_ms"] == 1.0 and summary["p95_window"] == LATENCY_WINDOW


# ---------------------------------------------------------------------------- over the sim
@pytest.fixture
def ms(tmp_path: Path) -> MonitorStack:
    ms = make_monitor_stack(tmp_path)
    no_news(ms)
    ms.only("XAUUSD")
    ms.set_params("XAUUSD", enabled=False, trail_enabled=False, time_exit_minutes=None)
    return ms


def close_three_trades(ms: MonitorStack) -> list:
    trades = []
    for side in ("buy", "sell", "buy"):
        trade = ms.open_trade("XAUUSD", side, 2.0, 2.0, atr=0.5)
        ms.clock.advance(90)
        outcome = ms.stack.executor.close(ms.stack.registry.get(trade.ticket), "test close")
        assert outcome.status == "closed"
        trades.append(outcome.trade)
    return trades


def test_statistics_persist_and_reload_across_a_restart(ms: MonitorStack) -> None:
    trades = close_three_trades(ms)
    ms.step()
    before = ms.monitor.health()["performance"]
    assert before["trades"] == 3
    assert before["wins"] + before["losses"] + before["breakevens"] == 3
    assert before["total_r"] == pytest.approx(sum(t.r for t in trades), abs=1e-3)
    assert before["avg_hold_seconds"] == pytest.approx(90, abs=1)
    assert before["latency_ms"]["pipeline"]["samples"] == 0  # these were not the monitor's orders
    ms.state.stats.record_latency(12.5, 3.0)
    assert ms.stack.store.path(DOCUMENT).exists()
    # a new process: fresh registry object, fresh state, fresh monitor
    registry = TradeRegistry(ms.stack.store)
    stats = MicroScalpStats(ms.stack.store, registry)
    assert not stats.rebuilt
    after = stats.health()
    assert {k: v for k, v in after.items() if k != "latency_ms"} == \
           {k: v for k, v in before.items() if k != "latency_ms"}
    assert after["latency_ms"]["round_trip"] == {"samples": 1, "mean_ms": 12.5, "p95_ms": 12.5, "p95_window": 1}
    assert stats.score_new() == []  # nothing is scored twice


def test_statistics_are_rebuilt_from_the_registry_when_the_document_is_missing(ms: MonitorStack) -> None:
    close_three_trades(ms)
    ms.step()
    expected = ms.monitor.health()["performance"]
    ms.stack.store.path(DOCUMENT).unlink()
    for backup in ms.stack.store.folder.glob(f"{DOCUMENT}*"):
        backup.unlink()
    fresh = ms.new_monitor(state=MicroScalpState())
    assert fresh.stats.rebuilt
    rebuilt = fresh.health()["performance"]
    for key in ("trades", "wins", "losses", "total_r", "profit_factor", "avg_hold_seconds", "per_symbol"):
        assert rebuilt[key] == expected[key], key
    assert ms.stack.store.path(DOCUMENT).exists()


def test_a_trade_closed_while_the_monitor_was_stopped_is_scored_once(ms: MonitorStack) -> None:
    ms.step()
    trade = ms.open_trade("XAUUSD", "buy", 2.0, 2.0, atr=0.5)
    ms.stack.executor.close(ms.stack.registry.get(trade.ticket), "closed by hand")
    fresh = ms.new_monitor()   # re-enabled: a new instance with the kept state
    for _ in range(3):
        ms.step()
    assert fresh.health()["performance"]["trades"] == 1
    assert fresh.health()["performance"]["last_trade"]["reason"] == "closed by hand"


def test_a_trade_closed_after_a_quiet_step_is_scored_on_the_next_step(ms: MonitorStack) -> None:
    """score_new skips the registry scan while its closed trades are unchanged: a close must
    still be seen at once."""
    ms.step()
    ms.step()  # nothing new twice: the second call is the skipped scan
    version = ms.stack.registry.closed_version("micro_scalp")
    trade = ms.open_trade("XAUUSD", "buy", 2.0, 2.0, atr=0.5)
    ms.stack.executor.close(ms.stack.registry.get(trade.ticket), "closed by hand")
    assert ms.stack.registry.closed_version("micro_scalp") != version
    ms.step()
    assert ms.monitor.health()["performance"]["trades"] == 1
    ms.stack.registry.load()  # a reload replaces the closed list: scanned again, nothing scored twice
    assert ms.state.stats.score_new() == []
    assert ms.monitor.health()["performance"]["trades"] == 1
