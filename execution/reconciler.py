"""The reconciler: the broker is the truth; the registry is made to agree with it.

One pass (``run(reason)``) compares the trade registry with the broker's open positions and its
deal history over ``reliability.reconcile_lookback_hours``, and fixes each difference:

1. ADOPT: a position at one of our magic numbers that the registry lacks (a crash between the
   fill and the registry's save, a late fill after an unclear send) is registered, rebuilt from
   the journal's ``intent`` line for its client id (the order comment; the opening deal's
   comment when the position's was changed) and the position: strategy from the magic, initial
   stop from the intent (else the position's), the idea's meta from the intent.
2. CLOSED WHILE AWAY: a registry trade whose position is gone is recorded from its closing deals
   (exit price, P&L, R, reason) by ``Executor.sync_closed``; a trade opened AND closed while the
   bot was not looking (at our magic, in the deal history, in no registry) is recorded too.
3. EXTERNAL: a position without our magic is reported (journal and event once per ticket) and
   never touched, unless ``reliability.adopt_external_into`` names a strategy to manage it.
4. REPAIR: a position whose SL/TP differ from the registry's is set back to the registry's (the
   registry is the intent) with ``Executor.modify``, unless the difference is our own modify
   that reached the broker just before a crash (``meta.pending_modify``): then the registry
   takes the broker's stops. A stop is never removed: a registry trade without a stop takes the
   broker's. The volume always follows the broker (a partial close made at the terminal).
Also: entries whose send outcome stayed unclear (``Executor.unknown_orders``) are settled by
client id (found: adopted with their reservation; not found: released), and failed exits are
retried with their back-off (``Executor.retry_pending_exits``).

Never on bad data: if the positions query fails nothing is done; an empty answer while the
registry holds trades and the broker reports itself disconnected is not taken as "no
positions"; a trade is only recorded closed when its closing deal is visible.

It runs at start (before any monitor may open a trade), every ``reconcile_interval_seconds`` as
the monitor "reconciler", and promptly on ``request(reason)``: after every fill (the executor's
``on_fill``), after a broker reconnect (seen in ``connection_state()['reconnects']``) and after
the circuit breaker closes. The run is cheap when nothing differs: two broker queries (positions,
deals) and dictionary lookups.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

from config.loader import ConfigSnapshot
from execution.broker import Deal, Position
from execution.errors import BrokerError
from execution.executor import EXIT_DEAL_ENTRIES, Executor, strategy_magics
from monitors.clock import Clock
from state.journal import Journal
from state.registry import Trade, TradeRegistry

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]
TICK_SECONDS = 1.0  # how often the monitor looks for a request; a full pass runs on its own interval


@dataclass
class ReconcileReport:
    """What one pass found and did. ``found``/``fixed`` count differences (external positions
    count once, when first seen)."""

    reason: str
    at: str
    skipped: str | None = None
    positions: int = 0
    deals: int | None = None
    adopted: list[int] = field(default_factory=list)
    closed_while_away: list[int] = field(default_factory=list)
    history_recorded: list[int] = field(default_factory=list)
    external: list[int] = field(default_factory=list)
    external_new: list[int] = field(default_factory=list)
    sltp_differences: list[int] = field(default_factory=list)
    sltp_repaired: list[int] = field(default_factory=list)
    sltp_accepted: list[int] = field(default_factory=list)
    volume_updated: list[int] = field(default_factory=list)
    unknown_adopted: list[str] = field(default_factory=list)
    unknown_released: list[str] = field(default_factory=list)
    pending_exits_retried: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.skipped is None

    @property
    def found(self) -> int:
        return (len(self.adopted) + len(self.closed_while_away) + len(self.history_recorded)
                + len(self.external_new) + len(self.sltp_differences) + len(self.volume_updated)
                + len(self.unknown_adopted) + len(self.unknown_released))

    @property
    def fixed(self) -> int:
        return (len(self.adopted) + len(self.closed_while_away) + len(self.history_recorded)
                + len(self.sltp_repaired) + len(self.sltp_accepted) + len(self.volume_updated)
                + len(self.unknown_adopted) + len(self.unknown_released))

    def summary(self) -> str:
        if self.skipped:
            return f"{self.at} ({self.reason}): NOT RUN: {self.skipped}"
        parts = [f"{len(v)} {k.replace('_', ' ')}" for k, v in (
            ("adopted", self.adopted), ("closed_while_away", self.closed_while_away),
            ("history_recorded", self.history_recorded), ("external_new", self.external_new),
            ("sltp_repaired", self.sltp_repaired), ("sltp_accepted", self.sltp_accepted),
            ("volume_updated", self.volume_updated), ("unknown_adopted", self.unknown_adopted),
            ("unknown_released", self.unknown_released)) if v]
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s)")
        return (f"{self.at} ({self.reason}): {', '.join(parts) or 'in agreement'}; {self.positions} position(s), "
                f"{len(self.external)} external, {self.duration_ms:.1f} ms")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ok=self.ok, found=self.found, fixed=self.fixed)
        return data


class JournalIndex:
    """Intent lines by client id and tickets journaled as closed, read incrementally from the
    journal file (only complete lines; a torn line is skipped like ``read_journal`` does).
    Consulted only when there is something to adopt, so a pass with no difference reads nothing."""

    MAX_INTENTS = 20_000  # about half a year of a busy bot; positions older than that are rebuilt without

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._lock = threading.Lock()
        self.intents: dict[str, dict[str, Any]] = {}
        self.closed_tickets: set[int] = set()
        self.close_reasons: dict[str, str] = {}  # close comment (close_id) -> the reason it was sent for

    def refresh(self) -> None:
        with self._lock:
            try:
                if os.stat(self.path).st_size == self._offset:
                    return  # nothing written since the last read (a stat is cheaper than an open)
                with open(self.path, "rb") as handle:
                    handle.seek(self._offset)
                    data = handle.read()
            except FileNotFoundError:
                return
            end = data.rfind(b"\n")
            if end < 0:
                return
            self._offset += end + 1
            for raw in data[:end].split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                event = record.get("event")
                if event == "intent" and record.get("client_id"):
                    self.intents[str(record["client_id"])] = record
                elif event == "close_sent" and record.get("close_id") and record.get("reason"):
                    self.close_reasons[str(record["close_id"])] = str(record["reason"])
                elif event == "closed" and record.get("ticket") is not None:
                    try:
                        self.closed_tickets.add(int(record["ticket"]))
                    except (TypeError, ValueError):
                        pass
            if len(self.intents) > self.MAX_INTENTS:  # a long run: forget the oldest intents
                keep = sorted(self.intents.items(), key=lambda kv: str(kv[1].get("ts", "")))[-self.MAX_INTENTS // 2:]
                self.intents = dict(keep)
            if len(self.close_reasons) > self.MAX_INTENTS:  # oldest first (insertion order)
                self.close_reasons = dict(list(self.close_reasons.items())[-self.MAX_INTENTS // 2:])

    def close_reason(self, close_id: str) -> str | None:
        self.refresh()
        return self.close_reasons.get(close_id)

    def intent(self, client_id: str | None) -> dict[str, Any] | None:
        if not client_id:
            return None
        self.refresh()
        return self.intents.get(client_id)


class Reconciler:
    """``run(reason)`` is one pass; as a monitor (``step``) it runs on its interval and on request."""

    name = "reconciler"

    def __init__(self, broker: Any, registry: TradeRegistry, journal: Journal,
                 config_provider: Callable[[], ConfigSnapshot], clock: Clock,
                 magics: Mapping[int, str] | Callable[[], Mapping[int, str]] | None = None, *,
                 executor: Executor, events: EventSink | None = None, trading_state: Any = None,
                 perf: Callable[[], float] = time.perf_counter) -> None:
        """``magics``: {magic: strategy} of our positions (default: from the config in force);
        ``executor``: closes are recorded, unclear entries settled and stops repaired through it;
        ``trading_state``: told when the start-up comparison could not be made (entries wait)."""
        self.broker = broker
        self.registry = registry
        self.journal = journal
        self._config = config_provider
        self.clock = clock
        self._magics = magics
        self.executor = executor
        self._events = events or (lambda kind, data: None)
        self.trading_state = trading_state
        self._perf = perf
        self.index = JournalIndex(journal.path)
        executor.journaled_closed = self._journaled_closed
        executor.close_reason = self.index.close_reason
        self._run_lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._requests: list[str] = []
        self._last_run_mono: float | None = None
        self._reconnects_seen: int | None = None
        self._external_seen: set[int] = set()
        self._repair_backoff: dict[int, tuple[int, float]] = {}
        self.last_report: ReconcileReport | None = None
        self.runs = 0
        self.failed_runs = 0
        self.consecutive_failures = 0
        self.totals: dict[str, int] = {"found": 0, "fixed": 0}
        self._alerted = False
        self._started = False

    # ------------------------------------------------------------------ scheduling
    @property
    def interval_seconds(self) -> float:
        return min(TICK_SECONDS, self._config().bot.reliability.reconcile_interval_seconds)

    def request(self, reason: str = "requested") -> None:
        """Ask for a prompt pass (cheap; the reconciler's thread runs it within a second)."""
        with self._request_lock:
            if reason not in self._requests:
                self._requests.append(reason)

    def on_breaker_change(self, old: str, new: str, info: dict[str, Any]) -> None:
        if new == "CLOSED":
            self.request("breaker_closed")

    def step(self, now: datetime) -> None:
        reason = self._due()
        if reason is not None:
            self.run(reason)

    def _due(self) -> str | None:
        with self._request_lock:
            if self._requests:
                reasons, self._requests = self._requests, []
                return "+".join(reasons)
        reconnects = self._reconnects()
        if reconnects is not None and self._reconnects_seen is not None and reconnects != self._reconnects_seen:
            return "reconnect"
        if self._last_run_mono is None:
            return "startup" if not self._started else "periodic"
        interval = self._config().bot.reliability.reconcile_interval_seconds
        if self.clock.monotonic() - self._last_run_mono >= interval:
            return "periodic"
        return None

    def _reconnects(self) -> int | None:
        try:
            value = self.broker.connection_state().get("reconnects")
        except Exception:
            return None
        return int(value) if isinstance(value, (int, float)) else None

    def _magic_map(self, snapshot: ConfigSnapshot) -> dict[int, str]:
        if self._magics is None:
            return strategy_magics(snapshot)
        return dict(self._magics() if callable(self._magics) else self._magics)

    # ------------------------------------------------------------------ one pass
    def run(self, reason: str = "periodic") -> ReconcileReport:
        with self._run_lock:
            started = self._perf()
            now = self.clock.now()
            report = ReconcileReport(reason=reason, at=now.isoformat())
            reconnects = self._reconnects()
            try:
                if reason == "startup":
                    self._journal_unjournaled_closes()
                with self.registry.batch():  # a long outage may record hundreds of trades: few writes
                    self._pass(report, now)
            except Exception as exc:  # a bug must not kill the thread silently: reported, retried
                log.exception("reconciliation pass failed")
                report.skipped = f"internal error: {type(exc).__name__}: {exc}"
            report.duration_ms = round((self._perf() - started) * 1000.0, 3)
            self._finish(report, reconnects)
            return report

    def _journaled_closed(self, ticket: int) -> bool:
        self.index.refresh()
        return ticket in self.index.closed_tickets

    def _journal_unjournaled_closes(self) -> None:
        """A crash between the registry's write of a close and its journal line leaves a close
        only the registry knows: journal it now, so the journal alone still audits the run."""
        self.index.refresh()
        for trade in self.registry.closed_trades():
            if trade.ticket in self.index.closed_tickets:
                continue
            self.journal.append("closed", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                                strategy=trade.strategy, side=trade.side, volume=trade.volume,
                                exit=trade.exit_price, pnl=trade.pnl, r=trade.r,
                                reason=f"{trade.close_reason} (recorded before a crash; journaled at start)")
            self.index.closed_tickets.add(trade.ticket)
            log.warning("ticket %d: its close was in the registry but not in the journal (a crash); journaled now",
                        trade.ticket)

    def _pass(self, report: ReconcileReport, now: datetime) -> None:
        snapshot = self._config()
        reliability = snapshot.bot.reliability
        magics = self._magic_map(snapshot)
        try:
            positions = self.broker.positions()
        except BrokerError as exc:
            report.skipped = f"positions query failed: {exc} (not taken as 'no positions'; nothing changed)"
            return
        alive = {p.ticket: p for p in positions}
        registry_open = {t.ticket: t for t in self.registry.open_trades()}
        ours = {t: p for t, p in alive.items() if p.magic in magics or t in registry_open}
        report.positions = len(ours)
        if not alive and registry_open and not self._connected():
            report.skipped = (f"the broker answered no positions while it reports itself disconnected and the "
                              f"registry holds {len(registry_open)} trade(s): not taken as 'no positions'")
            return

        start = now - timedelta(hours=reliability.reconcile_lookback_hours)
        for trade in registry_open.values():
            opened = datetime.fromisoformat(trade.opened_at) - timedelta(minutes=5)
            start = min(start, opened)
        deals: list[Deal] | None
        try:
            deals = self.broker.deals(start, now + timedelta(days=1))
        except BrokerError as exc:
            deals = None
            report.problems.append(f"deal history unavailable ({exc}): closes are checked per trade, "
                                   "history and unclear entries next time")
        by_position: dict[int, list[Deal]] = {}
        if deals is not None:
            report.deals = len(deals)
            for deal in deals:
                by_position.setdefault(deal.position_id, []).append(deal)

        inflight = self.executor.inflight_client_ids()
        self._settle_unknown(report, now, alive, deals, snapshot)
        self._adopt(report, now, alive, magics, inflight, by_position, reliability.adopt_external_into)
        closed = self.executor.sync_closed(alive=set(alive), deals_by_position=by_position if deals is not None else None)
        report.closed_while_away = [t.ticket for t in closed]
        if deals is not None:
            self._history(report, now, alive, magics, by_position, inflight)
        self._external(report, alive, magics, reliability.adopt_external_into)
        self._compare_open(report, alive, reliability.sltp_repair)
        report.pending_exits_retried = [o.trade.ticket for o in self.executor.retry_pending_exits(now) if o.trade]

    def _connected(self) -> bool:
        try:
            state = self.broker.connection_state()
        except Exception:
            return False
        return bool(state.get("connected", True))

    # ------------------------------------------------------------------ unclear entries
    def _settle_unknown(self, report: ReconcileReport, now: datetime, alive: dict[int, Position],
                        deals: list[Deal] | None, snapshot: ConfigSnapshot) -> None:
        unknown = self.executor.unknown_orders()
        if not unknown:
            return
        expiry = snapshot.bot.execution.entry_expiry_seconds
        by_comment = {p.comment: p for p in alive.values() if p.comment}
        in_deals = {d.comment: d for d in (deals or ()) if d.entry == "in" and d.comment}
        for order in unknown:
            if (now - order.sent_at).total_seconds() < expiry:
                continue
            found: Position | Deal | None = by_comment.get(order.client_id) or in_deals.get(order.client_id)
            if found is None and (deals is None or not self._connected()):
                continue  # cannot tell yet: keep the reservation
            result = self.executor.settle_unknown(
                order.client_id, found, "settled by the reconciler: found by client id" if found else
                f"settled by the reconciler: not found by client id in positions or deals "
                f"{(now - order.sent_at).total_seconds():.0f} s after sending")
            if result == "adopted":
                report.unknown_adopted.append(order.client_id)
            elif result == "released":
                report.unknown_released.append(order.client_id)

    # ------------------------------------------------------------------ adoption
    def _adopt(self, report: ReconcileReport, now: datetime, alive: dict[int, Position], magics: dict[int, str],
               inflight: set[str], by_position: dict[int, list[Deal]], external_into: str | None) -> None:
        unknown = {o.client_id for o in self.executor.unknown_orders()}
        entries: list[tuple[str, datetime, str]] = []  # our own entries the trade caps must count
        for ticket, position in alive.items():
            if position.comment and (position.comment in inflight or position.comment in unknown):
                continue  # the executor is registering it (or will settle it): never twice
            if self.registry.get(ticket) is not None:
                continue
            strategy = magics.get(position.magic)
            if strategy is None:
                continue
            trade = self._adopt_one(position, strategy, now, by_position.get(ticket, []),
                                    "position at our magic missing from the registry")
            if trade is not None:
                report.adopted.append(ticket)
                entries.append((strategy, position.time, trade.client_id))
        if entries:  # one ledger write for all (a recovery may adopt dozens)
            self.executor.risk.record_entries(entries)
        if external_into:
            for ticket, position in sorted(alive.items()):
                if position.magic not in magics and self.registry.get(ticket) is None:
                    trade = self._adopt_one(position, external_into, now, by_position.get(ticket, []),
                                            f"external position adopted into {external_into} "
                                            "(reliability.adopt_external_into)", external=True)
                    if trade is not None:
                        report.adopted.append(ticket)

    def _client_id_of(self, position: Position | None, deals: list[Deal]) -> str:
        if position is not None and position.comment and not position.comment.startswith("["):
            return position.comment
        opening = [d for d in deals if d.entry == "in" and d.comment]
        return opening[0].comment if opening else ""

    def _adopt_one(self, position: Position, strategy: str, now: datetime, deals: list[Deal], why: str,
                   external: bool = False) -> Trade | None:
        client_id = self._client_id_of(position, deals)
        intent = self.index.intent(client_id)
        trade = self._rebuild(position.ticket, client_id, strategy, position.symbol, position.side, position.volume,
                              position.price_open, position.sl, position.tp, position.magic, position.time,
                              intent, now, why, external)
        try:
            self.registry.add(trade)
        except ValueError:
            return None  # registered meanwhile
        self._announce_adoption(trade, why, intent)
        return trade

    def _rebuild(self, ticket: int, client_id: str, strategy: str, symbol: str, side: str, volume: float,
                 entry: float, sl: float, tp: float, magic: int, opened: datetime, intent: dict[str, Any] | None,
                 now: datetime, why: str, external: bool = False) -> Trade:
        initial_sl = sl
        meta: dict[str, Any] = {}
        reasons: tuple[str, ...] = ()
        if intent is not None:
            if isinstance(intent.get("sl"), (int, float)) and intent["sl"]:
                initial_sl = float(intent["sl"])
            meta = dict(intent.get("meta") or {})
            if intent.get("reason"):
                reasons = tuple(str(intent["reason"]).split("; "))
            if intent.get("strategy") and intent["strategy"] != strategy:
                log.warning("ticket %d: the intent names %s but the magic %d says %s; the magic wins", ticket,
                            intent["strategy"], magic, strategy)
        meta["adopted"] = {"at": now.isoformat(), "reason": why, "from_intent": intent is not None,
                           "external": external}
        return Trade(ticket=ticket, client_id=client_id or f"adopted-{ticket}", strategy=strategy, symbol=symbol,
                     side=side, volume=volume, entry=entry, sl=sl, tp=tp, initial_sl=initial_sl, magic=magic,
                     opened_at=opened.isoformat(), reasons=reasons + (f"adopted by the reconciler: {why}",),
                     meta=meta)

    def _announce_adoption(self, trade: Trade, why: str, intent: dict[str, Any] | None) -> None:
        detail = why + ("" if intent is not None else "; no intent line in the journal (rebuilt from the broker)")
        self.journal.append("adopted", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                            strategy=trade.strategy, side=trade.side, volume=trade.volume, entry=trade.entry,
                            sl=trade.sl, tp=trade.tp, initial_sl=trade.initial_sl, reason=detail)
        log.warning("reconciler ADOPTED ticket %d %s %s %g lots (%s, %s): %s", trade.ticket, trade.symbol, trade.side,
                    trade.volume, trade.strategy, trade.client_id, detail)
        self._emit("position_adopted", {**trade.to_json(), "reason": detail})

    # ------------------------------------------------------------------ history (opened and closed while away)
    def _history(self, report: ReconcileReport, now: datetime, alive: dict[int, Position], magics: dict[int, str],
                 by_position: dict[int, list[Deal]], inflight: set[str]) -> None:
        candidates = []
        for position_id, deals in by_position.items():
            if position_id in alive or self.registry.get(position_id) is not None:
                continue
            opening = [d for d in deals if d.entry == "in" and d.magic in magics]
            exits = [d for d in deals if d.entry in EXIT_DEAL_ENTRIES]
            if not opening or not exits:
                continue
            if sum(d.volume for d in exits) + 1e-9 < sum(d.volume for d in opening):
                continue  # not fully closed in the window we can see
            if opening[0].comment and opening[0].comment in inflight:
                continue
            candidates.append((position_id, opening[0], deals))
        if not candidates:
            return
        recorded = {t.ticket for t in self.registry.closed_trades()}
        self.index.refresh()
        for position_id, opening, deals in candidates:
            if position_id in recorded:
                continue
            strategy = magics[opening.magic]
            journaled = position_id in self.index.closed_tickets
            if journaled:
                # Recorded once already. Either the registry has since trimmed it from its kept
                # closed trades (never record it again), or a crash inside the pass's batch lost
                # the registry's write after its journal lines: record it again, silently.
                closed_at = max(d.time for d in deals if d.entry in EXIT_DEAL_ENTRIES)
                if not self.registry.would_keep_closed(strategy, closed_at):
                    continue
            intent = self.index.intent(opening.comment)
            sl = float(intent["sl"]) if intent and isinstance(intent.get("sl"), (int, float)) else 0.0
            tp = float(intent["tp"]) if intent and isinstance(intent.get("tp"), (int, float)) else 0.0
            why = "opened and closed while the bot was not looking (found in the deal history)"
            trade = self._rebuild(position_id, opening.comment, strategy, opening.symbol, opening.side,
                                  sum(d.volume for d in deals if d.entry == "in"), opening.price, sl, tp, opening.magic,
                                  opening.time, intent, now, why)
            try:
                self.registry.add(trade)
            except ValueError:
                continue
            if journaled:  # its adopted and closed lines are in the journal (and Discord had them)
                log.warning("ticket %d: its close was journaled but a crash lost the registry's write; recorded "
                            "again", position_id)
            else:
                self._announce_adoption(trade, why, intent)
            if self.executor.settle_from_deals(trade, deals) is not None:
                report.history_recorded.append(position_id)

    # ------------------------------------------------------------------ external positions
    def _external(self, report: ReconcileReport, alive: dict[int, Position], magics: dict[int, str],
                  external_into: str | None) -> None:
        external = {t: p for t, p in alive.items() if p.magic not in magics and self.registry.get(t) is None}
        report.external = sorted(external)
        for ticket in sorted(set(external) - self._external_seen):
            p = external[ticket]
            report.external_new.append(ticket)
            self.journal.append("external_position", ticket=ticket, symbol=p.symbol, side=p.side, volume=p.volume,
                                magic=p.magic, comment=p.comment or None,
                                reason="position without our magic: reported, never touched "
                                       "(reliability.adopt_external_into is null)")
            log.warning("EXTERNAL position %d %s %s %g lots (magic %d, comment %r): reported, not managed",
                        ticket, p.symbol, p.side, p.volume, p.magic, p.comment)
            self._emit("external_position", {"ticket": ticket, "symbol": p.symbol, "side": p.side,
                                             "volume": p.volume, "magic": p.magic, "comment": p.comment})
        self._external_seen = set(external)

    # ------------------------------------------------------------------ stops and volume
    def _compare_open(self, report: ReconcileReport, alive: dict[int, Position], mode: str) -> None:
        for trade in self.registry.open_trades():
            position = alive.get(trade.ticket)
            if position is None:
                continue
            if position.symbol != trade.symbol or position.side != trade.side:
                report.problems.append(f"ticket {trade.ticket}: broker {position.symbol} {position.side} vs registry "
                                       f"{trade.symbol} {trade.side}")
                continue
            if abs(position.volume - trade.volume) > 1e-9 and not self.executor.busy(trade.ticket):
                self._fix_volume(report, trade, position)
            tolerance = self._tolerance(trade.symbol)
            pending = trade.meta.get("pending_modify")
            if _same(position.sl, trade.sl, tolerance) and _same(position.tp, trade.tp, tolerance) and not pending:
                continue
            self._fix_stops(report, trade.ticket, tolerance, mode)

    def _fix_volume(self, report: ReconcileReport, trade: Trade, position: Position) -> None:
        try:
            self.registry.update(trade.ticket, volume=position.volume)
        except KeyError:
            return
        report.volume_updated.append(trade.ticket)
        reason = f"volume {trade.volume:g} in the registry, {position.volume:g} at the broker: the broker's kept"
        self.journal.append("reconciled", client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                            strategy=trade.strategy, field="volume", old=trade.volume, new=position.volume, reason=reason)
        log.warning("ticket %d: %s", trade.ticket, reason)

    def _tolerance(self, symbol: str) -> float:
        try:
            point = float(self.broker.symbol_spec(symbol).point)
        except Exception:
            point = 0.0
        return point / 2 if point > 0 else 1e-9

    def _fix_stops(self, report: ReconcileReport, ticket: int, tolerance: float, mode: str) -> None:
        backoff = self._repair_backoff.get(ticket)
        if backoff is not None and self.clock.monotonic() < backoff[1]:
            return
        with self.executor.ticket_guard(ticket) as free:
            if not free:
                return  # a modify or close of this ticket is under way: look next time
            trade = self.registry.get(ticket)
            try:
                position = self.broker.position(ticket)
            except BrokerError as exc:
                log.warning("ticket %d: stops not compared (%s)", ticket, exc)
                return
            if trade is None or position is None:
                return
            pending = trade.meta.get("pending_modify")
            same = _same(position.sl, trade.sl, tolerance) and _same(position.tp, trade.tp, tolerance)
            if same:
                if pending:  # our modify never reached the broker: nothing to do but forget it
                    self.registry.update(ticket, meta={"pending_modify": None})
                return
            report.sltp_differences.append(ticket)
            if pending and _matches_pending(position, pending, trade, tolerance):
                self.registry.update(ticket, sl=position.sl, tp=position.tp, meta={"pending_modify": None})
                report.sltp_accepted.append(ticket)
                self.journal.append("reconciled", client_id=trade.client_id, ticket=ticket, symbol=trade.symbol,
                                    strategy=trade.strategy, field="sltp", old={"sl": trade.sl, "tp": trade.tp},
                                    new={"sl": position.sl, "tp": position.tp},
                                    reason="our modify reached the broker before the registry was saved: the "
                                           "registry takes the broker's stops")
                return
            if not trade.sl and position.sl:  # never remove a stop: the registry takes the broker's
                self.registry.update(ticket, sl=position.sl, meta={"pending_modify": None})
                report.sltp_accepted.append(ticket)
                self.journal.append("reconciled", client_id=trade.client_id, ticket=ticket, symbol=trade.symbol,
                                    strategy=trade.strategy, field="sl", old=trade.sl, new=position.sl,
                                    reason="the registry had no stop: the broker's stop is kept, never removed")
                trade = self.registry.get(ticket)
                if trade is None or _same(position.tp, trade.tp, tolerance):
                    return
            what = (f"broker sl {position.sl:g} tp {position.tp:g} differ from the registry's sl {trade.sl:g} "
                    f"tp {trade.tp:g}")
            if mode == "report":
                if backoff is None:
                    self.journal.append("sltp_difference", client_id=trade.client_id, ticket=ticket,
                                        symbol=trade.symbol, strategy=trade.strategy,
                                        reason=what + " (reliability.sltp_repair is 'report')")
                    self._emit("sltp_difference", {"ticket": ticket, "symbol": trade.symbol,
                                                   "strategy": trade.strategy, "detail": what})
                self._repair_backoff[ticket] = (1, self.clock.monotonic() + 300.0)
                return
            updated = self.executor.modify(trade, trade.sl, trade.tp, f"reconciler repair: {what}")
            if updated is not None:
                report.sltp_repaired.append(ticket)
                self._repair_backoff.pop(ticket, None)
                log.warning("ticket %d stops repaired: %s", ticket, what)
                self._emit("sltp_repaired", {"ticket": ticket, "symbol": trade.symbol, "strategy": trade.strategy,
                                             "detail": what})
                return
            failures = (backoff[0] if backoff else 0) + 1
            self._repair_backoff[ticket] = (failures, self.clock.monotonic() + min(300.0, 10.0 * 2 ** failures))
            report.problems.append(f"ticket {ticket}: stop repair failed ({what})")
            if failures == 1:
                self._emit("sltp_repair_failed", {"ticket": ticket, "symbol": trade.symbol,
                                                  "strategy": trade.strategy, "detail": what})

    # ------------------------------------------------------------------ bookkeeping
    def _finish(self, report: ReconcileReport, reconnects: int | None) -> None:
        self.last_report = report
        self.runs += 1
        self._started = True
        self._last_run_mono = self.clock.monotonic()
        if reconnects is not None:
            self._reconnects_seen = reconnects
        if report.ok:
            self.consecutive_failures = 0
            self._alerted = False
            self.totals["found"] += report.found
            self.totals["fixed"] += report.fixed
            for key in ("adopted", "closed_while_away", "history_recorded", "external_new", "sltp_repaired",
                        "sltp_accepted", "volume_updated", "unknown_adopted", "unknown_released"):
                count = len(getattr(report, key))
                if count:
                    self.totals[key] = self.totals.get(key, 0) + count
            if self.trading_state is not None:
                self.trading_state.set_condition("not_reconciled", False, "reconciled with the broker")
            if report.found or report.problems:
                self.journal.append("reconciliation", reason=report.reason, found=report.found, fixed=report.fixed,
                                    summary=report.summary(), problems=report.problems or None)
                log.warning("reconciliation: %s", report.summary())
            else:
                log.debug("reconciliation: %s", report.summary())
            return
        self.failed_runs += 1
        self.consecutive_failures += 1
        log.warning("reconciliation not done (%s): %s", report.reason, report.skipped)
        if self.trading_state is not None and report.reason.startswith("startup"):
            self.trading_state.set_condition("not_reconciled", True,
                                             f"could not compare with the broker at start: {report.skipped}")
        threshold = self._config().bot.reliability.reconcile_alert_after_failures
        if self.consecutive_failures >= threshold and not self._alerted:
            self._alerted = True
            self.journal.append("reconciliation", reason=report.skipped, failed_in_a_row=self.consecutive_failures)
            self._emit("reconcile_failed", {"failures": self.consecutive_failures, "error": report.skipped})
            log.error("reconciliation failed %d times in a row: %s", self.consecutive_failures, report.skipped)

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self._events(kind, data)
        except Exception:
            log.exception("event sink failed for %s", kind)

    def summary(self) -> str | None:
        """One line for ``status`` (health.json trading.reconciliation)."""
        return self.last_report.summary() if self.last_report else None

    def health(self) -> dict[str, Any]:
        report = self.last_report
        return {"last_run": report.at if report else None, "last_reason": report.reason if report else None,
                "last_ok": report.ok if report else None, "last_skipped": report.skipped if report else None,
                "last_duration_ms": report.duration_ms if report else None,
                "last_found": report.found if report else 0, "last_fixed": report.fixed if report else 0,
                "runs": self.runs, "failed_runs": self.failed_runs, "consecutive_failures": self.consecutive_failures,
                "totals": dict(self.totals), "external_positions": sorted(self._external_seen),
                "summary": self.summary()}


def _same(a: float, b: float, tolerance: float) -> bool:
    return abs((a or 0.0) - (b or 0.0)) <= tolerance


def _matches_pending(position: Position, pending: Mapping[str, Any], trade: Trade, tolerance: float) -> bool:
    """The broker shows the stops our pending modify asked for (a None side means unchanged)."""
    sl = pending.get("sl")
    tp = pending.get("tp")
    want_sl = trade.sl if sl is None else float(sl)
    want_tp = trade.tp if tp is None else float(tp)
    return _same(position.sl, want_sl, tolerance) and _same(position.tp, want_tp, tolerance)
