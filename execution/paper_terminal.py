"""Paper trading on a real MetaTrader 5 terminal: real quotes, simulated fills, no real order.

``PaperTerminal(MetaTrader5, clock, book_path)`` goes to ``Mt5Broker`` where the MetaTrader5
module would (bot.json ``mode: paper`` with ``broker: mt5``). It is a MetaTrader5-compatible
object that splits the module in two:

- market data and identity come from the REAL module unchanged: ``initialize``, ``login``,
  ``shutdown``, ``version``, ``last_error``, ``terminal_info``, ``symbol_info``,
  ``symbol_info_tick``, ``symbol_select``, ``symbols_get``/``symbols_total``, ``copy_rates_*``,
  ``copy_ticks_*``, ``market_book_*``, the calculators ``order_calc_margin``/``order_calc_profit``
  (the paper account shares the real account's leverage and currency), and every constant and
  structure type (attribute passthrough), so the adapter sees the real values;
- money and trading come from a SIMULATED trade server with its own book file:
  ``account_info`` balance/equity/margin, ``positions_*``, ``orders_*``, ``history_*``,
  ``order_check``, ``order_send``. That server is the simulated terminal's
  (``execution.simterminal.SimTerminal``: request validation, fills, order and deal records with
  reasons, stop-out, the atomic book file) fed with the real terminal's quotes and symbol specs
  instead of recorded data.

The real module's ``order_send`` and ``order_check`` are never called: no order can leave.

How the simulated server uses the real terminal:

- fills at the real bid/ask of that moment (``symbol_info_tick``, read once per call so the
  checks and the fill agree) plus ``slippage_points`` (adverse);
- volume min/max/step/limit, stops and freeze levels, filling modes, trade mode and execution
  mode (instant execution honours ``deviation``) are checked against the real ``symbol_info``
  of that moment;
- a market is open while its latest real tick is at most ``max_quote_age_s`` old, both by its
  server time stamp and by how long it has gone unchanged (the Python API does not publish
  trading sessions); otherwise orders get 10018 "market closed";
- stop losses and take profits trigger from the real tick HISTORY, not just the latest tick:
  at every book call each open position's ticks since the last one checked are read
  (``copy_ticks_from``, ``COPY_TICKS_INFO``), so a stop touched between two calls fills at the
  tick that touched it, stamped with that tick's time. The last tick checked per position is
  kept in the book, so a restart resumes the scan where it stopped. When the history cannot be
  read, the latest tick alone is checked (and the history is read again next time). Real ticks
  are discrete, so both a stop loss and a take profit fill at the price of the tick that
  reached them (a stop loss at or beyond its level, less the slippage; a take profit at or
  better than its level);
- profit and margin come from the real terminal's calculators (all calculation modes and
  currency conversions), with a tick-value estimate when one fails;
- the book is bound to the real account (login and currency) at ``initialize``: another
  account needs another book file;
- times: the book keeps UTC and shows broker server time with the offset the ADAPTER uses
  (``follow_server_offset(broker.server_utc_offset)``), so the adapter's conversions round-trip.

The paper account reports what it is: hedging (every market order opens its own position),
trading allowed whatever the terminal's AutoTrading button or the account's password (no real
order can be sent), and the simulator's stop-out levels. Not simulated: pending orders (10013),
swaps, netting accounts.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from execution.simterminal import constants as c
from execution.simterminal.book import BookError, Position, load_book, new_book, save_book
from execution.simterminal.market import Quote, TickSlice
from execution.simterminal.terminal import SimTerminal, _first_stop_hit, _Plan, _Reject
from execution.simterminal.types import OrderSendResult, TerminalInfo, TradeRequest
from monitors.clock import Clock

log = logging.getLogger(__name__)

DEFAULT_MAX_QUOTE_AGE_S = 120.0
TICK_CHUNK = 50_000            # ticks read per copy_ticks_from call while scanning for stops
MARKS_KEY = "paper_tick_marks"  # in the book's ``extra``: {ticket: [server msc, ticks seen at that msc]}
ALL_AT_MS = 2 ** 31            # "every tick stamped at this millisecond is behind the position"
_CALL_FAILED = (c.RES_E_FAIL, "Terminal: Call failed")
# Families of constants the simulated trade server interprets; the real module must agree.
_TRADING_PREFIXES = ("TRADE_ACTION_", "TRADE_RETCODE_", "ORDER_TYPE_", "ORDER_FILLING_", "ORDER_TIME_",
                     "ORDER_STATE_", "ORDER_REASON_", "POSITION_TYPE_", "POSITION_REASON_", "DEAL_",
                     "SYMBOL_TRADE_MODE_", "SYMBOL_TRADE_EXECUTION_", "COPY_TICKS_",
                     "ACCOUNT_MARGIN_MODE_")
_PASSED_DUNDERS = frozenset({"__version__", "__author__"})

Mark = tuple[int, int]  # (server time msc of the last tick checked, ticks at that msc already checked)


class PaperBookError(BookError):
    """The paper book cannot serve the terminal's account (another login or currency)."""


