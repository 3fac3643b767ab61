"""Readers for recorded Binance trade files, all returning one typed structure.

Supported layouts (detected from the header, or from the column count when there is none):

- ``usdm_agg``: USD-M futures aggTrades data dump,
  ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker``
  (the data.binance.vision files carry this header; older ones have none).
- ``spot_agg``: spot aggTrades data dump: the same plus ``is_best_match`` (8 columns, no header).
  Spot timestamps are milliseconds before 2025 and microseconds from 2025-01-01: the unit is
  detected per file from the magnitude and converted to milliseconds.
- ``spot_trade_capture``: decoded spot ``@trade`` websocket capture (the file in ../shared/data),
  ``local_ts_ns,event_time_ms,trade_id,price,qty,trade_time_ms,is_buyer_maker``; the trade time
  (``T``) is used, the local receive clock is not.

Files may be plain, ``.gz`` or single-member ``.zip`` (the data dump ships zips). Parsing is done
by pandas for speed; when pandas refuses the file or a value is out of range, a line-by-line
pass finds the first bad line so the error names the file, the line and the problem.
"""
from __future__ import annotations

import gzip
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np
import pandas as pd

MICROSECOND_THRESHOLD = 10**14  # epoch ms stays below this until the year 5138; epoch µs is above
TRUE_WORDS = ("true", "True", "TRUE")
FALSE_WORDS = ("false", "False", "FALSE")


class TradeFileError(ValueError):
    """A trade file could not be read; the message names the file and, where known, the line."""


@dataclass(frozen=True)
class TradeFormat:
    """Where the five needed fields sit in one layout (column indices)."""

    name: str
    columns: int
    id_col: int
    price_col: int
    qty_col: int
    time_col: int
    maker_col: int


FORMATS: dict[str, TradeFormat] = {
    "usdm_agg": TradeFormat("usdm_agg", 7, 0, 1, 2, 5, 6),
    "spot_agg": TradeFormat("spot_agg", 8, 0, 1, 2, 5, 6),
    "spot_trade_capture": TradeFormat("spot_trade_capture", 7, 2, 3, 4, 5, 6),
}


@dataclass(frozen=True)
class TradeArrays:
    """Trades as parallel numpy arrays, in file order.

    ``time_ms`` is UTC epoch milliseconds; ``is_buyer_maker`` true means the taker sold
    (sell volume, negative delta). ``ids`` are aggregate ids for aggTrades files and trade ids
    for the trade capture; either way they are consecutive on a complete tape.
    """

    ids: np.ndarray  # int64
    price: np.ndarray  # float64
    qty: np.ndarray  # float64
    time_ms: np.ndarray  # int64
    is_buyer_maker: np.ndarray  # bool
    source: str = ""
    format: str = ""

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with a UTC ``time`` column, for analysis and tests."""
        return pd.DataFrame({
            "id": self.ids,
            "price": self.price,
            "qty": self.qty,
            "time_ms": self.time_ms,
            "time": pd.to_datetime(self.time_ms, unit="ms", utc=True),
            "is_buyer_maker": self.is_buyer_maker,
        })


def _open_text(path: Path) -> IO[str]:
    """Open a plain, gzip or single-member zip file as text."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    if suffix == ".zip":
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            archive.close()
            raise TradeFileError(f"{path}: a zip must hold exactly one file, found {len(members)}")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def _first_line(path: Path) -> str:
    with _open_text(path) as handle:
        for line in handle:
            if line.strip():
                return line.strip().lstrip("\ufeff")
    raise TradeFileError(f"{path}: the file holds no trades")


