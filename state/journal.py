"""The append-only journal: one JSON object per line per event, the audit trail of every run.

Lines are flushed one by one; events that must survive a crash of the whole machine (an order
intent written before the order is sent) are also fsynced. A torn last line after a crash is
skipped by the reader and reported, never fatal.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from state.store import _json_default

log = logging.getLogger(__name__)

# Fields every line may carry so a run can be audited from the journal alone.
STANDARD_FIELDS = ("ts", "event", "client_id", "ticket", "symbol", "strategy", "reason")
# What ``json.dumps(record, ensure_ascii=False, default=_json_default, separators=(",", ":"))``
# builds for every line: one encoder, made once (an encoder keeps no state between calls).
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, default=_json_default, separators=(",", ":"))


class Journal:
    flush_lines = True  # each line reaches the OS before append returns (a replay may buffer)

    def __init__(self, path: Path, now: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._lock = threading.Lock()
        self._handle = open(self.path, "a", encoding="utf-8", newline="\n")
        self.lines_written = 0

    def append(self, event: str, durable: bool = False, **fields: Any) -> dict[str, Any]:
        """Write one event line; ``durable`` also fsyncs it (for intents before a send)."""
        record: dict[str, Any] = {"ts": self._now().isoformat(), "event": event}
        record.update({k: v for k, v in fields.items() if v is not None})
        line = _LINE_ENCODER.encode(record)
        with self._lock:
            if self._handle.closed:
                self._handle = open(self.path, "a", encoding="utf-8", newline="\n")
            self._handle.write(line + "\n")
            if self.flush_lines or durable:
                self._handle.flush()
            if durable:
                os.fsync(self._handle.fileno())
            self.lines_written += 1
        return record

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                self._handle.close()


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Yield every well-formed line; a torn or corrupt line is logged and skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("journal %s line %d is not valid JSON (torn write?); skipped", path.name, number)
                continue
            if isinstance(record, dict):
                yield record
