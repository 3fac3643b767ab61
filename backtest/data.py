"""What a backtest replays: recorded files as symbols, grouped into segments of market time.

Inputs (``--data``, any mix):
- a folder holding ``sim_symbols.json`` (like the bundled ``data/``): its symbols and their feed
  files, with the contract specs it defines;
- a plain folder: every ``*.csv``/``*.txt`` file in it (recursively) that is a bar or quote-tick
  file; Binance trade files are skipped with a note (they carry no bid/ask to fill orders at);
- a file, optionally named ``SYMBOL=PATH``. Without a name the symbol is the bundled spec whose
  feed is a file of that name, else the leading code of the file name (``XAUUSD_M1_...csv`` ->
  ``XAUUSD``).

Every symbol needs a contract specification (digits, tick value, contract size, commission...):
the bundled ``data/sim_symbols.json`` or ``--specs FILE`` in the same format.

Timezones: every time inside the backtest is UTC. A file's own clock is converted by its reader
(``feeds/readers.py``): HistData files are EST (UTC-5, no daylight saving) by default, MT5
exports are broker server time (pass ``--utc-offset``; the default 0 reads them as UTC), plain
OHLC files are UTC. ``--utc-offset`` (file time = UTC + offset) and ``--format`` apply to files
given directly or found in plain folders, never to a spec folder's feeds (their spec says).

Segments: the simulated terminal replays a recording on its recorded dates when its clock
starts within the recording's first week (see ``execution/simterminal/market.py``). Symbols
whose recordings overlap in time run together in one segment (one account, shared risk limits),
so their first bars must lie within 7 days of each other. Recordings that do not overlap run as
consecutive segments in time order, each on its own terminal; the account balance carries over.
The terminal replays each recording once, whole (``feed.replay = "once"``: its span rounded up
to whole weeks; the rest of the last week is a closed market the driver never steps into).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from execution.simterminal.symbols import SpecFileError, SymbolSpec, load_symbol_specs
from feeds.readers import (BAR_FORMATS, TICK_FORMATS, DataFileError, detect_bar_format, detect_tick_format,
                           read_bars, read_ticks)
from feeds.trade_readers import TradeFileError
from feeds.trade_readers import detect_format as detect_trade_format

PROJECT_DIR = Path(__file__).resolve().parent.parent
BUNDLED_SPECS = PROJECT_DIR / "data" / "sim_symbols.json"
SPEC_FILE_NAME = "sim_symbols.json"
DATA_SUFFIXES = (".csv", ".txt")
WEEK_S = 7 * 86_400
MAX_FIRST_SPREAD_S = WEEK_S - 60  # first bars of one segment: within a week (see module doc)
TICK_STEP_S = 5  # the live monitors' cadence: with recorded ticks the driver steps every 5 s
_SYMBOL_CODE = re.compile(r"^([A-Za-z][A-Za-z0-9]{1,15}?)(?:[_\-. ]|$)")
_NAMED = re.compile(r"^([A-Za-z0-9._#-]{2,32})=(.+)$")


class BacktestDataError(ValueError):
    """The data given to a backtest cannot be used as asked; the message says why and how."""


@dataclass(frozen=True)
class FeedPlan:
    """One symbol's recording, read and checked, with the times the driver steps at."""

    symbol: str
    path: Path
    kind: str  # "bars" or "ticks"
    format: str
    utc_offset_hours: float | None  # as passed to the reader (None: the format's default)
    bar_seconds: int  # the recorded bar length (ticks: 60, the terminal builds M1 bars)
    first_s: int  # UTC epoch seconds of the first recorded instant
    end_s: int  # end of the recording (last bar's close; ticks: last tick + 1 s)
    replay_end_s: int  # the terminal replays [first, replay_end) once (whole weeks)
    closes: np.ndarray  # int64 UTC epoch seconds at which the driver may step (bar closes)
    spec: dict[str, Any]  # the contract spec with its feed, JSON-ready
    notes: tuple[str, ...] = ()

    @property
    def first(self) -> datetime:
        return _utc(self.first_s)

    @property
    def end(self) -> datetime:
        return _utc(self.end_s)

    @property
    def step_length(self) -> int:
        """Seconds between two of its closes: the bar length, or the 5 s tick grid."""
        return self.bar_seconds if self.kind == "bars" else TICK_STEP_S

    @property
    def bars_not_replayed(self) -> int:
        """Bars (tick files: 5 s buckets) that begin at or after the replay end."""
        return int(np.count_nonzero(self.closes - self.step_length >= self.replay_end_s))