def check_trading_constants(module: Any) -> None:
    """Refuse a module whose trading constants differ from the ones the simulated server speaks."""
    wrong = [f"{name} (module {getattr(module, name)!r}, simulator {value!r})"
             for name, value in c.MT5_CONSTANTS.items()
             if name.startswith(_TRADING_PREFIXES) and hasattr(module, name) and getattr(module, name) != value]
    if wrong:
        raise ValueError("the MetaTrader5 module's trading constants differ from those the paper book "
                         f"understands: {'; '.join(wrong[:8])}")


def _tick_msc(tick: Any) -> int:
    """A tick's server time in milliseconds (``time`` when ``time_msc`` is missing)."""
    msc = int(getattr(tick, "time_msc", 0) or 0)
    return msc if msc else int(tick.time) * 1000


class _LiveSpec:
    """The real ``symbol_info`` as the trade server's contract spec (it reads the same field
    names as the simulator's ``SymbolSpec``), plus the commission the API does not publish."""

    def __init__(self, info: Any, commission_per_lot_per_side: float) -> None:
        self._info = info
        self.commission_per_lot_per_side = float(commission_per_lot_per_side)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._info, name)

    @property
    def trade_tick_size(self) -> float:
        return float(self._info.trade_tick_size or self._info.point)


class _LiveMarket:
    """One real symbol as the trade server's market. The spec and the latest tick are read from
    the real terminal at most once per book call (``server.serial``)."""

    def __init__(self, server: "_PaperServer", name: str, info: Any) -> None:
        self.name = name
        self._server = server
        self._spec = _LiveSpec(info, server.commission_for(name))
        self._spec_serial = server.serial
        self._tick: Any = None          # the last usable real tick
        self._tick_fresh = False        # whether this call got a usable tick
        self._tick_serial = -1
        self._changed_at_ms = 0         # clock time (UTC ms) the tick last changed

    @property
    def spec(self) -> _LiveSpec:
        if self._spec_serial != self._server.serial:
            info = self._server.real.symbol_info(self.name)
            if info is not None:
                self._spec = _LiveSpec(info, self._server.commission_for(self.name))
            self._spec_serial = self._server.serial
        return self._spec

    def _latest(self) -> tuple[Any, bool]:
        if self._tick_serial != self._server.serial:
            tick = self._server.real.symbol_info_tick(self.name)
            self._tick_fresh = tick is not None and tick.bid > 0 and tick.ask > 0
            if self._tick_fresh:
                if self._tick is None or _tick_msc(tick) != _tick_msc(self._tick):
                    self._changed_at_ms = self._server.clock_ms()
                self._tick = tick
            self._tick_serial = self._server.serial
        return self._tick, self._tick_fresh

    @property
    def has_quote(self) -> bool:
        return self._latest()[0] is not None

    @property
    def tick_msc(self) -> int:
        """Server time (ms) of the tick the last quote came from."""
        tick, _ = self._latest()
        return _tick_msc(tick) if tick is not None else 0

    def is_open(self, now_ms: int) -> bool:
        """Open while the real terminal's latest tick is at most ``max_quote_age_s`` old, by
        its server time stamp AND by how long it has gone unchanged on our clock (the second
        rule still closes the market when the server offset is wrong)."""
        tick, fresh = self._latest()
        if not fresh:
            return False
        limit = self._server.max_quote_age_ms
        age_ms = now_ms + self._server.offset_ms - _tick_msc(tick)
        return age_ms <= limit and now_ms - self._changed_at_ms <= limit

    def quote(self, at_ms: int) -> Quote:
        """The real terminal's latest quote (``at_ms`` is always "now" here)."""
        tick, _ = self._latest()
        if tick is None:
            raise _Reject(c.TRADE_RETCODE_PRICE_OFF)
        return Quote(_tick_msc(tick) - self._server.offset_ms, float(tick.bid), float(tick.ask),
                     int(getattr(tick, "flags", 0)))


