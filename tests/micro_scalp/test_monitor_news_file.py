"""The news calendar file: hot reload on change, a missing file is no blackout with ONE warning,
a broken file keeps the last good calendar and is reported once."""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from monitors.news_file import NewsFile

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def calendar(*events: tuple[str, str, list[str]]) -> str:
    return json.dumps({"schema_version": 1, "events": [
        {"time": t, "title": title, "impact": "high", "currencies": currencies} for t, title, currencies in events]})


def write(path: Path, text: str, bump: int = 0) -> None:
    path.write_text(text, encoding="utf-8")
    if bump:  # make sure the mtime differs even on coarse file systems
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))


def test_a_blocking_event_blacks_out_matching_symbols_only(tmp_path: Path) -> None:
    path = tmp_path / "news.json"
    write(path, calendar(("2026-01-05T12:10:00Z", "US CPI", ["USD"])))
    news = NewsFile(path)
    assert news.refresh() is True
    assert news.blackout("XAUUSD", NOW).blocked and news.blackout("EURUSD", NOW).blocked
    assert "US CPI" in news.blackout("XAUUSD", NOW).reason
    write(path, calendar(("2026-01-05T12:10:00Z", "ECB", ["EUR"])), bump=1)
    assert news.refresh() is True
    assert not news.blackout("XAUUSD", NOW).blocked and news.blackout("EURUSD", NOW).blocked
    assert news.refresh() is False  # unchanged: not re-read
    assert news.health()["status"] == "ok" and news.loads == 2


def test_missing_file_means_no_blackout_and_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    news = NewsFile(tmp_path / "news.json")
    with caplog.at_level(logging.WARNING, logger="monitors.news_file"):
        for _ in range(5):
            news.refresh()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not found" in warnings[0].getMessage()
    assert not news.blackout("XAUUSD", NOW).blocked and news.status == "missing"


def test_a_deleted_file_lifts_the_blackout_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "news.json"
    write(path, calendar(("2026-01-05T12:10:00Z", "US CPI", ["USD"])))
    news = NewsFile(path)
    news.refresh()
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="monitors.news_file"):
        news.refresh()
        news.refresh()
    assert not news.blackout("XAUUSD", NOW).blocked
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_a_broken_file_keeps_the_last_good_calendar_and_is_reported_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "news.json"
    write(path, calendar(("2026-01-05T12:10:00Z", "US CPI", ["USD"])))
    news = NewsFile(path)
    news.refresh()
    write(path, '{"events": [{"time": "2026-01-05T12:10:00", "title": "no zone", "impact": "high", '
                '"currencies": ["USD"]}]}', bump=1)
    with caplog.at_level(logging.ERROR, logger="monitors.news_file"):
        assert news.refresh() is False
        assert news.refresh() is False
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "has no time zone" in errors[0] and "previous calendar stays" in errors[0]
    assert news.blackout("XAUUSD", NOW).blocked  # the last good calendar is still in force
    assert news.health()["status"] == "error" and "no time zone" in news.health()["last_error"]
    write(path, "{not json", bump=2)
    news.refresh()
    assert "not valid JSON" in news.last_error and news.blackout("XAUUSD", NOW).blocked
    write(path, calendar(), bump=3)
    assert news.refresh() is True and not news.blackout("XAUUSD", NOW).blocked and news.status == "ok"


def test_the_shipped_calendar_parses(tmp_path: Path) -> None:
    news = NewsFile(Path(__file__).resolve().parents[2] / "config" / "news.json")
    assert news.refresh() is True and news.status == "ok" and len(news.calendar.events) >= 1


def test_the_quick_outside_window_answer_equals_the_engine_at_every_minute(tmp_path: Path) -> None:
    """blackout skips the event walk outside the symbol's windows: the verdicts must be the
    engine's, edges included, and a reloaded calendar must replace the cached windows."""
    from datetime import timedelta

    from engines.news import blackout_status

    path = tmp_path / "news.json"
    write(path, calendar(("2026-01-05T12:10:00Z", "US CPI", ["USD"]), ("2026-01-05T13:00:00Z", "ECB", ["EUR"])))
    news = NewsFile(path)
    news.refresh()
    for minutes in range(-120, 120):
        for symbol in ("XAUUSD", "EURUSD", "BTCUSD", "GBPJPY"):
            now = NOW + timedelta(minutes=minutes)
            assert news.blackout(symbol, now) == blackout_status(news.calendar, symbol, now)
    write(path, calendar(("2026-01-05T12:10:00Z", "ECB", ["EUR"])), bump=1)
    news.refresh()
    assert not news.blackout("XAUUSD", NOW).blocked and news.blackout("EURUSD", NOW).blocked
    with pytest.raises(ValueError):
        news.blackout("XAUUSD", datetime(2026, 1, 5, 9, 0))  # naive: refused as by the engine
