"""Start-up recovery of the range-scalp book, and settling trades the broker closed.

``recover`` runs once before the monitor's loop starts (and again at the first step if the
broker could not be asked then). In order:

1. load ``range_scalp.json`` (a corrupt file is kept aside by the state store and reported);
2. ask the broker for every open position, and keep those at the range-scalp magic number;
3. registry range trades missing from the book (a crash between the fill and the book's save)
   are rebuilt from the range the executor stored in ``Trade.meta``; one without a range cannot
   be managed and is reported (its broker-side stop and target still protect it);
4. book trades the registry does not know are added to it (adopted from the live position, or
   from the book when the position is gone, so the registry records the close next);
5. live trades take the broker's stop and target (a breakeven move that reached the broker just
   before a crash is recognised as made);
6. positions the broker closed while the bot was down (stop, target, manual) are recorded in
   the registry from the deal history (exit price, P&L, reason: ``Executor.sync_closed``) and
   journaled once as ``range_exit`` with ``while_down: true``; those whose closing deal is not
   visible yet stay and are settled by a later step;
7. positions at the range magic that nobody knows are ORPHANS: warned, journaled, reported.

``settle_closed`` is step 6 on its own; the monitor runs it every step. A trade is settled
exactly once: the book's ``close`` removes it and records the exit in one save, and the journal
line is written only after that, so a crash may lose a ``range_exit`` line but never doubles it
(the executor's ``closed`` line is written once by the registry's close either way).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from engines.range_detection import RangeStructure
from engines.range_exits import ExitRecord, RangeTrade
from execution.broker import Position
from state.journal import Journal
from state.registry import Trade, TradeRegistry

log = logging.getLogger(__name__)

STRATEGY = "range_scalp"
CONTEXT_KEYS = ("score", "weighted_score", "confidence", "confluence_score", "rr", "session", "adx",
                "adx_regime", "atr_eff", "bar_time", "components")


@dataclass
class RecoveryReport:
    at: str
    load_source: str = "default"
    loaded: int = 0
    resumed: list[int] = field(default_factory=list)
    rebuilt: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    closed_while_down: list[dict[str, Any]] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    unmanaged: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # state corruption found while loading

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.loaded} loaded ({self.load_source}), {len(self.resumed)} resumed, {len(self.rebuilt)} rebuilt "
                f"from the registry, {len(self.adopted)} adopted, {len(self.closed_while_down)} closed while down, "
                f"{len(self.pending)} pending, {len(self.orphans)} orphan(s), {len(self.unmanaged)} unmanaged")


def entry_context(meta: dict[str, Any]) -> dict[str, Any]:
    """The entry context kept with a range trade (journal metadata of its exit)."""
    context = {k: meta[k] for k in CONTEXT_KEYS if k in meta}
    if "rr" in context:
        context["planned_rr"] = context.pop("rr")
    return context


def breakeven_done(side: str, entry: float, sl: float) -> bool:
    """A stop at or beyond the entry in the trade's favour: the breakeven move was made."""
    return sl > 0 and (sl >= entry if side == "buy" else sl <= entry)


def range_trade_from_registry(trade: Trade) -> RangeTrade | None:
    """Rebuild the book's record from the registry (None when it holds no range)."""
    data = trade.meta.get("range")
    if not isinstance(data, dict):
        return None
    return RangeTrade(
        symbol=trade.symbol, side=trade.side, entry=trade.entry, sl=trade.sl, tp=trade.tp,
        opened_at=datetime.fromisoformat(trade.opened_at), range=RangeStructure.from_dict(data),
        strategy=str(trade.meta.get("setup") or "unknown"), ticket=trade.ticket,
        breakeven_armed=breakeven_done(trade.side, trade.entry, trade.sl),
        risk=trade.risk_distance, meta={**entry_context(trade.meta), "client_id": trade.client_id,
                                        "magic": trade.magic, "volume": trade.volume})


