"""Connection behaviour (initialize, login, shutdown) and every injectable fault."""
from __future__ import annotations

from pathlib import Path

import pytest

from execution.simterminal import SimTerminal, make_test_terminal
from monitors.clock import FakeClock
from tests.sim.helpers import market_order

NO_IPC = (-10004, "No IPC connection")
IPC_TIMEOUT = (-10005, "IPC timeout")


def test_every_call_fails_before_initialize_and_after_shutdown(tmp_path: Path, clock: FakeClock) -> None:
    mt5 = make_test_terminal(tmp_path, clock)
    calls = (lambda: mt5.symbol_info_tick("EURUSD"), lambda: mt5.account_info(), lambda: mt5.positions_get(),
             lambda: mt5.copy_rates_from_pos("EURUSD", 1, 0, 10), lambda: mt5.version(),
             lambda: mt5.order_send(market_order_unchecked()))
    for call in calls:
        assert call() is None and mt5.last_error() == NO_IPC
    assert mt5.initialize() is True and mt5.last_error() == (1, "Success")
    assert mt5.version() == (500, mt5.terminal_info().build, mt5.version()[2])
    assert mt5.shutdown() is None
    assert mt5.account_info() is None and mt5.last_error() == NO_IPC


def market_order_unchecked() -> dict:
    return {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}


def test_credentials_and_terminal_path(tmp_path: Path, clock: FakeClock) -> None:
    mt5 = make_test_terminal(tmp_path, clock, password="right", terminal_path=Path("C:/MT5/terminal64.exe"))
    assert mt5.initialize(login=5000001, password="wrong", server="SimTerminal-Demo") is False
    assert mt5.last_error() == (-6, "Terminal: Authorization failed")
    assert mt5.initialize("C:/Other/terminal64.exe") is False
    assert mt5.last_error() == (-10003, "IPC initialize failed, MetaTrader 5 x64 not found")
    assert mt5.initialize("C:/MT5/terminal64.exe", login=5000001, password="right",
                          server="SimTerminal-Demo", timeout=60000) is True
    assert mt5.login(5000002, password="right") is False and mt5.last_error()[0] == -6
    assert mt5.login(5000001, password="right", server="SimTerminal-Demo") is True
    assert mt5.account_info().login == 5000001


def test_ipc_error_fault_hits_the_named_function_count_times(mt5: SimTerminal, clock: FakeClock) -> None:
    mt5.faults.schedule("ipc_error", count=2, function="symbol_info_tick")
    assert mt5.account_info() is not None  # other functions are not affected
    assert mt5.symbol_info_tick("EURUSD") is None and mt5.last_error() == NO_IPC
    assert mt5.symbol_info_tick("EURUSD") is None
    assert mt5.symbol_info_tick("EURUSD") is not None and mt5.last_error() == (1, "Success")
    mt5.faults.schedule("ipc_error")
    assert mt5.positions_get() is None and mt5.last_error() == NO_IPC
    assert [f.kind for f in mt5.faults.injected] == ["ipc_error"] * 3
    assert mt5.faults.injected[0].function == "symbol_info_tick" and mt5.faults.injected[0].at == clock.now()


def test_timeout_after_the_order_was_placed(mt5: SimTerminal) -> None:
    mt5.faults.schedule("timeout_placed")
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1, comment="cid-42")) is None
    assert mt5.last_error() == IPC_TIMEOUT
    positions = mt5.positions_get()
    assert len(positions) == 1 and positions[0].comment == "cid-42"  # found by client id
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1)).retcode == 10009  # fault used up


def test_timeout_before_the_order_was_placed(mt5: SimTerminal) -> None:
    mt5.faults.schedule("timeout_not_placed")
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1)) is None
    assert mt5.last_error() == IPC_TIMEOUT and mt5.positions_get() == ()


def test_requote_then_fill(mt5: SimTerminal) -> None:
    mt5.faults.schedule("requote")
    tick = mt5.symbol_info_tick("EURUSD")
    result = mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1))
    assert (result.retcode, result.comment, result.deal) == (10004, "Requote", 0)
    assert (result.bid, result.ask) == (tick.bid, tick.ask) and mt5.positions_total() == 0
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1)).retcode == 10009


@pytest.mark.parametrize("retcode, comment", [(10016, "Invalid stops"), (10030, "Unsupported filling mode"),
                                              (10019, "No money"), (10018, "Market closed"),
                                              (10017, "Trade disabled")])
def test_reject_returns_the_given_retcode(mt5: SimTerminal, retcode: int, comment: str) -> None:
    mt5.faults.schedule("reject", retcode=retcode)
    result = mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1))
    assert (result.retcode, result.comment) == (retcode, comment) and mt5.positions_total() == 0
    assert mt5.faults.injected[-1].detail == f"retcode {retcode}"


def test_disconnect_then_reconnect_by_initialize(mt5: SimTerminal, clock: FakeClock) -> None:
    mt5.faults.schedule("disconnect", seconds=30)
    assert mt5.symbol_info_tick("EURUSD") is None and mt5.last_error() == NO_IPC
    assert mt5.initialize() is False and mt5.last_error() == NO_IPC
    clock.advance(29)
    assert mt5.terminal_info() is None
    clock.advance(1)
    info = mt5.terminal_info()
    assert info is not None and info.connected is False
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1)).retcode == mt5.TRADE_RETCODE_CONNECTION
    assert mt5.initialize() is True and mt5.terminal_info().connected is True
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1)).retcode == 10009


def test_stale_quotes_freeze_the_terminal_view(mt5: SimTerminal, clock: FakeClock) -> None:
    before = mt5.symbol_info_tick("BTCUSD")
    bars_before = mt5.copy_rates_from_pos("BTCUSD", mt5.TIMEFRAME_M1, 0, 3)
    mt5.faults.schedule("stale_quotes", seconds=120)
    clock.advance(90)
    frozen = mt5.symbol_info_tick("BTCUSD")
    assert frozen == before
    assert (mt5.copy_rates_from_pos("BTCUSD", mt5.TIMEFRAME_M1, 0, 3) == bars_before).all()
    clock.advance(31)
    assert mt5.symbol_info_tick("BTCUSD").time > before.time


def test_autotrading_off_until_cleared(mt5: SimTerminal) -> None:
    mt5.faults.schedule("autotrading_off")
    assert mt5.terminal_info().trade_allowed is False
    result = mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1))
    assert (result.retcode, result.comment) == (10027, "AutoTrading disabled by client")
    mt5.faults.clear()
    assert mt5.terminal_info().trade_allowed is True
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1)).retcode == 10009


def test_bad_fault_requests_are_refused(mt5: SimTerminal) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        mt5.faults.schedule("gremlins")
    with pytest.raises(ValueError, match="needs seconds"):
        mt5.faults.schedule("disconnect")
    with pytest.raises(ValueError, match="TRADE_RETCODE"):
        mt5.faults.schedule("reject", retcode=42)
    with pytest.raises(ValueError, match="order_send only"):
        mt5.faults.schedule("requote", function="symbol_info")
    mt5.faults.schedule("ipc_error", count=5)
    mt5.faults.clear()
    assert mt5.account_info() is not None
