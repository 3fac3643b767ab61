"""Audit a run from its journal alone: duplicated orders, lost positions, lines missing fields.

``audit_journal(path, open_tickets=None) -> AuditReport`` reads ``journal.jsonl`` and checks:

- duplicate_orders: one client id filled into two different tickets (an order sent twice);
- duplicate_opens: one ticket registered twice by the executor (two ``opened`` lines);
- readopted: a ticket adopted by the reconciler while an earlier registration was never closed:
  the registry had lost it (a state file lost or restored from an old copy) and it was rebuilt
  from the broker; listed for the operator, not a failure;
- opens_without_intent: an ``opened`` line whose client id has no earlier ``intent`` line (an order
  sent without its intent persisted first);
- unresolved_intents: an ``intent`` with no outcome line at all (opened, rejected, unknown, ...):
  the bot stopped between persisting the intent and learning the outcome; fine if the position
  was later adopted (then it is not listed) or never filled;
- unsettled_unknowns: an ``unknown`` outcome never settled (adopted, opened or released);
- double_closes: a ticket journaled ``closed`` more than once;
- closes_without_open: a ticket closed that this journal never saw opened or adopted (a journal
  cut short, or a registry entry from nowhere);
- never_closed: tickets opened or adopted and never closed. With ``open_tickets`` (the registry's
  open tickets and/or the broker's positions at our magic) they split into ``still_open`` (known
  open: fine) and ``lost`` (neither closed nor known open: a lost position);
- missing_fields: lines lacking a field their event must carry (see ``REQUIRED``).

``report.ok`` is False on any duplicate, lost position, open without intent, double close or
missing field. Run it from the command line: ``python -m state.audit runtime/journal.jsonl
[--state-dir runtime/state]`` (the state folder gives the registry's open tickets).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from state.journal import read_journal

REQUIRED: dict[str, tuple[str, ...]] = {
    "intent": ("ts", "client_id", "symbol", "strategy"),
    "opened": ("ts", "client_id", "ticket", "symbol", "strategy"),
    "adopted": ("ts", "client_id", "ticket", "symbol", "strategy", "reason"),
    "closed": ("ts", "client_id", "ticket", "symbol", "strategy", "reason"),
    "rejected": ("ts", "client_id", "symbol", "strategy", "reason"),
    "unknown": ("ts", "client_id", "symbol", "strategy", "reason"),
    "unknown_released": ("ts", "client_id", "symbol", "strategy", "reason"),
    "modified": ("ts", "client_id", "ticket", "symbol", "strategy", "reason"),
    "modify_failed": ("ts", "client_id", "ticket", "symbol", "strategy", "reason"),
    "partial_close": ("ts", "client_id", "ticket", "symbol", "strategy", "reason"),
    "close_sent": ("ts", "client_id", "ticket", "symbol", "strategy", "close_id", "reason"),
    "close_failed": ("ts", "client_id", "ticket", "symbol", "strategy", "reason"),
    "exit_escalated": ("ts", "client_id", "ticket", "symbol", "strategy", "reason"),
    "skipped": ("ts", "symbol", "strategy", "reason"),
    "expired": ("ts", "symbol", "strategy", "reason"),
    "halted": ("ts", "symbol", "strategy", "reason"),
    "external_position": ("ts", "ticket", "symbol", "reason"),
    "trading_state": ("ts", "reason"),
}
OUTCOMES = ("opened", "rejected", "unknown", "skipped", "blocked", "error", "adopted", "unknown_released")


@dataclass
class AuditReport:
    lines: int = 0
    events: dict[str, int] = field(default_factory=dict)
    duplicate_orders: dict[str, list[int]] = field(default_factory=dict)
    duplicate_opens: dict[int, int] = field(default_factory=dict)
    readopted: list[int] = field(default_factory=list)
    opens_without_intent: list[str] = field(default_factory=list)
    unresolved_intents: list[str] = field(default_factory=list)
    unsettled_unknowns: list[str] = field(default_factory=list)
    double_closes: dict[int, int] = field(default_factory=dict)
    closes_without_open: list[int] = field(default_factory=list)
    never_closed: list[int] = field(default_factory=list)
    still_open: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    missing_fields: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicate_orders or self.duplicate_opens or self.opens_without_intent or self.double_closes
                    or self.lost or self.missing_fields)

    def problems(self) -> list[str]:
        out = []
        for client_id, tickets in self.duplicate_orders.items():
            out.append(f"client id {client_id} filled twice: tickets {tickets}")
        for ticket, count in self.duplicate_opens.items():
            out.append(f"ticket {ticket} registered {count} times by the executor")
        out += [f"opened without a prior intent: {c}" for c in self.opens_without_intent]
        for ticket, count in self.double_closes.items():
            out.append(f"ticket {ticket} closed {count} times")
        out += [f"position {t} opened, never closed and not known open: LOST" for t in self.lost]
        for item in self.missing_fields[:20]:
            out.append(f"line {item['line']} ({item['event']}) lacks {', '.join(item['missing'])}")
        if len(self.missing_fields) > 20:
            out.append(f"... and {len(self.missing_fields) - 20} more lines lacking fields")
        return out

    def summary(self) -> str:
        state = "OK" if self.ok else "PROBLEMS"
        return (f"journal audit {state}: {self.lines} lines, {self.events.get('opened', 0)} opened, "
                f"{self.events.get('adopted', 0)} adopted, {self.events.get('closed', 0)} closed, "
                f"{len(self.still_open)} still open, {len(self.lost)} lost, "
                f"{len(self.duplicate_orders)} duplicate orders, {len(self.double_closes)} double closes, "
                f"{len(self.unresolved_intents)} unresolved intents, {len(self.readopted)} re-adopted, "
                f"{len(self.missing_fields)} lines lacking fields")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["duplicate_opens"] = {str(k): v for k, v in self.duplicate_opens.items()}
        data["double_closes"] = {str(k): v for k, v in self.double_closes.items()}
        return data


def _ticket(record: dict[str, Any]) -> int | None:
    try:
        return int(record["ticket"])
    except (KeyError, TypeError, ValueError):
        return None


def audit_records(records: Iterable[dict[str, Any]], open_tickets: Iterable[int] | None = None) -> AuditReport:
    """The checks of ``audit_journal`` over already-parsed journal lines."""
    report = AuditReport()
    events: Counter[str] = Counter()
    intents: set[str] = set()
    outcomes: dict[str, set[str]] = defaultdict(set)
    tickets_of: dict[str, set[int]] = defaultdict(set)
    registrations: Counter[int] = Counter()
    executor_opens: Counter[int] = Counter()
    closes: Counter[int] = Counter()
    opened_order: list[int] = []
    for number, record in enumerate(records, start=1):
        report.lines += 1
        event = str(record.get("event", ""))
        events[event] += 1
        required = REQUIRED.get(event)
        if required:
            missing = [f for f in required if record.get(f) in (None, "")]
            if missing:
                report.missing_fields.append({"line": number, "event": event, "missing": missing})
        client_id = record.get("client_id")
        ticket = _ticket(record)
        if event == "intent" and client_id:
            intents.add(client_id)
        elif event in OUTCOMES and client_id:
            outcomes[client_id].add(event)
        if event == "opened" and client_id and client_id not in intents:
            report.opens_without_intent.append(client_id)
        if event in ("opened", "adopted") and ticket is not None:
            if registrations[ticket] == 0:
                opened_order.append(ticket)
            elif event == "adopted" and closes[ticket] == 0:
                report.readopted.append(ticket)
            registrations[ticket] += 1
            if event == "opened":
                executor_opens[ticket] += 1
            if client_id and not str(client_id).startswith("adopted-"):
                tickets_of[client_id].add(ticket)
        if event == "closed" and ticket is not None:
            closes[ticket] += 1
            if registrations[ticket] == 0:
                report.closes_without_open.append(ticket)
    report.events = dict(events)
    report.duplicate_orders = {c: sorted(t) for c, t in tickets_of.items() if len(t) > 1}
    report.duplicate_opens = {t: n for t, n in executor_opens.items() if n > 1}
    report.double_closes = {t: n for t, n in closes.items() if n > 1}
    report.unresolved_intents = sorted(c for c in intents if not outcomes.get(c))
    report.unsettled_unknowns = sorted(c for c, seen in outcomes.items()
                                       if "unknown" in seen and not seen & {"opened", "adopted", "unknown_released"})
    report.never_closed = [t for t in opened_order if closes[t] == 0]
    if open_tickets is not None:
        known = {int(t) for t in open_tickets}
        report.still_open = [t for t in report.never_closed if t in known]
        report.lost = [t for t in report.never_closed if t not in known]
    else:
        report.still_open = list(report.never_closed)
    return report


def audit_journal(path: Path, open_tickets: Iterable[int] | None = None) -> AuditReport:
    """Audit ``journal.jsonl`` at ``path``; ``open_tickets`` = tickets known open (registry and/or
    broker at our magic), to tell a still-open trade from a lost one."""
    return audit_records(read_journal(Path(path)), open_tickets)


def registry_open_tickets(state_dir: Path) -> set[int]:
    """Open tickets in the registry's state files (``trades_<strategy>.json``)."""
    from state.registry import STRATEGIES, TradeRegistry
    from state.store import StateStore
    registry = TradeRegistry(StateStore(Path(state_dir)))
    return {t.ticket for s in STRATEGIES for t in registry.open_trades(s)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m state.audit", description=__doc__.split("\n")[0])
    parser.add_argument("journal", type=Path)
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="the runtime state folder: its registry's open tickets count as known open")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.journal.exists():
        print(f"no journal at {args.journal}", file=sys.stderr)
        return 2
    open_tickets = registry_open_tickets(args.state_dir) if args.state_dir else None
    report = audit_journal(args.journal, open_tickets)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(report.summary())
        for problem in report.problems():
            print(f"  {problem}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
