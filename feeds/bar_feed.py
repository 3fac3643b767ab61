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
from datetime import datetime, timezone
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
        _validate_few(bars.rows(), symbol, timeframe)
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


def _validate_few(rows: list[tuple], symbol: str, timeframe: str) -> None:
    """``validate_bars`` bar by bar on rows (``BarSeries.rows()``): one pass when every bar is good
    (the usual case), else the same checks in the same order as the array check, so the same message."""
    # 0 < low <= open, close <= high < inf holds exactly when all four are finite and positive and
    # high/low contain open/close (a NaN fails every comparison). Rows of MT5's eight fields,
    # unpacked at once (cheaper than reading five of them by index). The same tests as that chain,
    # one comparison each, against 0.0: two floats compare on the interpreter's fast path, which a
    # chained comparison or an int operand misses (about 1,400 instructions less per read of four bars)
    previous = -_INF
    for time_s, open_, high, low, close, _, _, _ in rows:
        if not (previous < time_s and 0.0 < low and low <= open_ and open_ <= high and high < _INF
                and low <= close and close <= high):
            _explain_few(rows, symbol, timeframe)  # raises
        previous = time_s


def _explain_few(rows: list[tuple], symbol: str, timeframe: str) -> None:
    """Raise BadBars naming the first problem, checked in ``validate_bars``'s order."""
    finite = math.isfinite
    prices = [row[1:5] for row in rows]
    for i, (o, h, l, c) in enumerate(prices):
        if not (finite(o) and finite(h) and finite(l) and finite(c)):
            raise BadBars(f"{symbol} {timeframe}: non-finite price at {_open_time(rows[i])}")
    for i, (o, h, l, c) in enumerate(prices):
        if not (o > 0 and h > 0 and l > 0 and c > 0):
            raise BadBars(f"{symbol} {timeframe}: non-positive price at {_open_time(rows[i])}")
    for i, (o, h, l, c) in enumerate(prices):
        if h < l or h < o or h < c or l > o or l > c:
            raise BadBars(f"{symbol} {timeframe}: high/low do not contain open/close at {_open_time(rows[i])}")
    times = [row[0] for row in rows]
    steps = [b - a for a, b in zip(times, times[1:])]
    if any(step <= 0 for step in steps):
        if 0 in steps:
            raise BadBars(f"{symbol} {timeframe}: duplicate bar time {_open_time(rows[steps.index(0) + 1])}")
        raise BadBars(f"{symbol} {timeframe}: bars out of order")
    # the one-pass test failed, so one of the checks above must have: never cache such bars silently
    raise BadBars(f"{symbol} {timeframe}: invalid bars ending at {_open_time(rows[-1])}")


def _open_time(row: tuple) -> datetime:
    """A row's UTC open time, as ``BarSeries.open_time`` gives it."""
    return datetime.fromtimestamp(int(row[0]), tz=timezone.utc)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


SPARE_ROWS = 2048  # rows a closed-bar store keeps free: that many bars are appended in place before a copy


