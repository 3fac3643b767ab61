"""The order pipeline: from a strategy's TradeIdea to a registered position, and back out.

open(idea, created_at=None):
  0. the trading state (``execution/trading_state.py``) may refuse entries (REDUCING, HALTED),
     and an idea older than ``execution.entry_expiry_seconds`` is never sent (no late entries);
  1. a fresh quote and the symbol's contract: spread, staleness, drift from the idea's entry,
     stop side and distance are re-validated (the idea may be seconds old);
  2. the risk manager sizes the trade and reserves its slot atomically;
  3. the intent (with the idea's meta) is journaled (fsynced) with a fresh client id BEFORE
     anything is sent;
  4. the broker sends it (the adapter retries what is safe to retry, by retcode class);
  5. an unclear outcome is resolved by looking the client id up, never by resending; if it
     stays unclear the reservation is kept and the reconciler settles it later (adopt or release);
  6. the position is confirmed by ticket and registered (persisted), then announced.
Every outcome, including each refusal, is journaled with its reason.

close(trade, reason): bounded retries inside the call; a close that still fails is recorded on
the trade (``meta.pending_exit``, persisted), retried by the reconciler with a doubling back-off
until done, and escalated once (``exit_escalated``) after ``exit_escalate_after_failures`` calls.

modify(trade, sl, tp): the new stops are persisted as ``meta.pending_modify`` before the request
goes out, so after a crash the reconciler can tell "our modify reached the broker" from "the
broker's stops differ from ours".
"""
from __future__ import annotations

import logging
import math
import secrets as pysecrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping

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
EXIT_DEAL_ENTRIES = ("out", "out_by", "inout")


def magic_for(snapshot: ConfigSnapshot, strategy: str) -> int:
    """One magic number per strategy, so positions can be told apart at the broker."""
    return snapshot.bot.execution.magic_base + STRATEGIES.index(strategy) + 1


def strategy_magics(snapshot: ConfigSnapshot) -> dict[int, str]:
    """{magic: strategy} for every strategy (the reconciler's "ours")."""
    return {magic_for(snapshot, strategy): strategy for strategy in STRATEGIES}


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


def idea_created_at(idea: TradeIdea, created_at: datetime | None = None) -> datetime | None:
    """When the idea was formed: the ``created_at`` argument, else ``idea.meta['created_at']``
    (an aware datetime, an ISO string or epoch seconds), else None (unknown: no expiry check)."""
    value: Any = created_at if created_at is not None else idea.meta.get("created_at")
    if value is None:
        return None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        when = datetime.fromtimestamp(float(value), tz=timezone.utc)
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"idea.meta['created_at'] {value!r} is not an ISO time") from None
    else:
        raise ValueError(f"idea created_at must be a datetime, ISO text or epoch seconds, got {type(value).__name__}")
    if when.tzinfo is None:
        raise ValueError(f"idea created_at {value!r} has no time zone; the bot works in UTC")
    return when


@dataclass(frozen=True)
class OpenOutcome:
    """What happened to an idea: ``trade`` when a position was registered, else the reason."""

    status: str  # opened, skipped, rejected, blocked, halted, unknown
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


@dataclass(frozen=True)
class UnknownOrder:
    """An entry whose send outcome stayed unclear: its reservation is kept until settled."""

    client_id: str
    idea: TradeIdea
    reservation: Reservation
    magic: int
    sent_at: datetime


