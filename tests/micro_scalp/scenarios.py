"""Small constructed M1 sequences whose indicator values can be worked out by hand.

The flat base: bars alternate (open 100.0, close 100.2) and (open 100.2, close 100.0), each with
0.1 wicks, so every high is 100.3, every low 99.9, every true range 0.4 (ATR = 0.4 exactly), there
are no swing pivots (flat highs and lows), bodies are 0.2 and the VWAP sits at 100.1.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from config.micro_scalp_model import MicroScalpParams
from engines.micro_scalp_features import Bars, Features, compute_features

T0 = datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)
Row = tuple[float, float, float, float]


def flat_base(n: int = 60) -> list[Row]:
    rows = []
    for i in range(n):
        o, c = (100.0, 100.2) if i % 2 == 0 else (100.2, 100.0)
        rows.append((o, 100.3, 99.9, c))
    return rows


def path(closes: list[float], start: float, wick: float = 0.05) -> list[Row]:
    """Bars following a close path: open = previous close, wicks of ``wick`` beyond the body."""
    rows, prev = [], start
    for c in closes:
        rows.append((prev, max(prev, c) + wick, min(prev, c) - wick, c))
        prev = c
    return rows


def oscillation(cycles: int, low: float = 99.0, high: float = 101.0, step: float = 0.4,
                wick: float = 0.1, start: float | None = None) -> list[Row]:
    """A triangle wave of closes between ``low`` and ``high``: a textbook range."""
    closes: list[float] = []
    price = low if start is None else start
    up = True
    steps = int(round((high - low) / step))
    for _ in range(cycles * 2 * steps):
        price = round(price + (step if up else -step), 10)
        closes.append(price)
        if price >= high - 1e-9:
            up = False
        elif price <= low + 1e-9:
            up = True
    return path(closes, low if start is None else start, wick)


def make(rows: list[Row], volume: list[float] | np.ndarray | None = None, start: datetime = T0) -> Bars:
    data = np.asarray(rows, dtype=float)
    n = len(data)
    vol = np.full(n, 100.0) if volume is None else np.asarray(volume, dtype=float)
    times = np.array([int((start + timedelta(minutes=i)).timestamp()) for i in range(n)], dtype=np.int64)
    return Bars(times, data[:, 0].copy(), data[:, 1].copy(), data[:, 2].copy(), data[:, 3].copy(), vol)


def features(rows: list[Row], params: MicroScalpParams | None = None, volume=None,
             bid: float | None = None, ask: float | None = None, start: datetime = T0) -> Features:
    bars = make(rows, volume, start)
    last = float(bars.close[-1])
    bid = last if bid is None else bid
    ask = bid if ask is None else ask
    return compute_features(bars, bid, ask, params or MicroScalpParams())
