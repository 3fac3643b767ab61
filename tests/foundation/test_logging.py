"""Logs: thread names, secrets redacted, no crash on a console that cannot print a character."""
from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

from monitors.logsetup import SafeConsoleHandler, set_level, setup_logging


def teardown_function() -> None:
    setup_logging(None, console=False)


def test_file_log_has_thread_names_and_redacts_secrets(tmp_path: Path) -> None:
    setup_logging(tmp_path, "INFO", console=False, secrets=["s3cr3t-pass"])
    log = logging.getLogger("test")

    def worker() -> None:
        log.info("login with password %s", "s3cr3t-pass")
        log.info("posting to https://discord.com/api/webhooks/123/abcDEF-token now")

    thread = threading.Thread(target=worker, name="micro-scalp")
    thread.start()
    thread.join()
    try:
        raise RuntimeError("auth failed for s3cr3t-pass")
    except RuntimeError:
        log.exception("broker error")
    text = (tmp_path / "bot.log").read_text(encoding="utf-8")
    assert "[micro-scalp]" in text and "[MainThread]" in text
    assert "s3cr3t-pass" not in text and "abcDEF-token" not in text
    assert "password ***" in text and "/api/webhooks/***" in text
    assert "auth failed for ***" in text


def test_console_that_cannot_encode_does_not_crash() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252", errors="strict")
    handler = SafeConsoleHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "gold ≈ 2350 → buy ✓ 金", None, None)
    handler.emit(record)
    stream.flush()
    out = raw.getvalue().decode("cp1252")
    assert out.startswith("gold \\u2248 2350 \\u2192 buy \\u2713 \\u91d1")


def test_level_is_hot_reloadable(tmp_path: Path) -> None:
    setup_logging(tmp_path, "INFO", console=False)
    log = logging.getLogger("lvl")
    log.debug("hidden")
    set_level("DEBUG")
    log.debug("shown")
    text = (tmp_path / "bot.log").read_text(encoding="utf-8")
    assert "shown" in text and "hidden" not in text


def test_log_file_rotates_by_size(tmp_path: Path) -> None:
    setup_logging(tmp_path, "INFO", console=False, max_bytes=2000, backups=2)
    log = logging.getLogger("rot")
    for i in range(200):
        log.info("line %d %s", i, "x" * 50)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["bot.log", "bot.log.1", "bot.log.2"]
