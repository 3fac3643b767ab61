"""``SimTerminal``: a stand-in for the MetaTrader5 module that replays recorded market data.

An INSTANCE is passed wherever the real module would be: it has the module's functions, constant
values (class attributes), named-tuple structures, numpy dtypes, retcodes and ``last_error()``
behaviour for everything the bot uses, so the adapter code that trades live is the code the
tests run. Market time is ``clock.now()``; see ``market.py`` for how recordings are replayed.

Behaviour mirrored from the real package (5.0.x), with the evidence behind each choice:

- Before ``initialize()`` (and after ``shutdown()``) every call returns None (``initialize``
  False) with ``(-10004, 'No IPC connection')``, as the real package does when not attached.
- A successful call sets ``last_error()`` to ``(1, 'Success')``. Empty results are empty (a
  tuple, an empty array), never None: ``positions_get()`` with no positions returns ``()``.
- Unknown symbol: ``symbol_info``/``symbol_info_tick``/``copy_ticks_*`` give
  ``(-4, 'Terminal: Not found')``, ``copy_rates_*`` ``(-1, 'Terminal: Call failed')`` (both
  measured on live terminals). A symbol not selected in Market Watch has no tick (-4).
- Bad request fields make ``order_send``/``order_check`` return None with
  ``(-2, 'Invalid "<field>" argument')``; a ``comment`` longer than 31 characters is refused
  the same way (the real package does not truncate it). Missing fields default to 0.
- Bar and tick times, position and deal times are broker SERVER time (UTC +
  ``server_utc_offset_hours``). Date arguments (datetime or epoch seconds) are compared with
  those server-time stamps, as the real terminal does; a naive datetime is read as UTC-labelled.
- ``history_deals_get(ticket=...)`` filters by ORDER ticket (the deal's ``order`` field), as
  documented; ``position=`` by position id.
- Hedging account: every market order opens its own position (ticket = opening order ticket);
  ``position=`` in a request closes (fully or partly) or modifies that position.

What is not simulated (requests for it are answered, never silently accepted): pending orders
(TRADE_ACTION_PENDING/MODIFY/REMOVE/CLOSE_BY answer 10013 "Invalid request"), swaps, market
depth, netting accounts. Orders fill completely at the current quote plus ``slippage_points``
(adverse); stop losses fill at their level (or the first price beyond it after a jump) minus the
same slippage, take profits at their level (or better after a jump). Stop-out (margin level
below ``margin_so_so``) closes the worst position at the current price, reason SO; it is checked
at each call's time, not tick by tick.
"""
from __future__ import annotations

import calendar
import fnmatch
import functools
import logging
import math
import numbers
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from engines.bars import shifted_rows
from execution.simterminal import constants as c
from execution.simterminal.book import BookError, Deal, Order, Position, load_book, new_book, save_book
from execution.simterminal.constants import PACKAGE_VERSION, Mt5Constants
from execution.simterminal.faults import FaultInjector
from execution.simterminal.market import (ALL_TIMEFRAMES, Quote, SymbolMarket, TickRows,
                                          UnsupportedTimeframe, load_series, months_from_days)
from execution.simterminal.symbols import (CALC_MODES, SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC,
                                           SymbolSpec, load_symbol_specs)
from execution.simterminal.types import (RATES_DTYPE, RES_TEXT, RETCODE_COMMENT, TICKS_DTYPE,
                                         AccountInfo, BookInfo, OrderCheckResult, OrderSendResult,
                                         SymbolInfo, TerminalInfo, Tick, TradeDeal, TradeOrder,
                                         TradePosition, TradeRequest)
from monitors.clock import Clock

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_DIR / "data"
DEFAULT_SPEC_PATH = DEFAULT_DATA_DIR / "sim_symbols.json"
DEFAULT_SYMBOLS: tuple[str, ...] = ("XAUUSD", "EURUSD", "BTCUSD")
COMMENT_MAX_LEN = 31
TERMINAL_BUILD = 5430
TERMINAL_RELEASE = "14 Nov 2025"
MARGIN_SO_CALL = 100.0
MARGIN_SO_SO = 50.0
STOP_SCAN_CHUNK_MS = 7 * 86_400_000
OK = (c.RES_S_OK, RES_TEXT[c.RES_S_OK])
NO_IPC = (c.RES_E_INTERNAL_FAIL_CONNECT, RES_TEXT[c.RES_E_INTERNAL_FAIL_CONNECT])
IPC_TIMEOUT = (c.RES_E_INTERNAL_FAIL_TIMEOUT, RES_TEXT[c.RES_E_INTERNAL_FAIL_TIMEOUT])
CALL_FAILED = (c.RES_E_FAIL, RES_TEXT[c.RES_E_FAIL])
NOT_FOUND = (c.RES_E_NOT_FOUND, RES_TEXT[c.RES_E_NOT_FOUND])
INVALID_PARAMS = (c.RES_E_INVALID_PARAMS, RES_TEXT[c.RES_E_INVALID_PARAMS])
AUTH_FAILED = (c.RES_E_AUTH_FAILED, RES_TEXT[c.RES_E_AUTH_FAILED])

_new_tuple = tuple.__new__  # what a namedtuple's ``__new__`` calls with its fields in order
# The history's record fields (deals and orders): read by the history filters, record by record.
_TIME_MS, _TIME_SETUP_MS, _ORDER, _TICKET, _POSITION_ID, _SYMBOL = (
    attrgetter(name) for name in ("time_ms", "time_setup_ms", "order", "ticket", "position_id", "symbol"))

_INT_FIELDS = ("action", "magic", "order", "deviation", "type", "type_filling", "type_time",
               "expiration", "position", "position_by")
_FLOAT_FIELDS = ("volume", "price", "stoplimit", "sl", "tp")
_VALID_RETCODES = frozenset(v for k, v in c.MT5_CONSTANTS.items() if k.startswith("TRADE_RETCODE_"))
_UNSUPPORTED_ACTIONS = (c.TRADE_ACTION_PENDING, c.TRADE_ACTION_MODIFY, c.TRADE_ACTION_REMOVE,
                        c.TRADE_ACTION_CLOSE_BY)


def _api(failure: Any = None, name: str | None = None) -> Callable:
    """Wrap a module function: one lock, the IPC gate (connection, faults), the market advance,
    and ``last_error`` set to Success unless the function reports a failure itself. ``name``:
    the module function the faults see this call as (default: its own name)."""

    def decorate(fn: Callable) -> Callable:
        fault_name = name or fn.__name__

        @functools.wraps(fn)
        def wrapper(self: "SimTerminal", *args: Any, **kwargs: Any) -> Any:
            with self._lock:  # not acquire/try/release: a KeyboardInterrupt could leave it held (Mt5Broker._call)
                now = self._clock.now()
                self._call_now = now  # one instant per call: checks and fills agree
                if not (self._initialized and self.faults.idle):  # else nothing can refuse the call
                    refused = self._refuse(fault_name, now)
                    if refused is not None:
                        self._last_error = refused
                        return failure
                self._last_error = OK
                if now is not self._advanced[0] or self._book is not self._advanced[1]:
                    # Once the book has caught up with this instant, a later call at the same
                    # instant (the same clock reading) would find nothing to do: skipped.
                    self._advance(now)
                    self._advanced = (now, self._book)
                return fn(self, *args, **kwargs)

        return wrapper

    return decorate


class _Reject(Exception):
    """A trade request the server refuses with ``retcode`` (internal control flow)."""

    def __init__(self, retcode: int) -> None:
        super().__init__(retcode)
        self.retcode = retcode


class _ArgError(Exception):
    """A call refused by the package itself: None with ``last_error() == (-2, text)``."""

    def __init__(self, text: str, code: int = c.RES_E_INVALID_PARAMS) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass
class _Plan:
    """A validated trade request, ready to apply (or to report by order_check)."""

    kind: str  # "open", "close", "sltp"
    market: SymbolMarket
    order_type: int
    volume: float
    price: float
    bid: float
    ask: float
    sl: float
    tp: float
    margin: float
    commission: float
    position: Position | None = None


