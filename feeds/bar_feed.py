"""The bar feed: one thread keeps a cache of recent bars for every symbol and timeframe.

Monitors read bars (``engines.bars.BarSeries``: numpy columns, no pandas) from the cache, so a
strategy step never waits on the broker while the cache is fresh. A stale entry (the feed thread is behind or the broker was down) falls back to a
direct fetch, and the log says which source served. Bars are checked before they are cached:
NaN, non-positive prices, high below low, times out of order or duplicated are rejected and
counted, and a bad fetch never replaces good data.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable

import numpy as np

from engines.bars import BarSeries
from execution.broker import Broker
from execution.errors import BrokerError
from monitors.clock import Clock

log = logging.getLogger(__name__)

TIMEFRAME_SECONDS = {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400, "D1": 86400}


class BadBars(ValueError):
    """A fetched bar series failed validation; ``problem`` says how."""


SMALL_SERIES = 8  # an incremental fetch brings 2-4 bars: checked as plain numbers, without numpy's per-call cost


def validate_bars(bars: BarSeries, symbol: str, timeframe: str) -> None:
    """Raise BadBars naming the first problem; an empty series is valid (market closed)."""
    if bars.is_empty:
        return
    if len(bars) <= SMALL_SERIES:
        _validate_few(bars, symbol, timeframe)
        return
    o, h, l, c = bars.open, bars.high, bars.low, bars.close
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(l) & np.isfinite(c)
    if not finite.all():
        raise BadBars(f"{symbol} {timeframe}: non-finite price at {bars.open_time(_first(~finite))}")
    positive = (o > 0) & (h > 0) & (l > 0) & (c > 0)
    if not positive.all():
        raise BadBars(f"{symbol} {timeframe}: non-positive price at {bars.open_time(_first(~positive))}")
    bad = (h < l) | (h < o) | (h < c) | (l > o) | (l > c)
    if bad.any():
        raise BadBars(f"{symbol} {timeframe}: high/low do not contain open/close at {bars.open_time(_first(bad))}")
    if len(bars) > 1:
        steps = np.diff(bars.time_s)
        if not (steps > 0).all():
            if (steps == 0).any():
                raise BadBars(f"{symbol} {timeframe}: duplicate bar time {bars.open_time(_first(steps == 0) + 1)}")
            raise BadBars(f"{symbol} {timeframe}: bars out of order")


def _validate_few(bars: BarSeries, symbol: str, timeframe: str) -> None:
    """``validate_bars`` bar by bar: the same checks in the same order, so the same message."""
    rows = list(zip(bars.open.tolist(), bars.high.tolist(), bars.low.tolist(), bars.close.tolist()))
    finite = math.isfinite
    for i, (o, h, l, c) in enumerate(rows):
        if not (finite(o) and finite(h) and finite(l) and finite(c)):
            raise BadBars(f"{symbol} {timeframe}: non-finite price at {bars.open_time(i)}")
    for i, (o, h, l, c) in enumerate(rows):
        if not (o > 0 and h > 0 and l > 0 and c > 0):
            raise BadBars(f"{symbol} {timeframe}: non-positive price at {bars.open_time(i)}")
    for i, (o, h, l, c) in enumerate(rows):
        if h < l or h < o or h < c or l > o or l > c:
            raise BadBars(f"{symbol} {timeframe}: high/low do not contain open/close at {bars.open_time(i)}")
    times = bars.time_s.tolist()
    steps = [b - a for a, b in zip(times, times[1:])]
    if any(step <= 0 for step in steps):
        if 0 in steps:
            raise BadBars(f"{symbol} {timeframe}: duplicate bar time {bars.open_time(steps.index(0) + 1)}")
        raise BadBars(f"{symbol} {timeframe}: bars out of order")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass
class CacheEntry:
    bars: BarSeries  # closed bars and, last, the forming bar (MT5's position 0)
    fetched_mono: float
    fetched_at: datetime
    depth: int = 0  # how many bars the fetch asked for


@dataclass
class FeedStats:
    refreshes: int = 0
    direct_fetches: int = 0
    cache_hits: int = 0
    full_fetches: int = 0  # fetches of the whole depth
    incremental_fetches: int = 0  # fetches of only the bars since the cached ones, merged with them
    rejected: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    last_error: str | None = None


class BarFeed:
    """A Monitor (``step``) refreshing the cache; ``get`` serves readers from any thread."""

    name = "bar-feed"

    def __init__(self, broker: Broker, clock: Clock, wanted: Callable[[], Iterable[tuple[str, str]]],
                 depth: int = 300, interval: float = 1.0, max_age_seconds: float = 5.0,
                 market_log_seconds: float = 60.0,
                 history_start: Callable[[str], int | None] | None = None) -> None:
        """``history_start(symbol)``: the UTC epoch second before which no bar can ever exist (a
        backtest's recording start), or None; a cache reaching back to it is complete even when
        shorter than the depth, so it is extended bar by bar too. Live there is no such bound."""
        self.broker = broker
        self.history_start = history_start
        self.clock = clock
        self.wanted = wanted
        self.depth = depth
        self.interval = interval
        self.max_age_seconds = max_age_seconds
        self.market_log_seconds = market_log_seconds
        self._cache: dict[tuple[str, str], CacheEntry] = {}
        self._lock = threading.Lock()
        self.stats = FeedStats()
        self._last_market_log = -1e18

    @property
    def interval_seconds(self) -> float:
        return self.interval

    # ------------------------------------------------------------------ refreshing
    def _fetch(self, symbol: str, timeframe: str, depth: int) -> BarSeries:
        """The last ``depth`` bars (the forming one last), validated.

        With bars of this symbol and timeframe cached from a fetch at least as deep, only the bars
        since the last cached closed bar are asked for (plus that bar, to check the overlap) and
        merged with the cache: a few bars per fetch instead of ``depth`` (1,500 for micro-scalp),
        less work for the terminal and for us. The merged series is what a full fetch would give,
        as long as the broker's closed bars do not change; if the overlapping bar differs (history
        rewritten, server offset re-measured) or is missing, or the cache holds fewer bars than
        asked for (the terminal may still be loading older history), the full depth is fetched."""
        with self._lock:
            entry = self._cache.get((symbol, timeframe))
        merged = self._fetch_since(entry, symbol, timeframe, depth) if entry is not None and entry.depth >= depth \
            else None
        if merged is not None:
            self.stats.incremental_fetches += 1
            return merged
        bars = self.broker.bars(symbol, timeframe, depth, include_forming=True)
        self._validate(bars, symbol, timeframe)
        self.stats.full_fetches += 1
        return bars

    def _fetch_since(self, entry: CacheEntry, symbol: str, timeframe: str, depth: int) -> BarSeries | None:
        cached = entry.bars
        period = TIMEFRAME_SECONDS.get(timeframe)
        if period is None or len(cached) < 2:
            return None
        if len(cached) < depth and not self._reaches_history_start(symbol, cached, period):
            return None  # a short history may still grow at its start (a terminal downloading it): ask for all
        anchor = int(cached.time_s[-2])  # the newest closed bar we hold
        elapsed = int(self.clock.now().timestamp()) - anchor
        count = max(2, elapsed // period + 2)  # the anchor, the bars closed since, the forming one
        if count >= depth:
            return None  # as many as a full fetch: take that
        recent = self.broker.bars(symbol, timeframe, count, include_forming=True)
        self._validate(recent, symbol, timeframe)
        position = int(np.searchsorted(recent.time_s, anchor))
        if position >= len(recent) or not recent.same_bar(position, cached, -2):
            return None
        return BarSeries.concat(cached.slice(None, -1), recent.slice(position + 1, None)).tail(depth)

    def _reaches_history_start(self, symbol: str, cached: BarSeries, period: int) -> bool:
        start = self.history_start(symbol) if self.history_start is not None else None
        return start is not None and int(cached.time_s[0]) - start < period

    def _validate(self, bars: BarSeries, symbol: str, timeframe: str) -> None:
        try:
            validate_bars(bars, symbol, timeframe)
        except BadBars:
            key = f"{symbol}:{timeframe}"
            self.stats.rejected[key] = self.stats.rejected.get(key, 0) + 1
            raise

    def refresh(self, symbol: str, timeframe: str) -> CacheEntry | None:
        try:
            bars = self._fetch(symbol, timeframe, self.depth)
        except (BrokerError, BadBars) as exc:
            self.stats.errors += 1
            self.stats.last_error = str(exc)
            log.warning("bar refresh %s %s failed: %s", symbol, timeframe, exc)
            return None
        entry = CacheEntry(bars, self.clock.monotonic(), self.clock.now(), self.depth)
        with self._lock:
            self._cache[(symbol, timeframe)] = entry
        self.stats.refreshes += 1
        return entry

    def step(self, now: datetime) -> None:
        for symbol, timeframe in list(self.wanted()):
            self.refresh(symbol, timeframe)
        if self.clock.monotonic() - self._last_market_log >= self.market_log_seconds:
            self._last_market_log = self.clock.monotonic()
            self._log_market()

    def _log_market(self) -> None:
        seen = set()
        ordered = sorted(self._snapshot().items(), key=lambda kv: (kv[0][0], TIMEFRAME_SECONDS.get(kv[0][1], 0)))
        for (symbol, timeframe), entry in ordered:
            bars = entry.bars
            if symbol in seen or bars.is_empty:
                continue
            seen.add(symbol)
            try:
                quote = self.broker.quote(symbol)
                quote_text = f"bid {quote.bid:g} ask {quote.ask:g}"
            except BrokerError as exc:
                quote_text = f"no quote ({exc})"
            log.info("%s %s | %s bar %s O %g H %g L %g C %g", symbol, quote_text, timeframe,
                     bars.open_time().strftime("%Y-%m-%d %H:%M"), bars.open[-1], bars.high[-1], bars.low[-1],
                     bars.close[-1])

    def _snapshot(self) -> dict[tuple[str, str], CacheEntry]:
        with self._lock:
            return dict(self._cache)

    # ------------------------------------------------------------------ reading
    def get(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> BarSeries:
        """The last ``count`` bars (closed only by default) from the cache when fresh, else
        fetched directly. Raises BrokerError/BadBars when neither source has good data."""
        with self._lock:
            entry = self._cache.get((symbol, timeframe))
        fresh = entry is not None and self.clock.monotonic() - entry.fetched_mono <= self.max_age_seconds
        needed = count + (0 if include_forming else 1)
        if fresh and entry is not None and len(entry.bars) >= min(needed, self.depth):
            self.stats.cache_hits += 1
            bars = entry.bars
        else:
            self.stats.direct_fetches += 1
            age = "empty" if entry is None else f"{self.clock.monotonic() - entry.fetched_mono:.1f} s old"
            log.debug("bars %s %s served by a direct fetch (cache %s)", symbol, timeframe, age)
            depth = max(needed, self.depth)
            bars = self._fetch(symbol, timeframe, depth)
            with self._lock:
                self._cache[(symbol, timeframe)] = CacheEntry(bars, self.clock.monotonic(), self.clock.now(), depth)
        if not include_forming:
            bars = bars.slice(None, -1)
        return bars.tail(count)

    def health(self) -> dict[str, Any]:
        now_mono = self.clock.monotonic()
        now = self.clock.now()
        feeds = {}
        for (symbol, timeframe), entry in self._snapshot().items():
            last_bar = None if entry.bars.is_empty else entry.bars.open_time()
            feeds[f"{symbol}:{timeframe}"] = {
                "cache_age_s": round(now_mono - entry.fetched_mono, 2),
                "last_bar": last_bar.isoformat() if last_bar is not None else None,
                "data_age_s": None if last_bar is None else round((now - last_bar).total_seconds(), 1),
            }
        s = self.stats
        return {"feeds": feeds, "refreshes": s.refreshes, "cache_hits": s.cache_hits,
                "direct_fetches": s.direct_fetches, "full_fetches": s.full_fetches,
                "incremental_fetches": s.incremental_fetches, "rejected": dict(s.rejected), "errors": s.errors,
                "last_error": s.last_error}
