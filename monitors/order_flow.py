"""The order-flow monitor: flip exits first, then entries from the order-flow classifier.

Each step (default every 5 s, ``order_flow.interval_seconds``):
1. ``executor.sync_closed("order_flow")`` records positions the broker closed (SL, TP, manual).
2. The tick proxy polls new MT5 ticks for the symbols whose flow it serves.
3. FLIP EXIT, before any other exit: for each open order-flow trade, the delta over
   ``flip_exit.window_seconds`` is compared with the entry delta stored in ``trade.meta``. A buy
   entered on positive delta closes when the delta falls to -0.8 x the entry delta; a sell
   mirrors it. It FAILS OPEN: missing, stale, gapped or incomplete flow leaves the position to
   its broker-side stop loss, and the reason is logged (INFO when it changes).
4. ENTRIES, per configured symbol, gate by gate (each decision goes to ``WhyNoTrade``): strategy
   and symbol enabled, session, open trades, cooldown, flow source, fresh flow (FAILS CLOSED),
   bars, quote, signals and the weighted classifier, optional entry-delta agreement, stops; then
   ``executor.open``. The 30 s entry delta and its context go into ``idea.meta`` (persisted with
   the trade by the executor), so the flip exit still works after a restart.

Flow per symbol (from the config in force): a symbol mapped in ``binance.symbols`` (BTCUSD ->
BTCUSDT) reads the Binance tape through ``SharedOrderFlow``; any other symbol reads the tick
proxy (``feeds.tick_proxy.TickProxyFeed``). Binance trade times are real (wall-clock) time, so
their freshness is judged on ``flow_clock``; the proxy's ticks are market time (``clock``). Live,
both are the system clock; with the simulated terminal the market clock is the replay's.
"""
from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta
from typing import Any, Callable, NamedTuple, Sequence

from config.order_flow_model import OrderFlowConfig, OrderFlowParams
from engines.bars import BarSeries
from engines.order_flow import FlowBarColumns, FlowMetrics
from engines.order_flow_signals import Classification, Signal, SignalParams, classify
from engines.types import TradeIdea
from execution.errors import BrokerError
from feeds.bar_feed import BadBars
from monitors.clock import Clock
from monitors.order_flow_rules import (SignalInputs, check_flip, classifier_may_pass, default_signals,
                                       flow_bars_since, flow_problem, others_may_pass, plan_stops, signal_inputs)
from monitors.why_not import WhyNoTrade
from state.registry import Trade

log = logging.getLogger(__name__)

STRATEGY = "order_flow"
LATENCY_WARN_SECONDS = 1.0  # the planning document's budget for one 5 s pass
SignalFn = Callable[[SignalInputs, SignalParams], list[Signal]]
EventSink = Callable[[str, dict[str, Any]], None]
Detail = str | Callable[[], str]  # a decision's detail, or how to format it when it is read


class _Route(NamedTuple):
    source: str  # "binance" | "tick_proxy"
    key: str  # the symbol inside that source (BTCUSDT, or the config symbol for the proxy)
    feed: Any  # SharedOrderFlow or TickProxyFeed: get_metrics_many(key, windows, now_ms, slope), bar_columns(...)
    now_ms: int


class _Skip(Exception):
    """One entry gate failed: ``gate`` goes to WhyNoTrade, ``detail`` to the debug log and
    ``last_decisions``. A detail may be a formatter: nearly every step fails a gate, and its
    text is read only by a DEBUG log or a health reader, so it is formatted only then."""

    def __init__(self, gate: str, detail: Detail = "") -> None:
        super().__init__(gate)
        self.gate = gate
        self.detail = detail


def _text(detail: Detail) -> str:
    return detail if isinstance(detail, str) else detail()


class _Decision:
    """The last decision for a symbol, as ``last_decisions`` shows it; the detail and the time
    are formatted when read (the text is kept, so it is formatted once)."""

    __slots__ = ("failed", "detail", "at")

    def __init__(self, failed: str | None, detail: Detail, at: datetime) -> None:
        self.failed = failed
        self.detail = detail
        self.at = at

    def as_dict(self) -> dict[str, Any]:
        self.detail = _text(self.detail)
        return {"failed": self.failed, "detail": self.detail, "at": self.at.isoformat()}