class SimTerminal(Mt5Constants):
    """A simulated MetaTrader 5 terminal and trade server over recorded data (see module doc)."""

    TerminalInfo = TerminalInfo
    AccountInfo = AccountInfo
    SymbolInfo = SymbolInfo
    Tick = Tick
    TradePosition = TradePosition
    TradeOrder = TradeOrder
    TradeDeal = TradeDeal
    TradeRequest = TradeRequest
    OrderSendResult = OrderSendResult
    OrderCheckResult = OrderCheckResult
    BookInfo = BookInfo
    __version__ = PACKAGE_VERSION
    __author__ = "MetaQuotes Ltd."

    def __init__(self, clock: Clock, book_path: Path | None,
                 symbols_spec_path: Path = DEFAULT_SPEC_PATH, data_dir: Path = DEFAULT_DATA_DIR,
                 symbols: Sequence[str] = DEFAULT_SYMBOLS, server_utc_offset_hours: float = 0.0,
                 starting_balance: float = 10000.0, leverage: int = 100, *,
                 currency: str = "USD", login: int = 5000001, password: str | None = None,
                 server: str = "SimTerminal-Demo", terminal_path: Path | str | None = None,
                 slippage_points: int = 0, symbol_suffix: str = "", preselect: bool = True,
                 maxbars: int = 100_000, time_save_seconds: float = 5.0,
                 account_name: str = "Simulated account",
                 company: str = "Simulated broker (replay of recorded data)") -> None:
        """``book_path`` None keeps the book in memory only (backtests); otherwise the book is
        loaded from it when it exists and written after every change. ``password`` None accepts
        any password in ``initialize``/``login``; ``terminal_path`` set makes ``initialize(path=X)``
        fail for any other X, as a missing terminal does. The book is saved after every trade
        and, for the market time alone, at most every ``time_save_seconds`` of wall time."""
        offset_ms = int(round(server_utc_offset_hours * 3_600_000))
        if offset_ms % 60_000:
            raise ValueError("server_utc_offset_hours must be a whole number of minutes")
        if starting_balance <= 0 or leverage < 1 or maxbars < 1 or slippage_points < 0:
            raise ValueError("starting_balance and leverage must be positive, maxbars >= 1, slippage >= 0")
        self._init_runtime(clock, book_path, data_dir=data_dir, offset_ms=offset_ms, leverage=leverage,
                           currency=currency, login=login, password=password, server=server,
                           terminal_path=terminal_path, slippage_points=slippage_points, maxbars=maxbars,
                           time_save_seconds=time_save_seconds, account_name=account_name, company=company)
        self.server_utc_offset_hours = server_utc_offset_hours

        specs = load_symbol_specs(symbols_spec_path)
        book = load_book(self._book_path)
        wanted = [s for s in symbols]
        if book is not None:
            if book.login != self._login:
                raise BookError(f"{self._book_path}: the book belongs to account {book.login}, "
                                f"not {self._login}; use another book file")
            for position in book.positions.values():
                base = position.symbol[:len(position.symbol) - len(symbol_suffix)] \
                    if symbol_suffix and position.symbol.endswith(symbol_suffix) else position.symbol
                if base not in wanted:
                    if base not in specs:
                        raise BookError(f"{self._book_path}: open position {position.ticket} on "
                                        f"{position.symbol}, which the symbol spec does not define")
                    wanted.append(base)
        unknown = [s for s in wanted if s not in specs]
        if unknown:
            raise ValueError(f"symbols not defined in {symbols_spec_path}: {', '.join(unknown)}")
        for name in wanted:
            if specs[name].currency_profit != currency:
                raise ValueError(f"{name}: profit currency {specs[name].currency_profit} differs from the "
                                 f"account currency {currency}; the simulator needs them equal")

        now_ms = self._ms(clock.now())
        if book is None:
            book = new_book(self._login, currency, now_ms, starting_balance)
            save_book(self._book_path, book)
        self._book = book
        self._specs: dict[str, SymbolSpec] = {}
        self._markets: dict[str, SymbolMarket] = {}
        for name in wanted:
            broker_name = name + symbol_suffix
            spec = specs[name]
            self._specs[broker_name] = spec
            self._markets[broker_name] = SymbolMarket(
                broker_name, spec, load_series(spec, self._data_dir, offset_ms), book.anchor_ms)
        self._selected: set[str] = set(self._markets) if preselect else set()
        self._static_info = {name: self._static_symbol_info(name) for name in self._markets}

    def _init_runtime(self, clock: Clock, book_path: Path | None, *, data_dir: Path, offset_ms: int,
                      leverage: int, currency: str, login: int, password: str | None, server: str,
                      terminal_path: Path | str | None, slippage_points: int, maxbars: int,
                      time_save_seconds: float, account_name: str, company: str) -> None:
        """The terminal's own state apart from the book, the symbol specs and the markets.

        A seam for terminals that bring another market source but keep this trade server
        (``execution.paper_terminal`` fills from a real terminal's quotes): they call this
        instead of ``__init__`` and then set ``_book``, ``_specs``, ``_markets``, ``_selected``
        and ``_static_info`` themselves."""
        self._clock = clock
        self._lock = threading.RLock()
        self._book_path = Path(book_path) if book_path is not None else None
        self._data_dir = Path(data_dir)
        self._offset_ms = offset_ms
        self.server_utc_offset_hours = offset_ms / 3_600_000
        self._leverage = int(leverage)
        self._currency = currency
        self._login = int(login)
        self._password = password
        self._server = server
        self._terminal_path = Path(terminal_path) if terminal_path is not None else None
        self._slippage_points = int(slippage_points)
        self._maxbars = int(maxbars)
        self._account_name = account_name
        self._company = company
        self._initialized = False
        self._server_connected = True
        self._last_error: tuple[int, str] = OK
        self._request_id = 0
        self._clock_behind_warned = False
        self._call_now = clock.now()
        self._call_ms_memo: tuple[datetime, int] | None = None  # (instant, _ms(instant))
        self._advanced: tuple[datetime | None, Any] = (None, None)  # (instant, book) of the last ``_advance``
        self._rates_markets: dict[tuple[str, int], SymbolMarket] = {}  # (symbol, timeframe) found valid
        self._tick_memo: dict[str, tuple[Quote, Tick]] = {}  # symbol -> (market quote, its Tick)
        self._account_memo: tuple[tuple, AccountInfo] | None = None  # (inputs, answer) while flat
        self._last_save = time.monotonic()
        self._time_save_seconds = float(time_save_seconds)
        self.faults = FaultInjector(clock, _VALID_RETCODES)

    # ======================================================================================
    # helpers that tests and the wiring may use (not part of the MetaTrader5 API)

    @property
    def book_path(self) -> Path | None:
        return self._book_path

    @property
    def anchor(self) -> datetime:
        """The first market time this book saw; it fixes which recorded week plays when."""
        return datetime.fromtimestamp(self._book.anchor_ms / 1000, timezone.utc)

    @staticmethod
    def book_market_time(book_path: Path) -> datetime | None:
        """The market time a stored book reached, so a restarted bot can resume its clock there
        (the simulated market must not go backwards under open positions)."""
        book = load_book(Path(book_path))
        if book is None:
            return None
        return datetime.fromtimestamp(book.last_eval_ms / 1000, timezone.utc)

    def market_open(self, symbol: str) -> bool:
        """Whether the symbol's recorded market is open now (the trade server's view)."""
        with self._lock:
            return self._markets[symbol].is_open(self._ms(self._clock.now()))

    # ======================================================================================
    # connection

    def initialize(self, path: str | Path | None = None, *, login: int | None = None,
                   password: str | None = None, server: str | None = None,
                   timeout: int | None = None, portable: bool = False) -> bool:
        with self._lock:
            now = self._call_now = self._clock.now()
            inside, ended = self.faults.disconnect_window(now)
            if inside:
                self._last_error = NO_IPC
                return False
            if self.faults.take_ipc_error("initialize", now):
                self._last_error = NO_IPC
                return False
            if path is not None and not isinstance(path, (str, Path)):
                self._last_error = (c.RES_E_INVALID_PARAMS, 'Invalid "path" argument')
                return False
            if timeout is not None and (not isinstance(timeout, numbers.Integral) or timeout < 0):
                self._last_error = (c.RES_E_INVALID_PARAMS, 'Invalid "timeout" argument')
                return False
            if path is not None and self._terminal_path is not None and Path(path) != self._terminal_path:
                self._last_error = (c.RES_E_INTERNAL_FAIL_INIT,
                                    RES_TEXT[c.RES_E_INTERNAL_FAIL_INIT] % "MetaTrader 5 x64 not found")
                return False
            if login is not None and not _is_int(login):
                self._last_error = (c.RES_E_INVALID_PARAMS, 'Invalid "login" argument')
                return False
            if login is not None and not self._credentials_ok(login, password, server):
                self._last_error = AUTH_FAILED
                return False
            self._initialized = True
            self._server_connected = True
            self._last_error = OK
            self._advance(now)
            return True

    def login(self, login: int, password: str | None = None, server: str | None = None,
              timeout: int | None = None) -> bool:
        with self._lock:
            now = self._call_now = self._clock.now()
            refused = self._refuse("login", now)
            if refused is not None:
                self._last_error = refused
                return False
            if not isinstance(login, numbers.Integral):
                self._last_error = (c.RES_E_INVALID_PARAMS, 'Invalid "login" argument')
                return False
            if not self._credentials_ok(login, password, server):
                self._last_error = AUTH_FAILED
                return False
            self._last_error = OK
            self._advance(now)
            return True

    def shutdown(self) -> None:
        with self._lock:
            self._initialized = False
            self._last_error = OK
            self._save()
        return None

    def last_error(self) -> tuple[int, str]:
        with self._lock:
            return self._last_error

    @_api()
    def version(self) -> tuple[int, int, str]:
        return (500, TERMINAL_BUILD, TERMINAL_RELEASE)

    @_api()
    def terminal_info(self) -> TerminalInfo:
        data = str(self._data_dir)
        return TerminalInfo(
            community_account=False, community_connection=False, connected=self._server_connected,
            dlls_allowed=False, trade_allowed=not self.faults.autotrading_off, tradeapi_disabled=False,
            email_enabled=False, ftp_enabled=False, notifications_enabled=False, mqid=False,
            build=TERMINAL_BUILD, maxbars=self._maxbars, codepage=0, ping_last=0,
            community_balance=0.0, retransmission=0.0, company=self._company,
            name="MetaTrader 5 (simulated)", language="English",
            path=str(self._terminal_path or data), data_path=data, commondata_path=data)

    @_api()
    def account_info(self) -> AccountInfo:
        if self._book.positions or not self.faults.idle:
            return self._account_info()
        # Flat (and no fault to age), the answer depends on the balance and the account's fixed
        # fields alone: the same balance object (no deal since) with the same fields, the same answer.
        key = (self._book.balance, self._login, self._leverage, self._currency, self._account_name,
               self._server, self._company)
        memo = self._account_memo
        if memo is not None and memo[0][0] is key[0] and memo[0][1:] == key[1:]:
            return memo[1]
        info = self._account_info()
        self._account_memo = (key, info)
        return info

    def _account_info(self) -> AccountInfo:
        balance, profit, equity, margin, free, level = self._account_figures(self._view_ms())
        return AccountInfo(
            login=self._login, trade_mode=c.ACCOUNT_TRADE_MODE_DEMO, leverage=self._leverage,
            limit_orders=200, margin_so_mode=c.ACCOUNT_STOPOUT_MODE_PERCENT, trade_allowed=True,
            trade_expert=True, margin_mode=c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING, currency_digits=2,
            fifo_close=False, balance=balance, credit=0.0, profit=profit, equity=equity,
            margin=margin, margin_free=free, margin_level=level, margin_so_call=MARGIN_SO_CALL,
            margin_so_so=MARGIN_SO_SO, margin_initial=0.0, margin_maintenance=0.0, assets=0.0,
            liabilities=0.0, commission_blocked=0.0, name=self._account_name, server=self._server,
            currency=self._currency, company=self._company)

    # ======================================================================================
    # symbols

    @_api()
    def symbols_total(self) -> int:
        return len(self._markets)

    @_api()
    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        if group is not None and not isinstance(group, str):
            return self._fail((c.RES_E_INVALID_PARAMS, 'Invalid "group" argument'))
        names = [n for n in self._markets if group is None or _group_match(n, group)]
        return tuple(self._symbol_info(n) for n in names)

    @_api()
    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        if not isinstance(symbol, str):
            return self._fail((c.RES_E_INVALID_PARAMS, "Invalid 1st unnamed argument"))
        if symbol not in self._markets:
            return self._fail(NOT_FOUND)
        return self._symbol_info(symbol)

    @_api()
    def symbol_info_tick(self, symbol: str) -> Tick | None:
        if not isinstance(symbol, str):
            return self._fail((c.RES_E_INVALID_PARAMS, "Invalid 1st unnamed argument"))
        if symbol not in self._markets or symbol not in self._selected:
            return self._fail(NOT_FOUND)
        quote = self._markets[symbol].quote(self._view_ms())
        memo = self._tick_memo.get(symbol)
        if memo is not None and memo[0] is quote:  # the same tick as last asked: same answer
            return memo[1]
        msc = quote.time_ms + self._offset_ms
        # in Tick's field order (time, bid, ask, last, volume, time_msc, flags, volume_real), made
        # as a namedtuple's own ``__new__`` makes it (``tuple.__new__(cls, values)``) without that
        # Python-level function's call, once per new tick
        tick = _new_tuple(Tick, (msc // 1000, quote.bid, quote.ask, 0.0, 0, msc, quote.flags, 0.0))
        self._tick_memo[symbol] = (quote, tick)
        return tick

    @_api(failure=False)
    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        if not isinstance(symbol, str):
            return self._fail((c.RES_E_INVALID_PARAMS, "Invalid 1st unnamed argument"), False)
        if symbol not in self._markets:
            return self._fail(CALL_FAILED, False)
        if enable:
            self._selected.add(symbol)
        else:
            if any(p.symbol == symbol for p in self._book.positions.values()):
                return self._fail(CALL_FAILED, False)  # MT5 keeps symbols with positions
            self._selected.discard(symbol)
        return True

    # ======================================================================================
    # market data

    @_api()
    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> np.ndarray | None:
        return self._rates_from_pos(symbol, timeframe, start_pos, count, False)

    # Not in the MetaTrader5 package: the simulator's cheaper answer to the adapter's small bar
    # reads (``Mt5Broker.bar_rows``), which would turn the array into rows anyway.
    reads_rate_rows = True

    @_api(name="copy_rates_from_pos")
    def copy_rates_from_pos_rows(self, symbol: str, timeframe: int, start_pos: int, count: int,
                                 shift_s: int = 0) -> list[tuple] | None:
        """``copy_rates_from_pos(...).tolist()``: the same rows of plain numbers (and the same
        errors, faults included: they see a ``copy_rates_from_pos`` call), without building the
        structured array; with ``shift_s`` (whole seconds), each row's time less that: the
        adapter's server-to-UTC shift, made here once per block of rows instead of per read."""
        return self._rates_from_pos(symbol, timeframe, start_pos, count, True, shift_s)

    def _rates_from_pos(self, symbol: Any, timeframe: Any, start_pos: Any, count: Any,
                        rows: bool, shift_s: int = 0) -> np.ndarray | list[tuple] | None:
        # ``_rates_args``'s kept answer for the usual arguments read here without its call (a read
        # per bar and timeframe); anything else is checked there
        market = self._rates_markets.get((symbol, timeframe)) if type(symbol) is str and type(timeframe) is int \
            else None
        if market is None:
            market, error = self._rates_args(symbol, timeframe)
            if error:
                return self._fail(error)
        if not (type(start_pos) is int and type(count) is int):  # (plain ints, the usual arguments: no call)
            if not (_is_int(start_pos) and _is_int(count)):
                return self._fail(INVALID_PARAMS)
            start_pos, count = int(start_pos), int(count)  # numpy integers: positions as plain ints
        if start_pos < 0 or count <= 0:
            return self._fail(INVALID_PARAMS)
        view = self._view_ms()
        if start_pos >= self._maxbars:
            return self._fail(CALL_FAILED)
        if timeframe == c.TIMEFRAME_MN1:
            months = self._months_until(market, view, start_pos + count)
            end = len(months) - start_pos
            months = months[max(0, end - count):max(0, end)]
            if not rows:
                return months
            return shifted_rows(months.tolist(), shift_s)
        agg = market.aggregate(timeframe)
        g_now = market.last_bar_index(agg, view)
        g_hi = g_now - start_pos
        g_lo = g_hi - count + 1
        oldest = g_now - self._maxbars + 1
        if g_lo < oldest:
            g_lo = oldest
        if rows:
            return market.rate_rows(timeframe, g_lo, g_hi + 1, view, agg, shift_s)
        return market.rates(timeframe, g_lo, g_hi + 1, view)

    @_api()
    def copy_rates_from(self, symbol: str, timeframe: int, date_from: Any, count: int) -> np.ndarray | None:
        market, error = self._rates_args(symbol, timeframe)
        if error:
            return self._fail(error)
        try:
            start = self._user_time_ms(date_from)
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))
        if not _is_int(count) or count <= 0:
            return self._fail(INVALID_PARAMS)
        view = self._view_ms()
        upto = min(start, view)
        if timeframe == c.TIMEFRAME_MN1:
            months = self._months_until(market, upto, count, now_ms=view)
            return months[-count:]
        agg = market.aggregate(timeframe)
        g_now = market.last_bar_index(agg, view)
        g_hi = market.last_bar_index(agg, upto)
        g_lo = max(g_hi - count + 1, g_now - self._maxbars + 1)
        return market.rates(timeframe, g_lo, g_hi + 1, view)

    @_api()
    def copy_rates_range(self, symbol: str, timeframe: int, date_from: Any, date_to: Any) -> np.ndarray | None:
        market, error = self._rates_args(symbol, timeframe)
        if error:
            return self._fail(error)
        try:
            start, end = self._user_time_ms(date_from), self._user_time_ms(date_to)
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))
        view = self._view_ms()
        end = min(end, view)
        if end < start:
            return np.empty(0, dtype=RATES_DTYPE)
        if timeframe == c.TIMEFRAME_MN1:
            days = self._range_rates(market, c.TIMEFRAME_D1, start, end, view)
            return months_from_days(days)
        return self._range_rates(market, timeframe, start, end, view)

    @_api()
    def copy_ticks_from(self, symbol: str, date_from: Any, count: int, flags: int) -> np.ndarray | None:
        market, error = self._ticks_args(symbol, flags)
        if error:
            return self._fail(error)
        try:
            start = self._user_time_ms(date_from)
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))
        if not _is_int(count) or count <= 0:
            return self._fail(INVALID_PARAMS)
        if flags == c.COPY_TICKS_TRADE:
            return np.empty(0, dtype=TICKS_DTYPE)  # quotes of FX/CFD symbols carry no trades
        view = self._view_ms()
        g0 = market.first_tick_index(start)
        g1 = min(g0 + int(count), market.tick_index(view) + 1)
        return market.mt5_ticks(g0, g1)

    @_api()
    def copy_ticks_range(self, symbol: str, date_from: Any, date_to: Any, flags: int) -> np.ndarray | None:
        market, error = self._ticks_args(symbol, flags)
        if error:
            return self._fail(error)
        try:
            start, end = self._user_time_ms(date_from), self._user_time_ms(date_to)
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))
        if flags == c.COPY_TICKS_TRADE:
            return np.empty(0, dtype=TICKS_DTYPE)
        end = min(end, self._view_ms())
        if end < start:
            return np.empty(0, dtype=TICKS_DTYPE)
        return market.mt5_ticks(market.first_tick_index(start), market.tick_index(end) + 1)

    # ======================================================================================
    # positions, orders, history

    @_api()
    def positions_total(self) -> int:
        return len(self._book.positions)

    @_api()
    def positions_get(self, *args: Any, symbol: str | None = None, group: str | None = None,
                      ticket: int | None = None) -> tuple[TradePosition, ...] | None:
        if args:
            return self._fail((c.RES_E_INVALID_PARAMS, "Unnamed arguments not allowed"))
        view = self._view_ms()
        result = []
        for position in sorted(self._book.positions.values(), key=lambda p: p.ticket):
            if symbol is not None and position.symbol != symbol:
                continue
            if group is not None and not _group_match(position.symbol, group):
                continue
            if ticket is not None and position.ticket != ticket:
                continue
            result.append(self._position_tuple(position, view))
        return tuple(result)

    @_api()
    def orders_total(self) -> int:
        return 0  # pending orders are not simulated; market orders fill at once

    @_api()
    def orders_get(self, *args: Any, symbol: str | None = None, group: str | None = None,
                   ticket: int | None = None) -> tuple[TradeOrder, ...] | None:
        if args:
            return self._fail((c.RES_E_INVALID_PARAMS, "Unnamed arguments not allowed"))
        return ()

    def _deals_in(self, date_from: Any, date_to: Any, group: str | None = None, ticket: int | None = None,
                  position: int | None = None) -> list[Any]:
        return self._history(self._book.deals, date_from, date_to, group, ticket, position,
                             time_of=_TIME_MS, order_of=_ORDER, position_of=_POSITION_ID, symbol_of=_SYMBOL)

    def _orders_in(self, date_from: Any, date_to: Any, group: str | None = None, ticket: int | None = None,
                   position: int | None = None) -> list[Any]:
        return self._history(self._book.orders, date_from, date_to, group, ticket, position,
                             time_of=_TIME_SETUP_MS, order_of=_TICKET, position_of=_POSITION_ID, symbol_of=_SYMBOL)

    @_api()
    def history_deals_get(self, date_from: Any = None, date_to: Any = None, *, group: str | None = None,
                          ticket: int | None = None, position: int | None = None) -> tuple[TradeDeal, ...] | None:
        try:
            deals = self._deals_in(date_from, date_to, group, ticket, position)
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))
        return tuple(self._deal_tuple(d) for d in deals)

    @_api()
    def history_deals_total(self, date_from: Any, date_to: Any) -> int | None:
        try:
            return len(self._deals_in(date_from, date_to))
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))

    @_api()
    def history_orders_get(self, date_from: Any = None, date_to: Any = None, *, group: str | None = None,
                           ticket: int | None = None, position: int | None = None) -> tuple[TradeOrder, ...] | None:
        try:
            orders = self._orders_in(date_from, date_to, group, ticket, position)
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))
        return tuple(self._order_tuple(o) for o in orders)

    @_api()
    def history_orders_total(self, date_from: Any, date_to: Any) -> int | None:
        try:
            return len(self._orders_in(date_from, date_to))
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))

    # ======================================================================================
    # trading

    @_api()
    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float | None:
        if action not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL) or symbol not in self._markets \
                or not _is_number(volume) or not _is_number(price) or volume <= 0 or price <= 0:
            return self._fail(INVALID_PARAMS)
        return self._margin(self._specs[symbol], float(volume), float(price))

    @_api()
    def order_calc_profit(self, action: int, symbol: str, volume: float, price_open: float,
                          price_close: float) -> float | None:
        if action not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL) or symbol not in self._markets \
                or not all(_is_number(x) for x in (volume, price_open, price_close)) or volume <= 0:
            return self._fail(INVALID_PARAMS)
        return self._profit(self._specs[symbol], action, float(volume), float(price_open), float(price_close))

    @_api()
    def order_check(self, request: dict) -> OrderCheckResult | None:
        try:
            req = _parse_request(request)
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))
        now_ms = self._ms(self._call_now)
        balance, profit, equity, margin, free, level = self._account_figures(now_ms)
        trade_request = _trade_request(req)
        if not self._server_connected:
            return OrderCheckResult(c.TRADE_RETCODE_CONNECTION, balance, equity, profit, margin, free,
                                    level, RETCODE_COMMENT[c.TRADE_RETCODE_CONNECTION], trade_request)
        try:
            plan = self._plan(req, now_ms)
        except _Reject as rej:
            return OrderCheckResult(rej.retcode, balance, equity, profit, margin, free, level,
                                    RETCODE_COMMENT.get(rej.retcode, ""), trade_request)
        if plan.kind == "open":
            balance_after = round(balance - plan.commission, 2)
            equity_after = round(equity - plan.commission, 2)
            margin_after = round(margin + plan.margin, 2)
        else:
            balance_after, equity_after, margin_after = balance, equity, margin
        free_after = round(equity_after - margin_after, 2)
        level_after = equity_after / margin_after * 100.0 if margin_after else 0.0
        return OrderCheckResult(0, balance_after, equity_after, profit, margin_after, free_after,
                                level_after, RETCODE_COMMENT[0], trade_request)

    @_api()
    def order_send(self, request: dict) -> OrderSendResult | None:
        try:
            req = _parse_request(request)
        except _ArgError as exc:
            return self._fail((exc.code, exc.text))
        now = self._call_now
        now_ms = self._ms(now)
        trade_request = _trade_request(req)
        self._request_id += 1
        fault = self.faults.take_order_fault(now)
        if fault is not None and fault.kind == "timeout_not_placed":
            return self._fail(IPC_TIMEOUT)
        if fault is not None and fault.kind == "requote":
            market = self._markets.get(req.get("symbol", ""))
            quote = market.quote(now_ms) if market else None
            return self._result(c.TRADE_RETCODE_REQUOTE, trade_request,
                                bid=quote.bid if quote else 0.0, ask=quote.ask if quote else 0.0)
        if fault is not None and fault.kind == "reject":
            return self._result(int(fault.retcode), trade_request)
        if not self._server_connected:
            return self._result(c.TRADE_RETCODE_CONNECTION, trade_request)
        if self.faults.autotrading_off:
            return self._result(c.TRADE_RETCODE_CLIENT_DISABLES_AT, trade_request)
        try:
            plan = self._plan(req, now_ms)
        except _Reject as rej:
            result = self._result(rej.retcode, trade_request)
        else:
            result = self._apply(plan, req, trade_request, now_ms)
        if fault is not None and fault.kind == "timeout_placed":
            return self._fail(IPC_TIMEOUT)
        return result

    # ======================================================================================
    # internals: gate, time, faults

    def _refuse(self, name: str, now: datetime) -> tuple[int, str] | None:
        if self.faults.idle:  # the common case: no window, no armed error to consume
            return None if self._initialized else NO_IPC
        inside, ended = self.faults.disconnect_window(now)
        if inside or ended:
            self._server_connected = False
        if inside or not self._initialized:
            return NO_IPC
        if self.faults.take_ipc_error(name, now):
            return NO_IPC
        return None

    def _save(self) -> None:
        save_book(self._book_path, self._book)
        self._last_save = time.monotonic()

    def _fail(self, error: tuple[int, str], value: Any = None) -> Any:
        self._last_error = error
        return value

    def _credentials_ok(self, login: Any, password: Any, server: Any) -> bool:
        if int(login) != self._login:
            return False
        if self._password is not None and password != self._password:
            return False
        return server is None or server == self._server

    @staticmethod
    def _ms(when: datetime) -> int:
        """``when`` in whole milliseconds since the epoch: ``round`` of a float (a timestamp) is
        already the nearest int, so no ``int()`` around it (a call per instant)."""
        return round(when.timestamp() * 1000)

    def _call_ms(self) -> int:
        """``_ms(self._call_now)``, computed once per call instant (several checks ask for it).
        While the clock still reads that instant, its ``timestamp()`` is the instant's
        (``Clock.timestamp``; a backtest clock keeps it, cheaper than the datetime's)."""
        now, memo = self._call_now, self._call_ms_memo
        if memo is not None and memo[0] is now:
            return memo[1]
        clock = self._clock
        ms = round(clock.timestamp() * 1000) if clock.now() is now else self._ms(now)  # (an int: see ``_ms``)
        self._call_ms_memo = (now, ms)
        return ms

    def _view_ms(self) -> int:
        """The terminal's view of market time: frozen while a stale-quotes fault lasts. (With no
        fault armed, ``_call_ms``, its kept answer read here without a second call.)"""
        now = self._call_now
        if self.faults.idle:
            memo = self._call_ms_memo
            return memo[1] if memo is not None and memo[0] is now else self._call_ms()
        frozen = self.faults.stale_since(now)
        return self._ms(frozen if frozen is not None else now)

    def _user_time_ms(self, value: Any) -> int:
        """A date argument (server-time datetime or epoch seconds) as virtual UTC ms."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                server_ms = calendar.timegm(value.timetuple()) * 1000 + value.microsecond // 1000
            else:
                server_ms = int(round(value.timestamp() * 1000))
        elif _is_number(value) and not isinstance(value, bool):
            server_ms = int(round(float(value) * 1000))
        else:
            raise _ArgError("Invalid arguments")
        return server_ms - self._offset_ms

    def _advance(self, now: datetime) -> None:
        """Let the trade server catch up to ``now``: stops hit since the last look, stop-out."""
        now_ms = self._call_ms() if now is self._call_now else self._ms(now)
        last = self._book.last_eval_ms
        if now_ms <= last:
            if now_ms < last and not self._clock_behind_warned:
                self._clock_behind_warned = True
                log.warning("clock (%s) is behind the simulated book's market time (%s); the market "
                            "stands still until the clock catches up (start the clock at "
                            "SimTerminal.book_market_time())", now.isoformat(),
                            datetime.fromtimestamp(last / 1000, timezone.utc).isoformat())
            return
        changed = False
        if self._book.positions:  # (a flat book has no stop to trigger, nothing to stop out)
            changed = self._trigger_stops(last, now_ms)
            changed = self._stop_out(now_ms) or changed
        self._book.last_eval_ms = now_ms
        # the market time is saved with every change, and at most every few wall seconds
        # otherwise, so a restarted bot can resume its clock close to where it stopped (a book
        # kept in memory only is never written)
        if self._book_path is not None and (changed or time.monotonic() - self._last_save >= self._time_save_seconds):
            self._save()

    def _trigger_stops(self, after_ms: int, upto_ms: int) -> bool:
        """Close every position whose SL or TP the market reached in (after_ms, upto_ms], at the
        first tick that reached it, in time order. Scans a week at a time to bound memory after
        a long downtime."""
        pending = [p for p in self._book.positions.values() if p.sl or p.tp]
        events = []
        start = after_ms
        while pending and start < upto_ms:
            end = min(upto_ms, start + STOP_SCAN_CHUNK_MS)
            slices: dict[str, Any] = {}
            still_open = []
            for position in pending:
                ticks = slices.get(position.symbol)
                if ticks is None:
                    ticks = slices[position.symbol] = self._markets[position.symbol].ticks_between(start, end)
                hit = _first_stop_hit(position, ticks)
                if hit is None:
                    still_open.append(position)
                else:
                    events.append((hit[0], position.ticket, hit[1], hit[2]))
            pending, start = still_open, end
        for time_ms, ticket, is_sl, price in sorted(events):
            self._fill_stop(self._book.positions[ticket], time_ms, is_sl, price)
        return bool(events)

    def _fill_stop(self, position: Position, time_ms: int, is_sl: bool, price: float) -> None:
        """Close all of ``position`` by the server at ``time_ms``: its stop loss (``price`` less
        the adverse slippage) or its take profit, with the SL/TP reason and MT5's comment."""
        spec = self._specs[position.symbol]
        slip = self._slippage_points * spec.point if is_sl else 0.0
        price = price - slip if position.type == c.POSITION_TYPE_BUY else price + slip
        price = round(price, spec.digits)
        tag = "sl" if is_sl else "tp"
        level = position.sl if is_sl else position.tp
        self._close(position, position.volume, price, time_ms,
                    reason=c.DEAL_REASON_SL if is_sl else c.DEAL_REASON_TP,
                    order_reason=c.ORDER_REASON_SL if is_sl else c.ORDER_REASON_TP,
                    comment=f"[{tag} {level:.{spec.digits}f}]", magic=position.magic,
                    type_filling=_server_filling(spec))

    def _stop_out(self, now_ms: int) -> bool:
        changed = False
        while self._book.positions:
            _, _, equity, margin, _, level = self._account_figures(now_ms)
            if not margin or level >= MARGIN_SO_SO:
                break
            worst = min(self._book.positions.values(),
                        key=lambda p: self._position_profit(p, now_ms)[1])
            price, _ = self._position_profit(worst, now_ms)
            self._close(worst, worst.volume, price, now_ms, reason=c.DEAL_REASON_SO,
                        order_reason=c.ORDER_REASON_SO, comment=f"[so {level:.2f}%]",
                        magic=worst.magic, type_filling=_server_filling(self._specs[worst.symbol]))
            changed = True
        return changed

    # ======================================================================================
    # internals: account arithmetic

    def _margin(self, spec: SymbolSpec, volume: float, price: float) -> float:
        mode = CALC_MODES[spec.trade_calc_mode]
        if mode == "FOREX":
            value = volume * spec.trade_contract_size / self._leverage
            if spec.currency_margin != self._currency:
                value *= price  # margin currency -> account currency (profit currency = account)
        elif mode == "CFD":
            value = volume * spec.trade_contract_size * price
        else:  # CFDLEVERAGE
            value = volume * spec.trade_contract_size * price / self._leverage
        return round(value * spec.margin_rate, 2)

    def _profit(self, spec: SymbolSpec, order_type: int, volume: float, open_price: float,
                close_price: float) -> float:
        direction = 1.0 if order_type == c.ORDER_TYPE_BUY else -1.0
        ticks = (close_price - open_price) * direction / spec.trade_tick_size
        return round(ticks * spec.trade_tick_value * volume, 2)

    def _position_profit(self, position: Position, at_ms: int) -> tuple[float, float]:
        """(current close price, floating profit) of ``position`` at ``at_ms``."""
        quote = self._markets[position.symbol].quote(at_ms)
        price = quote.bid if position.type == c.POSITION_TYPE_BUY else quote.ask
        return price, self._profit(self._specs[position.symbol], position.type, position.volume,
                                   position.price_open, price)

    def _account_figures(self, at_ms: int) -> tuple[float, float, float, float, float, float]:
        balance = round(float(self._book.balance), 2)
        positions = self._book.positions.values()
        # flat: the sums below are round(float(0), 2), i.e. 0.0, without the generators
        profit = round(float(sum(self._position_profit(p, at_ms)[1] for p in positions)), 2) if positions else 0.0
        equity = round(balance + profit, 2)
        margin = round(float(sum(p.margin for p in positions)), 2) if positions else 0.0
        free = round(equity - margin, 2)
        level = equity / margin * 100.0 if margin else 0.0
        return balance, profit, equity, margin, free, level

    # ======================================================================================
    # internals: trade requests

    def _plan(self, req: dict[str, Any], now_ms: int) -> _Plan:
        """Validate a request against the trade server's rules; raise ``_Reject(retcode)``."""
        action = req["action"]
        if action in _UNSUPPORTED_ACTIONS:
            raise _Reject(c.TRADE_RETCODE_INVALID)
        if action == c.TRADE_ACTION_SLTP:
            return self._plan_sltp(req, now_ms)
        if action != c.TRADE_ACTION_DEAL:
            raise _Reject(c.TRADE_RETCODE_INVALID)
        market = self._markets.get(req.get("symbol", ""))
        if market is None:
            raise _Reject(c.TRADE_RETCODE_INVALID)
        order_type = req.get("type", c.ORDER_TYPE_BUY)
        if order_type not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL):
            raise _Reject(c.TRADE_RETCODE_INVALID_ORDER)
        if req.get("position", 0):
            return self._plan_close(req, market, order_type, now_ms)
        return self._plan_open(req, market, order_type, now_ms)

    def _plan_open(self, req: dict[str, Any], market: SymbolMarket, order_type: int, now_ms: int) -> _Plan:
        spec = market.spec
        buying = order_type == c.ORDER_TYPE_BUY
        if spec.trade_mode == c.SYMBOL_TRADE_MODE_DISABLED:
            raise _Reject(c.TRADE_RETCODE_TRADE_DISABLED)
        if spec.trade_mode == c.SYMBOL_TRADE_MODE_CLOSEONLY:
            raise _Reject(c.TRADE_RETCODE_CLOSE_ONLY)
        if spec.trade_mode == c.SYMBOL_TRADE_MODE_LONGONLY and not buying:
            raise _Reject(c.TRADE_RETCODE_LONG_ONLY)
        if spec.trade_mode == c.SYMBOL_TRADE_MODE_SHORTONLY and buying:
            raise _Reject(c.TRADE_RETCODE_SHORT_ONLY)
        if not market.is_open(now_ms):
            raise _Reject(c.TRADE_RETCODE_MARKET_CLOSED)
        volume = float(req.get("volume", 0.0))
        self._check_volume(spec, volume)
        self._check_filling(spec, req.get("type_filling", c.ORDER_FILLING_FOK))
        quote = market.quote(now_ms)
        self._check_instant_price(spec, req, buying, quote.bid, quote.ask)
        sl, tp = float(req.get("sl", 0.0)), float(req.get("tp", 0.0))
        self._check_stops(spec, order_type, sl, tp, quote.bid, quote.ask)
        if spec.volume_limit:
            held = sum(p.volume for p in self._book.positions.values() if p.symbol == market.name)
            if held + volume > spec.volume_limit + 1e-9:
                raise _Reject(c.TRADE_RETCODE_LIMIT_VOLUME)
        slip = self._slippage_points * spec.point
        price = round(quote.ask + slip if buying else quote.bid - slip, spec.digits)
        margin = self._margin(spec, volume, price)
        _, _, equity, used, _, _ = self._account_figures(now_ms)
        if margin > equity - used + 1e-9:
            raise _Reject(c.TRADE_RETCODE_NO_MONEY)
        commission = round(spec.commission_per_lot_per_side * volume, 2)
        return _Plan("open", market, order_type, volume, price, quote.bid, quote.ask, sl, tp, margin, commission)

    def _plan_close(self, req: dict[str, Any], market: SymbolMarket, order_type: int, now_ms: int) -> _Plan:
        spec = market.spec
        position = self._find_position(int(req["position"]))
        if position.symbol != market.name:
            raise _Reject(c.TRADE_RETCODE_INVALID)
        closing_type = c.ORDER_TYPE_SELL if position.type == c.POSITION_TYPE_BUY else c.ORDER_TYPE_BUY
        if order_type != closing_type:
            raise _Reject(c.TRADE_RETCODE_INVALID)
        if spec.trade_mode == c.SYMBOL_TRADE_MODE_DISABLED:
            raise _Reject(c.TRADE_RETCODE_TRADE_DISABLED)
        if not market.is_open(now_ms):
            raise _Reject(c.TRADE_RETCODE_MARKET_CLOSED)
        volume = float(req.get("volume", 0.0))
        self._check_volume(spec, volume, upper=False)
        if volume > position.volume + 1e-9:
            raise _Reject(c.TRADE_RETCODE_INVALID_CLOSE_VOLUME)
        self._check_filling(spec, req.get("type_filling", c.ORDER_FILLING_FOK))
        quote = market.quote(now_ms)
        self._check_instant_price(spec, req, closing_type == c.ORDER_TYPE_BUY, quote.bid, quote.ask)
        self._check_freeze(spec, position, quote.bid, quote.ask)
        slip = self._slippage_points * spec.point
        price = quote.bid - slip if position.type == c.POSITION_TYPE_BUY else quote.ask + slip
        commission = round(spec.commission_per_lot_per_side * volume, 2)
        return _Plan("close", market, closing_type, volume, round(price, spec.digits), quote.bid,
                     quote.ask, position.sl, position.tp, 0.0, commission, position)

    def _plan_sltp(self, req: dict[str, Any], now_ms: int) -> _Plan:
        position = self._find_position(int(req.get("position", 0)))
        symbol = req.get("symbol", "")
        if symbol and symbol != position.symbol:
            raise _Reject(c.TRADE_RETCODE_INVALID)
        market = self._markets[position.symbol]
        spec = market.spec
        if spec.trade_mode == c.SYMBOL_TRADE_MODE_DISABLED:
            raise _Reject(c.TRADE_RETCODE_TRADE_DISABLED)
        if not market.is_open(now_ms):
            raise _Reject(c.TRADE_RETCODE_MARKET_CLOSED)
        sl, tp = float(req.get("sl", 0.0)), float(req.get("tp", 0.0))
        half_point = spec.point / 2
        if abs(sl - position.sl) < half_point and abs(tp - position.tp) < half_point:
            raise _Reject(c.TRADE_RETCODE_NO_CHANGES)
        quote = market.quote(now_ms)
        self._check_stops(spec, position.type, sl, tp, quote.bid, quote.ask)
        self._check_freeze(spec, position, quote.bid, quote.ask)
        return _Plan("sltp", market, position.type, position.volume, 0.0, quote.bid, quote.ask,
                     sl, tp, 0.0, 0.0, position)

    def _find_position(self, ticket: int) -> Position:
        position = self._book.positions.get(ticket)
        if position is None:
            if ticket in self._book.closed_position_ids():
                raise _Reject(c.TRADE_RETCODE_POSITION_CLOSED)
            raise _Reject(c.TRADE_RETCODE_INVALID)
        return position

    @staticmethod
    def _check_volume(spec: SymbolSpec, volume: float, upper: bool = True) -> None:
        steps = volume / spec.volume_step
        if (volume < spec.volume_min - 1e-9 or (upper and volume > spec.volume_max + 1e-9)
                or abs(steps - round(steps)) > 1e-6):
            raise _Reject(c.TRADE_RETCODE_INVALID_VOLUME)

    @staticmethod
    def _check_filling(spec: SymbolSpec, filling: int) -> None:
        if filling == c.ORDER_FILLING_FOK:
            allowed = bool(spec.filling_mode & SYMBOL_FILLING_FOK)
        elif filling == c.ORDER_FILLING_IOC:
            allowed = bool(spec.filling_mode & SYMBOL_FILLING_IOC)
        elif filling == c.ORDER_FILLING_RETURN:
            allowed = spec.trade_exemode != c.SYMBOL_TRADE_EXECUTION_MARKET
        else:
            allowed = False
        if not allowed:
            raise _Reject(c.TRADE_RETCODE_INVALID_FILL)

    @staticmethod
    def _check_instant_price(spec: SymbolSpec, req: dict[str, Any], buying: bool, bid: float, ask: float) -> None:
        """Instant/request execution honours the requested price within ``deviation``."""
        if spec.trade_exemode not in (c.SYMBOL_TRADE_EXECUTION_INSTANT, c.SYMBOL_TRADE_EXECUTION_REQUEST):
            return
        price = float(req.get("price", 0.0))
        market_price = ask if buying else bid
        if price <= 0 or abs(price - market_price) > req.get("deviation", 0) * spec.point + spec.point / 2:
            raise _Reject(c.TRADE_RETCODE_REQUOTE)

    @staticmethod
    def _check_stops(spec: SymbolSpec, position_type: int, sl: float, tp: float, bid: float, ask: float) -> None:
        """SL/TP on the right side of the closing price, at least the stops level away, on the tick grid."""
        level = spec.trade_stops_level * spec.point
        eps = spec.point / 1000
        for value in (sl, tp):
            if value < 0 or (value and abs(value / spec.trade_tick_size - round(value / spec.trade_tick_size)) > 1e-6):
                raise _Reject(c.TRADE_RETCODE_INVALID_STOPS)
        if position_type == c.POSITION_TYPE_BUY:
            bad_sl = sl and (bid - sl < level - eps or bid - sl <= eps)
            bad_tp = tp and (tp - bid < level - eps or tp - bid <= eps)
        else:
            bad_sl = sl and (sl - ask < level - eps or sl - ask <= eps)
            bad_tp = tp and (ask - tp < level - eps or ask - tp <= eps)
        if bad_sl or bad_tp:
            raise _Reject(c.TRADE_RETCODE_INVALID_STOPS)

    @staticmethod
    def _check_freeze(spec: SymbolSpec, position: Position, bid: float, ask: float) -> None:
        freeze = spec.trade_freeze_level * spec.point
        if not freeze:
            return
        price = bid if position.type == c.POSITION_TYPE_BUY else ask
        if (position.sl and abs(price - position.sl) <= freeze) or (position.tp and abs(position.tp - price) <= freeze):
            raise _Reject(c.TRADE_RETCODE_FROZEN)

    def _apply(self, plan: _Plan, req: dict[str, Any], trade_request: TradeRequest, now_ms: int) -> OrderSendResult:
        magic = int(req.get("magic", 0))
        comment = req.get("comment", "")
        type_filling = int(req.get("type_filling", c.ORDER_FILLING_FOK))
        book = self._book
        if plan.kind == "sltp":
            position = plan.position
            position.sl, position.tp = plan.sl, plan.tp
            position.time_update_ms = now_ms
            self._save()
            return self._result(c.TRADE_RETCODE_DONE, trade_request, bid=plan.bid, ask=plan.ask)
        if plan.kind == "close":
            order_ticket, deal_ticket = self._close(
                plan.position, plan.volume, plan.price, now_ms, reason=c.DEAL_REASON_EXPERT,
                order_reason=c.ORDER_REASON_EXPERT, comment=comment, magic=magic, type_filling=type_filling)
            self._save()
            return self._result(c.TRADE_RETCODE_DONE, trade_request, deal=deal_ticket, order=order_ticket,
                                volume=plan.volume, price=plan.price, bid=plan.bid, ask=plan.ask)
        ticket = book.new_order_ticket()
        book.positions[ticket] = Position(
            ticket=ticket, symbol=plan.market.name, type=plan.order_type, volume=plan.volume,
            price_open=plan.price, sl=plan.sl, tp=plan.tp, time_ms=now_ms, time_update_ms=now_ms,
            magic=magic, reason=c.POSITION_REASON_EXPERT, comment=comment, margin=plan.margin)
        book.orders.append(Order(
            ticket=ticket, time_setup_ms=now_ms, time_done_ms=now_ms, type=plan.order_type,
            type_time=int(req.get("type_time", c.ORDER_TIME_GTC)), type_filling=type_filling,
            state=c.ORDER_STATE_FILLED, magic=magic, position_id=ticket, reason=c.ORDER_REASON_EXPERT,
            volume_initial=plan.volume, price_open=plan.price, sl=plan.sl, tp=plan.tp,
            price_current=plan.price, symbol=plan.market.name, comment=comment))
        deal_ticket = book.new_deal_ticket()
        book.deals.append(Deal(
            ticket=deal_ticket, order=ticket, time_ms=now_ms, type=plan.order_type, entry=c.DEAL_ENTRY_IN,
            magic=magic, position_id=ticket, reason=c.DEAL_REASON_EXPERT, volume=plan.volume,
            price=plan.price, commission=-plan.commission, swap=0.0, profit=0.0, fee=0.0,
            symbol=plan.market.name, comment=comment))
        book.balance = round(book.balance - plan.commission, 2)
        self._save()
        return self._result(c.TRADE_RETCODE_DONE, trade_request, deal=deal_ticket, order=ticket,
                            volume=plan.volume, price=plan.price, bid=plan.bid, ask=plan.ask)

    def _close(self, position: Position, volume: float, price: float, time_ms: int, *, reason: int,
               order_reason: int, comment: str, magic: int, type_filling: int) -> tuple[int, int]:
        """Close ``volume`` of ``position`` at ``price``: an order, an OUT deal, the balance."""
        book = self._book
        spec = self._specs[position.symbol]
        closing_type = c.ORDER_TYPE_SELL if position.type == c.POSITION_TYPE_BUY else c.ORDER_TYPE_BUY
        profit = self._profit(spec, position.type, volume, position.price_open, price)
        commission = round(spec.commission_per_lot_per_side * volume, 2)
        order_ticket = book.new_order_ticket()
        book.orders.append(Order(
            ticket=order_ticket, time_setup_ms=time_ms, time_done_ms=time_ms, type=closing_type,
            type_time=c.ORDER_TIME_GTC, type_filling=type_filling, state=c.ORDER_STATE_FILLED,
            magic=magic, position_id=position.ticket, reason=order_reason, volume_initial=volume,
            price_open=price, sl=position.sl, tp=position.tp, price_current=price,
            symbol=position.symbol, comment=comment))
        deal_ticket = book.new_deal_ticket()
        book.deals.append(Deal(
            ticket=deal_ticket, order=order_ticket, time_ms=time_ms, type=closing_type,
            entry=c.DEAL_ENTRY_OUT, magic=magic, position_id=position.ticket, reason=reason,
            volume=volume, price=price, commission=-commission, swap=0.0, profit=profit, fee=0.0,
            symbol=position.symbol, comment=comment))
        book.balance = round(book.balance + profit - commission, 2)
        remaining = round(position.volume - volume, 8)
        if remaining <= 1e-9:
            del book.positions[position.ticket]
        else:
            position.margin = round(position.margin * remaining / position.volume, 2)
            position.volume = remaining
            position.time_update_ms = time_ms
        return order_ticket, deal_ticket

    def _result(self, retcode: int, request: TradeRequest, *, deal: int = 0, order: int = 0,
                volume: float = 0.0, price: float = 0.0, bid: float = 0.0, ask: float = 0.0) -> OrderSendResult:
        return OrderSendResult(retcode=retcode, deal=deal, order=order, volume=volume, price=price,
                               bid=bid, ask=ask, comment=RETCODE_COMMENT.get(retcode, ""),
                               request_id=self._request_id, retcode_external=0, request=request)

    # ======================================================================================
    # internals: building MT5 structures

    def _static_symbol_info(self, name: str) -> dict[str, Any]:
        spec = self._specs[name]
        fields = dict.fromkeys(SymbolInfo._fields, 0)
        fields.update({
            "custom": False, "chart_mode": c.SYMBOL_CHART_MODE_BID, "spread_float": spec.spread_float,
            "ticks_bookdepth": 0, "trade_calc_mode": spec.trade_calc_mode, "trade_mode": spec.trade_mode,
            "trade_stops_level": spec.trade_stops_level, "trade_freeze_level": spec.trade_freeze_level,
            "trade_exemode": spec.trade_exemode, "swap_mode": spec.swap_mode, "swap_rollover3days": 3,
            "margin_hedged_use_leg": False, "expiration_mode": spec.expiration_mode,
            "filling_mode": spec.filling_mode, "order_mode": spec.order_mode,
            "order_gtc_mode": spec.order_gtc_mode, "digits": spec.digits, "point": spec.point,
            "trade_tick_value": spec.trade_tick_value, "trade_tick_value_profit": spec.trade_tick_value,
            "trade_tick_value_loss": spec.trade_tick_value, "trade_tick_size": spec.trade_tick_size,
            "trade_contract_size": spec.trade_contract_size, "volume_min": spec.volume_min,
            "volume_max": spec.volume_max, "volume_step": spec.volume_step,
            "volume_limit": spec.volume_limit, "swap_long": spec.swap_long, "swap_short": spec.swap_short,
            "margin_hedged": spec.trade_contract_size, "basis": "", "category": "",
            "currency_base": spec.currency_base, "currency_profit": spec.currency_profit,
            "currency_margin": spec.currency_margin, "bank": "", "description": spec.description,
            "exchange": "", "formula": "", "isin": "", "name": name, "page": "", "path": spec.path,
        })
        for key in ("bid", "bidhigh", "bidlow", "ask", "askhigh", "asklow", "last", "lasthigh", "lastlow",
                    "volume_real", "volumehigh_real", "volumelow_real", "option_strike",
                    "trade_accrued_interest", "trade_face_value", "trade_liquidity_rate", "margin_initial",
                    "margin_maintenance", "session_volume", "session_turnover", "session_interest",
                    "session_buy_orders_volume", "session_sell_orders_volume", "session_open",
                    "session_close", "session_aw", "session_price_settlement", "session_price_limit_min",
                    "session_price_limit_max", "price_change", "price_volatility", "price_theoretical",
                    "price_greeks_delta", "price_greeks_theta", "price_greeks_gamma", "price_greeks_vega",
                    "price_greeks_rho", "price_greeks_omega", "price_sensitivity"):
            fields[key] = 0.0
        return fields

    def _symbol_info(self, name: str) -> SymbolInfo:
        market = self._markets[name]
        spec = market.spec
        view = self._view_ms()
        quote = market.quote(view)
        fields = dict(self._static_info[name])
        day = market.rates(c.TIMEFRAME_D1, *self._last_two(market, c.TIMEFRAME_D1, view), view)
        spread_points = int(round((quote.ask - quote.bid) / spec.point))
        fields.update(select=name in self._selected, visible=name in self._selected,
                      time=(quote.time_ms + self._offset_ms) // 1000, spread=spread_points,
                      bid=quote.bid, ask=quote.ask)
        if len(day):
            today = day[-1]
            fields.update(bidhigh=float(today["high"]), bidlow=float(today["low"]),
                          askhigh=round(float(today["high"]) + spread_points * spec.point, spec.digits),
                          asklow=round(float(today["low"]) + spread_points * spec.point, spec.digits),
                          session_open=float(today["open"]))
            if len(day) > 1:
                previous_close = float(day[-2]["close"])
                fields.update(session_close=previous_close,
                              price_change=round((quote.bid - previous_close) / previous_close * 100, 4))
        return SymbolInfo(**fields)

    @staticmethod
    def _last_two(market: SymbolMarket, timeframe: int, view: int) -> tuple[int, int]:
        g = market.last_bar_index(market.aggregate(timeframe), view)
        return g - 1, g + 1

    def _position_tuple(self, position: Position, view_ms: int) -> TradePosition:
        price, profit = self._position_profit(position, view_ms)
        opened = position.time_ms + self._offset_ms
        updated = position.time_update_ms + self._offset_ms
        return TradePosition(
            ticket=position.ticket, time=opened // 1000, time_msc=opened, time_update=updated // 1000,
            time_update_msc=updated, type=position.type, magic=position.magic,
            identifier=position.identifier, reason=position.reason, volume=position.volume,
            price_open=position.price_open, sl=position.sl, tp=position.tp, price_current=price,
            swap=0.0, profit=profit, symbol=position.symbol, comment=position.comment,
            external_id=position.external_id)

    def _deal_tuple(self, deal: Deal) -> TradeDeal:
        msc = deal.time_ms + self._offset_ms
        return TradeDeal(
            ticket=deal.ticket, order=deal.order, time=msc // 1000, time_msc=msc, type=deal.type,
            entry=deal.entry, magic=deal.magic, position_id=deal.position_id, reason=deal.reason,
            volume=deal.volume, price=deal.price, commission=deal.commission, swap=deal.swap,
            profit=deal.profit, fee=deal.fee, symbol=deal.symbol, comment=deal.comment,
            external_id=deal.external_id)

    def _order_tuple(self, order: Order) -> TradeOrder:
        setup = order.time_setup_ms + self._offset_ms
        done = order.time_done_ms + self._offset_ms
        return TradeOrder(
            ticket=order.ticket, time_setup=setup // 1000, time_setup_msc=setup, time_done=done // 1000,
            time_done_msc=done, time_expiration=0, type=order.type, type_time=order.type_time,
            type_filling=order.type_filling, state=order.state, magic=order.magic,
            position_id=order.position_id, position_by_id=0, reason=order.reason,
            volume_initial=order.volume_initial, volume_current=0.0, price_open=order.price_open,
            sl=order.sl, tp=order.tp, price_current=order.price_current, price_stoplimit=0.0,
            symbol=order.symbol, comment=order.comment, external_id=order.external_id)

    # ======================================================================================
    # internals: data-call arguments

    def _rates_args(self, symbol: Any, timeframe: Any) -> tuple[SymbolMarket | None, tuple[int, str] | None]:
        if type(symbol) is str and type(timeframe) is int:  # the usual arguments: checked once per pair
            checked = self._rates_markets.get((symbol, timeframe))
            if checked is not None:
                return checked, None
        market, error = self._check_rates_args(symbol, timeframe)
        if market is not None and type(symbol) is str and type(timeframe) is int:
            self._rates_markets[(symbol, timeframe)] = market
        return market, error

    def _check_rates_args(self, symbol: Any, timeframe: Any) -> tuple[SymbolMarket | None, tuple[int, str] | None]:
        if not isinstance(symbol, str):
            return None, (c.RES_E_INVALID_PARAMS, "Invalid 1st unnamed argument")
        if not _is_int(timeframe) or timeframe not in ALL_TIMEFRAMES:
            return None, INVALID_PARAMS
        market = self._markets.get(symbol)
        if market is None:
            return None, CALL_FAILED
        if timeframe != c.TIMEFRAME_MN1:
            try:
                market.aggregate(timeframe)
            except UnsupportedTimeframe:
                return None, CALL_FAILED
        return market, None

    def _ticks_args(self, symbol: Any, flags: Any) -> tuple[SymbolMarket | None, tuple[int, str] | None]:
        if not isinstance(symbol, str):
            return None, (c.RES_E_INVALID_PARAMS, "Invalid 1st unnamed argument")
        if not _is_int(flags) or flags not in (c.COPY_TICKS_ALL, c.COPY_TICKS_INFO, c.COPY_TICKS_TRADE):
            return None, INVALID_PARAMS
        market = self._markets.get(symbol)
        if market is None:
            return None, NOT_FOUND
        return market, None

    def _range_rates(self, market: SymbolMarket, timeframe: int, start: int, end: int, view: int) -> np.ndarray:
        agg = market.aggregate(timeframe)
        g_lo = market.first_bar_index(agg, start)
        g_hi = market.last_bar_index(agg, end)
        g_lo = max(g_lo, g_hi - self._maxbars + 1)
        return market.rates(timeframe, g_lo, g_hi + 1, view)

    def _months_until(self, market: SymbolMarket, upto_ms: int, months: int, now_ms: int | None = None) -> np.ndarray:
        """At least ``months`` MN1 bars ending with the month of ``upto_ms`` (the oldest,
        possibly incomplete, fetched month is dropped)."""
        now_ms = upto_ms if now_ms is None else now_ms
        agg = market.aggregate(c.TIMEFRAME_D1)
        g_hi = market.last_bar_index(agg, upto_ms)
        days = min((months + 1) * 31 + 1, self._maxbars)
        daily = market.rates(c.TIMEFRAME_D1, g_hi - days + 1, g_hi + 1, now_ms)
        monthly = months_from_days(daily)
        return monthly[1:] if len(monthly) > months else monthly

    def _history(self, records: list, date_from: Any, date_to: Any, group: str | None, ticket: int | None,
                 position: int | None, *, time_of: Callable, order_of: Callable, position_of: Callable,
                 symbol_of: Callable) -> list:
        if ticket is not None:
            return [r for r in records if order_of(r) == ticket]
        if position is not None:
            return [r for r in records if position_of(r) == position]
        if date_from is None or date_to is None:
            raise _ArgError("Invalid arguments")
        start, end = self._user_time_ms(date_from), self._user_time_ms(date_to)
        selected = [r for r in records if start <= time_of(r) <= end]
        if group is not None:
            selected = [r for r in selected if _group_match(symbol_of(r), group)]
        return selected


