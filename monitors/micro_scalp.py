"""The micro-scalp monitor: every 5 s, every configured symbol, gates -> engine -> executor.

One step (``step(now)``, run by monitors/base.MonitorLoop):
1. the news calendar file is re-read if it changed (monitors/news_file.py);
2. exits of open micro-scalp trades: broker-side SL/TP closes are recorded, the trailing stop
   and the time exit are applied (monitors/micro_scalp_exits.py);
3. for every symbol of micro_scalp.json, the gates in this order; the first that fails is
   recorded in WhyNoTrade under its name (one DEBUG line per symbol per step) and ends the
   symbol's check:
     enabled     the strategy and the symbol are switched on
     session     the hour (UTC) is inside ``trading_sessions_utc``
     cooldown    ``cooldown_after_trade_seconds`` since the last entry, and
                 ``cooldown_after_failure_seconds`` since an order that did not open (also
                 recorded when an idea comes from the signal bar already traded: one entry per bar)
     caps        entries in the rolling hour / since 00:00 UTC below ``max_trades_per_hour/day``
     news        no news blackout for the symbol (config/news.json)
     positions   open micro-scalp positions on the symbol below ``max_positions_per_symbol``
     freshness   the bars the engine needs (back to the VWAP anchor hour, at least
                 ``min_bars``), the last closed bar at most ``max_bar_age_seconds`` old, the quote
                 at most ``max_quote_age_seconds`` old
     breaker     the symbol is not paused (``breaker_failures`` consecutive engine exceptions
                 pause it for ``breaker_pause_seconds``, with a notification each way)
     spread      the spread under ``max_spread_pct`` of mid and ``max_spread_median_ratio`` x
                 the rolling median of this symbol's recent spreads
     <engine>    the engine's first failing layer (e.g. ``L2.location``), or ``engine.error``
     executor.*  the executor's outcome when the idea did not open (``executor.rejected``...)
4. newly closed trades are scored (monitors/micro_scalp_stats.py);
5. every ``summary_minutes`` an INFO summary of why no trade was taken.

Per-symbol memory that must survive a new instance (the supervisor builds one after a config
switch-off/on) lives in ``MicroScalpState``: the composition root keeps one and passes it in.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable

from config.micro_scalp_model import MicroScalpConfig, MicroScalpParams
from config.watcher import ConfigHolder
from engines.bars import BarSeries
from engines.micro_scalp import evaluate
from engines.micro_scalp_reasons import LazyText
from engines.spread import SpreadStats
from engines.types import TradeIdea
from execution.errors import BrokerError
from feeds.bar_feed import BadBars
from monitors.micro_scalp_exits import ExitManager
from monitors.micro_scalp_state import STRATEGY, MicroScalpState, SymbolState
from monitors.micro_scalp_stats import MicroScalpStats
from monitors.news_file import NewsFile
from state.store import StateStore

log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], None]
BAR_SECONDS = 60
BAR = timedelta(seconds=BAR_SECONDS)
HOUR = timedelta(hours=1)


def in_sessions(hour: int, sessions: list[tuple[int, int]]) -> bool:
    """Is ``hour`` (0-23, UTC) inside one of the [start, end) windows? start > end wraps midnight."""
    for start, end in sessions:
        if (start < end and start <= hour < end) or (start > end and (hour >= start or hour < end)):
            return True
    return False


def bars_needed(params: MicroScalpParams, now: datetime) -> int:
    """Closed M1 bars reaching back before the session VWAP's anchor hour (so the VWAP is the
    full session's), at least ``min_bars`` and at most ``max_bars``.

    The anchor is the last time the clock showed the anchor hour (today's, else yesterday's):
    whole minutes since then, from the clock fields (the seconds' fraction never adds a minute).
    The bounds are applied by comparisons: a two-argument ``min``/``max`` call costs about twice
    as much, at every step, and on ints the result is the same."""
    hours = (now.hour - params.vwap_anchor_hour_utc) % 24
    count = hours * 60 + now.minute + 1
    if count < params.min_bars:
        count = params.min_bars
    return count if count < params.max_bars else params.max_bars


@dataclass(frozen=True, slots=True)
class SymbolPlan:
    """What one config snapshot fixes for one symbol, worked out once per snapshot instead of at
    every step (a snapshot changes only on a config reload): the merged parameters (merging
    validates, which costs), the enabled gate's refusal, and the session gate's answer for each
    UTC hour (``now.hour`` is all it reads) with the windows as its refusal prints them."""

    params: MicroScalpParams
    switched_off: str | None
    in_session: tuple[bool, ...]  # by UTC hour 0-23
    windows: str

    @classmethod
    def build(cls, config: MicroScalpConfig, symbol: str) -> "SymbolPlan":
        params = config.for_symbol(symbol)  # a symbol no longer listed gets the defaults
        if not config.enabled:
            switched_off: str | None = "micro_scalp.json enabled is false"
        elif symbol not in config.symbols or not params.enabled:
            switched_off = f"{symbol} is switched off in micro_scalp.json"
        else:
            switched_off = None
        sessions = params.trading_sessions_utc
        return cls(params, switched_off, tuple(in_sessions(hour, sessions) for hour in range(24)),
                   ", ".join(f"{a:02d}-{b:02d}" for a, b in sessions))


@dataclass(slots=True)
class _Check:
    """What the gates gathered for one symbol's decision (built once they all passed)."""

    symbol: str
    config: MicroScalpConfig
    params: MicroScalpParams
    state: SymbolState
    now: datetime
    bars: BarSeries
    quote: Any
    spread_stats: SpreadStats | None  # the tracker's figures with this quote


class MicroScalpMonitor:
    """``name``, ``interval_seconds`` and ``step(now)`` for MonitorLoop; ``health()`` for status."""

    name = "micro-scalp"

    def __init__(self, holder: ConfigHolder, bar_feed: Any, broker: Any, executor: Any, registry: Any, *,
                 news: NewsFile | None = None, notify: Notify | None = None,
                 state: MicroScalpState | None = None, store: StateStore | None = None,
                 save: Callable[[str, dict[str, Any]], None] | None = None,
                 flow: Callable[[str], Any] | None = None,
                 perf: Callable[[], float] = time.perf_counter) -> None:
        """Cheap: no broker call, no file read beyond the statistics document the first time.

        ``news``: the calendar file (None = no news gate); ``notify(kind, data)``: kinds
        ``symbol_paused``/``symbol_resumed``; ``state``: keep one for the process and pass it to
        every instance; ``store``: where ``stats_micro_scalp`` lives (default: the registry's);
        ``save``: how to write it (default ``store.save``; pass ``StateWriter.submit`` to
        coalesce); ``flow(symbol)``: optional order-flow metrics for the engine."""
        self.holder = holder
        self.bar_feed = bar_feed
        self.broker = broker
        self.executor = executor
        self.registry = registry
        self.news = news
        self._notify = notify or (lambda kind, data: None)
        self.state = state if state is not None else MicroScalpState(holder.current.micro_scalp.summary_minutes)
        self._flow = flow
        self._perf = perf
        if self.state.stats is None:
            self.state.stats = MicroScalpStats(store or registry.store, registry, save)
        self.stats: MicroScalpStats = self.state.stats
        self.exits = ExitManager(executor, registry, broker, self.state.exit_counters)
        self._plans_of: Any = None
        self._plans: dict[str, SymbolPlan] = {}

    @property
    def interval_seconds(self) -> float:
        return self.holder.current.micro_scalp.interval_seconds

    # ------------------------------------------------------------------ config
    def plan(self, config: MicroScalpConfig, symbol: str) -> SymbolPlan:
        """The symbol's ``SymbolPlan`` for this config snapshot, built once per snapshot."""
        if self._plans_of is not config:
            self._plans_of, self._plans = config, {}
        plan = self._plans.get(symbol)
        if plan is None:
            plan = self._plans[symbol] = SymbolPlan.build(config, symbol)
        return plan

    def params(self, config: MicroScalpConfig, symbol: str) -> MicroScalpParams:
        """Merged parameters, cached per config snapshot (see ``SymbolPlan``)."""
        return self.plan(config, symbol).params

    def _min_stop_distance(self, symbol: str) -> float:
        spec = self.broker.symbol_spec(symbol)
        return spec.stops_level_points * spec.point

    # ------------------------------------------------------------------ the step
    def step(self, now: datetime) -> None:
        config = self.holder.current.micro_scalp  # one snapshot for the whole step
        self.state.last_step_at = now
        self.state.why.summary_minutes = config.summary_minutes
        if self.news is not None:
            self.news.refresh()
        try:
            self.exits.run(now, lambda symbol: self.params(config, symbol), self._min_stop_distance)
        except Exception:  # an exit problem must not stop entries on the other symbols
            self.state.count("exit_errors")
            log.exception("micro_scalp exit management failed this step")
        for symbol in config.symbols:
            self._check_symbol(symbol, config, now)
        self.stats.score_new()
        self.state.why.maybe_summarize(now)

    def _check_symbol(self, symbol: str, config: MicroScalpConfig, now: datetime) -> None:
        state = self.state.symbol(symbol, config.spread_window)
        if state.breaker.paused_until is not None:
            self._expire_breaker(symbol, state, now)
        try:
            failed, detail = self._gates_then_engine(symbol, config, state, now)
        except Exception as exc:  # never let one symbol's surprise stop the others
            self.state.count("errors")
            log.exception("micro_scalp %s: unexpected error in the check", symbol)
            failed, detail = "error", f"{type(exc).__name__}: {exc}"
        state.last_gate, state.detail, state.last_check_at = failed or "TRADE", detail, now
        self.state.why.record(symbol, failed, detail)

    def _gates_then_engine(self, symbol: str, config: MicroScalpConfig, state: SymbolState,
                           now: datetime) -> tuple[str | None, str | LazyText]:
        """The gates in their order (see the module docstring): the first refusal names the
        decision, (gate, refusal); once all passed, the engine and the executor decide. Written
        out in order rather than looped over, as every step asks most of them."""
        plan = self.plan(config, symbol)
        if plan.switched_off is not None:
            return "enabled", plan.switched_off
        if not plan.in_session[now.hour]:
            return "session", f"{now.hour:02d}:{now.minute:02d}Z is outside the trading sessions {plan.windows} UTC"
        p = plan.params
        if not state.entry_gates_pass(p, now):  # they passed before and nothing they read has changed
            problem = self._gate_cooldown(symbol, state, p, now)
            if problem is not None:
                return "cooldown", problem
            problem = self._gate_caps(state, p, now)
            if problem is not None:
                return "caps", problem
            state.entry_gates_passed(p, now)
        if self.news is not None:
            verdict = self.news.blackout(symbol, now)
            if verdict.blocked:
                return "news", verdict.reason
        problem = self._gate_positions(symbol, p)
        if problem is not None:
            return "positions", problem
        problem, bars, quote = self._gate_freshness(symbol, p, now)
        if problem is not None:
            return "freshness", problem
        breaker = state.breaker
        if breaker.paused_until is not None and breaker.is_open(now):  # never paused: no call
            return "breaker", f"paused until {breaker.paused_until:%H:%M:%S}Z after {breaker.failures} engine " \
                              f"errors (last: {breaker.last_error})"
        problem, spread_stats = self._gate_spread(state, p, quote)
        if problem is not None:
            return "spread", problem
        return self._decide_and_execute(_Check(symbol, config, p, state, now, bars, quote, spread_stats))

    # ------------------------------------------------------------------ gates (None = pass)
    def _seed_entries(self, symbol: str, state: SymbolState) -> None:
        trades = self.registry.open_trades(STRATEGY, symbol) + [
            t for t in self.registry.closed_trades(STRATEGY) if t.symbol == symbol]
        self.state.seed_entries(state, (t.opened_at for t in trades))

    def _gate_cooldown(self, symbol: str, state: SymbolState, p: MicroScalpParams, now: datetime) -> str | None:
        if state.entries is None:  # the first check of this state object
            self._seed_entries(symbol, state)
        state.prune_entries(now)
        last = state.last_entry()
        if last is not None:
            left = p.cooldown_after_trade_seconds - (now - last).total_seconds()
            if left > 0:
                return f"cooldown after the entry at {last:%H:%M:%S}Z: {left:.0f} s left"
        if state.failure_until is not None and now < state.failure_until:
            left = (state.failure_until - now).total_seconds()
            return f"cooldown after a failed order ({state.failure_reason}): {left:.0f} s left"
        return None

    @staticmethod
    def _gate_caps(state: SymbolState, p: MicroScalpParams, now: datetime) -> str | None:
        kept = state.entry_count()
        if kept < p.max_trades_per_hour and kept < p.max_trades_per_day:
            return None  # no window can hold more entries than are kept
        hour = state.count_entries_since(now - HOUR)
        if hour >= p.max_trades_per_hour:
            return f"{hour} entries in the last hour, cap {p.max_trades_per_hour}"
        if kept < p.max_trades_per_day:
            return None  # today's entries are among the kept ones
        day = state.count_entries_since(state.day_start(now))
        if day >= p.max_trades_per_day:
            return f"{day} entries today (UTC), cap {p.max_trades_per_day}"
        return None

    def _gate_positions(self, symbol: str, p: MicroScalpParams) -> str | None:
        open_count = len(self.registry.open_trades(STRATEGY, symbol))
        if open_count >= p.max_positions_per_symbol:
            return f"{open_count} open micro-scalp position(s), limit {p.max_positions_per_symbol}"
        return None

    def _gate_freshness(self, symbol: str, p: MicroScalpParams, now: datetime) -> tuple[str | None, Any, Any]:
        """(refusal, None, None), or (None, the bars, the quote) for the engine."""
        count = bars_needed(p, now)
        try:
            bars = self.bar_feed.get(symbol, "M1", count)
            quote = self.broker.quote(symbol)
        except (BrokerError, BadBars) as exc:
            return f"no usable data: {exc}", None, None
        if len(bars) < p.min_bars:
            return f"{len(bars)} closed M1 bars, the engine needs {p.min_bars}", None, None
        last_open = bars.open_time()
        bar_age = (now - (last_open + BAR)).total_seconds()
        if bar_age > p.max_bar_age_seconds:
            return f"last closed bar {last_open:%Y-%m-%d %H:%M}Z closed {bar_age:.0f} s ago " \
                   f"(limit {p.max_bar_age_seconds:g} s)", None, None
        quote_age = (now - quote.time).total_seconds()
        if quote_age > p.max_quote_age_seconds:
            return f"quote is {quote_age:.0f} s old (limit {p.max_quote_age_seconds:g} s)", None, None
        return None, bars, quote

    def _gate_spread(self, state: SymbolState, p: MicroScalpParams,
                     quote: Any) -> tuple[str | None, SpreadStats | None]:
        """(refusal, None), or (None, the spread figures with this quote for the engine)."""
        bid, ask = float(quote.bid), float(quote.ask)
        tracker = state.spread
        with self.state.lock:  # health() reads the sample from another thread
            problem = tracker.rejection(bid, ask, p.max_spread_pct, p.max_spread_median_ratio, p.spread_min_samples)
            if quote.time != state.last_spread_quote_time:  # each quote votes once in the median
                tracker.add_quote(bid, ask)
                state.last_spread_quote_time = quote.time
            # the engine's figures, read under this same lock (the last gate: it decides next)
            return problem, tracker.stats() if problem is None else None

    # ------------------------------------------------------------------ breaker
    def _expire_breaker(self, symbol: str, state: SymbolState, now: datetime) -> None:
        paused_at = state.breaker.paused_at
        if state.breaker.expire(now):
            log.warning("micro_scalp %s resumed: the engine pause is over", symbol)
            self._send("symbol_resumed", {"strategy": STRATEGY, "symbol": symbol,
                                          "paused_at": paused_at.isoformat() if paused_at else None,
                                          "resumed_at": now.isoformat(),
                                          "paused_seconds": (now - paused_at).total_seconds() if paused_at else None})

    def _engine_failed(self, c: _Check, exc: Exception) -> tuple[str, str]:
        config = c.config
        error = f"{type(exc).__name__}: {exc}"
        breaker = c.state.breaker
        opened = breaker.record_failure(error, c.now, config.breaker_failures, config.breaker_pause_seconds)
        self.state.count("engine_errors")
        log.error("micro_scalp %s: engine error %d/%d: %s", c.symbol, breaker.failures, config.breaker_failures,
                  error, exc_info=exc)
        if opened:
            assert breaker.paused_until is not None
            log.warning("micro_scalp %s paused for %g s after %d consecutive engine errors (last: %s)", c.symbol,
                        config.breaker_pause_seconds, breaker.failures, error)
            self._send("symbol_paused", {"strategy": STRATEGY, "symbol": c.symbol, "failures": breaker.failures,
                                         "pause_seconds": config.breaker_pause_seconds,
                                         "until": breaker.paused_until.isoformat(), "error": error})
        return "engine.error", error

    def _send(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self._notify(kind, data)
        except Exception:  # a notifier problem must never break the trading loop
            log.exception("micro_scalp: notification %s failed", kind)

    # ------------------------------------------------------------------ engine and executor
    def _decide_and_execute(self, c: _Check) -> tuple[str | None, str | LazyText]:
        flow = None
        if self._flow is not None:
            try:
                flow = self._flow(c.symbol)
            except Exception as exc:  # order-flow data is optional: decide without it
                log.debug("micro_scalp %s: no order-flow metrics (%s)", c.symbol, exc)
        stops_level = self._min_stop_distance(c.symbol)  # a broker problem here is not an engine error
        try:
            # quiet: a no-trade decision brings only its failing reason, the one used below
            decision = evaluate(c.bars, c.quote, c.spread_stats, flow, c.params, c.symbol, c.now, c.state.regime,
                                stops_level=stops_level, explain=False)
        except Exception as exc:
            return self._engine_failed(c, exc)
        c.state.breaker.record_success()
        c.state.regime = decision.regime_state
        self.state.count("engine_checks")
        idea = decision.idea
        if idea is None:
            failed = decision.failed or "engine"
            return failed, decision.failure_detail(failed)  # maybe a LazyText: formatted when shown
        self.state.count("ideas")
        # The engine names the checker that fired (edge_based, vwap_reversion, range_scalp...);
        # the executor, the registry and the magic number know the strategy: micro_scalp.
        idea = replace(idea, strategy=STRATEGY, meta={**idea.meta, "checker": idea.strategy})
        bar = str(idea.meta.get("bar_time", ""))
        if bar and bar == c.state.last_traded_bar:
            return "cooldown", f"already entered on the signal bar {bar}"
        return self._execute(c, idea, bar)

    def _execute(self, c: _Check, idea: TradeIdea, bar: str) -> tuple[str | None, str]:
        latencies = self.executor.latencies_ms
        sent_before = len(latencies)
        started = self._perf()
        try:
            outcome = self.executor.open(idea, created_at=c.now)
        except Exception as exc:
            self._order_failed(c, f"{type(exc).__name__}: {exc}")
            log.exception("micro_scalp %s: executor.open raised", c.symbol)
            return "executor.error", f"{type(exc).__name__}: {exc}"
        round_trip_ms = (self._perf() - started) * 1000.0
        sent = len(latencies) - sent_before
        if sent > 0:  # the order reached the broker: an execution-latency sample
            pipeline = latencies[sent_before] if sent == 1 else None  # ambiguous if another thread sent too
            self.stats.record_latency(round_trip_ms, pipeline)
        if outcome.opened:
            c.state.add_entry(c.now)
            c.state.last_traded_bar = bar or None
            c.state.failure_until = None
            self.state.count("opened")
            trade = outcome.trade
            assert trade is not None
            return None, (f"{idea.side} ticket {trade.ticket} @ {trade.entry:g} sl {trade.sl:g} tp {trade.tp:g} "
                          f"({idea.meta.get('checker')}, score {idea.meta.get('score')})")
        if outcome.status == "halted":  # the trading state refuses entries: not an order failure
            return "trading_state", outcome.reason
        self._order_failed(c, f"{outcome.status}: {outcome.reason}")
        return f"executor.{outcome.status}", outcome.reason

    def _order_failed(self, c: _Check, reason: str) -> None:
        self.state.count("order_failures")
        c.state.failure_until = c.now + timedelta(seconds=c.params.cooldown_after_failure_seconds)
        c.state.failure_reason = reason

    # ------------------------------------------------------------------ status
    def health(self) -> dict[str, Any]:
        """For health.json and ``status``: performance, per-symbol gates and breaker, counters."""
        now = self.state.last_step_at
        with self.state.lock:
            counters = dict(self.state.counters)
        exits = self.state.exit_counters
        return {
            "strategy": STRATEGY,
            "last_step_at": now.isoformat() if now else None,
            "performance": self.stats.health(),
            "symbols": self.state.health(now) if now else {},
            "counters": {**counters, "trail_moves": exits.trail_moves, "trail_failures": exits.trail_failures,
                         "time_exits": exits.time_exits, "time_exit_failures": exits.time_exit_failures,
                         "broker_closes": exits.broker_closes},
            "open_trades": len(self.registry.open_trades(STRATEGY)),
            "why_no_trade": self.state.why.last_summary,
            "news": self.news.health() if self.news is not None else None,
        }


__all__ = ["MicroScalpMonitor", "MicroScalpState", "in_sessions", "bars_needed"]
