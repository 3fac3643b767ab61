"""flow-bars equals an independent pandas computation from the same file."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.flow_bars import BAR_COLUMNS, flow_bars, main, timeframe_seconds, write_flow_bars


def _pandas_bars(path, time_col, maker_col, qty_col, price_col, freq):
    """Straight from the CSV with pandas only: no project code involved."""
    raw = pd.read_csv(path)
    maker = raw[maker_col].astype(str).str.lower() == "true"
    raw["time"] = pd.to_datetime(raw[time_col], unit="ms", utc=True).dt.floor(freq)
    raw["buy"] = np.where(maker, 0.0, raw[qty_col])
    raw["sell"] = np.where(maker, raw[qty_col], 0.0)
    grouped = raw.groupby("time", sort=True)
    out = pd.DataFrame({
        "open": grouped[price_col].first(), "high": grouped[price_col].max(),
        "low": grouped[price_col].min(), "close": grouped[price_col].last(),
        "buy_volume": grouped["buy"].sum(), "sell_volume": grouped["sell"].sum(),
        "trades": grouped.size()}).reset_index()
    out["delta"] = out["buy_volume"] - out["sell_volume"]
    out["cvd"] = out["delta"].cumsum()
    return out


def _assert_same(ours, ref):
    assert list(ours.columns) == BAR_COLUMNS
    assert len(ours) == len(ref) > 0
    assert (ours["time"].reset_index(drop=True) == ref["time"]).all()
    for col in ("open", "high", "low", "close"):
        assert np.array_equal(ours[col].to_numpy(), ref[col].to_numpy()), col
    for col in ("buy_volume", "sell_volume", "delta", "cvd"):
        assert np.allclose(ours[col].to_numpy(), ref[col].to_numpy(), rtol=0, atol=1e-9), col
    assert ours["trades"].tolist() == ref["trades"].tolist()


def test_spot_trade_capture_minute_bars_equal_pandas(spot_trades_path):
    ref = _pandas_bars(spot_trades_path, "trade_time_ms", "is_buyer_maker", "qty", "price", "1min")
    _assert_same(flow_bars(spot_trades_path, "1m"), ref)


@pytest.mark.parametrize("timeframe, freq", [("1m", "1min"), ("5m", "5min")])
def test_usdm_aggtrades_bars_equal_pandas(usdm_trades_path, timeframe, freq):
    ref = _pandas_bars(usdm_trades_path, "transact_time", "is_buyer_maker", "quantity", "price", freq)
    ours = flow_bars(usdm_trades_path, timeframe)
    _assert_same(ours, ref)
    assert ours["trades"].sum() == 2386


def test_cli_writes_the_csv_and_reports_bad_input(usdm_trades_path, tmp_path, capsys):
    out = tmp_path / "bars" / "flow.csv"
    assert main(["--trades", str(usdm_trades_path), "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert list(written.columns) == BAR_COLUMNS
    assert written["time"].iloc[0] == "2026-03-27T00:00:00Z"
    ref = flow_bars(usdm_trades_path)
    assert np.allclose(written["cvd"], ref["cvd"]) and written["trades"].tolist() == ref["trades"].tolist()
    assert "wrote" in capsys.readouterr().out
    assert main(["--trades", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["--trades", str(usdm_trades_path), "--timeframe", "7m"]) == 2
    assert "divide one day" in capsys.readouterr().err


def test_cli_prints_to_stdout_without_out(usdm_trades_path, capsys):
    assert main(["--trades", str(usdm_trades_path), "--timeframe", "1h"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == ",".join(BAR_COLUMNS) and len(lines) == 1 + 9  # 00:00 .. 08:00


def test_write_flow_bars_returns_the_frame(usdm_trades_path, tmp_path):
    frame = write_flow_bars(usdm_trades_path, "1m", tmp_path / "x.csv")
    assert (tmp_path / "x.csv").is_file() and len(frame) == len(pd.read_csv(tmp_path / "x.csv"))


@pytest.mark.parametrize("text, seconds", [("1m", 60), ("5m", 300), ("30s", 30), ("1h", 3600), ("1d", 86400)])
def test_timeframes(text, seconds):
    assert timeframe_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "m1", "7m", "0m", "2d"])
def test_bad_timeframes(text):
    with pytest.raises(ValueError, match="timeframe"):
        timeframe_seconds(text)
