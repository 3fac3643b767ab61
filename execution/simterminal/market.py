"""Market replay: recorded bars or ticks turned into an endless, deterministic market for one symbol.

How a recording becomes "the market now"
----------------------------------------
- **Whole-week shifting.** A recording of span S is treated as one period of P = round(S / week)
  whole weeks (at least one; ``feed.replay = "once"``, as backtests ask: ceil(S / week), so no
  recorded bar is dropped); data beyond P is dropped, a shortfall is a closed market. The
  period repeats forever, so time never goes backwards and the series never ends. Shifting by
  whole weeks keeps the weekday and the hour of day of every bar, which sessions rely on.
- **Anchor.** The terminal's anchor (the first clock time its book ever saw) decides the phase:
  the recording's first week plays in the anchor's week (the first recorded instant is shifted
  by ``A = floor((anchor - first) / week)`` weeks). A restarted terminal reuses the anchor from
  its book, so the same market time always shows the same prices.
- **Phase window.** One period is stored in "phase time": UTC milliseconds within
  ``[W, W + P)`` where W is the server-time Sunday 00:00 at or before the first recorded
  instant (the end of the recording wraps to the front). Every timeframe bucket up to W1 then
  lies wholly inside the window, so aggregated bars are computed once per period.
- **Ticks.** A symbol fed by a tick file replays its real ticks. A symbol fed by bars gets
  GENERATED ticks that walk a deterministic path through each bar: open, the nearer extreme,
  the other extreme, close, at 0, 1/4, 1/2 and 3/4 of the bar, with midpoints at the odd
  eighths, rounded to the tick size; unchanged quotes are dropped, flags are BID|ASK. The
  bar's open, high, low and close are therefore all real (rounded to the symbol's tick size,
  the broker's quoting precision), and SL/TP trigger reproducibly.
  ``tick_volume`` of such bars is the number of generated ticks unless the file records it.
- **Spread.** ask = bid + the bar's spread column (points) when the file has one, else the
  symbol's configured ``spread_points``.
- **Market closed.** Inside a gap between recorded bars longer than ``market_gap_seconds``
  (weekends, gold's daily break, the end of a recording) the market is closed.
- **Continuity for stops.** Inside a bar the generated path is continuous (a stop is filled at
  its level); from one bar to the next, or across a gap, the price jumps (a stop is filled at
  the first price beyond it). Real ticks are continuous unless more than 60 s apart.

All times in this module are UTC milliseconds; the terminal converts to broker server time.
"""
from __future__ import annotations

import math
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from engines.bars import shifted_rows
from engines.frozen import direct_init
from execution.simterminal import constants as c
from execution.simterminal.symbols import SymbolSpec
from execution.simterminal.types import RATES_DTYPE, TICKS_DTYPE
from feeds.readers import read_bars, read_ticks

SECOND_MS = 1000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
SUNDAY_ORIGIN_MS = 3 * DAY_MS  # 1970-01-04 was a Sunday; MT5 weeks (W1 bars) start Sunday 00:00
TICK_CONTINUITY_MS = 60_000
ROW_BLOCK = 256  # rows of a rates table converted to tuples at a time (``RowBlocks``)
ROW_BLOCKS_KEPT = 4  # converted blocks kept per table
TICK_TABLE_MAX = 2_000_000  # above this many ticks per period, build tick windows column by column (memory)
PATH_FRACTIONS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75)
TICK_FLAGS_BID_ASK = c.TICK_FLAG_BID | c.TICK_FLAG_ASK

# timeframe constant -> bucket length (ms); MN1 is calendar months, handled separately
TIMEFRAME_MS: dict[int, int] = {
    c.TIMEFRAME_M1: MINUTE_MS, c.TIMEFRAME_M2: 2 * MINUTE_MS, c.TIMEFRAME_M3: 3 * MINUTE_MS,
    c.TIMEFRAME_M4: 4 * MINUTE_MS, c.TIMEFRAME_M5: 5 * MINUTE_MS, c.TIMEFRAME_M6: 6 * MINUTE_MS,
    c.TIMEFRAME_M10: 10 * MINUTE_MS, c.TIMEFRAME_M12: 12 * MINUTE_MS,
    c.TIMEFRAME_M15: 15 * MINUTE_MS, c.TIMEFRAME_M20: 20 * MINUTE_MS,
    c.TIMEFRAME_M30: 30 * MINUTE_MS, c.TIMEFRAME_H1: 60 * MINUTE_MS,
    c.TIMEFRAME_H2: 120 * MINUTE_MS, c.TIMEFRAME_H3: 180 * MINUTE_MS,
    c.TIMEFRAME_H4: 240 * MINUTE_MS, c.TIMEFRAME_H6: 360 * MINUTE_MS,
    c.TIMEFRAME_H8: 480 * MINUTE_MS, c.TIMEFRAME_H12: 720 * MINUTE_MS,
    c.TIMEFRAME_D1: DAY_MS, c.TIMEFRAME_W1: WEEK_MS,
}
ALL_TIMEFRAMES = frozenset(TIMEFRAME_MS) | {c.TIMEFRAME_MN1}


class FeedError(ValueError):
    """A feed file cannot drive the replay (bad bar size, misaligned bars...)."""


class UnsupportedTimeframe(ValueError):
    """The timeframe is finer than (or not a multiple of) the symbol's recorded bars."""


@dataclass
class Aggregate:
    """One period of bars of one timeframe, in phase time, with the source bars each one spans."""

    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    tick_volume: np.ndarray
    spread: np.ndarray
    real_volume: np.ndarray
    first_bar: np.ndarray
    end_bar: np.ndarray
    forming: FormingIndex
    unit: bool = False  # the recorded timeframe: bucket k is source bar k (first_bar = k, end_bar = k + 1)


RunningFigures = tuple  # (high, low, tick_volume, spread, real_volume): indexable by source bar - offset


@dataclass(frozen=True)
class FormingIndex:
    """What a forming bar of an aggregate reads, one element at a time, as memoryviews (an
    element read gives the plain number ``.item()`` gives, at a fraction of its cost).

    Per bucket: ``time``, ``first_bar``, ``end_bar``. ``unit_runs``: for the recorded timeframe
    (one source bar per bucket) the running figures of a bucket (its high, low, tick volume,
    spread and real volume over its bars up to a given one) are that bar's own, so views of the
    source columns; None for coarser timeframes, whose running figures ``SymbolMarket`` computes
    for the one bucket forming (``_bucket_runs``): per source bar of every timeframe they would
    cost more memory than the recording itself."""

    time: memoryview
    first_bar: memoryview
    end_bar: memoryview
    unit_runs: RunningFigures | None = None


