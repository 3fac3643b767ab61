"""The range-scalp monitor: entries on each new closed M5 bar, the exit manager every 300 s.

Construction is cheap; ``recover(now)`` (call it before the loop starts; the first step calls it
if nobody did) loads ``runtime/state/range_scalp.json``, matches it with the broker and the
registry and journals what closed while the bot was down (monitors/range_scalp_recovery.py).

One step (``step(now)``, run by monitors/base.MonitorLoop every ``interval_seconds``, 5 s):
1. re-enable entries if they were auto-disabled and range_scalp.json has changed since;
2. settle closes: ``executor.sync_closed("range_scalp")`` records broker-side SL/TP/manual
   closes in the registry from the deal history; the book's trades that closed are journaled
   (``range_exit``) and remembered for the re-entry rules;
3. the exit manager (monitors/range_scalp_exits.py) over every open range trade, at the first
   step after start and then every ``exit_interval_seconds`` (300 s). It runs whatever happens
   to entries: auto-disabled, strategy or symbol switched off;
4. entries, for every symbol of range_scalp.json, ONLY when a new closed M5 bar exists (the open
   time of the last evaluated bar is persisted, so a restart never evaluates a bar twice). Each
   evaluated bar is one decision recorded in WhyNoTrade under the first failing gate:
     entries_disabled   auto-disabled after critical errors (exits keep running)
     open_trade         ``max_open_trades_per_symbol`` range trades already open on the symbol
     data               bars or quote unavailable (broker error, bad bars)
     engine.error       the engine raised
     <engine gate>      the engine's first failing gate (range, adx, confluence, reentry...)
     signal_only        a setup, sent as a ``range_signal`` notification and journaled
                        (``signal``): ``execution.auto_execute`` is off
     score_below_auto   a setup below ``execution.auto_execute_min_score``: sent as a signal
     price_validation   the price moved more than ``entry_max_slippage_pct`` % from the entry
     executor.<status>  the executor did not open it (rejected, skipped, blocked, unknown)
     (None: traded)     ``executor.open`` filled it; it is registered in the book with its
                        range, setup, R and entry context
5. every ``summary_minutes`` (15) an INFO line per symbol of why no trade was taken.

Errors (monitors/range_scalp_errors.py): CRITICAL errors within an hour of market time reaching
``max_critical_errors_per_hour`` disable ENTRIES (notification ``range_entries_disabled``, kept
in the state file across restarts). Exits never stop. Entries come back when the range_scalp
config in force changes (any applied edit of range_scalp.json, e.g. bumping
``reenable_entries``): notification ``range_entries_enabled``.

Notifications (``notify(kind, data)``): range_signal, close_failed, range_entries_disabled,
range_entries_enabled, range_orphans, range_recovered, range_error.
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Callable

from config.range_scalp_model import RangeScalpConfig, RangeScalpParams
from engines.range_detection import RangeStructure
from engines.range_exits import RangeTrade
from engines.range_market import MarketMemo
from engines.range_scalp import RangeDecision, evaluate_entry
from engines.types import TradeIdea
from execution.errors import BrokerError
from execution.executor import magic_for
from feeds.bar_feed import BadBars
from monitors.base import IsoText
from monitors.clock import Clock
from monitors.range_scalp_bars import HourBars
from monitors.range_scalp_errors import ErrorLedger, Severity
from monitors.range_scalp_exits import PassReport, RangeExitManager
from monitors.range_scalp_recovery import RecoveryReport, entry_context, recover, settle_closed
from monitors.range_scalp_state import DisabledEntries, RangeBook
from monitors.why_not import WhyNoTrade
from state.journal import Journal
from state.registry import Trade
from state.store import StateStore

log = logging.getLogger(__name__)

STRATEGY = "range_scalp"
M5_SECONDS = 300
Notify = Callable[[str, dict[str, Any]], None]
Evaluate = Callable[..., RangeDecision]
# HIGH errors that already have their own notification
_OWN_NOTIFICATION = frozenset({"exit_order_fails", "orphaned_trades"})
ERROR_NOTE_SPACING = timedelta(minutes=15)  # one range_error notification per error type per 15 min


def config_fingerprint(config: RangeScalpConfig) -> str:
    """Identifies the range_scalp config in force: any applied edit of the file changes it."""
    return hashlib.sha256(config.model_dump_json().encode("utf-8")).hexdigest()[:16]


def last_closed_bar_open(now: datetime, period_s: int = M5_SECONDS) -> int:
    """Open time (epoch s) of the latest bar that can be closed at ``now``."""
    now_s = int(math.floor(now.timestamp()))
    return now_s - now_s % period_s - period_s


class RangeScalpMonitor:
    """``name``, ``interval_seconds`` and ``step(now)`` for MonitorLoop; ``recover`` before
    the loop; ``health()`` for status."""

    name = "range-scalp"

    def __init__(self, holder: Any, bar_feed: Any, broker: Any, executor: Any, registry: Any, clock: Clock, *,
                 journal: Journal | None = None, store: StateStore | None = None, notify: Notify | None = None,
                 news: Any = None, flow: Callable[[str], Any] | None = None, why_not: WhyNoTrade | None = None,
                 sleep: Callable[[float], None] | None = None, evaluate: Evaluate = evaluate_entry,
                 save: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """``journal``: default the executor's; ``store``: where ``range_scalp.json`` lives
        (default the registry's); ``notify(kind, data)``: the kinds in the module doc;
        ``news``: monitors.news_file.NewsFile (None = no news blackout); ``flow(symbol)``:
        optional order-flow facts for the engine (engines.range_data.RangeFlow or a mapping);
        ``sleep``: the wait between exit retries (default: the clock's, so a FakeClock moves);
        ``evaluate``: the entry engine (tests wrap it to count calls); ``save``: how the book
        is written (default ``store.save``, synchronous)."""
        self.holder = holder
        self.bar_feed = bar_feed
        self.broker = broker
        self.executor = executor
        self.registry = registry
        self.clock = clock
        self.journal: Journal = journal or executor.journal
        self.news = news
        self._flow = flow
        self._notify_fn = notify or (lambda kind, data: None)
        self._evaluate = evaluate
        self.why = why_not or WhyNoTrade(STRATEGY, holder.current.range_scalp.summary_minutes)
        self.errors = ErrorLedger()
        self.book = RangeBook(store or registry.store, save,
                              on_save_error=lambda exc: self._error("state_save_failed", f"{type(exc).__name__}: {exc}"))
        never = threading.Event()
        self._sleep = sleep or (lambda seconds: self.clock.wait(never, seconds))
        self._memos: dict[str, MarketMemo] = {}
        self._iso = IsoText()  # the step's time, printed once for its pass and its decisions
        self.hour_bars = HourBars(bar_feed)  # the H1 bars, fetched once per closable H1 bar
        self.exits = RangeExitManager(
            self.book, registry, broker, executor, bar_feed, self.journal, notify=self._send, on_error=self._error,
            sleep=lambda seconds: self._sleep(seconds), flow=self._flow_for, memo_for=self.memo, iso_text=self._iso,
            hour_bars=self.hour_bars)
        self.recovered = False
        self.recovery: RecoveryReport | None = None
        self.last_pass: PassReport | None = None
        self._last_exit_pass: datetime | None = None
        self._params_of: RangeScalpConfig | None = None
        self._params: dict[str, RangeScalpParams] = {}
        self._fingerprint: tuple[RangeScalpConfig | None, str] = (None, "")
        self._engine_streak: dict[str, int] = {}
        self._signals_sent: dict[tuple[str, str, str], datetime] = {}
        self._error_notes: dict[str, datetime] = {}
        self.counters: dict[str, int] = {}
        self.last_decisions: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()  # recover (main thread) vs step (monitor thread)

    @property
    def interval_seconds(self) -> float:
        return float(self.holder.current.range_scalp.interval_seconds)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def params(self, config: RangeScalpConfig, symbol: str) -> RangeScalpParams:
        """Merged parameters, cached per config snapshot (merging validates, which costs)."""
        if self._params_of is not config:
            self._params_of, self._params = config, {}
        params = self._params.get(symbol)
        if params is None:
            params = self._params[symbol] = config.for_symbol(symbol)
        return params

    def memo(self, symbol: str) -> MarketMemo:
        """The symbol's engine memo, shared by its entry checks and exit passes: a step that
        runs both builds the market once, and H1 results are reused while the H1 bars are the
        same (engines/range_market.MarketMemo; it changes speed, never a decision)."""
        memo = self._memos.get(symbol)
        if memo is None:
            memo = self._memos[symbol] = MarketMemo()
        return memo

    def fingerprint(self, config: RangeScalpConfig) -> str:
        if self._fingerprint[0] is not config:
            self._fingerprint = (config, config_fingerprint(config))
        return self._fingerprint[1]

    # ================================================================== recovery
    def recover(self, now: datetime | None = None) -> RecoveryReport | None:
        """Load the book and match it with the broker (module doc of range_scalp_recovery).
        None when the broker could not be asked: the next step tries again, and neither exits
        nor entries run until it succeeded. A state file from a newer bot raises StateFileError."""
        now = now or self.clock.now()
        with self._lock:
            magic = magic_for(self.holder.current, STRATEGY)
            try:
                report = recover(self.book, self.registry, self.broker, self.executor, self.journal, magic, now)
            except BrokerError as exc:
                log.warning("range_scalp recovery deferred: the broker cannot list positions (%s)", exc)
                self._error("recovery_deferred", str(exc))
                return None
            self.recovered, self.recovery, self._last_exit_pass = True, report, None
        if report.problems:
            self._error("state_corruption", "; ".join(report.problems))
        for ticket in report.unmanaged:
            self._error("unmanaged_trade", f"ticket {ticket} has no range: left to its broker stop and target",
                        {"ticket": ticket})
        if report.orphans:
            self._error("orphaned_trades", f"{len(report.orphans)} position(s) at the range magic with no state",
                        {"tickets": [o["ticket"] for o in report.orphans]})
            self._send("range_orphans", {"strategy": STRATEGY, "count": len(report.orphans),
                                         "positions": report.orphans})
        if report.resumed or report.closed_while_down or report.pending:
            self._send("range_recovered", {"strategy": STRATEGY, "summary": report.summary(),
                                           "resumed": report.resumed, "closed_while_down": report.closed_while_down,
                                           "pending": report.pending})
        disabled = self.book.entries_disabled
        if disabled is not None:
            log.warning("range_scalp entries stay DISABLED since %s (%s); edit config/range_scalp.json (e.g. bump "
                        "reenable_entries) to re-enable them; exits run", disabled.at.isoformat(), disabled.reason)
        return report

    # ================================================================== the step
    def step(self, now: datetime) -> None:
        config: RangeScalpConfig = self.holder.current.range_scalp  # one snapshot for the whole step
        market_now = self.clock.now()
        with self._lock:
            if not self.recovered and self.recover(market_now) is None:
                return
            self.why.summary_minutes = config.summary_minutes
            self._maybe_reenable(config, market_now)
            if self.news is not None:
                self.news.refresh()
            try:
                settle_closed(self.book, self.registry, self.executor, self.journal, market_now)
            except Exception:  # settling is retried every step; never stop the exits for it
                log.exception("range_scalp: settling broker-side closes failed")
            if self._exits_due(config, market_now):
                self._run_exits(config, market_now)
            if config.enabled:
                for symbol in config.symbols:
                    try:
                        self._check_symbol(symbol, config, market_now)
                    except Exception as exc:  # one symbol's surprise must not stop the others
                        log.exception("range_scalp %s: entry check failed", symbol)
                        self._record(symbol, "error", f"{type(exc).__name__}: {exc}")
            self.why.maybe_summarize(market_now)

    def _exits_due(self, config: RangeScalpConfig, now: datetime) -> bool:
        last = self._last_exit_pass
        return last is None or (now - last).total_seconds() >= config.exit_interval_seconds

    def _run_exits(self, config: RangeScalpConfig, now: datetime) -> None:
        self._last_exit_pass = now
        try:
            self.last_pass = self.exits.run_pass(config, lambda symbol: self.params(config, symbol), now)
        except Exception as exc:
            log.exception("range_scalp exit pass failed")
            self._error("exit_attempt_failed", f"exit pass: {type(exc).__name__}: {exc}")

    # ================================================================== entries
    def _record(self, symbol: str, failed: str | None, detail: str = "") -> None:
        self.why.record(symbol, failed, detail)
        self.last_decisions[symbol] = {"failed": failed, "detail": detail, "at": self._iso(self.clock.now())}

    def _check_symbol(self, symbol: str, config: RangeScalpConfig, now: datetime) -> None:
        params = self.params(config, symbol)
        if not params.enabled:
            return
        last = self.book.last_bar(symbol)
        if last is not None and last >= last_closed_bar_open(now):
            return  # no new closed M5 bar can exist yet
        try:
            bars_m5 = self.bar_feed.get(symbol, "M5", params.data.lookback_m5_bars)
            bars_h1 = self.hour_bars.get(symbol, params.data.lookback_h1_bars, now)
            quote = self.broker.quote(symbol)
        except (BrokerError, BadBars) as exc:
            self._record(symbol, "data", f"no usable data: {exc}")
            self._error("data_unavailable", f"entries {symbol}: {exc}", {"symbol": symbol})
            return
        if len(bars_m5) == 0:
            self._record(symbol, "data", "no closed M5 bars")
            return
        bar_time = int(bars_m5.time_s.item(-1))
        if last is not None and bar_time <= last:
            return  # the new bar is not in the feed yet
        self.book.set_last_bar(symbol, bar_time)  # persisted first: a bar is evaluated once, even across restarts
        self._count("bars_evaluated")
        disabled, open_count, history = self.book.entry_facts(symbol, now)
        if disabled is not None:
            self._record(symbol, "entries_disabled", disabled.reason)
            return
        if open_count >= config.max_open_trades_per_symbol:
            self._record(symbol, "open_trade", f"{open_count} open range trade(s), limit "
                                               f"{config.max_open_trades_per_symbol}")
            return
        blackout = None
        if self.news is not None:
            verdict = self.news.blackout(symbol, now)
            blackout = verdict.reason if verdict.blocked else None
        try:
            decision = self._evaluate(bars_m5, bars_h1, quote, params, symbol, now, self._flow_for(symbol),
                                      history=history, news_blackout=blackout,
                                      memo=self.memo(symbol), brief=True)  # only the first failing gate is recorded
        except Exception as exc:
            self._engine_failed(symbol, config, exc)
            return
        self._engine_streak[symbol] = 0
        self._count("decisions")
        if decision.idea is None:
            self._record(symbol, decision.failed or "engine", decision.summary())
            return
        self._act(symbol, config, params, decision, now)

    def _engine_failed(self, symbol: str, config: RangeScalpConfig, exc: Exception) -> None:
        streak = self._engine_streak.get(symbol, 0) + 1
        message = f"{symbol}: {type(exc).__name__}: {exc}"
        log.error("range_scalp engine error %d in a row on %s", streak, message, exc_info=exc)
        self._record(symbol, "engine.error", message)
        if streak >= config.engine_failures_critical:
            self._engine_streak[symbol] = 0
            self._error("engine_failure", f"{streak} engine errors in a row, last {message}", {"symbol": symbol})
        else:
            self._engine_streak[symbol] = streak
            self._error("engine_error", message, {"symbol": symbol})

    def _flow_for(self, symbol: str) -> Any:
        if self._flow is None:
            return None
        try:
            return self._flow(symbol)
        except Exception as exc:  # order flow is optional: decide without it
            log.debug("range_scalp %s: no order flow (%s)", symbol, exc)
            return None

    def _act(self, symbol: str, config: RangeScalpConfig, params: RangeScalpParams, decision: RangeDecision,
             now: datetime) -> None:
        engine_idea = decision.idea
        assert engine_idea is not None
        setup = engine_idea.strategy
        # the engine names the setup (vwap_reversion...); executor, registry and magic know the strategy
        idea = replace(engine_idea, strategy=STRATEGY, meta={**engine_idea.meta, "setup": setup})
        execution = params.execution
        score = decision.score if decision.score is not None else 0.0
        if not execution.auto_execute:
            self._signal(symbol, params, decision, idea, now, "signal_only", "auto_execute is off")
            return
        if score < execution.auto_execute_min_score:
            self._signal(symbol, params, decision, idea, now, "score_below_auto",
                         f"score {score:g} below auto_execute_min_score {execution.auto_execute_min_score:g}")
            return
        problem = self._price_problem(idea, config.entry_max_slippage_pct)
        if problem is not None:
            self._record(symbol, "price_validation", problem)
            self._error("price_validation_fails", f"{symbol}: {problem}", {"symbol": symbol})
            return
        try:
            outcome = self.executor.open(idea, created_at=now)
        except Exception as exc:
            log.exception("range_scalp %s: executor.open raised", symbol)
            self._record(symbol, "executor.error", f"{type(exc).__name__}: {exc}")
            self._error("order_rejected", f"{symbol}: executor.open raised {type(exc).__name__}: {exc}")
            return
        if outcome.status == "halted":  # the trading state refuses entries: not an error of ours
            self._record(symbol, "trading_state", outcome.reason)
            return
        if not outcome.opened or outcome.trade is None:
            self._record(symbol, f"executor.{outcome.status}", outcome.reason)
            kind = {"blocked": "broker_fatal", "unknown": "order_outcome_unknown"}.get(outcome.status, "order_rejected")
            self._error(kind, f"{symbol} {idea.side}: {outcome.status}: {outcome.reason}", {"symbol": symbol})
            return
        try:
            registered = self.register_fill(idea, outcome.trade, now)
        except Exception as exc:  # the position exists and keeps its broker stops; say so loudly
            log.exception("range_scalp ticket %d could not be registered", outcome.trade.ticket)
            self._error("unmanaged_trade", f"ticket {outcome.trade.ticket}: registration failed: {exc}",
                        {"ticket": outcome.trade.ticket})
            self._record(symbol, None, f"ticket {outcome.trade.ticket} opened but NOT registered: {exc}")
            return
        self._count("opened")
        self._record(symbol, None, f"{idea.side} {setup} ticket {registered.ticket} @ {registered.entry:g} sl "
                                   f"{registered.sl:g} tp {registered.tp:g} (score {score:g})")

    def _price_problem(self, idea: TradeIdea, max_pct: float) -> str | None:
        """The seed's price validation: the fresh price within ``max_pct`` % of the idea's entry."""
        try:
            quote = self.broker.quote(idea.symbol)
        except BrokerError as exc:
            return f"no fresh quote: {exc}"
        price = quote.ask if idea.side == "buy" else quote.bid
        slippage = abs(price - idea.entry) / idea.entry * 100.0 if idea.entry else math.inf
        if slippage > max_pct:
            return f"price {price:g} is {slippage:.3f}% from the entry {idea.entry:g} (limit {max_pct:g}%)"
        return None

    def register_fill(self, idea: TradeIdea, trade: Trade, now: datetime) -> RangeTrade:
        """Register a filled range idea with its range, setup, R (the fill's stop distance) and
        entry context; saved before it returns, then journaled (``range_registered``)."""
        meta = idea.meta
        range_ = RangeStructure.from_dict(meta["range"])
        setup = str(meta.get("setup") or idea.strategy)
        registered = RangeTrade(
            symbol=trade.symbol, side=trade.side, entry=trade.entry, sl=trade.sl, tp=trade.tp,
            opened_at=datetime.fromisoformat(trade.opened_at), range=range_, strategy=setup, ticket=trade.ticket,
            risk=abs(trade.entry - trade.sl),
            meta={**entry_context(meta), "client_id": trade.client_id, "magic": trade.magic, "volume": trade.volume,
                  "entry_reason": idea.reasons[0] if idea.reasons else ""})
        self.book.register(registered, now, now)
        self.journal.append(
            "range_registered", ticket=trade.ticket, client_id=trade.client_id, symbol=trade.symbol,
            strategy=STRATEGY, trade_type=STRATEGY, setup=setup, side=trade.side, entry=trade.entry, sl=trade.sl,
            tp=trade.tp, lot=trade.volume, risk=registered.risk, range_type=range_.range_type,
            range_high=range_.high, range_low=range_.low, confluence_score=meta.get("confluence_score"),
            planned_rr=meta.get("rr"), score=meta.get("score"), session=meta.get("session"),
            entry_reason=registered.meta["entry_reason"])
        self._error("trade_registered", f"ticket {trade.ticket} {trade.symbol} {setup}", {"ticket": trade.ticket})
        return registered

    def _signal(self, symbol: str, params: RangeScalpParams, decision: RangeDecision, idea: TradeIdea,
                now: datetime, gate: str, why: str) -> None:
        """Signal-only: journal and notify the setup (once per symbol, side and setup within the
        entry spacing), place nothing."""
        setup = str(idea.meta.get("setup"))
        key = (symbol, idea.side, setup)
        spacing = timedelta(minutes=params.activity.min_minutes_between_trades)
        sent = self._signals_sent.get(key)
        if sent is not None and now - sent < spacing:
            self._record(symbol, gate, f"{why}; same signal sent at {sent:%H:%M}Z")
            return
        self._signals_sent[key] = now
        range_ = decision.range
        data = {"strategy": STRATEGY, "setup": setup, "symbol": symbol, "side": idea.side, "entry": idea.entry,
                "sl": idea.sl, "tp": idea.tp, "score": decision.score,
                "range_high": range_.high if range_ else None, "range_low": range_.low if range_ else None,
                "range_type": range_.range_type if range_ else None, "reasons": list(idea.reasons), "why": why}
        self.journal.append("signal", reason=why, **data)
        self._send("range_signal", data)
        self._count("signals")
        self._record(symbol, gate, f"{why}: {decision.summary()}")

    # ================================================================== errors and auto-disable
    def _error(self, error_type: str, message: str, context: dict[str, Any] | None = None) -> None:
        config = self.holder.current.range_scalp
        now = self.clock.now()
        event, tripped = self.errors.record(error_type, message, now, config.max_critical_errors_per_hour, context)
        if event.severity in (Severity.CRITICAL, Severity.HIGH):
            level = logging.CRITICAL if event.severity is Severity.CRITICAL else logging.ERROR
            log.log(level, "range_scalp %s error %s: %s", event.severity.value.upper(), error_type, message)
            self.journal.append("range_error", strategy=STRATEGY, reason=message, error_type=error_type,
                                severity=event.severity.value, context=event.context or None)
            last = self._error_notes.get(error_type)
            if error_type not in _OWN_NOTIFICATION and (last is None or now - last >= ERROR_NOTE_SPACING):
                self._error_notes[error_type] = now  # a disk that stays full must not flood Discord
                self._send("range_error", {"strategy": STRATEGY, **event.to_json()})
        if tripped and self.book.entries_disabled is None:
            self._disable_entries(config, now, event.error_type, message)

    def _disable_entries(self, config: RangeScalpConfig, now: datetime, error_type: str, message: str) -> None:
        count = self.errors.critical_in_window(now)
        errors = tuple(e.to_json() for e in self.errors.history if e.severity is Severity.CRITICAL)[-count:]
        reason = (f"{count} critical errors within an hour (limit {config.max_critical_errors_per_hour}); "
                  f"last: {error_type}: {message}")
        state = DisabledEntries(now, reason, self.fingerprint(config), errors)
        self.book.disable_entries(state)
        self._count("auto_disables")
        self.journal.append("range_entries_disabled", strategy=STRATEGY, reason=reason, errors=list(errors))
        log.critical("range_scalp ENTRIES AUTO-DISABLED: %s. Open trades are still managed. Edit "
                     "config/range_scalp.json (e.g. bump reenable_entries) to re-enable entries.", reason)
        self._send("range_entries_disabled", {
            "strategy": STRATEGY, "reason": reason, "at": now.isoformat(), "errors": list(errors),
            "open_trades": len(self.book.open_trades()),
            "how_to_reenable": "edit config/range_scalp.json (e.g. bump reenable_entries); exits keep running"})

    def _maybe_reenable(self, config: RangeScalpConfig, now: datetime) -> None:
        disabled = self.book.entries_disabled
        if disabled is None or self.fingerprint(config) == disabled.fingerprint:
            return
        self.book.enable_entries()
        self.errors.clear_window()
        self._count("reenables")
        self.journal.append("range_entries_enabled", strategy=STRATEGY, reason="range_scalp.json changed",
                            disabled_at=disabled.at.isoformat())
        log.warning("range_scalp entries RE-ENABLED: range_scalp.json changed since the auto-disable at %s",
                    disabled.at.isoformat())
        self._send("range_entries_enabled", {"strategy": STRATEGY, "disabled_at": disabled.at.isoformat(),
                                             "at": now.isoformat(), "reason": "range_scalp.json changed"})

    def _send(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self._notify_fn(kind, data)
        except Exception:  # a notifier problem must never break the trading loop
            log.exception("range_scalp: notification %s failed", kind)

    # ================================================================== status
    def health(self) -> dict[str, Any]:
        disabled = self.book.entries_disabled
        now = self.clock.now()
        last = self.last_pass
        return {
            "strategy": STRATEGY,
            "recovered": self.recovered,
            "recovery": self.recovery.summary() if self.recovery else None,
            "entries": "DISABLED" if disabled else "enabled",
            "entries_disabled": disabled.to_json() if disabled else None,
            "open_trades": len(self.book.open_trades()),
            "last_exit_pass": self._last_exit_pass.isoformat() if self._last_exit_pass else None,
            "last_pass": None if last is None else {"trades": last.trades, "holds": last.holds, "closed": last.closed,
                                                    "stops_moved": last.stops_moved, "failed": last.failed,
                                                    "skipped_symbols": last.skipped_symbols,
                                                    "engine_ms": last.engine_ms},
            "counters": dict(self.counters),
            "exit_counters": dict(self.exits.counters),
            "errors": {"counts": dict(self.errors.counts), "critical_last_hour": self.errors.count_in_window(now),
                       "recent": self.errors.recent(5)},
            "state": {"saves": self.book.saves, "save_errors": self.book.save_errors,
                      "last_save_error": self.book.last_save_error},
            "last_decisions": dict(self.last_decisions),
            "why_no_trade": self.why.last_summary,
        }


__all__ = ["RangeScalpMonitor", "config_fingerprint", "last_closed_bar_open"]