class Executor:
    def __init__(self, broker: Broker, registry: TradeRegistry, risk: RiskManager, journal: Journal,
                 config: Callable[[], ConfigSnapshot], clock: Clock, events: EventSink | None = None,
                 sleep: Callable[[float], None] = time.sleep, perf: Callable[[], float] = time.perf_counter,
                 trading_state: Any = None, on_fill: Callable[[str], None] | None = None,
                 id_factory: Callable[[str, datetime], str] = new_client_id) -> None:
        """``trading_state``: a ``TradingGuard`` asked before every entry and told about every
        order and failure (None: no protections). ``on_fill(reason)``: called after every fill
        and close (the reconciler's ``request``), so a prompt reconciliation follows."""
        self.broker = broker
        self.registry = registry
        self.risk = risk
        self.journal = journal
        self._config = config
        self.clock = clock
        self._events = events or (lambda kind, data: None)
        self._sleep = sleep
        self._perf = perf
        self._new_client_id = id_factory  # backtests pass a counter: same inputs, same ids
        # "Is a close of this ticket in the journal already?" (the reconciler plugs its journal
        # index in; without one every close is journaled).
        self.journaled_closed: Callable[[int], bool] = lambda ticket: False
        # "Which reason did we send the close with this comment for?" (the reconciler's journal
        # index again; a close recorded from the deals after a restart keeps its real reason).
        self.close_reason: Callable[[str], str | None] = lambda close_id: None
        self.trading_state = trading_state
        self.on_fill = on_fill
        self._close_lock = threading.Lock()
        self._closing: set[int] = set()
        self._ticket_locks: dict[int, threading.RLock] = {}
        self._settle_lock = threading.RLock()
        self._inflight: set[str] = set()
        self._unknown: dict[str, UnknownOrder] = {}
        self._orders_lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.latencies_ms: list[float] = []  # idea received -> order_send call (broker time excluded)
        # Trade requests sent to the broker (entries, closes, modifies), counted before each send:
        # a reader of the account (the backtest's equity sampling) can tell that nothing traded.
        self.orders_sent = 0

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self._events(kind, data)
        except Exception:  # a notifier problem must never break the trade path
            log.exception("event sink failed for %s", kind)

    def _note_order(self, kind: str) -> None:
        with self._orders_lock:  # monitors send from their own threads: no increment may be lost
            self.orders_sent += 1
        if self.trading_state is not None:
            self.trading_state.note_order(kind, self.clock.now())

    def _note_failure(self, kind: str, detail: str) -> None:
        if self.trading_state is not None:
            try:
                self.trading_state.note_order_failure(kind, detail, self.clock.now())
            except Exception:
                log.exception("trading state could not record a failure")

    def _filled(self, reason: str) -> None:
        if self.on_fill is not None:
            try:
                self.on_fill(reason)
            except Exception:
                log.exception("on_fill hook failed")

    # ================================================================== entries
    def entry_block_reason(self) -> str | None:
        """Why entries are refused right now (trading state), or None: monitors may skip their
        entry scan early with this; ``open`` checks it again anyway."""
        if self.trading_state is None:
            return None
        return self.trading_state.entry_block(self.clock.now())

    def open(self, idea: TradeIdea, created_at: datetime | None = None) -> OpenOutcome:
        """``created_at``: when the idea was formed (else ``idea.meta['created_at']``); an idea
        older than ``execution.entry_expiry_seconds`` when its order would go out is dropped."""
        started = self._perf()
        snapshot = self._config()
        execution = snapshot.bot.execution
        now = self.clock.now()
        strategy, symbol = idea.strategy, idea.symbol
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        born = idea_created_at(idea, created_at)
        if self.trading_state is not None:
            block = self.trading_state.entry_block(now)
            if block:
                return self._skip(idea, block, status="halted")
        expired = self._expired(born, now, execution.entry_expiry_seconds)
        if expired:
            return self._skip(idea, expired, event="expired")
        try:
            spec = self.broker.symbol_spec(symbol)
            quote = self.broker.quote(symbol)
            account = self.broker.account()
        except BrokerError as exc:
            return self._skip(idea, f"broker unavailable before sending: {exc}", status="skipped")

        price = quote.ask if idea.side == "buy" else quote.bid
        problem = self._validate_against_quote(idea, quote, spec, price, self.clock.now(), snapshot)
        if problem:
            return self._skip(idea, problem)

        decision = self.risk.check_and_reserve(strategy, symbol, spec, account, price, idea.sl, now)
        if not decision.approved or decision.reservation is None:
            # Refused before any order existed: its own event, with no client id to audit.
            return self._skip(idea, "risk: " + "; ".join(decision.reasons), status="rejected", event="risk_refused")
        reservation = decision.reservation
        expired = self._expired(born or now, self.clock.now(), execution.entry_expiry_seconds)
        if expired:  # the checks above took too long (a slow terminal): no late entry
            self.risk.release(reservation)
            return self._skip(idea, expired, event="expired")
        client_id = validate_client_id(self._new_client_id(strategy, now))
        magic = magic_for(snapshot, strategy)
        with self._orders_lock:
            self._inflight.add(client_id)
        try:
            return self._send_entry(idea, spec, price, reservation, client_id, magic, now, started, snapshot)
        finally:
            with self._orders_lock:
                self._inflight.discard(client_id)

    @staticmethod
    def _expired(born: datetime | None, now: datetime, limit: float) -> str | None:
        if born is None:
            return None
        age = (now - born).total_seconds()
        if age > limit:
            return f"expired: the idea is {age:.1f} s old (entry_expiry_seconds {limit:g}); no late entries"
        return None

    def _send_entry(self, idea: TradeIdea, spec: Any, price: float, reservation: Reservation, client_id: str,
                    magic: int, now: datetime, started: float, snapshot: ConfigSnapshot) -> OpenOutcome:
        execution = snapshot.bot.execution
        strategy, symbol = idea.strategy, idea.symbol
        self.journal.append("intent", durable=True, client_id=client_id, symbol=symbol, strategy=strategy,
                            side=idea.side, volume=reservation.volume, entry=price, sl=idea.sl, tp=idea.tp,
                            magic=magic, reason="; ".join(idea.reasons), meta=_json_safe(idea.meta) or None)
        self.latencies_ms.append((self._perf() - started) * 1000.0)
        self._note_order("entry")
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
            self._note_failure("entry_blocked", str(exc))
            log.error("entries blocked: %s", exc)
            return OpenOutcome("blocked", str(exc), client_id=client_id)
        except OrderRejected as exc:
            self.risk.release(reservation)
            self._count("rejected")
            self.journal.append("rejected", client_id=client_id, symbol=symbol, strategy=strategy,
                                reason=f"{exc.retcode}: {exc.reason}")
            self._emit("order_rejected", {"symbol": symbol, "strategy": strategy, "side": idea.side,
                                          "retcode": exc.retcode, "reason": exc.reason})
            self._note_failure("entry_rejected", f"{symbol} {exc.retcode}: {exc.reason}")
            log.warning("%s %s %s rejected: %s", strategy, symbol, idea.side, exc.reason)
            return OpenOutcome("rejected", exc.reason, client_id=client_id)
        except BrokerUnavailable as exc:
            # The adapter raises this only when nothing was sent, or the send was verified absent
            # by client id (OrderNotPlaced); the circuit breaker raises it without sending: the
            # slot is free again.
            self.risk.release(reservation)
            self._count("not_placed")
            self.journal.append("rejected", client_id=client_id, symbol=symbol, strategy=strategy,
                                reason=f"not placed: {exc}")
            self._note_failure("entry_not_placed", f"{symbol}: {exc}")
            log.warning("%s %s %s not placed: %s", strategy, symbol, idea.side, exc)
            return OpenOutcome("rejected", f"not placed: {exc}", client_id=client_id)
        except OrderOutcomeUnknown as exc:
            found = self._resolve_unknown(client_id, now, execution.entry_expiry_seconds)
            if found is None:
                # Keep the reservation: the slot stays taken until the reconciler settles it.
                with self._orders_lock:
                    self._unknown[client_id] = UnknownOrder(client_id, idea, reservation, magic, now)
                self._count("unknown")
                self.journal.append("unknown", client_id=client_id, symbol=symbol, strategy=strategy,
                                    reason=f"order outcome unknown after {execution.entry_expiry_seconds:g} s: {exc}")
                self._emit("order_unknown", {"symbol": symbol, "strategy": strategy, "client_id": client_id})
                self._note_failure("entry_unknown", f"{symbol}: {exc}")
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

    def _skip(self, idea: TradeIdea, reason: str, status: str = "skipped", event: str | None = None) -> OpenOutcome:
        self._count(event or status)
        self.journal.append(event or status, symbol=idea.symbol, strategy=idea.strategy, side=idea.side,
                            reason=reason)
        log.info("%s %s %s %s: %s", idea.strategy, idea.symbol, idea.side, event or status, reason)
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
                  client_id: str, magic: int, now: datetime, note: str | None = None) -> Trade | None:
        requested = reservation.volume
        ticket, price, volume = self._fill_of(result)
        position = self.broker.position(ticket) if ticket else None
        if position is not None:
            price, volume, sl, tp = position.price_open, position.volume, position.sl, position.tp
        else:
            sl, tp = idea.sl, idea.tp
        if not ticket:
            self.risk.confirm(reservation, now, client_id=client_id)  # it filled: it counts, the reconciler adopts it
            self.journal.append("error", client_id=client_id, symbol=idea.symbol, strategy=idea.strategy,
                                reason=f"filled but no position ticket in {result!r}")
            log.error("%s filled without a position ticket; the reconciler will adopt it", client_id)
            return None
        existing = self.registry.get(ticket)
        if existing is not None:  # adopted meanwhile (the reconciler): never register it twice
            self.risk.confirm(reservation, now, client_id=client_id)
            log.warning("ticket %d (%s) was already registered (%s); not registered again", ticket, client_id,
                        existing.client_id)
            return existing
        trade = Trade(ticket=ticket, client_id=client_id, strategy=idea.strategy, symbol=idea.symbol,
                      side=idea.side, volume=volume, entry=price, sl=sl, tp=tp, initial_sl=sl, magic=magic,
                      opened_at=now.isoformat(), reasons=tuple(idea.reasons), meta=dict(idea.meta))
        self.risk.confirm(reservation, now, trade)
        partial = volume + 1e-9 < requested
        self._count("opened")
        reason = "; ".join(r for r in (note, "partial fill" if partial else None) if r) or None
        self.journal.append("opened", client_id=client_id, ticket=ticket, symbol=idea.symbol,
                            strategy=idea.strategy, side=idea.side, volume=volume, entry=price, sl=sl, tp=tp,
                            reason=reason)
        log.info("%s opened %s %s %.2f @ %g sl %g tp %g (ticket %d, %s)%s", idea.strategy, idea.side,
                 idea.symbol, volume, price, sl, tp, ticket, client_id, " PARTIAL" if partial else "")
        self._emit("trade_opened", {**trade.to_json(), "requested_volume": requested})
        if position is None:
            # It filled but is already gone (a stop hit within the same instant): settle it now.
            self.sync_closed()
        self._filled("fill")
        return self.registry.get(ticket) or trade

    @staticmethod
    def _fill_of(result: OrderResult | Position | Deal) -> tuple[int, float, float]:
        if isinstance(result, OrderResult):
            return int(result.position or 0), result.price, result.volume
        if isinstance(result, Position):
            return result.ticket, result.price_open, result.volume
        return int(result.position_id), result.price, result.volume

    # ------------------------------------------------------------------ unclear entries (reconciler)
    def inflight_client_ids(self) -> set[str]:
        """Client ids between their intent and their registration (the reconciler must not adopt them)."""
        with self._orders_lock:
            return set(self._inflight)

    def unknown_orders(self) -> list[UnknownOrder]:
        with self._orders_lock:
            return list(self._unknown.values())

    def settle_unknown(self, client_id: str, found: Position | Deal | None, detail: str = "") -> str:
        """Settle an unclear entry: ``found`` (by client id) registers it with its reservation;
        None releases the reservation. Returns ``adopted``, ``released`` or ``not_pending``."""
        with self._orders_lock:
            entry = self._unknown.pop(client_id, None)
        if entry is None:
            return "not_pending"
        idea = entry.idea
        if found is None:
            self.risk.release(entry.reservation)
            self._count("unknown_released")
            self.journal.append("unknown_released", client_id=client_id, symbol=idea.symbol, strategy=idea.strategy,
                                reason=detail or "not found at the broker by client id: nothing was placed")
            log.warning("%s: not found at the broker; its reservation is released (%s)", client_id, detail)
            return "released"
        self._count("unknown_adopted")
        self._register(idea, found, entry.reservation, client_id, entry.magic, entry.sent_at,
                       note=detail or "unclear send settled by client id lookup")
        return "adopted"

    # ================================================================== exits
    def busy(self, ticket: int) -> bool:
        """A close of this ticket is under way (the reconciler leaves it alone)."""
        with self._close_lock:
            return ticket in self._closing

    def _ticket_lock(self, ticket: int) -> threading.RLock:
        with self._close_lock:
            lock = self._ticket_locks.get(ticket)
            if lock is None:
                lock = self._ticket_locks[ticket] = threading.RLock()
            return lock

    @contextmanager
    def ticket_guard(self, ticket: int) -> Iterator[bool]:
        """Hold the ticket's modify lock without waiting: yields False when another thread is
        modifying or closing it (the caller skips the ticket this time)."""
        lock = self._ticket_lock(ticket)
        acquired = lock.acquire(blocking=False)
        try:
            yield acquired and not self.busy(ticket)
        finally:
            if acquired:
                lock.release()

    def close(self, trade: Trade, reason: str, volume: float | None = None, retries: int | None = None) -> CloseOutcome:
        """Close all (or ``volume`` of) a trade, retrying ``retries`` (default
        ``execution.close_retries``) times inside this call."""
        with self._close_lock:
            if trade.ticket in self._closing:
                return CloseOutcome("failed", "a close of this ticket is already in progress", trade)
            self._closing.add(trade.ticket)
        try:
            return self._close(trade, reason, volume, retries)
        finally:
            gone = self.registry.get(trade.ticket) is None
            with self._close_lock:
                self._closing.discard(trade.ticket)
                if gone:  # closed: its modify lock is not needed any more
                    self._ticket_locks.pop(trade.ticket, None)

    def _close(self, trade: Trade, reason: str, volume: float | None, retries: int | None) -> CloseOutcome:
        execution = self._config().bot.execution
        attempts = retries or execution.close_retries
        # One comment per close call (partials included), from the market time of the call: it
        # never depends on the registry (which may lag the broker after a crash), so a lost reply
        # is never "found" as an earlier partial close's deal. Deterministic in backtests.
        stamp = _base36(int(self.clock.now().timestamp() * 1000))[-6:]
        close_id = validate_client_id(f"{trade.client_id[:20]}-x{stamp}")
        # Said before sending, so that if the process dies before the answer, the reconciler
        # records the close (found in the deals by its comment) with this reason, not "expert".
        self.journal.append("close_sent", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                            strategy=trade.strategy, close_id=close_id, reason=reason, volume=volume)
        last_error = ""
        for attempt in range(1, attempts + 1):
            self._note_order("close")
            try:
                result = self.broker.close_position(trade.ticket, volume, trade.magic, close_id,
                                                    execution.deviation_points)
            except (OrderRejected, BrokerUnavailable, OrderOutcomeUnknown, TradingDisabled) as exc:
                last_error = str(exc)
                try:
                    gone = self.broker.position(trade.ticket) is None
                except BrokerError:
                    gone = False  # cannot tell: never take a failed query as "closed"
                if gone:  # it is gone: settled by the deal history
                    self.sync_closed(skip_busy=False, only=trade.ticket)
                    return CloseOutcome("already_closed", last_error, self.registry.get(trade.ticket) or trade)
                log.warning("close of %d failed (attempt %d/%d): %s", trade.ticket, attempt, attempts, exc)
                if attempt < attempts:
                    self._sleep(execution.close_retry_delay_seconds)
                continue
            return self._record_close(trade, result, reason, volume)
        self._count("close_failed")
        self.journal.append("close_failed", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                            strategy=trade.strategy, reason=f"{reason}: {last_error}")
        self._emit("close_failed", {"ticket": trade.ticket, "symbol": trade.symbol, "strategy": trade.strategy,
                                    "reason": reason, "error": last_error})
        self._note_failure("close_failed", f"ticket {trade.ticket}: {last_error}")
        log.error("could not close ticket %d after %d attempts: %s", trade.ticket, attempts, last_error)
        if volume is None:
            self._record_pending_exit(trade, reason, last_error)
        return CloseOutcome("failed", last_error, trade)

    def _record_pending_exit(self, trade: Trade, reason: str, error: str) -> None:
        """Persist the failed exit on the trade, schedule its retry with a doubling back-off and
        escalate once when it keeps failing."""
        reliability = self._config().bot.reliability
        now = self.clock.now()
        current = self.registry.get(trade.ticket)
        if current is None:
            return
        previous = current.meta.get("pending_exit") or {}
        failures = int(previous.get("failures", 0)) + 1
        delay = min(reliability.exit_retry_max_seconds, reliability.exit_retry_base_seconds * 2 ** (failures - 1))
        escalate = failures >= reliability.exit_escalate_after_failures and not previous.get("escalated")
        pending = {"reason": previous.get("reason") or reason, "since": previous.get("since") or now.isoformat(),
                   "failures": failures, "last_error": error, "escalated": bool(previous.get("escalated") or escalate),
                   "next_retry_at": (now + timedelta(seconds=delay)).isoformat()}
        try:
            self.registry.update(trade.ticket, meta={"pending_exit": pending})
        except KeyError:
            return
        if escalate:
            self._count("exit_escalated")
            self.journal.append("exit_escalated", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                                strategy=trade.strategy, reason=pending["reason"], failures=failures, error=error)
            self._emit("exit_escalated", {"ticket": trade.ticket, "symbol": trade.symbol, "strategy": trade.strategy,
                                          "reason": pending["reason"], "failures": failures, "error": error,
                                          "since": pending["since"],
                                          "action": "manual close required (the bot keeps retrying)"})
            log.critical("EXIT ESCALATED: ticket %d %s (%s) could not be closed in %d calls since %s: %s; the bot "
                         "keeps retrying every %g s at most", trade.ticket, trade.symbol, trade.strategy, failures,
                         pending["since"], error, reliability.exit_retry_max_seconds)

    def pending_exits(self) -> list[Trade]:
        """Open trades whose exit failed and is waiting for a retry."""
        return [t for t in self.registry.open_trades() if t.meta.get("pending_exit")]

    def retry_pending_exits(self, now: datetime | None = None) -> list[CloseOutcome]:
        """Retry each failed exit whose back-off has elapsed (one attempt each)."""
        now = now or self.clock.now()
        outcomes = []
        for trade in self.pending_exits():
            pending = trade.meta["pending_exit"]
            due = pending.get("next_retry_at")
            if due and datetime.fromisoformat(due) > now:
                continue
            if self.busy(trade.ticket):
                continue
            log.info("retrying the failed exit of ticket %d (%s, failure %s)", trade.ticket, pending.get("reason"),
                     pending.get("failures"))
            outcomes.append(self.close(trade, str(pending.get("reason") or "pending exit"), retries=1))
        return outcomes

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
            self._filled("partial_close")
            return CloseOutcome("partial", reason, updated)
        if remaining is not None and volume is None and remaining.volume >= trade.volume - 1e-9:
            # "Done" for a full close, yet the whole position is still there: the answer belongs
            # to something else. Recording it closed would leave a live position unmanaged.
            log.error("ticket %d: close reported done (%s) but the position is still open; not recorded",
                      trade.ticket, result.comment)
            self.journal.append("close_failed", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                                strategy=trade.strategy, reason=f"{reason}: reported done but still open")
            return CloseOutcome("failed", "close reported done but the position is still open", trade)
        pnl = self._realised_pnl(trade, now)
        with self._settle_lock:
            if self.registry.get(trade.ticket) is None:  # recorded meanwhile from the deal history
                return CloseOutcome("already_closed", reason, trade)
            closed = self.registry.close(trade.ticket, result.price, now, pnl, reason)
        self._announce_close(closed)
        return CloseOutcome("closed", reason, closed)

    def modify(self, trade: Trade, sl: float | None, tp: float | None, reason: str) -> Trade | None:
        """Move the stops; the intent is persisted on the trade (``meta.pending_modify``) first."""
        with self._ticket_lock(trade.ticket):
            try:
                self.registry.update(trade.ticket, meta={"pending_modify": {
                    "sl": sl, "tp": tp, "at": self.clock.now().isoformat(), "reason": reason}})
            except KeyError:
                pass  # not (or no longer) registered: nothing to record, the broker decides
            self._note_order("modify")
            try:
                result = self.broker.modify_sltp(trade.ticket, sl, tp)
            except BrokerError as exc:
                link = isinstance(exc, (BrokerUnavailable, OrderOutcomeUnknown))
                if not link:  # refused: the broker keeps the old stops; an unclear one stays pending
                    self._clear_pending_modify(trade.ticket)
                self.journal.append("modify_failed", client_id=trade.client_id, ticket=trade.ticket,
                                    symbol=trade.symbol, strategy=trade.strategy, reason=f"{reason}: {exc}")
                self._note_failure("modify_failed", f"ticket {trade.ticket}: {exc}")
                log.warning("modify of %d failed: %s", trade.ticket, exc)
                return None
            new_sl = result.sl or (sl if sl is not None else trade.sl)
            new_tp = result.tp or (tp if tp is not None else trade.tp)
            try:
                updated = self.registry.update(trade.ticket, sl=new_sl, tp=new_tp, meta={"pending_modify": None})
            except KeyError:  # closed meanwhile (a stop hit): the broker's answer still stands
                updated = None
            self.journal.append("modified", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                                strategy=trade.strategy, sl=new_sl, tp=new_tp, reason=reason)
            return updated

    def _clear_pending_modify(self, ticket: int) -> None:
        try:
            self.registry.update(ticket, meta={"pending_modify": None})
        except KeyError:
            pass

    def _realised_pnl(self, trade: Trade, now: datetime) -> float | None:
        try:
            opened = datetime.fromisoformat(trade.opened_at)
            deals = self.broker.deals(opened - timedelta(minutes=5), now + timedelta(minutes=1), position=trade.ticket)
        except BrokerError:
            return None
        return sum(d.profit + d.commission + d.swap + d.fee for d in deals)

    def _announce_close(self, closed: Trade) -> None:
        self._count("closed")
        if self.journaled_closed(closed.ticket):
            # Recorded again after a crash lost the registry's write but not the journal line:
            # the journal and Discord have it already.
            log.info("ticket %d: close recorded again after a crash; already journaled", closed.ticket)
            self._filled("close")
            return
        self.journal.append("closed", client_id=closed.client_id, ticket=closed.ticket, symbol=closed.symbol,
                            strategy=closed.strategy, side=closed.side, volume=closed.volume,
                            exit=closed.exit_price, pnl=closed.pnl, r=closed.r, reason=closed.close_reason)
        log.info("%s closed %s %s ticket %d @ %g: P&L %s, R %s (%s)", closed.strategy, closed.side, closed.symbol,
                 closed.ticket, closed.exit_price or 0.0, closed.pnl, closed.r, closed.close_reason)
        self._emit("trade_closed", closed.to_json())
        self._filled("close")

    def sync_closed(self, strategy: str | None = None, *, alive: set[int] | None = None,
                    deals_by_position: Mapping[int, list[Deal]] | None = None, skip_busy: bool = True,
                    only: int | None = None) -> list[Trade]:
        """Record registry trades whose position is gone at the broker (SL, TP, manual close).

        Exit price, P&L and the reason come from the closing deals. A failed query is never
        taken as "no position": on a broker error nothing is changed, and a trade whose closing
        deal is not visible yet waits for a later call. The reconciler passes what it already
        read (``alive``: every open ticket at the broker; ``deals_by_position``) to save queries.
        Trades being closed by another call are left to that call (``skip_busy``).
        """
        open_trades = self.registry.open_trades(strategy)
        if only is not None:
            open_trades = [t for t in open_trades if t.ticket == only]
        if not open_trades:
            return []
        if alive is None:
            try:
                alive = {p.ticket for p in self.broker.positions()}
            except BrokerError as exc:
                log.warning("cannot check for closed positions: %s", exc)
                return []
        closed: list[Trade] = []
        now = self.clock.now()
        for trade in open_trades:
            if trade.ticket in alive or (skip_busy and self.busy(trade.ticket)):
                continue
            deals = list(deals_by_position.get(trade.ticket, ())) if deals_by_position is not None else []
            if not any(d.entry in EXIT_DEAL_ENTRIES for d in deals):
                try:
                    opened = datetime.fromisoformat(trade.opened_at)
                    deals = self.broker.deals(opened - timedelta(minutes=5), now + timedelta(minutes=1),
                                              position=trade.ticket)
                except BrokerError as exc:
                    log.warning("cannot read deals of %d: %s", trade.ticket, exc)
                    continue
            record = self.settle_from_deals(trade, deals)
            if record is not None:
                closed.append(record)
        return closed

    def settle_from_deals(self, trade: Trade, deals: list[Deal]) -> Trade | None:
        """Record ``trade`` closed from its deals (exit price volume-weighted, P&L of all its
        deals, reason ``broker:<deal reason>``, or the reason of our own close when the closing
        deal carries the comment of a ``close_sent`` line: the bot sent it and died before the
        answer); None when no closing deal is visible yet or it was recorded meanwhile by another
        thread."""
        exits = [d for d in deals if d.entry in EXIT_DEAL_ENTRIES]
        if not exits:
            return None  # not visible in the history yet; look again next time
        last = max(exits, key=lambda d: d.time)
        volume = sum(d.volume for d in exits)
        price = sum(d.price * d.volume for d in exits) / volume if volume else last.price
        pnl = sum(d.profit + d.commission + d.swap + d.fee for d in deals)
        ours = self.close_reason(last.comment) if last.comment else None
        reason = ours if ours else f"broker:{last.reason}"
        with self._settle_lock:
            if self.registry.get(trade.ticket) is None:
                return None  # closed meanwhile by another thread
            record = self.registry.close(trade.ticket, round(price, 10), last.time, pnl, reason)
        self._announce_close(record)
        return record

    def health(self) -> dict[str, Any]:
        blocked = getattr(self.broker, "entries_blocked", lambda: None)()
        with self._orders_lock:
            unknown = sorted(self._unknown)
        return {"counters": dict(self.counters), "entries_blocked": blocked, "unknown_orders": unknown,
                "pending_exits": [t.ticket for t in self.pending_exits()]}


def _json_safe(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The idea's meta as journal-ready values (datetimes as ISO text, numpy scalars as numbers);
    a value that cannot be written is replaced by its text rather than losing the intent line."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        out[str(key)] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if hasattr(value, "to_dict"):
        try:
            return _plain(value.to_dict())
        except Exception:
            pass
    return str(value)