@dataclass(frozen=True)
class SeriesScalars:
    """A phase series' columns as memoryviews, for the per-call paths that read single elements
    (an element gives the plain number ``.item()`` gives, at a fraction of its cost)."""

    bar_time: memoryview
    bar_open: memoryview
    bar_close: memoryview
    bar_tick_volume: memoryview
    bar_first_tick: memoryview
    tick_time: memoryview
    tick_bid: memoryview
    tick_ask: memoryview
    tick_flags: memoryview
    tick_jump: memoryview


def _scalars(values: np.ndarray) -> memoryview:
    """A memoryview over ``values`` (copied only if not contiguous) to read elements from."""
    return memoryview(np.ascontiguousarray(values))


@dataclass
class PhaseSeries:
    """One period of a symbol's market in phase time (see the module docstring). Immutable
    except for the per-timeframe aggregate cache."""

    period_ms: int
    window_ms: int
    first_ms: int
    bar_ms: int
    server_offset_ms: int
    bar_time: np.ndarray
    bar_open: np.ndarray
    bar_high: np.ndarray
    bar_low: np.ndarray
    bar_close: np.ndarray
    bar_tick_volume: np.ndarray
    bar_spread: np.ndarray
    bar_real_volume: np.ndarray
    bar_first_tick: np.ndarray
    recorded_tick_volume: bool
    tick_time: np.ndarray
    tick_bid: np.ndarray
    tick_ask: np.ndarray
    tick_flags: np.ndarray
    tick_jump: np.ndarray
    generated_ticks: bool
    _aggregates: dict[int, Aggregate] = field(default_factory=dict)
    _agg_lock: threading.Lock = field(default_factory=threading.Lock)
    _tables: dict[object, np.ndarray] = field(default_factory=dict)  # MT5 arrays of one period, by kind
    scalars: SeriesScalars = field(init=False)
    source_runs: RunningFigures = field(init=False)  # each source bar's own figures (see ``FormingIndex``)

    def __post_init__(self) -> None:
        self.scalars = SeriesScalars(*(_scalars(getattr(self, name)) for name in SeriesScalars.__dataclass_fields__))
        self.source_runs = tuple(_scalars(column) for column in (self.bar_high, self.bar_low, self.bar_tick_volume,
                                                                  self.bar_spread, self.bar_real_volume))

    def table(self, kind: object, build: Callable[[], np.ndarray]) -> np.ndarray:
        """One period as a ready MT5 structured array (``"ticks"`` or a timeframe), built once per
        series: every market replaying this series (aliases of one recording) shares it."""
        with self._agg_lock:
            table = self._tables.get(kind)
        if table is None:
            table = build()
            with self._agg_lock:
                table = self._tables.setdefault(kind, table)
        return table

    @property
    def bars(self) -> int:
        return len(self.bar_time)

    @property
    def ticks(self) -> int:
        return len(self.tick_time)

    def aggregate(self, timeframe: int) -> Aggregate:
        """Bars of ``timeframe`` over one period (cached). W1 buckets start Sunday server time."""
        with self._agg_lock:
            cached = self._aggregates.get(timeframe)
        if cached is not None:
            return cached
        tf_ms = TIMEFRAME_MS[timeframe]
        if tf_ms < self.bar_ms or tf_ms % self.bar_ms:
            raise UnsupportedTimeframe(
                f"the recording has {self.bar_ms // 1000}-second bars; timeframe of {tf_ms // 1000} s "
                "cannot be built from them")
        if tf_ms == self.bar_ms:
            n = self.bars
            first = np.arange(n, dtype=np.int64)
            end = first + 1
            forming = FormingIndex(_scalars(self.bar_time), _scalars(first), _scalars(end), self.source_runs)
            agg = Aggregate(self.bar_time, self.bar_open, self.bar_high, self.bar_low, self.bar_close,
                            self.bar_tick_volume, self.bar_spread, self.bar_real_volume, first, end,
                            forming, unit=True)
        else:
            origin = SUNDAY_ORIGIN_MS if timeframe == c.TIMEFRAME_W1 else 0
            keys = (self.bar_time + self.server_offset_ms - origin) // tf_ms
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]).astype(np.int64)
            ends = np.r_[starts[1:], self.bars]
            time = keys[starts] * tf_ms + origin - self.server_offset_ms
            agg = Aggregate(
                time=time,
                open=self.bar_open[starts],
                high=np.maximum.reduceat(self.bar_high, starts),
                low=np.minimum.reduceat(self.bar_low, starts),
                close=self.bar_close[ends - 1],
                tick_volume=np.add.reduceat(self.bar_tick_volume, starts),
                spread=np.minimum.reduceat(self.bar_spread, starts),
                real_volume=np.add.reduceat(self.bar_real_volume, starts),
                first_bar=starts, end_bar=ends, forming=FormingIndex(_scalars(time), _scalars(starts), _scalars(ends)))
        with self._agg_lock:
            self._aggregates[timeframe] = agg
        return agg


# ------------------------------------------------------------------------------------------
# building a PhaseSeries from a file (cached per process: backtests build terminals repeatedly)

_SERIES_CACHE: dict[tuple, PhaseSeries] = {}
_SERIES_LOCK = threading.Lock()


def load_series(spec: SymbolSpec, data_dir: Path, server_offset_ms: int) -> PhaseSeries:
    """The phase series of ``spec``'s feed, built once per process per file and parameters."""
    path = (Path(data_dir) / spec.feed.file).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FeedError(f"feed file {path} not found (symbol spec feed.file {spec.feed.file!r})") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns, spec.feed.kind, spec.feed.format,
           spec.feed.utc_offset_hours, spec.feed.replay, spec.digits, spec.trade_tick_size, spec.spread_points,
           server_offset_ms)
    with _SERIES_LOCK:
        cached = _SERIES_CACHE.get(key)
    if cached is not None:
        return cached
    if spec.feed.kind == "bars":
        frame = read_bars(path, spec.feed.utc_offset_hours, format=spec.feed.format)
        series = series_from_bars(frame, spec, server_offset_ms, source=str(path))
    else:
        frame = read_ticks(path, spec.feed.utc_offset_hours, format=spec.feed.format)
        series = series_from_ticks(frame, spec, server_offset_ms, source=str(path))
    with _SERIES_LOCK:
        _SERIES_CACHE[key] = series
    return series