# ------------------------------------------------------------------------------------------
# module helpers

def _first_stop_hit(position: Position, ticks: Any) -> tuple[int, bool, float] | None:
    """(time, is stop loss, fill price) of the first tick reaching the position's SL or TP.

    Longs watch the bid, shorts the ask. Inside a continuous stretch the fill is the level
    itself; after a jump (new bar, gap) it is the first price beyond the level."""
    if type(ticks) is TickRows:
        return _first_stop_hit_rows(position, ticks)
    if not len(ticks.time_ms):
        return None
    none = np.zeros(len(ticks.time_ms), dtype=bool) if not (position.sl and position.tp) else None
    if position.type == c.POSITION_TYPE_BUY:
        prices = ticks.bid
        hit_sl = prices <= position.sl if position.sl else none
        hit_tp = prices >= position.tp if position.tp else none
    else:
        prices = ticks.ask
        hit_sl = prices >= position.sl if position.sl else none
        hit_tp = prices <= position.tp if position.tp else none
    hits = hit_sl | hit_tp
    if not hits.any():
        return None
    k = int(np.argmax(hits))
    is_sl = bool(hit_sl[k])
    level = position.sl if is_sl else position.tp
    price = float(prices[k]) if ticks.jump[k] else level
    return int(ticks.time_ms[k]), is_sl, price