class _ClosedStore:
    """Closed bars in columns with spare rows at the end, so an incremental fetch writes its few
    new bars in place instead of concatenating the whole depth (1,500 bars, 8 columns) again.

    Append-only, and that is enforced, because readers rely on it twice: handed-out series are
    views of these columns, and they carry their rows' place (``BarSeries.lineage``), which a
    reader trusts instead of comparing bytes with an earlier series of the same store. ``append``
    is the only writer: it writes past ``filled``, beyond every view ever handed out (views end at
    or before ``filled``), so a row, once written, never changes. The writable columns are private;
    ``columns`` and every view are read-only, so no reader can change a row either. Anything else
    (other bars at a written row, a bigger store) is a new store, hence a new lineage. The forming
    bar is never stored here (it changes): the cache entry keeps it apart."""

    def __init__(self, source: BarSeries, spare: int) -> None:
        size = len(source) + spare
        writable = tuple(np.empty(size, dtype=column.dtype) for column in _columns(source))
        for target, column in zip(writable, _columns(source)):
            target[:len(source)] = column
        self._open(writable, len(source))

    def _open(self, writable: tuple[np.ndarray, ...], filled: int) -> None:
        """Take ``writable`` (columns whose first ``filled`` rows are bars) and make the read-only
        side: the public columns and the memoryviews of both."""
        self._writable = writable
        self.columns = tuple(_read_only(column) for column in writable)
        self._cells, self._writable_cells = _cells(self.columns), _cells(writable)
        self.filled = filled
        self.size = len(writable[0])
        self._last_view: BarSeries | None = None

    def __getstate__(self) -> dict[str, Any]:
        """For pickle and deepcopy (memoryviews cannot be pickled): the writable columns and how
        many rows are filled; the rest is rebuilt from them (``__setstate__``)."""
        return {"writable": self._writable, "filled": self.filled}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._open(state["writable"], state["filled"])

    def append(self, bars: list[tuple] | BarSeries) -> None:
        """``bars`` after the filled rows (the caller checked the room): rows of plain numbers
        (``BarSeries.rows()`` of bars with the columns' dtypes: element writes, cheaper for the
        usual one or two bars) or a series of the columns' dtypes."""
        at = self.filled
        if isinstance(bars, list):
            for row in bars:
                self._write_row(at, row)
                at += 1
        else:
            end = at + len(bars)
            for target, column in zip(self._writable, _columns(bars)):
                target[at:end] = column
            at = end
        self.filled = at

    def _write_row(self, at: int, row: tuple) -> None:
        """``row`` into row ``at`` (past ``filled``). Through memoryviews when every value is of its
        column's kind (a float for a float column, an int for an integer one: the plain C value,
        which is what numpy's element write stores too, for a fraction of its cost); else numpy's
        element writes (they convert, and raise, as ever), over whatever the first attempt wrote."""
        cells = self._writable_cells
        if cells is not None:
            t, o, h, l, c, tv, sp, rv = cells
            try:
                t[at], o[at], h[at], l[at], c[at], tv[at], sp[at], rv[at] = row
                return
            except (TypeError, ValueError):
                pass
        for target, value in zip(self._writable, row):
            target[at] = value

    def row(self, position: int) -> tuple:
        """Row ``position`` (a filled one) as plain numbers, as ``BarSeries.rows()`` gives it,
        read through memoryviews (one element of a numpy array costs several times as much)."""
        cells = self._cells
        if cells is None:
            return tuple(column.item(position) for column in self.columns)
        t, o, h, l, c, tv, sp, rv = cells
        return t[position], o[position], h[position], l[position], c[position], tv[position], sp[position], \
            rv[position]

    def view(self, start: int, stop: int) -> BarSeries:
        """Rows ``[start, stop)`` (filled ones), read-only, marked as such (``BarSeries.lineage``).
        The same rows as the last view: that same series (its rows never change and nobody can
        write to it, so it is what a new view would be), without slicing eight columns again: a
        reader of a slower timeframe asks for the same closed bars at every step until one closes."""
        last = self._last_view
        if last is not None:
            lineage = last.lineage
            if lineage is not None and lineage[1] == start and lineage[2] == stop:
                return last
        window = slice(start, stop)
        t, o, h, l, c, tv, sp, rv = self.columns
        self._last_view = view = BarSeries(t[window], o[window], h[window], l[window], c[window], tv[window],
                                           sp[window], rv[window]).with_lineage(self, start, stop)
        return view


_CELL_FORMATS = frozenset("bBhHiIlLqQfd")  # native single numbers: what a memoryview reads and writes


def _cells(columns: tuple[np.ndarray, ...]) -> tuple[memoryview, ...] | None:
    """Memoryviews of ``columns`` (their elements as plain Python numbers, the same values as
    ``item``), or None when a column's format is not a native number (another byte order...)."""
    cells = tuple(column.data for column in columns)  # memoryviews
    return cells if all(cell.format in _CELL_FORMATS for cell in cells) else None


def _read_only(column: np.ndarray) -> np.ndarray:
    """A read-only view of ``column`` (its slices are read-only too)."""
    view = column.view()
    view.flags.writeable = False
    return view


def _same_dtypes(columns: tuple[np.ndarray, ...], bars: BarSeries) -> bool:
    """Column by column the same dtype object: rows of ``bars`` written into ``columns`` are then
    what ``BarSeries.concat`` gives (no casting, no promotion). A false "no" only costs a
    concatenation."""
    t, o, h, l, c, tv, sp, rv = columns
    return t.dtype is bars.time_s.dtype and o.dtype is bars.open.dtype and h.dtype is bars.high.dtype \
        and l.dtype is bars.low.dtype and c.dtype is bars.close.dtype and tv.dtype is bars.tick_volume.dtype \
        and sp.dtype is bars.spread.dtype and rv.dtype is bars.real_volume.dtype