def registry_trade_from_book(rt: RangeTrade, position: Position | None, magic: int) -> Trade:
    """A registry record for a book trade the registry lost (from the position when alive)."""
    assert rt.ticket is not None
    sign = 1.0 if rt.side == "buy" else -1.0
    initial_sl = rt.entry - sign * rt.risk
    client_id = str(rt.meta.get("client_id") or (position.comment if position else "") or f"rs-adopt-{rt.ticket}")
    return Trade(
        ticket=rt.ticket, client_id=client_id, strategy=STRATEGY, symbol=rt.symbol, side=rt.side,
        volume=position.volume if position else float(rt.meta.get("volume") or 0.0),
        entry=position.price_open if position else rt.entry, sl=position.sl if position else rt.sl,
        tp=position.tp if position else rt.tp, initial_sl=initial_sl,
        magic=position.magic if position else int(rt.meta.get("magic") or magic),
        opened_at=rt.opened_at.isoformat(),
        reasons=("adopted at recovery: in range_scalp.json but missing from the registry",),
        meta={"setup": rt.strategy, "range": rt.range.to_dict(), **rt.meta})


def finalize_close(book: Any, journal: Journal, rt: RangeTrade, closed: Trade, reason: str, now: datetime,
                   while_down: bool, priority: str | None = None, detail: str = "") -> dict[str, Any] | None:
    """Remove ``rt`` from the book with its exit (one save), then journal ``range_exit``."""
    assert rt.ticket is not None
    closed_at = datetime.fromisoformat(closed.closed_at) if closed.closed_at else now
    if book.close(rt.ticket, ExitRecord(reason, closed_at, rt.range)) is None:
        return None  # already settled
    exit_price = closed.exit_price
    r = None
    if exit_price is not None and rt.risk > 0:
        move = exit_price - rt.entry if rt.side == "buy" else rt.entry - exit_price
        r = round(move / rt.risk, 4)
    record = {
        "client_id": closed.client_id, "ticket": rt.ticket, "symbol": rt.symbol, "strategy": STRATEGY,
        "setup": rt.strategy, "side": rt.side,
        "entry": rt.entry, "exit": exit_price, "pnl": closed.pnl, "r": r, "reason": reason, "priority": priority,
        "detail": detail or None, "while_down": while_down, "opened_at": rt.opened_at.isoformat(),
        "closed_at": closed_at.isoformat(), "minutes_in_trade": round((closed_at - rt.opened_at).total_seconds() / 60, 1),
        "breakeven_moved": rt.breakeven_armed, "range_type": rt.range.range_type, "range_high": rt.range.high,
        "range_low": rt.range.low, **{k: v for k, v in rt.meta.items() if k in ("confluence_score", "planned_rr",
                                                                               "session", "score")},
    }
    journal.append("range_exit", **record)
    log.info("range_scalp %s ticket %d settled%s: %s at %s, %s R, P&L %s", rt.symbol, rt.ticket,
             " (closed while the bot was down)" if while_down else "", reason, exit_price, r, closed.pnl)
    return record


def settle_closed(book: Any, registry: TradeRegistry, executor: Any, journal: Journal, now: datetime,
                  while_down: bool = False) -> list[dict[str, Any]]:
    """Record broker-side closes in the registry (deal history), then settle the book's trades
    the registry no longer holds open. A broker error changes nothing (looked at again later)."""
    executor.sync_closed(STRATEGY)  # also records the closes of unmanaged registry range trades
    if not book.tickets():
        return []
    open_tickets = {t.ticket for t in registry.open_trades(STRATEGY)}
    closed_by_ticket: dict[int, Trade] | None = None
    settled = []
    for rt in book.open_trades():
        if rt.ticket in open_tickets:
            continue
        if closed_by_ticket is None:
            closed_by_ticket = {t.ticket: t for t in registry.closed_trades(STRATEGY)}
        closed = closed_by_ticket.get(rt.ticket)  # type: ignore[arg-type]
        if closed is None:
            continue  # unknown to the registry: recovery adopts it
        record = finalize_close(book, journal, rt, closed, closed.close_reason or "closed", now, while_down)
        if record is not None:
            settled.append(record)
    return settled


