"""Fixtures for the backtest tests: real data files and slices of them (whole real lines)."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
DATA = PROJECT_DIR / "data"
XAU_M1 = DATA / "bars" / "XAUUSD_M1_2023-04-16_2023-05-01.csv"
EUR_M1 = DATA / "bars" / "EURUSD_M1_2015-02-01_2015-02-13_EST_histdata.csv"
BTC_M1 = DATA / "bars" / "BTCPERP_M1_2022-01-16_2022-01-29.csv"
XAU_M5 = DATA / "bars" / "XAUUSD_M5_2026-04-24_2026-07-09_mt5.csv"
EUR_TICKS = DATA / "ticks" / "EURUSD_ticks_2020-01-01_EST_histdata.csv"
SPOT_TRADES = DATA / "trades" / "binance_spot_BTCUSDT_trades_2024-08-08T2354_0005.csv"


def real_file(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real data file {path} is missing")
    return path


def slice_lines(source: Path, target: Path, first: int, last: int, header: bool) -> Path:
    """Lines ``first``..``last`` (1-based, inclusive) of a real file, with its header line."""
    lines = real_file(source).read_text(encoding="utf-8").splitlines(keepends=True)
    body = lines[first - 1:last]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(([lines[0]] if header else []) + body), encoding="utf-8")
    return target
