"""The backtest driver: the live monitors, executor and risk manager on simulated time.

For each segment (``backtest/data.py``) it builds the same stack ``bot.py`` builds in paper/sim
mode: the simulated terminal (book in memory) behind the real MT5 adapter, the trade registry,
risk manager and journal (writing to the run folder), the executor, the bar feed, and the three
strategy monitors with their real constructors. Then it advances a ``BacktestClock`` through
the schedule and calls each monitor's ``step(now)`` at its cadence:

- micro-scalp and order flow at every bar close of any symbol (every M1 bar; every 5 s of
  recorded ticks): ``cadence="bar"``, the default. Live they step every 5 s; between two bar
  closes the closed bars they read do not change, only the quote and the ticks, and the
  simulated terminal fills stop losses and take profits at the tick that reaches them whenever it
  is next asked. Differences from live: trailing stops and time exits act once per bar instead
  of every 5 s, and order flow judges the freshness of its ticks at the bar close only: over
  bar recordings the simulator's last tick of a bar is at 45 s and an open equal to the previous
  close makes no tick, so the newest tick can be 15 s old at every step, and a
  ``max_flow_age_seconds`` below that reads the flow as stale throughout (the report says so).
  ``cadence="live"`` steps both at their ``interval_seconds`` over a grid of that many seconds
  inside every bar: the live cadence exactly, about ten times slower;
- range-scalp at the first step of every 5-minute bucket: its entries evaluate each new closed
  M5 bar and its exit pass runs every ``exit_interval_seconds`` (300 s), as live.

As in ``bot.py`` the executor trades through the broker circuit breaker and asks the trading
guard (``execution/trading_state.py``: daily loss, drawdown, loss streak, order rate...) before
every entry; the guard is stepped after the monitors at every step (live: every 5 s).
``guard=False`` (``--no-guard``) leaves it out. The reconciler is not run: without injected
faults the simulated book and the registry cannot drift apart, and it would compare them every
10 s for nothing.

In one instant the order is micro-scalp, order flow, range-scalp, trading guard. Exceptions in a step are
logged and counted as the live loop does; ``monitor_error_budget`` consecutive failures of one
monitor abort the run (``BacktestError``), since its results would mean nothing.

Bars: the monitors read through ``BarFeed`` as live. ``bars="direct"`` (the default) lets the
feed fetch on demand (its cache is stale at each new step, so the first reader of a symbol and
timeframe fetches and later readers in the same instant hit the cache); ``bars="refresh"``
refreshes every wanted pair before each step, as the feed thread does live. Direct is faster:
it never fetches M5/H1 bars at steps where range-scalp does not run (benchmarks/backtest_bench.py).

The news calendar (config/news.json) is read once, at the first step: a replay runs on the
calendar it started with (live, the file is hot-reloaded). The equity curve gets one point per
step; the terminal is asked for the account only when it may have changed (``_sample``).

At the end of a segment every open position is closed through ``executor.close`` (reason
``backtest_end``) inside the last replayed bar. A position whose market is closed then stays
open; it is reported with its floating P&L and counted in the final equity.
"""
from __future__ import annotations

import array
import gc
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from backtest.ids import counter_client_ids
from backtest.clock import BacktestClock
from backtest.data import Segment
from backtest.market_view import RecordedHistory
from backtest.replay_state import ReplayJournal, ReplayStateStore
from backtest.why_totals import WhyNoTradeTotals
from config.loader import ConfigSnapshot
from config.secrets import Secrets
from config.watcher import ConfigHolder
from execution.breaker import BreakerBroker, CircuitBreaker
from execution.broker import AccountInfo
from execution.executor import Executor
from execution.mt5 import Mt5Broker
from execution.risk import RiskManager
from execution.simterminal.terminal import SimTerminal
from execution.trading_state import DOCUMENT as TRADING_STATE_DOCUMENT
from execution.trading_state import STREAK_TRADES, TradingGuard
from feeds.bar_feed import BarFeed
from feeds.tick_proxy import TickProxyFeed
from monitors.micro_scalp import MicroScalpMonitor
from monitors.micro_scalp_state import MicroScalpState
from monitors.news_file import NewsFile
from monitors.order_flow import OrderFlowMonitor
from monitors.range_scalp import RangeScalpMonitor
from state.journal import Journal
from state.registry import Trade, TradeRegistry
from state.store import StateStore

