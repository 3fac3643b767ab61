"""Readers for the Binance trade files: every layout, units, compression, and clear errors."""
from __future__ import annotations

import csv
import gzip
import zipfile

import numpy as np
import pytest

from feeds.trade_readers import TradeFileError, read_trades


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_spot_trade_capture_uses_trade_time_and_trade_ids(spot_trades_path):
    rows = _rows(spot_trades_path)
    tape = read_trades(spot_trades_path)
    assert tape.format == "spot_trade_capture" and len(tape) == len(rows) - 1 == 19_904
    for i in (0, 1, 5000, len(rows) - 2):
        local_ns, event_ms, trade_id, price, qty, trade_ms, maker = rows[i + 1]
        assert tape.ids[i] == int(trade_id) and tape.time_ms[i] == int(trade_ms)
        assert tape.price[i] == float(price) and tape.qty[i] == float(qty)
        assert bool(tape.is_buyer_maker[i]) == (maker == "True")
    assert tape.ids.dtype == np.int64 and tape.is_buyer_maker.dtype == bool
    frame = tape.to_frame()
    assert str(frame["time"].dt.tz) == "UTC" and frame["time"].iloc[0].year == 2024


def test_usdm_aggtrades_with_and_without_header(usdm_trades_path, tmp_path):
    with_header = read_trades(usdm_trades_path)
    assert with_header.format == "usdm_agg" and len(with_header) == 2386
    lines = usdm_trades_path.read_text().splitlines()
    bare = tmp_path / "BTCUSDT-aggTrades-2026-03-27.csv"
    bare.write_text("\n".join(lines[1:]) + "\n")
    without = read_trades(bare)
    for field in ("ids", "price", "qty", "time_ms", "is_buyer_maker"):
        assert np.array_equal(getattr(with_header, field), getattr(without, field)), field
    first = lines[1].split(",")
    assert with_header.ids[0] == int(first[0]) and with_header.time_ms[0] == int(first[5])
    assert with_header.is_buyer_maker[0] == (first[6] == "true")


def _spot_agg_copy(usdm_trades_path, tmp_path, micro: bool):
    """The real USD-M rows laid out as a spot aggTrades dump (extra best-match column)."""
    out = []
    for row in _rows(usdm_trades_path)[1:]:
        stamp = int(row[5]) * 1000 + 123 if micro else int(row[5])
        out.append(",".join(row[:5] + [str(stamp), row[6].capitalize(), "True"]))
    path = tmp_path / ("spot_us.csv" if micro else "spot_ms.csv")
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.mark.parametrize("micro", [False, True])
def test_spot_aggtrades_dump_milliseconds_and_microseconds(usdm_trades_path, tmp_path, micro):
    reference = read_trades(usdm_trades_path)
    tape = read_trades(_spot_agg_copy(usdm_trades_path, tmp_path, micro))
    assert tape.format == "spot_agg"
    assert np.array_equal(tape.time_ms, reference.time_ms)  # microseconds converted to ms
    assert np.array_equal(tape.is_buyer_maker, reference.is_buyer_maker)


def test_gzip_and_zip_files(usdm_trades_path, tmp_path):
    reference = read_trades(usdm_trades_path)
    gz = tmp_path / "trades.csv.gz"
    gz.write_bytes(gzip.compress(usdm_trades_path.read_bytes()))
    zipped = tmp_path / "BTCUSDT-aggTrades.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(usdm_trades_path, "BTCUSDT-aggTrades.csv")
    for path in (gz, zipped):
        assert np.array_equal(read_trades(path).ids, reference.ids)


HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
GOOD = "1860983,68859.0,0.006,2717453,2717454,1774569603838,true\n"


@pytest.mark.parametrize("bad_line, problem", [
    ("1860984,68857.5,0.024,2717455,2717455,1774569603838,maybe", "is_buyer_maker 'maybe' is not true/false"),
    ("1860984,abc,0.024,2717455,2717455,1774569603838,true", "price 'abc' is not a number"),
    ("1860984,68857.5,-0.024,2717455,2717455,1774569603838,true", "quantity must be a positive number"),
    ("1860984,68857.5,0.024,2717455,2717455,true", "6 columns, expected 7"),
    ("1860984,68857.5,0.024,2717455,2717455,1774569603838,true,1", "8 columns, expected 7"),
    ("x1,68857.5,0.024,2717455,2717455,1774569603838,true", "trade id 'x1' is not an integer"),
    ("1860984,68857.5,0.024,2717455,2717455,17745696038.5,true", "time '17745696038.5' is not an integer"),
    ("1860984,nan,0.024,2717455,2717455,1774569603838,true", "price must be a positive number"),
])
def test_malformed_rows_name_the_file_and_line(tmp_path, bad_line, problem):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + GOOD + "\n" + GOOD.replace("1860983", "1860982") + bad_line + "\n" + GOOD)
    with pytest.raises(TradeFileError) as info:
        read_trades(path)
    assert str(info.value).startswith(f"{path}: line 5: {problem}")


@pytest.mark.parametrize("content, problem", [
    ("", "the file holds no trades"),
    ("a,b,c\n1,2,3\n", "line 1: unknown header"),
    ("1,2,3\n", "line 1: 3 columns without a header"),
    (HEADER, "the file holds no trades"),
])
def test_unreadable_files(tmp_path, content, problem):
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(TradeFileError, match=problem):
        read_trades(path)
    with pytest.raises(TradeFileError, match="no such file"):
        read_trades(tmp_path / "missing.csv")
