"""Readers for recorded bar and quote-tick files: every format in ../shared/data except Binance trades.

All readers return a pandas DataFrame indexed by a UTC ``DatetimeIndex`` named ``time`` (one
choice for every format, so callers never guess whether time is a column or the index):

- bars: float columns ``open, high, low, close, tick_volume, spread, volume``. ``tick_volume`` is
  the number of ticks in the bar (NaN when the file does not record it), ``spread`` is in points
  (NaN when absent), ``volume`` is whatever traded volume the file records, in the file's own unit
  (lots, coins, quote currency...; NaN when absent).
- ticks: float columns ``bid, ask``; the index has millisecond precision.

Formats and their timezone rule (``tz_offset_hours`` means "file time = UTC + offset"; each
format has a default that the argument overrides):

- ``mt5_utc``: ``time_utc,time_epoch,open,high,low,close,tick_volume,spread,real_volume`` (an MT5
  copy_rates export with explicit UTC). Times: ``time_epoch``, UTC; no offset accepted.
- ``mt5``: ``time,open,high,low,close,tick_volume[,spread,real_volume]``, or the plain header whose
  ``volume`` is tick volume when ``format="mt5"`` is given. Times: broker SERVER time; pass the
  server's offset (default 0). ``time`` may be text or epoch seconds.
- ``histdata_nt``: ``YYYYMMDD HHMMSS;open;high;low;close;volume``, no header (HistData NinjaTrader
  M1). Times: EST = UTC-5 all year, no daylight saving (default -5). Volume is always 0.
- ``ohlc``: ``time|timestamp|datetime|date,open,high,low,close[,volume]``. Times: UTC (default 0);
  text, or epoch s/ms/ns judged by magnitude.
- ``histdata_ticks``: ``YYYYMMDD HHMMSSmmm,bid,ask,0``, no header. Times: EST (default -5).
- ``mt5_ticks``: ``time,bid,ask,last,volume,time_msc,flags,volume_real`` (an MT5 copy_ticks
  export). Times: ``time_msc``, server time (default 0).
- ``binance_book``: ``local_ts_ns,update_id,bid_price,bid_qty,ask_price,ask_qty`` (decoded Binance
  bookTicker capture). Times: the capture's receive clock, UTC nanoseconds.

``time,open,high,low,close,volume`` is ambiguous (a plain OHLC file or an MT5 export whose
``volume`` is tick volume in server time): auto-detection reads it as ``ohlc``; pass
``format="mt5"`` and the server offset for an MT5 export.

Bad data is never repaired: a row that cannot be parsed, a NaN, a non-positive price, high below
low, open or close outside the high-low range, a negative volume or spread, an ask below the
bid, or a time that goes backwards (bars: also a duplicate time) raises ``DataFileError`` naming
the file and the 1-based line. Quote ticks may share a millisecond (real feeds do), so ticks
reject only times that go backwards.

Parsed files are cached per process (keyed on path, size and modification time); each call
returns a copy, so callers may modify what they get.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd

BAR_COLUMNS = ("open", "high", "low", "close", "tick_volume", "spread", "volume")
TICK_COLUMNS = ("bid", "ask")
BAR_FORMATS = ("mt5_utc", "mt5", "histdata_nt", "ohlc")
TICK_FORMATS = ("histdata_ticks", "mt5_ticks", "binance_book")
EST_OFFSET_HOURS = -5.0  # HistData: Eastern Standard Time all year, no daylight saving
TIME_HEADERS = ("time", "timestamp", "datetime", "date")

_HISTDATA_BAR = re.compile(r"^\d{8} \d{6};")
_HISTDATA_TICK = re.compile(r"^\d{8} \d{9},")
_MISSING_WORDS = ("nan", "na", "n/a", "null", "none")
_PARSER_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


class DataFileError(ValueError):
    """A recorded data file is unreadable or holds bad data; names the file and the line."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------------------------
# public API

def read_bars(path: Path | str, tz_offset_hours: float | None = None, *,
              format: str | None = None) -> pd.DataFrame:
    """Bars from ``path`` with a UTC ``time`` index and float columns ``BAR_COLUMNS``.

    ``format`` is detected from the first line unless given (see the module docstring).
    ``tz_offset_hours`` overrides the format's default timezone (file time = UTC + offset);
    ``mt5_utc`` files carry UTC explicitly and accept only ``None`` or ``0``.
    """
    path = Path(path)
    fmt = format or detect_bar_format(path)
    if fmt not in BAR_FORMATS:
        raise ValueError(f"unknown bar format {fmt!r}; expected one of {', '.join(BAR_FORMATS)}")
    stat = _stat(path)
    frame = _read_bars_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns, fmt,
                              None if tz_offset_hours is None else float(tz_offset_hours))
    return frame.copy()