class _LiveMarkets(Mapping):
    """The real terminal's symbols, a market object made on first use (any broker symbol)."""

    def __init__(self, server: "_PaperServer") -> None:
        self._server = server
        self._known: dict[str, _LiveMarket] = {}

    def __getitem__(self, name: str) -> _LiveMarket:
        market = self._known.get(name)
        if market is None:
            if not isinstance(name, str) or not name:
                raise KeyError(name)
            info = self._server.real.symbol_info(name)
            if info is None:
                raise KeyError(name)
            if not getattr(info, "select", True):
                self._server.real.symbol_select(name, True)  # a tick needs the symbol in Market Watch
            market = self._known[name] = _LiveMarket(self._server, name, info)
        return market

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)


class _LiveSpecs(Mapping):
    def __init__(self, markets: _LiveMarkets) -> None:
        self._markets = markets

    def __getitem__(self, name: str) -> _LiveSpec:
        return self._markets[name].spec

    def __iter__(self) -> Iterator[str]:
        return iter(self._markets)

    def __len__(self) -> int:
        return len(self._markets)


class _PaperServer(SimTerminal):
    """The simulated terminal's trade server and book over a real terminal's markets.

    Only the market source changes (``_LiveMarkets``), and with it how stops are found
    (the real tick history), how profit and margin are computed (the real calculators) and
    where new positions start their tick scan. Everything else is ``SimTerminal``'s code."""

    def __init__(self, real: Any, clock: Clock, book_path: Path | None, *, starting_balance: float,
                 slippage_points: int, max_quote_age_s: float, commissions: Mapping[str, float],
                 time_save_seconds: float) -> None:
        self._init_runtime(clock, book_path, data_dir=Path(book_path).parent if book_path else Path("."),
                           offset_ms=0, leverage=1, currency="", login=0, password=None, server="",
                           terminal_path=None, slippage_points=slippage_points, maxbars=1,
                           time_save_seconds=time_save_seconds, account_name="", company="")
        self.real = real
        self.serial = 0
        self.max_quote_age_ms = int(max_quote_age_s * 1000)
        self._starting_balance = float(starting_balance)
        self._commissions = dict(commissions)
        self._book = load_book(self._book_path)  # None until bound to an account at initialize
        self._markets = _LiveMarkets(self)
        self._specs = _LiveSpecs(self._markets)
        self._selected = set()
        self._static_info = {}
        self._warned: set[str] = set()

    # --- wiring ------------------------------------------------------------------------
    @property
    def offset_ms(self) -> int:
        return self._offset_ms

    @property
    def bound(self) -> bool:
        return self._book is not None and self._login != 0

    def clock_ms(self) -> int:
        return self._ms(self._clock.now())

    def commission_for(self, symbol: str) -> float:
        return self._commissions.get(symbol, 0.0)

    def bind(self, login: int, currency: str, leverage: int, now: datetime) -> None:
        """Attach the book to the real account, creating it (initial deposit) the first time."""
        if self._book is None:
            self._book = new_book(login, currency, self._ms(now), self._starting_balance)
            save_book(self._book_path, self._book)
        elif self._book.login != login:
            raise PaperBookError(f"{self._book_path}: this paper book belongs to MT5 account {self._book.login}, "
                                 f"but the terminal is logged in to {login}; use another paper book file "
                                 "(one per account)")
        elif self._book.currency != currency:
            raise PaperBookError(f"{self._book_path}: this paper book is in {self._book.currency}, but MT5 account "
                                 f"{login} is in {currency}; use another paper book file")
        self._login, self._currency, self._leverage = int(login), currency, max(1, int(leverage))

    def has_positions_on(self, symbol: str) -> bool:
        return self._book is not None and any(p.symbol == symbol for p in self._book.positions.values())

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    # --- money: the real terminal's calculators ------------------------------------------
    def _margin(self, spec: Any, volume: float, price: float) -> float:
        value = self.real.order_calc_margin(c.ORDER_TYPE_BUY, spec.name, volume, price)
        if value is None:
            self._warn_once(f"margin:{spec.name}", "paper: order_calc_margin(%s) failed (%s); margin estimated "
                            "as volume x contract size x price / leverage", spec.name, self.real.last_error())
            value = volume * float(spec.trade_contract_size) * price / self._leverage
        return round(float(value), 2)

    def _profit(self, spec: Any, order_type: int, volume: float, open_price: float, close_price: float) -> float:
        value = self.real.order_calc_profit(order_type, spec.name, volume, open_price, close_price)
        if value is None:
            self._warn_once(f"profit:{spec.name}", "paper: order_calc_profit(%s) failed (%s); profit estimated "
                            "from the tick value", spec.name, self.real.last_error())
            direction = 1.0 if order_type == c.ORDER_TYPE_BUY else -1.0
            value = (close_price - open_price) * direction / spec.trade_tick_size * float(spec.trade_tick_value) * volume
        return round(float(value), 2)

    def _position_profit(self, position: Position, at_ms: int) -> tuple[float, float]:
        market = self._markets.get(position.symbol)
        if market is None or not market.has_quote:
            self._warn_once(f"quote:{position.symbol}", "paper: no quote for %s from the terminal; position %s "
                            "is valued at its open price", position.symbol, position.ticket)
            return position.price_open, 0.0
        return super()._position_profit(position, at_ms)

    # --- where each position's tick scan starts ------------------------------------------
    def _marks(self) -> dict[str, list[int]]:
        return self._book.extra.setdefault(MARKS_KEY, {})

    def _mark_of(self, position: Position, marks: dict[str, list[int]]) -> Mark:
        stored = marks.get(str(position.ticket))
        if stored is not None:
            return int(stored[0]), int(stored[1])
        return position.time_update_ms + self._offset_ms, ALL_AT_MS  # a book without marks

    def _apply(self, plan: _Plan, req: dict[str, Any], trade_request: TradeRequest, now_ms: int) -> OrderSendResult:
        """A new position, or new SL/TP, answers to the ticks AFTER the one it was made at."""
        result = super()._apply(plan, req, trade_request, now_ms)
        if result.retcode != c.TRADE_RETCODE_DONE:
            return result
        marks = self._marks()
        if plan.kind in ("open", "sltp"):
            ticket = result.order if plan.kind == "open" else plan.position.ticket
            marks[str(ticket)] = [plan.market.tick_msc, ALL_AT_MS]
            self._save()
        elif plan.position is not None and plan.position.ticket not in self._book.positions:
            marks.pop(str(plan.position.ticket), None)  # closed in full
        return result

    # --- stops from the real tick history ------------------------------------------------
    def _trigger_stops(self, after_ms: int, upto_ms: int) -> bool:
        """Close every position whose SL or TP a real tick reached since the position's mark,
        at that tick, in time order (the window arguments are the simulator's; the marks
        replace them)."""
        marks = self._marks()
        for key in [k for k in marks if int(k) not in self._book.positions]:
            del marks[key]
        by_symbol: dict[str, list[Position]] = {}
        for position in self._book.positions.values():
            if position.sl or position.tp:
                by_symbol.setdefault(position.symbol, []).append(position)
        events: list[tuple[int, int, bool, float]] = []
        for symbol, positions in by_symbol.items():
            events += self._scan(symbol, positions, marks)
        for time_ms, ticket, is_sl, price in sorted(events):
            self._fill_stop(self._book.positions[ticket], time_ms, is_sl, price)
            marks.pop(str(ticket), None)
        return bool(events)

    def _scan(self, symbol: str, positions: list[Position], marks: dict[str, list[int]]) -> list:
        state = {p.ticket: self._mark_of(p, marks) for p in positions}
        alive, hits = list(positions), []
        for chunk in self._tick_chunks(symbol, min(m[0] for m in state.values())):
            if chunk is None:  # no history: the latest tick alone, marks kept for the next read
                latest = self._latest_tick_array(symbol)
                if latest is not None:
                    alive = self._check_chunk(latest, alive, state, hits, advance=False)
                break
            alive = self._check_chunk(chunk, alive, state, hits)
            if not alive:
                break
        for position in alive:
            marks[str(position.ticket)] = list(state[position.ticket])
        return hits

    def _check_chunk(self, chunk: np.ndarray, alive: list[Position], state: dict[int, Mark],
                     hits: list, advance: bool = True) -> list[Position]:
        """Positions of ``alive`` no tick of ``chunk`` (after each one's mark) stopped out; the
        hits go to ``hits`` and, with ``advance``, the survivors' marks move to the chunk's end."""
        times = np.asarray(chunk["time_msc"], dtype=np.int64)
        if not len(times):
            return alive
        end: Mark = (int(times[-1]), int(np.count_nonzero(times == times[-1])))
        bid = np.asarray(chunk["bid"], dtype=float)
        ask = np.asarray(chunk["ask"], dtype=float)
        usable = (bid > 0) & (ask > 0)
        survivors = []
        for position in alive:
            keep = _after_mark(times, state[position.ticket]) & usable
            if keep.any():
                ticks = TickSlice(times[keep] - self._offset_ms, bid[keep], ask[keep], np.ones(int(keep.sum()), bool))
                hit = _first_stop_hit(position, ticks)
                if hit is not None:
                    hits.append((hit[0], position.ticket, hit[1], hit[2]))
                    continue
            if advance:
                state[position.ticket] = max(state[position.ticket], end)
            survivors.append(position)
        return survivors

    def _tick_chunks(self, symbol: str, from_msc: int) -> Iterator[np.ndarray | None]:
        """The real ticks from ``from_msc``'s second on, ``TICK_CHUNK`` at a time; None once when
        the history cannot be read."""
        start_s = from_msc // 1000
        while True:
            raw = self.real.copy_ticks_from(symbol, start_s, TICK_CHUNK, self.real.COPY_TICKS_INFO)
            if raw is None:
                self._warn_once(f"history:{symbol}", "paper: the terminal's tick history of %s is unavailable (%s); "
                                "stops are checked against the latest tick only until it is", symbol,
                                self.real.last_error())
                yield None
                return
            yield raw
            if len(raw) < TICK_CHUNK:
                return
            next_s = int(raw["time_msc"][-1]) // 1000
            if next_s <= start_s:
                log.error("paper: more than %d ticks of %s in one second; stop scan cut short", TICK_CHUNK, symbol)
                return
            start_s = next_s

    def _latest_tick_array(self, symbol: str) -> np.ndarray | None:
        tick = self.real.symbol_info_tick(symbol)
        if tick is None:
            return None
        row = np.zeros(1, dtype=[("time_msc", np.int64), ("bid", float), ("ask", float)])
        row[0] = (_tick_msc(tick), float(tick.bid), float(tick.ask))
        return row


