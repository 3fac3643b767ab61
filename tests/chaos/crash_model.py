"""An in-process crash model of the bot's trade path: hundreds of crash points per second.

A "life" is what one bot process does between two crashes: the production objects are built
from the runtime folder's files exactly as ``bot.py`` builds them (simulated terminal on its
book file, MT5 adapter, circuit breaker, trading guard, registry, risk, journal, executor,
reconciler), the start-up reconciliation runs, then a seeded random trader drives the trade
path (entries, exits, partial closes, stop moves, reconciliations, settlements, a human at the
terminal) while a ``FaultSchedule`` arms terminal faults and a ``FakeClock`` moves the market.

A crash is ``Crash`` (a BaseException, so no ``except Exception`` in the bot can swallow it)
raised at the Nth call of one instrumented SITE of the trade path (``SITES``). From that
instant the process is dead: every later instrumented call raises too, so even ``finally``
blocks cannot write state (as after a SIGKILL). The life's objects are dropped; the next life
is built from the same files (store, journal, sim book), which is a restart.

The terminal (the broker) is another process in reality: its own book writes are never
crashed, and its faults die with the life (a restarted bot meets a healthy terminal).

``check_files(runtime)`` is what must hold after every restart's start-up reconciliation.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from config.loader import ConfigSnapshot
from config.secrets import Secrets
from config.watcher import ConfigHolder
from engines.types import TradeIdea
from execution.breaker import BreakerBroker, CircuitBreaker
from execution.errors import BrokerError
from execution.executor import Executor, magic_for
from execution.mt5 import Mt5Broker, Mt5Settings
from execution.reconciler import Reconciler
from execution.risk import RiskManager
from execution.simterminal.book import load_book
from execution.simterminal.factory import build_from_config
from execution.trading_state import TradingGuard
from monitors.clock import FakeClock
from state.audit import audit_journal
from state.journal import Journal
from state.registry import STRATEGIES, TradeRegistry
from state.store import StateStore
from tests.chaos.faults import FaultSchedule, count_fired
from tests.recovery import botproc as bp

PROJECT = Path(__file__).resolve().parents[2]

SITES = (
    "journal_append",        # Journal.append, before the line is written
    "before_send",           # Mt5Broker.market_order entered (intent journaled, nothing sent)
    "after_send",            # Mt5Broker.market_order returned (filled, reply not processed)
    "client_id_lookup",      # Mt5Broker.find_by_client_id entered (an unclear send being resolved)
    "after_confirm",         # RiskManager.confirm entered with the trade (registry not saved)
    "registry_add",          # TradeRegistry.add (executor, reconciler adoption, history)
    "registry_update",       # TradeRegistry.update (stops, pending modify/exit, volume)
    "registry_close",        # TradeRegistry.close (a close being recorded)
    "state_save",            # StateStore.save entered (any state document)
    "mid_state_write",       # between the two renames of an atomic state write (old file now .bak)
    "before_close_send",     # Mt5Broker.close_position entered
    "after_close_send",      # Mt5Broker.close_position returned (closed, not recorded)
    "before_modify_send",    # Mt5Broker.modify_sltp entered (pending_modify persisted)
    "after_modify_send",     # Mt5Broker.modify_sltp returned (stops moved, registry not updated)
)

# Stop distances per symbol (price units): from about 1 to 5 ATR of M1.
STOP_RANGE = {"XAUUSD": (1.5, 8.0), "EURUSD": (0.0004, 0.002), "BTCUSD": (80.0, 400.0)}

# bot.json changes for chaos: loss-based halts off (random trades lose money; the point is
# the trade path, not the guard); trade caps high enough for hundreds of lives.
CHAOS_BOT_CONFIG = {
    "risk": {"max_trades_per_hour": 1000, "max_trades_per_day": 10000, "max_open_total": 8,
             "max_open_per_symbol": 4, "max_open_per_strategy": 4},
    "reliability": {"daily_loss_limit_percent": None, "max_drawdown_percent": None, "loss_streak_count": None},
}


class Crash(BaseException):
    """The process died at an instrumented site (SIGKILL in-process: nothing after it runs)."""

    def __init__(self, site: str) -> None:
        super().__init__(site)
        self.site = site


class CrashPlan:
    """One armed crash: the ``nth`` call of ``site``. After it fires, every instrumented call
    raises (the process is dead)."""

    def __init__(self) -> None:
        self.site: str | None = None
        self.nth = 0
        self.calls = 0
        self.dead = False
        self.fired: str | None = None

    def arm(self, site: str, nth: int) -> None:
        if site not in SITES:
            raise ValueError(f"unknown crash site {site!r}")
        self.site, self.nth, self.calls, self.dead, self.fired = site, nth, 0, False, None

    def disarm(self) -> None:
        self.site, self.dead = None, False

    def hit(self, site: str) -> None:
        if self.dead:
            raise Crash(self.fired or site)
        if site == self.site:
            self.calls += 1
            if self.calls == self.nth:
                self.dead, self.fired = True, site
                raise Crash(site)


def install_crash_sites(plan: CrashPlan, patch: Callable[[Any, str, Any], None]) -> None:
    """Instrument the production classes: ``patch(owner, name, value)`` is pytest's
    ``monkeypatch.setattr`` (undone after the test)."""
    import state.store as store_module

    def before(owner: Any, name: str, site: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            plan.hit(site)
            return original(*args, **kwargs)
        patch(owner, name, wrapper)

    def around(owner: Any, name: str, site_before: str, site_after: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            plan.hit(site_before)
            result = original(*args, **kwargs)
            plan.hit(site_after)
            return result
        patch(owner, name, wrapper)

    before(Journal, "append", "journal_append")
    around(Mt5Broker, "market_order", "before_send", "after_send")
    around(Mt5Broker, "close_position", "before_close_send", "after_close_send")
    around(Mt5Broker, "modify_sltp", "before_modify_send", "after_modify_send")
    before(Mt5Broker, "find_by_client_id", "client_id_lookup")
    before(RiskManager, "confirm", "after_confirm")
    before(TradeRegistry, "add", "registry_add")
    before(TradeRegistry, "update", "registry_update")
    before(TradeRegistry, "close", "registry_close")
    before(StateStore, "save", "state_save")

    original_replace = store_module._replace_with_retry

    def replace_with_retry(src: Path, dst: Path, *args: Any, **kwargs: Any) -> None:
        if not Path(dst).name.startswith("sim_book"):  # the broker's own file is not ours to crash
            plan.hit("mid_state_write")
        original_replace(src, dst, *args, **kwargs)
    patch(store_module, "_replace_with_retry", replace_with_retry)


# ------------------------------------------------------------------------------------ a life
@dataclass
class World:
    """The objects of one bot process over the runtime folder (as bot.py wires them)."""

    clock: FakeClock
    terminal: Any
    broker: Mt5Broker
    trade_broker: BreakerBroker
    registry: TradeRegistry
    risk: RiskManager
    journal: Journal
    breaker: CircuitBreaker
    guard: TradingGuard
    executor: Executor
    reconciler: Reconciler
    holder: ConfigHolder
    events: list = field(default_factory=list)

    def drop(self) -> None:
        """The process is gone: the OS closes its journal file (every line was flushed)."""
        self.journal.close()


def build_world(snapshot: ConfigSnapshot, runtime: Path, clock: FakeClock) -> World:
    runtime = Path(runtime)
    terminal = build_from_config(snapshot.bot.sim, clock, PROJECT, runtime, list(snapshot.bot.symbols))
    broker = Mt5Broker(terminal, Secrets(), snapshot.bot, clock, sleep=clock.advance,
                       settings=Mt5Settings(recheck_delay_s=0.5))
    broker.connect()
    holder = ConfigHolder(snapshot)
    store = StateStore(runtime / "state")
    registry = TradeRegistry(store)
    risk = RiskManager(lambda: holder.current.bot.risk, registry, store)
    journal = Journal(runtime / "journal.jsonl", now=clock.now)
    events: list = []
    sink = lambda kind, data: events.append(kind)  # noqa: E731
    reliability = lambda: holder.current.bot.reliability  # noqa: E731
    breaker = CircuitBreaker("broker", clock, reliability, events=sink, journal=journal)
    trade_broker = BreakerBroker(broker, breaker)
    guard = TradingGuard(store, reliability, clock, journal=journal, events=sink, account=trade_broker.account,
                         closed_trades=registry.closed_trades, bar_times=lambda: {}, breaker=breaker)
    executor = Executor(trade_broker, registry, risk, journal, lambda: holder.current, clock, events=sink,
                        sleep=clock.advance, trading_state=guard)
    reconciler = Reconciler(trade_broker, registry, journal, lambda: holder.current, clock, executor=executor,
                            events=sink, trading_state=guard)
    breaker.subscribe(reconciler.on_breaker_change)
    executor.on_fill = reconciler.request
    return World(clock, terminal, broker, trade_broker, registry, risk, journal, breaker, guard, executor,
                 reconciler, holder, events)


class Trader:
    """A seeded random trader on the real trade path, plus a human at the terminal."""

    ACTIONS = (("open", 32), ("close", 12), ("partial", 4), ("modify", 14), ("reconcile", 14), ("guard", 5),
               ("settle", 5), ("pending_exits", 4), ("manual_close", 4), ("manual_sltp", 4), ("wait", 2))

    def __init__(self, rng: random.Random, schedule: FaultSchedule, partial_closes: bool = True) -> None:
        self.rng = rng
        self.schedule = schedule
        self.actions: Counter = Counter()
        actions = [(a, w) for a, w in self.ACTIONS if partial_closes or a != "partial"]
        self._names = [a for a, _ in actions]
        self._weights = [w for _, w in actions]

    def step(self, world: World) -> str:
        rng = self.rng
        world.clock.advance(rng.uniform(1.0, 40.0))
        self.schedule.maybe_inject(world.terminal)
        self.schedule.maybe_clear_autotrading(world.terminal)
        action = rng.choices(self._names, self._weights)[0]
        self.actions[action] += 1
        try:
            getattr(self, f"_{action}")(world)
        except BrokerError:
            pass  # a query of the trader's own failed under a fault: the bot's loops retry next step
        return action

    def _open(self, world: World) -> None:
        rng = self.rng
        symbol = rng.choice(tuple(STOP_RANGE))
        side = rng.choice(("buy", "sell"))
        quote = world.broker.quote(symbol)
        low, high = STOP_RANGE[symbol]
        sl_d, tp_d = rng.uniform(low, high), rng.uniform(low, high)
        entry = quote.ask if side == "buy" else quote.bid
        sign = 1 if side == "buy" else -1
        idea = TradeIdea(symbol, side, entry, entry - sign * sl_d, entry + sign * tp_d, rng.choice(STRATEGIES),
                         ("chaos trader",), {"atr": (low + high) / 6})
        world.executor.open(idea, created_at=world.clock.now())

    def _pick(self, world: World) -> Any:
        trades = world.registry.open_trades()
        return self.rng.choice(trades) if trades else None

    def _close(self, world: World) -> None:
        trade = self._pick(world)
        if trade is not None:
            world.executor.close(trade, "chaos: strategy exit")

    def _partial(self, world: World) -> None:
        trade = self._pick(world)
        if trade is not None and trade.volume >= 0.04:
            world.executor.close(trade, "chaos: partial exit", volume=round(trade.volume / 2, 2))

    def _modify(self, world: World) -> None:
        trade = self._pick(world)
        if trade is None:
            return
        quote = world.broker.quote(trade.symbol)
        price = quote.bid if trade.side == "buy" else quote.ask
        fraction = self.rng.uniform(0.1, 0.6)  # tighten the stop towards the price, never past it
        new_sl = trade.sl + (price - trade.sl) * fraction
        world.executor.modify(trade, world.broker.normalize_price(trade.symbol, new_sl), trade.tp, "chaos: trail")

    def _reconcile(self, world: World) -> None:
        world.reconciler.run("periodic")

    def _guard(self, world: World) -> None:
        world.guard.step()

    def _settle(self, world: World) -> None:
        world.executor.sync_closed()

    def _pending_exits(self, world: World) -> None:
        world.executor.retry_pending_exits()

    def _manual_close(self, world: World) -> None:
        """A human closes one of the bot's positions at the terminal."""
        t = world.terminal
        positions = [p for p in (t.positions_get() or ()) if p.magic in _our_magics(world)]
        if not positions:
            return
        position = self.rng.choice(positions)
        buy = position.type == t.POSITION_TYPE_BUY
        tick = t.symbol_info_tick(position.symbol)
        if tick is None:
            return
        t.order_send({"action": t.TRADE_ACTION_DEAL, "symbol": position.symbol, "volume": position.volume,
                      "type": t.ORDER_TYPE_SELL if buy else t.ORDER_TYPE_BUY, "position": position.ticket,
                      "price": tick.bid if buy else tick.ask, "deviation": 50, "magic": 0, "comment": "manual",
                      "type_filling": t.ORDER_FILLING_IOC, "type_time": t.ORDER_TIME_GTC})

    def _manual_sltp(self, world: World) -> None:
        """A human widens one position's stop at the terminal (the reconciler sets it back)."""
        t = world.terminal
        positions = [p for p in (t.positions_get() or ()) if p.magic in _our_magics(world) and p.sl]
        if not positions:
            return
        position = self.rng.choice(positions)
        sign = -1 if position.type == t.POSITION_TYPE_BUY else 1
        info = t.symbol_info(position.symbol)
        if info is None:
            return
        sl = round(position.sl + sign * abs(position.price_open - position.sl) * 0.5, info.digits)
        t.order_send({"action": t.TRADE_ACTION_SLTP, "position": position.ticket, "symbol": position.symbol,
                      "sl": sl, "tp": position.tp})

    def _wait(self, world: World) -> None:
        world.clock.advance(self.rng.uniform(30.0, 300.0))


