"""The bar feed: one thread keeps a cache of recent bars for every symbol and timeframe.

Monitors read bars (``engines.bars.BarSeries``: numpy columns, no pandas) from the cache, so a
strategy step never waits on the broker while the cache is fresh. A stale entry (the feed thread is behind or the broker was down) falls back to a
direct fetch, and the log says which source served. Bars are checked before they are cached:
NaN, non-positive prices, high below low, times out of order or duplicated are rejected and
counted, and a bad fetch never replaces good data.
"""
from __future__ import annotations

import bisect
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


_INF = math.inf
SMALL_SERIES = 8  # an incremental fetch brings 2-4 bars: checked as plain numbers, without numpy's per-call cost


def validate_bars(bars: BarSeries, symbol: str, timeframe: str) -> None:
    """Raise BadBars naming the first problem; an empty series is valid (market closed)."""
    if bars.is_empty:
        return
    if len(bars) <= SMALL_SERIES:
        _validate_few(bars, bars.rows(), symbol, timeframe)
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


def _validate_few(bars: BarSeries, rows: list[tuple], symbol: str, timeframe: str) -> None:
    """``validate_bars`` bar by bar on ``bars.rows()``: one pass when every bar is good (the usual
    case), else the same checks in the same order as the array check, so the same message."""
    # 0 < low <= open, close <= high < inf holds exactly when all four are finite and positive and
    # high/low contain open/close (a NaN fails every comparison); rows: (time, o, h, l, c, ...)
    for row in rows:
        if not (0 < row[3] <= row[1] <= row[2] < _INF and row[3] <= row[4] <= row[2]):
            break
    else:
        if all(a[0] < b[0] for a, b in zip(rows, rows[1:])):
            return
    _explain_few(bars, rows, symbol, timeframe)


def _explain_few(bars: BarSeries, rows: list[tuple], symbol: str, timeframe: str) -> None:
    """Raise BadBars naming the first problem, checked in ``validate_bars``'s order."""
    finite = math.isfinite
    prices = [row[1:5] for row in rows]
    for i, (o, h, l, c) in enumerate(prices):
        if not (finite(o) and finite(h) and finite(l) and finite(c)):
            raise BadBars(f"{symbol} {timeframe}: non-finite price at {bars.open_time(i)}")
    for i, (o, h, l, c) in enumerate(prices):
        if not (o > 0 and h > 0 and l > 0 and c > 0):
            raise BadBars(f"{symbol} {timeframe}: non-positive price at {bars.open_time(i)}")
    for i, (o, h, l, c) in enumerate(prices):
        if h < l or h < o or h < c or l > o or l > c:
            raise BadBars(f"{symbol} {timeframe}: high/low do not contain open/close at {bars.open_time(i)}")
    times = [row[0] for row in rows]
    steps = [b - a for a, b in zip(times, times[1:])]
    if any(step <= 0 for step in steps):
        if 0 in steps:
            raise BadBars(f"{symbol} {timeframe}: duplicate bar time {bars.open_time(steps.index(0) + 1)}")
        raise BadBars(f"{symbol} {timeframe}: bars out of order")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


SPARE_ROWS = 2048  # rows a closed-bar store keeps free: that many bars are appended in place before a copy


class _ClosedStore:
    """Closed bars in columns with spare rows at the end, so an incremental fetch writes its few
    new bars in place instead of concatenating the whole depth (1,500 bars, 8 columns) again.

    Safe although handed-out series are views of these columns: rows are written only past
    ``filled``, beyond every view ever handed out (views end at or before ``filled``), and a
    row, once written, never changes. The forming bar is never stored here (it changes): the
    cache entry keeps it apart."""

    def __init__(self, source: BarSeries, spare: int) -> None:
        size = len(source) + spare
        self.columns = tuple(np.empty(size, dtype=column.dtype) for column in _columns(source))
        for target, column in zip(self.columns, _columns(source)):
            target[:len(source)] = column
        self.filled = len(source)
        self.size = size

    def append(self, series: BarSeries, rows: list[tuple] | None, start: int, stop: int) -> None:
        """Rows ``[start, stop)`` of ``series`` (read from ``series.rows()`` when given: element
        writes of plain numbers, cheaper for the usual one or two bars) after the filled ones (the
        caller checked the room and that the dtypes are the columns')."""
        at = self.filled
        end = at + stop - start
        if rows is not None:
            for offset, row in enumerate(rows[start:stop]):
                for target, value in zip(self.columns, row):
                    target[at + offset] = value
        else:
            for target, column in zip(self.columns, _columns(series)):
                target[at:end] = column[start:stop]
        self.filled = end

    def view(self, start: int, stop: int) -> BarSeries:
        t, o, h, l, c, tv, sp, rv = self.columns
        return BarSeries(t[start:stop], o[start:stop], h[start:stop], l[start:stop], c[start:stop],
                         tv[start:stop], sp[start:stop], rv[start:stop])