def _first_stop_hit_rows(position: Position, ticks: TickRows) -> tuple[int, bool, float] | None:
    """``_first_stop_hit`` over a few ticks as plain numbers, tick by tick: each comparison is the
    one numpy makes element-wise (the float64 price against the level; a NaN never reaches
    one), a level of 0 is none, and the first tick reaching either level wins, its stop loss
    first, as ``argmax`` over ``hit_sl | hit_tp`` and then ``hit_sl[k]`` decide."""
    sl, tp = position.sl, position.tp
    buy = position.type == c.POSITION_TYPE_BUY
    for k, price in enumerate(ticks.bid if buy else ticks.ask):
        is_sl = bool(sl) and (price <= sl if buy else price >= sl)
        if is_sl or (bool(tp) and (price >= tp if buy else price <= tp)):
            return ticks.time_ms[k], is_sl, price if ticks.jump[k] else (sl if is_sl else tp)
    return None


def _server_filling(spec: SymbolSpec) -> int:
    """The filling the server itself uses for stop-loss, take-profit and stop-out closes."""
    return c.ORDER_FILLING_FOK if spec.filling_mode & SYMBOL_FILLING_FOK else c.ORDER_FILLING_IOC


def _is_int(value: Any) -> bool:
    if type(value) is int:  # the common case, without the slower ABC check
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _group_match(symbol: str, group: str) -> bool:
    """MT5 group filter: comma-separated masks with ``*``; ``!mask`` excludes (case-insensitive)."""
    include, exclude = [], []
    for mask in (m.strip() for m in group.split(",")):
        if not mask:
            continue
        (exclude if mask.startswith("!") else include).append(mask.lstrip("!").upper())
    name = symbol.upper()
    if exclude and any(fnmatch.fnmatchcase(name, m) for m in exclude):
        return False
    return any(fnmatch.fnmatchcase(name, m) for m in include)