def recover(book: Any, registry: TradeRegistry, broker: Any, executor: Any, journal: Journal, magic: int,
            now: datetime) -> RecoveryReport:
    """Steps 1-7 of the module doc. Raises BrokerError when the broker cannot list positions
    (nothing is changed then; call again) and StateFileError for a state file from a newer bot."""
    report = RecoveryReport(at=now.isoformat())
    loaded = book.load()
    report.load_source, report.loaded, report.problems = loaded.source, loaded.trades, list(loaded.problems)

    all_positions = broker.positions()  # BrokerError propagates: recovery is retried
    positions = {p.ticket: p for p in all_positions if p.magic == magic}
    foreign = {p.ticket: p for p in all_positions if p.magic != magic}
    registry_open = {t.ticket: t for t in registry.open_trades(STRATEGY)}

    for ticket, trade in registry_open.items():  # 3. rebuild missing book records
        if book.get(ticket) is not None:
            continue
        rebuilt = range_trade_from_registry(trade)
        if rebuilt is None:
            report.unmanaged.append(ticket)
            log.error("range_scalp ticket %d (%s) has no range in the registry: not managed by the exit rules; "
                      "its broker stop %g and target %g stay in force", ticket, trade.symbol, trade.sl, trade.tp)
            continue
        book.register(rebuilt, None, now)
        report.rebuilt.append(ticket)
        log.warning("range_scalp ticket %d (%s) was missing from range_scalp.json: rebuilt from the registry",
                    ticket, trade.symbol)

    for rt in book.open_trades():  # 4. adopt book trades the registry lost
        assert rt.ticket is not None
        if rt.ticket in registry_open:
            continue
        if rt.ticket in foreign:
            report.problems.append(f"ticket {rt.ticket} is open with magic {foreign[rt.ticket].magic}, "
                                   f"not the range magic {magic}")
            continue
        if any(t.ticket == rt.ticket for t in registry.closed_trades(STRATEGY)):
            continue  # closed in the registry already: step 6 settles it
        registry.add(registry_trade_from_book(rt, positions.get(rt.ticket), magic))
        report.adopted.append(rt.ticket)
        log.warning("range_scalp ticket %d (%s) was missing from the registry: adopted", rt.ticket, rt.symbol)

    for rt in book.open_trades():  # 5. the broker's stops are the truth
        position = positions.get(rt.ticket)  # type: ignore[arg-type]
        if position is None:
            continue
        if abs(position.sl - rt.sl) > 1e-12 or abs(position.tp - rt.tp) > 1e-12:
            armed = rt.breakeven_armed or breakeven_done(rt.side, rt.entry, position.sl)
            book.update(replace(rt, sl=position.sl, tp=position.tp, breakeven_armed=armed), now)
            log.warning("range_scalp ticket %d: stops taken from the broker (sl %g -> %g, tp %g -> %g)%s", rt.ticket,
                        rt.sl, position.sl, rt.tp, position.tp, "; breakeven already made" if armed else "")
        report.resumed.append(rt.ticket)  # type: ignore[arg-type]

    report.closed_while_down = settle_closed(book, registry, executor, journal, now, while_down=True)  # 6.
    report.pending = sorted(t for t in book.tickets() if t not in positions)

    known = book.tickets() | {t.ticket for t in registry.open_trades(STRATEGY)}
    for ticket, position in sorted(positions.items()):  # 7. orphans
        if ticket in known:
            continue
        orphan = {"ticket": ticket, "symbol": position.symbol, "side": position.side, "volume": position.volume,
                  "price_open": position.price_open, "sl": position.sl, "tp": position.tp, "magic": position.magic,
                  "comment": position.comment}
        report.orphans.append(orphan)
        journal.append("orphan", strategy=STRATEGY, reason="position at the range-scalp magic with no state", **orphan)
        log.warning("range_scalp ORPHAN: position %d %s %s %g lots (magic %d) is in no state file; it is not "
                    "managed (its broker stop %g and target %g stay); close or adopt it by hand", ticket,
                    position.symbol, position.side, position.volume, position.magic, position.sl, position.tp)
    journal.append("range_recovered", strategy=STRATEGY, reason=report.summary(),
                   resumed=report.resumed, closed_while_down=[c["ticket"] for c in report.closed_while_down],
                   pending=report.pending, orphans=[o["ticket"] for o in report.orphans],
                   rebuilt=report.rebuilt, adopted=report.adopted, unmanaged=report.unmanaged)
    log.info("range_scalp recovery: %s", report.summary())
    return report


__all__ = ["RecoveryReport", "recover", "settle_closed", "finalize_close", "range_trade_from_registry",
           "registry_trade_from_book", "entry_context", "breakeven_done"]
