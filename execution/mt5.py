"""The MT5 adapter: the only code that talks to a MetaTrader5 module.

It is given the module (the real ``MetaTrader5`` package on Windows, or the simulated terminal
``execution.simterminal``) so the code path that trades live is the one the tests run. It never
imports MetaTrader5 itself and takes every constant from the module it was given.

Rules it enforces (see anchors-and-apis.md sections 7 and 13):

- one ``RLock`` around every module call (the package is not documented thread-safe); no sleep
  while holding it;
- ``None`` results become errors carrying ``last_error()``; IPC codes trigger a reconnect
  (initialize + login, account check, symbols re-selected) with bounded exponential backoff;
- symbols are config names outside and broker names (``XAUUSDc``) inside;
- the filling mode is derived once per symbol from the ``filling_mode`` BITMASK
  (SYMBOL_FILLING_FOK=1, SYMBOL_FILLING_IOC=2) into the REQUEST enum (ORDER_FILLING_FOK=0,
  IOC=1, RETURN=2): passing the bitmask straight through is the classic 10030 trap;
- volume rounded down to the step and clamped, prices rounded to the tick, SL/TP kept outside
  the stops level, ``order_check`` before ``order_send``;
- retcodes handled by class (``execution/retcodes.py``);
- a lost ``order_send`` reply is NEVER taken as "not placed": the client id (in the order
  comment) is looked up first, and the adapter never resends after a transport failure;
- every time that leaves the adapter is UTC: MT5 stamps bars, ticks, deals and positions with
  the broker SERVER clock, whose offset is measured at start (or configured).
"""
from __future__ import annotations

import difflib
import logging
import math
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from config.models import BotConfig
from config.secrets import Secrets
from engines.bars import BarSeries, rates_rows
from engines.ticks import TickSeries
from execution.broker import (AccountInfo, Deal, OrderRequest, OrderResult,
                              Position, Quote, Side, SymbolSpec, normalize_volume, validate_client_id)
from execution.errors import (BrokerError, BrokerSetupError, BrokerUnavailable, OrderNotPlaced,
                              OrderOutcomeUnknown, OrderRejected, TradingDisabled)
from execution.retcodes import (ALGO_TRADING_INSTRUCTION, AUTH_FAILED, CHECK_OK, CONNECTION, INVALID_FILL,
                                INVALID_STOPS, INVALID_VOLUME, IPC_INITIALIZE_FAILED, IPC_NO_CONNECTION,
                                IPC_TIMEOUT, NO_CHANGES, RES_S_OK, RetcodeClass, describe, is_ipc_error,
                                last_error_info, retcode_info)
from monitors.clock import Clock

log = logging.getLogger(__name__)

# The package does not export SYMBOL_FILLING_*; these are the MQL5 bitmask values.
SYMBOL_FILLING_FOK = 1
SYMBOL_FILLING_IOC = 2

TIMEFRAMES = ("M1", "M2", "M3", "M4", "M5", "M6", "M10", "M12", "M15", "M20", "M30",
              "H1", "H2", "H3", "H4", "H6", "H8", "H12", "D1", "W1", "MN1")
_RECONNECT_CODES = frozenset({-10000, -10001, -10002, -10003, -10004, -10005, AUTH_FAILED})
# order_send returned None with one of these: the terminal refused the request locally, it
# never left the machine (anything else is a transport failure: outcome unknown until checked).
_LOCAL_REFUSALS = frozenset({-2, -7})
_BOOL_FUNCTIONS = frozenset({"initialize", "login", "symbol_select"})
_DEAL_ENTRIES = {0: "in", 1: "out", 2: "inout", 3: "out_by"}
_DEAL_REASONS = {0: "client", 1: "mobile", 2: "web", 3: "expert", 4: "sl", 5: "tp", 6: "so",
                 7: "rollover", 8: "vmargin", 9: "split"}
_HALF_HOUR = 1800.0
_LIVE_TICK_MAX_AGE_S = 120.0  # a tick that just changed is at most this old


@dataclass(frozen=True)
class Mt5Settings:
    """Adapter tunables. Defaults suit a live terminal; tests use the same values on a FakeClock."""

    reconnect_attempts: int = 3        # per call, before BrokerUnavailable
    backoff_base_s: float = 0.5        # 0.5, 1, 2 ... between reconnect attempts
    backoff_max_s: float = 8.0
    transient_retries: int = 3         # requote / price changed / no quotes ... per order
    transient_pause_s: float = 0.1     # pause before a transient retry (times the attempt number)
    recheck_delay_s: float = 1.0       # lost reply: second client-id lookup after this delay
    deviation_points: int = 20
    offset_max_tick_age_s: float = 300.0  # a tick older than this cannot measure the server offset
    lookup_window: timedelta = timedelta(hours=1)  # deals searched before the order's start


@dataclass
class _Attempt:
    """Mutable state of one order's retry loop."""

    filling: int
    tried_fillings: list[int]
    volume: float
    widen_stops: bool = False
    volume_fixed: bool = False
    adjustments: list[str] = field(default_factory=list)


def filling_preference(filling_mode: int, execution_mode: int, mt5: Any) -> tuple[int, ...]:
    """ORDER_FILLING_* values to try, best first, from the symbol's SYMBOL_FILLING_* bitmask.

    Allowed modes come first: FOK (all-or-nothing keeps the sized risk exact), then IOC, then
    RETURN (allowed when the execution mode is not MARKET). The modes the symbol does not
    advertise follow (IOC, FOK, RETURN) as the fallback after a 10030, because brokers' bitmasks
    are not always right.
    """
    fok, ioc, ret = mt5.ORDER_FILLING_FOK, mt5.ORDER_FILLING_IOC, mt5.ORDER_FILLING_RETURN
    allowed: list[int] = []
    if filling_mode & SYMBOL_FILLING_FOK:
        allowed.append(fok)
    if filling_mode & SYMBOL_FILLING_IOC:
        allowed.append(ioc)
    if execution_mode != mt5.SYMBOL_TRADE_EXECUTION_MARKET:
        allowed.append(ret)
    rest = [mode for mode in (ioc, fok, ret) if mode not in allowed]
    return tuple(allowed + rest)


def filling_name(mt5: Any, mode: int) -> str:
    for name in ("FOK", "IOC", "RETURN", "BOC"):
        if getattr(mt5, f"ORDER_FILLING_{name}", None) == mode:
            return name
    return str(mode)


def close_symbol_matches(wanted: str, available: Iterable[str], limit: int = 8) -> list[str]:
    """Broker symbols that look like ``wanted``: same stem with a suffix/prefix, or similar."""
    names = list(available)
    stem = wanted.upper()
    found = [n for n in names if n.upper().startswith(stem) or stem.startswith(n.upper())
             or (len(stem) >= 6 and stem[:6] in n.upper())]
    found += difflib.get_close_matches(wanted, names, n=limit, cutoff=0.6)
    unique = list(dict.fromkeys(found))
    return unique[:limit]


def _tick_seconds(tick: Any) -> float:
    """A tick's server-clock time in seconds, with milliseconds when the terminal gives them."""
    return (tick.time_msc / 1000.0) if getattr(tick, "time_msc", 0) else float(tick.time)


def _offset_from(tick_server_s: float, now_utc_s: float, max_age_s: float) -> float | None:
    """The server offset (seconds, a multiple of 30 min) a tick implies if it is fresh, else None."""
    raw = tick_server_s - now_utc_s
    offset = round(raw / _HALF_HOUR) * _HALF_HOUR
    age = offset - raw  # how old the tick is, if that offset is right
    if abs(offset) <= 14 * 3600 and -60.0 <= age <= max_age_s:
        return offset
    return None


def _weekend_close(now: datetime) -> bool:
    """Forex, metals and indices are closed from Friday ~21:00 to Sunday ~22:00 UTC (with margin)."""
    weekday, hour = now.weekday(), now.hour
    return (weekday == 4 and hour >= 20) or weekday == 5 or (weekday == 6 and hour < 23)