def read_ticks(path: Path | str, tz_offset_hours: float | None = None, *,
               format: str | None = None) -> pd.DataFrame:
    """Quote ticks from ``path`` with a UTC ``time`` index (ms precision) and ``bid, ask``."""
    path = Path(path)
    fmt = format or detect_tick_format(path)
    if fmt not in TICK_FORMATS:
        raise ValueError(f"unknown tick format {fmt!r}; expected one of {', '.join(TICK_FORMATS)}")
    stat = _stat(path)
    frame = _read_ticks_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns, fmt,
                               None if tz_offset_hours is None else float(tz_offset_hours))
    return frame.copy()


def detect_bar_format(path: Path | str) -> str:
    """The bar format of ``path`` judged from its first line (see the module docstring)."""
    path = Path(path)
    first = _first_line(path)
    if _HISTDATA_BAR.match(first):
        return "histdata_nt"
    columns = _header_columns(first)
    if "time_utc" in columns or "time_epoch" in columns:
        return "mt5_utc"
    if not {"open", "high", "low", "close"} <= set(columns):
        raise DataFileError(path, 1, f"not a recognised bar file: header {first[:120]!r} lacks "
                                     "open/high/low/close and is not HistData (YYYYMMDD HHMMSS;...)")
    if _time_column(columns) is None:
        raise DataFileError(path, 1, f"no time column in header {first[:120]!r}; expected one of "
                                     f"{', '.join(TIME_HEADERS)}")
    if "tick_volume" in columns:
        return "mt5"
    return "ohlc"


def detect_tick_format(path: Path | str) -> str:
    """The tick format of ``path`` judged from its first line (see the module docstring)."""
    path = Path(path)
    first = _first_line(path)
    if _HISTDATA_TICK.match(first):
        return "histdata_ticks"
    columns = _header_columns(first)
    if "time_msc" in columns and "bid" in columns and "ask" in columns:
        return "mt5_ticks"
    if "local_ts_ns" in columns and "bid_price" in columns:
        return "binance_book"
    raise DataFileError(path, 1, f"not a recognised tick file: first line {first[:120]!r}")


# --------------------------------------------------------------------------------------------
# bars

@functools.lru_cache(maxsize=32)
def _read_bars_cached(path_str: str, size: int, mtime_ns: int, fmt: str,
                      tz_offset_hours: float | None) -> pd.DataFrame:
    path = Path(path_str)
    if fmt == "histdata_nt":
        offset = EST_OFFSET_HOURS if tz_offset_hours is None else tz_offset_hours
        raw = _read_table(path, sep=";", header=None,
                          names=["time", "open", "high", "low", "close", "volume"])
        times = _parse_times(path, raw["time"], 0, "%Y%m%d %H%M%S", offset)
        frame = _numeric_frame(path, raw, 0, {"open": "open", "high": "high", "low": "low",
                                              "close": "close", "volume": "volume"})
        frame["tick_volume"] = np.nan
        frame["spread"] = np.nan
    else:
        raw = _read_table(path, sep=",", header=0)
        raw.columns = [str(c).strip().lower() for c in raw.columns]
        if fmt == "mt5_utc":
            if tz_offset_hours not in (None, 0.0):
                raise ValueError(f"{path}: mt5_utc files are in UTC; tz_offset_hours must be None or 0")
            if "time_epoch" in raw.columns:
                times = _parse_epoch(path, raw["time_epoch"], 1, unit="s")
            else:
                times = _parse_times(path, raw["time_utc"], 1, None, 0.0)
            mapping = {"open": "open", "high": "high", "low": "low", "close": "close",
                       "tick_volume": "tick_volume", "spread": "spread", "real_volume": "volume"}
        else:
            offset = 0.0 if tz_offset_hours is None else tz_offset_hours
            time_col = _time_column(list(raw.columns))
            if time_col is None:
                raise DataFileError(path, 1, "no time column")
            times = _parse_time_column(path, raw[time_col], 1, offset)
            mapping = {"open": "open", "high": "high", "low": "low", "close": "close"}
            if fmt == "mt5":
                mapping["tick_volume" if "tick_volume" in raw.columns else "volume"] = "tick_volume"
                mapping["spread"] = "spread"
                mapping["real_volume"] = "volume"
            else:
                mapping["volume"] = "volume"
        frame = _numeric_frame(path, raw, 1, mapping)
    frame.index = pd.DatetimeIndex(times, name="time")
    frame = frame.reindex(columns=list(BAR_COLUMNS)).astype("float64")
    _validate_bars(path, frame, header_lines=0 if fmt == "histdata_nt" else 1)
    return frame


