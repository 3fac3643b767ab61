"""The order pipeline: from a strategy's TradeIdea to a registered position, and back out.

open(idea):
  1. a fresh quote and the symbol's contract: spread, staleness, drift from the idea's entry,
     stop side and distance are re-validated (the idea may be seconds old);
  2. the risk manager sizes the trade and reserves its slot atomically;
  3. the intent is journaled (fsynced) with a fresh client id BEFORE anything is sent;
  4. the broker sends it (the adapter retries what is safe to retry, by retcode class);
  5. an unclear outcome is resolved by looking the client id up, never by resending;
  6. the position is confirmed by ticket and registered (persisted), then announced.
Every outcome, including each refusal, is journaled with its reason.
"""
from __future__ import annotations

import logging
import math
import secrets as pysecrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from config.loader import ConfigSnapshot
from engines.types import TradeIdea
from execution.broker import Broker, Deal, OrderResult, Position, validate_client_id
from execution.errors import (BrokerError, BrokerUnavailable, OrderOutcomeUnknown,
                              OrderRejected, TradingDisabled)
from execution.risk import Reservation, RiskManager
from monitors.clock import Clock
from state.journal import Journal
from state.registry import STRATEGIES, Trade, TradeRegistry

log = logging.getLogger(__name__)

STRATEGY_CODES = {"micro_scalp": "ms", "range_scalp": "rs", "order_flow": "of"}
EventSink = Callable[[str, dict[str, Any]], None]


def magic_for(snapshot: ConfigSnapshot, strategy: str) -> int:
    """One magic number per strategy, so positions can be told apart at the broker."""
    return snapshot.bot.execution.magic_base + STRATEGIES.index(strategy) + 1


def new_client_id(strategy: str, now: datetime) -> str:
    """Unique across restarts and processes: strategy code, time in ms (base 36), random suffix."""
    stamp = _base36(int(now.timestamp() * 1000))
    return validate_client_id(f"{STRATEGY_CODES[strategy]}-{stamp}-{pysecrets.token_hex(3)}")


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while value:
        value, rem = divmod(value, 36)
        out = digits[rem] + out
    return out or "0"


@dataclass(frozen=True)
class OpenOutcome:
    """What happened to an idea: ``trade`` when a position was registered, else the reason."""

    status: str  # opened, skipped, rejected, blocked, unknown
    reason: str
    trade: Trade | None = None
    client_id: str | None = None

    @property
    def opened(self) -> bool:
        return self.status == "opened"


@dataclass(frozen=True)
class CloseOutcome:
    status: str  # closed, partial, already_closed, failed
    reason: str
    trade: Trade | None = None


