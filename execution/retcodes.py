"""What an MT5 trade-server return code or ``last_error()`` code means, and what to do about it.

The classes drive the adapter's retry policy (see ``execution/mt5.py``):

- ``SUCCESS``   the request was executed (``10010`` only partly: the result carries the volume);
- ``TRANSIENT`` retry, bounded, with a fresh price (requote, price changed, no quotes, timeout,
  too many requests, no connection);
- ``FIXABLE``   one corrected retry (10030 other filling mode, 10016 wider stops, 10014 volume
  re-rounded), then give up with the reason;
- ``REJECTED``  do not retry: record the reason (no money, market closed, invalid request...);
- ``FATAL``     stop entries and tell the operator exactly what to switch on or change.

Codes and names follow the official MQL5 "Trade Server Return Codes" (there is no 10037).
``order_check`` reports success as retcode 0, which is listed here as ``CHECK_OK``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class RetcodeClass(str, Enum):
    SUCCESS = "success"
    TRANSIENT = "transient"
    FIXABLE = "fixable"
    REJECTED = "rejected"
    FATAL = "fatal"


@dataclass(frozen=True)
class RetcodeInfo:
    code: int
    name: str
    text: str
    klass: RetcodeClass
    # For FATAL codes: what the operator must do. For others: empty.
    instruction: str = ""
    # True when the request may have reached the server although it reports failure
    # (timeout, lost connection): look the client id up before any resend.
    ambiguous: bool = False


CHECK_OK = 0  # order_check: "Done"

ALGO_TRADING_INSTRUCTION = (
    "AutoTrading disabled by client: press the Algo Trading button in the MT5 toolbar "
    "(and allow algo trading in Tools > Options > Expert Advisors)")

_S, _T, _F, _R, _X = (RetcodeClass.SUCCESS, RetcodeClass.TRANSIENT, RetcodeClass.FIXABLE,
                      RetcodeClass.REJECTED, RetcodeClass.FATAL)

_TABLE: tuple[RetcodeInfo, ...] = (
    RetcodeInfo(10004, "TRADE_RETCODE_REQUOTE", "Requote", _T),
    RetcodeInfo(10006, "TRADE_RETCODE_REJECT", "Request rejected", _R),
    RetcodeInfo(10007, "TRADE_RETCODE_CANCEL", "Request canceled by trader", _R),
    RetcodeInfo(10008, "TRADE_RETCODE_PLACED", "Order placed", _S),
    RetcodeInfo(10009, "TRADE_RETCODE_DONE", "Request completed", _S),
    RetcodeInfo(10010, "TRADE_RETCODE_DONE_PARTIAL", "Only part of the request was completed", _S),
    RetcodeInfo(10011, "TRADE_RETCODE_ERROR", "Request processing error", _R),
    RetcodeInfo(10012, "TRADE_RETCODE_TIMEOUT", "Request canceled by timeout", _T, ambiguous=True),
    RetcodeInfo(10013, "TRADE_RETCODE_INVALID", "Invalid request", _R),
    RetcodeInfo(10014, "TRADE_RETCODE_INVALID_VOLUME", "Invalid volume in the request", _F),
    RetcodeInfo(10015, "TRADE_RETCODE_INVALID_PRICE", "Invalid price in the request", _R),
    RetcodeInfo(10016, "TRADE_RETCODE_INVALID_STOPS", "Invalid stops in the request", _F),
    RetcodeInfo(10017, "TRADE_RETCODE_TRADE_DISABLED", "Trade is disabled", _X,
                "trading is disabled for this account or symbol by the broker: check the account "
                "type and the symbol's trade mode with the broker, or disable the symbol in config/bot.json"),
    RetcodeInfo(10018, "TRADE_RETCODE_MARKET_CLOSED", "Market is closed", _R),
    RetcodeInfo(10019, "TRADE_RETCODE_NO_MONEY", "There is not enough money to complete the request", _R),
    RetcodeInfo(10020, "TRADE_RETCODE_PRICE_CHANGED", "Prices changed", _T),
    RetcodeInfo(10021, "TRADE_RETCODE_PRICE_OFF", "There are no quotes to process the request", _T),
    RetcodeInfo(10022, "TRADE_RETCODE_INVALID_EXPIRATION", "Invalid order expiration date in the request", _R),
    RetcodeInfo(10023, "TRADE_RETCODE_ORDER_CHANGED", "Order state changed", _R),
    RetcodeInfo(10024, "TRADE_RETCODE_TOO_MANY_REQUESTS", "Too frequent requests", _T),
    RetcodeInfo(10025, "TRADE_RETCODE_NO_CHANGES", "No changes in request", _R),
    RetcodeInfo(10026, "TRADE_RETCODE_SERVER_DISABLES_AT", "Autotrading disabled by server", _X,
                "the broker's server has disabled algo trading for this account: ask the broker "
                "to enable Expert Advisor trading"),
    RetcodeInfo(10027, "TRADE_RETCODE_CLIENT_DISABLES_AT", "Autotrading disabled by client terminal", _X,
                ALGO_TRADING_INSTRUCTION),
    RetcodeInfo(10028, "TRADE_RETCODE_LOCKED", "Request locked for processing", _R),
    RetcodeInfo(10029, "TRADE_RETCODE_FROZEN", "Order or position frozen", _R),
    RetcodeInfo(10030, "TRADE_RETCODE_INVALID_FILL", "Invalid order filling type", _F),
    RetcodeInfo(10031, "TRADE_RETCODE_CONNECTION", "No connection with the trade server", _T, ambiguous=True),
    RetcodeInfo(10032, "TRADE_RETCODE_ONLY_REAL", "Operation is allowed only for live accounts", _X,
                "this operation is allowed only on live accounts: use a live account or turn the feature off"),
    RetcodeInfo(10033, "TRADE_RETCODE_LIMIT_ORDERS", "The number of pending orders has reached the limit", _R),
    RetcodeInfo(10034, "TRADE_RETCODE_LIMIT_VOLUME",
                "The volume of orders and positions for the symbol has reached the limit", _R),
    RetcodeInfo(10035, "TRADE_RETCODE_INVALID_ORDER", "Incorrect or prohibited order type", _R),
    RetcodeInfo(10036, "TRADE_RETCODE_POSITION_CLOSED", "Position with the specified identifier has already been closed", _R),
    RetcodeInfo(10038, "TRADE_RETCODE_INVALID_CLOSE_VOLUME", "A close volume exceeds the current position volume", _R),
    RetcodeInfo(10039, "TRADE_RETCODE_CLOSE_ORDER_EXIST", "A close order already exists for this position", _R),
    RetcodeInfo(10040, "TRADE_RETCODE_LIMIT_POSITIONS",
                "The number of open positions has reached the broker's limit", _R),
    RetcodeInfo(10041, "TRADE_RETCODE_REJECT_CANCEL", "The pending order activation request is rejected, the order is canceled", _R),
    RetcodeInfo(10042, "TRADE_RETCODE_LONG_ONLY", "Only long positions are allowed for this symbol", _X,
                "the broker allows only long positions on this symbol: restrict the strategies to buys "
                "or disable the symbol in config/bot.json"),
    RetcodeInfo(10043, "TRADE_RETCODE_SHORT_ONLY", "Only short positions are allowed for this symbol", _X,
                "the broker allows only short positions on this symbol: restrict the strategies to sells "
                "or disable the symbol in config/bot.json"),
    RetcodeInfo(10044, "TRADE_RETCODE_CLOSE_ONLY", "Only position closing is allowed for this symbol", _X,
                "the broker allows only closing positions on this symbol: disable the symbol in config/bot.json"),
    RetcodeInfo(10045, "TRADE_RETCODE_FIFO_CLOSE", "Position closing is allowed only by FIFO rule", _X,
                "the account requires FIFO closing (oldest position first): use a hedging account without "
                "the FIFO rule, or allow one position per symbol"),
    RetcodeInfo(10046, "TRADE_RETCODE_HEDGE_PROHIBITED", "Opposite positions on a single symbol are disabled", _X,
                "the account prohibits opposite positions on one symbol: use a hedging account or stop "
                "running strategies on both sides of one symbol"),
)

RETCODES: dict[int, RetcodeInfo] = {info.code: info for info in _TABLE}

SUCCESS_CODES = frozenset(c for c, i in RETCODES.items() if i.klass is _S)
TRANSIENT_CODES = frozenset(c for c, i in RETCODES.items() if i.klass is _T)
FIXABLE_CODES = frozenset(c for c, i in RETCODES.items() if i.klass is _F)
REJECTED_CODES = frozenset(c for c, i in RETCODES.items() if i.klass is _R)
FATAL_CODES = frozenset(c for c, i in RETCODES.items() if i.klass is _X)

INVALID_VOLUME, INVALID_STOPS, INVALID_FILL = 10014, 10016, 10030
DONE_PARTIAL, NO_CHANGES, POSITION_CLOSED, CONNECTION = 10010, 10025, 10036, 10031


def retcode_info(code: int) -> RetcodeInfo:
    """The table entry; an unknown code is REJECTED (never retried blindly) and says so."""
    if code == CHECK_OK:
        return RetcodeInfo(CHECK_OK, "CHECK_OK", "Done (order_check)", _S)
    info = RETCODES.get(code)
    if info is None:
        return RetcodeInfo(code, "UNKNOWN", f"Unknown trade server return code {code}", _R)
    return info


def classify(code: int) -> RetcodeClass:
    return retcode_info(code).klass


def describe(code: int, broker_comment: str = "") -> str:
    """Human text: ``10019 NO_MONEY: There is not enough money... (broker: 'No money')``."""
    info = retcode_info(code)
    short = info.name.removeprefix("TRADE_RETCODE_")
    text = f"{code} {short}: {info.text}"
    if broker_comment and broker_comment.strip().lower() != info.text.lower():
        text += f" (broker: {broker_comment.strip()!r})"
    return text


# ---------------------------------------------------------------------------------------------
# last_error() codes of the MetaTrader5 package

class LastErrorClass(str, Enum):
    OK = "ok"
    IPC = "ipc"            # the link to the terminal: reconnect (initialize + login) and retry
    AUTH = "auth"          # wrong login, password or server
    TRADING_DISABLED = "trading_disabled"
    ERROR = "error"        # a call that failed on its own terms: not retried


@dataclass(frozen=True)
class LastErrorInfo:
    code: int
    name: str
    text: str
    klass: LastErrorClass


RES_S_OK = 1
IPC_CODES = frozenset({-10000, -10001, -10002, -10003, -10004, -10005})
AUTH_FAILED = -6
IPC_INITIALIZE_FAILED = -10003
IPC_NO_CONNECTION = -10004
IPC_TIMEOUT = -10005

_LAST_ERRORS: tuple[LastErrorInfo, ...] = (
    LastErrorInfo(1, "RES_S_OK", "generic success", LastErrorClass.OK),
    LastErrorInfo(-1, "RES_E_FAIL", "generic fail", LastErrorClass.ERROR),
    LastErrorInfo(-2, "RES_E_INVALID_PARAMS", "invalid arguments/parameters", LastErrorClass.ERROR),
    LastErrorInfo(-3, "RES_E_NO_MEMORY", "no memory condition", LastErrorClass.ERROR),
    LastErrorInfo(-4, "RES_E_NOT_FOUND", "no history", LastErrorClass.ERROR),
    LastErrorInfo(-5, "RES_E_INVALID_VERSION", "invalid version", LastErrorClass.ERROR),
    LastErrorInfo(-6, "RES_E_AUTH_FAILED", "authorization failed", LastErrorClass.AUTH),
    LastErrorInfo(-7, "RES_E_UNSUPPORTED", "unsupported method", LastErrorClass.ERROR),
    LastErrorInfo(-8, "RES_E_AUTO_TRADING_DISABLED", "auto-trading disabled", LastErrorClass.TRADING_DISABLED),
    LastErrorInfo(-10000, "RES_E_INTERNAL_FAIL", "internal IPC general error", LastErrorClass.IPC),
    LastErrorInfo(-10001, "RES_E_INTERNAL_FAIL_SEND", "internal IPC send failed", LastErrorClass.IPC),
    LastErrorInfo(-10002, "RES_E_INTERNAL_FAIL_RECEIVE", "internal IPC recv failed", LastErrorClass.IPC),
    LastErrorInfo(-10003, "RES_E_INTERNAL_FAIL_INIT", "internal IPC initialization fail", LastErrorClass.IPC),
    LastErrorInfo(-10004, "RES_E_INTERNAL_FAIL_CONNECT", "internal IPC no ipc", LastErrorClass.IPC),
    LastErrorInfo(-10005, "RES_E_INTERNAL_FAIL_TIMEOUT", "internal timeout", LastErrorClass.IPC),
)
LAST_ERRORS: dict[int, LastErrorInfo] = {info.code: info for info in _LAST_ERRORS}


def last_error_info(code: int) -> LastErrorInfo:
    info = LAST_ERRORS.get(code)
    if info is None:
        return LastErrorInfo(code, "UNKNOWN", f"unknown last_error code {code}", LastErrorClass.ERROR)
    return info


def is_ipc_error(code: int) -> bool:
    return code in IPC_CODES
