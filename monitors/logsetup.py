"""Logging: console and a size-rotated file, thread name on every line, UTC times, secrets redacted.

A Windows console with a legacy code page cannot print every character; the console handler
replaces what it cannot encode instead of raising, so a symbol or a reason text never crashes
a thread.
"""
from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import threading
import time
from pathlib import Path
from typing import Iterable

FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"
DATEFMT = "%Y-%m-%dT%H:%M:%S"
# Discord webhook URLs are secrets even when they were not loaded through Secrets.
WEBHOOK_PATTERN = re.compile(r"(?:https?://(?:\w+\.)?discord(?:app)?\.com)?/api/webhooks/[^\s'\"]+")


class RedactingFilter(logging.Filter):
    """Replaces every known secret (and anything shaped like a webhook URL) with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return WEBHOOK_PATTERN.sub("/api/webhooks/***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class SafeConsoleHandler(logging.StreamHandler):
    """A console handler that never raises on characters the console cannot encode."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            stream = self.stream
            encoding = getattr(stream, "encoding", None) or "utf-8"
            try:
                stream.write(message + self.terminator)
            except UnicodeEncodeError:
                safe = message.encode(encoding, errors="backslashreplace").decode(encoding, errors="replace")
                stream.write(safe + self.terminator)
            self.flush()
        except Exception:
            self.handleError(record)


class UtcFormatter(logging.Formatter):
    converter = time.gmtime


_redactor = RedactingFilter()


def redactor() -> RedactingFilter:
    return _redactor


def setup_logging(log_dir: Path | None, level: str = "INFO", console: bool = True,
                  max_bytes: int = 10_000_000, backups: int = 5,
                  secrets: Iterable[str] = ()) -> logging.Logger:
    """Configure the root logger once for the process (handlers replaced on a second call)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    _redactor.set_secrets(secrets)
    formatter = UtcFormatter(FORMAT, DATEFMT)
    if console:
        handler = SafeConsoleHandler(sys.stderr)
        handler.setFormatter(formatter)
        handler.addFilter(_redactor)
        root.addHandler(handler)
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            Path(log_dir) / "bot.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8",
            delay=False)
        file_handler.setFormatter(formatter)
        file_handler.addFilter(_redactor)
        root.addHandler(file_handler)
    set_level(level)
    for noisy in ("urllib3", "websocket", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return root


def set_level(level: str) -> None:
    """Change the level of every handler at once (hot reload of ``logging.level``)."""
    logging.getLogger().setLevel(getattr(logging, level.upper(), logging.INFO))
