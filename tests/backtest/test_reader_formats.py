"""Every recorded-data format in ../shared/data, read from real lines, and a malformed copy of each.

tests/sim/test_readers.py and tests/order_flow/test_trade_readers.py cover the formats and
their malformed rows in depth (plain OHLC, HistData M1 and ticks, USD-M aggTrades); this file
adds a malformed file for the formats those leave out (MT5 server-time export, MT5 UTC export,
MT5 tick export, Binance bookTicker capture, Binance @trade capture) and states each format's
timezone rule once more, on its first real line.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from feeds.readers import DataFileError, read_bars, read_ticks
from feeds.trade_readers import TradeFileError, read_trades
from tests.backtest.conftest import EUR_M1, EUR_TICKS, SPOT_TRADES, XAU_M1, XAU_M5, real_file

# Real lines of ../shared/data files not bundled in data/ (also quoted in tests/sim/test_readers.py)
MT5_UTC = ("time_utc,time_epoch,open,high,low,close,tick_volume,spread,real_volume\n"
           "2025-01-01T00:00:00Z,1735689600,93440.45,93570.9,93329.67,93507.1,2981,2898,0\n"
           "2025-01-01T00:15:00Z,1735690500,93509.47,93762.58,93457.24,93627.14,2882,2898,0\n"
           "2025-01-01T00:30:00Z,1735691400,93627.15,93836.11,93619.72,93745.52,3426,2898,0\n")
BOOK = ("local_ts_ns,update_id,bid_price,bid_qty,ask_price,ask_qty\n"
        "1723161254087891268,50093239212,61837.63000000,3.78826000,61837.64000000,1.54698000\n"
        "1723161254116723068,50093239219,61837.63000000,3.78826000,61837.64000000,1.60520000\n"
        "1723161254180571167,50093239225,61837.63000000,3.78826000,61837.64000000,1.92853000\n")
MT5_TICKS = ("time,bid,ask,last,volume,time_msc,flags,volume_real\n"
             "1767614400,1.13284,1.13286,0.0,0,1767614400000,6,0.0\n"
             "1767614400,1.13285,1.13287,0.0,0,1767614400250,6,0.0\n"
             "1767614400,1.13286,1.13288,0.0,0,1767614400500,6,0.0\n")


def _head(path: Path, lines: int) -> str:
    return "".join(real_file(path).read_text(encoding="utf-8").splitlines(keepends=True)[:lines])


def _corrupt(text: str, line: int, old: str, new: str) -> str:
    lines = text.splitlines(keepends=True)
    assert old in lines[line - 1], (old, lines[line - 1])
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    return "".join(lines)


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize("name, text, kwargs, first_utc", [
    ("ohlc (UTC)", lambda: _head(XAU_M1, 4), {}, "2023-04-16 22:00"),
    ("histdata_nt (EST, UTC-5)", lambda: _head(EUR_M1, 3), {}, "2015-02-01 22:00"),
    ("mt5 (server time, here UTC+3)", lambda: _head(XAU_M5, 4), {"format": "mt5", "tz_offset_hours": 3},
     "2026-04-24 05:15"),
    ("mt5_utc (UTC epoch)", lambda: MT5_UTC, {}, "2025-01-01 00:00"),
])
def test_bar_formats_read_their_first_real_line_in_utc(tmp_path, name, text, kwargs, first_utc):
    path = tmp_path / "bars.csv"
    path.write_text(text(), encoding="utf-8")
    assert read_bars(path, **kwargs).index[0] == _utc(first_utc), name


@pytest.mark.parametrize("name, text, kwargs, line, old, new, problem", [
    ("mt5", lambda: _head(XAU_M5, 4), {"format": "mt5", "tz_offset_hours": 3}, 3, "4676.63", "4675.00",
     "open or close outside the high-low range"),
    ("mt5", lambda: _head(XAU_M5, 4), {"format": "mt5", "tz_offset_hours": 3}, 2, "1341", "-3", "negative tick_volume"),
    ("mt5_utc", lambda: MT5_UTC, {}, 3, "1735690500", "17356x0500", "unparsable epoch time"),
    ("mt5_utc", lambda: MT5_UTC, {}, 4, "2898,0", "-1,0", "negative spread"),
    ("mt5_utc", lambda: MT5_UTC, {}, 4, "1735691400", "1735689600", "time goes backwards"),
])
def test_malformed_bar_files_name_file_and_line(tmp_path, name, text, kwargs, line, old, new, problem):
    path = tmp_path / f"{name}.csv"
    path.write_text(_corrupt(text(), line, old, new), encoding="utf-8")
    with pytest.raises(DataFileError) as info:
        read_bars(path, **kwargs)
    assert info.value.path == path and info.value.line == line
    assert f"{path}, line {line}: {problem}" in str(info.value)


@pytest.mark.parametrize("name, text, kwargs, first_utc", [
    ("histdata_ticks (EST)", lambda: _head(EUR_TICKS, 3), {}, "2020-01-01 22:00:00.065"),
    ("binance_book (capture clock, UTC ns)", lambda: BOOK, {}, "2024-08-08 23:54:14.087"),
    ("mt5_ticks (server time, here UTC+2)", lambda: MT5_TICKS, {"tz_offset_hours": 2}, "2026-01-05 10:00"),
])
def test_tick_formats_read_their_first_line_in_utc(tmp_path, name, text, kwargs, first_utc):
    path = tmp_path / "ticks.csv"
    path.write_text(text(), encoding="utf-8")
    assert read_ticks(path, **kwargs).index[0] == _utc(first_utc), name


@pytest.mark.parametrize("name, text, line, old, new, problem", [
    ("binance_book", lambda: BOOK, 3, "61837.64000000", "61837.60000000", "ask below bid"),
    ("binance_book", lambda: BOOK, 4, "61837.63000000", "abc", "bid_price: 'abc' is not a number"),
    ("mt5_ticks", lambda: MT5_TICKS, 4, "1767614400500", "1767614400100", "time goes backwards"),
    ("mt5_ticks", lambda: MT5_TICKS, 2, "1.13284", "0", "non-positive price"),
])
def test_malformed_tick_files_name_file_and_line(tmp_path, name, text, line, old, new, problem):
    path = tmp_path / f"{name}.csv"
    path.write_text(_corrupt(text(), line, old, new), encoding="utf-8")
    with pytest.raises(DataFileError) as info:
        read_ticks(path)
    assert info.value.path == path and info.value.line == line
    assert problem in str(info.value)


def test_binance_trade_capture_real_lines_and_a_malformed_copy(tmp_path):
    text = _head(SPOT_TRADES, 4)
    good = tmp_path / "capture.csv"
    good.write_text(text)
    tape = read_trades(good)
    assert tape.format == "spot_trade_capture" and len(tape) == 3
    assert tape.time_ms[0] == 1723161255342  # the trade time (T), not the local receive clock
    assert bool(tape.is_buyer_maker[0]) is True
    for line, old, new, problem in [(3, "0.04800000", "-0.048", "quantity must be a positive number"),
                                    (4, "True", "yes", "is_buyer_maker 'yes' is not true/false"),
                                    (2, "3735683259", "37356832x9", "trade id '37356832x9' is not an integer")]:
        bad = tmp_path / f"bad{line}.csv"
        bad.write_text(_corrupt(text, line, old, new))
        with pytest.raises(TradeFileError, match=rf"bad{line}\.csv: line {line}: {problem}"):
            read_trades(bad)
