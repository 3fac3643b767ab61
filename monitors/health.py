"""``runtime/health.json``: what every part of the bot is doing, written by the main thread.

Parts register a provider (a function returning a small dict); the reporter calls each one and
writes the result atomically, so ``status`` (another process) always reads a whole file.
A provider that raises is reported in the file, never allowed to stop the write.
"""
from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from monitors.clock import Clock
from state.store import atomic_write_json

log = logging.getLogger(__name__)

HEALTH_FILE = "health.json"


class HealthReporter:
    def __init__(self, runtime_dir: Path, clock: Clock, version: str, started_at: datetime) -> None:
        self.path = Path(runtime_dir) / HEALTH_FILE
        self.clock = clock
        self.version = version
        self.started_at = started_at
        self.providers: dict[str, Callable[[], Any]] = {}
        self.status = "starting"

    def add(self, section: str, provider: Callable[[], Any]) -> None:
        self.providers[section] = provider

    def build(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "pid": os.getpid(),
            "status": self.status,
            "version": self.version,
            "started_at": self.started_at.isoformat(),
            "written_at": self.clock.now().isoformat(),
            "written_at_epoch": round(time.time(), 3),
        }
        for section, provider in self.providers.items():
            try:
                doc[section] = provider()
            except Exception as exc:
                doc[section] = {"error": f"{type(exc).__name__}: {exc}"}
        return doc

    def write(self) -> dict[str, Any]:
        doc = self.build()
        try:
            atomic_write_json(self.path, doc, keep_backup=False)
        except OSError as exc:
            log.error("could not write %s: %s", self.path, exc)
        return doc