def _window_start(first_ms: int, server_offset_ms: int) -> int:
    """UTC ms of the server-time Sunday 00:00 at or before ``first_ms``."""
    server = first_ms + server_offset_ms
    return (server - SUNDAY_ORIGIN_MS) // WEEK_MS * WEEK_MS + SUNDAY_ORIGIN_MS - server_offset_ms


def _period(first_ms: int, end_ms: int, replay: str = "loop") -> int:
    """The replay period: the span in whole weeks, rounded to the nearest ("loop") or up ("once")."""
    span = (end_ms - first_ms) / WEEK_MS
    weeks = max(1, math.ceil(span) if replay == "once" else int(round(span)))
    return weeks * WEEK_MS


def _round_to_tick(values: np.ndarray, tick_size: float, digits: int) -> np.ndarray:
    return np.round(np.round(values / tick_size) * tick_size, digits)


def _rotate(times: np.ndarray, window_ms: int, period_ms: int) -> np.ndarray:
    """Order that moves the part of the period beyond the window to its front (minus P)."""
    tail = times >= window_ms + period_ms
    return np.r_[np.flatnonzero(tail), np.flatnonzero(~tail)]


def series_from_bars(frame: pd.DataFrame, spec: SymbolSpec, server_offset_ms: int,
                     source: str = "bars") -> PhaseSeries:
    """Phase series of a bar recording, with generated ticks along the in-bar path."""
    if len(frame) < 2:
        raise FeedError(f"{source}: at least two bars are needed")
    times = frame.index.as_unit("ms").asi8.astype(np.int64)
    steps, counts = np.unique(np.diff(times), return_counts=True)
    bar_ms = int(steps[np.argmax(counts)])
    if bar_ms not in TIMEFRAME_MS.values() or bar_ms > DAY_MS:
        raise FeedError(f"{source}: bars are {bar_ms / 1000:g} s apart, not an MT5 intraday timeframe")
    if np.any((times + server_offset_ms) % bar_ms):
        raise FeedError(f"{source}: bar times are not aligned to {bar_ms // 1000} s in server time")
    first = int(times[0])
    period = _period(first, int(times[-1]) + bar_ms, spec.feed.replay)
    keep = times + bar_ms <= first + period
    window = _window_start(first, server_offset_ms)
    order = _rotate(times[keep], window, period)
    kept = np.flatnonzero(keep)[order]
    bar_time = times[kept]
    bar_time = np.where(bar_time >= window + period, bar_time - period, bar_time)

    # quotes carry the broker's precision: recorded prices are rounded to the tick size
    o, h, l, cl = (_round_to_tick(frame[k].to_numpy(dtype=np.float64)[kept], spec.trade_tick_size, spec.digits)
                   for k in ("open", "high", "low", "close"))
    spread_col = frame["spread"].to_numpy(dtype=np.float64)[kept]
    spread = np.where(np.isnan(spread_col), spec.spread_points, np.round(spread_col)).astype(np.int32)

    # the in-bar path: open, nearer extreme, other extreme, close (+ midpoints)
    high_first = (h - o) <= (o - l)
    e1 = np.where(high_first, h, l)
    e2 = np.where(high_first, l, h)
    grid = np.stack([o, (o + e1) / 2, e1, (e1 + e2) / 2, e2, (e2 + cl) / 2, cl], axis=1)
    grid = _round_to_tick(grid, spec.trade_tick_size, spec.digits)
    offsets = np.round(np.asarray(PATH_FRACTIONS) * bar_ms).astype(np.int64)
    t_grid = bar_time[:, None] + offsets[None, :]
    ask_grid = np.round(grid + (spread.astype(np.float64) * spec.point)[:, None], spec.digits)
    jump_grid = np.zeros(grid.shape, dtype=bool)
    jump_grid[:, 0] = True  # from one bar to the next the price jumps (prev close -> open)

    bid = grid.ravel()
    ask = ask_grid.ravel()
    t = t_grid.ravel()
    jump = jump_grid.ravel()
    changed = np.r_[True, (bid[1:] != bid[:-1]) | (ask[1:] != ask[:-1])]
    # a dropped first-of-bar tick means a zero jump: the next kept tick is continuous
    bid, ask, t, jump = bid[changed], ask[changed], t[changed], jump[changed]
    bar_first_tick = np.searchsorted(t, bar_time, side="left").astype(np.int64)

    tick_counts = np.diff(np.r_[bar_first_tick, len(t)])
    tv_col = frame["tick_volume"].to_numpy(dtype=np.float64)[kept]
    recorded = not np.isnan(tv_col).any()
    tick_volume = (np.round(tv_col) if recorded else tick_counts).astype(np.uint64)
    return PhaseSeries(
        period_ms=period, window_ms=window, first_ms=first, bar_ms=bar_ms,
        server_offset_ms=server_offset_ms, bar_time=bar_time, bar_open=o, bar_high=h, bar_low=l,
        bar_close=cl, bar_tick_volume=tick_volume, bar_spread=spread,
        bar_real_volume=np.zeros(len(bar_time), dtype=np.uint64), bar_first_tick=bar_first_tick,
        recorded_tick_volume=recorded, tick_time=t, tick_bid=bid, tick_ask=ask,
        tick_flags=np.full(len(t), TICK_FLAGS_BID_ASK, dtype=np.uint32), tick_jump=jump,
        generated_ticks=True)


