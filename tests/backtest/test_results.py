"""Statistics of a run, on small hand-made trade rows (one rule per test)."""
from __future__ import annotations

import pytest

from backtest.results import (TRADE_COLUMNS, exposure_seconds, longest_losing_streak, max_drawdown, trade_stats,
                              trades_csv)


def row(pnl: float, r: float | None, start: str, end: str, strategy: str = "micro_scalp", fees: float = 1.0,
        reason: str = "broker:tp", symbol: str = "XAUUSD") -> dict:
    base = dict.fromkeys(TRADE_COLUMNS, "")
    base.update(pnl=pnl, r=r, entry_time=f"2023-04-18T{start}:00+00:00", exit_time=f"2023-04-18T{end}:00+00:00",
                strategy=strategy, fees=fees, exit_reason=reason, symbol=symbol, segment=1, ticket=1)
    return base


def test_max_drawdown_is_the_deepest_fall_from_a_running_peak():
    assert max_drawdown([100, 120, 90, 130, 110, 125]) == (30.0, 25.0)
    assert max_drawdown([100, 101, 102]) == (0.0, 0.0)
    assert max_drawdown([]) == (0.0, 0.0)


def test_longest_losing_streak_counts_consecutive_losses_only():
    assert longest_losing_streak([-1, -2, 3, -1, -1, -1, 0, -5]) == 3
    assert longest_losing_streak([1, 2]) == 0


def test_exposure_is_the_union_of_open_intervals():
    assert exposure_seconds([(0, 10), (5, 20), (30, 40)]) == 30
    assert exposure_seconds([]) == 0


def test_trade_stats():
    rows = [row(50.0, 1.0, "06:00", "06:10", reason="broker:tp"),
            row(-25.0, -0.5, "06:05", "06:20", reason="time exit: held 60 min"),
            row(-25.0, -0.5, "07:00", "07:30", reason="broker:sl", symbol="EURUSD"),
            row(100.0, 2.0, "08:00", "08:30", reason="broker:tp")]
    stats = trade_stats(rows, 1000.0, replay_seconds=4 * 3600)
    assert stats["trades"] == 4 and stats["wins"] == 2 and stats["losses"] == 2
    assert stats["win_rate"] == 50.0
    assert stats["profit_factor"] == 3.0
    assert stats["net_pnl"] == 100.0 and stats["expectancy"] == 25.0
    assert stats["avg_r"] == stats["expectancy_r"] == 0.5
    assert stats["avg_win_r"] == 1.5 and stats["avg_loss_r"] == -0.5
    assert stats["max_drawdown"] == 50.0  # 1050 -> 1000
    assert stats["longest_losing_streak"] == 2
    assert stats["fees"] == 4.0
    assert stats["exposure_pct"] == pytest.approx((20 + 30 + 30) / 240 * 100, abs=1e-3)
    assert stats["exit_reasons"] == {"broker:sl": 1, "broker:tp": 2, "time exit": 1}
    assert stats["by_symbol"] == {"EURUSD": {"trades": 1, "net_pnl": -25.0}, "XAUUSD": {"trades": 3, "net_pnl": 125.0}}


def test_no_trades_and_no_losses():
    empty = trade_stats([], 1000.0, 3600)
    assert empty["trades"] == 0 and empty["win_rate"] is None and empty["profit_factor"] is None
    only_wins = trade_stats([row(10.0, 1.0, "06:00", "06:01")], 1000.0, 3600)
    assert only_wins["profit_factor"] is None and only_wins["win_rate"] == 100.0


def test_trades_csv_has_a_fixed_header_and_plain_line_ends():
    text = trades_csv([row(1.5, 0.25, "06:00", "06:01")])
    header, line = text.splitlines()
    assert header.split(",") == list(TRADE_COLUMNS)
    assert "\r" not in text and ",1.5," in line and ",0.25," in line