def _validate_bars(path: Path, frame: pd.DataFrame, header_lines: int) -> None:
    o, h, l, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    checks: list[tuple[np.ndarray, str]] = [
        (np.isnan(o) | np.isnan(h) | np.isnan(l) | np.isnan(c), "missing price (NaN)"),
        ((o <= 0) | (h <= 0) | (l <= 0) | (c <= 0), "non-positive price"),
        (h < l, "high below low"),
        ((o > h) | (o < l) | (c > h) | (c < l), "open or close outside the high-low range"),
    ]
    for column in ("tick_volume", "spread", "volume"):
        values = frame[column].to_numpy()
        checks.append((values < 0, f"negative {column}"))
    _raise_first(path, checks, header_lines, frame.index, len(frame), strict_time=True)


# --------------------------------------------------------------------------------------------
# ticks

@functools.lru_cache(maxsize=16)
def _read_ticks_cached(path_str: str, size: int, mtime_ns: int, fmt: str,
                       tz_offset_hours: float | None) -> pd.DataFrame:
    path = Path(path_str)
    if fmt == "histdata_ticks":
        offset = EST_OFFSET_HOURS if tz_offset_hours is None else tz_offset_hours
        raw = _read_table(path, sep=",", header=None, names=["time", "bid", "ask", "volume"])
        times = _parse_times(path, raw["time"], 0, "%Y%m%d %H%M%S%f", offset)
        frame = _numeric_frame(path, raw, 0, {"bid": "bid", "ask": "ask"})
        header_lines = 0
    elif fmt == "mt5_ticks":
        offset = 0.0 if tz_offset_hours is None else tz_offset_hours
        raw = _read_table(path, sep=",", header=0)
        raw.columns = [str(c).strip().lower() for c in raw.columns]
        times = _parse_epoch(path, raw["time_msc"], 1, unit="ms", offset_hours=offset)
        frame = _numeric_frame(path, raw, 1, {"bid": "bid", "ask": "ask"})
        header_lines = 1
    else:  # binance_book: the capture's local receive clock, UTC nanoseconds
        if tz_offset_hours not in (None, 0.0):
            raise ValueError(f"{path}: Binance captures are in UTC; tz_offset_hours must be None or 0")
        raw = _read_table(path, sep=",", header=0)
        raw.columns = [str(c).strip().lower() for c in raw.columns]
        times = _parse_epoch(path, raw["local_ts_ns"], 1, unit="ns")
        frame = _numeric_frame(path, raw, 1, {"bid_price": "bid", "ask_price": "ask"})
        header_lines = 1
    frame.index = pd.DatetimeIndex(times, name="time").as_unit("ms") if len(times) else \
        pd.DatetimeIndex(times, name="time")
    frame = frame.reindex(columns=list(TICK_COLUMNS)).astype("float64")
    bid, ask = frame["bid"].to_numpy(), frame["ask"].to_numpy()
    checks = [
        (np.isnan(bid) | np.isnan(ask), "missing price (NaN)"),
        ((bid <= 0) | (ask <= 0), "non-positive price"),
        (ask < bid, "ask below bid"),
    ]
    _raise_first(path, checks, header_lines, frame.index, len(frame), strict_time=False)
    return frame


# --------------------------------------------------------------------------------------------
# shared parsing helpers

def _stat(path: Path):
    try:
        return path.stat()
    except FileNotFoundError:
        raise DataFileError(path, None, "file not found") from None


