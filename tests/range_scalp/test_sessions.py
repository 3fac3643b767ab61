"""UTC sessions: the explicit hour -> key map, blocked windows, session and day starts."""
from __future__ import annotations

import pytest

from config.range_scalp_model import SessionParams, SessionWindow
from engines.range_sessions import (
    blocked_window_at, in_window, session_key_at, session_range_start, trading_day_start,
)
from tests.range_scalp.helpers import utc

SESSIONS = SessionParams()


@pytest.mark.parametrize("hour, key", [
    (0, "asian"), (7, "asian"), (8, "london"), (12, "london"), (13, "overlap"), (15, "overlap"),
    (16, "ny"), (19, "ny"), (20, "late_ny"), (23, "late_ny"),
])
def test_every_utc_hour_maps_to_its_session_key(hour: int, key: str) -> None:
    assert session_key_at(utc(2026, 6, 2, hour, 59).timestamp(), SESSIONS) == key


@pytest.mark.parametrize("hh, mm, blocked", [
    (7, 59, None), (8, 0, "london_open_buffer"), (8, 29, "london_open_buffer"), (8, 30, None),
    (11, 59, None), (12, 0, "london_ny_overlap"), (14, 59, "london_ny_overlap"), (15, 0, None),
])
def test_blocked_windows(hh: int, mm: int, blocked: str | None) -> None:
    window = blocked_window_at(utc(2026, 6, 2, hh, mm).timestamp(), SESSIONS)
    assert (window.name if window else None) == blocked


def test_a_window_may_wrap_past_midnight() -> None:
    window = SessionWindow(name="rollover", start="23:30", end="00:15")
    assert in_window(window, 23 * 60 + 45) and in_window(window, 10) and not in_window(window, 15)


def test_session_range_start() -> None:
    starts = [0, 8, 13]
    assert session_range_start(utc(2026, 6, 2, 7, 55).timestamp(), starts) == utc(2026, 6, 2, 0).timestamp()
    assert session_range_start(utc(2026, 6, 2, 8, 0).timestamp(), starts) == utc(2026, 6, 2, 8).timestamp()
    assert session_range_start(utc(2026, 6, 2, 22, 0).timestamp(), starts) == utc(2026, 6, 2, 13).timestamp()
    # a first start after midnight: before it, the session began yesterday
    assert session_range_start(utc(2026, 6, 2, 3, 0).timestamp(), [7, 21]) == utc(2026, 6, 1, 21).timestamp()


def test_trading_day_start() -> None:
    assert trading_day_start(utc(2026, 6, 2, 10).timestamp(), 0) == utc(2026, 6, 2).timestamp()
    assert trading_day_start(utc(2026, 6, 2, 10).timestamp(), 22) == utc(2026, 6, 1, 22).timestamp()
    assert trading_day_start(utc(2026, 6, 2, 23).timestamp(), 22) == utc(2026, 6, 2, 22).timestamp()
