"""The bar feed: one thread keeps a cache of recent bars for every symbol and timeframe.

Monitors read bars from the cache, so a strategy step never waits on the broker while the cache
is fresh. A stale entry (the feed thread is behind or the broker was down) falls back to a
direct fetch, and the log says which source served. Bars are checked before they are cached:
NaN, non-positive prices, high below low, times out of order or duplicated are rejected and
counted, and a bad fetch never replaces good data.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from execution.broker import Broker
from execution.errors import BrokerError
from monitors.clock import Clock

log = logging.getLogger(__name__)

TIMEFRAME_SECONDS = {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400, "D1": 86400}


class BadBars(ValueError):
    """A fetched bar series failed validation; ``problem`` says how."""


def validate_bars(frame: pd.DataFrame, symbol: str, timeframe: str) -> None:
    """Raise BadBars naming the first problem; an empty frame is valid (market closed)."""
    if frame.empty:
        return
    prices = frame[["open", "high", "low", "close"]].to_numpy(dtype=float)
    if not np.isfinite(prices).all():
        row = int(np.where(~np.isfinite(prices).all(axis=1))[0][0])
        raise BadBars(f"{symbol} {timeframe}: non-finite price at {frame.index[row]}")
    if (prices <= 0).any():
        row = int(np.where((prices <= 0).any(axis=1))[0][0])
        raise BadBars(f"{symbol} {timeframe}: non-positive price at {frame.index[row]}")
    high, low = prices[:, 1], prices[:, 2]
    if (high < low).any() or (high < prices[:, 0]).any() or (high < prices[:, 3]).any() \
            or (low > prices[:, 0]).any() or (low > prices[:, 3]).any():
        bad = (high < low) | (high < prices[:, 0]) | (high < prices[:, 3]) | (low > prices[:, 0]) | (low > prices[:, 3])
        raise BadBars(f"{symbol} {timeframe}: high/low do not contain open/close at {frame.index[int(np.where(bad)[0][0])]}")
    index = frame.index
    if index.has_duplicates:
        raise BadBars(f"{symbol} {timeframe}: duplicate bar time {index[index.duplicated()][0]}")
    if not index.is_monotonic_increasing:
        raise BadBars(f"{symbol} {timeframe}: bars out of order")


@dataclass
class CacheEntry:
    bars: pd.DataFrame  # closed bars and, last, the forming bar
    fetched_mono: float
    fetched_at: datetime


@dataclass
class FeedStats:
    refreshes: int = 0
    direct_fetches: int = 0
    cache_hits: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    last_error: str | None = None


class BarFeed:
    """A Monitor (``step``) refreshing the cache; ``get`` serves readers from any thread."""

    name = "bar-feed"

    def __init__(self, broker: Broker, clock: Clock, wanted: Callable[[], Iterable[tuple[str, str]]],
                 depth: int = 300, interval: float = 1.0, max_age_seconds: float = 5.0,
                 market_log_seconds: float = 60.0) -> None:
        self.broker = broker
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
    def _fetch(self, symbol: str, timeframe: str, depth: int) -> pd.DataFrame:
        frame = self.broker.bars(symbol, timeframe, depth, include_forming=True)
        try:
            validate_bars(frame, symbol, timeframe)
        except BadBars:
            key = f"{symbol}:{timeframe}"
            self.stats.rejected[key] = self.stats.rejected.get(key, 0) + 1
            raise
        return frame

    def refresh(self, symbol: str, timeframe: str) -> CacheEntry | None:
        try:
            frame = self._fetch(symbol, timeframe, self.depth)
        except (BrokerError, BadBars) as exc:
            self.stats.errors += 1
            self.stats.last_error = str(exc)
            log.warning("bar refresh %s %s failed: %s", symbol, timeframe, exc)
            return None
        entry = CacheEntry(frame, self.clock.monotonic(), self.clock.now())
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
            if symbol in seen or entry.bars.empty:
                continue
            seen.add(symbol)
            last = entry.bars.iloc[-1]
            try:
                quote = self.broker.quote(symbol)
                quote_text = f"bid {quote.bid:g} ask {quote.ask:g}"
            except BrokerError as exc:
                quote_text = f"no quote ({exc})"
            log.info("%s %s | %s bar %s O %g H %g L %g C %g", symbol, quote_text, timeframe,
                     entry.bars.index[-1].strftime("%Y-%m-%d %H:%M"), last["open"], last["high"], last["low"],
                     last["close"])

    def _snapshot(self) -> dict[tuple[str, str], CacheEntry]:
        with self._lock:
            return dict(self._cache)

    # ------------------------------------------------------------------ reading
    def get(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> pd.DataFrame:
        """The last ``count`` bars (closed only by default) from the cache when fresh, else
        fetched directly. Raises BrokerError/BadBars when neither source has good data."""
        with self._lock:
            entry = self._cache.get((symbol, timeframe))
        fresh = entry is not None and self.clock.monotonic() - entry.fetched_mono <= self.max_age_seconds
        needed = count + (0 if include_forming else 1)
        if fresh and entry is not None and len(entry.bars) >= min(needed, self.depth):
            self.stats.cache_hits += 1
            frame = entry.bars
        else:
            self.stats.direct_fetches += 1
            age = "empty" if entry is None else f"{self.clock.monotonic() - entry.fetched_mono:.1f} s old"
            log.debug("bars %s %s served by a direct fetch (cache %s)", symbol, timeframe, age)
            frame = self._fetch(symbol, timeframe, max(needed, self.depth))
            with self._lock:
                self._cache[(symbol, timeframe)] = CacheEntry(frame, self.clock.monotonic(), self.clock.now())
        if not include_forming:
            frame = frame.iloc[:-1]
        return frame.iloc[-count:]

    def health(self) -> dict[str, Any]:
        now_mono = self.clock.monotonic()
        now = self.clock.now()
        feeds = {}
        for (symbol, timeframe), entry in self._snapshot().items():
            last_bar = entry.bars.index[-1] if not entry.bars.empty else None
            feeds[f"{symbol}:{timeframe}"] = {
                "cache_age_s": round(now_mono - entry.fetched_mono, 2),
                "last_bar": last_bar.isoformat() if last_bar is not None else None,
                "data_age_s": None if last_bar is None else round((now - last_bar.to_pydatetime()).total_seconds(), 1),
            }
        s = self.stats
        return {"feeds": feeds, "refreshes": s.refreshes, "cache_hits": s.cache_hits,
                "direct_fetches": s.direct_fetches, "rejected": dict(s.rejected), "errors": s.errors,
                "last_error": s.last_error}