def _columns(bars: BarSeries) -> tuple[np.ndarray, ...]:
    return (bars.time_s, bars.open, bars.high, bars.low, bars.close, bars.tick_volume, bars.spread,
            bars.real_volume)


def _last_row(bars: BarSeries) -> tuple | None:
    return bars.slice(-1, None).rows()[0] if len(bars) else None


class CacheEntry:
    """One fetch's bars: the closed ones (all but the last) and the last bar, MT5's position 0
    (usually still forming), kept as a row of plain numbers (``BarSeries.rows()``). The closed
    bars are a series of their own or rows ``[start, stop)`` of a store (see ``_ClosedStore``),
    viewed only when read; the whole series is joined only when asked for. Never changed once
    cached (readers on other threads hold it): a fetch makes a new entry."""

    __slots__ = ("size", "fetched_mono", "depth", "last", "store", "start", "stop", "_closed", "_joined",
                 "_anchor")

    def __init__(self, size: int, fetched_mono: float, depth: int, last: tuple | None,
                 store: _ClosedStore | None = None, start: int = 0, stop: int = 0, anchor: tuple | None = None,
                 closed: BarSeries | None = None, joined: BarSeries | None = None) -> None:
        self.size = size  # bars held, the last one included
        self.fetched_mono = fetched_mono
        self.depth = depth  # how many bars the fetch asked for
        self.last = last  # the last bar's row; None: no bars at all
        self.store, self.start, self.stop = store, start, stop
        self._closed = closed  # the closed bars, when made (always, without a store)
        self._joined = joined
        self._anchor = anchor  # see ``newest_closed``

    @classmethod
    def of(cls, bars: BarSeries, fetched_mono: float, depth: int) -> "CacheEntry":
        """The entry of a whole series (a full fetch)."""
        return cls(len(bars), fetched_mono, depth, _last_row(bars), closed=bars.slice(None, -1), joined=bars)

    @property
    def closed(self) -> BarSeries:
        if self._closed is None:
            assert self.store is not None
            self._closed = self.store.view(self.start, self.stop)
        return self._closed

    def closed_tail(self, count: int) -> BarSeries:
        """``closed.tail(count)``: one view of the store (marked with its rows, see
        ``_ClosedStore``), without making ``closed`` first."""
        if self.store is not None and count > 0:
            start = self.stop - count
            return self.store.view(start if start > self.start else self.start, self.stop)
        return self.closed.tail(count)

    def closed_columns(self) -> tuple[np.ndarray, ...]:
        """The columns the closed bars are rows of (their dtypes are the cache's)."""
        return self.store.columns if self.store is not None else _columns(self.closed)

    def first_time(self) -> int:
        """The oldest bar's open time (the entry holds at least one closed bar)."""
        if self._closed is None:
            assert self.store is not None
            return self.store.columns[0].item(self.start)
        return self._closed.time_s.item(0)

    def newest_closed(self) -> tuple:
        """The newest closed bar's time, open, high, low, close and tick volume as plain numbers
        (what the next fetch must find unchanged); kept from the fetch that brought it."""
        if self._anchor is None:
            c = self.closed
            self._anchor = (c.time_s.item(-1), c.open.item(-1), c.high.item(-1), c.low.item(-1), c.close.item(-1),
                            c.tick_volume.item(-1))
        return self._anchor

    @property
    def bars(self) -> BarSeries:
        """Closed bars and, last, the last bar (joined on first use, the last bar in the closed
        bars' dtypes: its row holds their values)."""
        if self._joined is None:
            assert self.last is not None  # an entry without bars is made joined
            last = BarSeries(*(np.array([value], dtype=column.dtype)
                               for value, column in zip(self.last, self.closed_columns())))
            self._joined = BarSeries.concat(self.closed, last)
        return self._joined


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
        # Read and written only by single dict operations (get, set, copy), each atomic under the
        # GIL (keys are tuples of strings: hashed and compared in C), so the cache itself needs no
        # lock; readers of the whole cache read a copy. (A step reads and writes it at every bar.)
        self._cache: dict[tuple[str, str], CacheEntry] = {}
        self._lock = threading.Lock()  # one writer per closed-bar store at a time (``_merge``)
        self.stats = FeedStats()
        self._last_market_log = -1e18

    @property
    def interval_seconds(self) -> float:
        return self.interval

    # ------------------------------------------------------------------ refreshing
    def _fetch(self, symbol: str, timeframe: str, depth: int, entry: CacheEntry | None) -> CacheEntry:
        """The last ``depth`` bars (the forming one last), validated, as a cache entry; ``entry``:
        the cached one.

        With bars of this symbol and timeframe cached from a fetch at least as deep, only the bars
        since the last cached closed bar are asked for (plus that bar, to check the overlap) and
        merged with the cache: a few bars per fetch instead of ``depth`` (1,500 for micro-scalp),
        less work for the terminal and for us. The merged series is what a full fetch would give,
        as long as the broker's closed bars do not change; if the overlapping bar differs (history
        rewritten, server offset re-measured) or is missing, or the cache holds fewer bars than
        asked for (the terminal may still be loading older history), the full depth is fetched."""
        merged = self._fetch_since(entry, symbol, timeframe, depth) if entry is not None and entry.depth >= depth \
            else None
        if merged is not None:
            self.stats.incremental_fetches += 1
            return merged
        bars = self.broker.bars(symbol, timeframe, depth, include_forming=True)
        self._validate(bars, symbol, timeframe)
        self.stats.full_fetches += 1
        return CacheEntry.of(bars, self.clock.monotonic(), depth)

    def _fetch_since(self, entry: CacheEntry, symbol: str, timeframe: str, depth: int) -> CacheEntry | None:
        period = TIMEFRAME_SECONDS.get(timeframe)
        if period is None or entry.size < 2:
            return None
        if entry.size < depth and not self.reaches_history_start(symbol, entry.first_time(), period):
            return None  # a short history may still grow at its start (a terminal downloading it): ask for all
        anchor = entry.newest_closed()
        elapsed = int(self.clock.timestamp()) - anchor[0]
        count = elapsed // period + 2  # the anchor, the bars closed since, the forming one
        if count < 2:
            count = 2
        if count >= depth:
            return None  # as many as a full fetch: take that
        if count > SMALL_SERIES:
            return self._since_series(entry, symbol, timeframe, count, depth)
        # A few bars (the usual case): as rows of plain numbers, no numpy columns made. They are
        # ``bars(...).rows()`` of the same broker whose ``bars`` made the cached columns: written
        # into those columns, they are the values a full fetch gives.
        rows = self.broker.bar_rows(symbol, timeframe, count, include_forming=True)
        self._validate(rows, symbol, timeframe)
        anchor_time = anchor[0]
        for position, row in enumerate(rows):  # validated: times strictly increasing
            if row[0] >= anchor_time:
                break
        else:
            return None
        if row[:6] != anchor:  # time, open, high, low, close, tick volume; plain numbers, no NaN (validated):
            # ``same_bar``'s test
            return None
        if position + 1 == len(rows):  # nothing after the anchor: the anchor is now the last bar
            return CacheEntry.of(entry.closed.tail(depth), self.clock.monotonic(), depth)
        return self._merge(entry, rows[position + 1:-1], rows[-1], depth)

    def _since_series(self, entry: CacheEntry, symbol: str, timeframe: str, count: int,
                      depth: int) -> CacheEntry | None:
        """``_fetch_since`` for more than a few bars (after a pause): as numpy columns."""
        recent = self.broker.bars(symbol, timeframe, count, include_forming=True)
        self._validate(recent, symbol, timeframe)
        position = bisect.bisect_left(recent.time_s.tolist(), entry.newest_closed()[0])  # validated: increasing
        if position >= len(recent) or not recent.same_bar(position, entry.closed, -1):
            return None
        if not _same_dtypes(entry.closed_columns(), recent):  # join as a concatenation does (promoting dtypes)
            return CacheEntry.of(BarSeries.concat(entry.closed, recent.slice(position + 1, None)).tail(depth),
                                 self.clock.monotonic(), depth)
        if position + 1 == len(recent):
            return CacheEntry.of(entry.closed.tail(depth), self.clock.monotonic(), depth)
        return self._merge(entry, recent.slice(position + 1, -1), _last_row(recent), depth)

    def _merge(self, entry: CacheEntry, new: list[tuple] | BarSeries, last: tuple, depth: int) -> CacheEntry:
        """``entry``'s closed bars, then the newly closed ``new`` (rows, or a series of the same
        dtypes), then the last bar ``last``, the newest ``depth`` of them: ``new`` is appended to
        the entry's store (made on the first merge) in place."""
        added = len(new)
        with self._lock:  # one writer per store at a time
            store, start, stop = entry.store, entry.start, entry.stop
            if store is None or store.filled != stop or store.size - stop < added:
                store = _ClosedStore(entry.closed.tail(depth - 1), added + SPARE_ROWS)
                start, stop = 0, store.filled
            if added:
                store.append(new)
                stop += added
        if start < stop - (depth - 1):
            start = stop - (depth - 1)
        if not added:
            anchor = entry.newest_closed()
        else:  # the newest of ``new`` (read from a series only when asked for)
            anchor = new[-1][:6] if isinstance(new, list) else None  # (``newest_closed``'s six values)
        # (all by position: keyword arguments cost a constructor a dictionary, at every merge)
        return CacheEntry(stop - start + 1, self.clock.monotonic(), depth, last, store, start, stop, anchor)

    def reaches_history_start(self, symbol: str, first_time_s: int, period: int) -> bool:
        """Does a series starting at ``first_time_s`` reach back to the first bar the broker can
        ever have (``history_start``)? Then no older bar can join it."""
        start = self.history_start(symbol) if self.history_start is not None else None
        return start is not None and first_time_s - start < period

    def _validate(self, bars: BarSeries | list[tuple], symbol: str, timeframe: str) -> None:
        """``validate_bars`` (on a series or its rows), counting rejections."""
        try:
            if isinstance(bars, list):
                _validate_few(bars, symbol, timeframe)
            else:
                validate_bars(bars, symbol, timeframe)
        except BadBars:
            key = f"{symbol}:{timeframe}"
            self.stats.rejected[key] = self.stats.rejected.get(key, 0) + 1
            raise

    def refresh(self, symbol: str, timeframe: str) -> CacheEntry | None:
        cached = self._cache.get((symbol, timeframe))
        try:
            entry = self._fetch(symbol, timeframe, self.depth, cached)
        except (BrokerError, BadBars) as exc:
            self.stats.errors += 1
            self.stats.last_error = str(exc)
            log.warning("bar refresh %s %s failed: %s", symbol, timeframe, exc)
            return None
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
            last = entry.last
            if symbol in seen or last is None:
                continue
            seen.add(symbol)
            try:
                quote = self.broker.quote(symbol)
                quote_text = f"bid {quote.bid:g} ask {quote.ask:g}"
            except BrokerError as exc:
                quote_text = f"no quote ({exc})"
            log.info("%s %s | %s bar %s O %g H %g L %g C %g", symbol, quote_text, timeframe,
                     _open_time(last).strftime("%Y-%m-%d %H:%M"), last[1], last[2], last[3], last[4])

    def _snapshot(self) -> dict[tuple[str, str], CacheEntry]:
        return self._cache.copy()  # (one dict operation: see ``_cache``)

    # ------------------------------------------------------------------ reading
    def get(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> BarSeries:
        """The last ``count`` bars (closed only by default) from the cache when fresh, else
        fetched directly. Raises BrokerError/BadBars when neither source has good data."""
        key = (symbol, timeframe)
        entry = self._cache.get(key)
        needed = count + (0 if include_forming else 1)
        if entry is not None and self.clock.monotonic() - entry.fetched_mono <= self.max_age_seconds \
                and entry.size >= min(needed, self.depth):
            self.stats.cache_hits += 1
        else:
            self.stats.direct_fetches += 1
            if log.isEnabledFor(logging.DEBUG):
                age = "empty" if entry is None else f"{self.clock.monotonic() - entry.fetched_mono:.1f} s old"
                log.debug("bars %s %s served by a direct fetch (cache %s)", symbol, timeframe, age)
            entry = self._fetch(symbol, timeframe, needed if needed > self.depth else self.depth, entry)
            self._cache[key] = entry
        return entry.bars.tail(count) if include_forming else entry.closed_tail(count)

    def health(self) -> dict[str, Any]:
        now_mono = self.clock.monotonic()
        now = self.clock.now()
        feeds = {}
        for (symbol, timeframe), entry in self._snapshot().items():
            last_bar = None if entry.last is None else _open_time(entry.last)
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

    def last_bar_times(self) -> dict[tuple[str, str], int | None]:
        """Per cached (symbol, timeframe), its newest bar's open time in UTC epoch seconds (None:
        no bar): ``health()``'s ``last_bar`` without building the health document, for the
        trading guard's stale-data check at every backtest step."""
        return {key: None if entry.last is None else int(entry.last[0]) for key, entry in self._snapshot().items()}