def series_from_ticks(frame: pd.DataFrame, spec: SymbolSpec, server_offset_ms: int,
                      source: str = "ticks") -> PhaseSeries:
    """Phase series of a real tick recording; M1 bars are built from the bids."""
    if len(frame) < 2:
        raise FeedError(f"{source}: at least two ticks are needed")
    times = frame.index.as_unit("ms").asi8.astype(np.int64)
    bid_all = _round_to_tick(frame["bid"].to_numpy(dtype=np.float64), spec.trade_tick_size, spec.digits)
    ask_all = _round_to_tick(frame["ask"].to_numpy(dtype=np.float64), spec.trade_tick_size, spec.digits)
    first = int(times[0])
    period = _period(first, int(times[-1]) + 1, spec.feed.replay)
    keep = times < first + period
    window = _window_start(first, server_offset_ms)
    kept = np.flatnonzero(keep)[_rotate(times[keep], window, period)]
    t = np.where(times[kept] >= window + period, times[kept] - period, times[kept])
    bid, ask = bid_all[kept], ask_all[kept]
    changed = np.r_[True, (bid[1:] != bid[:-1]) | (ask[1:] != ask[:-1])]
    t, bid, ask = t[changed], bid[changed], ask[changed]
    flags = np.zeros(len(t), dtype=np.uint32)
    flags[np.r_[True, bid[1:] != bid[:-1]]] |= c.TICK_FLAG_BID
    flags[np.r_[True, ask[1:] != ask[:-1]]] |= c.TICK_FLAG_ASK
    gaps = np.diff(np.r_[t[-1] - period, t])
    jump = gaps > TICK_CONTINUITY_MS

    minute = t // MINUTE_MS
    starts = np.flatnonzero(np.r_[True, minute[1:] != minute[:-1]])
    ends = np.r_[starts[1:], len(t)]
    spread_points = np.round((ask - bid) / spec.point)
    return PhaseSeries(
        period_ms=period, window_ms=window, first_ms=first, bar_ms=MINUTE_MS,
        server_offset_ms=server_offset_ms, bar_time=minute[starts] * MINUTE_MS,
        bar_open=bid[starts], bar_high=np.maximum.reduceat(bid, starts),
        bar_low=np.minimum.reduceat(bid, starts), bar_close=bid[ends - 1],
        bar_tick_volume=(ends - starts).astype(np.uint64),
        bar_spread=np.minimum.reduceat(spread_points, starts).astype(np.int32),
        bar_real_volume=np.zeros(len(starts), dtype=np.uint64),
        bar_first_tick=starts.astype(np.int64), recorded_tick_volume=True,
        tick_time=t, tick_bid=bid, tick_ask=ask, tick_flags=flags, tick_jump=jump,
        generated_ticks=False)


# ------------------------------------------------------------------------------------------
# the endless market of one symbol for one terminal

@direct_init
@dataclass(frozen=True)
class Quote:
    time_ms: int  # virtual UTC ms of the tick
    bid: float
    ask: float
    flags: int


@dataclass(frozen=True)
class TickSlice:
    """Ticks in virtual time, oldest first."""

    time_ms: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    jump: np.ndarray


@direct_init
@dataclass(frozen=True)
class TickRows:
    """A few ticks in virtual time, oldest first, as lists of plain numbers (``TickSlice``'s
    values, element for element): a trade server's look at one bar's ticks reads them one by
    one, and a dozen numpy operations on a handful of elements cost more than that loop."""

    time_ms: list[int]
    bid: list[float]
    ask: list[float]
    jump: list[bool]


