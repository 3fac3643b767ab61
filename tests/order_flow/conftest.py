"""Fixtures: the real Binance tapes in data/trades (skipped with a reason when absent)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
TRADES_DIR = PROJECT_DIR / "data" / "trades"
SPOT_TRADES = "binance_spot_BTCUSDT_trades_2024-08-08T2354_0005.csv"
USDM_AGG_TRADES = "binance_um_BTCUSDT_260327_aggTrades_2026-03-27.csv"


def trades_file(name: str) -> Path:
    path = TRADES_DIR / name
    if not path.is_file():
        pytest.skip(f"real trades file {path} is missing (data/trades is populated from ../shared/data)")
    return path


@pytest.fixture
def spot_trades_path() -> Path:
    return trades_file(SPOT_TRADES)


@pytest.fixture
def usdm_trades_path() -> Path:
    return trades_file(USDM_AGG_TRADES)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.005) -> bool:
    """Poll a condition that another thread (socket I/O) will make true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
