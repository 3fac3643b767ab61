"""State and journal for a replay: the live classes, without the per-write durability.

Live, every registry, risk-ledger and range-book change is fsynced and renamed into place before
the call returns, and an order intent is fsynced before the order is sent: a crash must never
lose a trade. A replay has nothing to recover after a crash (it is run again from the start), and
those syncs cost about 3 ms each, a large share of a backtest step. So in a backtest:

- ``ReplayStateStore`` is a ``StateStore`` whose ``save`` keeps the latest document of each name in
  memory, unencoded; ``flush()`` encodes (the same bytes the live store writes) and writes each
  through the live atomic write (without its fsyncs) once, at the end of the run, into the run
  folder. ``load`` sees unsaved documents (encoded and decoded, as a live load would). Encoding is
  deferred because the registry's documents hold up to 500 closed trades and are saved at every
  trade change: encoding each (indented JSON, about 5 ms) would dominate a long backtest. Every
  caller builds a fresh document per save and never changes it afterwards (registry, risk ledger,
  trading guard, range book, statistics), which is what makes keeping the reference safe.
- ``ReplayJournal`` is the live ``Journal`` (one JSON line per event) that never fsyncs and lets
  the file buffer fill instead of flushing every line; the driver closes it at the end of the
  segment, also when a monitor aborts the run.

Nothing the strategies, the executor or the risk manager decide depends on either difference.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from state.journal import Journal
from state.store import SCHEMA_VERSION_KEY, LoadResult, StateStore, atomic_write_bytes, encode_json


class ReplayStateStore(StateStore):
    def __init__(self, folder: Path, schema_version: int = 1) -> None:
        super().__init__(folder, schema_version)
        self._pending: dict[str, dict[str, Any]] = {}

    def save(self, name: str, data: dict[str, Any]) -> None:
        document = dict(data)
        document[SCHEMA_VERSION_KEY] = self.schema_version
        self.check_name(name)  # the same name check as a live save (without building the path)
        self._pending[name] = document
        self.writes += 1

    def load_result(self, name: str, default: dict[str, Any] | None = None) -> LoadResult:
        document = self._pending.get(name)
        if document is None:
            return super().load_result(name, default)
        return LoadResult(json.loads(encode_json(document)), "memory")

    def flush(self) -> int:
        """Write every saved document (atomically, as live, but without the fsyncs: about 8 ms
        each, and a replay is run again rather than recovered); returns how many were written."""
        for name, document in sorted(self._pending.items()):
            atomic_write_bytes(self.path(name), encode_json(document), durable=False)
        written = len(self._pending)
        self._pending.clear()
        return written


class ReplayJournal(Journal):
    flush_lines = False

    def append(self, event: str, durable: bool = False, **fields: Any) -> dict[str, Any]:
        return super().append(event, durable=False, **fields)
