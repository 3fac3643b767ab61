"""The state store survives a kill at any instant; the writer coalesces; the journal appends."""
from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from state import store as store_module
from state.journal import Journal, read_journal
from state.store import StateFileError, StateStore, load_json_with_fallback
from state.writer import StateWriter

CHILD = Path(__file__).with_name("state_writer_child.py")


def test_save_and_load_round_trip_with_schema_version(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("trades", {"open": {"123": {"symbol": "EURUSD"}}})
    data = store.load("trades")
    assert data == {"open": {"123": {"symbol": "EURUSD"}}, "schema_version": 1}
    assert not list(tmp_path.glob("*.tmp-*"))


def test_previous_version_is_kept_as_bak_and_used_when_the_file_is_missing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("risk", {"v": 1})
    store.save("risk", {"v": 2})
    assert json.loads((tmp_path / "risk.json.bak").read_text())["v"] == 1
    (tmp_path / "risk.json").unlink()  # e.g. killed between the two renames
    result = store.load_result("risk")
    assert result.source == "bak" and result.data["v"] == 1


def test_unparsable_file_is_kept_aside_and_bak_is_used(tmp_path: Path, caplog) -> None:
    store = StateStore(tmp_path)
    store.save("stats", {"v": 1})
    store.save("stats", {"v": 2})
    (tmp_path / "stats.json").write_text('{"v": 2, "trunc', encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        result = store.load_result("stats")
    assert result.source == "bak" and result.data["v"] == 1
    assert result.quarantined is not None and result.quarantined.exists()
    assert result.quarantined.read_text(encoding="utf-8") == '{"v": 2, "trunc'
    assert "unparsable" in caplog.text and result.quarantined.name in caplog.text
    assert not (tmp_path / "stats.json").exists()


def test_no_file_and_no_backup_gives_the_default(tmp_path: Path) -> None:
    result = StateStore(tmp_path).load_result("nothing", {"open": {}})
    assert result.source == "default" and result.data == {"open": {}}


def test_a_newer_schema_is_refused_rather_than_misread(tmp_path: Path) -> None:
    (tmp_path / "trades.json").write_text('{"schema_version": 7}', encoding="utf-8")
    with pytest.raises(StateFileError, match="schema_version 7 is newer"):
        StateStore(tmp_path).load("trades")


def test_replace_is_retried_on_windows_permission_errors(tmp_path: Path, monkeypatch) -> None:
    real_replace = os.replace
    failures = {"left": 3}

    def flaky_replace(src, dst):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise PermissionError(13, "The process cannot access the file")
        return real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", flaky_replace)
    StateStore(tmp_path).save("trades", {"v": 1})
    assert failures["left"] == 0
    assert json.loads((tmp_path / "trades.json").read_text())["v"] == 1


def test_replace_gives_up_after_bounded_retries(tmp_path: Path, monkeypatch) -> None:
    def always_locked(src, dst):
        raise PermissionError(13, "locked")

    monkeypatch.setattr(store_module.os, "replace", always_locked)
    with pytest.raises(PermissionError):
        store_module.atomic_write_bytes(tmp_path / "x.json", b"{}", sleep=lambda s: None)
    assert not list(tmp_path.glob("x.json.tmp-*"))  # the temporary file is cleaned up


def _consistent(doc: dict) -> bool:
    n = doc["n"]
    return doc["check"] == n * 100 and len(doc["trades"]) == 100 and all(t["n"] == n for t in doc["trades"].values())


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL does not exist on Windows")
def test_sigkill_at_random_instants_never_leaves_a_mixture(tmp_path: Path) -> None:
    """200 kills of a child writing a 100-trade state in a loop; after each, the file loads
    and holds the document being written or the one before it, whole."""
    rng = random.Random(20261121)
    last_loaded = 0
    kills = 0
    sources = {"file": 0, "bak": 0}
    while kills < 200:
        child = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path)], stdout=subprocess.PIPE, text=True)
        ready = child.stdout.readline().split()
        assert ready[0] == "ready" and int(ready[1]) == last_loaded
        time.sleep(rng.uniform(0.0, 0.02))
        child.send_signal(signal.SIGKILL)
        complete_lines = child.communicate()[0].split("\n")[:-1]  # the last piece may be cut off
        begun = [int(line.split()[1]) for line in complete_lines if line.startswith("begin ")]
        kills += 1
        result = load_json_with_fallback(tmp_path / "trades.json", None)
        if not begun:  # killed before its first write: the file is untouched
            if last_loaded:
                assert result.data["n"] == last_loaded
            continue
        if result.data is None and begun == [last_loaded + 1] and last_loaded == 0:
            # killed inside the very first write: "the one before it" is no document at all
            assert result.quarantined is None, f"kill {kills}: a corrupt file was found"
            continue
        assert result.data is not None, f"kill {kills}: nothing loadable"
        assert result.quarantined is None, f"kill {kills}: a corrupt file was found"
        assert _consistent(result.data), f"kill {kills}: mixed content"
        assert result.data["n"] in (begun[-1], begun[-1] - 1), f"kill {kills}: n={result.data['n']} begun={begun[-1]}"
        sources[result.source] += 1
        last_loaded = result.data["n"]
        if result.source == "bak":  # the next run starts from .bak as the bot would
            (tmp_path / "trades.json.bak").replace(tmp_path / "trades.json")
        for leftover in tmp_path.glob("trades.json.tmp-*"):
            leftover.unlink()  # a killed writer's temporary file (never read by load)
    assert kills == 200 and last_loaded > 0