def _parse_request(request: Any) -> dict[str, Any]:
    """Type-check a trade request as the package does; unknown keys are ignored."""
    if not isinstance(request, dict):
        raise _ArgError("Invalid arguments")
    req: dict[str, Any] = {}
    for key in _INT_FIELDS:
        if key in request:
            if not _is_int(request[key]):
                raise _ArgError(f'Invalid "{key}" argument')
            req[key] = int(request[key])
    for key in _FLOAT_FIELDS:
        if key in request:
            value = request[key]
            # (a float, the usual value: what ``_is_number`` answers for it, without the ABC check)
            if not (math.isfinite(value) if type(value) is float else _is_number(value)):
                raise _ArgError(f'Invalid "{key}" argument')
            req[key] = float(value)
    if "symbol" in request:
        if not isinstance(request["symbol"], str):
            raise _ArgError('Invalid "symbol" argument')
        req["symbol"] = request["symbol"]
    if "comment" in request:
        comment = request["comment"]
        if not isinstance(comment, str) or len(comment) > COMMENT_MAX_LEN:
            raise _ArgError('Invalid "comment" argument')
        req["comment"] = comment
    if "action" not in req:
        raise _ArgError('Invalid "action" argument')
    return req


# TradeRequest's fields in order, each with its value when the request leaves it out
_REQUEST_FIELDS = tuple((name, "" if name in ("symbol", "comment") else 0.0 if name in _FLOAT_FIELDS else 0)
                        for name in TradeRequest._fields)


def _trade_request(req: dict[str, Any]) -> TradeRequest:
    """The request as MT5 echoes it (made as its namedtuple ``__new__`` makes it, field by field)."""
    return _new_tuple(TradeRequest, [req.get(name, default) for name, default in _REQUEST_FIELDS])
