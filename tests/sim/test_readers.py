"""feeds.readers on every recorded format (bundled files and real lines copied into tmp files)
and on malformed files, which must name the file and the line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feeds.readers import (BAR_COLUMNS, DataFileError, detect_bar_format, detect_tick_format,
                           read_bars, read_ticks)

DATA = Path(__file__).resolve().parents[2] / "data"
XAU_M1 = DATA / "bars" / "XAUUSD_M1_2023-04-16_2023-05-01.csv"
EUR_M1 = DATA / "bars" / "EURUSD_M1_2015-02-01_2015-02-13_EST_histdata.csv"
BTC_M1 = DATA / "bars" / "BTCPERP_M1_2022-01-16_2022-01-29.csv"
XAU_M5 = DATA / "bars" / "XAUUSD_M5_2026-04-24_2026-07-09_mt5.csv"
EUR_TICKS = DATA / "ticks" / "EURUSD_ticks_2020-01-01_EST_histdata.csv"

# real lines from ../shared/data (BTCUSDc M15 MT5 export; Binance bookTicker capture)
MT5_UTC_LINES = """time_utc,time_epoch,open,high,low,close,tick_volume,spread,real_volume
2025-01-01T00:00:00Z,1735689600,93440.45,93570.9,93329.67,93507.1,2981,2898,0
2025-01-01T00:15:00Z,1735690500,93509.47,93762.58,93457.24,93627.14,2882,2898,0
2025-01-01T00:30:00Z,1735691400,93627.15,93836.11,93619.72,93745.52,3426,2898,0
"""
BOOK_LINES = """local_ts_ns,update_id,bid_price,bid_qty,ask_price,ask_qty
1723161254087891268,50093239212,61837.63000000,3.78826000,61837.64000000,1.54698000
1723161254116723068,50093239219,61837.63000000,3.78826000,61837.64000000,1.60520000
1723161254180571167,50093239225,61837.63000000,3.78826000,61837.64000000,1.92853000
"""


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write(tmp_path: Path, text: str, name: str = "file.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- real formats ---------------------------------------------------------------------------

def test_plain_ohlc_xauusd_is_utc_with_volume_and_no_tick_volume() -> None:
    bars = read_bars(XAU_M1)
    assert detect_bar_format(XAU_M1) == "ohlc"
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert len(bars) == 14891
    assert bars.index.tz is not None and str(bars.index.tz) == "UTC"
    assert bars.index[0] == utc("2023-04-16 22:00")
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (1998.498, 2000.824, 1998.498, 2000.448)
    assert np.isnan(first.tick_volume) and np.isnan(first.spread)
    assert first.volume == pytest.approx(0.0253399996436201)
    assert all(bars[c].dtype == np.float64 for c in BAR_COLUMNS)


def test_histdata_m1_is_est_without_dst() -> None:
    bars = read_bars(EUR_M1)
    assert detect_bar_format(EUR_M1) == "histdata_nt"
    assert len(bars) == 14382
    assert bars.index[0] == utc("2015-02-01 22:00")  # 17:00 EST + 5 h
    assert bars.index[-1] == utc("2015-02-13 21:58")
    assert tuple(bars.iloc[0][["open", "high", "low", "close"]]) == (1.13105, 1.13117, 1.13076, 1.13084)
    shifted = read_bars(EUR_M1, tz_offset_hours=0)  # the caller may override the zone
    assert shifted.index[0] == utc("2015-02-01 17:00")


def test_timestamp_header_btcperp() -> None:
    bars = read_bars(BTC_M1)
    assert len(bars) == 20160
    assert bars.index[0] == utc("2022-01-16 00:00") and bars.index[-1] == utc("2022-01-29 23:59")
    assert bars.iloc[0].volume == pytest.approx(2131737.0044)


def test_mt5_server_time_export_needs_its_offset() -> None:
    bars = read_bars(XAU_M5, tz_offset_hours=3, format="mt5")
    assert bars.index[0] == utc("2026-04-24 05:15")  # 08:15 server time at UTC+3
    assert bars.iloc[0].tick_volume == 1341 and np.isnan(bars.iloc[0].volume)
    assert read_bars(XAU_M5).index[0] == utc("2026-04-24 08:15")  # auto-detected as plain OHLC


def test_mt5_utc_export_uses_epoch(tmp_path: Path) -> None:
    path = write(tmp_path, MT5_UTC_LINES)
    bars = read_bars(path)
    assert detect_bar_format(path) == "mt5_utc"
    assert bars.index[1] == utc("2025-01-01 00:15")
    assert tuple(bars.iloc[0][["tick_volume", "spread", "volume"]]) == (2981, 2898, 0)
    with pytest.raises(ValueError, match="UTC"):
        read_bars(path, tz_offset_hours=2)


def test_mt5_rates_header_with_tick_volume_is_detected(tmp_path: Path) -> None:
    path = write(tmp_path, "time,open,high,low,close,tick_volume,spread,real_volume\n"
                           "1735689600,93440.45,93570.9,93329.67,93507.1,2981,2898,0\n"
                           "1735690500,93509.47,93762.58,93457.24,93627.14,2882,2898,0\n")
    bars = read_bars(path, tz_offset_hours=2)
    assert detect_bar_format(path) == "mt5"
    assert bars.index[0] == utc("2024-12-31 22:00")  # epoch read as server time, UTC = -2 h
    assert bars.iloc[1].spread == 2898


def test_histdata_ticks_are_est_with_milliseconds() -> None:
    ticks = read_ticks(EUR_TICKS)
    assert detect_tick_format(EUR_TICKS) == "histdata_ticks"
    assert len(ticks) == 9500
    assert ticks.index[0] == utc("2020-01-01 22:00:00.065")
    assert tuple(ticks.iloc[0]) == (1.1212, 1.12172)
    assert list(ticks.columns) == ["bid", "ask"]


def test_binance_book_ticker_capture(tmp_path: Path) -> None:
    path = write(tmp_path, BOOK_LINES)
    ticks = read_ticks(path)
    assert detect_tick_format(path) == "binance_book"
    assert ticks.index[0] == utc("2024-08-08 23:54:14.087")
    assert tuple(ticks.iloc[2]) == (61837.63, 61837.64)


def test_mt5_ticks_export(tmp_path: Path) -> None:
    path = write(tmp_path, "time,bid,ask,last,volume,time_msc,flags,volume_real\n"
                           "1767614400,1.13284,1.13286,0.0,0,1767614400000,6,0.0\n"
                           "1767614400,1.13285,1.13287,0.0,0,1767614400250,6,0.0\n")
    ticks = read_ticks(path, tz_offset_hours=2)
    assert ticks.index[1] == utc("2026-01-05 10:00:00.250")


def test_results_are_copies_of_the_cache() -> None:
    first = read_bars(XAU_M1)
    first.iloc[0, 0] = -1.0
    assert read_bars(XAU_M1).iloc[0, 0] == 1998.498


# --- malformed files ------------------------------------------------------------------------

HEADER = "time,open,high,low,close,volume\n"
GOOD = "2023-04-16 22:00:00,10.0,11.0,9.0,10.5,1\n"


@pytest.mark.parametrize("bad_line, problem", [
    ("2023-04-16 22:01:00,10.0,11.0,9.0,abc,1", "close: 'abc' is not a number"),
    ("2023-04-16 22:01:00,10.0,11.0,9.0,,1", "missing price (NaN)"),
    ("2023-04-16 22:01:00,10.0,11.0,9.0,nan,1", "missing price (NaN)"),
    ("2023-04-16 22:01:00,10.0,11.0,0,10.0,1", "non-positive price"),
    ("2023-04-16 22:01:00,-10.0,11.0,9.0,10.0,1", "non-positive price"),
    ("2023-04-16 22:01:00,10.0,9.0,11.0,10.0,1", "high below low"),
    ("2023-04-16 22:01:00,12.0,11.0,9.0,10.0,1", "open or close outside the high-low range"),
    ("2023-04-16 22:01:00,10.0,11.0,9.0,10.0,-5", "negative volume"),
    ("2023-04-16 21:59:00,10.0,11.0,9.0,10.0,1", "time goes backwards"),
    ("2023-04-16 22:00:00,10.0,11.0,9.0,10.0,1", "duplicate time"),
    ("2023-04-16 25:61:00,10.0,11.0,9.0,10.0,1", "unparsable time"),
    ("", "empty line"),
])
def test_bad_bar_rows_name_file_and_line(tmp_path: Path, bad_line: str, problem: str) -> None:
    path = write(tmp_path, HEADER + GOOD + bad_line + "\n" + "2023-04-16 22:05:00,10.0,11.0,9.0,10.5,1\n")
    with pytest.raises(DataFileError) as info:
        read_bars(path)
    assert info.value.line == 3
    assert info.value.path == path
    assert problem in str(info.value)
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_extra_field_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD + "2023-04-16 22:01:00,10.0,11.0,9.0,10.0,1,7\n")
    with pytest.raises(DataFileError, match="line 3: expected 6 fields, found 7"):
        read_bars(path)


def test_histdata_bad_row_line_numbers_count_from_one(tmp_path: Path) -> None:
    path = write(tmp_path, "20150201 170000;1.131050;1.131170;1.130760;1.130840;0\n"
                           "20150201 170100;1.131070;1.131730;1.131740;1.131040;0\n")
    with pytest.raises(DataFileError, match=r"line 2: high below low"):
        read_bars(path)


def test_empty_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="file is empty"):
        read_bars(write(tmp_path, "\n\n", "empty.csv"))
    with pytest.raises(DataFileError, match="not a recognised bar file"):
        read_bars(write(tmp_path, "a,b,c\n1,2,3\n", "other.csv"))
    with pytest.raises(DataFileError, match="file not found"):
        read_bars(tmp_path / "missing.csv")
    with pytest.raises(DataFileError, match="not a recognised tick file"):
        read_ticks(write(tmp_path, HEADER + GOOD, "bars.csv"))


def test_ticks_may_share_a_millisecond_but_not_go_backwards(tmp_path: Path) -> None:
    same = write(tmp_path, "20200101 170000065,1.121200,1.121720,0\n"
                           "20200101 170000065,1.121210,1.121730,0\n", "same.csv")
    assert len(read_ticks(same)) == 2
    back = write(tmp_path, "20200101 170000065,1.121200,1.121720,0\n"
                           "20200101 170000064,1.121210,1.121730,0\n", "back.csv")
    with pytest.raises(DataFileError, match="line 2: time goes backwards"):
        read_ticks(back)
    crossed = write(tmp_path, "20200101 170000065,1.121200,1.121100,0\n", "crossed.csv")
    with pytest.raises(DataFileError, match="line 1: ask below bid"):
        read_ticks(crossed)