def _summary(signals: Sequence[Signal]) -> str:
    return ", ".join(f"{s.name} {s.side} {s.strength:.2f}" for s in signals) or "none"


def _classifier_detail(verdict: Classification, signals: Sequence[Signal]) -> str:
    return (f"{verdict.side or 'no side'} {verdict.probability:.2f} < {verdict.threshold:.2f}; "
            f"signals: {_summary(signals)}")


def _unrun_classifier_detail(bars: BarSeries, flow: FlowBarColumns, window: FlowMetrics, price: float,
                             params: SignalParams) -> str:
    """The classifier's detail when the detectors were skipped (``classifier_may_pass``): they
    run now, on the step's inputs, for the text the full path would have recorded."""
    try:
        signals = default_signals(signal_inputs(bars, flow, window, price, params), params)
        return _classifier_detail(classify(signals, params.weights, params.threshold), signals)
    except Exception as exc:  # a reader of the detail must not fail
        return f"below the threshold without absorption; detectors failed: {type(exc).__name__}: {exc}"


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class _ConfigCache:
    """What the monitor derives from one order-flow config every step (merged per-symbol
    parameters, the detectors' parameters, the active symbols), computed once per config object.
    Config snapshots are frozen and a reload makes a new one, so identity is the key; a call
    that raises is not cached and raises again at the same place next time."""

    def __init__(self, cfg: OrderFlowConfig) -> None:
        self.cfg = cfg
        self._params: dict[str, OrderFlowParams] = {}
        self._signal_params: dict[str, SignalParams] = {}
        self._active: list[str] | None = None
        self._proxied: dict[bool, list[str]] = {}
        self._others_pass: dict[str, bool] = {}

    def params(self, symbol: str) -> OrderFlowParams:
        params = self._params.get(symbol)
        if params is None:
            params = self._params[symbol] = self.cfg.for_symbol(symbol)
        return params

    def signal_params(self, symbol: str) -> SignalParams:
        params = self._signal_params.get(symbol)
        if params is None:
            params = self._signal_params[symbol] = SignalParams.from_params(self.params(symbol))
        return params

    def others_pass(self, symbol: str) -> bool:
        """``others_may_pass`` of the symbol's detector parameters (built here, never changed)."""
        others = self._others_pass.get(symbol)
        if others is None:
            others = self._others_pass[symbol] = others_may_pass(self.signal_params(symbol))
        return others

    def active_symbols(self) -> list[str]:
        if self._active is None:
            self._active = self.cfg.active_symbols()
        return list(self._active)

    def proxied_symbols(self, binance_flow: bool) -> list[str]:
        """The active symbols the tick proxy polls: those it serves, or all of them when there is
        no Binance flow (``binance_flow`` False), in the configured order."""
        symbols = self._proxied.get(binance_flow)
        if symbols is None:
            symbols = self._proxied[binance_flow] = [s for s in self.active_symbols()
                                                     if not binance_flow or self.cfg.flow_source(s) == "tick_proxy"]
        return list(symbols)


def _flow_bars(route: _Route, since: tuple[int, int]) -> FlowBarColumns:
    """The route's completed M1 flow bars as columns: only the recent bars ``since``
    (``flow_bars_since``) names, the only ones the signal inputs read."""
    return route.feed.bar_columns(route.key, 60, False, since_ms=since[0], before=since[1])


def _window_metrics(route: _Route, windows_seconds: Sequence[int], slope: bool) -> list[FlowMetrics | None]:
    """``get_metrics`` of each window, in one pass over the tape. With ``slope=False`` the CVD
    slopes are skipped (NaN)."""
    return route.feed.get_metrics_many(route.key, windows_seconds, route.now_ms, slope)


