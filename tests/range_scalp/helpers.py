"""Builders for the range-scalp tests: constructed bar sequences, parameters with a few keys
changed, markets with chosen indicator values, ranges, trades, and the real MT5 M5 exports."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from config.range_scalp_model import RangeScalpParams
from engines.range_data import M5, Bars, RangeFlow
from engines.range_detection import RangeStructure, critical_gaps
from engines.range_exits import RangeTrade
from engines.range_market import RangeMarket, compute_market, read_inputs, replace_market

REPO = Path(__file__).resolve().parents[2]
SHARED_BARS = Path("/work/shared/data/bars")
XAU_M5 = "XAUUSD_M5_2026-04-24_2026-07-09_mt5.csv"
EUR_M5 = "EURUSD_M5_2026-05-13_2026-07-09_mt5.csv"
MT5_SERVER_OFFSET_HOURS = 3  # these exports are in broker server time, UTC+3 (see data/PROVENANCE.md)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


MONDAY = utc(2026, 6, 1)  # a Monday: bars built from here have a full previous day from Tuesday on


def params(**sections: dict[str, Any]) -> RangeScalpParams:
    """Default parameters with some keys changed, e.g. ``params(activity={"max_trades_per_day": 2})``."""
    data = RangeScalpParams().model_dump()
    for section, values in sections.items():
        target = data[section]
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    return RangeScalpParams.model_validate(data)


def sine_bars(start: datetime, n: int, base: float = 100.0, amp: float = 0.30, period: int = 48,
              volume: float = 100.0, wick: float = 0.02) -> Bars:
    """A calm, regular range: closes follow base + amp*sin(2 pi i / period), wicks of ``wick``."""
    times = int(start.timestamp()) + M5 * np.arange(n, dtype=np.int64)
    path = base + amp * np.sin(2 * np.pi * np.arange(n + 1) / period)
    o, c = path[:-1].copy(), path[1:].copy()
    return Bars(times, o, np.maximum(o, c) + wick, np.minimum(o, c) - wick, c, np.full(n, float(volume)), M5)


def set_last(bars: Bars, rows: list[tuple[float, float, float, float]], volume: float | None = None) -> Bars:
    """Replace the last ``len(rows)`` bars' OHLC (times unchanged)."""
    o, h, l, c, v = (a.copy() for a in (bars.open, bars.high, bars.low, bars.close, bars.volume))
    start = len(bars) - len(rows)
    for k, (ro, rh, rl, rc) in enumerate(rows):
        o[start + k], h[start + k], l[start + k], c[start + k] = ro, rh, rl, rc
        if volume is not None:
            v[start + k] = volume
    return Bars(bars.time, o, h, l, c, v, bars.period_s)


def drop_at_end(bars: Bars, moves: list[float], pad: float = 0.01) -> Bars:
    """Chain the last len(moves) bars from the close before them, each closing ``move`` away."""
    rows = []
    prev = float(bars.close[len(bars) - len(moves) - 1])
    for move in moves:
        o, c = prev, prev + move
        rows.append((o, max(o, c) + pad, min(o, c) - pad, c))
        prev = c
    return set_last(bars, rows)


def bars_from_rows(start: datetime, rows: list[tuple[float, ...]], period_s: int = M5) -> Bars:
    """Bars from (open, high, low, close[, volume]) rows, one per period from ``start``."""
    times = int(start.timestamp()) + period_s * np.arange(len(rows), dtype=np.int64)
    cols = list(zip(*rows))
    volume = np.asarray(cols[4], float) if len(cols) > 4 else np.full(len(rows), 100.0)
    return Bars(times, *(np.asarray(cols[i], float) for i in range(4)), volume, period_s)


def close_time(bars: Bars, seconds_after: float = 5) -> datetime:
    """``now`` just after the last bar closed."""
    return datetime.fromtimestamp(int(bars.time[-1]) + bars.period_s + seconds_after, tz=timezone.utc)


def market(bars: Bars, now: datetime | None = None, quote: tuple[float, float] | None = None,
           flow: RangeFlow | None = None, p: RangeScalpParams | None = None, bars_h1: Any = None,
           **values: Any) -> RangeMarket:
    """The market computed from ``bars``, then any indicator value overridden by keyword."""
    p = p or RangeScalpParams()
    now = now or close_time(bars)
    last = float(bars.close[-1])
    quote = quote or (last, last)
    built = compute_market(read_inputs(bars, bars_h1, quote, p, "TEST", now, flow), p)
    return replace_market(built, **values) if values else built


def make_range(high: float = 101.0, low: float = 99.0, mid: float | None = None, atr: float = 0.2,
               kind: str = "session", up: int = 2, down: int = 2, fraction: float = 0.15) -> RangeStructure:
    return RangeStructure(kind, high, low, (high + low) / 2 if mid is None else mid, atr,
                          critical_gaps(high, low, fraction), up, down, up >= 2 and down >= 2)


def make_trade(side: str = "buy", entry: float = 100.0, risk: float = 0.2, rr: float = 1.5,
               opened_at: datetime | None = None, range_: RangeStructure | None = None,
               **extra: Any) -> RangeTrade:
    sign = 1 if side == "buy" else -1
    return RangeTrade(symbol="TEST", side=side, entry=entry, sl=entry - sign * risk, tp=entry + sign * risk * rr,
                      opened_at=opened_at or MONDAY, range=range_ or make_range(), strategy="vwap_reversion",
                      **extra)


# ----------------------------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------------------------

def real_m5_path(name: str) -> Path:
    for folder in (REPO / "data" / "bars", SHARED_BARS):
        if (folder / name).exists():
            return folder / name
    pytest.skip(f"real bar file {name} not found in data/bars or {SHARED_BARS}")


def read_real_m5(name: str) -> pd.DataFrame:
    """The MT5 M5 export as a UTC-indexed frame, through feeds/readers.py when it is there."""
    path = real_m5_path(name)
    try:
        from feeds.readers import read_bars
    except ImportError:  # pragma: no cover - the small local loader the brief allows meanwhile
        raw = pd.read_csv(path)
        index = (pd.to_datetime(raw["time"]) - pd.Timedelta(hours=MT5_SERVER_OFFSET_HOURS)).dt.tz_localize("UTC")
        frame = raw[["open", "high", "low", "close", "volume"]].astype(float)
        frame.index = pd.DatetimeIndex(index, name="time")
        return frame.rename(columns={"volume": "tick_volume"})
    return read_bars(path, MT5_SERVER_OFFSET_HOURS, format="mt5")

