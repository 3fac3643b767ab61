"""``status`` renders every section an operator needs from health.json alone."""
from __future__ import annotations

import json
import time
from pathlib import Path

from monitors.status_view import collect_status, render_status


def test_status_shows_connection_trading_state_positions_and_todays_results(tmp_path: Path) -> None:
    health = {
        "pid": 4242, "status": "running", "version": "0.1.0", "written_at_epoch": time.time() - 2,
        "mode": {"mode": "paper", "broker": "sim"}, "config": {"config_version": 3, "last_error": None},
        "broker": {"connected": False, "login": 5000001, "server": "SimTerminal-Demo", "reconnects": 2,
                   "last_error": {"code": -10004, "message": "No IPC connection"}},
        "trading": {"state": "ENTRIES BLOCKED", "reason": "press the Algo Trading button", "reconciliation": None},
        "account": {"login": 5000001, "balance": 10012.5, "equity": 10020.0, "currency": "USD", "margin_free": 9800.0},
        "threads": {"micro-scalp": {"status": "running", "heartbeat_age_s": 1.2, "steps": 40, "errors": 1,
                                    "restarts": 0, "last_error": None,
                                    "detail": {"performance": {"trades": 9, "win_rate": 0.5556, "profit_factor": 1.8,
                                                               "avg_r": 0.31, "current_streak": -1,
                                                               "latency_ms": {"pipeline": {"mean_ms": 1.2,
                                                                                           "p95_ms": 2.5}}}}}},
        "positions": {"broker": [{"ticket": 17, "symbol": "XAUUSD", "side": "buy", "volume": 0.1,
                                  "price_open": 2350.1, "sl": 2345.0, "tp": 2360.0, "profit": 7.5}]},
        "results_today": {"micro_scalp": {"trades": 4, "wins": 3, "pnl": 12.5, "avg_r": 0.61}},
    }
    (tmp_path / "health.json").write_text(json.dumps(health))
    status = collect_status(tmp_path)
    assert status["found"] and status["running"] is False and 1 < status["health_age_s"] < 10
    text = render_status(status)
    assert "broker: DISCONNECTED (login 5000001 on SimTerminal-Demo, reconnects 2, last error -10004 No IPC connection)" in text
    assert "trading: ENTRIES BLOCKED - press the Algo Trading button" in text
    assert "balance 10012.50 equity 10020.00 USD" in text
    assert "micro-scalp" in text and "1.2s" in text
    assert "XAUUSD" in text and "2350.1" in text and "7.50" in text
    assert "micro_scalp" in text and "0.61" in text and "12.50" in text
    assert ("micro_scalp all-time: 9 trades, win rate 56%, profit factor 1.80, avg R 0.31, streak -1, "
            "order latency mean 1.2 ms p95 2.5 ms") in text
