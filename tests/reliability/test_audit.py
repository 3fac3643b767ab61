"""The journal audit: a real run audits clean; duplicates, lost positions, opens without intent and
lines missing fields are each found."""
from __future__ import annotations

import json
from pathlib import Path

from state.audit import audit_journal, audit_records, main
from tests.reliability.rig import build_rig

INTENT = {"event": "intent", "ts": "2026-01-05T12:00:00+00:00", "symbol": "XAUUSD", "strategy": "micro_scalp"}


def line(event: str, **fields) -> dict:
    base = {"ts": "2026-01-05T12:00:01+00:00", "symbol": "XAUUSD", "strategy": "micro_scalp", "reason": "r"}
    return {**base, **fields, "event": event}


def test_a_real_run_with_crash_like_differences_audits_clean(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    rig.reconciler.run("startup")
    kept = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    closed = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    rig.executor.modify(kept, round(kept.sl + 1.0, 2), kept.tp, "trail")
    rig.executor.close(closed, "time exit")
    adopted = rig.raw_order(comment="ms-from-a-crash")  # a fill the registry never saw
    rig.raw_order(magic=0, comment="manual")
    rig.reconciler.run("periodic")
    open_tickets = {t.ticket for t in rig.registry.open_trades()}
    report = audit_journal(rig.stack.runtime / "journal.jsonl", open_tickets)
    assert report.ok, report.problems()
    assert sorted(report.still_open) == sorted([kept.ticket, adopted]) and report.lost == []
    assert report.events["opened"] == 2 and report.events["adopted"] == 1 and report.events["closed"] == 1
    assert report.missing_fields == [] and report.unresolved_intents == []


def test_duplicates_and_losses_are_found() -> None:
    records = [
        {**INTENT, "client_id": "a"}, line("opened", client_id="a", ticket=1),
        line("adopted", client_id="a", ticket=2),               # the same order filled twice
        {**INTENT, "client_id": "b"}, line("opened", client_id="b", ticket=3),
        line("opened", client_id="b", ticket=3),                # one ticket registered twice
        line("adopted", client_id="b", ticket=3),               # the registry lost it: rebuilt (not a failure)
        line("opened", client_id="c", ticket=4),                # sent without an intent first
        {**INTENT, "client_id": "d"},                           # never learned the outcome
        {**INTENT, "client_id": "e"}, line("unknown", client_id="e"),  # unclear, never settled
        line("closed", client_id="a", ticket=1), line("closed", client_id="a", ticket=1),  # closed twice
        line("closed", client_id="z", ticket=9),                # closed, never opened here
        line("opened", ticket=5),                               # a line without its client id
    ]
    report = audit_records(records, open_tickets={2})
    assert not report.ok
    assert report.duplicate_orders == {"a": [1, 2]}
    assert report.duplicate_opens == {3: 2} and report.readopted == [3]
    assert report.opens_without_intent == ["c"]
    assert report.unresolved_intents == ["d"]
    assert report.unsettled_unknowns == ["e"]
    assert report.double_closes == {1: 2}
    assert report.closes_without_open == [9]
    assert report.still_open == [2] and sorted(report.lost) == [3, 4, 5]
    assert report.missing_fields == [{"line": 15, "event": "opened", "missing": ["client_id"]}]
    problems = "\n".join(report.problems())
    assert "client id a filled twice" in problems and "LOST" in problems and "lacks client_id" in problems


def test_a_torn_last_line_is_skipped_and_the_cli_reports(tmp_path: Path, capsys) -> None:
    path = tmp_path / "journal.jsonl"
    good = [{**INTENT, "client_id": "a"}, line("opened", client_id="a", ticket=1),
            line("closed", client_id="a", ticket=1)]
    path.write_text("\n".join(json.dumps(r) for r in good) + '\n{"event": "intent", "ts"', encoding="utf-8")
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("journal audit OK: 3 lines, 1 opened, 0 adopted, 1 closed")
    path.write_text("\n".join(json.dumps(r) for r in good + [line("closed", client_id="a", ticket=1)]) + "\n",
                    encoding="utf-8")
    assert main([str(path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["double_closes"] == {"1": 2}
