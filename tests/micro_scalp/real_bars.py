"""Reading the real bar files for the micro-scalp tests (constructed sequences: scenarios.py).

feeds/readers.py ``read_bars`` is used when present; a minimal local reader stands in otherwise."""
from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_BARS = Path("/work/shared/data/bars")
XAU_FILE = "XAUUSD_M1_2023-04-16_2023-05-01.csv"
EUR_FILE = "EURUSD_M1_2015-02-01_2015-02-13_EST_histdata.csv"


def _find(name: str) -> Path:
    for folder in (REPO / "data" / "bars", REPO / "data", SHARED_BARS):
        if (folder / name).exists():
            return folder / name
    pytest.skip(f"real bar file {name} not found in data/bars or {SHARED_BARS}")


def _local_read(path: Path) -> pd.DataFrame:
    """Minimal reader for the two bundled M1 formats (used until feeds/readers.py exists)."""
    if "histdata" in path.name:
        raw = pd.read_csv(path, sep=";", header=None,
                          names=["time", "open", "high", "low", "close", "volume"])
        est = pd.to_datetime(raw["time"], format="%Y%m%d %H%M%S")
        index = (est + pd.Timedelta(hours=5)).dt.tz_localize("UTC")  # EST is UTC-5, no DST
    else:
        raw = pd.read_csv(path)
        index = pd.to_datetime(raw["time"]).dt.tz_localize("UTC")
    frame = raw[["open", "high", "low", "close", "volume"]].astype(float)
    frame.index = pd.DatetimeIndex(index, name="time")
    return frame


def read_real_bars(name: str) -> pd.DataFrame:
    path = _find(name)
    try:
        readers = importlib.import_module("feeds.readers")
        read_bars = getattr(readers, "read_bars")
    except (ImportError, AttributeError):
        return _local_read(path)
    frame = read_bars(path)
    if "volume" not in frame.columns and "tick_volume" in frame.columns:
        frame = frame.rename(columns={"tick_volume": "volume"})
    return frame
