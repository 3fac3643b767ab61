"""One bot per runtime folder: two processes trading the same account from the same state
would place duplicate orders. The lock is an OS file lock, released by the OS when the process
dies in any way (even SIGKILL), so a crash never leaves a stale lock behind."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

LOCK_FILE = "bot.lock"


class AlreadyRunning(Exception):
    pass


class InstanceLock:
    def __init__(self, runtime_dir: Path) -> None:
        self.path = Path(runtime_dir) / LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            _lock(handle)
        except OSError:
            try:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
            except OSError:  # Windows: the locked byte cannot be read by another process
                holder = "unknown"
            handle.close()
            raise AlreadyRunning(
                f"another bot (pid {holder}) is already running on {self.path.parent}; "
                "stop it first or use another --runtime-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            try:
                _unlock(self._handle)
            finally:
                self._handle.close()
                self._handle = None

    def is_held_elsewhere(self) -> bool:
        """True if another process holds the lock (used by ``status``)."""
        if not self.path.exists():
            return False
        try:
            self.acquire()
        except AlreadyRunning:
            return True
        self.release()
        return False


if os.name == "nt":
    import msvcrt

    def _lock(handle: IO[str]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(handle: IO[str]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(handle: IO[str]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(handle: IO[str]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