class Executor:
    def __init__(self, broker: Broker, registry: TradeRegistry, risk: RiskManager, journal: Journal,
                 config: Callable[[], ConfigSnapshot], clock: Clock, events: EventSink | None = None,
                 sleep: Callable[[float], None] = time.sleep, perf: Callable[[], float] = time.perf_counter) -> None:
        self.broker = broker
        self.registry = registry
        self.risk = risk
        self.journal = journal
        self._config = config
        self.clock = clock
        self._events = events or (lambda kind, data: None)
        self._sleep = sleep
        self._perf = perf
        self._close_lock = threading.Lock()
        self._closing: set[int] = set()
        self.counters: dict[str, int] = {}
        self.latencies_ms: list[float] = []  # idea received -> order_send call (broker time excluded)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self._events(kind, data)
        except Exception:  # a notifier problem must never break the trade path
            log.exception("event sink failed for %s", kind)

    # ================================================================== entries
    def open(self, idea: TradeIdea) -> OpenOutcome:
        started = self._perf()
        snapshot = self._config()
        execution = snapshot.bot.execution
        now = self.clock.now()
        strategy, symbol = idea.strategy, idea.symbol
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        try:
            spec = self.broker.symbol_spec(symbol)
            quote = self.broker.quote(symbol)
            account = self.broker.account()
        except BrokerError as exc:
            return self._skip(idea, f"broker unavailable before sending: {exc}", status="skipped")

        price = quote.ask if idea.side == "buy" else quote.bid
        problem = self._validate_against_quote(idea, quote, spec, price, now, snapshot)
        if problem:
            return self._skip(idea, problem)

        decision = self.risk.check_and_reserve(strategy, symbol, spec, account, price, idea.sl, now)
        if not decision.approved or decision.reservation is None:
            return self._skip(idea, "risk: " + "; ".join(decision.reasons), status="rejected")
        reservation = decision.reservation
        client_id = new_client_id(strategy, now)
        magic = magic_for(snapshot, strategy)
        self.journal.append("intent", durable=True, client_id=client_id, symbol=symbol, strategy=strategy,
                            side=idea.side, volume=reservation.volume, entry=price, sl=idea.sl, tp=idea.tp,
                            magic=magic, reason="; ".join(idea.reasons))
        self.latencies_ms.append((self._perf() - started) * 1000.0)
        try:
            result: OrderResult | Position | Deal = self.broker.market_order(
                symbol, idea.side, reservation.volume, idea.sl, idea.tp, magic, client_id,
                execution.deviation_points)
        except TradingDisabled as exc:
            self.risk.release(reservation)
            self._count("blocked")
            self.journal.append("rejected", client_id=client_id, symbol=symbol, strategy=strategy,
                                reason=f"trading disabled: {exc}")
            self._emit("trading_blocked", {"symbol": symbol, "strategy": strategy, "instruction": exc.instruction})
            log.error("entries blocked: %s", exc)
            return OpenOutcome("blocked", str(exc), client_id=client_id)
        except OrderRejected as exc:
            self.risk.release(reservation)
            self._count("rejected")
            self.journal.append("rejected", client_id=client_id, symbol=symbol, strategy=strategy,
                                reason=f"{exc.retcode}: {exc.reason}")
            self._emit("order_rejected", {"symbol": symbol, "strategy": strategy, "side": idea.side,
                                          "retcode": exc.retcode, "reason": exc.reason})
            log.warning("%s %s %s rejected: %s", strategy, symbol, idea.side, exc.reason)
            return OpenOutcome("rejected", exc.reason, client_id=client_id)
        except BrokerUnavailable as exc:
            # The adapter raises this only when nothing was sent, or the send was verified absent
            # by client id (OrderNotPlaced): the slot is free again.
            self.risk.release(reservation)
            self._count("not_placed")
            self.journal.append("rejected", client_id=client_id, symbol=symbol, strategy=strategy,
                                reason=f"not placed: {exc}")
            log.warning("%s %s %s not placed: %s", strategy, symbol, idea.side, exc)
            return OpenOutcome("rejected", f"not placed: {exc}", client_id=client_id)
        except OrderOutcomeUnknown as exc:
            found = self._resolve_unknown(client_id, now, execution.entry_expiry_seconds)
            if found is None:
                # Keep the reservation: the slot stays taken until the reconciler settles it.
                self._count("unknown")
                self.journal.append("unknown", client_id=client_id, symbol=symbol, strategy=strategy,
                                    reason=f"order outcome unknown after {execution.entry_expiry_seconds:g} s: {exc}")
                self._emit("order_unknown", {"symbol": symbol, "strategy": strategy, "client_id": client_id})
                log.error("%s %s: outcome of %s unknown (%s); no resend, the reconciler settles it",
                          strategy, symbol, client_id, exc)
                return OpenOutcome("unknown", str(exc), client_id=client_id)
            self._count("resolved_by_lookup")
            result = found
        trade = self._register(idea, result, reservation, client_id, magic, now)
        if trade is None:
            return OpenOutcome("rejected", "filled but the position could not be confirmed", client_id=client_id)
        return OpenOutcome("opened", "filled", trade, client_id)

    def _validate_against_quote(self, idea: TradeIdea, quote: Any, spec: Any, price: float, now: datetime,
                                snapshot: ConfigSnapshot) -> str | None:
        execution = snapshot.bot.execution
        if not (math.isfinite(quote.bid) and math.isfinite(quote.ask)) or quote.bid <= 0 or quote.ask < quote.bid:
            return f"bad quote bid={quote.bid} ask={quote.ask}"
        age = (now - quote.time).total_seconds()
        if age > execution.max_quote_age_seconds:
            return f"stale quote: {age:.0f} s old (limit {execution.max_quote_age_seconds:g} s)"
        spread_points = (quote.ask - quote.bid) / spec.point if spec.point else 0.0
        if execution.max_spread_points is not None and spread_points > execution.max_spread_points:
            return f"spread {spread_points:.0f} points above the cap of {execution.max_spread_points:g}"
        atr = idea.meta.get("atr")
        if isinstance(atr, (int, float)) and atr > 0:
            allowed = execution.max_entry_drift_atr * atr
            basis = f"{execution.max_entry_drift_atr:g} ATR"
        else:
            allowed = execution.max_entry_drift_r * idea.risk_distance
            basis = f"{execution.max_entry_drift_r:g} R"
        drift = abs(price - idea.entry)
        if drift > allowed:
            return f"price moved {drift:g} from the idea's entry {idea.entry:g} (limit {allowed:g} = {basis})"
        if idea.side == "buy" and not (idea.sl < quote.bid and idea.tp > price):
            return f"stops on the wrong side of the fresh price: sl {idea.sl:g} tp {idea.tp:g} bid {quote.bid:g} ask {price:g}"
        if idea.side == "sell" and not (idea.sl > quote.ask and idea.tp < price):
            return f"stops on the wrong side of the fresh price: sl {idea.sl:g} tp {idea.tp:g} ask {quote.ask:g} bid {price:g}"
        min_distance = spec.stops_level_points * spec.point
        if min_distance and abs(price - idea.sl) < min_distance:
            return f"stop distance {abs(price - idea.sl):g} inside the broker's stops level {min_distance:g}"
        return None

    def _skip(self, idea: TradeIdea, reason: str, status: str = "skipped") -> OpenOutcome:
        self._count(status)
        self.journal.append(status, symbol=idea.symbol, strategy=idea.strategy, side=idea.side, reason=reason)
        log.info("%s %s %s %s: %s", idea.strategy, idea.symbol, idea.side, status, reason)
        return OpenOutcome(status, reason)

    def _resolve_unknown(self, client_id: str, since: datetime, expiry_seconds: float) -> Position | Deal | None:
        """Look the client id up until the entry expires; never resend."""
        deadline = self.clock.monotonic() + expiry_seconds
        attempt = 0
        while True:
            try:
                found = self.broker.find_by_client_id(client_id, since - timedelta(minutes=1))
                if found is not None:
                    return found
            except BrokerError as exc:
                log.warning("client id lookup for %s failed: %s", client_id, exc)
            attempt += 1
            if self.clock.monotonic() >= deadline:
                return None
            self._sleep(min(0.5 * attempt, 2.0))

    def _register(self, idea: TradeIdea, result: OrderResult | Position | Deal, reservation: Reservation,
                  client_id: str, magic: int, now: datetime) -> Trade | None:
        requested = reservation.volume
        ticket, price, volume = self._fill_of(result)
        position = self.broker.position(ticket) if ticket else None
        if position is not None:
            price, volume, sl, tp = position.price_open, position.volume, position.sl, position.tp
        else:
            sl, tp = idea.sl, idea.tp
        if not ticket:
            self.risk.confirm(reservation, now)  # it filled: it counts as an entry, the reconciler adopts it
            self.journal.append("error", client_id=client_id, symbol=idea.symbol, strategy=idea.strategy,
                                reason=f"filled but no position ticket in {result!r}")
            log.error("%s filled without a position ticket; the reconciler will adopt it", client_id)
            return None
        trade = Trade(ticket=ticket, client_id=client_id, strategy=idea.strategy, symbol=idea.symbol,
                      side=idea.side, volume=volume, entry=price, sl=sl, tp=tp, initial_sl=sl, magic=magic,
                      opened_at=now.isoformat(), reasons=tuple(idea.reasons), meta=dict(idea.meta))
        self.risk.confirm(reservation, now, trade)
        partial = volume + 1e-9 < requested
        self._count("opened")
        self.journal.append("opened", client_id=client_id, ticket=ticket, symbol=idea.symbol,
                            strategy=idea.strategy, side=idea.side, volume=volume, entry=price, sl=sl, tp=tp,
                            reason="partial fill" if partial else None)
        log.info("%s opened %s %s %.2f @ %g sl %g tp %g (ticket %d, %s)%s", idea.strategy, idea.side,
                 idea.symbol, volume, price, sl, tp, ticket, client_id, " PARTIAL" if partial else "")
        self._emit("trade_opened", {**trade.to_json(), "requested_volume": requested})
        if position is None:
            # It filled but is already gone (a stop hit within the same instant): settle it now.
            self.sync_closed()
        return self.registry.get(ticket) or trade

    @staticmethod
    def _fill_of(result: OrderResult | Position | Deal) -> tuple[int, float, float]:
        if isinstance(result, OrderResult):
            return int(result.position or 0), result.price, result.volume
        if isinstance(result, Position):
            return result.ticket, result.price_open, result.volume
        return int(result.position_id), result.price, result.volume

    # ================================================================== exits
    def close(self, trade: Trade, reason: str, volume: float | None = None) -> CloseOutcome:
        """Close all (or ``volume`` of) a trade, retrying a bounded number of times."""
        with self._close_lock:
            if trade.ticket in self._closing:
                return CloseOutcome("failed", "a close of this ticket is already in progress", trade)
            self._closing.add(trade.ticket)
        try:
            return self._close(trade, reason, volume)
        finally:
            with self._close_lock:
                self._closing.discard(trade.ticket)

    def _close(self, trade: Trade, reason: str, volume: float | None) -> CloseOutcome:
        execution = self._config().bot.execution
        close_id = validate_client_id(f"{trade.client_id[:27]}-x")
        last_error = ""
        for attempt in range(1, execution.close_retries + 1):
            try:
                result = self.broker.close_position(trade.ticket, volume, trade.magic, close_id,
                                                    execution.deviation_points)
            except (OrderRejected, BrokerUnavailable, OrderOutcomeUnknown, TradingDisabled) as exc:
                last_error = str(exc)
                if self.broker.position(trade.ticket) is None:  # it is gone: settled by the deal history
                    self.sync_closed()
                    return CloseOutcome("already_closed", last_error, self.registry.get(trade.ticket) or trade)
                log.warning("close of %d failed (attempt %d/%d): %s", trade.ticket, attempt,
                            execution.close_retries, exc)
                if attempt < execution.close_retries:
                    self._sleep(execution.close_retry_delay_seconds)
                continue
            return self._record_close(trade, result, reason, volume)
        self._count("close_failed")
        self.journal.append("close_failed", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                            strategy=trade.strategy, reason=f"{reason}: {last_error}")
        self._emit("close_failed", {"ticket": trade.ticket, "symbol": trade.symbol, "strategy": trade.strategy,
                                    "reason": reason, "error": last_error})
        log.error("could not close ticket %d after %d attempts: %s", trade.ticket, execution.close_retries, last_error)
        return CloseOutcome("failed", last_error, trade)

    def _record_close(self, trade: Trade, result: OrderResult, reason: str, volume: float | None) -> CloseOutcome:
        now = self.clock.now()
        remaining = self.broker.position(trade.ticket)
        if remaining is not None and volume is not None:
            updated = self.registry.update(
                trade.ticket, volume=remaining.volume,
                partial_closes=trade.partial_closes + ({"volume": result.volume, "price": result.price,
                                                        "at": now.isoformat(), "reason": reason},))
            self.journal.append("partial_close", client_id=trade.client_id, ticket=trade.ticket,
                                symbol=trade.symbol, strategy=trade.strategy, volume=result.volume,
                                price=result.price, reason=reason)
            return CloseOutcome("partial", reason, updated)
        pnl = self._realised_pnl(trade, now)
        closed = self.registry.close(trade.ticket, result.price, now, pnl, reason)
        self._announce_close(closed)
        return CloseOutcome("closed", reason, closed)

    def modify(self, trade: Trade, sl: float | None, tp: float | None, reason: str) -> Trade | None:
        try:
            result = self.broker.modify_sltp(trade.ticket, sl, tp)
        except BrokerError as exc:
            self.journal.append("modify_failed", client_id=trade.client_id, ticket=trade.ticket,
                                symbol=trade.symbol, strategy=trade.strategy, reason=f"{reason}: {exc}")
            log.warning("modify of %d failed: %s", trade.ticket, exc)
            return None
        new_sl = result.sl or (sl if sl is not None else trade.sl)
        new_tp = result.tp or (tp if tp is not None else trade.tp)
        updated = self.registry.update(trade.ticket, sl=new_sl, tp=new_tp)
        self.journal.append("modified", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                            strategy=trade.strategy, sl=new_sl, tp=new_tp, reason=reason)
        return updated

    def _realised_pnl(self, trade: Trade, now: datetime) -> float | None:
        try:
            opened = datetime.fromisoformat(trade.opened_at)
            deals = self.broker.deals(opened - timedelta(minutes=5), now + timedelta(minutes=1), position=trade.ticket)
        except BrokerError:
            return None
        return sum(d.profit + d.commission + d.swap + d.fee for d in deals)

    def _announce_close(self, closed: Trade) -> None:
        self._count("closed")
        self.journal.append("closed", client_id=closed.client_id, ticket=closed.ticket, symbol=closed.symbol,
                            strategy=closed.strategy, side=closed.side, volume=closed.volume,
                            exit=closed.exit_price, pnl=closed.pnl, r=closed.r, reason=closed.close_reason)
        log.info("%s closed %s %s ticket %d @ %g: P&L %s, R %s (%s)", closed.strategy, closed.side, closed.symbol,
                 closed.ticket, closed.exit_price or 0.0, closed.pnl, closed.r, closed.close_reason)
        self._emit("trade_closed", closed.to_json())

    def sync_closed(self, strategy: str | None = None) -> list[Trade]:
        """Record registry trades whose position is gone at the broker (SL, TP, manual close).

        Exit price, P&L and the reason come from the closing deals. A failed query is never
        taken as "no position": on a broker error nothing is changed.
        """
        open_trades = self.registry.open_trades(strategy)
        if not open_trades:
            return []
        try:
            alive = {p.ticket for p in self.broker.positions()}
        except BrokerError as exc:
            log.warning("cannot check for closed positions: %s", exc)
            return []
        closed: list[Trade] = []
        now = self.clock.now()
        for trade in open_trades:
            if trade.ticket in alive:
                continue
            try:
                opened = datetime.fromisoformat(trade.opened_at)
                deals = self.broker.deals(opened - timedelta(minutes=5), now + timedelta(minutes=1),
                                          position=trade.ticket)
            except BrokerError as exc:
                log.warning("cannot read deals of %d: %s", trade.ticket, exc)
                continue
            exits = [d for d in deals if d.entry in ("out", "out_by", "inout")]
            if not exits:
                continue  # not visible in the history yet; look again next time
            last = max(exits, key=lambda d: d.time)
            volume = sum(d.volume for d in exits)
            price = sum(d.price * d.volume for d in exits) / volume if volume else last.price
            pnl = sum(d.profit + d.commission + d.swap + d.fee for d in deals)
            if self.registry.get(trade.ticket) is None:
                continue  # closed meanwhile by another thread
            record = self.registry.close(trade.ticket, round(price, 10), last.time, pnl, f"broker:{last.reason}")
            self._announce_close(record)
            closed.append(record)
        return closed

    def health(self) -> dict[str, Any]:
        blocked = getattr(self.broker, "entries_blocked", lambda: None)()
        return {"counters": dict(self.counters), "entries_blocked": blocked}