@dataclass
class Segment:
    """A stretch of market time replayed by one simulated terminal."""

    number: int
    feeds: list[FeedPlan]
    anchor_s: int  # the clock's start: the terminal anchors its replay here
    start_s: int  # the first step is at or after this
    liquidate_s: int  # open positions are closed here (inside the last replayed bar)
    steps: np.ndarray  # int64 UTC epoch seconds of the scheduled steps, ascending
    bars: dict[str, int] = field(default_factory=dict)  # per symbol: bars replayed in the window

    @property
    def symbols(self) -> list[str]:
        return [f.symbol for f in self.feeds]

    @property
    def duration_s(self) -> int:
        return max(0, self.liquidate_s - self.start_s)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


# --------------------------------------------------------------------------------------------
# finding the files

@dataclass(frozen=True)
class _Source:
    path: Path
    symbol: str | None  # named by the user or by a spec folder
    spec: SymbolSpec | None = None  # a spec folder's spec (its feed says format and offset)


def load_specs(path: Path) -> dict[str, SymbolSpec]:
    try:
        return load_symbol_specs(path)
    except SpecFileError as exc:
        raise BacktestDataError(str(exc)) from None


def _sources(entries: Sequence[str]) -> tuple[list[_Source], list[str]]:
    sources: list[_Source] = []
    notes: list[str] = []
    for entry in entries:
        named = _NAMED.match(entry)
        symbol, text = (named.group(1), named.group(2)) if named and not Path(entry).exists() else (None, entry)
        path = Path(text)
        if path.is_dir():
            if symbol:
                raise BacktestDataError(f"{entry}: a folder cannot be named; name single files (SYMBOL=FILE)")
            spec_file = path / SPEC_FILE_NAME
            if spec_file.is_file():
                for name, spec in load_specs(spec_file).items():
                    feed_path = Path(spec.feed.file)
                    sources.append(_Source(feed_path if feed_path.is_absolute() else path / feed_path, name, spec))
                continue
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
            if not files:
                raise BacktestDataError(f"{path}: no {' or '.join(DATA_SUFFIXES)} files in this folder")
            for file in files:
                if _is_trade_file(file):
                    notes.append(f"{file}: Binance trades (no bid/ask to fill orders at): not replayed")
                    continue
                sources.append(_Source(file, None))
        elif path.is_file():
            sources.append(_Source(path, symbol))
        else:
            raise BacktestDataError(f"{text}: no such file or folder")
    return sources, notes


def _is_trade_file(path: Path) -> bool:
    try:
        detect_bar_format(path)
        return False
    except DataFileError:
        pass
    try:
        detect_tick_format(path)
        return False
    except DataFileError:
        pass
    try:
        detect_trade_format(path)
        return True
    except TradeFileError:
        return False


def _symbol_for(source: _Source, known: dict[str, SymbolSpec]) -> str:
    if source.symbol:
        return source.symbol
    for name, spec in known.items():
        if Path(spec.feed.file).name == source.path.name:
            return name
    match = _SYMBOL_CODE.match(source.path.name)
    if not match:
        raise BacktestDataError(f"{source.path}: cannot tell the symbol from the file name; pass it as "
                                f"SYMBOL={source.path}")
    return match.group(1).upper()


# --------------------------------------------------------------------------------------------
# reading one feed

def resolve_feeds(entries: Sequence[str], symbols: Sequence[str] | None = None, *, fmt: str | None = None,
                  utc_offset_hours: float | None = None,
                  specs_path: Path | None = None) -> tuple[list[FeedPlan], list[str]]:
    """The feeds to replay and notes for the operator. Raises ``BacktestDataError`` for a usage
    problem and ``DataFileError`` (file and line) for a bad data file."""
    if fmt is not None and fmt not in BAR_FORMATS + TICK_FORMATS:
        raise BacktestDataError(f"--format {fmt!r}: expected one of {', '.join(BAR_FORMATS + TICK_FORMATS)}")
    known = load_specs(Path(specs_path) if specs_path else BUNDLED_SPECS)
    sources, notes = _sources(entries)
    wanted = [s.strip().upper() for s in symbols] if symbols else None
    feeds: dict[str, FeedPlan] = {}
    for source in sources:
        name = _symbol_for(source, known)
        if wanted is not None and name.upper() not in wanted:
            continue
        if name in feeds:
            raise BacktestDataError(f"symbol {name} comes from two files: {feeds[name].path} and {source.path}; "
                                    "name them apart (SYMBOL=FILE) or pick one with --symbols")
        feeds[name] = _plan_feed(name, source, known, fmt, utc_offset_hours)
    if wanted is not None:
        missing = [s for s in wanted if s not in {n.upper() for n in feeds}]
        if missing:
            raise BacktestDataError(f"--symbols {', '.join(missing)}: not in the data "
                                    f"(found {', '.join(sorted(feeds)) or 'nothing'})")
    if not feeds:
        raise BacktestDataError("no bar or tick files to replay in " + ", ".join(entries))
    return sorted(feeds.values(), key=lambda f: (f.first_s, f.symbol)), notes