class SymbolMarket:
    """One symbol's replay placed on the terminal's timeline (phase series + week shift).

    Every argument and result time is virtual UTC ms; ``server_offset_ms`` is applied only
    when building MT5 structures (``rates``/``ticks``).
    """

    def __init__(self, name: str, spec: SymbolSpec, series: PhaseSeries, anchor_ms: int) -> None:
        self.name = name
        self.spec = spec
        self.series = series
        self.shift_ms = (anchor_ms - series.first_ms) // WEEK_MS * WEEK_MS
        self.window_virtual_ms = series.window_ms + self.shift_ms
        self.gap_ms = int(spec.market_gap_seconds * 1000)
        self._quote_memo: tuple[int, int, Quote] | None = None  # (v_ms, tick index, quote()): set atomically
        self._instant_memo: tuple[int, tuple[int, int, int], int] | None = None  # ``_settle``'s: atomically
        self._scalars = series.scalars
        self._aggregates: dict[int, Aggregate] = {}  # the series' ones, without its lock
        self._rates_tables: dict[int, tuple[np.ndarray, memoryview]] = {}  # timeframe -> (table, its bytes)
        # timeframe (or (timeframe, shift_s), see ``rate_rows``) -> its table read as rows
        self._row_blocks: dict[int | tuple[int, int], RowBlocks] = {}
        self._runs: dict[int, tuple[Aggregate, int, RunningFigures]] = {}  # id(agg) -> (agg, bucket, figures)
        self._ticks_bytes: memoryview | None = None

    # --- phase mapping -----------------------------------------------------------------
    def _locate(self, v_ms: int) -> tuple[int, int]:
        """(cycle, phase ms) of virtual time ``v_ms``."""
        rel = v_ms - self.window_virtual_ms
        cycle = rel // self.series.period_ms
        return cycle, self.series.window_ms + rel - cycle * self.series.period_ms

    def _virtual(self, phase_ms: np.ndarray | int, cycle: np.ndarray | int):
        return phase_ms + self.shift_ms + cycle * self.series.period_ms

    # --- ticks ---------------------------------------------------------------------------
    def tick_index(self, v_ms: int) -> int:
        """Global index of the last tick at or before ``v_ms``."""
        cycle, i = self._tick_position(v_ms)
        return cycle * len(self.series.tick_time) + i

    def _tick_position(self, v_ms: int) -> tuple[int, int]:
        """(cycle, index in the period) of the last tick at or before ``v_ms`` (index -1: before the
        period's first tick). Kept with the instant's bar position (``_settle``): at one clock
        instant the forming bar and the quote both ask."""
        memo = self._instant_memo
        if memo is None or memo[0] != v_ms:
            memo = self._settle(v_ms)
        return memo[1][0], memo[2]

    def _bar_position(self, v_ms: int) -> tuple[int, int, int]:
        """(cycle, phase, index in the period of the last source bar begun) at ``v_ms`` (index -1:
        before the period's first bar). Kept per instant (``_settle``): at one clock instant every
        timeframe's read and the quote ask."""
        memo = self._instant_memo
        if memo is None or memo[0] != v_ms:
            memo = self._settle(v_ms)
        return memo[1]

    def _settle(self, v_ms: int) -> tuple[int, tuple[int, int, int], int]:
        """Find and keep (one tuple, set atomically) instant ``v_ms``'s bar position and the index
        in the period of its last tick: ``(v_ms, _bar_position, tick index)``. The bar search
        starts from the last instant's answer when the clock went forward in the same cycle
        (every bar up to that answer's has begun); the tick search looks among the last begun
        bar's ticks alone, since every tick before the bar's first one comes before the bar's
        start (at or before the phase) and every tick from the next bar's first one on at or
        after that bar's start (after the phase)."""
        sc = self._scalars
        rel = v_ms - self.window_virtual_ms  # ``_locate``, written out (once per instant)
        cycle = rel // self.series.period_ms
        phase = self.series.window_ms + rel - cycle * self.series.period_ms
        lo = 0
        memo = self._instant_memo
        if memo is not None:
            last_cycle, last_phase, last_b = memo[1]
            if last_cycle == cycle and last_phase <= phase:
                lo = last_b + 1
        b = _bisect_near(sc.bar_time, phase, lo) - 1
        first_tick = sc.bar_first_tick
        tick_lo = first_tick[b] if b >= 0 else 0
        tick_hi = first_tick[b + 1] if b + 1 < len(first_tick) else len(sc.tick_time)
        memo = (v_ms, (cycle, phase, b), bisect_right(sc.tick_time, phase, tick_lo, tick_hi) - 1)
        self._instant_memo = memo
        return memo

    def first_tick_index(self, v_ms: int) -> int:
        """Global index of the first tick at or after ``v_ms``."""
        cycle, phase = self._locate(v_ms)
        i = int(self.series.tick_time.searchsorted(phase, side="left"))
        return cycle * self.series.ticks + i

    def quote_at_index(self, g: int) -> Quote:
        sc = self._scalars
        cycle, i = divmod(g, len(sc.tick_time))
        return Quote(sc.tick_time[i] + self.shift_ms + cycle * self.series.period_ms, sc.tick_bid[i], sc.tick_ask[i],
                     sc.tick_flags[i])

    def quote(self, v_ms: int) -> Quote:
        """The last tick at or before ``v_ms`` (stale during closed markets, as in MT5).
        The last answer is kept: the terminal asks several times per clock instant."""
        memo = self._quote_memo
        if memo is not None and memo[0] == v_ms:
            return memo[2]
        instant = self._instant_memo  # ``_tick_position`` read here without its call (once per step)
        if instant is None or instant[0] != v_ms:
            instant = self._settle(v_ms)
        g = instant[1][0] * len(self._scalars.tick_time) + instant[2]  # ``tick_index``
        quote = memo[2] if memo is not None and memo[1] == g else self.quote_at_index(g)  # no tick since: the same
        self._quote_memo = (v_ms, g, quote)
        return quote

    def tick_slice(self, g0: int, g1: int) -> TickSlice:
        """Ticks with global index in [g0, g1). Inside one cycle (a trade server's look since its
        last one) the prices and jumps are views of the series' columns: read-only."""
        s = self.series
        if g1 <= g0:
            empty = np.empty(0)
            return TickSlice(empty.astype(np.int64), empty, empty, empty.astype(bool))
        cycle = g0 // s.ticks
        i0, i1 = g0 - cycle * s.ticks, g1 - cycle * s.ticks
        if i1 <= s.ticks:  # the same values as the indexing below gives, without the index arrays
            return TickSlice(self._virtual(s.tick_time[i0:i1], cycle), _read_only(s.tick_bid[i0:i1]),
                             _read_only(s.tick_ask[i0:i1]), _read_only(s.tick_jump[i0:i1]))
        idx = np.arange(g0, g1, dtype=np.int64)
        cycle = idx // s.ticks
        i = idx - cycle * s.ticks
        return TickSlice(self._virtual(s.tick_time[i], cycle), s.tick_bid[i], s.tick_ask[i], s.tick_jump[i])

    def ticks_between(self, after_ms: int, upto_ms: int) -> TickSlice | TickRows:
        """Ticks with virtual time in (after_ms, upto_ms]: as ``TickRows`` when they are at most
        ``TICK_ROWS_MAX`` inside one cycle (a look a bar after the last one), else as arrays."""
        g0, g1 = self.tick_index(after_ms) + 1, self.tick_index(upto_ms) + 1
        ticks = len(self._scalars.tick_time)
        cycle = g0 // ticks
        i0 = g0 - cycle * ticks
        i1 = g1 - cycle * ticks
        if not 0 <= i1 - i0 <= TICK_ROWS_MAX or i1 > ticks:
            return self.tick_slice(g0, g1)
        sc = self._scalars
        shift = self.shift_ms + cycle * self.series.period_ms
        return TickRows([t + shift for t in sc.tick_time[i0:i1].tolist()], sc.tick_bid[i0:i1].tolist(),
                        sc.tick_ask[i0:i1].tolist(), sc.tick_jump[i0:i1].tolist())

    def _ticks_table(self) -> np.ndarray:
        """One period of ticks as the MT5 structured array in phase server time (built once per
        series): any window is then copied from it cycle by cycle, times shifted by whole weeks."""
        s = self.series

        def build() -> np.ndarray:
            table = np.zeros(s.ticks, dtype=TICKS_DTYPE)
            msc = s.tick_time + s.server_offset_ms
            table["time"] = msc // 1000
            table["time_msc"] = msc
            table["bid"] = s.tick_bid
            table["ask"] = s.tick_ask
            table["flags"] = s.tick_flags
            return table

        return s.table("ticks", build)

    def mt5_ticks(self, g0: int, g1: int) -> np.ndarray:
        """Ticks [g0, g1) as the MT5 structured array (times in server time)."""
        s = self.series
        if g1 <= g0 or s.ticks > TICK_TABLE_MAX:
            return self._mt5_ticks_columns(g0, g1)
        table = self._ticks_table()
        if self._ticks_bytes is None:  # the series builds its table once: the same object every time
            self._ticks_bytes = _row_bytes(table)
        out, pieces = _table_window(table, self._ticks_bytes, g0, g1, self.shift_ms, s.period_ms)
        for first, end, shift in pieces:
            if shift:  # a backtest's market plays its recording unshifted: nothing to add
                out["time_msc"][first:end] += shift
                out["time"][first:end] += shift // 1000  # shifts are whole weeks, so whole seconds
        return out

    def _mt5_ticks_columns(self, g0: int, g1: int) -> np.ndarray:
        """Ticks [g0, g1) built column by column (any span, across cycles too)."""
        s = self.series
        n = max(0, g1 - g0)
        out = np.zeros(n, dtype=TICKS_DTYPE)
        if n:
            idx = np.arange(g0, g1, dtype=np.int64)
            cycle = idx // s.ticks
            i = idx - cycle * s.ticks
            msc = self._virtual(s.tick_time[i], cycle) + s.server_offset_ms
            out["time"] = msc // 1000
            out["time_msc"] = msc
            out["bid"] = s.tick_bid[i]
            out["ask"] = s.tick_ask[i]
            out["flags"] = s.tick_flags[i]
        return out

    # --- sessions --------------------------------------------------------------------------
    def is_open(self, v_ms: int) -> bool:
        """False inside a recorded gap longer than ``market_gap_seconds`` (weekend, break)."""
        s = self.series
        cycle, phase = self._locate(v_ms)
        b = int(np.searchsorted(s.bar_time, phase, side="right")) - 1
        if b < 0:  # before the first bar of the window: the previous period's last bar
            b, phase = s.bars - 1, phase + s.period_ms
        end = int(s.bar_time[b]) + s.bar_ms
        if phase < end:
            return True
        next_start = int(s.bar_time[b + 1]) if b + 1 < s.bars else int(s.bar_time[0]) + s.period_ms
        return next_start - end <= self.gap_ms

    # --- bars ------------------------------------------------------------------------------
    def aggregate(self, timeframe: int) -> Aggregate:
        """The series' aggregate, also kept here: a data call asks for it several times and the
        series' own cache takes a lock each time."""
        agg = self._aggregates.get(timeframe)
        if agg is None:
            agg = self._aggregates.setdefault(timeframe, self.series.aggregate(timeframe))
        return agg

    def last_bar_index(self, agg: Aggregate, v_ms: int) -> int:
        """Global index of the last bar that has begun (has data) at ``v_ms``: the bucket of the
        last source bar begun (a later bucket may have begun on the clock, but no recorded bar
        of it yet); -1 in the cycle when no bar of the period has begun yet."""
        memo = self._instant_memo  # ``_bar_position`` read here without its call (once per bar read)
        cycle, _, b = (memo if memo is not None and memo[0] == v_ms else self._settle(v_ms))[1]
        k = b if agg.unit or b < 0 else bisect_right(agg.forming.first_bar, b) - 1  # the bucket holding bar b
        return cycle * len(agg.time) + k

    def first_bar_index(self, agg: Aggregate, v_ms: int) -> int:
        """Global index of the first bar whose open time is at or after ``v_ms``."""
        cycle, phase = self._locate(v_ms)
        k = int(np.searchsorted(agg.time, phase, side="left"))
        return cycle * len(agg.time) + k

    def bar_open_time(self, agg: Aggregate, g: int) -> int:
        cycle, k = divmod(g, len(agg.time))
        return int(self._virtual(int(agg.time[k]), cycle))

    def _rates_table(self, timeframe: int, agg: Aggregate) -> tuple[np.ndarray, memoryview]:
        """One period of ``timeframe`` bars as the MT5 structured array in phase server time
        (built once per series and timeframe, kept here too, with its bytes): any window is then
        copied from it cycle by cycle, times shifted by whole weeks; only a forming last bar is
        computed per call."""
        kept = self._rates_tables.get(timeframe)
        if kept is None:
            offset_ms = self.series.server_offset_ms
            table = self.series.table(timeframe, lambda: _build_rates_table(agg, offset_ms))
            kept = self._rates_tables.setdefault(timeframe, (table, _row_bytes(table)))
        return kept

    def rates(self, timeframe: int, g0: int, g1: int, now_ms: int) -> np.ndarray:
        """Bars [g0, g1) as the MT5 structured array; a bar still forming at ``now_ms`` is partial."""
        agg = self.aggregate(timeframe)
        if g1 <= g0:
            return np.empty(0, dtype=RATES_DTYPE)
        period_ms = self.series.period_ms
        table, data = self._rates_table(timeframe, agg)
        out, pieces = _table_window(table, data, g0, g1, self.shift_ms, period_ms)
        for first, end, shift in pieces:
            if shift:  # a backtest's market plays its recording unshifted: nothing to add
                out["time"][first:end] += shift // 1000  # shifts are whole weeks, so whole seconds
        partial = self._forming_row(timeframe, agg, g1, now_ms)
        if partial is not None:
            out[len(out) - 1] = partial  # one row write (each field cast as the column assignments would)
        return out

    def rate_rows(self, timeframe: int, g0: int, g1: int, now_ms: int, agg: Aggregate | None = None,
                  shift_s: int = 0) -> list[tuple]:
        """``rates(timeframe, g0, g1, now_ms).tolist()`` without the structured array: the table's
        rows read as plain numbers, times shifted and the forming bar replaced in Python. The same
        tuples: each field's value is what the array would hold (see ``_forming_row``), times less
        ``shift_s`` (see ``RowBlocks``). ``agg``: ``aggregate(timeframe)`` when the caller has it
        already."""
        if agg is None:
            agg = self.aggregate(timeframe)
        if g1 <= g0:
            return []
        key = (timeframe, shift_s) if shift_s else timeframe
        table = self._row_blocks.get(key)
        if table is None:
            table = self._row_blocks.setdefault(key, RowBlocks(self._rates_table(timeframe, agg)[0], shift_s))
        if 0 <= g0 and g1 <= table.size and not self.shift_ms:
            # inside the first cycle of an unshifted replay (a backtest's reads): the table's rows as they are
            out = table.rows(g0, g1)
        else:
            out = []
            for start, stop, shift_ms in _cycle_pieces(table.size, g0, g1, self.shift_ms, self.series.period_ms):
                out += shifted_rows(table.rows(start, stop), -(shift_ms // 1000))  # whole weeks: whole seconds
        partial = self._forming_row(timeframe, agg, g1, now_ms, shift_s)
        if partial is not None:
            out[-1] = partial
        return out

    def _forming_row(self, timeframe: int, agg: Aggregate, g1: int, now_ms: int, shift_s: int = 0) -> tuple | None:
        """The last bar of a window ending at global bar ``g1`` (exclusive) as it stands at
        ``now_ms`` when it is still forming then, else None (the table's row is the bar); its
        time less ``shift_s``."""
        k_count = len(agg.time)
        cycle = (g1 - 1) // k_count
        k_last = g1 - 1 - cycle * k_count
        shift = self.shift_ms + cycle * self.series.period_ms
        start_ms = agg.forming.time[k_last]
        if start_ms + shift + TIMEFRAME_MS[timeframe] <= now_ms:
            return None
        # as the table, the cycle's shift and ``shift_s`` give it
        time_s = (start_ms + self.series.server_offset_ms) // 1000 + shift // 1000 - shift_s
        instant = self._instant_memo  # (set by the read's ``last_bar_index`` at ``now_ms``, as a rule)
        if instant is None or instant[0] != now_ms:
            instant = self._settle(now_ms)
        return self._partial_row(agg, k_last, now_ms - shift, cycle, time_s, instant)

    def _partial_row(self, agg: Aggregate, k: int, phase: int, cycle: int, time_s: int,
                     instant: tuple[int, tuple[int, int, int], int]) -> tuple | None:
        """Bucket ``k`` of cycle ``cycle`` as it stands at ``phase`` (forming bar), as the row
        ``(time, open, high, low, close, tick_volume, spread, real_volume)`` of plain numbers with
        the values the MT5 array's fields hold (float64 prices, non-negative integer volumes and
        spreads); None when no source bar of it has begun (the table's row stands). The bucket's
        complete bars are read from its running figures (``_bucket_runs``), the forming source bar
        from its ticks. ``instant``: ``_settle``'s answer for the read's clock instant, which is
        ``phase`` of cycle ``cycle``: when the instant lies in that cycle, its positions are the
        source bars and ticks begun at ``phase`` (else they are searched)."""
        s, sc, f = self.series, self._scalars, agg.forming
        same_cycle = instant[1][0] == cycle
        if agg.unit:  # one source bar per bucket: begun or not
            b0 = k
            started = k + 1 if sc.bar_time[k] <= phase else k
        else:
            b0 = f.first_bar[k]
            # the source bars begun at ``phase`` (``bar_time.searchsorted(phase, "right")``), at most the bucket's
            begun = instant[1][2] + 1 if same_cycle else int(s.bar_time.searchsorted(phase, side="right"))
            started = min(begun, f.end_bar[k])
        if started <= b0:
            return None
        last = started - 1  # the newest source bar begun
        last_start = sc.bar_time[last]
        runs = f.unit_runs  # (the recorded timeframe's are its bars' own: ``_bucket_runs``'s first answer)
        offset, (run_high, run_low, run_volume, run_spread, run_real) = (0, runs) if runs is not None \
            else self._bucket_runs(agg, k, b0, last)
        at = last - offset
        if phase >= last_start + s.bar_ms:  # every begun bar is complete
            return (time_s, sc.bar_open[b0], run_high[at], run_low[at], sc.bar_close[last], run_volume[at],
                    run_spread[at], run_real[at])
        if last > b0:  # the bucket's complete bars before the forming one
            high, low, volume = run_high[at - 1], run_low[at - 1], run_volume[at - 1]
        else:
            high, low, volume = -math.inf, math.inf, 0
        # the ticks of the period at or before ``phase`` (``tick_time.searchsorted(phase, "right")``)
        ticks = instant[2] + 1 if same_cycle else int(s.tick_time.searchsorted(phase, side="right"))
        open_price, p_max, p_min, close, count = self._forming_bar(last, ticks)
        # max(high, open_price, p_max) and min(...) as Python's max/min compare, NaN included
        if open_price > high:
            high = open_price
        if p_max > high:
            high = p_max
        if open_price < low:
            low = open_price
        if p_min < low:
            low = p_min
        if s.recorded_tick_volume and s.generated_ticks:  # a file's tick volume, pro rata
            elapsed = (phase - last_start) / s.bar_ms
            volume += int(sc.bar_tick_volume[last] * elapsed)
        else:  # the ticks seen so far (a bar exists from its first tick on)
            volume += count if count > 1 else 1
        first_open = open_price if last == b0 else sc.bar_open[b0]
        return time_s, first_open, high, low, close, volume, run_spread[at], run_real[at]

    def _bucket_runs(self, agg: Aggregate, k: int, b0: int, last: int) -> tuple[int, RunningFigures]:
        """(offset, figures): bucket ``k``'s running high, low, tick volume, spread and real volume
        over its source bars from ``b0`` up to bar b (read at ``b - offset``), for a read whose
        newest source bar begun is ``last``. The recorded timeframe's are the bars' own; so are a
        coarser bucket's while only its first source bar has begun (a read at the instant the
        bucket opens: each reduction over one element is that element, NaN included). Beyond
        that they are accumulated once, when the bucket is first read so (the last one is kept:
        reads at every step ask for the same bucket until it completes), with the reductions' own
        ufuncs over the bars in order, so each is what reducing the bucket's slice up to that bar
        gives (NaN included), as the table's row gives at its end."""
        unit_runs = agg.forming.unit_runs
        if unit_runs is not None:
            return 0, unit_runs
        if last == b0:
            return 0, self.series.source_runs
        kept = self._runs.get(id(agg))
        if kept is not None and kept[0] is agg and kept[1] == k:
            return b0, kept[2]
        s, b1 = self.series, agg.forming.end_bar[k]
        figures = (np.maximum.accumulate(s.bar_high[b0:b1]).tolist(), np.minimum.accumulate(s.bar_low[b0:b1]).tolist(),
                   np.add.accumulate(s.bar_tick_volume[b0:b1]).tolist(),
                   np.minimum.accumulate(s.bar_spread[b0:b1]).tolist(),
                   np.add.accumulate(s.bar_real_volume[b0:b1]).tolist())
        self._runs[id(agg)] = (agg, k, figures)
        return b0, figures

    def _forming_bar(self, b: int, ticks: int) -> tuple[float, float, float, float, int]:
        """(open, max, min and last of the bids so far, how many) of source bar ``b`` still forming
        when the period's first ``ticks`` ticks have come; with no tick yet, the open stands for
        all three prices. One tick (a bar read right at its open) is read as a number, without a slice."""
        sc = self._scalars
        open_price = sc.bar_open[b]
        t0 = sc.bar_first_tick[b]
        count = ticks - t0
        if count > 1:
            p_max, p_min, close = _max_min_last(self.series.tick_bid[t0:t0 + count])
        elif count == 1:
            p_max = p_min = close = sc.tick_bid[t0]
        else:  # the bar's first tick comes later
            p_max = p_min = close = open_price
            count = 0
        return open_price, p_max, p_min, close, count


class RowBlocks:
    """A period's rates table read as rows of plain numbers (``tolist``), a block of rows at a
    time. A bar read asks for a few rows near the clock, and the next one (a bar later) for
    nearly the same rows: each row is converted once instead of once per read (a structured
    slice's ``tolist`` costs several times a list slice). The last ``ROW_BLOCKS_KEPT`` blocks are
    kept, so memory stays bounded on long recordings; a window reaching beyond its first block
    is read straight from the table."""

    def __init__(self, table: np.ndarray, shift_s: int = 0) -> None:
        """``shift_s``: the rows' times are the table's less this many seconds (a reader that
        would shift each row read so, the adapter putting server times back in UTC, is handed
        rows shifted once per block instead)."""
        self.table = table
        self.size = len(table)
        self.shift_s = shift_s
        self._blocks: dict[int, list[tuple]] = {}  # block number -> its rows, oldest first

    def rows(self, start: int, stop: int) -> list[tuple]:
        """``table[start:stop].tolist()`` (a new list; the tuples are shared, being immutable),
        times less ``shift_s``."""
        number = start // ROW_BLOCK
        base = number * ROW_BLOCK
        if stop - base > ROW_BLOCK:
            return self._table_rows(start, stop)
        block = self._blocks.get(number)
        if block is None:
            block = self._convert(number)
        return block[start - base:stop - base]

    def _table_rows(self, start: int, stop: int) -> list[tuple]:
        return shifted_rows(table_rows(self.table[start:stop]), self.shift_s)

    def _convert(self, number: int) -> list[tuple]:
        block = self._table_rows(number * ROW_BLOCK, (number + 1) * ROW_BLOCK)
        if len(self._blocks) >= ROW_BLOCKS_KEPT:
            del self._blocks[next(iter(self._blocks))]
        self._blocks[number] = block
        return block


def table_rows(table: np.ndarray) -> list[tuple]:
    """``table.tolist()`` of a flat structured array (a rates table), built field by field: one
    ``tolist`` per field and a zip give the same tuples of the same plain numbers (a field's
    ``tolist`` converts each element as the row's does) in about two thirds of the time a
    row-by-row conversion takes."""
    return list(zip(*[table[name].tolist() for name in table.dtype.names]))


def _build_rates_table(agg: Aggregate, server_offset_ms: int) -> np.ndarray:
    table = np.empty(len(agg.time), dtype=RATES_DTYPE)
    table["time"] = (agg.time + server_offset_ms) // 1000
    table["open"] = agg.open
    table["high"] = agg.high
    table["low"] = agg.low
    table["close"] = agg.close
    table["tick_volume"] = agg.tick_volume
    table["spread"] = agg.spread
    table["real_volume"] = agg.real_volume
    return table


def _row_bytes(table: np.ndarray) -> memoryview:
    """The raw bytes of a table's rows, for ``_table_window`` (made once per table)."""
    return memoryview(table.view(np.uint8))


def _table_window(table: np.ndarray, data: memoryview, g0: int, g1: int, shift_ms: int,
                  period_ms: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Rows [g0, g1) (global indices, g1 > g0) of the endless repetition of one period's
    ``table`` (``data``: its ``_row_bytes``), copied, and the (first row, end row, virtual-time
    shift in ms) of each cycle's piece, for the caller to shift the time columns. The rows are
    copied as raw bytes: numpy copies a packed structured dtype field by field, many times slower."""
    rows, size = len(table), table.dtype.itemsize
    cycle = g0 // rows
    start = g0 - cycle * rows
    if g1 - cycle * rows <= rows:  # one cycle's piece (the usual case): a writable array over a byte copy
        out = np.frombuffer(bytearray(data[start * size:(start + g1 - g0) * size]), dtype=table.dtype)
        return out, [(0, g1 - g0, shift_ms + cycle * period_ms)]
    out = np.empty(g1 - g0, dtype=table.dtype)
    target = out.view(np.uint8)
    pieces = []
    row = 0
    for start, stop, shift in _cycle_pieces(rows, g0, g1, shift_ms, period_ms):
        target[row * size:(row + stop - start) * size] = data[start * size:stop * size]
        pieces.append((row, row + stop - start, shift))
        row += stop - start
    return out, pieces


def _cycle_pieces(rows: int, g0: int, g1: int, shift_ms: int, period_ms: int) -> list[tuple[int, int, int]]:
    """The rows [g0, g1) (global indices) of the endless repetition of a ``rows``-row period, as
    (first table row, end table row, virtual-time shift in ms) for each cycle they cross."""
    cycle = g0 // rows
    start = g0 - cycle * rows
    if g0 < g1 <= (cycle + 1) * rows:  # inside one cycle (the usual case)
        return [(start, g1 - cycle * rows, shift_ms + cycle * period_ms)]
    pieces = []
    while g0 < g1:
        stop = min(g1 - cycle * rows, rows)
        pieces.append((start, stop, shift_ms + cycle * period_ms))
        g0 += stop - start
        cycle, start = cycle + 1, 0
    return pieces


NEAR_STEPS = 2  # ``_bisect_near`` looks this far from its start before a full bisection


def _bisect_near(values: memoryview, x: int, lo: int) -> int:
    """``bisect_right(values, x, lo)`` for an answer expected within ``NEAR_STEPS`` of ``lo``
    (a clock moving a bar at a time): the search is narrowed to there when the element just
    beyond is greater than ``x`` (then so is every later one, ``values`` being sorted). Bounds
    by comparisons, not ``min``: a two-argument ``min`` costs more than the rest (once per instant)."""
    hi = lo + NEAR_STEPS
    size = len(values)
    if hi >= size:
        return bisect_right(values, x, lo, size)
    if values[hi] > x:
        return bisect_right(values, x, lo, hi)
    return bisect_right(values, x, hi + 1)


TICK_ROWS_MAX = 64  # ``ticks_between`` answers up to this many ticks as lists (``TickRows``)
SMALL_REDUCE = 16  # below this length, Python's max/min over a list beat two numpy reductions


def _read_only(view: np.ndarray) -> np.ndarray:
    """``view`` (of a recording every terminal and alias in the process shares) made read-only:
    a caller writing into it would rewrite the market for all of them; now it raises."""
    view.flags.writeable = False
    return view


def _max_min_last(values: np.ndarray) -> tuple[float, float, float]:
    """(max, min, last) of a non-empty float array as numpy's ``max()``/``min()``/``[-1]`` give them."""
    size = len(values)
    if size == 1:  # the one value is all three (a NaN too, as numpy's reductions give it)
        value = values.item(0)
        return value, value, value
    if size <= SMALL_REDUCE:
        items = values.tolist()
        total = sum(items)
        if total == total:  # no NaN (it would make the sum NaN): Python's max/min agree with numpy's
            return max(items), min(items), items[-1]
    return float(values.max()), float(values.min()), values.item(-1)


def months_from_days(daily: np.ndarray) -> np.ndarray:
    """MN1 bars (calendar months in server time) from D1 rates already in server time."""
    if not len(daily):
        return np.empty(0, dtype=RATES_DTYPE)
    months = daily["time"].astype("datetime64[s]").astype("datetime64[M]")
    keys = months.astype(np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(daily)]
    out = np.empty(len(starts), dtype=RATES_DTYPE)
    out["time"] = months[starts].astype("datetime64[s]").astype(np.int64)
    out["open"] = daily["open"][starts]
    out["high"] = np.maximum.reduceat(daily["high"], starts)
    out["low"] = np.minimum.reduceat(daily["low"], starts)
    out["close"] = daily["close"][ends - 1]
    out["tick_volume"] = np.add.reduceat(daily["tick_volume"], starts)
    out["spread"] = np.minimum.reduceat(daily["spread"], starts)
    out["real_volume"] = np.add.reduceat(daily["real_volume"], starts)
    return out
