"""Every MT5 trade-server retcode and last_error code has the class the retry policy relies on."""
from __future__ import annotations

import pytest

from execution.retcodes import (ALGO_TRADING_INSTRUCTION, RETCODES, LastErrorClass, RetcodeClass, classify,
                                describe, is_ipc_error, last_error_info, retcode_info)

S, T, F, R, X = (RetcodeClass.SUCCESS, RetcodeClass.TRANSIENT, RetcodeClass.FIXABLE, RetcodeClass.REJECTED,
                 RetcodeClass.FATAL)

# The official list (MQL5 "Trade Server Return Codes"), our class, the official constant name.
EXPECTED = {
    10004: (T, "REQUOTE"), 10006: (R, "REJECT"), 10007: (R, "CANCEL"), 10008: (S, "PLACED"),
    10009: (S, "DONE"), 10010: (S, "DONE_PARTIAL"), 10011: (R, "ERROR"), 10012: (T, "TIMEOUT"),
    10013: (R, "INVALID"), 10014: (F, "INVALID_VOLUME"), 10015: (R, "INVALID_PRICE"),
    10016: (F, "INVALID_STOPS"), 10017: (X, "TRADE_DISABLED"), 10018: (R, "MARKET_CLOSED"),
    10019: (R, "NO_MONEY"), 10020: (T, "PRICE_CHANGED"), 10021: (T, "PRICE_OFF"),
    10022: (R, "INVALID_EXPIRATION"), 10023: (R, "ORDER_CHANGED"), 10024: (T, "TOO_MANY_REQUESTS"),
    10025: (R, "NO_CHANGES"), 10026: (X, "SERVER_DISABLES_AT"), 10027: (X, "CLIENT_DISABLES_AT"),
    10028: (R, "LOCKED"), 10029: (R, "FROZEN"), 10030: (F, "INVALID_FILL"), 10031: (T, "CONNECTION"),
    10032: (X, "ONLY_REAL"), 10033: (R, "LIMIT_ORDERS"), 10034: (R, "LIMIT_VOLUME"),
    10035: (R, "INVALID_ORDER"), 10036: (R, "POSITION_CLOSED"), 10038: (R, "INVALID_CLOSE_VOLUME"),
    10039: (R, "CLOSE_ORDER_EXIST"), 10040: (R, "LIMIT_POSITIONS"), 10041: (R, "REJECT_CANCEL"),
    10042: (X, "LONG_ONLY"), 10043: (X, "SHORT_ONLY"), 10044: (X, "CLOSE_ONLY"), 10045: (X, "FIFO_CLOSE"),
    10046: (X, "HEDGE_PROHIBITED"),
}


def test_table_lists_exactly_the_official_codes():
    assert set(RETCODES) == set(EXPECTED)
    assert 10037 not in RETCODES  # there is no 10037


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_each_code_has_its_class_name_and_text(code):
    klass, short = EXPECTED[code]
    info = retcode_info(code)
    assert info.klass is klass
    assert classify(code) is klass
    assert info.name == f"TRADE_RETCODE_{short}"
    assert info.text and info.text[0].isupper()
    assert describe(code).startswith(f"{code} {short}: ")
    if klass is X:
        assert len(info.instruction) > 30, "a fatal code must tell the operator what to do"
    else:
        assert info.instruction == ""


def test_only_timeout_and_connection_are_ambiguous():
    assert {c for c, i in RETCODES.items() if i.ambiguous} == {10012, 10031}


def test_algo_trading_instruction_is_exact():
    assert retcode_info(10027).instruction == ALGO_TRADING_INSTRUCTION
    assert "press the Algo Trading button in the MT5 toolbar" in ALGO_TRADING_INSTRUCTION
    assert "Tools > Options > Expert Advisors" in ALGO_TRADING_INSTRUCTION


def test_order_check_success_and_unknown_codes():
    assert classify(0) is S  # order_check answers 0 "Done" on success
    unknown = retcode_info(10099)
    assert unknown.klass is R and "10099" in unknown.text  # never retried blindly


def test_describe_appends_the_broker_comment_only_when_it_adds_something():
    assert describe(10019, "No money") == (
        "10019 NO_MONEY: There is not enough money to complete the request (broker: 'No money')")
    assert describe(10004, "Requote") == "10004 REQUOTE: Requote"


@pytest.mark.parametrize("code,klass", [
    (1, LastErrorClass.OK), (-1, LastErrorClass.ERROR), (-2, LastErrorClass.ERROR), (-3, LastErrorClass.ERROR),
    (-4, LastErrorClass.ERROR), (-5, LastErrorClass.ERROR), (-6, LastErrorClass.AUTH), (-7, LastErrorClass.ERROR),
    (-8, LastErrorClass.TRADING_DISABLED), (-10000, LastErrorClass.IPC), (-10001, LastErrorClass.IPC),
    (-10002, LastErrorClass.IPC), (-10003, LastErrorClass.IPC), (-10004, LastErrorClass.IPC),
    (-10005, LastErrorClass.IPC), (-99, LastErrorClass.ERROR),
])
def test_last_error_codes(code, klass):
    assert last_error_info(code).klass is klass
    assert is_ipc_error(code) == (klass is LastErrorClass.IPC)
