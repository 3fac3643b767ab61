"""Open range trades in a runtime folder through the production objects, before the bot starts;
and act as "the market" on the simulated broker's book while the bot is down.

The files written are exactly the ones ``bot.py`` writes and reads: ``runtime/sim_book.json``
(the simulated terminal ``execution.simterminal.factory.build_from_config`` builds from the
same ``sim`` config), ``runtime/state/trades_range_scalp.json`` (TradeRegistry through the
Executor), ``runtime/state/range_scalp.json`` (RangeScalpMonitor.register_fill) and
``runtime/journal.jsonl``. Only the clock is a FakeClock, set to the simulated market time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from config.loader import load_config
from config.secrets import Secrets
from config.watcher import ConfigHolder
from engines.range_detection import RangeStructure, critical_gaps
from engines.types import TradeIdea
from execution.executor import Executor
from execution.mt5 import Mt5Broker
from execution.risk import RiskManager
from execution.simterminal.factory import build_from_config
from execution.simterminal.terminal import SimTerminal
from feeds.bar_feed import BarFeed
from monitors.clock import FakeClock
from monitors.range_scalp import RangeScalpMonitor
from state.journal import Journal, read_journal
from state.registry import TradeRegistry
from state.store import StateStore

PROJECT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RangeSeed:
    """A constructed range trade: stops ``sl_distance``/``tp_distance`` from the fill, inside
    the range [low, high] (wide, so the exit rules hold it for the test's minutes)."""

    symbol: str
    side: str
    sl_distance: float
    tp_distance: float
    low: float
    high: float
    atr: float
    setup: str = "bb_fade"


@dataclass(frozen=True)
class Seeded:
    ticket: int
    client_id: str
    symbol: str
    side: str
    entry: float
    sl: float
    tp: float


class ProcessKilled(BaseException):
    """Stands for SIGKILL at one instant of the trade path: nothing after it runs."""


class _RegistryKilledOnAdd(TradeRegistry):
    def add(self, trade: Any) -> None:
        raise ProcessKilled(f"killed before ticket {trade.ticket} reached the registry")


@dataclass
class Stack:
    """The bot's trade path on a runtime folder, on a FakeClock at a market time."""

    clock: FakeClock
    terminal: SimTerminal
    broker: Mt5Broker
    registry: TradeRegistry
    journal: Journal
    executor: Executor
    holder: ConfigHolder
    store: StateStore

    def close(self) -> None:
        self.journal.close()
        self.broker.shutdown()


def open_stack(config_dir: Path, runtime_dir: Path, at: datetime | None = None,
               registry_class: type[TradeRegistry] = TradeRegistry) -> Stack:
    """Broker (MT5 adapter over the SimTerminal on ``runtime/sim_book.json``), registry, risk,
    journal and executor, as bot.py builds them; the clock at ``at``, else at the book's market
    time (where the market stands: nothing moves until the clock does)."""
    runtime_dir = Path(runtime_dir)
    if at is None:
        at = SimTerminal.book_market_time(runtime_dir / "sim_book.json")
        assert at is not None, "no book to resume"
    snapshot = load_config(config_dir)
    clock = FakeClock(at)
    terminal = build_from_config(snapshot.bot.sim, clock, PROJECT, runtime_dir, list(snapshot.bot.symbols))
    broker = Mt5Broker(terminal, Secrets(), snapshot.bot, clock, sleep=clock.advance)
    broker.connect()
    holder = ConfigHolder(snapshot)
    store = StateStore(runtime_dir / "state")
    registry = registry_class(store)
    risk = RiskManager(lambda: holder.current.bot.risk, registry, store)
    journal = Journal(runtime_dir / "journal.jsonl", now=clock.now)
    executor = Executor(broker, registry, risk, journal, lambda: holder.current, clock, sleep=clock.advance)
    return Stack(clock, terminal, broker, registry, journal, executor, holder, store)


def _idea(stack: Stack, symbol: str, side: str, strategy: str, sl_distance: float, tp_distance: float,
          reason: str, meta: dict[str, Any]) -> TradeIdea:
    quote = stack.broker.quote(symbol)
    entry = quote.ask if side == "buy" else quote.bid
    sign = 1 if side == "buy" else -1
    return TradeIdea(symbol, side, entry, entry - sign * sl_distance, entry + sign * tp_distance, strategy,
                     (reason,), meta)


def seed_range_trades(config_dir: Path, runtime_dir: Path, at: datetime, seeds: list[RangeSeed]) -> list[Seeded]:
    """Fill each seed through the Executor (risk, journal intent, market order, registry) and
    register it with the range monitor's book (``RangeScalpMonitor.register_fill``), at market
    time ``at`` (one second apart)."""
    stack = open_stack(config_dir, runtime_dir, at)
    clock = stack.clock
    feed = BarFeed(stack.broker, clock, lambda: [], depth=10)
    monitor = RangeScalpMonitor(stack.holder, feed, stack.broker, stack.executor, stack.registry, clock,
                                journal=stack.journal, store=stack.store)
    out = []
    try:
        assert monitor.recover(clock.now()) is not None
        for seed in seeds:
            range_ = RangeStructure("session", seed.high, seed.low, (seed.high + seed.low) / 2, seed.atr,
                                    critical_gaps(seed.high, seed.low, 0.15), 2, 2, True,
                                    detected_at=clock.now().timestamp())
            idea = _idea(stack, seed.symbol, seed.side, "range_scalp", seed.sl_distance, seed.tp_distance,
                         f"seeded {seed.setup} trade", {"range": range_.to_dict(), "setup": seed.setup,
                                                         "score": 60.0, "rr": seed.tp_distance / seed.sl_distance})
            outcome = stack.executor.open(idea)
            assert outcome.opened and outcome.trade is not None, outcome.reason
            trade = outcome.trade
            monitor.register_fill(idea, trade, clock.now())
            out.append(Seeded(trade.ticket, trade.client_id, trade.symbol, trade.side, trade.entry, trade.sl, trade.tp))
            clock.advance(1)
    finally:
        stack.close()
    return out


@dataclass(frozen=True)
class TradeSeed:
    """A trade of any strategy opened through the Executor with stops ``sl_distance`` and
    ``tp_distance`` from the fill (``meta`` is the idea's, persisted with the trade)."""

    symbol: str
    side: str
    strategy: str
    sl_distance: float
    tp_distance: float
    meta: dict[str, Any] = field(default_factory=dict)


def seed_trades(config_dir: Path, runtime_dir: Path, at: datetime | None, seeds: list[TradeSeed]) -> list[Seeded]:
    """Fill each seed through the Executor (risk, journal intent, market order, registry) at
    market time ``at`` (else where the book stands), one second apart. Range trades should go
    through ``seed_range_trades`` instead (it also registers them with the range monitor)."""
    stack = open_stack(config_dir, runtime_dir, at)
    out = []
    try:
        for seed in seeds:
            idea = _idea(stack, seed.symbol, seed.side, seed.strategy, seed.sl_distance, seed.tp_distance,
                         f"seeded {seed.strategy} trade", dict(seed.meta))
            outcome = stack.executor.open(idea)
            assert outcome.opened and outcome.trade is not None, outcome.reason
            trade = outcome.trade
            out.append(Seeded(trade.ticket, trade.client_id, trade.symbol, trade.side, trade.entry, trade.sl, trade.tp))
            stack.clock.advance(1)
    finally:
        stack.close()
    return out


def fill_then_kill(config_dir: Path, runtime_dir: Path, at: datetime, symbol: str, side: str, strategy: str,
                   sl_distance: float, tp_distance: float) -> str:
    """``Executor.open`` up to the instant after the broker filled the order and before the
    registry saved the trade, then "SIGKILL": the intent is journaled, the broker holds the
    position, the registry never heard of it. Returns the client id."""
    stack = open_stack(config_dir, runtime_dir, at, registry_class=_RegistryKilledOnAdd)
    try:
        idea = _idea(stack, symbol, side, strategy, sl_distance, tp_distance, "filled, then the process was killed", {})
        try:
            stack.executor.open(idea)
        except ProcessKilled:
            pass
        else:
            raise AssertionError("the executor never reached the registry")
        intents = [e for e in read_journal(stack.journal.path) if e["event"] == "intent"]
        return str(intents[-1]["client_id"])
    finally:
        stack.close()


def settle_in_process(config_dir: Path, runtime_dir: Path) -> list[Any]:
    """Record, through the production ``Executor.sync_closed``, the broker-side closes the
    registry has not seen yet, without moving the market. Returns the trades it recorded."""
    stack = open_stack(config_dir, runtime_dir)
    try:
        return stack.executor.sync_closed()
    finally:
        stack.close()


class DownTimeMarket:
    """The simulated broker while the bot is down: a SimTerminal on the bot's book, on a
    FakeClock at the market time the book reached. It is driven through the MetaTrader5 API
    (``order_send``, ``positions_get``): what a trader (or the market) does to the account."""

    def __init__(self, config_dir: Path, runtime_dir: Path) -> None:
        stored = SimTerminal.book_market_time(Path(runtime_dir) / "sim_book.json")
        assert stored is not None, "no book to resume"
        self.clock = FakeClock(stored)
        snapshot = load_config(config_dir)
        self.terminal = build_from_config(snapshot.bot.sim, self.clock, PROJECT, runtime_dir,
                                          list(snapshot.bot.symbols))
        assert self.terminal.initialize(login=snapshot.bot.sim.login, server=snapshot.bot.sim.server), \
            self.terminal.last_error()

    def position(self, ticket: int) -> Any:
        found = self.terminal.positions_get(ticket=ticket)
        return found[0] if found else None

    def tighten_stop(self, ticket: int, min_gap: float) -> float:
        """Move the position's stop loss next to the price (``min_gap`` behind the closing
        price, on the tick grid) with TRADE_ACTION_SLTP; returns the new stop."""
        t = self.terminal
        position = self.position(ticket)
        assert position is not None, f"position {ticket} is not open"
        info = t.symbol_info(position.symbol)
        tick = t.symbol_info_tick(position.symbol)
        if position.type == t.POSITION_TYPE_BUY:
            sl = round(tick.bid - min_gap, info.digits)
        else:
            sl = round(tick.ask + min_gap, info.digits)
        result = t.order_send({"action": t.TRADE_ACTION_SLTP, "position": ticket, "symbol": position.symbol,
                               "sl": sl, "tp": position.tp})
        assert result is not None and result.retcode == t.TRADE_RETCODE_DONE, (result, t.last_error())
        return sl

    def run_until_closed(self, ticket: int, step_seconds: float = 30.0, limit: timedelta = timedelta(hours=3)) -> datetime:
        """Let the market run until the broker closed ``ticket`` (its stop or target was hit);
        returns the market time it stands at."""
        deadline = self.clock.now() + limit
        while self.position(ticket) is not None:
            assert self.clock.now() < deadline, f"position {ticket} still open after {limit}"
            self.clock.advance(step_seconds)
        return self.clock.now()

    def close(self) -> None:
        self.terminal.shutdown()
