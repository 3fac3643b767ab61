"""Hot reload: poll the config files, validate, swap the new snapshot in atomically.

Editors save in several steps (truncate then write, or write a temp file then rename), so a
change is acted on only once the files have stopped changing for ``settle_seconds``. A valid
change is applied as a new immutable snapshot and logged as a diff; keys that cannot change
while running are reported and kept at their old values; an invalid change is rejected with
the same text ``check-config`` prints, and the last good config stays in force.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from config.loader import (CONFIG_FILES, Change, ConfigError, ConfigProblem, ConfigSnapshot,
                           build_snapshot, diff_raw, read_json_file, revert_keys, validate_raw)
from monitors.clock import Clock

log = logging.getLogger(__name__)

Listener = Callable[[ConfigSnapshot, ConfigSnapshot, list[Change]], None]
RejectListener = Callable[[list[ConfigProblem]], None]


class ConfigHolder:
    """The snapshot in force. Readers take ``current`` once per cycle; a swap is one reference
    assignment, so nobody ever sees half of an old config and half of a new one."""

    def __init__(self, snapshot: ConfigSnapshot) -> None:
        self._snapshot = snapshot
        self._listeners: list[Listener] = []
        self._reject_listeners: list[RejectListener] = []
        self._lock = threading.Lock()

    @property
    def current(self) -> ConfigSnapshot:
        return self._snapshot

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def on_reject(self, listener: RejectListener) -> None:
        self._reject_listeners.append(listener)

    def swap(self, new: ConfigSnapshot, changes: list[Change]) -> None:
        with self._lock:
            old, self._snapshot = self._snapshot, new
        for listener in list(self._listeners):
            try:
                listener(old, new, changes)
            except Exception:  # a listener must never break the reload itself
                log.exception("config change listener failed")

    def rejected(self, problems: list[ConfigProblem]) -> None:
        for listener in list(self._reject_listeners):
            try:
                listener(problems)
            except Exception:
                log.exception("config reject listener failed")


@dataclass
class ReloadOutcome:
    """What one poll did, for logs, health and tests."""

    applied: bool = False
    rejected: list[ConfigProblem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    needs_restart: list[Change] = field(default_factory=list)
    waiting: bool = False


class ConfigWatcher:
    """Polls the config folder; run it from a monitor loop (``step``) or call ``poll`` in tests."""

    name = "config-watcher"

    def __init__(self, config_dir: Path, holder: ConfigHolder, clock: Clock,
                 settle_seconds: float = 0.3, stop_event: threading.Event | None = None) -> None:
        self.config_dir = Path(config_dir)
        self.holder = holder
        self.clock = clock
        self.settle_seconds = settle_seconds
        self._stop = stop_event or threading.Event()
        self._last_seen = dict(holder.current.digests)
        self._last_rejected: dict[str, str] | None = None
        self.reloads = 0
        self.rejections = 0
        self.last_error: str | None = None

    @property
    def interval_seconds(self) -> float:
        return self.holder.current.bot.runtime.config_poll_seconds

    def step(self, now: Any = None) -> None:
        self.poll()

    def _digests(self) -> tuple[dict[str, str], dict[str, Any], list[ConfigProblem]]:
        digests: dict[str, str] = {}
        raw: dict[str, Any] = {}
        problems: list[ConfigProblem] = []
        for name in CONFIG_FILES:
            data, digest, file_problems = read_json_file(self.config_dir / name)
            digests[name] = digest
            problems.extend(file_problems)
            if data is not None:
                raw[name] = data
        return digests, raw, problems

    def poll(self) -> ReloadOutcome:
        """Look once; apply or reject a change that has settled."""
        digests, raw, problems = self._digests()
        if digests == self._last_seen:
            return ReloadOutcome()
        if self.settle_seconds > 0:
            # Wait for the editor to finish: act only when two reads a settle period apart agree.
            self.clock.wait(self._stop, self.settle_seconds)
            again, raw, problems = self._digests()
            if again != digests:
                log.debug("config files still changing; waiting for them to settle")
                return ReloadOutcome(waiting=True)
        if self._last_rejected == digests:
            return ReloadOutcome()  # the same broken content: already reported once
        return self._apply(digests, raw, problems)

    def _apply(self, digests: dict[str, str], raw: dict[str, Any],
               read_problems: list[ConfigProblem]) -> ReloadOutcome:
        models, problems = validate_raw(raw)
        problems = read_problems + problems
        if problems:
            self._last_rejected = digests
            self.rejections += 1
            self.last_error = "; ".join(str(p) for p in problems)
            log.error("config change rejected; the last good config stays in force:\n  %s",
                      "\n  ".join(str(p) for p in problems))
            self.holder.rejected(problems)
            return ReloadOutcome(rejected=problems)
        old = self.holder.current
        changes = diff_raw(old.raw, raw)
        restart = [c for c in changes if c.needs_restart]
        applied_changes = [c for c in changes if not c.needs_restart]
        if restart:
            raw = revert_keys(raw, old.raw, restart)
            models, problems = validate_raw(raw)
            for change in restart:
                log.warning("config: %s needs a restart; not applied until the bot restarts", change)
            if problems:  # keeping the old value made the rest inconsistent: refuse the whole edit
                self._last_rejected = digests
                self.rejections += 1
                self.last_error = "; ".join(str(p) for p in problems)
                log.error("config change rejected (it only fits with keys that need a restart):\n  %s",
                          "\n  ".join(str(p) for p in problems))
                self.holder.rejected(problems)
                return ReloadOutcome(rejected=problems, needs_restart=restart)
        self._last_seen = digests
        self._last_rejected = None
        self.last_error = None
        if not applied_changes:
            return ReloadOutcome(needs_restart=restart)
        snapshot = build_snapshot(raw, models, digests, old.version + 1)
        self.holder.swap(snapshot, applied_changes)
        self.reloads += 1
        log.info("config reloaded (version %d):\n  %s", snapshot.version,
                 "\n  ".join(str(c) for c in applied_changes))
        return ReloadOutcome(applied=True, changes=applied_changes, needs_restart=restart)

    def health(self) -> dict[str, Any]:
        return {"config_version": self.holder.current.version, "reloads": self.reloads,
                "rejections": self.rejections, "last_error": self.last_error}


def describe_error(exc: ConfigError) -> str:
    return "\n".join(str(p) for p in exc.problems)