class Mt5Broker:
    """The broker protocol (``execution.broker.Broker``) over a MetaTrader5-compatible module."""

    def __init__(self, module: Any, secrets: Secrets, bot_config: BotConfig, clock: Clock,
                 sleep: Callable[[float], None] | None = None, settings: Mt5Settings | None = None) -> None:
        self._mt5 = module
        self._secrets = secrets
        self._config = bot_config
        self._clock = clock
        self._settings = settings or Mt5Settings()
        self._stop = threading.Event()
        self._sleep = sleep or (lambda seconds: clock.wait(self._stop, seconds))
        self._lock = threading.RLock()         # every module call
        self._state_lock = threading.Lock()    # bookkeeping, so health never waits on the terminal
        self._to_broker = {name: bot_config.broker_symbol(name) for name in bot_config.symbols}
        self._from_broker = {broker: name for name, broker in self._to_broker.items()}
        self._specs: dict[str, SymbolSpec] = {}
        self._filling: dict[str, int] = {}
        self._offset_s = 0.0
        self._pending_offset: dict[str, float] = {}
        self._offset_source = "default"
        # connection bookkeeping (guarded by _state_lock)
        self._connected = False
        self._connected_since: datetime | None = None
        self._last_error: dict[str, Any] | None = None
        self._reconnects = 0
        self._consecutive_failures = 0
        self._generation = 0
        self._blocks: dict[str, tuple[int, str]] = {}  # source -> (code, operator instruction)
        self._last_fatal: dict[str, Any] | None = None
        self._account_login: int | None = None
        self._account_server: str | None = None
        self._terminal_build: int | None = None
        self._trade_server_connected: bool | None = None
        self._last_tick_stamp: dict[str, float] = {}
        self._timeframes: dict[str, int] = {}  # "M1" -> the module's TIMEFRAME_M1
        self._quotes: dict[str, tuple[Any, SymbolSpec, float, Quote]] = {}  # symbol -> (tick, spec, offset, quote)
        self._whole_offset: tuple[float, int] = (0.0, 0)  # (an offset, ``int(round(offset))``): see ``_rates``
        self._rate_rows = getattr(module, "reads_rate_rows", False) is True  # see ``bar_rows``

    # ------------------------------------------------------------------ connection

    def connect(self) -> None:
        """Attach to the terminal, log in, check the account, select the symbols, measure the offset.

        Raises ``BrokerSetupError`` for what the operator must fix (terminal path, credentials,
        account, symbol names) and ``BrokerUnavailable`` when the terminal is not reachable.
        AutoTrading being off is not an error: it is logged and entries are blocked until on.
        """
        with self._lock:
            ok, code, desc = self._initialize_locked()
            if not ok:
                self._record_error(code, desc)
                raise self._connect_error(code, desc)
            self._check_terminal_and_account_locked()
            for name, symbol_config in self._config.symbols.items():
                if symbol_config.enabled:
                    self._setup_symbol_locked(name)
            self._measure_offset_locked()
            self._mark_connected(reconnect=False)
        log.info("MT5 connected: login %s on %s, build %s, server offset %+.1f h (%s), symbols %s",
                 self._account_login, self._account_server, self._terminal_build, self._offset_s / 3600,
                 self._offset_source, {n: self._to_broker[n] for n in self._specs})

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            try:
                self._mt5.shutdown()
            finally:
                with self._state_lock:
                    self._connected = False

    def connection_state(self) -> dict[str, Any]:
        """For health.json: is the terminal reachable, since when, what failed last, what blocks entries."""
        with self._state_lock:
            return {
                "connected": self._connected,
                "trade_server_connected": self._trade_server_connected,
                "since": self._connected_since.isoformat() if self._connected_since else None,
                "last_error": dict(self._last_error) if self._last_error else None,
                "reconnects": self._reconnects,
                "consecutive_failures": self._consecutive_failures,
                "entries_allowed": not self._blocks,
                "entries_blocked": [instruction for _, instruction in self._blocks.values()],
                "last_fatal": dict(self._last_fatal) if self._last_fatal else None,
                "login": self._account_login,
                "server": self._account_server,
                "terminal_build": self._terminal_build,
                "server_utc_offset_hours": self._offset_s / 3600.0,
                "server_utc_offset_source": self._offset_source,
                "symbols": {name: self._to_broker[name] for name in self._specs},
                "filling": {name: filling_name(self._mt5, mode) for name, mode in self._filling.items()},
            }

    def entries_blocked(self) -> str | None:
        """The operator instruction when entries are blocked (AutoTrading off...), else None."""
        with self._state_lock:
            return "; ".join(i for _, i in self._blocks.values()) or None

    def server_utc_offset(self) -> timedelta:
        return timedelta(seconds=self._offset_s)

    def _initialize_locked(self) -> tuple[bool, int, str]:
        """initialize(path, login, password, server, timeout): credentials only when configured.
        Nothing here is ever logged: the kwargs hold the password."""
        kwargs: dict[str, Any] = {"timeout": self._config.mt5.timeout_ms}
        if self._secrets.mt5_login and self._secrets.mt5_password:
            # Without a password the terminal keeps its own saved account; the login is then
            # only checked against account_info() (see _check_terminal_and_account_locked).
            kwargs["login"] = self._secrets.mt5_login
            kwargs["password"] = self._secrets.mt5_password
            if self._secrets.mt5_server:
                kwargs["server"] = self._secrets.mt5_server
        args = (self._secrets.mt5_path,) if self._secrets.mt5_path else ()
        if self._mt5.initialize(*args, **kwargs):
            return True, RES_S_OK, ""
        code, desc = self._last_error_pair()
        return False, code, desc

    def _connect_error(self, code: int, desc: str) -> BrokerError:
        """A message for each way initialize() fails, saying what the operator should do."""
        path = self._secrets.mt5_path
        path_missing = bool(path) and not Path(path).exists()
        detail = f"(last_error {code} {desc!r})"
        if code == IPC_INITIALIZE_FAILED or (path_missing and is_ipc_error(code)):
            where = (f"there is no file at MT5_PATH={path!r}" if path_missing
                     else "the terminal could not be started")
            return BrokerSetupError(code, (
                f"MetaTrader 5 terminal not found: {where} {detail}. Install the 64-bit MT5 terminal and "
                "set MT5_PATH in config/.env to its terminal64.exe (Python and the terminal must both be 64-bit)."))
        if code == AUTH_FAILED:
            return BrokerSetupError(code, (
                f"MT5 authorization failed for login {self._secrets.mt5_login} on server "
                f"{self._secrets.mt5_server!r} {detail}: check MT5_LOGIN, MT5_PASSWORD and MT5_SERVER in "
                "config/.env (the server name exactly as in the terminal's login dialog)."))
        if code == IPC_NO_CONNECTION:
            return BrokerUnavailable(code, (
                f"no IPC connection to the MT5 terminal {detail}: start the terminal (as the same Windows "
                "user as the bot), make sure MT5_PATH points at that terminal and no other program holds it."))
        if code == IPC_TIMEOUT:
            return BrokerUnavailable(code, (
                f"the MT5 terminal did not answer within mt5.timeout_ms={self._config.mt5.timeout_ms} "
                f"{detail}: it may still be starting or updating; try again."))
        if is_ipc_error(code):
            return BrokerUnavailable(code, f"MT5 terminal unreachable {detail}: is the terminal running?")
        if code == -2:
            return BrokerSetupError(code, (
                f"MT5 initialize() rejected its parameters {detail}: MT5_LOGIN must be the account number, "
                "MT5_SERVER the trade server name."))
        return BrokerError(code, f"MT5 initialize() failed {detail}.")

    def _check_terminal_and_account_locked(self) -> None:
        """Terminal connected and AutoTrading on; the account is the configured one and may trade."""
        terminal = self._raw("terminal_info")
        self._terminal_build = int(getattr(terminal, "build", 0) or 0)
        self._trade_server_connected = bool(terminal.connected)
        if not terminal.connected:
            log.warning("MT5 terminal is not connected to the trade server yet (check the network and "
                        "the server name); quotes and orders will fail until it is")
        self._update_terminal_block(bool(terminal.trade_allowed))
        account = self._raw("account_info")
        wanted = self._secrets.mt5_login
        if wanted and int(account.login) != int(wanted) and self._secrets.mt5_password:
            # The terminal was on another account: log in explicitly once.
            self._invoke("login", (int(wanted),), self._login_kwargs())
            account = self._raw("account_info")
        if wanted and int(account.login) != int(wanted):
            raise BrokerSetupError(0, (
                f"account mismatch: the terminal is logged in to account {account.login} but MT5_LOGIN is "
                f"{wanted}: log the terminal in to {wanted} or fix MT5_LOGIN/MT5_PASSWORD in config/.env."))
        if not wanted:
            log.warning("MT5_LOGIN is not set: using the account the terminal is logged in to (%s)", account.login)
        self._account_login = int(account.login)
        self._account_server = str(getattr(account, "server", "") or "")
        self._update_account_block(account)

    def _login_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"timeout": self._config.mt5.timeout_ms}
        if self._secrets.mt5_password:
            kwargs["password"] = self._secrets.mt5_password
        if self._secrets.mt5_server:
            kwargs["server"] = self._secrets.mt5_server
        return kwargs

    def _update_terminal_block(self, trade_allowed: bool) -> None:
        with self._state_lock:
            if trade_allowed:
                if self._blocks.pop("terminal", None):
                    log.warning("MT5 AutoTrading is on again: entries allowed")
                return
            if "terminal" not in self._blocks:
                log.warning("MT5 AutoTrading is OFF, entries are blocked. %s", ALGO_TRADING_INSTRUCTION)
            self._blocks["terminal"] = (10027, ALGO_TRADING_INSTRUCTION)

    def _update_account_block(self, account: Any) -> None:
        problem: tuple[int, str] | None = None
        if not account.trade_allowed:
            problem = (10017, "the account does not allow trading: the terminal is probably logged in with the "
                              "investor (read-only) password; put the master password in MT5_PASSWORD")
        elif not getattr(account, "trade_expert", True):
            problem = (10026, retcode_info(10026).instruction)
        with self._state_lock:
            if problem is None:
                self._blocks.pop("account", None)
            else:
                if "account" not in self._blocks:
                    log.warning("MT5 entries blocked: %s", problem[1])
                self._blocks["account"] = problem

    def _setup_symbol_locked(self, name: str) -> SymbolSpec:
        """Find the broker's symbol, select it in Market Watch, cache its spec and filling mode."""
        broker_name = self._to_broker[name]
        info = self._mt5.symbol_info(broker_name)
        if info is None:
            code, desc = self._last_error_pair()
            if code in _RECONNECT_CODES:
                raise BrokerUnavailable(code, f"MT5 symbol_info({broker_name!r}) failed: {code} {desc}")
            available = [s.name for s in (self._mt5.symbols_get() or ())]
            matches = close_symbol_matches(broker_name, available)
            hint = f"close matches at this broker: {', '.join(matches)}" if matches else "no similar symbol found"
            raise BrokerSetupError(code, (
                f"the broker has no symbol {broker_name!r} (config/bot.json symbols.{name}.broker_symbol); "
                f"{hint}. Set broker_symbol to the broker's exact name (suffixes such as 'XAUUSDc' matter)."))
        if not self._mt5.symbol_select(broker_name, True):
            code, desc = self._last_error_pair()
            raise BrokerSetupError(code, f"MT5 could not select {broker_name!r} in Market Watch: {code} {desc}")
        info = self._raw("symbol_info", broker_name)
        spec = self._spec_from_info(name, info)
        with self._state_lock:
            self._specs[name] = spec
            self._filling[name] = spec.order_filling
        return spec

    def _spec_from_info(self, name: str, info: Any, order_filling: int | None = None) -> SymbolSpec:
        filling_modes = int(info.filling_mode)
        execution_mode = int(info.trade_exemode)
        if order_filling is None:
            preference = filling_preference(filling_modes, execution_mode, self._mt5)
            order_filling = preference[0]
            if not filling_modes and execution_mode == self._mt5.SYMBOL_TRADE_EXECUTION_MARKET:
                log.warning("%s: filling_mode bitmask is 0 under market execution; trying %s first",
                            name, filling_name(self._mt5, order_filling))
        return SymbolSpec(
            name=name, broker_name=str(info.name), digits=int(info.digits), point=float(info.point),
            tick_size=float(info.trade_tick_size or info.point), tick_value=float(info.trade_tick_value),
            contract_size=float(info.trade_contract_size), volume_min=float(info.volume_min),
            volume_max=float(info.volume_max), volume_step=float(info.volume_step),
            stops_level_points=int(info.trade_stops_level), freeze_level_points=int(info.trade_freeze_level),
            filling_modes=filling_modes, order_filling=order_filling, trade_mode=int(info.trade_mode),
            currency_profit=str(info.currency_profit), execution_mode=execution_mode,
            spread_points=int(getattr(info, "spread", 0) or 0))

    def _measure_offset_locked(self) -> None:
        """Server clock minus UTC, from the freshest tick, rounded to 30 minutes.

        MT5 stamps ticks and bars with the broker's server clock. A CLOSED market's last tick
        is indistinguishable from a live tick at another offset (a tick 12 h old reads as
        "UTC-12"), so: at the weekend only crypto symbols count (the others are closed), a tick
        must look fresh (within ``offset_max_tick_age_s`` of a half-hour offset), and the value
        is confirmed or corrected by the first live tick seen later (``_observe_tick``). No
        usable tick: 0 with a warning. A configured value always wins.
        """
        configured = self._config.mt5.server_utc_offset_hours
        if configured is not None:
            self._offset_s, self._offset_source = configured * 3600.0, "configured"
            return
        now = self._clock.now()
        weekend = _weekend_close(now)
        freshest: float | None = None
        for name, spec in self._specs.items():
            tick = self._mt5.symbol_info_tick(spec.broker_name)
            if tick is None:
                continue
            stamp = _tick_seconds(tick)
            with self._state_lock:
                self._last_tick_stamp[name] = stamp  # a later, newer tick proves the market live
            if weekend and self._config.symbols[name].category != "crypto":
                continue
            if stamp > 0 and (freshest is None or stamp > freshest):
                freshest = stamp
        offset = _offset_from(freshest, now.timestamp(), self._settings.offset_max_tick_age_s) \
            if freshest is not None else None
        if offset is not None:
            self._offset_s, self._offset_source = offset, "measured"
            return
        self._offset_s, self._offset_source = 0.0, "default"
        log.warning("could not measure the MT5 server time offset (no recent tick: market closed?); "
                    "assuming UTC+0 until a live tick arrives: set mt5.server_utc_offset_hours in "
                    "config/bot.json if bar times look shifted")

    def _observe_tick(self, name: str, stamp: float) -> None:
        """A tick NEWER than the last one seen is live: it confirms the measured offset or corrects
        it (a start while the market was closed, a daylight-saving change). A configured offset
        is never corrected, and stays configured (``_measure_offset_locked``: the config is
        frozen): then there is nothing to observe, and the last stamps are never read."""
        if self._offset_source == "configured":
            return
        with self._state_lock:
            last = self._last_tick_stamp.get(name)
            self._last_tick_stamp[name] = stamp
            if last is None or stamp <= last:
                return
            offset = _offset_from(stamp, self._clock.now().timestamp(), _LIVE_TICK_MAX_AGE_S)
            if offset is None:
                return
            if offset != self._offset_s:
                # One new tick can be stale (the PC slept into a weekend and reads Friday's last
                # tick for the first time): correct only when two advancing ticks agree.
                # With no measurement yet ("default"), the first live tick is the best there is.
                if self._offset_source != "default" and self._pending_offset.get(name) != offset:
                    self._pending_offset[name] = offset
                    return
                log.warning("MT5 server time offset corrected from %+.1f h to %+.1f h (live ticks of %s)",
                            self._offset_s / 3600, offset / 3600, name)
                self._offset_s = offset
            self._pending_offset.pop(name, None)
            self._offset_source = "live"

    def remeasure_server_offset(self) -> timedelta:
        """Measure again (the broker's clock moves with daylight saving)."""
        with self._lock:
            self._measure_offset_locked()
        return self.server_utc_offset()

    # ------------------------------------------------------------------ call plumbing

    def _last_error_pair(self) -> tuple[int, str]:
        err = self._mt5.last_error()
        return int(err[0]), str(err[1])

    def _invoke(self, name: str, args: tuple, kwargs: dict) -> tuple[Any, tuple[int, str] | None]:
        """One module call (the caller holds the lock); a None/False result comes back with last_error."""
        result = getattr(self._mt5, name)(*args, **kwargs)
        err = self._failure(name, result)
        return (None, err) if err is not None else (result, None)

    def _failure(self, name: str, result: Any) -> tuple[int, str] | None:
        """``last_error`` when ``result`` says the call failed (None; False from a function that
        answers a bool), else None. The caller holds the lock the call was made under."""
        if result is None or (result is False and name in _BOOL_FUNCTIONS):
            return self._last_error_pair()
        return None

    def _raw(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """A call without reconnect (used while connecting): None becomes an error."""
        with self._lock:
            result, err = self._invoke(name, args, kwargs)
        if err is None:
            return result
        self._record_error(*err)
        raise self._call_error(name, args, *err)

    def _call_error(self, name: str, args: tuple, code: int, desc: str) -> BrokerError:
        what = f"MT5 {name}({', '.join(repr(a) for a in args if not isinstance(a, dict))})"
        info = last_error_info(code)
        message = f"{what} failed: {code} {desc or info.text}"
        if code in _RECONNECT_CODES:
            return BrokerUnavailable(code, message)
        if code == -8:
            return TradingDisabled(code, message, ALGO_TRADING_INSTRUCTION)
        return BrokerError(code, message)

    def _call(self, name: str, *args: Any, empty_ok: bool = False, **kwargs: Any) -> Any:
        """A module call under the lock; on an IPC error reconnect with backoff and call again.

        ``empty_ok``: the list functions may answer None with last_error RES_S_OK for "nothing".
        The first attempt is ``_invoke`` written out: every broker call (bar reads, quotes,
        positions, several per bar in a backtest) makes it, and it is almost always the only one;
        a result that is neither None nor False cannot be a failure (``_failure``).
        """
        # ``with``, not acquire/try/release (half the cost): a Ctrl+C (KeyboardInterrupt) arriving
        # right after the acquire would leave the lock held there, and every later call waiting
        with self._lock:
            generation = self._generation
            result = getattr(self._mt5, name)(*args, **kwargs)
            err = self._failure(name, result) if result is None or result is False else None
        if err is None:
            if self._consecutive_failures or not self._connected:  # else nothing to note (``_note_success``)
                self._note_success()
            return result
        return self._retry(name, args, kwargs, empty_ok, err, generation)

    def _retry(self, name: str, args: tuple, kwargs: dict, empty_ok: bool, err: tuple[int, str],
               generation: int) -> Any:
        """``_call`` once its first attempt answered ``err``: handle that, reconnect and call again."""
        for attempt in range(self._settings.reconnect_attempts + 1):
            if attempt:
                self._sleep(self._backoff(attempt - 1))
                if not self._reconnect(generation):
                    continue
                with self._lock:
                    generation = self._generation
                    result, err = self._invoke(name, args, kwargs)
                if err is None:
                    self._note_success()
                    return result
            code, desc = err
            if empty_ok and code == RES_S_OK:
                return ()
            self._record_error(code, desc)
            if code not in _RECONNECT_CODES:
                raise self._call_error(name, args, code, desc)
            self._mark_disconnected()
        code, desc = err
        raise BrokerUnavailable(code, (
            f"MT5 terminal unreachable: {name} failed with {code} {desc}; "
            f"{self._settings.reconnect_attempts} reconnect attempts failed (will retry on the next call)"))

    def _backoff(self, attempt: int) -> float:
        return min(self._settings.backoff_max_s, self._settings.backoff_base_s * (2 ** attempt))

    def _reconnect(self, seen_generation: int | None) -> bool:
        """initialize + login again; True when connected. Another thread may have done it
        already (the generation moved on); ``None`` forces it (trade server link lost: 10031)."""
        with self._lock:
            with self._state_lock:
                if seen_generation is not None and self._connected and self._generation != seen_generation:
                    return True
            ok, code, desc = self._initialize_locked()
            if not ok:
                self._record_error(code, desc)
                log.warning("MT5 reconnect failed: %s %s", code, desc)
                return False
            try:
                self._check_terminal_and_account_locked()
                for spec in self._specs.values():
                    self._mt5.symbol_select(spec.broker_name, True)
            except BrokerUnavailable as exc:
                log.warning("MT5 reconnect incomplete: %s", exc)
                return False
            self._mark_connected(reconnect=True)
        log.warning("MT5 reconnected (reconnects so far: %s)", self._reconnects)
        return True

    def _mark_connected(self, *, reconnect: bool) -> None:
        with self._state_lock:
            self._connected = True
            self._connected_since = self._clock.now()
            self._consecutive_failures = 0
            self._generation += 1
            if reconnect:
                self._reconnects += 1

    def _mark_disconnected(self) -> None:
        with self._state_lock:
            if self._connected:
                log.warning("MT5 connection lost: %s", self._last_error)
            self._connected = False

    def _note_success(self) -> None:
        """A call answered: the IPC link works (it may have come back by itself)."""
        if self._connected and not self._consecutive_failures:
            return  # nothing to note (the usual case); a racing failure simply comes after this call
        with self._state_lock:
            self._consecutive_failures = 0
            if not self._connected and self._connected_since is not None:
                self._connected = True
                self._connected_since = self._clock.now()

    def _record_error(self, code: int, desc: str) -> None:
        with self._state_lock:
            self._consecutive_failures += 1
            self._last_error = {"code": code, "message": desc or last_error_info(code).text,
                                "at": self._clock.now().isoformat()}

    # ------------------------------------------------------------------ symbols and times

    def _spec(self, symbol: str) -> SymbolSpec:
        spec = self._specs.get(symbol)
        if spec is not None:
            return spec
        if symbol not in self._to_broker:
            raise ValueError(f"symbol {symbol!r} is not configured in config/bot.json 'symbols' "
                             f"(configured: {', '.join(self._to_broker)})")
        with self._lock:  # a symbol enabled after start: set it up on first use
            return self._specs.get(symbol) or self._setup_symbol_locked(symbol)

    def broker_name(self, symbol: str) -> str:
        return self._spec(symbol).broker_name

    def _config_name(self, broker_name: str) -> str:
        return self._from_broker.get(broker_name, broker_name)

    def _server_to_utc(self, server_seconds: float) -> datetime:
        # ``tz`` by position: the same datetime without keyword parsing (a quote is made at every new tick)
        return datetime.fromtimestamp(float(server_seconds) - self._offset_s, timezone.utc)

    def _utc_to_server(self, when: datetime) -> datetime:
        """The aware datetime MT5 expects for a UTC instant: the server clock's reading, tagged UTC."""
        if when.tzinfo is None:
            raise ValueError("times given to the broker must be timezone-aware UTC")
        return datetime.fromtimestamp(when.timestamp() + self._offset_s, tz=timezone.utc)

    def _timeframe(self, timeframe: str) -> int:
        code = self._timeframes.get(timeframe)
        if code is not None:
            return code
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}")
        code = self._timeframes[timeframe] = getattr(self._mt5, f"TIMEFRAME_{timeframe}")
        return code

    # ------------------------------------------------------------------ market data and account

    def account(self) -> AccountInfo:
        info = self._call("account_info")
        hedging_mode = getattr(self._mt5, "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING", 2)
        return AccountInfo(
            login=int(info.login), currency=str(info.currency), balance=float(info.balance),
            equity=float(info.equity), margin=float(info.margin), margin_free=float(info.margin_free),
            margin_level=float(info.margin_level), leverage=int(info.leverage),
            trade_allowed=bool(info.trade_allowed), hedging=int(info.margin_mode) == hedging_mode,
            server=str(getattr(info, "server", "") or ""), name=str(getattr(info, "name", "") or ""),
            trade_expert=bool(getattr(info, "trade_expert", True)))

    def symbol_spec(self, symbol: str, refresh: bool = False) -> SymbolSpec:
        """The cached contract spec; ``refresh`` re-reads it (keeping the filling mode that works)."""
        spec = self._specs.get(symbol) or self._spec(symbol)  # (``_spec``'s usual answer without its call)
        if not refresh:
            filling = self._filling.get(symbol)  # one dict read, atomic under the GIL: no lock needed
            # The spec is immutable: hand out the cached object unless a filling fallback changed it
            # (monitors ask at every evaluation).
            return spec if filling is None or filling == spec.order_filling else replace(spec, order_filling=filling)
        info = self._call("symbol_info", spec.broker_name)
        fresh = self._spec_from_info(symbol, info, order_filling=self._filling.get(symbol, spec.order_filling))
        with self._state_lock:
            self._specs[symbol] = fresh
        return fresh

    def normalize_volume(self, symbol: str, volume: float) -> float:
        return self._spec(symbol).normalize_volume(volume)

    def normalize_price(self, symbol: str, price: float) -> float:
        return self._spec(symbol).normalize_price(price)

    def _tick(self, spec: SymbolSpec) -> Any:
        tick = self._call("symbol_info_tick", spec.broker_name)
        self._observe_tick(spec.name, _tick_seconds(tick))
        if not (tick.bid > 0 and tick.ask > 0):
            raise OrderRejected(10021, f"{spec.name}: no prices (bid {tick.bid}, ask {tick.ask})", transient=True)
        return tick

    def _quote_from_tick(self, spec: SymbolSpec, tick: Any, stamp: float | None = None) -> Quote:
        stamp = _tick_seconds(tick) if stamp is None else stamp
        # positional, in Quote's field order (symbol, bid, ask, time, spread_points): keyword
        # arguments cost a constructor a dictionary, and a quote is made at every new tick
        # (``round`` of a quotient, always a float, is already an int: no ``int()`` around it)
        return Quote(spec.name, float(tick.bid), float(tick.ask), self._server_to_utc(stamp),
                     round((tick.ask - tick.bid) / spec.point))

    def quote(self, symbol: str) -> Quote:
        spec = self._specs.get(symbol) or self._spec(symbol)  # (``_spec``'s usual answer without its call)
        tick = self._call("symbol_info_tick", spec.broker_name)
        stamp = _tick_seconds(tick)
        self._observe_tick(spec.name, stamp)
        if not (tick.bid > 0.0 and tick.ask > 0.0):  # (float to float: the interpreter's fast comparison)
            raise BrokerError(10021, f"{spec.name}: no prices (bid {tick.bid}, ask {tick.ask})")
        # The same tick object as last time, read with the same spec and offset, makes the same
        # quote: reuse it. Only the simulated terminal keeps its answer while no new tick came; the
        # real MetaTrader5 module returns a new object per call, so live this never hits.
        offset = self._offset_s
        memo = self._quotes.get(symbol)
        if memo is not None and memo[0] is tick and memo[1] is spec and memo[2] == offset:
            return memo[3]
        quote = self._quote_from_tick(spec, tick, stamp)
        self._quotes[symbol] = (tick, spec, offset, quote)
        return quote

    def bars(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> BarSeries:
        """The last ``count`` bars, oldest first, times in UTC (``engines.bars.BarSeries``: numpy
        columns, no pandas frame). Without ``include_forming`` the still-forming bar (position 0)
        is left out."""
        return BarSeries.from_rates(self._rates(symbol, timeframe, count, include_forming),
                                    int(round(self._offset_s)))

    def bar_rows(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> list[tuple]:
        """``bars(...).rows()`` without the columns: the rates array read in one call. A module
        that can answer ``copy_rates_from_pos`` as rows directly (the simulator:
        ``reads_rate_rows``) is asked that way, with their times already shifted to UTC
        (``shifted_rows``'s shift, passed along), which saves building the array and rebuilding
        each row; the rows are the same either way."""
        if self._rate_rows:
            return self._rates(symbol, timeframe, count, include_forming, True)
        return rates_rows(self._rates(symbol, timeframe, count, include_forming), int(round(self._offset_s)))

    def _rates(self, symbol: str, timeframe: str, count: int, include_forming: bool, rows: bool = False) -> Any:
        """``copy_rates_from_pos(symbol, timeframe, start, count)`` of the module; ``rows``: its
        ``copy_rates_from_pos_rows``, with the server-to-UTC shift (``bar_rows``)."""
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        # ``_spec`` and ``_timeframe``'s usual answers read without their calls (a read per bar and timeframe)
        spec = self._specs.get(symbol) or self._spec(symbol)
        code = self._timeframes.get(timeframe) or self._timeframe(timeframe)
        count = count if type(count) is int else int(count)  # (a plain int as it is, without the call)
        if rows:
            # the offset in whole seconds, kept while the offset stays the same (it changes only when
            # measured again): ``int(round(...))`` costs some 1,400 instructions, at every bar read
            offset, whole = self._offset_s, self._whole_offset
            if whole[0] != offset:
                whole = self._whole_offset = (offset, int(round(offset)))
            return self._call("copy_rates_from_pos_rows", spec.broker_name, code, 0 if include_forming else 1,
                              count, whole[1])
        return self._call("copy_rates_from_pos", spec.broker_name, code, 0 if include_forming else 1, count)

    def ticks(self, symbol: str, start_utc: datetime, end_utc: datetime) -> TickSeries:
        """All ticks in [start, end), times in UTC epoch milliseconds (``engines.ticks.TickSeries``)."""
        spec = self._spec(symbol)
        ticks = self._call("copy_ticks_range", spec.broker_name, self._utc_to_server(start_utc),
                           self._utc_to_server(end_utc), self._mt5.COPY_TICKS_ALL, empty_ok=True)
        return TickSeries.from_ticks(ticks, int(round(self._offset_s * 1000)))

    # ------------------------------------------------------------------ positions and deals

    def _position_from(self, raw: Any) -> Position:
        return Position(
            ticket=int(raw.ticket), symbol=self._config_name(str(raw.symbol)),
            side="buy" if int(raw.type) == self._mt5.POSITION_TYPE_BUY else "sell",
            volume=float(raw.volume), price_open=float(raw.price_open), sl=float(raw.sl), tp=float(raw.tp),
            price_current=float(raw.price_current), profit=float(raw.profit), swap=float(raw.swap),
            magic=int(raw.magic), comment=str(raw.comment),
            time=self._server_to_utc(raw.time_msc / 1000.0 if getattr(raw, "time_msc", 0) else raw.time),
            identifier=int(raw.identifier), broker_symbol=str(raw.symbol))

    def _deal_from(self, raw: Any) -> Deal | None:
        kind = int(raw.type)
        if kind not in (self._mt5.DEAL_TYPE_BUY, self._mt5.DEAL_TYPE_SELL):
            return None  # balance, credit, commission... entries are not trades
        return Deal(
            ticket=int(raw.ticket), order=int(raw.order), position_id=int(raw.position_id),
            symbol=self._config_name(str(raw.symbol)), side="buy" if kind == self._mt5.DEAL_TYPE_BUY else "sell",
            entry=_DEAL_ENTRIES.get(int(raw.entry), str(raw.entry)),  # type: ignore[arg-type]
            reason=_DEAL_REASONS.get(int(raw.reason), f"reason_{int(raw.reason)}"),
            volume=float(raw.volume), price=float(raw.price), profit=float(raw.profit),
            commission=float(raw.commission), swap=float(raw.swap), fee=float(getattr(raw, "fee", 0.0)),
            magic=int(raw.magic), comment=str(raw.comment),
            time=self._server_to_utc(raw.time_msc / 1000.0 if getattr(raw, "time_msc", 0) else raw.time),
            broker_symbol=str(raw.symbol))

    def positions(self, symbol: str | None = None, magic: int | None = None) -> list[Position]:
        kwargs = {"symbol": self._spec(symbol).broker_name} if symbol else {}
        raw = self._call("positions_get", empty_ok=True, **kwargs)
        found = [self._position_from(p) for p in raw]
        return [p for p in found if magic is None or p.magic == magic]

    def position(self, ticket: int) -> Position | None:
        raw = self._call("positions_get", empty_ok=True, ticket=int(ticket))
        return self._position_from(raw[0]) if raw else None

    def deals(self, start_utc: datetime, end_utc: datetime, symbol: str | None = None,
              magic: int | None = None, position: int | None = None) -> list[Deal]:
        """Trade deals (balance operations left out) in [start, end], oldest first."""
        if position is not None:
            raw = self._call("history_deals_get", empty_ok=True, position=int(position))
        else:
            raw = self._call("history_deals_get", self._utc_to_server(start_utc), self._utc_to_server(end_utc),
                             empty_ok=True)
        broker = self._spec(symbol).broker_name if symbol else None
        out = []
        for item in raw:
            deal = self._deal_from(item)
            if deal is None or (broker and deal.broker_symbol != broker) or (magic is not None and deal.magic != magic):
                continue
            if start_utc <= deal.time <= end_utc:
                out.append(deal)
        return sorted(out, key=lambda d: (d.time, d.ticket))

    def find_by_client_id(self, client_id: str, since_utc: datetime) -> Position | Deal | None:
        """The open position, else the most recent deal, whose comment is ``client_id``."""
        for pos in self.positions():
            if pos.comment == client_id:
                return pos
        start = since_utc - self._settings.lookup_window
        end = self._clock.now() + timedelta(days=1)  # the server clock may run ahead of ours
        matches = [d for d in self.deals(start, end) if d.comment == client_id]
        return matches[-1] if matches else None

    def _pending_with_comment(self, client_id: str) -> bool:
        """A market order still being processed shows in orders_get until it fills."""
        orders = self._call("orders_get", empty_ok=True)
        return any(str(o.comment) == client_id for o in orders)

    # ------------------------------------------------------------------ orders

    def _ensure_entries_allowed(self) -> None:
        """Before an entry: AutoTrading still on? account still allowed? (re-read, it can change)."""
        terminal = self._call("terminal_info")
        if not terminal.connected:
            # The terminal lost its trade server; initialize() again re-attaches (as after a disconnect).
            self._reconnect(None)
            terminal = self._call("terminal_info")
        with self._state_lock:
            self._trade_server_connected = bool(terminal.connected)
        if not terminal.connected:
            raise BrokerUnavailable(10031, "the MT5 terminal is not connected to the trade server; entries wait "
                                           "until it reconnects (check the network and MT5_SERVER)")
        self._update_terminal_block(bool(terminal.trade_allowed))
        with self._state_lock:
            account_blocked = "account" in self._blocks
        if account_blocked:
            self._update_account_block(self._call("account_info"))
        with self._state_lock:
            blocks = list(self._blocks.values())
        if blocks:
            code, _ = blocks[0]
            raise TradingDisabled(code, "entries blocked", "; ".join(i for _, i in blocks))

    def _stops_outside_level(self, spec: SymbolSpec, side: Side, reference: float, sl: float, tp: float,
                             min_points: int, what: str) -> tuple[float, float, list[str]]:
        """Keep SL/TP at least ``min_points`` from ``reference`` (the price the position closes at:
        bid for a buy, ask for a sell). A stop on the wrong side of the price is refused."""
        notes: list[str] = []
        distance = min_points * spec.point
        tick = spec.tick_size or spec.point
        below = lambda p: round(math.floor(p / tick + 1e-9) * tick, spec.digits)  # noqa: E731
        above = lambda p: round(math.ceil(p / tick - 1e-9) * tick, spec.digits)  # noqa: E731
        price_name = "bid" if side == "buy" else "ask"
        for label, value in (("SL", sl), ("TP", tp)):
            if not value:
                continue
            loss_side_below = (label == "SL") == (side == "buy")  # buy SL and sell TP sit below the price
            if (loss_side_below and value >= reference) or (not loss_side_below and value <= reference):
                where = "below" if loss_side_below else "above"
                raise OrderRejected(INVALID_STOPS, (
                    f"{what}: {side} {label} {value} must be {where} the current {price_name} {reference} "
                    f"({spec.name}); refusing rather than moving it to the other side"))
            if distance <= 0:
                continue
            limit = below(reference - distance) if loss_side_below else above(reference + distance)
            too_close = value > limit if loss_side_below else value < limit
            if too_close:
                notes.append(f"{label} moved from {value} to {limit}: at least {min_points} points from the "
                             f"{price_name} {reference} (stops level {spec.stops_level_points})")
                value = limit
            if label == "SL":
                sl = value
            else:
                tp = value
        return sl, tp, notes

    def _min_stop_points(self, spec: SymbolSpec, tick: Any, widen: bool) -> int:
        if not widen:
            return spec.stops_level_points
        spread = int(round((tick.ask - tick.bid) / spec.point))
        return max(spec.stops_level_points, spread) + 1

    def market_order(self, symbol: str, side: Side, volume: float, sl: float | None, tp: float | None,
                     magic: int, client_id: str, deviation_points: int | None = None) -> OrderResult:
        """Open a position at market with SL/TP; ``client_id`` goes in the comment for lookups."""
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', not {side!r}")
        validate_client_id(client_id)
        if not (isinstance(magic, int) and 0 <= magic < 2 ** 63):
            raise ValueError(f"magic must be a non-negative integer, got {magic!r}")
        spec = self._spec(symbol)
        self._ensure_entries_allowed()
        deviation = self._settings.deviation_points if deviation_points is None else int(deviation_points)
        requested = OrderRequest("open", symbol, side, volume, sl, tp, magic, client_id, deviation)
        since = self._clock.now()
        m = self._mt5
        sl_n = spec.normalize_price(sl) if sl else 0.0
        tp_n = spec.normalize_price(tp) if tp else 0.0

        def build(tick: Any, st: _Attempt) -> tuple[dict[str, Any], list[str]]:
            reference = tick.bid if side == "buy" else tick.ask
            min_points = self._min_stop_points(spec, tick, st.widen_stops)
            sl_x, tp_x, notes = self._stops_outside_level(spec, side, reference, sl_n, tp_n, min_points,
                                                          f"open {symbol}")
            request = {
                "action": m.TRADE_ACTION_DEAL, "symbol": spec.broker_name, "volume": st.volume,
                "type": m.ORDER_TYPE_BUY if side == "buy" else m.ORDER_TYPE_SELL,
                "price": spec.normalize_price(tick.ask if side == "buy" else tick.bid),
                "sl": sl_x, "tp": tp_x, "deviation": deviation, "magic": magic, "comment": client_id,
                "type_time": m.ORDER_TIME_GTC, "type_filling": st.filling,
            }
            return request, notes

        def recover(code: int, desc: str, request: dict, st: _Attempt, attempts: int) -> OrderResult:
            def probe() -> OrderResult | None:
                found = self.find_by_client_id(client_id, since)
                if found is None:
                    return None
                return self._recovered_result(found, spec, side, st, request, attempts)
            return self._resolve_lost_reply(code, desc, client_id, request, probe)

        return self._execute(spec, side, requested, build, recover, volume)

    def close_position(self, ticket: int, volume: float | None = None, magic: int | None = None,
                       client_id: str = "", deviation_points: int | None = None) -> OrderResult:
        """Close all of a position, or ``volume`` of it (rounded down to the step)."""
        if client_id:
            validate_client_id(client_id)
        pos = self.position(ticket)
        if pos is None:
            raise OrderRejected(10036, f"position {ticket} is not open (already closed?)")
        spec = self._spec(pos.symbol) if pos.symbol in self._to_broker else None
        if spec is None:
            raise ValueError(f"position {ticket} is on {pos.broker_symbol!r}, which is not a configured symbol")
        close_volume = pos.volume if volume is None or volume >= pos.volume else self._close_volume(spec, pos, volume)
        deviation = self._settings.deviation_points if deviation_points is None else int(deviation_points)
        requested = OrderRequest("close", spec.name, pos.side, volume, None, None,
                                 pos.magic if magic is None else magic, client_id, deviation, ticket)
        m = self._mt5
        closing_side: Side = "sell" if pos.side == "buy" else "buy"
        since = self._clock.now()

        def build(tick: Any, st: _Attempt) -> tuple[dict[str, Any], list[str]]:
            request = {
                "action": m.TRADE_ACTION_DEAL, "symbol": spec.broker_name, "volume": st.volume,
                "type": m.ORDER_TYPE_SELL if pos.side == "buy" else m.ORDER_TYPE_BUY, "position": ticket,
                "price": spec.normalize_price(tick.bid if pos.side == "buy" else tick.ask),
                "deviation": deviation, "magic": requested.magic, "comment": client_id,
                "type_time": m.ORDER_TIME_GTC, "type_filling": st.filling,
            }
            return request, []

        def recover(code: int, desc: str, request: dict, st: _Attempt, attempts: int) -> OrderResult:
            def probe() -> OrderResult | None:
                if client_id:
                    found = self.find_by_client_id(client_id, since)
                    if isinstance(found, Deal):
                        return self._recovered_result(found, spec, closing_side, st, request, attempts)
                now_pos = self.position(ticket)
                if now_pos is None or now_pos.volume < pos.volume - 1e-9:
                    closed = pos.volume if now_pos is None else pos.volume - now_pos.volume
                    return OrderResult(
                        retcode=10009, retcode_class="success", deal=0, order=0, volume=round(closed, 8), price=0.0,
                        comment="reply lost; the position is closed or reduced", client_id=client_id,
                        position=ticket, symbol=spec.name, side=closing_side, requested_volume=st.volume,
                        filling=st.filling, attempts=attempts, adjustments=tuple(st.adjustments), recovered=True,
                        request=request)
                return None
            return self._resolve_lost_reply(code, desc, client_id or f"close#{ticket}", request, probe)

        return self._execute(spec, closing_side, requested, build, recover, close_volume, position=ticket)

    def _close_volume(self, spec: SymbolSpec, pos: Position, volume: float) -> float:
        """A partial close volume, rounded down to the step; both the part and what remains
        must reach the symbol's minimum (refused, never silently enlarged)."""
        if volume < spec.volume_min - 1e-9:
            raise OrderRejected(10014, (
                f"cannot close {volume} lots of position {pos.ticket}: below the minimum volume "
                f"{spec.volume_min} of {spec.name}"))
        part = normalize_volume(volume, spec.volume_min, spec.volume_max, spec.volume_step)
        if part >= pos.volume:
            return pos.volume
        remaining = round(pos.volume - part, 8)
        if remaining < spec.volume_min - 1e-9:
            raise OrderRejected(10038, (
                f"closing {part} of {pos.volume} lots of position {pos.ticket} would leave {remaining}, below the "
                f"minimum volume {spec.volume_min} of {spec.name}: close all of it or less of it"))
        return part

    def modify_sltp(self, ticket: int, sl: float | None, tp: float | None) -> OrderResult:
        """Set a position's SL and TP (None or 0 removes one). Idempotent, so a lost reply is
        checked by reading the position back."""
        pos = self.position(ticket)
        if pos is None:
            raise OrderRejected(10036, f"position {ticket} is not open (already closed?)")
        spec = self._spec(pos.symbol)
        m = self._mt5
        sl_n = spec.normalize_price(sl) if sl else 0.0
        tp_n = spec.normalize_price(tp) if tp else 0.0
        requested = OrderRequest("modify", spec.name, pos.side, None, sl, tp, pos.magic, "", 0, ticket)
        if abs(pos.sl - sl_n) < spec.point / 2 and abs(pos.tp - tp_n) < spec.point / 2:
            return OrderResult(retcode=NO_CHANGES, retcode_class="success", deal=0, order=0, volume=pos.volume,
                               price=pos.price_open, comment="no changes: SL/TP already at the requested values",
                               client_id="", position=ticket, symbol=spec.name, side=pos.side, sl=sl_n, tp=tp_n)

        def build(tick: Any, st: _Attempt) -> tuple[dict[str, Any], list[str]]:
            reference = tick.bid if pos.side == "buy" else tick.ask
            min_points = self._min_stop_points(spec, tick, st.widen_stops)
            sl_x, tp_x, notes = self._stops_outside_level(spec, pos.side, reference, sl_n, tp_n, min_points,
                                                          f"modify {ticket}")
            request = {"action": m.TRADE_ACTION_SLTP, "symbol": spec.broker_name, "position": ticket,
                       "sl": sl_x, "tp": tp_x, "magic": pos.magic}
            return request, notes

        def recover(code: int, desc: str, request: dict, st: _Attempt, attempts: int) -> OrderResult:
            def probe() -> OrderResult | None:
                now_pos = self.position(ticket)
                if now_pos is None:
                    raise OrderRejected(10036, f"position {ticket} closed while its SL/TP were being modified")
                if abs(now_pos.sl - request["sl"]) < spec.point / 2 and abs(now_pos.tp - request["tp"]) < spec.point / 2:
                    return OrderResult(retcode=10009, retcode_class="success", deal=0, order=0, volume=now_pos.volume,
                                       price=now_pos.price_open, comment="reply lost; SL/TP read back as requested",
                                       client_id="", position=ticket, symbol=spec.name, side=pos.side,
                                       sl=now_pos.sl, tp=now_pos.tp, attempts=attempts,
                                       adjustments=tuple(st.adjustments), recovered=True, request=request)
                return None
            return self._resolve_lost_reply(code, desc, f"modify#{ticket}", request, probe)

        return self._execute(spec, pos.side, requested, build, recover, pos.volume, position=ticket,
                             modify=True)

    # ------------------------------------------------------------------ the retry loop

    def _execute(self, spec: SymbolSpec, side: Side, requested: OrderRequest,
                 build: Callable[[Any, _Attempt], tuple[dict[str, Any], list[str]]],
                 recover: Callable[[int, str, dict, _Attempt, int], OrderResult],
                 volume: float, position: int | None = None, modify: bool = False) -> OrderResult:
        """Check, send and handle the retcode by class until done, rejected or out of retries."""
        m = self._mt5
        with self._state_lock:
            filling = self._filling.get(spec.name, spec.order_filling)
        preference = filling_preference(spec.filling_modes, spec.execution_mode, m)
        st = _Attempt(filling=filling, tried_fillings=[filling], volume=volume)
        if not modify:
            st.volume = spec.normalize_volume(volume)
            if abs(st.volume - volume) > 1e-12:
                st.adjustments.append(f"volume {volume} normalised to {st.volume} (step {spec.volume_step}, "
                                      f"min {spec.volume_min}, max {spec.volume_max})")
        transient_left = self._settings.transient_retries
        attempts = 0
        while True:
            attempts += 1
            tick = self._tick(spec)
            request, notes = build(tick, st)
            for note in notes:
                if note not in st.adjustments:
                    st.adjustments.append(note)
            check = self._call("order_check", request)
            code, comment, sent = int(check.retcode), str(getattr(check, "comment", "")), False
            if code == CHECK_OK or retcode_info(code).klass is RetcodeClass.SUCCESS:
                with self._lock:
                    result, err = self._invoke("order_send", (request,), {})
                if result is None:
                    return self._lost_reply(err, request, st, attempts, recover, requested)
                code, comment, sent = int(result.retcode), str(result.comment), True
            info = retcode_info(code)
            stage = "order_send" if sent else "order_check"
            if info.klass is RetcodeClass.SUCCESS and sent:
                if not modify and st.filling != filling:
                    with self._state_lock:
                        self._filling[spec.name] = st.filling
                    log.warning("%s: filling mode %s works; cached for opens and closes",
                                spec.name, filling_name(m, st.filling))
                return self._success(result, spec, side, requested, st, attempts, request, position)
            if modify and code == NO_CHANGES:
                return OrderResult(retcode=code, retcode_class="success", deal=0, order=0, volume=volume, price=0.0,
                                   comment=comment, client_id="", position=position, symbol=spec.name, side=side,
                                   sl=request["sl"], tp=request["tp"], attempts=attempts, request=request)
            reason = f"{stage}: {describe(code, comment)}"
            if info.klass is RetcodeClass.TRANSIENT:
                if info.ambiguous and sent:
                    found = recover_probe_or_none(recover, code, comment, request, st, attempts)
                    if found is not None:
                        return found
                transient_left -= 1
                if transient_left < 0:
                    raise OrderRejected(code, f"{reason}; gave up after {attempts} attempts", request=request,
                                        attempts=attempts, transient=True)
                st.adjustments.append(f"attempt {attempts}: {describe(code, comment)}; retrying with a fresh price")
                self._sleep(self._settings.transient_pause_s * attempts)
                if code == CONNECTION:
                    self._reconnect(None)  # re-attach the terminal to its trade server
                continue
            if info.klass is RetcodeClass.FIXABLE and self._fix_once(code, st, spec, preference, reason, request):
                continue
            if info.klass is RetcodeClass.FATAL:
                self._note_fatal(code, comment, spec.name)
                raise TradingDisabled(code, reason, info.instruction)
            raise OrderRejected(code, reason + (f" (after: {'; '.join(st.adjustments)})" if st.adjustments else ""),
                                request=request, attempts=attempts)

    def _fix_once(self, code: int, st: _Attempt, spec: SymbolSpec, preference: tuple[int, ...],
                  reason: str, request: dict) -> bool:
        """Apply the one correction a FIXABLE retcode allows; False when it was already used."""
        m = self._mt5
        if code == INVALID_FILL:
            untried = [mode for mode in preference if mode not in st.tried_fillings]
            if "type_filling" not in request or not untried:
                return False
            old, st.filling = st.filling, untried[0]
            st.tried_fillings.append(st.filling)
            st.adjustments.append(f"filling mode {filling_name(m, old)} refused (10030); "
                                  f"retrying with {filling_name(m, st.filling)}")
            return True
        if code == INVALID_STOPS:
            if st.widen_stops:
                return False
            st.widen_stops = True
            st.adjustments.append("stops refused (10016); widening them to the stops level (or spread) + 1 point")
            return True
        if code == INVALID_VOLUME:
            if st.volume_fixed or "volume" not in request:
                return False
            st.volume_fixed = True
            fresh = self.symbol_spec(spec.name, refresh=True)
            corrected = fresh.normalize_volume(st.volume)
            if corrected == st.volume:
                return False
            st.adjustments.append(f"volume refused (10014); re-rounded {st.volume} to {corrected}")
            st.volume = corrected
            return True
        return False

    def _note_fatal(self, code: int, comment: str, symbol: str) -> None:
        info = retcode_info(code)
        with self._state_lock:
            self._last_fatal = {"code": code, "text": describe(code, comment), "symbol": symbol,
                                "instruction": info.instruction, "at": self._clock.now().isoformat()}
            if code == 10027:
                self._blocks["terminal"] = (code, info.instruction)
            elif code == 10026:
                self._blocks["account"] = (code, info.instruction)
        log.error("MT5 refused a trade on %s: %s. %s", symbol, describe(code, comment), info.instruction)

    def _success(self, result: Any, spec: SymbolSpec, side: Side, requested: OrderRequest, st: _Attempt,
                 attempts: int, request: dict, position: int | None) -> OrderResult:
        deal, order = int(result.deal), int(result.order)
        price = float(result.price)
        if position is None and requested.kind == "open":
            position = self._position_of(deal, order)
        return OrderResult(
            retcode=int(result.retcode), retcode_class="success", deal=deal, order=order,
            volume=float(result.volume) if requested.kind != "modify" else st.volume, price=price,
            comment=str(result.comment), client_id=requested.client_id, position=position, symbol=spec.name,
            side=side, requested_volume=st.volume, sl=float(request.get("sl", 0.0)), tp=float(request.get("tp", 0.0)),
            filling=request.get("type_filling"), attempts=attempts, adjustments=tuple(st.adjustments),
            request=request)

    def _position_of(self, deal: int, order: int) -> int | None:
        """The position a new order opened, read from its deal (``history_deals_get(ticket=)``
        selects by ORDER ticket); on a hedging account it equals the order ticket."""
        if order:
            try:
                for item in self._call("history_deals_get", empty_ok=True, ticket=order):
                    if not deal or int(item.ticket) == deal:
                        return int(item.position_id)
            except BrokerError as exc:
                log.warning("could not read the deal of order %s back: %s", order, exc)
        return order or None

    def _recovered_result(self, found: Position | Deal, spec: SymbolSpec, side: Side, st: _Attempt,
                          request: dict, attempts: int) -> OrderResult:
        if isinstance(found, Position):
            deal, order, position, volume, price = 0, found.identifier, found.ticket, found.volume, found.price_open
        else:
            deal, order, position, volume, price = found.ticket, found.order, found.position_id, found.volume, found.price
        return OrderResult(
            retcode=10009, retcode_class="success", deal=deal, order=order, volume=volume, price=price,
            comment="reply lost; found by client id", client_id=str(request.get("comment", "")),
            position=position, symbol=spec.name, side=side, requested_volume=st.volume,
            sl=float(request.get("sl", 0.0)), tp=float(request.get("tp", 0.0)), filling=request.get("type_filling"),
            attempts=attempts, adjustments=tuple(st.adjustments), recovered=True, request=request)

    def _lost_reply(self, err: tuple[int, str] | None, request: dict, st: _Attempt, attempts: int,
                    recover: Callable[[int, str, dict, _Attempt, int], OrderResult],
                    requested: OrderRequest) -> OrderResult:
        """order_send returned None. Unless the terminal refused the request locally, the order
        may have executed: never resend, look it up (``recover``)."""
        code, desc = err or (-1, "order_send returned None")
        self._record_error(code, desc)
        if code in _LOCAL_REFUSALS:
            raise OrderRejected(code, f"order_send refused the request locally: {code} {desc}", request=request,
                                attempts=attempts)
        if code == -8:
            self._note_fatal(10027, desc, requested.symbol)
            raise TradingDisabled(code, f"order_send: {desc}", ALGO_TRADING_INSTRUCTION)
        if code in _RECONNECT_CODES:
            self._mark_disconnected()
        return recover(code, desc, request, st, attempts)

    def _resolve_lost_reply(self, code: int, desc: str, client_id: str, request: dict,
                            probe: Callable[[], OrderResult | None]) -> OrderResult:
        """Look the request up now and once more after ``recheck_delay_s``.

        Found: the result, marked ``recovered``. Looked up twice without trace (and nothing in
        flight): ``OrderNotPlaced``. The lookup itself failing, or an order still in flight:
        ``OrderOutcomeUnknown`` (the executor resolves it; it must not resend blindly).
        """
        in_flight = False
        for check in range(2):
            if check:
                self._sleep(self._settings.recheck_delay_s)
            try:
                found = probe()
                if found is not None:
                    log.warning("order_send reply lost (%s %s) but %s was found: %s", code, desc, client_id,
                                found.comment)
                    return found
                in_flight = self._pending_with_comment(client_id)
            except BrokerUnavailable as exc:
                raise OrderOutcomeUnknown(code, (
                    f"order_send for {client_id} lost its reply ({code} {desc}) and the terminal could not be "
                    f"reached to check whether it executed ({exc}): do not resend; resolve by client id"),
                    client_id=client_id, request=request) from exc
        if in_flight:
            raise OrderOutcomeUnknown(code, (
                f"order_send for {client_id} lost its reply ({code} {desc}) and the order is still being "
                "processed: do not resend; resolve by client id"), client_id=client_id, request=request)
        raise OrderNotPlaced(code, (
            f"order_send for {client_id} lost its reply ({code} {desc}); the client id was looked up twice "
            "(positions, orders, deals) and nothing was placed"), client_id=client_id)


def recover_probe_or_none(recover: Callable[[int, str, dict, _Attempt, int], OrderResult], code: int,
                          comment: str, request: dict, st: _Attempt, attempts: int) -> OrderResult | None:
    """After an ambiguous retcode (10012 timeout, 10031 no connection) look the request up before
    retrying: found -> its result; verified absent -> None (retry is safe)."""
    try:
        return recover(code, comment, request, st, attempts)
    except OrderNotPlaced:
        return None
