"""DayStart and IsoText (monitors/base.py): remembered answers equal the direct computation,
and the cases where nothing may be remembered are computed afresh."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from monitors.base import DayStart, IsoText

UTC = timezone.utc


def _midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def test_day_start_equals_replace_across_days_and_edges() -> None:
    day_start = DayStart()
    start = datetime(2024, 3, 9, 22, 0, tzinfo=UTC)
    for minutes in range(0, 60 * 30, 7):  # crosses midnight twice
        now = start + timedelta(minutes=minutes, microseconds=minutes)
        got = day_start(now)
        assert got == _midnight(now) and got.tzinfo is now.tzinfo
    for now in (datetime(2024, 3, 10, 0, 0, tzinfo=UTC), datetime(2024, 3, 10, 23, 59, 59, 999999, tzinfo=UTC),
                datetime(2024, 3, 11, 0, 0, tzinfo=UTC), datetime(2024, 3, 10, 12, 0, tzinfo=UTC)):  # and back
        got = day_start(now)
        assert (got, got.tzinfo) == (_midnight(now), now.tzinfo)


def test_day_start_not_reused_for_another_zone_or_naive_time() -> None:
    day_start = DayStart()
    assert day_start(datetime(2024, 3, 10, 1, 0, tzinfo=UTC)) == datetime(2024, 3, 10, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    other = datetime(2024, 3, 10, 1, 30, tzinfo=plus_two)  # the same UTC day's instant, another zone's day
    got = day_start(other)
    assert got.tzinfo is plus_two and got == _midnight(other)
    naive = datetime(2024, 3, 10, 5, 0)
    assert day_start(naive) == _midnight(naive) and day_start(naive).tzinfo is None


def test_day_start_computes_dst_zones_every_time() -> None:
    day_start = DayStart()
    paris = ZoneInfo("Europe/Paris")
    now = datetime(2024, 3, 31, 12, 0, tzinfo=paris)  # a 23-hour day
    assert day_start(now) == _midnight(now)
    assert day_start._day is None  # a DST zone is never remembered


def test_iso_text_by_identity_not_equality() -> None:
    iso = IsoText()
    when = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    assert iso(when) == when.isoformat() and iso(when) == when.isoformat()
    same_instant = when.astimezone(timezone(timedelta(hours=2)))  # equal, but printed differently
    assert same_instant == when
    assert iso(same_instant) == "2024-03-10T14:00:00+02:00"
    assert iso(when) == "2024-03-10T12:00:00+00:00"