def _same_dtypes(columns: tuple[np.ndarray, ...], bars: BarSeries) -> bool:
    """Column by column the same dtype object: rows of ``bars`` written into ``columns`` are then
    what ``BarSeries.concat`` gives (no casting, no promotion). A false "no" only costs a
    concatenation."""
    t, o, h, l, c, tv, sp, rv = columns
    return t.dtype is bars.time_s.dtype and o.dtype is bars.open.dtype and h.dtype is bars.high.dtype \
        and l.dtype is bars.low.dtype and c.dtype is bars.close.dtype and tv.dtype is bars.tick_volume.dtype \
        and sp.dtype is bars.spread.dtype and rv.dtype is bars.real_volume.dtype


def _key(row: tuple) -> tuple:
    """Time, open, high, low, close and tick volume of a bar of ``BarSeries.rows()``."""
    return row[:6]


def _overlaps(entry: "CacheEntry", recent: BarSeries, rows: list[tuple] | None, position: int) -> bool:
    """Is bar ``position`` of ``recent`` the entry's newest closed bar, unchanged (time, prices,
    tick volume)? ``rows``: ``recent.rows()`` when its dtypes are the cache's: plain numbers then,
    exactly the arrays' values (validated, no NaN: ``==`` is ``same_bar``'s test)."""
    if rows is not None:
        return _key(rows[position]) == entry.newest_closed()
    return recent.same_bar(position, entry.closed, -1)


def _columns(bars: BarSeries) -> tuple[np.ndarray, ...]:
    return (bars.time_s, bars.open, bars.high, bars.low, bars.close, bars.tick_volume, bars.spread,
            bars.real_volume)


