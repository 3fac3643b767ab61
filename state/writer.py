"""The state-writer thread: coalesces frequent state changes into few atomic writes.

Owners call ``submit(name, data)`` whenever their state changes; only the latest data per
document is kept, and the thread writes it soon after. Critical changes (a trade registered
after a fill) use ``write_now`` which writes synchronously and supersedes anything pending.
"""
from __future__ import annotations

import copy
import logging
import threading
from typing import Any

from state.store import StateStore

log = logging.getLogger(__name__)


class StateWriter:
    name = "state-writer"

    def __init__(self, store: StateStore, delay_seconds: float = 0.2) -> None:
        self.store = store
        self.delay_seconds = delay_seconds
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.submitted = 0
        self.errors = 0
        self.last_error: str | None = None

    def submit(self, name: str, data: dict[str, Any]) -> None:
        """Queue the latest content of a document (copied now, so the caller may mutate its own)."""
        snapshot = copy.deepcopy(data)
        with self._lock:
            self._pending[name] = snapshot
            self.submitted += 1
        self._wake.set()

    def write_now(self, name: str, data: dict[str, Any]) -> None:
        """Write synchronously (raises on failure) and drop any older pending version."""
        with self._lock:
            self._pending.pop(name, None)
        self.store.save(name, data)

    def flush(self) -> None:
        """Write everything pending now, in the calling thread."""
        with self._lock:
            pending, self._pending = self._pending, {}
        failed: dict[str, dict[str, Any]] = {}
        for name, data in pending.items():
            try:
                self.store.save(name, data)
            except Exception as exc:  # keep the data: the next flush retries it
                self.errors += 1
                self.last_error = f"{name}: {exc}"
                log.error("could not write state %s: %s", name, exc)
                failed[name] = data
        if failed:
            with self._lock:
                for name, data in failed.items():
                    self._pending.setdefault(name, data)

    def pending(self) -> list[str]:
        with self._lock:
            return sorted(self._pending)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            if self._stop.is_set():
                break
            self._wake.clear()
            self._stop.wait(self.delay_seconds)  # let a burst of submits coalesce
            self.flush()
        self.flush()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