def detect_format(path: Path) -> tuple[TradeFormat, bool]:
    """(layout, has_header) from the first non-blank line."""
    path = Path(path)
    first = _first_line(path)
    cells = [c.strip().lower() for c in first.split(",")]
    has_header = any(c and not _looks_numeric(c) and c not in ("true", "false") for c in cells)
    if has_header:
        if "agg_trade_id" in cells:
            name = "spot_agg" if len(cells) == 8 else "usdm_agg"
            fmt = FORMATS[name]
            if len(cells) != fmt.columns:
                raise TradeFileError(f"{path}: line 1: aggTrades header has {len(cells)} columns, "
                                     "expected 7 (USD-M) or 8 (spot)")
            return fmt, True
        if cells == ["local_ts_ns", "event_time_ms", "trade_id", "price", "qty", "trade_time_ms",
                     "is_buyer_maker"]:
            return FORMATS["spot_trade_capture"], True
        raise TradeFileError(f"{path}: line 1: unknown header {first!r}; expected a Binance aggTrades "
                             "dump or the decoded @trade capture")
    if len(cells) == 7:
        return FORMATS["usdm_agg"], False
    if len(cells) == 8:
        return FORMATS["spot_agg"], False
    raise TradeFileError(f"{path}: line 1: {len(cells)} columns without a header; expected 7 "
                         "(USD-M aggTrades) or 8 (spot aggTrades)")


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def read_trades(path: str | Path) -> TradeArrays:
    """Read a Binance trade file (layouts in the module docstring) into ``TradeArrays``.

    Raises ``TradeFileError`` naming the file and line on a malformed row or value.
    """
    path = Path(path)
    if not path.is_file():
        raise TradeFileError(f"{path}: no such file")
    fmt, has_header = detect_format(path)
    try:
        arrays = _read_fast(path, fmt, has_header)
    except (ValueError, pd.errors.ParserError, OverflowError) as exc:
        _raise_first_bad_line(path, fmt, has_header)
        raise TradeFileError(f"{path}: unreadable trades file: {exc}") from None
    if not _values_valid(arrays):
        _raise_first_bad_line(path, fmt, has_header)
        raise TradeFileError(f"{path}: invalid values (no single line identified)")
    ids, price, qty, time_raw, maker = arrays
    time_ms = _to_milliseconds(time_raw)
    return TradeArrays(ids, price, qty, time_ms, maker, str(path), fmt.name)


def _read_fast(path: Path, fmt: TradeFormat, has_header: bool):
    names = [f"c{i}" for i in range(fmt.columns)]
    frame = pd.read_csv(
        # every column is parsed (no usecols): pandas would silently ignore extra fields otherwise
        path, header=None, names=names, skiprows=1 if has_header else 0,
        dtype={names[fmt.id_col]: "int64", names[fmt.price_col]: "float64", names[fmt.qty_col]: "float64",
               names[fmt.time_col]: "int64", names[fmt.maker_col]: bool},
        true_values=list(TRUE_WORDS), false_values=list(FALSE_WORDS), engine="c",
        compression="infer", on_bad_lines="error", skip_blank_lines=True)
    if frame.shape[0] == 0:
        raise TradeFileError(f"{path}: the file holds no trades")
    return (frame[names[fmt.id_col]].to_numpy(np.int64), frame[names[fmt.price_col]].to_numpy(np.float64),
            frame[names[fmt.qty_col]].to_numpy(np.float64), frame[names[fmt.time_col]].to_numpy(np.int64),
            frame[names[fmt.maker_col]].to_numpy(bool))


def _values_valid(arrays) -> bool:
    ids, price, qty, time_raw, _ = arrays
    return bool(np.all(ids >= 0) and np.all(np.isfinite(price)) and np.all(price > 0)
                and np.all(np.isfinite(qty)) and np.all(qty > 0) and np.all(time_raw > 0))


def _to_milliseconds(time_raw: np.ndarray) -> np.ndarray:
    """Spot dumps switched to microseconds in 2025; anything above 1e14 is microseconds."""
    if time_raw.size and int(time_raw.max()) >= MICROSECOND_THRESHOLD:
        return time_raw // 1000
    return time_raw


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def check_line(cells: list[str], fmt: TradeFormat) -> str | None:
    """Why one data row is invalid, or None when it is fine (the rules the fast path applies)."""
    if len(cells) != fmt.columns:
        return f"{len(cells)} columns, expected {fmt.columns}"
    try:
        trade_id = int(cells[fmt.id_col])
    except ValueError:
        return f"trade id {cells[fmt.id_col]!r} is not an integer"
    if trade_id < 0:
        return f"trade id {trade_id} is negative"
    for label, col in (("price", fmt.price_col), ("quantity", fmt.qty_col)):
        try:
            value = float(cells[col])
        except ValueError:
            return f"{label} {cells[col]!r} is not a number"
        if not math.isfinite(value) or value <= 0:
            return f"{label} must be a positive number, got {cells[col]!r}"
    try:
        stamp = int(cells[fmt.time_col])
    except ValueError:
        return f"time {cells[fmt.time_col]!r} is not an integer epoch time"
    if stamp <= 0:
        return f"time {stamp} is not a positive epoch time"
    if cells[fmt.maker_col].strip() not in TRUE_WORDS + FALSE_WORDS:
        return f"is_buyer_maker {cells[fmt.maker_col]!r} is not true/false"
    return None


def _raise_first_bad_line(path: Path, fmt: TradeFormat, has_header: bool) -> None:
    header_pending = has_header
    for number, line in _iter_lines(path):
        if not line.strip():
            continue
        if header_pending:
            header_pending = False
            continue
        problem = check_line([c.strip() for c in line.split(",")], fmt)
        if problem:
            raise TradeFileError(f"{path}: line {number}: {problem}")