def _plan_feed(name: str, source: _Source, known: dict[str, SymbolSpec], fmt: str | None,
               utc_offset_hours: float | None) -> FeedPlan:
    path = source.path.resolve()
    if source.spec is not None:  # a spec folder: its feed says how to read the file
        spec = source.spec
        kind, file_format, offset = spec.feed.kind, spec.feed.format, spec.feed.utc_offset_hours
    else:
        spec = known.get(name)
        if spec is None:
            raise BacktestDataError(
                f"{name} (from {source.path}): no contract specification (digits, tick value, contract size); "
                f"add it to a file in the format of data/sim_symbols.json and pass --specs FILE, or name the file "
                f"as one of {', '.join(sorted(known))} with SYMBOL=FILE")
        kind = "ticks" if (fmt in TICK_FORMATS) else "bars" if fmt else _kind_of(path)
        bundled = Path(spec.feed.file).name == path.name
        file_format = fmt or (spec.feed.format if bundled else None)
        offset = utc_offset_hours if utc_offset_hours is not None else (
            spec.feed.utc_offset_hours if bundled else None)
    notes: list[str] = []
    if kind == "bars":
        file_format = file_format or detect_bar_format(path)
        frame = read_bars(path, offset, format=file_format)
        times = frame.index.as_unit("s").asi8.astype(np.int64)
        if len(times) < 2:
            raise BacktestDataError(f"{path}: at least two bars are needed")
        steps, counts = np.unique(np.diff(times), return_counts=True)
        bar_s = int(steps[np.argmax(counts)])
        closes = times + bar_s
        end = int(closes[-1])
        if file_format == "mt5" and not offset:
            notes.append(f"{name}: {path.name} is an MT5 export in broker server time, read as UTC "
                         "(pass --utc-offset HOURS if the server is not on UTC)")
    else:
        file_format = file_format or detect_tick_format(path)
        frame = read_ticks(path, offset, format=file_format)
        ms = frame.index.as_unit("ms").asi8.astype(np.int64)
        if len(ms) < 2:
            raise BacktestDataError(f"{path}: at least two ticks are needed")
        times = -(-ms // 1000)  # whole seconds, rounded up: the clock must not start before the first tick
        bar_s = 60
        closes = (np.unique(ms // (TICK_STEP_S * 1000)) + 1) * TICK_STEP_S
        end = int(ms[-1] // 1000) + 1
    first = int(times[0])
    weeks = max(1, math.ceil((end - first) / WEEK_S))  # as execution.simterminal.market._period, "once"
    replay_end = min(end, first + weeks * WEEK_S)
    if bar_s > 60:
        notes.append(f"{name}: {bar_s // 60}-minute bars: micro_scalp and order_flow read M1 bars and cannot "
                     "trade it (range_scalp can)")
    spec_json = spec.model_dump(mode="json")
    spec_json["feed"] = {"kind": kind, "file": str(path), "format": file_format, "utc_offset_hours": offset,
                         "replay": "once"}
    plan = FeedPlan(symbol=name, path=path, kind=kind, format=file_format, utc_offset_hours=offset,
                    bar_seconds=bar_s, first_s=first, end_s=end, replay_end_s=replay_end,
                    closes=closes.astype(np.int64), spec=spec_json)
    lost = plan.bars_not_replayed
    if lost:
        unit = "bars" if kind == "bars" else f"{TICK_STEP_S}-second stretches of ticks"
        notes.append(f"{name}: the last {lost} {unit} ({_utc(replay_end):%Y-%m-%d %H:%M} to {_utc(end):%Y-%m-%d %H:%M} "
                     f"UTC) are not replayed: the simulated terminal replays a recording over whole weeks "
                     f"({weeks} here)")
    return FeedPlan(**{**plan.__dict__, "notes": tuple(notes)})


def _kind_of(path: Path) -> str:
    try:
        detect_bar_format(path)
        return "bars"
    except DataFileError as bar_error:
        try:
            detect_tick_format(path)
            return "ticks"
        except DataFileError:
            raise bar_error from None


# --------------------------------------------------------------------------------------------
# segments and the step schedule

def plan_segments(feeds: Sequence[FeedPlan], date_from: datetime | None = None,
                  date_to: datetime | None = None, step_seconds: int | None = None) -> list[Segment]:
    """Group feeds whose recordings overlap; one segment per group inside [from, to).

    Steps are the bar closes; with ``step_seconds`` also every ``step_seconds`` inside each bar
    (the live monitors' cadence), when it divides the bar length."""
    groups: list[list[FeedPlan]] = []
    for feed in sorted(feeds, key=lambda f: f.first_s):
        if groups and feed.first_s < max(f.replay_end_s for f in groups[-1]):
            groups[-1].append(feed)
        else:
            groups.append([feed])
    lo = None if date_from is None else int(math.floor(date_from.timestamp()))
    hi = None if date_to is None else int(math.floor(date_to.timestamp()))
    segments: list[Segment] = []
    for group in groups:
        firsts = [f.first_s for f in group]
        if max(firsts) - min(firsts) > MAX_FIRST_SPREAD_S:
            early = min(group, key=lambda f: f.first_s)
            late = max(group, key=lambda f: f.first_s)
            raise BacktestDataError(
                f"{early.symbol} starts {early.first:%Y-%m-%d %H:%M} and {late.symbol} "
                f"{late.first:%Y-%m-%d %H:%M} UTC: recordings replayed together must start within 7 days of each "
                "other (the simulated terminal aligns them by whole weeks); backtest them in separate runs")
        segment = _segment(len(segments) + 1, group, lo, hi, step_seconds)
        if segment is not None:
            segments.append(segment)
    if not segments:
        spans = ", ".join(f"{f.symbol} {f.first:%Y-%m-%d} to {_utc(f.replay_end_s):%Y-%m-%d}" for f in feeds)
        raise BacktestDataError(f"no data to replay between --from and --to (the data covers {spans})")
    return segments


def _grid(feed: FeedPlan, step_seconds: int | None) -> np.ndarray:
    """The feed's step times: its closes, or every ``step_seconds`` inside each of its bars."""
    length = feed.step_length
    if not step_seconds or step_seconds >= length or length % step_seconds:
        return feed.closes
    back = np.arange(length - step_seconds, -1, -step_seconds, dtype=np.int64)  # ..., 5, 0 s before the close
    return (feed.closes[:, None] - back[None, :]).ravel()


def _segment(number: int, group: list[FeedPlan], lo: int | None, hi: int | None,
             step_seconds: int | None = None) -> Segment | None:
    anchor = max(f.first_s for f in group)
    start = anchor if lo is None else max(anchor, lo)
    end = min(f.replay_end_s for f in group)
    if hi is not None:
        end = min(end, hi)
    last_close = None
    for feed in group:  # the last bar that closes inside the window, over all feeds
        inside = feed.closes[(feed.closes > start) & (feed.closes <= end)]
        if len(inside) and (last_close is None or int(inside[-1]) > last_close):
            last_close = int(inside[-1])
    if last_close is None:
        return None
    liquidate = last_close - 1  # inside the last bar: its market is open
    grids = [_grid(f, step_seconds) for f in group]
    steps = np.unique(np.concatenate([g[(g >= start) & (g < liquidate)] for g in grids]))
    if not len(steps):
        return None
    bars = {}
    for feed in group:
        if feed.kind == "bars":
            bars[feed.symbol] = int(np.count_nonzero((feed.closes > start) & (feed.closes <= last_close)))
        else:  # minutes with ticks
            minutes = np.unique(feed.closes[(feed.closes > start) & (feed.closes <= last_close)] // 60)
            bars[feed.symbol] = int(len(minutes))
    return Segment(number, list(group), anchor, start, liquidate, steps.astype(np.int64), bars)


def write_specs(feeds: Sequence[FeedPlan], path: Path) -> Path:
    """The symbols spec file the run's terminals read (feed files as absolute paths)."""
    import json

    from state.store import atomic_write_json
    data = {"schema_version": 1,
            "note": "written by the backtest: contract specs with the feed files of this run",
            "symbols": {f.symbol: f.spec for f in feeds}}
    json.dumps(data)  # fail here, not half-way, if something is not JSON
    atomic_write_json(path, data, keep_backup=False)
    return path