def test_writer_coalesces_many_submits_into_few_writes(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    writer = StateWriter(store)
    data = {"n": 0}
    for n in range(1, 101):
        data["n"] = n
        writer.submit("stats", data)
    data["n"] = -1  # the caller mutating its own dict must not change what was submitted
    assert writer.pending() == ["stats"]
    writer.flush()
    assert store.writes == 1 and store.load("stats")["n"] == 100
    assert writer.pending() == []


def test_writer_thread_writes_in_the_background_and_flushes_on_stop(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    writer = StateWriter(store, delay_seconds=0.01)
    writer.start()
    writer.submit("a", {"v": 1})
    deadline = time.monotonic() + 5
    while store.writes < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.load("a")["v"] == 1
    writer.submit("b", {"v": 2})
    writer.stop()
    assert not writer.is_alive() and store.load("b")["v"] == 2


def test_write_now_is_synchronous_and_supersedes_pending(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    writer = StateWriter(store)
    writer.submit("trades", {"v": "old"})
    writer.write_now("trades", {"v": "new"})
    writer.flush()
    assert store.load("trades")["v"] == "new" and store.writes == 1


def test_a_failed_background_write_keeps_the_data_for_the_next_flush(tmp_path: Path, monkeypatch) -> None:
    store = StateStore(tmp_path)
    writer = StateWriter(store)
    real_save = store.save
    calls = {"n": 0}

    def failing_once(name, data):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        real_save(name, data)

    monkeypatch.setattr(store, "save", failing_once)
    writer.submit("trades", {"v": 1})
    writer.flush()
    assert writer.errors == 1 and writer.pending() == ["trades"]
    writer.flush()
    assert store.load("trades")["v"] == 1


def test_journal_appends_lines_and_the_reader_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.append("intent", durable=True, client_id="ms-1", symbol="XAUUSD", strategy="micro_scalp")
    journal.append("opened", client_id="ms-1", ticket=5, reason=None)
    journal.close()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"event": "clo')  # a crash in the middle of a line
    records = list(read_journal(path))
    assert [r["event"] for r in records] == ["intent", "opened"]
    assert records[0]["client_id"] == "ms-1" and "ts" in records[0]
    assert "reason" not in records[1]  # None fields are left out


def test_journal_line_bytes_are_compact_utf8_json(tmp_path: Path) -> None:
    """One line's exact bytes: compact separators, non-ASCII text written as UTF-8 (not
    \\u-escaped), nested values and a datetime in the default encoding, in insertion order."""
    clock = datetime(2026, 6, 1, 12, 30, 5, tzinfo=timezone.utc)
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, now=lambda: clock)
    record = journal.append("closed", ticket=7, reason="stop → 1.2 €",
                            detail={"levels": [1.2, 1.5], "why": {"note": "déjà vu", "ok": True}},
                            opened=datetime(2026, 6, 1, 14, 0, tzinfo=timezone.utc), price=None)
    journal.close()
    expected = ('{"ts":"2026-06-01T12:30:05+00:00","event":"closed","ticket":7,"reason":"stop → 1.2 €",'
                '"detail":{"levels":[1.2,1.5],"why":{"note":"déjà vu","ok":true}},'
                '"opened":"2026-06-01T14:00:00+00:00"}\n').encode("utf-8")
    assert path.read_bytes() == expected
    assert "→ 1.2 €".encode("utf-8") in path.read_bytes() and b"\\u" not in path.read_bytes()
    assert record["reason"] == "stop → 1.2 €" and "price" not in record
    assert list(read_journal(path)) == [{**record, "opened": "2026-06-01T14:00:00+00:00"}]