class OrderFlowMonitor:
    name = "order-flow"

    def __init__(self, holder: Any, bar_feed: Any, broker: Any, executor: Any, registry: Any, clock: Clock, *,
                 flow: Any = None, proxy: Any = None, flow_clock: Clock | None = None,
                 why_not: WhyNoTrade | None = None, notify: EventSink | None = None,
                 signals: SignalFn | None = None) -> None:
        """``flow``: SharedOrderFlow (Binance tape) or None; ``proxy``: TickProxyFeed or None.
        ``clock`` is market time (broker, bars, sessions, cooldowns); ``flow_clock`` (default
        ``clock``) is the time the Binance tape is judged against. ``signals`` replaces the five
        detectors (tests); the classifier and every gate stay the real ones."""
        self.holder = holder
        self.bar_feed = bar_feed
        self.broker = broker
        self.executor = executor
        self.registry = registry
        self.clock = clock
        self.flow = flow
        self.proxy = proxy
        self.flow_clock = flow_clock or clock
        self.why_not = why_not or WhyNoTrade(STRATEGY)
        self._notify = notify or (lambda kind, data: None)
        self._signals: SignalFn = signals or default_signals
        self._last_attempt: dict[str, datetime] = {}
        self._flip_hold: dict[int, str] = {}  # ticket -> why the flip exit is not acting (for log dedup)
        self.counters: dict[str, int] = {}
        self._decisions: dict[str, _Decision] = {}
        self.last_step_ms: float | None = None
        self._config: _ConfigCache | None = None
        self._closed_seen: list[Trade] = []  # the registry's closed trades when _closed_latest was filled
        self._closed_latest: dict[str, datetime | None] = {}

    def _cached(self, cfg: OrderFlowConfig) -> _ConfigCache:
        if self._config is None or self._config.cfg is not cfg:
            self._config = _ConfigCache(cfg)
        return self._config

    @property
    def interval_seconds(self) -> float:
        return float(self.holder.current.order_flow.interval_seconds)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    # ================================================================== the step
    def step(self, now: datetime) -> None:
        """One cycle. ``now`` is the loop's clock; market decisions use ``self.clock``."""
        started = time.perf_counter()
        cfg: OrderFlowConfig = self.holder.current.order_flow
        market_now = self.clock.now()
        self._sync_closed()
        self._poll_proxy(cfg, market_now)
        self._flip_exits(cfg, market_now)
        for symbol in cfg.symbols:
            try:
                self._entry(cfg, symbol, market_now)
            except _Skip as skip:
                self._record(symbol, skip.gate, skip.detail)
            except Exception as exc:  # one symbol's failure must not stop the others
                log.exception("order-flow %s: entry check failed", symbol)
                self._record(symbol, "error", f"{type(exc).__name__}: {exc}")
        self.why_not.maybe_summarize(market_now)
        self.last_step_ms = (time.perf_counter() - started) * 1000.0
        if self.last_step_ms > LATENCY_WARN_SECONDS * 1000:
            log.warning("order-flow step took %.0f ms (budget %.0f ms)", self.last_step_ms,
                        LATENCY_WARN_SECONDS * 1000)

    @property
    def last_decisions(self) -> dict[str, dict[str, Any]]:
        """Per symbol: the last decision's failed gate (None for a trade), detail and time."""
        # a copy first: the health thread reads this while the monitor thread adds symbols
        return {symbol: decision.as_dict() for symbol, decision in list(self._decisions.items())}

    def _record(self, symbol: str, gate: str | None, detail: Detail = "") -> None:
        self.why_not.record(symbol, gate, detail)  # (formatted there only for its DEBUG line)
        self._decisions[symbol] = _Decision(gate, detail, self.clock.now())

    def _sync_closed(self) -> None:
        try:
            for trade in self.executor.sync_closed(STRATEGY):
                self._flip_hold.pop(trade.ticket, None)
        except Exception:
            log.exception("order-flow: recording broker-side closes failed")

    # ================================================================== flow routing
    def _route(self, cfg: OrderFlowConfig, symbol: str, market_now: datetime) -> _Route | None:
        source = cfg.flow_source(symbol)
        if source == "binance" and self.flow is not None:
            return _Route("binance", cfg.binance.symbols[symbol], self.flow, _ms(self.flow_clock.now()))
        if self.proxy is not None and (source == "tick_proxy" or (source == "binance" and self.flow is None)):
            # No Binance stream in this run (the simulated terminal replays no exchange tape):
            # the broker's ticks are the only flow there is for every symbol.
            return _Route("tick_proxy", symbol, self.proxy, _ms(market_now))
        return None

    def _poll_proxy(self, cfg: OrderFlowConfig, market_now: datetime) -> None:
        if self.proxy is None or not cfg.proxy.enabled:
            return
        def proxied(symbol: str) -> bool:
            return cfg.flow_source(symbol) == "tick_proxy" or self.flow is None

        wanted = self._cached(cfg).proxied_symbols(self.flow is not None)
        for trade in self.registry.open_trades(STRATEGY):
            if trade.symbol not in wanted and proxied(trade.symbol):
                wanted.append(trade.symbol)
        for symbol in wanted:
            try:
                self.proxy.poll(symbol, market_now)
            except Exception:
                log.exception("order-flow: tick proxy poll of %s failed", symbol)

    # ================================================================== flip exit
    def _flip_exits(self, cfg: OrderFlowConfig, market_now: datetime) -> None:
        trades = self.registry.open_trades(STRATEGY)
        open_tickets = {t.ticket for t in trades}
        for ticket in [t for t in self._flip_hold if t not in open_tickets]:
            del self._flip_hold[ticket]
        if not cfg.flip_exit.enabled:
            return
        for trade in trades:
            try:
                self._flip_one(cfg, trade, market_now)
            except Exception:
                log.exception("order-flow: flip check of ticket %d failed (position left to its stop)", trade.ticket)

    def _hold(self, trade: Trade, reason: str) -> None:
        """The flip exit does nothing for this trade now: log why, loudly only when it changes."""
        self._count(f"flip_hold_{reason.split(':')[0]}")
        level = logging.INFO if self._flip_hold.get(trade.ticket) != reason.split(":")[0] else logging.DEBUG
        self._flip_hold[trade.ticket] = reason.split(":")[0]
        log.log(level, "order-flow flip exit inactive for %s %s ticket %d: %s", trade.symbol, trade.side,
                trade.ticket, reason)

    def _flip_one(self, cfg: OrderFlowConfig, trade: Trade, market_now: datetime) -> None:
        flip = cfg.flip_exit
        entry_delta = trade.meta.get("entry_delta")
        if not isinstance(entry_delta, (int, float)) or isinstance(entry_delta, bool) or not math.isfinite(entry_delta):
            self._hold(trade, "no_entry_delta: the trade carries no entry delta")
            return
        route = self._route(cfg, trade.symbol, market_now)
        if route is None:
            self._hold(trade, "flow_missing: no flow source for this symbol")
            return
        if route.source == "tick_proxy" and not flip.apply_to_proxy:
            self._hold(trade, "proxy_excluded: flip_exit.apply_to_proxy is false")
            return
        entry_source = trade.meta.get("flow_source")
        if entry_source is not None and entry_source != route.source:
            self._hold(trade, f"source_changed: entry delta from {entry_source}, flow now from {route.source}")
            return
        opened = datetime.fromisoformat(trade.opened_at)
        if (market_now - opened).total_seconds() < flip.min_hold_seconds:
            self._hold(trade, f"min_hold: younger than {flip.min_hold_seconds:g} s")
            return
        params = self._cached(cfg).params(trade.symbol)
        metrics = route.feed.get_metrics(route.key, flip.window_seconds, route.now_ms)
        problem = flow_problem(metrics, params.max_flow_age_seconds)
        if problem is not None:
            self._hold(trade, f"{problem[0]}: {problem[1]}")
            return
        assert metrics is not None
        verdict = check_flip(trade.side, float(entry_delta), metrics.delta, flip.threshold)
        if not verdict.armed:
            self._hold(trade, f"not_armed: entry delta {entry_delta:+.6g} does not have the {trade.side}'s sign")
            return
        self._flip_hold.pop(trade.ticket, None)
        if not verdict.flipped:
            return
        reason = (f"order_flow_flip: {flip.window_seconds} s delta {metrics.delta:+.6g} crossed "
                  f"{verdict.trigger:+.6g} (-{flip.threshold:g} x entry delta {entry_delta:+.6g}, "
                  f"{verdict.flip_pct:.0f} %)")
        log.info("order-flow %s %s ticket %d: %s", trade.symbol, trade.side, trade.ticket, reason)
        outcome = self.executor.close(trade, reason)
        self._count(f"flip_{outcome.status}")
        self._notify("order_flow_flip", {"ticket": trade.ticket, "symbol": trade.symbol, "side": trade.side,
                                         "entry_delta": entry_delta, "current_delta": metrics.delta,
                                         "trigger": verdict.trigger, "flip_pct": verdict.flip_pct,
                                         "status": outcome.status})

    # ================================================================== entries
    def _entry(self, cfg: OrderFlowConfig, symbol: str, market_now: datetime) -> None:
        cached = self._cached(cfg)
        params = cached.params(symbol)
        if not cfg.enabled:
            raise _Skip("disabled", "order_flow.enabled is false")
        if not params.enabled:
            raise _Skip("disabled", f"{symbol} is disabled in order_flow.json")
        if not params.in_session(market_now.hour):
            raise _Skip("session", lambda: f"{market_now:%H:%M} UTC is outside {params.sessions_utc}")
        open_here = self.registry.open_trades(STRATEGY, symbol)
        if len(open_here) >= params.max_open_trades:
            raise _Skip("position_open", f"{len(open_here)} open (limit {params.max_open_trades})")
        self._check_cooldown(symbol, params.cooldown_seconds, market_now, open_here)

        route = self._route(cfg, symbol, market_now)
        if route is None:
            raise _Skip("flow_missing", f"no flow source (binance mapped: {cfg.uses_binance(symbol)}, "
                                        f"proxy enabled: {cfg.proxy.enabled})")
        entry_window, signal_window = self._fresh(
            route, (params.entry_delta_window_seconds, params.absorption_window_seconds),
            params.max_flow_age_seconds)

        try:
            bars = self.bar_feed.get(symbol, "M1", params.bars_needed)
        except (BrokerError, BadBars) as exc:
            raise _Skip("bars", str(exc)) from None
        if len(bars) < params.atr_period + 1:
            raise _Skip("bars", f"{len(bars)} closed M1 bars, need at least {params.atr_period + 1}")
        try:
            quote = self.broker.quote(symbol)
        except BrokerError as exc:
            raise _Skip("quote", str(exc)) from None

        signal_params = cached.signal_params(symbol)
        since = flow_bars_since(int(bars.time_s[0]) * 1000, signal_window, signal_params)
        flow = _flow_bars(route, since)
        if self._signals is default_signals and not classifier_may_pass(signal_window, flow, signal_params,
                                                                        cached.others_pass(symbol)):
            raise _Skip("classifier", lambda: _unrun_classifier_detail(bars, flow, signal_window, quote.mid,
                                                                       signal_params))
        inputs = signal_inputs(bars, flow, signal_window, quote.mid, signal_params)
        signals = self._signals(inputs, signal_params)
        verdict = classify(signals, signal_params.weights, signal_params.threshold)
        if verdict.side is None or not verdict.meets_threshold:
            raise _Skip("classifier", lambda: _classifier_detail(verdict, signals))
        side = verdict.side
        entry_delta = entry_window.delta
        flip_armed = entry_delta > 0 if side == "buy" else entry_delta < 0
        if params.require_entry_delta_agreement and not flip_armed:
            raise _Skip("delta_disagrees", f"{side} with {params.entry_delta_window_seconds} s delta "
                                           f"{entry_delta:+.6g}")
        entry = quote.ask if side == "buy" else quote.bid
        stops = plan_stops(side, entry, inputs.atr, params, signals, signal_window.last_price,
                           quote.ask - quote.bid)
        if stops is None:
            raise _Skip("stops", "no ATR from the M1 bars")
        sl, tp = self.broker.normalize_price(symbol, stops.sl), self.broker.normalize_price(symbol, stops.tp)

        idea = TradeIdea(
            symbol=symbol, side=side, entry=entry, sl=sl, tp=tp, strategy=STRATEGY,
            reasons=(f"classifier {verdict.probability:.2f} >= {verdict.threshold:.2f} ({verdict.pattern_type})",
                     f"signals: {_summary(signals)}",
                     f"{route.source} {params.entry_delta_window_seconds} s delta {entry_delta:+.6g}",
                     f"stop: {stops.basis}"),
            meta={"entry_delta": entry_delta, "entry_delta_window_seconds": params.entry_delta_window_seconds,
                  "entry_delta_at_ms": entry_window.now_ms, "flow_source": route.source, "flow_symbol": route.key,
                  "flip_armed": flip_armed, "probability": round(verdict.probability, 4),
                  "pattern_type": verdict.pattern_type,
                  "contributions": {k: round(v, 4) for k, v in verdict.contributions.items()},
                  "atr": inputs.atr})
        self._last_attempt[symbol] = market_now
        outcome = self.executor.open(idea, created_at=market_now)
        if outcome.opened:
            self._count("opened")
            self._record(symbol, None, f"{side} ticket {outcome.trade.ticket if outcome.trade else '?'}: "
                                       f"{'; '.join(idea.reasons)}")
        else:
            self._count(f"executor_{outcome.status}")
            raise _Skip(f"executor_{outcome.status}", outcome.reason)

    def _fresh(self, route: _Route, windows_seconds: tuple[int, int], max_age_seconds: float
               ) -> tuple[FlowMetrics, FlowMetrics]:
        """Both windows' metrics, checked in the order given (the first problem is the gate).
        The default detectors and the gates never read a window's CVD slope: it is computed only
        for replaced detectors (``signals``)."""
        both = _window_metrics(route, windows_seconds, slope=self._signals is not default_signals)
        for metrics in both:
            problem = flow_problem(metrics, max_age_seconds)
            if problem is not None:
                raise _Skip(problem[0], lambda: f"{route.source} {route.key}: {problem[1]}")
        assert both[0] is not None and both[1] is not None
        return both[0], both[1]

    def _check_cooldown(self, symbol: str, cooldown_seconds: float, market_now: datetime,
                        open_here: Sequence[Trade]) -> None:
        """Since the last entry attempt (this process) or the last open/close (the registry);
        ``open_here``: the symbol's open trades."""
        if cooldown_seconds <= 0:
            return
        times = [self._last_attempt.get(symbol)]
        for trade in open_here:
            times.append(datetime.fromisoformat(trade.opened_at))
        times.append(self._latest_closed(symbol))
        latest = max((t for t in times if t is not None), default=None)
        if latest is not None and market_now - latest < timedelta(seconds=cooldown_seconds):
            left = cooldown_seconds - (market_now - latest).total_seconds()
            raise _Skip("cooldown", lambda: f"{left:.0f} s left of {cooldown_seconds:g} s")

    def _latest_closed(self, symbol: str) -> datetime | None:
        """The latest open or close time of the symbol's closed trades. The registry keeps up to
        500 of them and the cooldown reads them every step: parsed again only when the list
        changes (equal lists hold equal trades, so equal times)."""
        closed = self.registry.closed_trades(STRATEGY)
        if closed != self._closed_seen:
            self._closed_seen, self._closed_latest = closed, {}
        if symbol not in self._closed_latest:
            times = []
            for trade in closed:
                if trade.symbol == symbol:
                    times.append(datetime.fromisoformat(trade.opened_at))
                    if trade.closed_at:
                        times.append(datetime.fromisoformat(trade.closed_at))
            self._closed_latest[symbol] = max(times, default=None)
        return self._closed_latest[symbol]

    # ================================================================== health
    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"counters": dict(self.counters), "last_decisions": self.last_decisions,
                               "flip_inactive": {str(t): r for t, r in self._flip_hold.items()},
                               "last_step_ms": None if self.last_step_ms is None else round(self.last_step_ms, 1)}
        if self.proxy is not None:
            out["tick_proxy"] = self.proxy.health()
        return out
