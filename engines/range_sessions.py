"""Trading sessions in UTC: which session key an instant belongs to, blocked windows, and the
start of the current session range and trading day.

The original looked session adjustments up by a display name ("asian session") that never
matched its table, so none was ever applied. Here the mapping is explicit: config
``sessions.session_map`` assigns every UTC hour to one key (asian, london, overlap, ny,
late_ny), and the R:R adjustments and score tables are indexed by those same keys.
"""
from __future__ import annotations

from config.range_scalp_model import SessionParams, SessionWindow
from engines.range_data import DAY


def minute_of_day(now_s: float) -> int:
    return int(now_s % DAY) // 60


def session_key_at(now_s: float, sessions: SessionParams) -> str:
    """The session key of the UTC hour containing ``now_s``."""
    hour = minute_of_day(now_s) // 60
    for span in sessions.session_map:
        if span.start_hour <= hour < span.end_hour:
            return span.key
    raise ValueError(f"session_map does not cover UTC hour {hour}")  # the config validator forbids this


def in_window(window: SessionWindow, minute: int) -> bool:
    start, end = window.minutes()
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # wraps past midnight


def blocked_window_at(now_s: float, sessions: SessionParams) -> SessionWindow | None:
    """The first configured blocked window containing ``now_s``, or None."""
    minute = minute_of_day(now_s)
    for window in sessions.blocked_windows:
        if in_window(window, minute):
            return window
    return None


def session_range_start(now_s: float, starts_utc: list[int]) -> int:
    """Epoch seconds where the current session range began: the latest configured start hour
    at or before ``now`` today, else the last start hour of yesterday."""
    day = int(now_s) - int(now_s) % DAY
    hour = minute_of_day(now_s) // 60
    earlier = [h for h in starts_utc if h <= hour]
    if earlier:
        return day + earlier[-1] * 3600
    return day - DAY + starts_utc[-1] * 3600


def trading_day_start(now_s: float, day_start_hour_utc: int) -> int:
    """Epoch seconds where the trading day containing ``now_s`` began."""
    shifted = int(now_s) - day_start_hour_utc * 3600
    return shifted - shifted % DAY + day_start_hour_utc * 3600