def _our_magics(world: World) -> set[int]:
    return {magic_for(world.holder.current, s) for s in STRATEGIES}


# ------------------------------------------------------------------------------------ the checks
@dataclass
class FileCheck:
    """What the files say after a restart's start-up reconciliation."""

    problems: list[str]
    open_positions: int
    registry_open: int


def check_files(runtime: Path) -> FileCheck:
    """Registry files vs the broker's book, duplicates in the journal and the book, lost
    positions (journal audit), state files loading. ``problems`` empty = all held."""
    runtime = Path(runtime)
    problems = [f"state: {p}" for p in bp.load_every_state_file(runtime)]
    book = load_book(runtime / "sim_book.json")
    assert book is not None
    registry = bp.registry_files(runtime)
    magics = bp.OUR_MAGICS
    positions = {p.ticket for p in book.positions.values() if p.magic in magics}
    entry_deals = [d for d in book.deals if d.entry == bp.DEAL_ENTRY_IN and d.magic in magics]
    filled = {d.position_id for d in book.deals if d.entry == bp.DEAL_ENTRY_IN}
    closing = {d.position_id for d in book.deals if d.entry in bp.DEAL_ENTRIES_OUT and d.position_id}
    registry_closed = {int(t["ticket"]) for t in registry.closed}

    lost_open = sorted(positions - set(registry.open))
    if lost_open:
        problems.append(f"positions open at the broker, not in the registry (lost): {lost_open}")
    phantoms = sorted(t for t in registry.open if t not in positions)
    if phantoms:
        problems.append(f"registry open trades not open at the broker (closed, not recorded, or phantoms): {phantoms}")
    never = sorted(t for t in registry.open if t not in filled)
    if never:
        problems.append(f"registry trades never filled at the broker: {never}")
    # every position of ours the broker ever closed is recorded closed by the registry
    ours_ever = {d.position_id for d in entry_deals}
    unrecorded = sorted(t for t in (ours_ever & closing) - positions if t not in registry_closed)
    if unrecorded:
        problems.append(f"positions closed at the broker, not recorded closed in the registry (lost): {unrecorded}")
    fills = Counter(d.comment for d in entry_deals if d.comment)
    twice = sorted(c for c, n in fills.items() if n > 1)
    if twice:
        problems.append(f"client ids filled more than once at the broker (duplicated orders): {twice}")

    closed_records = Counter(int(t["ticket"]) for t in registry.closed)
    twice_closed = sorted(t for t, n in closed_records.items() if n > 1)
    if twice_closed:
        problems.append(f"trades recorded closed twice in the registry: {twice_closed}")
    both = sorted(set(registry.open) & set(closed_records))
    if both:
        problems.append(f"trades both open and closed in the registry: {both}")

    # the journal alone audits the run: no duplicate, no double close, no lost position
    report = audit_journal(runtime / "journal.jsonl", set(registry.open) | positions)
    for name in ("duplicate_orders", "duplicate_opens", "opens_without_intent", "double_closes", "lost"):
        value = getattr(report, name)
        if value:
            problems.append(f"journal audit {name}: {value}")
    if report.missing_fields:
        problems.append(f"journal lines lacking fields: {report.missing_fields[:5]}")
    return FileCheck(problems, len(positions), len(registry.open))


