"""Connecting the MT5 adapter to the simulated terminal: each failure has its own clear message."""
from __future__ import annotations

import logging

import pytest

from execution.errors import BrokerSetupError, BrokerUnavailable, TradingDisabled
from execution.retcodes import ALGO_TRADING_INSTRUCTION
from tests.execution.conftest import SIM_LOGIN, SIM_PASSWORD, bot_config_for, sim_secrets


def test_connect_selects_symbols_derives_filling_and_measures_offset(broker):
    state = broker.connection_state()
    assert state["connected"] is True and state["trade_server_connected"] is True
    assert state["login"] == SIM_LOGIN and state["server"] == "SimTerminal-Demo"
    assert state["symbols"] == {"XAUUSD": "XAUUSD", "EURUSD": "EURUSD", "BTCUSD": "BTCUSD"}
    # bitmasks in data/sim_symbols.json: XAUUSD IOC only (2), EURUSD both (3), BTCUSD FOK only (1)
    assert state["filling"] == {"XAUUSD": "IOC", "EURUSD": "FOK", "BTCUSD": "FOK"}
    assert state["server_utc_offset_hours"] == 2.0 and state["server_utc_offset_source"] == "measured"
    assert state["entries_allowed"] is True and state["last_error"] is None
    assert broker.account().login == SIM_LOGIN and broker.account().hedging is True


def test_wrong_password_says_authorization_failed_without_leaking_it(make_sim, make_broker):
    with pytest.raises(BrokerSetupError) as info:
        make_broker(make_sim(), secrets=sim_secrets(mt5_password="not-the-password"))
    text = str(info.value)
    assert info.value.code == -6
    assert "authorization failed for login 5000001" in text and "MT5_PASSWORD" in text
    assert "not-the-password" not in text and SIM_PASSWORD not in text


def test_wrong_server_name_is_an_authorization_failure_naming_the_server(make_sim, make_broker):
    with pytest.raises(BrokerSetupError, match="on server 'Other-Live'.*MT5_SERVER"):
        make_broker(make_sim(), secrets=sim_secrets(mt5_server="Other-Live"))


def test_terminal_not_found_at_the_configured_path(make_sim, make_broker, tmp_path):
    terminal = make_sim(terminal_path=tmp_path / "MT5" / "terminal64.exe")
    missing = str(tmp_path / "nowhere" / "terminal64.exe")
    with pytest.raises(BrokerSetupError) as info:
        make_broker(terminal, secrets=sim_secrets(mt5_path=missing))
    assert info.value.code == -10003
    assert "terminal not found" in str(info.value) and f"no file at MT5_PATH={missing!r}" in str(info.value)


def test_terminal_not_running_is_transient_with_instructions(make_sim, make_broker):
    terminal = make_sim()
    terminal.faults.schedule("ipc_error", function="initialize")
    with pytest.raises(BrokerUnavailable) as info:
        make_broker(terminal)
    assert info.value.code == -10004
    assert "no IPC connection to the MT5 terminal" in str(info.value)
    assert "start the terminal" in str(info.value)


def test_account_mismatch_when_the_terminal_is_on_another_account(make_sim, make_broker):
    # No password: the adapter attaches to the terminal's own account and checks the login.
    with pytest.raises(BrokerSetupError, match="account mismatch: .*account 5000001 but MT5_LOGIN is 7777777"):
        make_broker(make_sim(), secrets=sim_secrets(mt5_login=7777777, mt5_password=None))


def test_autotrading_off_at_start_blocks_entries_but_connects(make_sim, make_broker, caplog):
    terminal = make_sim()
    terminal.faults.schedule("autotrading_off")
    with caplog.at_level(logging.WARNING):
        broker = make_broker(terminal)
    assert ALGO_TRADING_INSTRUCTION in caplog.text
    assert broker.connection_state()["entries_allowed"] is False
    assert broker.entries_blocked() == ALGO_TRADING_INSTRUCTION
    with pytest.raises(TradingDisabled) as info:
        broker.market_order("EURUSD", "buy", 0.01, None, None, magic=11, client_id="t-auto-1")
    assert info.value.instruction == ALGO_TRADING_INSTRUCTION
    assert "press the Algo Trading button in the MT5 toolbar" in str(info.value)
    assert terminal.positions_get() == ()
    # the operator presses the button: entries resume without a restart
    terminal.faults.clear("autotrading_off")
    result = broker.market_order("EURUSD", "buy", 0.01, None, None, magic=11, client_id="t-auto-2")
    assert result.ok and broker.entries_blocked() is None
    assert len(terminal.positions_get()) == 1


def test_symbol_mapping_to_suffixed_broker_names(make_sim, make_broker):
    terminal = make_sim(symbol_suffix="c")
    config = bot_config_for({"XAUUSD": "XAUUSDc", "EURUSD": "EURUSDc"})
    broker = make_broker(terminal, config=config)
    assert broker.connection_state()["symbols"] == {"XAUUSD": "XAUUSDc", "EURUSD": "EURUSDc"}
    assert broker.symbol_spec("XAUUSD").broker_name == "XAUUSDc"
    result = broker.market_order("XAUUSD", "buy", 0.01, None, None, magic=7, client_id="t-map-1")
    assert result.ok and result.symbol == "XAUUSD"
    assert [p.symbol for p in terminal.positions_get()] == ["XAUUSDc"]   # the broker's name inside
    [position] = broker.positions()
    assert position.symbol == "XAUUSD" and position.broker_symbol == "XAUUSDc"  # the config name outside
    assert broker.positions(symbol="XAUUSD") == [position] and broker.positions(symbol="EURUSD") == []


def test_unknown_broker_symbol_lists_close_matches(make_sim, make_broker):
    terminal = make_sim(symbol_suffix="c")
    with pytest.raises(BrokerSetupError) as info:
        make_broker(terminal, config=bot_config_for({"XAUUSD": None}))
    text = str(info.value)
    assert "the broker has no symbol 'XAUUSD'" in text and "symbols.XAUUSD.broker_symbol" in text
    assert "close matches at this broker: XAUUSDc" in text


def test_unconfigured_symbol_is_refused_clearly(broker):
    with pytest.raises(ValueError, match="'GBPUSD' is not configured in config/bot.json"):
        broker.quote("GBPUSD")
    for read in (broker.bars, broker.bar_rows):  # (their cached-spec shortcut misses: the same refusal)
        with pytest.raises(ValueError, match="'GBPUSD' is not configured in config/bot.json"):
            read("GBPUSD", "M1", 3)
    with pytest.raises(ValueError, match="'GBPUSD' is not configured in config/bot.json"):
        broker.symbol_spec("GBPUSD")
    with pytest.raises(ValueError, match="unknown timeframe 'M7'"):
        broker.bar_rows("XAUUSD", "M7", 3)
