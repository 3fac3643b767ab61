"""HourBars (monitors/range_scalp_bars.py): the H1 bars are asked of the feed again exactly when
another H1 bar can have closed, or when the series may still grow at its start."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest

from engines.bars import BarSeries
from monitors.range_scalp_bars import H1_SECONDS, HourBars

UTC = timezone.utc
T0 = int(datetime(2026, 1, 6, 0, tzinfo=UTC).timestamp())  # the first H1 bar of the history


def series(first: int, count: int) -> BarSeries:
    time = np.arange(first, first + count * H1_SECONDS, H1_SECONDS, dtype=np.int64)
    price = np.full(count, 100.0)
    return BarSeries(time, price, price + 1.0, price - 1.0, price, np.ones(count, dtype=np.int64),
                     np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64))


class Feed:
    """Closed H1 bars up to the last one that can be closed at the fake clock's ``now``."""

    def __init__(self, history_start: int | None = T0, first: int = T0) -> None:
        self.now = datetime.fromtimestamp(T0, UTC)
        self.first = first
        self.calls = 0
        self.start = history_start

    def reaches_history_start(self, symbol: str, first_time_s: int, period: int) -> bool:
        """BarFeed's rule: a series starting within a period of the history's start is whole."""
        return self.start is not None and first_time_s - self.start < period

    def get(self, symbol: str, timeframe: str, count: int) -> BarSeries:
        assert timeframe == "H1"
        self.calls += 1
        closed = (int(self.now.timestamp()) - self.first) // H1_SECONDS  # bars that opened and closed
        first = max(self.first, self.first + (closed - count) * H1_SECONDS)
        return series(first, min(count, closed))


def at(feed: Feed, hour: float) -> datetime:
    feed.now = datetime.fromtimestamp(T0 + hour * H1_SECONDS, UTC)
    return feed.now


def test_one_fetch_per_closable_bar_and_the_same_bars_as_a_fetch() -> None:
    feed = Feed()
    hours = HourBars(feed)
    first = hours.get("XAUUSD", 200, at(feed, 10.0))  # ten closed bars, 00:00 .. 09:00: from the start
    assert feed.calls == 1 and len(first) == 10
    for minute in (5, 30, 59.99):
        assert hours.get("XAUUSD", 200, at(feed, 10 + minute / 60)) is first  # no other bar can close
    assert feed.calls == 1
    later = hours.get("XAUUSD", 200, at(feed, 11.0))  # 10:00 closed: asked again
    assert feed.calls == 2 and len(later) == 11 and int(later.time_s[-1]) == T0 + 10 * H1_SECONDS


def test_asked_again_when_the_newest_bar_was_not_closed_yet_or_the_clock_went_back() -> None:
    feed = Feed()
    hours = HourBars(feed)
    hours.get("XAUUSD", 200, at(feed, 10.5))
    hours.get("XAUUSD", 200, at(feed, 9.5))  # before the newest bar (09:00) closed
    assert feed.calls == 2


def test_full_window_kept_without_a_history_start() -> None:
    feed = Feed(history_start=None, first=T0 - 500 * H1_SECONDS)
    hours = HourBars(feed)
    bars = hours.get("XAUUSD", 200, at(feed, 10.2))
    assert len(bars) == 200 and hours.get("XAUUSD", 200, at(feed, 10.7)) is bars
    assert feed.calls == 1


def test_a_short_history_that_may_still_grow_at_its_start_is_asked_every_time() -> None:
    for feed in (Feed(history_start=None), Feed(history_start=T0 - 5 * H1_SECONDS)):
        hours = HourBars(feed)
        hours.get("XAUUSD", 200, at(feed, 10.2))
        hours.get("XAUUSD", 200, at(feed, 10.7))
        assert feed.calls == 2


def test_kept_per_symbol_and_count_and_errors_pass_through() -> None:
    feed = Feed()
    hours = HourBars(feed)
    now = at(feed, 10.2)
    hours.get("XAUUSD", 200, now)
    hours.get("EURUSD", 200, now)
    hours.get("XAUUSD", 5, now)
    assert feed.calls == 3

    class Failing(Feed):
        def get(self, symbol: str, timeframe: str, count: int) -> Any:
            raise RuntimeError("broker down")

    with pytest.raises(RuntimeError, match="broker down"):  # the feed's error reaches the caller
        HourBars(Failing()).get("XAUUSD", 200, now)


def test_no_bars_are_not_kept() -> None:
    feed = Feed()
    hours = HourBars(feed)
    assert len(hours.get("XAUUSD", 200, at(feed, 0.5))) == 0
    hours.get("XAUUSD", 200, at(feed, 0.6))
    assert feed.calls == 2