log = logging.getLogger(__name__)

BAR_DEPTH = 1500  # as bot.py: a full session of M1 bars for the micro-scalp VWAP
RANGE_BUCKET_S = 300
END_REASON = "backtest_end: end of the replayed data"
WANTED_BARS = {"micro_scalp": ("M1",), "range_scalp": ("M5", "H1"), "order_flow": ("M1",)}
ORDER = ("micro_scalp", "order_flow", "range_scalp")


class BacktestError(RuntimeError):
    """The run cannot go on (a monitor fails at every step, the terminal cannot start...)."""


@dataclass
class MonitorTiming:
    steps: int = 0
    seconds: float = 0.0
    errors: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None


@dataclass
class SegmentResult:
    """What one segment produced; trades are closed ``Trade`` records with their deals."""

    number: int
    symbols: list[str]
    start: datetime
    end: datetime
    bars: dict[str, int]
    steps: int
    wall_seconds: float
    starting_balance: float
    final_balance: float
    final_equity: float
    trades: list[Trade]
    fees: dict[int, float]  # ticket -> commissions and fees paid (positive)
    volumes: dict[int, float]  # ticket -> opening volume
    open_at_end: list[dict[str, Any]]
    equity_time: array.array  # UTC epoch seconds
    equity: array.array
    balance: array.array
    timings: dict[str, MonitorTiming] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)
    why_no_trade: dict[str, Any] = field(default_factory=dict)  # strategy -> symbol -> totals