def _after_mark(times: np.ndarray, mark: Mark) -> np.ndarray:
    """Ticks after ``mark``: later milliseconds, and at the mark's millisecond those beyond the
    ones already checked (the terminal can deliver several ticks stamped the same millisecond)."""
    msc, seen = mark
    keep = times > msc
    same = np.flatnonzero(times == msc)
    if len(same) > seen:
        keep[same[seen:]] = True
    return keep


class PaperTerminal:
    """A MetaTrader5-compatible module: the real terminal's market data, a simulated book's
    trading (see the module doc). Pass it to ``Mt5Broker`` instead of the module."""

    def __init__(self, real_module: Any, clock: Clock, book_path: Path | str | None, *,
                 starting_balance: float = 10_000.0, slippage_points: int = 0,
                 max_quote_age_s: float = DEFAULT_MAX_QUOTE_AGE_S,
                 commission_per_lot_per_side: Mapping[str, float] | None = None,
                 server_utc_offset_hours: float | None = None, time_save_seconds: float = 5.0) -> None:
        """``book_path``: the paper book (None keeps it in memory). ``commission_per_lot_per_side``:
        per broker symbol, in the account currency (the API does not publish commissions).
        ``server_utc_offset_hours`` is used until ``follow_server_offset`` gives the adapter's."""
        if not starting_balance > 0:
            raise ValueError(f"starting_balance must be positive, got {starting_balance!r}")
        if not isinstance(slippage_points, int) or slippage_points < 0:
            raise ValueError(f"slippage_points must be a non-negative integer, got {slippage_points!r}")
        if not max_quote_age_s > 0:
            raise ValueError(f"max_quote_age_s must be positive, got {max_quote_age_s!r}")
        commissions = dict(commission_per_lot_per_side or {})
        bad = {k: v for k, v in commissions.items() if not isinstance(v, (int, float)) or v < 0}
        if bad:
            raise ValueError(f"commission_per_lot_per_side must be non-negative numbers: {bad}")
        if server_utc_offset_hours is not None and abs(server_utc_offset_hours) > 14:
            raise ValueError(f"server_utc_offset_hours must be within +-14, got {server_utc_offset_hours!r}")
        check_trading_constants(real_module)
        self._real = real_module
        self._clock = clock
        self._lock = threading.RLock()
        self._source = "real"  # whose last_error() answers: the module's or the book's
        self._offset_getter: Callable[[], timedelta] | None = None
        self._fixed_offset_ms = None if server_utc_offset_hours is None else int(round(server_utc_offset_hours * 3_600_000))
        self._offset_warned = False
        self._netting_warned = False
        self._server = _PaperServer(real_module, clock, Path(book_path) if book_path is not None else None,
                                    starting_balance=starting_balance, slippage_points=slippage_points,
                                    max_quote_age_s=max_quote_age_s, commissions=commissions,
                                    time_save_seconds=time_save_seconds)

    # ------------------------------------------------------------------ not MetaTrader5 API
    def follow_server_offset(self, source: Callable[[], timedelta]) -> None:
        """Show book times in server time with the adapter's offset: pass
        ``broker.server_utc_offset`` so the adapter's conversions undo exactly what this adds."""
        with self._lock:
            self._offset_getter = source

    @property
    def book_path(self) -> Path | None:
        return self._server.book_path

    @property
    def faults(self) -> Any:
        """The simulated server's fault injector (requotes, rejects, timeouts on book calls)."""
        return self._server.faults

    def __getattr__(self, name: str) -> Any:
        """Constants, structure types and any other function: the real module's."""
        if name.startswith("_") and name not in _PASSED_DUNDERS:
            raise AttributeError(name)
        value = getattr(self._real, name)
        if callable(value) and not isinstance(value, type):
            def call(*args: Any, **kwargs: Any) -> Any:
                with self._lock:
                    self._source = "real"
                    return value(*args, **kwargs)
            call.__name__ = name
            return call
        return value

    # ------------------------------------------------------------------ plumbing
    def _current_offset_ms(self) -> int:
        if self._offset_getter is not None:
            return int(round(self._offset_getter().total_seconds() * 1000))
        if self._fixed_offset_ms is not None:
            return self._fixed_offset_ms
        if not self._offset_warned:
            self._offset_warned = True
            log.warning("paper: no server time offset given; book times are shown as UTC+0 "
                        "(call follow_server_offset(broker.server_utc_offset))")
        return 0

    def _call_real(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._source = "real"
            return getattr(self._real, name)(*args, **kwargs)

    def _call_book(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._source = "book"
            server = self._server
            server._offset_ms = self._current_offset_ms()
            server.serial += 1
            return getattr(server, name)(*args, **kwargs)

    def _bind(self, account: Any) -> None:
        """The book belongs to the account the terminal is logged in to (raises PaperBookError)."""
        hedging = getattr(self._real, "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING", c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)
        if int(getattr(account, "margin_mode", hedging)) != hedging and not self._netting_warned:
            self._netting_warned = True
            log.warning("paper: MT5 account %s is not a hedging account; the paper book still opens one "
                        "position per order, as a hedging account does", account.login)
        self._server.bind(int(account.login), str(account.currency), int(account.leverage), self._clock.now())

    # ------------------------------------------------------------------ connection
    def initialize(self, *args: Any, **kwargs: Any) -> bool:
        with self._lock:
            if not self._call_real("initialize", *args, **kwargs):
                return False
            account = self._real.account_info()
            if account is None:
                return False
            self._bind(account)
            return bool(self._call_book("initialize"))

    def login(self, *args: Any, **kwargs: Any) -> bool:
        with self._lock:
            if not self._call_real("login", *args, **kwargs):
                return False
            account = self._real.account_info()
            if account is None:
                return False
            if self._server.bound:
                self._bind(account)
            return True

    def shutdown(self) -> Any:
        with self._lock:
            try:
                return self._call_real("shutdown")
            finally:
                if self._server.bound:
                    self._server.shutdown()

    def last_error(self) -> tuple[int, str]:
        with self._lock:
            return self._real.last_error() if self._source == "real" else self._server.last_error()

    def version(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("version", *args, **kwargs)

    def terminal_info(self, *args: Any, **kwargs: Any) -> Any:
        """The real terminal's, with ``trade_allowed`` the paper book's: no order can leave, so
        the AutoTrading button does not block paper trades (the fault injector still can)."""
        with self._lock:
            info = self._call_real("terminal_info", *args, **kwargs)
            if info is None:
                return None
            fields = {name: getattr(info, name) for name in TerminalInfo._fields}
            fields["trade_allowed"] = not self._server.faults.autotrading_off
            return TerminalInfo(**fields)

    def account_info(self) -> Any:
        """The paper book's money under the real account's identity (login, name, server,
        company, currency, leverage, trade mode)."""
        with self._lock:
            real = self._call_real("account_info")
            if real is None:
                return None
            if self._server.bound:
                self._bind(real)
            paper = self._call_book("account_info")
            if paper is None:
                return None
            return paper._replace(
                login=int(real.login), trade_mode=int(real.trade_mode), leverage=int(real.leverage),
                limit_orders=int(getattr(real, "limit_orders", paper.limit_orders)),
                currency_digits=int(getattr(real, "currency_digits", paper.currency_digits)),
                name=str(real.name), server=str(real.server), currency=str(real.currency),
                company=str(real.company))

    # ------------------------------------------------------------------ market data (real)
    def symbols_total(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("symbols_total", *args, **kwargs)

    def symbols_get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("symbols_get", *args, **kwargs)

    def symbol_info(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("symbol_info", *args, **kwargs)

    def symbol_info_tick(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("symbol_info_tick", *args, **kwargs)

    def symbol_select(self, symbol: Any, enable: bool = True) -> bool:
        """The real terminal's, except that a symbol with paper positions stays selected (its
        quotes value and close them), as MT5 keeps symbols with positions."""
        with self._lock:
            if not enable and isinstance(symbol, str) and self._server.has_positions_on(symbol):
                self._source = "book"
                self._server._last_error = _CALL_FAILED
                return False
            return self._call_real("symbol_select", symbol, enable)

    def copy_rates_from(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("copy_rates_from", *args, **kwargs)

    def copy_rates_from_pos(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("copy_rates_from_pos", *args, **kwargs)

    def copy_rates_range(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("copy_rates_range", *args, **kwargs)

    def copy_ticks_from(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("copy_ticks_from", *args, **kwargs)

    def copy_ticks_range(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("copy_ticks_range", *args, **kwargs)

    def order_calc_margin(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("order_calc_margin", *args, **kwargs)

    def order_calc_profit(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_real("order_calc_profit", *args, **kwargs)

    # ------------------------------------------------------------------ trading (paper book)
    def positions_total(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("positions_total", *args, **kwargs)

    def positions_get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("positions_get", *args, **kwargs)

    def orders_total(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("orders_total", *args, **kwargs)

    def orders_get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("orders_get", *args, **kwargs)

    def history_orders_total(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("history_orders_total", *args, **kwargs)

    def history_orders_get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("history_orders_get", *args, **kwargs)

    def history_deals_total(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("history_deals_total", *args, **kwargs)

    def history_deals_get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("history_deals_get", *args, **kwargs)

    def order_check(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("order_check", *args, **kwargs)

    def order_send(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_book("order_send", *args, **kwargs)