# ------------------------------------------------------------------------------------ the run
@dataclass
class CrashRunResult:
    crashes: Counter = field(default_factory=Counter)   # site -> crashes
    lives: int = 0
    checks: int = 0
    faults_fired: Counter = field(default_factory=Counter)
    faults_survived: Counter = field(default_factory=Counter)
    crashes_survived: Counter = field(default_factory=Counter)
    max_open: int = 0
    opened: int = 0
    failure: str | None = None


def run_crash_model(snapshot: ConfigSnapshot, runtime: Path, start: datetime, rng: random.Random,
                    crash_points: int, steps_per_life: tuple[int, int] = (4, 30),
                    fault_probability: float = 0.3, max_lives: int | None = None,
                    on_check: Callable[[FileCheck], None] | None = None,
                    plan: CrashPlan | None = None, partial_closes: bool = True) -> CrashRunResult:
    """Lives until ``crash_points`` crashes happened. Every restart's start-up reconciliation
    is followed by ``check_files``; the first failing check stops the run (``failure``)."""
    plan = plan or CrashPlan()
    clock = FakeClock(start)
    schedule = FaultSchedule(rng, probability=fault_probability)
    trader = Trader(rng, schedule, partial_closes)
    result = CrashRunResult()
    max_lives = max_lives or crash_points * 4
    pending_faults: Counter = Counter()
    pending_crashes: Counter = Counter()  # crashes since the last clean check (a restart may crash again)
    while sum(result.crashes.values()) < crash_points and result.lives < max_lives:
        result.lives += 1
        world = build_world(snapshot, runtime, clock)
        site, nth = rng.choice(SITES), rng.randint(1, 4)
        armed_early = rng.random() < 0.25  # a crash inside the start-up reconciliation itself
        if armed_early:
            plan.arm(site, nth)
        try:
            startup = world.reconciler.run("startup")
            if not startup.ok:
                raise AssertionError(f"start-up reconciliation not done: {startup.skipped}")
            if not plan.dead:
                check = check_files(runtime)
                result.checks += 1
                result.max_open = max(result.max_open, check.open_positions)
                if on_check is not None:
                    on_check(check)
                if check.problems:
                    result.failure = (f"life {result.lives}, after crashes at {dict(pending_crashes)}: "
                                      + "; ".join(check.problems))
                    return result
                result.faults_survived += pending_faults
                result.crashes_survived += pending_crashes
                pending_faults, pending_crashes = Counter(), Counter()
            if not armed_early:
                plan.arm(site, nth)
            for _ in range(rng.randint(*steps_per_life)):
                trader.step(world)
        except Crash as crash:
            result.crashes[crash.site] += 1
            pending_crashes[crash.site] += 1
        finally:
            plan.disarm()
            fired = count_fired(world.terminal)
            result.faults_fired += fired
            pending_faults += fired
            world.drop()
        clock.advance(rng.uniform(0.0, 120.0))  # the market moves on while the bot is down
    # the last restart, checked like the others
    world = build_world(snapshot, runtime, clock)
    try:
        startup = world.reconciler.run("startup")
        if not startup.ok:
            result.failure = f"final start-up reconciliation not done: {startup.skipped}"
            return result
        check = check_files(runtime)
        result.checks += 1
        if check.problems:
            result.failure = (f"final restart, after crashes at {dict(pending_crashes)}: "
                              + "; ".join(check.problems))
            return result
        result.faults_survived += pending_faults
        result.crashes_survived += pending_crashes
    finally:
        world.drop()
    result.opened = sum(1 for e in bp.journal(runtime, "opened"))
    return result
