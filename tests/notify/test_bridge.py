"""Every internal event the bridge maps becomes one valid Discord payload, routed by category."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from config.loader import load_config
from notify.bridge import NotifyBridge
from notify.events import build_payload, validate_payload

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
TRADE = {"ticket": 7, "client_id": "ms-x", "strategy": "micro_scalp", "symbol": "XAUUSD", "side": "buy", "volume": 0.1,
         "entry": 2350.0, "sl": 2345.0, "tp": 2360.0, "reasons": ["L3 ok"], "opened_at": NOW.isoformat(),
         "closed_at": NOW.isoformat(), "exit_price": 2360.0, "pnl": 100.0, "r": 2.0, "close_reason": "broker:tp"}

CASES = [
    ("trade_opened", TRADE), ("trade_closed", TRADE),
    ("order_rejected", {"symbol": "EURUSD", "side": "sell", "strategy": "range_scalp", "retcode": 10019,
                        "reason": "No money"}),
    ("trading_blocked", {"symbol": "XAUUSD", "strategy": "micro_scalp", "instruction": "press Algo Trading"}),
    ("order_unknown", {"symbol": "XAUUSD", "strategy": "micro_scalp", "client_id": "ms-y"}),
    ("close_failed", {"ticket": 7, "symbol": "XAUUSD", "strategy": "micro_scalp", "error": "10031"}),
    ("range_signal", {"symbol": "EURUSD", "side": "buy", "entry": 1.085, "sl": 1.084, "tp": 1.087,
                      "range_high": 1.088, "range_low": 1.083, "reasons": ["vwap reversion"]}),
    ("trading_state_changed", {"old": "ACTIVE", "new": "HALTED", "reason": "daily loss 3.2% >= 3%"}),
    ("circuit_breaker_opened", {"name": "broker", "reason": "5 failures", "failures": 5, "retry_in_seconds": 60}),
    ("circuit_breaker_closed", {"name": "broker", "open_seconds": 75}),
    ("exit_escalated", {"ticket": 7, "symbol": "XAUUSD", "strategy": "range_scalp", "failures": 6, "reason": "invalidated",
                        "error": "10031"}),
    ("reconcile_failed", {"failures": 5, "error": "no IPC"}),
    ("position_adopted", {**TRADE, "reason": "found by magic"}),
    ("external_position", {"ticket": 9, "symbol": "EURUSD", "side": "buy", "volume": 1.0, "magic": 0}),
    ("sltp_repaired", {"ticket": 7, "symbol": "XAUUSD", "strategy": "micro_scalp", "detail": "sl 2340 -> 2345"}),
    ("symbol_paused", {"strategy": "micro_scalp", "symbol": "BTCUSD", "failures": 3, "pause_seconds": 300,
                       "error": "ValueError"}),
    ("symbol_resumed", {"strategy": "micro_scalp", "symbol": "BTCUSD", "paused_seconds": 300}),
    ("range_entries_disabled", {"reason": "3 critical errors in an hour"}),
]


class Capture:
    def __init__(self) -> None:
        self.events = []

    def notify(self, event) -> bool:
        self.events.append(event)
        return True


@pytest.mark.parametrize("kind,data", CASES, ids=[c[0] for c in CASES])
def test_each_event_kind_becomes_one_valid_payload(kind: str, data: dict, config_dir: Path) -> None:
    snapshot = load_config(config_dir)
    capture = Capture()
    bridge = NotifyBridge(capture, lambda: snapshot, lambda: NOW)  # type: ignore[arg-type]
    bridge.on_trade_event(kind, data)
    assert len(capture.events) == 1
    assert validate_payload(build_payload(capture.events[0])) == []


def test_trades_route_by_symbol_category(config_dir: Path) -> None:
    snapshot = load_config(config_dir)
    capture = Capture()
    bridge = NotifyBridge(capture, lambda: snapshot, lambda: NOW)  # type: ignore[arg-type]
    bridge.on_trade_event("trade_opened", TRADE)
    bridge.on_trade_event("trade_opened", {**TRADE, "symbol": "BTCUSD"})
    assert [e.category for e in capture.events] == ["gold", "crypto"]


def test_the_range_monitors_own_retries_are_not_announced_until_it_escalates(config_dir: Path) -> None:
    snapshot = load_config(config_dir)
    capture = Capture()
    bridge = NotifyBridge(capture, lambda: snapshot, lambda: NOW)  # type: ignore[arg-type]
    bridge.on_trade_event("close_failed", {"ticket": 1, "symbol": "EURUSD", "strategy": "range_scalp", "error": "x"})
    assert capture.events == []
    bridge.on_trade_event("close_failed", {"ticket": 1, "symbol": "EURUSD", "strategy": "range_scalp", "error": "x",
                                           "attempts": 3})
    assert len(capture.events) == 1


def test_broker_down_and_back_is_announced_once_each(config_dir: Path) -> None:
    snapshot = load_config(config_dir)
    capture = Capture()
    bridge = NotifyBridge(capture, lambda: snapshot, lambda: NOW)  # type: ignore[arg-type]
    down = {"connected": False, "last_error": {"code": -10004, "message": "No IPC connection"}}
    bridge.watch_broker(down, "mt5")
    bridge.watch_broker(down, "mt5")
    bridge.watch_broker({"connected": True}, "mt5")
    assert [e.kind for e in capture.events] == ["broker_disconnected", "broker_restored"]
