"""Crash-safe JSON files: the only code that writes the bot's state files.

A write goes to a temporary file in the same folder, is flushed and fsynced, the current file
becomes ``.bak`` and the temporary file replaces it (``os.replace`` is atomic on one volume).
A crash at any instant therefore leaves either the new file, or the old one (as the file or as
``.bak``), never a mixture. Windows antivirus and indexers briefly lock files, so the renames
are retried on ``PermissionError``.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

SCHEMA_VERSION_KEY = "schema_version"
REPLACE_ATTEMPTS = 20
REPLACE_FIRST_DELAY_S = 0.005


class StateFileError(Exception):
    """A state file and its backup could not be loaded."""


def _replace_with_retry(src: Path, dst: Path, sleep: Callable[[float], None] = time.sleep) -> None:
    """``os.replace`` retried on PermissionError (Windows: another process holds the file)."""
    delay = REPLACE_FIRST_DELAY_S
    for attempt in range(REPLACE_ATTEMPTS):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == REPLACE_ATTEMPTS - 1:
                raise
            sleep(delay)
            delay = min(delay * 2, 0.25)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX only; Windows has no directory handles for this)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, payload: bytes, keep_backup: bool = True,
                       sleep: Callable[[float], None] = time.sleep, durable: bool = True) -> None:
    """Write ``payload`` to ``path`` atomically; the previous file becomes ``path.bak``.
    ``durable`` False skips the fsyncs (a replay's files: nothing to recover after a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if keep_backup and path.exists():
            _replace_with_retry(path, path.with_name(path.name + ".bak"), sleep)
        _replace_with_retry(tmp, path, sleep)
        if durable:
            _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass


def encode_json(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, default=_json_default)
            + "\n").encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a state file")


def atomic_write_json(path: Path, data: Any, keep_backup: bool = True) -> None:
    atomic_write_bytes(Path(path), encode_json(data), keep_backup=keep_backup)


@dataclass(frozen=True)
class LoadResult:
    """What a load found: the data and where it came from (``file``, ``bak`` or ``default``)."""
    data: Any
    source: str
    quarantined: Path | None = None


def _read_json(path: Path) -> Any:
    text = path.read_text(encoding="utf-8-sig")
    return json.loads(text)


def quarantine(path: Path, now: datetime | None = None) -> Path:
    """Keep an unparsable file aside under a new name so it is never overwritten silently."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}-{uuid.uuid4().hex[:4]}")
    _replace_with_retry(path, target)
    return target


def load_json_with_fallback(path: Path, default: Any = None) -> LoadResult:
    """Load ``path``; if it is missing or corrupt, fall back to ``.bak``; else ``default``.

    A corrupt main file is moved aside (and logged) so the next write cannot destroy the
    evidence. A corrupt ``.bak`` is left where it is: the next write replaces it anyway.
    """
    path = Path(path)
    bak = path.with_name(path.name + ".bak")
    quarantined: Path | None = None
    if path.exists():
        try:
            return LoadResult(_read_json(path), "file")
        except (ValueError, UnicodeDecodeError) as exc:
            quarantined = quarantine(path)
            log.error("state file %s is unparsable (%s); kept aside as %s", path, exc, quarantined.name)
    if bak.exists():
        try:
            data = _read_json(bak)
            log.warning("state file %s restored from %s", path.name, bak.name)
            return LoadResult(data, "bak", quarantined)
        except (ValueError, UnicodeDecodeError) as exc:
            log.error("backup %s is unparsable too (%s)", bak, exc)
    return LoadResult(default, "default", quarantined)


class StateStore:
    """Named JSON documents under one folder, each carrying a ``schema_version``.

    ``save`` is synchronous and durable (used for critical writes and by the state writer
    thread); one lock per document keeps two writers of the same file from interleaving.
    """

    def __init__(self, folder: Path, schema_version: int = 1) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.schema_version = schema_version
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.writes = 0

    @staticmethod
    def check_name(name: str) -> None:
        """A document name is a plain file stem: no folder separators, no drive, not hidden."""
        if not name or "/" in name or "\\" in name or ":" in name or name.startswith("."):
            raise ValueError(f"invalid state document name {name!r}")

    def path(self, name: str) -> Path:
        self.check_name(name)
        return self.folder / f"{name}.json"

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def save(self, name: str, data: dict[str, Any]) -> None:
        document = dict(data)
        document[SCHEMA_VERSION_KEY] = self.schema_version
        payload = encode_json(document)
        with self._lock(name):
            atomic_write_bytes(self.path(name), payload)
            self.writes += 1

    def load(self, name: str, default: dict[str, Any] | None = None) -> dict[str, Any]:
        """Load a document; ``default`` (or ``{}``) when neither file nor backup is usable."""
        result = self.load_result(name, default)
        return result.data

    def load_result(self, name: str, default: dict[str, Any] | None = None) -> LoadResult:
        with self._lock(name):
            result = load_json_with_fallback(self.path(name), None)
        if result.data is None:
            return LoadResult(dict(default or {}), result.source, result.quarantined)
        data = result.data
        if not isinstance(data, dict):
            raise StateFileError(f"{self.path(name)}: expected a JSON object, found {type(data).__name__}")
        version = data.get(SCHEMA_VERSION_KEY)
        if version is not None and version > self.schema_version:
            raise StateFileError(
                f"{self.path(name)}: schema_version {version} is newer than this bot understands "
                f"({self.schema_version}); upgrade the bot or move the file away")
        return LoadResult(data, result.source, result.quarantined)

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json"))