def _first_line(path: Path) -> str:
    _stat(path)
    with open(path, "r", encoding="utf-8-sig", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return line.strip()
    raise DataFileError(path, None, "file is empty")


def _header_columns(line: str) -> list[str]:
    return [part.strip().lower() for part in line.split(",")]


def _time_column(columns: list[str]) -> str | None:
    for name in TIME_HEADERS:
        if name in columns:
            return name
    return None


def _read_table(path: Path, sep: str, header: int | None, names: list[str] | None = None) -> pd.DataFrame:
    """Everything as text first: a bad cell then becomes a located error, not a silent NaN."""
    try:
        raw = pd.read_csv(path, sep=sep, header=header, names=names, dtype=str,
                          skip_blank_lines=False, keep_default_na=False, encoding="utf-8-sig",
                          engine="c")
    except pd.errors.ParserError as exc:
        match = _PARSER_LINE.search(str(exc))
        if match:
            expected, line, saw = (int(g) for g in match.groups())
            raise DataFileError(path, line, f"expected {expected} fields, found {saw}") from None
        raise DataFileError(path, None, f"cannot parse: {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataFileError(path, None, "file is empty") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, None, f"not UTF-8 text ({exc.reason})") from None
    if names is None and raw.shape[1] < 2:
        raise DataFileError(path, 1, "expected comma-separated columns")
    return raw


def _line_of(row: int, header_lines: int) -> int:
    return row + 1 + header_lines


def _parse_times(path: Path, column: pd.Series, header_lines: int, fmt: str | None,
                 offset_hours: float) -> pd.DatetimeIndex:
    text = column.astype(str).str.strip()
    if fmt is None:
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    else:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce").dt.tz_localize("UTC")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFileError(path, _line_of(row, header_lines),
                            f"unparsable time {text.iloc[row]!r}" if text.iloc[row] else "empty line")
    index = pd.DatetimeIndex(parsed)
    if offset_hours:
        index = index - pd.Timedelta(hours=offset_hours)
    return index


def _parse_time_column(path: Path, column: pd.Series, header_lines: int,
                       offset_hours: float) -> pd.DatetimeIndex:
    """A time column of datetime text or epoch numbers (s, ms or ns judged by magnitude)."""
    text = column.astype(str).str.strip()
    if not len(text) or np.isnan(pd.to_numeric(text.iloc[:1], errors="coerce").to_numpy(dtype="float64")[0]):
        numeric = None  # the first time is no number: not an epoch column (a whole column's attempt saved)
    else:
        numeric = pd.to_numeric(text, errors="coerce")
    if numeric is not None and numeric.notna().all():
        magnitude = float(numeric.abs().max())
        unit = "ns" if magnitude > 1e17 else "ms" if magnitude > 1e11 else "s"
        return _parse_epoch(path, column, header_lines, unit=unit, offset_hours=offset_hours)
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFileError(path, _line_of(row, header_lines),
                            f"unparsable time {text.iloc[row]!r}" if text.iloc[row] else "empty line")
    index = pd.DatetimeIndex(parsed)
    index = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    if offset_hours:
        index = index - pd.Timedelta(hours=offset_hours)
    return index


def _parse_epoch(path: Path, column: pd.Series, header_lines: int, unit: str,
                 offset_hours: float = 0.0) -> pd.DatetimeIndex:
    text = column.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    bad = (numbers.isna() | (numbers < 0)).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFileError(path, _line_of(row, header_lines),
                            f"unparsable epoch time {text.iloc[row]!r}" if text.iloc[row] else "empty line")
    index = pd.DatetimeIndex(pd.to_datetime(numbers.astype("int64"), unit=unit, utc=True))
    if offset_hours:
        index = index - pd.Timedelta(hours=offset_hours)
    return index


def _numeric_frame(path: Path, raw: pd.DataFrame, header_lines: int,
                   mapping: dict[str, str]) -> pd.DataFrame:
    """Columns renamed per ``mapping`` (file name -> our name) and converted to float.

    A cell that is present but not a number is an error at its line; an empty or NaN cell is
    NaN and the validation that follows reports it as missing.
    """
    out: dict[str, np.ndarray] = {}
    for source, target in mapping.items():
        if source not in raw.columns:
            continue
        # Usually every cell is a number: parsed as written (the parser skips the spaces that
        # strip() would remove), no missing cell to look for. Otherwise the cells are stripped and
        # each problem located.
        values = pd.to_numeric(raw[source].to_numpy(dtype=object), errors="coerce")
        kind = values.dtype.kind
        if kind in "iu" or (kind == "f" and not np.isnan(values).any()):
            out[target] = values.astype("float64")
            continue
        text = raw[source].astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce")
        missing = (text == "") | text.str.lower().isin(_MISSING_WORDS)
        unparsable = (values.isna() & ~missing).to_numpy()
        if unparsable.any():
            row = int(np.argmax(unparsable))
            raise DataFileError(path, _line_of(row, header_lines),
                                f"{source}: {text.iloc[row]!r} is not a number")
        out[target] = values.to_numpy(dtype="float64")
    return pd.DataFrame(out)


def _raise_first(path: Path, checks: list[tuple[np.ndarray, str]], header_lines: int,
                 index: pd.DatetimeIndex, rows: int, strict_time: bool) -> None:
    """Raise for the earliest bad row among the value checks and the time-order check."""
    first_row: int | None = None
    problem = ""
    for mask, text in checks:
        if mask.any():
            row = int(np.argmax(mask))
            if first_row is None or row < first_row:
                first_row, problem = row, text
    if rows > 1:
        stamps = index.asi8
        step = np.diff(stamps)
        bad = step <= 0 if strict_time else step < 0
        if bad.any():
            row = int(np.argmax(bad)) + 1
            if first_row is None or row < first_row:
                first_row = row
                kind = "duplicate time" if step[row - 1] == 0 else "time goes backwards"
                problem = f"{kind}: {index[row].isoformat()} after {index[row - 1].isoformat()}"
    if first_row is not None:
        raise DataFileError(path, _line_of(first_row, header_lines), problem)
