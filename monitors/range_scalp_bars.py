"""The range monitor's H1 bars: fetched from the bar feed once per newly closable H1 bar.

Entries run on every closed M5 bar and the exit pass every 5 minutes, but the H1 bars the engine
reads (the feed's closed bars, cut again at ``now`` by the engine) change once an hour. Asking the
feed every step costs an incremental fetch from the broker that brings back the same closed rows.

``HourBars.get(symbol, count, now)`` is ``bar_feed.get(symbol, "H1", count)``, or the series of an
earlier call when the feed cannot have closed another H1 bar since: that series is complete at
its start (``count`` bars, or its first bar within an hour of the feed's ``history_start``: the
feed's own rule, a shorter history may still grow at its start while a terminal downloads it),
its newest bar ``last`` is closed at ``now`` (``last + 1 h <= now``) and ``now < last + 2 h``.

Why a fetch would give the same bars then: the feed's store is append-only (rows it holds never
change), its closed bars are every row but the broker's last, and a bar after ``last`` opens at
``last + 1 h`` or later, so it can only be closed once a bar after it exists, which the broker
starts no earlier than ``last + 2 h``. (A broker clock running ahead of ours could start it
seconds earlier; that bar would not be closed at our ``now`` either, and the engine drops it.)
What a fetch would see and a kept series does not: an H1 history the broker rewrites within the
hour (the feed then fetches it anew) is read at the next closable bar, and a failing H1 fetch
within the hour is not met (the M5 bars and the quote are still fetched at every step). The
feed's ``direct_fetches`` counter counts the fetches made, so fewer of them.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from engines.range_data import H1

H1_SECONDS = H1  # the engine's hour, in seconds


class HourBars:
    """The last H1 series per (symbol, count); the monitor and its exit manager share one, so an
    hour's bars are fetched once for both. Not thread-safe (the monitor's lock guards a step)."""

    def __init__(self, bar_feed: Any) -> None:
        self.bar_feed = bar_feed
        self._last: dict[tuple[str, int], tuple[int, Any]] = {}  # (symbol, count) -> (newest open, series)

    def get(self, symbol: str, count: int, now: datetime) -> Any:
        """``bar_feed.get(symbol, "H1", count)``, or the kept series (module doc); when it asks the
        feed, it raises what the feed raises."""
        key = (symbol, count)
        now_s = now.timestamp()
        last = self._last.get(key)
        if last is not None and last[0] + H1_SECONDS <= now_s < last[0] + 2 * H1_SECONDS:
            return last[1]
        bars = self.bar_feed.get(symbol, "H1", count)
        if len(bars) and self._complete(symbol, bars, count):
            self._last[key] = (int(bars.time_s[-1]), bars)
        else:
            self._last.pop(key, None)
        return bars

    def _complete(self, symbol: str, bars: Any, count: int) -> bool:
        """No older bar can join the series: it has ``count`` of them, or it reaches back to the
        first the broker can ever have (the feed's own rule, ``BarFeed.reaches_history_start``)."""
        if len(bars) >= count:
            return True
        reaches = getattr(self.bar_feed, "reaches_history_start", None)
        return reaches is not None and reaches(symbol, int(bars.time_s[0]), H1_SECONDS)


__all__ = ["HourBars", "H1_SECONDS"]