@dataclass(eq=False)
class CacheEntry:
    """One fetch's bars: the closed ones (all but the last) and the last bar, MT5's position 0
    (usually still forming), the final bar of ``newest``. The closed bars are a series of their
    own or rows ``[start, stop)`` of a store (see ``_ClosedStore``), viewed only when read;
    the whole series is joined only when asked for."""

    newest: BarSeries  # the fetch the last bar came from (empty: no bars at all)
    size: int  # bars held, the last one included
    fetched_mono: float
    fetched_at: datetime
    depth: int = 0  # how many bars the fetch asked for
    own_closed: BarSeries | None = None  # the closed bars, when made (always, without a store)
    store: _ClosedStore | None = None
    start: int = 0
    stop: int = 0
    joined: BarSeries | None = field(default=None, repr=False)
    anchor: tuple | None = field(default=None, repr=False)  # see ``newest_closed``

    @classmethod
    def of(cls, bars: BarSeries, fetched_mono: float, fetched_at: datetime, depth: int) -> "CacheEntry":
        """The entry of a whole series (a full fetch)."""
        return cls(bars, len(bars), fetched_mono, fetched_at, depth, own_closed=bars.slice(None, -1), joined=bars)

    def __len__(self) -> int:
        return self.size

    @property
    def closed(self) -> BarSeries:
        if self.own_closed is None:
            assert self.store is not None
            self.own_closed = self.store.view(self.start, self.stop)
        return self.own_closed

    def closed_tail(self, count: int) -> BarSeries:
        """``closed.tail(count)``: one view of the store, without making ``closed`` first."""
        if self.own_closed is None and count > 0:
            assert self.store is not None
            return self.store.view(max(self.start, self.stop - count), self.stop)
        return self.closed.tail(count)

    def closed_columns(self) -> tuple[np.ndarray, ...]:
        """The columns the closed bars are rows of (their dtypes are the cache's)."""
        return self.store.columns if self.store is not None else _columns(self.closed)

    def first_time(self) -> int:
        """The oldest bar's open time (the entry holds at least one closed bar)."""
        if self.own_closed is None:
            assert self.store is not None
            return self.store.columns[0].item(self.start)
        return self.own_closed.time_s.item(0)

    def newest_closed(self) -> tuple:
        """The newest closed bar's time, open, high, low, close and tick volume as plain numbers
        (what the next fetch must find unchanged); kept from the fetch that brought it."""
        if self.anchor is None:
            c = self.closed
            self.anchor = (c.time_s.item(-1), c.open.item(-1), c.high.item(-1), c.low.item(-1), c.close.item(-1),
                           c.tick_volume.item(-1))
        return self.anchor

    @property
    def bars(self) -> BarSeries:
        """Closed bars and, last, the forming bar (joined on first use)."""
        if self.joined is None:
            self.joined = BarSeries.concat(self.closed, self.newest.tail(1))
        return self.joined


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
    def _fetch(self, symbol: str, timeframe: str, depth: int) -> CacheEntry:
        """The last ``depth`` bars (the forming one last), validated, as a cache entry.

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
        return self._entry(bars, depth)

    def _entry(self, bars: BarSeries, depth: int) -> CacheEntry:
        return CacheEntry.of(bars, self.clock.monotonic(), self.clock.now(), depth)

    def _fetch_since(self, entry: CacheEntry, symbol: str, timeframe: str, depth: int) -> CacheEntry | None:
        period = TIMEFRAME_SECONDS.get(timeframe)
        if period is None or entry.size < 2:
            return None
        if entry.size < depth and not self._reaches_history_start(symbol, entry.first_time(), period):
            return None  # a short history may still grow at its start (a terminal downloading it): ask for all
        anchor = entry.newest_closed()
        elapsed = int(self.clock.now().timestamp()) - anchor[0]
        count = max(2, elapsed // period + 2)  # the anchor, the bars closed since, the forming one
        if count >= depth:
            return None  # as many as a full fetch: take that
        recent = self.broker.bars(symbol, timeframe, count, include_forming=True)
        rows = recent.rows() if len(recent) <= SMALL_SERIES else None
        self._validate(recent, symbol, timeframe, rows)
        times = [row[0] for row in rows] if rows is not None else recent.time_s.tolist()
        position = bisect.bisect_left(times, anchor[0])  # validated: strictly increasing
        if position >= len(times):
            return None
        like = _same_dtypes(entry.closed_columns(), recent)
        if not _overlaps(entry, recent, rows if like else None, position):
            return None
        if not like:  # join as a concatenation does (promoting dtypes)
            return self._entry(BarSeries.concat(entry.closed, recent.slice(position + 1, None)).tail(depth), depth)
        return self._merge(entry, recent, rows, position + 1, depth)

    def _merge(self, entry: CacheEntry, recent: BarSeries, rows: list[tuple] | None, first_new: int,
               depth: int) -> CacheEntry:
        """``entry``'s closed bars, then ``recent[first_new:]`` (the same dtypes), the last ``depth``
        of them: the new closed bars are appended to the entry's store (made on the first merge)
        in place."""
        last = len(recent) - 1
        if first_new > last:  # nothing after the anchor: the anchor is now the last bar
            return self._entry(entry.closed.tail(depth), depth)
        added = last - first_new  # newly closed bars (the last one of recent is the forming bar)
        with self._lock:  # one writer per store at a time
            store, start, stop = entry.store, entry.start, entry.stop
            if store is None or store.filled != stop or store.size - stop < added:
                store = _ClosedStore(entry.closed.tail(depth - 1), added + SPARE_ROWS)
                start, stop = 0, store.filled
            if added:
                store.append(recent, rows, first_new, last)
                stop += added
        start = max(start, stop - (depth - 1))
        anchor = entry.anchor if not added else _key(rows[last - 1]) if rows is not None else None
        return CacheEntry(recent, stop - start + 1, self.clock.monotonic(), self.clock.now(), depth, store=store,
                          start=start, stop=stop, anchor=anchor)

    def _reaches_history_start(self, symbol: str, first_time_s: int, period: int) -> bool:
        start = self.history_start(symbol) if self.history_start is not None else None
        return start is not None and first_time_s - start < period

    def _validate(self, bars: BarSeries, symbol: str, timeframe: str, rows: list[tuple] | None = None) -> None:
        """``validate_bars``, counting rejections; ``rows``: ``bars.rows()``, when read."""
        try:
            if rows is not None:
                _validate_few(bars, rows, symbol, timeframe)
            else:
                validate_bars(bars, symbol, timeframe)
        except BadBars:
            key = f"{symbol}:{timeframe}"
            self.stats.rejected[key] = self.stats.rejected.get(key, 0) + 1
            raise

    def refresh(self, symbol: str, timeframe: str) -> CacheEntry | None:
        try:
            entry = self._fetch(symbol, timeframe, self.depth)
        except (BrokerError, BadBars) as exc:
            self.stats.errors += 1
            self.stats.last_error = str(exc)
            log.warning("bar refresh %s %s failed: %s", symbol, timeframe, exc)
            return None
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
            bars = entry.newest  # its last bar is the entry's last
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
        needed = count + (0 if include_forming else 1)
        if entry is not None and self.clock.monotonic() - entry.fetched_mono <= self.max_age_seconds \
                and entry.size >= min(needed, self.depth):
            self.stats.cache_hits += 1
        else:
            self.stats.direct_fetches += 1
            if log.isEnabledFor(logging.DEBUG):
                age = "empty" if entry is None else f"{self.clock.monotonic() - entry.fetched_mono:.1f} s old"
                log.debug("bars %s %s served by a direct fetch (cache %s)", symbol, timeframe, age)
            entry = self._fetch(symbol, timeframe, max(needed, self.depth))
            with self._lock:
                self._cache[(symbol, timeframe)] = entry
        return entry.bars.tail(count) if include_forming else entry.closed_tail(count)

    def health(self) -> dict[str, Any]:
        now_mono = self.clock.monotonic()
        now = self.clock.now()
        feeds = {}
        for (symbol, timeframe), entry in self._snapshot().items():
            last_bar = None if entry.newest.is_empty else entry.newest.open_time()  # the entry's last bar
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