class SegmentRunner:
    """Builds the live stack for one segment and replays it (see the module docstring)."""

    def __init__(self, segment: Segment, snapshot: ConfigSnapshot, config_dir: Path, run_dir: Path,
                 specs_path: Path, strategies: list[str], starting_balance: float, *, bars: str = "direct",
                 progress: Callable[[int], None] | None = None, durable_state: bool = False,
                 cadence: str = "bar", guard: bool = True,
                 id_factory: Callable[[str, datetime], str] | None = None) -> None:
        """``cadence``: "bar" steps micro-scalp and order flow at every step of the segment (its bar
        closes); "live" expects a finer segment grid (``plan_segments(step_seconds=...)``) and steps
        each of them when its ``interval_seconds`` has passed, as the live loop does.
        ``durable_state`` uses the live ``StateStore`` and ``Journal`` (fsync per write) instead of
        the replay variants; the benchmark uses it to measure what that durability costs.
        ``guard`` False leaves out the trading guard (daily loss, drawdown and loss-streak locks):
        the strategies unprotected, for comparison."""
        if cadence not in ("bar", "live"):
            raise ValueError(f"cadence must be 'bar' or 'live', got {cadence!r}")
        self.cadence = cadence
        if bars not in ("direct", "refresh"):
            raise ValueError(f"bars must be 'direct' or 'refresh', got {bars!r}")
        self.segment = segment
        self.snapshot = snapshot
        self.strategies = [s for s in ORDER if s in strategies]
        self.bar_mode = bars
        self.progress = progress or (lambda steps: None)
        self.starting_balance = float(starting_balance)
        self.closed: list[Trade] = []
        self.events: dict[str, int] = {}
        run_dir = Path(run_dir)
        start = datetime.fromtimestamp(segment.anchor_s, tz=timezone.utc)
        self.clock = BacktestClock(start)
        sim = snapshot.bot.sim
        self.terminal = SimTerminal(
            self.clock, None, symbols_spec_path=specs_path, data_dir=specs_path.parent, symbols=segment.symbols,
            server_utc_offset_hours=sim.server_utc_offset_hours, starting_balance=self.starting_balance,
            leverage=sim.leverage, currency=sim.currency, login=sim.login, server=sim.server,
            slippage_points=sim.slippage_points)
        self.holder = ConfigHolder(snapshot)
        self.broker = Mt5Broker(self.terminal, Secrets(), snapshot.bot, self.clock)
        self.broker.connect()
        store_class, journal_class = (StateStore, Journal) if durable_state else (ReplayStateStore, ReplayJournal)
        self.store = store_class(run_dir / "state" / f"segment-{segment.number}")
        self.registry = TradeRegistry(self.store, on_change=self._on_registry_change)
        self.risk = RiskManager(lambda: self.holder.current.bot.risk, self.registry, self.store)
        self.journal = journal_class(run_dir / "journal.jsonl", now=self.clock.now)
        first = {f.symbol: f.first for f in segment.feeds}
        self.market = RecordedHistory(self.broker, first)
        self.bar_feed = BarFeed(self.market, self.clock, self._wanted_bars, depth=BAR_DEPTH,
                                history_start=self.market.history_start)
        # As bot.py: the executor trades through the circuit breaker and asks the trading guard.
        reliability = lambda: self.holder.current.bot.reliability  # noqa: E731
        self.breaker = CircuitBreaker("broker", self.clock, reliability, events=self._on_event, journal=self.journal)
        trade_broker = BreakerBroker(self.broker, self.breaker)
        self._broker_account = trade_broker.account
        self.guard = TradingGuard(self.store, reliability, self.clock, journal=self.journal, events=self._on_event,
                                  account=self._guard_account,
                                  closed_trades=lambda: self.registry.recent_closed(STREAK_TRADES),
                                  bar_times=self.bar_feed.last_bar_times,
                                  breaker=self.breaker) if guard else None
        self.executor = Executor(trade_broker, self.registry, self.risk, self.journal, lambda: self.holder.current,
                                 self.clock, events=self._on_event, sleep=self.clock.advance,
                                 trading_state=self.guard, id_factory=id_factory or counter_client_ids())
        news = NewsFile(Path(config_dir) / "news.json", watch=False)  # the calendar the run starts with
        self.why = {name: WhyNoTradeTotals(name, getattr(snapshot.strategy(name), "summary_minutes", 15.0))
                    for name in self.strategies}
        self.monitors: dict[str, Any] = {}
        if "micro_scalp" in self.strategies:
            micro_state = MicroScalpState(snapshot.micro_scalp.summary_minutes)
            micro_state.why = self.why["micro_scalp"]
            self.monitors["micro_scalp"] = MicroScalpMonitor(
                self.holder, self.bar_feed, self.market, self.executor, self.registry, news=news,
                notify=self._on_event, state=micro_state, store=self.store)
        if "order_flow" in self.strategies:
            of = snapshot.order_flow
            proxy = TickProxyFeed.from_config(of.proxy, self.market, self.clock) if of.proxy.enabled else None
            self.monitors["order_flow"] = OrderFlowMonitor(
                self.holder, self.bar_feed, self.market, self.executor, self.registry, self.clock, flow=None,
                proxy=proxy, notify=self._on_event, why_not=self.why["order_flow"])
        if "range_scalp" in self.strategies:
            self.monitors["range_scalp"] = RangeScalpMonitor(
                self.holder, self.bar_feed, self.market, self.executor, self.registry, self.clock,
                journal=self.journal, store=self.store, notify=self._on_event, news=news,
                why_not=self.why["range_scalp"])
        self.timings = {name: MonitorTiming() for name in self.monitors}
        if self.guard is not None:
            self.timings["trading_guard"] = MonitorTiming()
        self.error_budget = snapshot.bot.runtime.monitor_error_budget
        # executor.orders_sent when an equity sample last found the terminal flat (None: not flat)
        self._flat_at_send_count: int | None = None
        self._flat_account: tuple[int, AccountInfo] | None = None  # (orders_sent, account) read while flat

    # ------------------------------------------------------------------ wiring callbacks
    def _wanted_bars(self) -> list[tuple[str, str]]:
        snapshot = self.holder.current
        wanted: list[tuple[str, str]] = []
        for name in self.strategies:
            for symbol in snapshot.strategy(name).active_symbols():
                wanted += [(symbol, tf) for tf in WANTED_BARS[name] if (symbol, tf) not in wanted]
        return wanted

    def _on_registry_change(self, event: str, trade: Trade) -> None:
        if event == "closed":
            self.closed.append(trade)

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1

    # ------------------------------------------------------------------ the replay
    def run(self) -> SegmentResult:
        # The recorded data, the terminal and the config are built and live for the whole run:
        # freezing them keeps the cyclic garbage collector from scanning them again at every
        # collection (about 15 % of a step otherwise). Unfrozen after, whatever happens. No full
        # collection first (about 90 ms for a few dozen objects): garbage frozen with the rest is
        # only kept until the unfreeze.
        gc.freeze()
        try:
            return self._run()
        finally:
            gc.unfreeze()
            self.journal.close()  # also when a monitor aborts the run: the journal stays readable

    def _run(self) -> SegmentResult:
        segment = self.segment
        steps = segment.steps
        equity_time, equity, balance = array.array("d"), array.array("d"), array.array("d")
        self.clock.set(datetime.fromtimestamp(int(steps[0]), tz=timezone.utc))
        if "range_scalp" in self.monitors:
            self.monitors["range_scalp"].recover(self.clock.now())
        self._sample(equity_time, equity, balance)
        every_step = [(name, self.monitors[name]) for name in ("micro_scalp", "order_flow") if name in self.monitors]
        range_ = self.monitors.get("range_scalp")
        refresh = self.bar_mode == "refresh"
        live = self.cadence == "live"
        last_bucket = None
        last_step: dict[str, float] = {}
        started = time.perf_counter()
        done = 0
        for t in steps.tolist():
            now = self.clock.set_epoch(t)
            if refresh:
                self.bar_feed.step(now)
            for name, monitor in every_step:
                if live:
                    previous = last_step.get(name)
                    if previous is not None and t - previous < monitor.interval_seconds - 1e-6:
                        continue
                    last_step[name] = t
                self._step(name, monitor, now)
            if range_ is not None:
                bucket = t // RANGE_BUCKET_S
                if bucket != last_bucket:
                    last_bucket = bucket
                    self._step("range_scalp", range_, now)
            if self.guard is not None:
                self._step("trading_guard", self.guard, now)
            self._sample(equity_time, equity, balance)
            done += 1
            if done & 63 == 0:
                self.progress(64)
        self.progress(done & 63)
        open_at_end = self._liquidate()
        self._sample(equity_time, equity, balance)
        wall = time.perf_counter() - started
        account = self.terminal.account_info()
        fees, volumes = self._deal_figures()
        self.journal.close()
        if isinstance(self.store, ReplayStateStore):
            self.store.flush()
        return SegmentResult(
            number=segment.number, symbols=segment.symbols,
            start=datetime.fromtimestamp(segment.start_s, tz=timezone.utc),
            end=datetime.fromtimestamp(segment.liquidate_s, tz=timezone.utc), bars=dict(segment.bars),
            steps=len(steps), wall_seconds=wall, starting_balance=self.starting_balance,
            final_balance=float(account.balance), final_equity=float(account.equity), trades=list(self.closed),
            fees=fees, volumes=volumes, open_at_end=open_at_end, equity_time=equity_time, equity=equity,
            balance=balance, timings=self.timings, counters=self._counters(),
            why_no_trade={name: why.totals() for name, why in self.why.items()})

    def _step(self, name: str, monitor: Any, now: datetime) -> None:
        timing = self.timings[name]
        began = time.perf_counter()
        try:
            monitor.step(now)
            timing.consecutive_errors = 0
        except Exception as exc:  # as the live loop: log, count, go on within the error budget
            timing.errors += 1
            timing.consecutive_errors += 1
            timing.last_error = f"{type(exc).__name__}: {exc}"
            log.error("%s step at %s failed (%d in a row): %s", name, now.isoformat(), timing.consecutive_errors,
                      timing.last_error, exc_info=True)
            if timing.consecutive_errors >= self.error_budget:
                raise BacktestError(f"the {name} monitor failed {timing.consecutive_errors} steps in a row "
                                    f"(last at {now:%Y-%m-%d %H:%M} UTC: {timing.last_error}); see the log") from exc
        finally:
            timing.steps += 1
            timing.seconds += time.perf_counter() - began

    def _sample(self, times: array.array, equity: array.array, balance: array.array) -> None:
        """One point of the equity curve. A flat account's equity is its balance, the balance moves
        only with a deal, and a position appears only through an order: once a sample finds the
        terminal flat, its figures hold until the executor sends an order, and the terminal is not
        asked in between (most bars of a day are flat)."""
        sent = self.executor.orders_sent
        if self._flat_at_send_count == sent and equity:
            equity.append(equity[-1])
            balance.append(balance[-1])
        else:
            account = self.terminal.account_info()
            equity.append(float(account.equity))
            balance.append(float(account.balance))
            flat = self.terminal.positions_total() == 0
            self._flat_at_send_count = sent if flat else None
        times.append(self.clock.timestamp())  # (``now().timestamp()``)

    def _guard_account(self) -> AccountInfo:
        """The guard's account reading (through the breaker, as live). While the terminal is flat
        (``_sample``'s test) the account cannot change, so the reading taken while flat is handed
        out again until the executor sends an order. Only when a skipped call would change
        nothing: no fault armed (it succeeds), the breaker settled (a success changes nothing) and
        a flat book (no stop to trigger)."""
        sent = self.executor.orders_sent
        if self._flat_at_send_count != sent or not (self.terminal.faults.idle and self.breaker.settled()):
            return self._broker_account()
        cached = self._flat_account
        if cached is None or cached[0] != sent:
            cached = self._flat_account = (sent, self._broker_account())
        return cached[1]

    def _liquidate(self) -> list[dict[str, Any]]:
        """Close what is still open inside the last replayed bar (see the module docstring)."""
        self.clock.set(datetime.fromtimestamp(self.segment.liquidate_s, tz=timezone.utc))
        self.executor.sync_closed()  # stops and targets hit since the last step
        for trade in sorted(self.registry.open_trades(), key=lambda t: t.ticket):
            outcome = self.executor.close(trade, END_REASON)
            if outcome.status == "failed":
                log.warning("backtest end: ticket %d %s could not be closed (%s); reported as open",
                            trade.ticket, trade.symbol, outcome.reason)
        self.executor.sync_closed()
        left = []
        for trade in self.registry.open_trades():
            position = self.broker.position(trade.ticket)
            left.append({"ticket": trade.ticket, "strategy": trade.strategy, "symbol": trade.symbol,
                         "side": trade.side, "entry": trade.entry, "opened_at": trade.opened_at,
                         "floating_pnl": position.profit if position else None})
        return left

    def _deal_figures(self) -> tuple[dict[int, float], dict[int, float]]:
        """Per position: commissions and fees paid, and the opening volume (from the deals)."""
        fees: dict[int, float] = {}
        volumes: dict[int, float] = {}
        deals = self.terminal.history_deals_get(0, 4_102_444_800) or ()
        for deal in deals:
            if deal.position_id == 0:
                continue  # the initial deposit
            fees[deal.position_id] = round(fees.get(deal.position_id, 0.0) - deal.commission - deal.fee, 2)
            if deal.entry == self.terminal.DEAL_ENTRY_IN:
                volumes[deal.position_id] = float(deal.volume)
        return fees, volumes

    def _counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"executor": dict(self.executor.counters), "events": dict(self.events),
                               "risk_rejections": dict(self.risk.rejections),
                               "history_trimmed_reads": self.market.trimmed,
                               "bar_feed": {"direct_fetches": self.bar_feed.stats.direct_fetches,
                                            "cache_hits": self.bar_feed.stats.cache_hits,
                                            "refreshes": self.bar_feed.stats.refreshes,
                                            "rejected": dict(self.bar_feed.stats.rejected)}}
        if self.guard is not None:
            health = self.guard.health()
            history = self.store.load(TRADING_STATE_DOCUMENT, {}).get("history", [])
            out["trading_guard"] = {"state": health["state"], "reason": health["reason"], "history": history}
        for name, monitor in self.monitors.items():
            counters = getattr(monitor, "counters", None)
            if counters is None and hasattr(monitor, "state"):
                counters = dict(monitor.state.counters)
            out[name] = dict(counters or {})
        return out
