"""The range-scalp exit manager: one pass over every open range trade (every 300 s by default).

A pass (``run_pass``):
1. per symbol with open range trades, the market is built ONCE (M5 and H1 bars from the bar
   feed, the H1 ones through the monitor's HourBars (monitors/range_scalp_bars.py), a fresh
   quote, optional order flow) with ``engines.range_scalp.prepare_market``; a symbol whose
   data is missing, stale or bad is skipped this pass (exits fail open: the positions keep
   their broker-side stop and target);
2. ``exit_action`` gives each trade's action (rules and their order: engines/range_exits.py);
3. the actions are carried out by priority, CRITICAL first, then HIGH, MEDIUM, LOW:
   - close: ``executor.close`` up to ``exit_retry_attempts`` times, ``exit_retry_interval_seconds``
     apart (the injected ``sleep``; each executor call itself retries transport failures per
     bot.json). Slippage is bounded: an attempt is only sent while the closing price (bid for a
     buy, ask for a sell) is within ``exit_max_slippage_pct`` % of the price the exit was decided
     at; beyond it the attempt counts as failed. When every attempt failed the operator is told
     once per trade (notification ``close_failed``, journal ``range_close_failed``), the trade
     stays registered and the next pass tries again;
   - move_sl (breakeven): ``executor.modify`` with the stop rounded to the tick; only after the
     broker accepted it is ``apply_exit_action`` recorded (and saved), so the move is sent once
     and never lost; a stop that is already as tight is recorded as made without a request.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable

from config.range_scalp_model import RangeScalpConfig, RangeScalpParams
from engines.range_exits import ExitAction, RangeTrade, apply_exit_action, exit_action, exit_price
from engines.range_market import MarketMemo
from engines.range_scalp import MarketUnavailable, prepare_market
from execution.errors import BrokerError
from feeds.bar_feed import BadBars
from monitors.base import IsoText
from monitors.range_scalp_bars import HourBars
from monitors.range_scalp_recovery import finalize_close
from state.journal import Journal

log = logging.getLogger(__name__)

PRIORITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
Notify = Callable[[str, dict[str, Any]], None]
OnError = Callable[[str, str, dict[str, Any]], None]


@dataclass(frozen=True)
class PlannedExit:
    trade: RangeTrade
    action: ExitAction
    reference_price: float  # where the position would have closed when the exit was decided


@dataclass
class PassReport:
    at: str
    trades: int = 0
    holds: int = 0
    closed: list[int] = field(default_factory=list)
    stops_moved: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped_symbols: dict[str, str] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    engine_ms: float = 0.0  # planning time (market + rules), broker order time excluded


def _priority(item: PlannedExit) -> int:
    """The order in which a pass acts: critical first, an unnamed priority as low."""
    return PRIORITY_ORDER.get(item.action.priority or "low", 9)


def adverse_move_pct(side: str, reference: float, price: float) -> float:
    """How far ``price`` moved against a closing position from ``reference``, in % (0 if in favour)."""
    if reference <= 0:
        return 0.0
    move = reference - price if side == "buy" else price - reference
    return max(0.0, move / reference * 100.0)


class RangeExitManager:
    def __init__(self, book: Any, registry: Any, broker: Any, executor: Any, bar_feed: Any, journal: Journal, *,
                 notify: Notify, on_error: OnError, sleep: Callable[[float], None],
                 flow: Callable[[str], Any] | None = None, perf: Callable[[], float] = time.perf_counter,
                 memo_for: Callable[[str], MarketMemo | None] | None = None,
                 iso_text: IsoText | None = None, hour_bars: HourBars | None = None) -> None:
        """``memo_for(symbol)``: the symbol's engine memo (MarketMemo), shared with the entry
        checks so a step that runs both builds the market once; None: no memo. ``iso_text``:
        the monitor's ISO-time memo (a pass and the step's decisions print the same instant).
        ``hour_bars``: where the H1 bars come from (the monitor's, shared with the entry checks;
        default: one over ``bar_feed``)."""
        self.book = book
        self.registry = registry
        self.broker = broker
        self.executor = executor
        self.bar_feed = bar_feed
        self.journal = journal
        self._notify = notify
        self._on_error = on_error
        self._sleep = sleep
        self._flow = flow
        self._perf = perf
        self._memo_for = memo_for
        self._iso = iso_text or IsoText()
        self._hour_bars = hour_bars or HourBars(bar_feed)
        self.escalated: set[int] = set()  # tickets the operator was told about (until they close)
        self.counters: dict[str, int] = {}

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    # ------------------------------------------------------------------ the pass
    def run_pass(self, cfg: RangeScalpConfig, params_for: Callable[[str], RangeScalpParams],
                 now: datetime) -> PassReport:
        report = PassReport(self._iso(now))  # (positional: a pass is made at every step)
        if not self.book.has_open_trades():  # the common pass: nothing to time, plan or carry out
            self._count("passes")
            return report
        started = self._perf()
        planned = self.plan(params_for, now, report)
        report.engine_ms = round((self._perf() - started) * 1000.0, 3)
        planned.sort(key=_priority)  # the plan's own list: sorted in place
        for item in planned:
            report.actions.append({"ticket": item.trade.ticket, "symbol": item.trade.symbol, "kind": item.action.kind,
                                   "reason": item.action.reason, "priority": item.action.priority})
            try:
                if item.action.kind == "close":
                    (report.closed if self.close(item, cfg, now) else report.failed).append(item.trade.ticket)
                elif item.action.kind == "move_sl":
                    if self.move_stop(item, now):
                        report.stops_moved.append(item.trade.ticket)
            except Exception as exc:  # one trade's surprise must not stop the others' exits
                log.exception("range_scalp exit of ticket %s failed", item.trade.ticket)
                report.failed.append(item.trade.ticket)  # type: ignore[arg-type]
                self._on_error("exit_attempt_failed", f"{type(exc).__name__}: {exc}", {"ticket": item.trade.ticket})
        self._count("passes")
        return report

    def plan(self, params_for: Callable[[str], RangeScalpParams], now: datetime, report: PassReport) -> list[PlannedExit]:
        trades = self.book.open_trades()
        report.trades = len(trades)
        if not trades:  # the common pass (no open range trade): nothing to group, fetch or plan
            return []
        by_symbol: dict[str, list[RangeTrade]] = {}
        for trade in trades:
            by_symbol.setdefault(trade.symbol, []).append(trade)
        planned: list[PlannedExit] = []
        for symbol, group in sorted(by_symbol.items()):
            params = params_for(symbol)
            try:
                market, min_stop = self._market(symbol, params, now)
            except (BrokerError, BadBars, MarketUnavailable, ValueError) as exc:
                report.skipped_symbols[symbol] = str(exc)
                report.holds += len(group)
                log.warning("range_scalp exits for %s held this pass (%d trade(s)): %s", symbol, len(group), exc)
                self._on_error("data_unavailable", f"exits {symbol}: {exc}", {"symbol": symbol})
                continue
            for trade in group:
                try:
                    action = exit_action(trade, market, params, min_stop)
                except Exception as exc:
                    log.exception("range_scalp exit rules failed for ticket %s", trade.ticket)
                    self._on_error("engine_error", f"exit rules, ticket {trade.ticket}: {exc}", {"symbol": symbol})
                    report.holds += 1
                    continue
                if action.kind == "none":
                    report.holds += 1
                    log.debug("range_scalp ticket %s holds: %s", trade.ticket, action.detail)
                    continue
                planned.append(PlannedExit(trade, action, exit_price(trade, market)))
        return planned

    def _market(self, symbol: str, params: RangeScalpParams, now: datetime) -> tuple[Any, float]:
        bars_m5 = self.bar_feed.get(symbol, "M5", params.data.lookback_m5_bars)
        bars_h1 = self._hour_bars.get(symbol, params.data.lookback_h1_bars, now)
        quote = self.broker.quote(symbol)  # its age is not judged: a quiet market's last tick is the price;
        # a dead feed shows as stale bars, which prepare_market refuses (data.max_bar_age_minutes)
        flow = None
        if self._flow is not None:
            try:
                flow = self._flow(symbol)
            except Exception as exc:  # order flow is optional: decide without it
                log.debug("range_scalp %s: no order flow for the exits (%s)", symbol, exc)
        memo = self._memo_for(symbol) if self._memo_for is not None else None
        market = prepare_market(bars_m5, bars_h1, quote, params, symbol, now, flow, memo=memo)
        spec = self.broker.symbol_spec(symbol)
        return market, max(spec.stops_level_points, spec.freeze_level_points) * spec.point

    # ------------------------------------------------------------------ close, with retries
    def close(self, item: PlannedExit, cfg: RangeScalpConfig, now: datetime) -> bool:
        rt, action = item.trade, item.action
        assert rt.ticket is not None
        attempts = max(1, cfg.exit_retry_attempts)
        last_error = ""
        for attempt in range(1, attempts + 1):
            trade = self.registry.get(rt.ticket)
            if trade is None:  # the registry closed it meanwhile (SL/TP): settled by the step
                return self._settle_if_closed(rt, now)
            problem = self._slippage_problem(rt, item.reference_price, cfg.exit_max_slippage_pct)
            if problem is None:
                outcome = self.executor.close(trade, action.reason)
                if outcome.status == "closed":
                    self.escalated.discard(rt.ticket)
                    self._count("closes")
                    finalize_close(self.book, self.journal, rt, outcome.trade, action.reason, now, False,
                                   action.priority, action.detail)
                    return True
                if outcome.status == "already_closed":
                    self.escalated.discard(rt.ticket)
                    return self._settle_if_closed(rt, now)
                problem = f"{outcome.status}: {outcome.reason}"
            last_error = problem
            self._count("close_attempts_failed")
            log.warning("range_scalp close of ticket %d (%s) failed, attempt %d/%d: %s", rt.ticket, action.reason,
                        attempt, attempts, problem)
            if attempt < attempts:
                self._sleep(cfg.exit_retry_interval_seconds)
        self._escalate(rt, action, attempts, last_error)
        return False

    def _slippage_problem(self, rt: RangeTrade, reference: float, bound_pct: float) -> str | None:
        try:
            quote = self.broker.quote(rt.symbol)
        except BrokerError as exc:
            return f"no quote: {exc}"
        price = quote.bid if rt.side == "buy" else quote.ask
        moved = adverse_move_pct(rt.side, reference, price)
        if moved > bound_pct:
            return (f"price {price:g} is {moved:.3f}% worse than {reference:g}, where the exit was decided "
                    f"(bound {bound_pct:g}%)")
        return None

    def _settle_if_closed(self, rt: RangeTrade, now: datetime) -> bool:
        closed = next((t for t in reversed(self.registry.closed_trades("range_scalp")) if t.ticket == rt.ticket), None)
        if closed is None:
            return False  # the position is gone but its deal is not visible yet: the step settles it
        finalize_close(self.book, self.journal, rt, closed, closed.close_reason or "closed", now, False)
        return True

    def _escalate(self, rt: RangeTrade, action: ExitAction, attempts: int, error: str) -> None:
        self._count("close_failed")
        registered = self.registry.get(rt.ticket)
        data = {"client_id": registered.client_id if registered else None, "ticket": rt.ticket,
                "symbol": rt.symbol, "strategy": "range_scalp", "side": rt.side,
                "reason": action.reason, "priority": action.priority, "error": error, "attempts": attempts,
                "action": "manual close required"}
        self.journal.append("range_close_failed", **data)
        log.error("range_scalp could not close ticket %d (%s) after %d attempts: %s; MANUAL CLOSE REQUIRED "
                  "(the next pass tries again)", rt.ticket, action.reason, attempts, error)
        self._on_error("exit_order_fails", f"ticket {rt.ticket}: {error}", {"ticket": rt.ticket, "symbol": rt.symbol})
        if rt.ticket in self.escalated:
            return
        self.escalated.add(rt.ticket)  # type: ignore[arg-type]
        try:
            self._notify("close_failed", data)
        except Exception:
            log.exception("range_scalp: close_failed notification failed")

    # ------------------------------------------------------------------ breakeven stop
    def move_stop(self, item: PlannedExit, now: datetime) -> bool:
        rt, action = item.trade, item.action
        assert rt.ticket is not None and action.new_sl is not None
        trade = self.registry.get(rt.ticket)
        if trade is None:
            return False
        new_sl = self.broker.normalize_price(rt.symbol, action.new_sl)
        tighter = new_sl > trade.sl if rt.side == "buy" else (trade.sl <= 0 or new_sl < trade.sl)
        if not tighter:  # already as tight (moved by hand, or before a crash): record it, send nothing
            self.book.update(replace(rt, sl=trade.sl, breakeven_armed=True), now)
            log.info("range_scalp ticket %d: stop %g already at or beyond the breakeven stop %g", rt.ticket,
                     trade.sl, new_sl)
            return False
        updated = self.executor.modify(trade, new_sl, trade.tp, f"range {action.reason}: {action.detail}")
        if updated is None:
            self._count("stop_move_failures")
            self._on_error("modify_failed", f"ticket {rt.ticket}: breakeven stop {new_sl:g} refused",
                           {"ticket": rt.ticket, "symbol": rt.symbol})
            return False
        self.book.update(apply_exit_action(rt, replace(action, new_sl=updated.sl)), now)
        self._count("stops_moved")
        self._on_error("breakeven_moved", f"ticket {rt.ticket}: stop {trade.sl:g} -> {updated.sl:g}",
                       {"ticket": rt.ticket, "symbol": rt.symbol})
        log.info("range_scalp %s ticket %d: breakeven stop %g -> %g (%s)", rt.symbol, rt.ticket, trade.sl,
                 updated.sl, action.detail)
        return True


__all__ = ["RangeExitManager", "PassReport", "PlannedExit", "PRIORITY_ORDER", "adverse_move_pct"]
