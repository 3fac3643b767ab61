"""The broker as the monitors see it in a backtest: no market data from before the recording.

The simulated terminal replays a recording as an endless market (it repeats it, week-shifted,
for the live demo). Asked for 1500 bars a few minutes after the first recorded bar, it would
serve the END of the recording, shifted back by one replay period, as history: future prices
in the past, a look-ahead bias. A real terminal at the start of its history serves only what
exists. This view drops bars and ticks stamped before each symbol's first recorded instant
(bars whose bucket starts before it, too: such a bucket may mix in wrapped data), and passes
every other call to the MT5 adapter unchanged. The executor trades through the adapter itself.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd


class RecordedHistory:
    """``Broker`` protocol view of ``broker`` whose ``bars``/``ticks`` start at the recording."""

    def __init__(self, broker: Any, first: dict[str, datetime]) -> None:
        self._broker = broker
        self._first = {symbol: pd.Timestamp(when) for symbol, when in first.items()}
        self.trimmed = 0  # reads that had data from before the recording removed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def _trim(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        first = self._first.get(symbol)
        if first is None or not len(frame) or frame.index[0] >= first:
            return frame
        self.trimmed += 1
        return frame.iloc[int(frame.index.searchsorted(first, side="left")):]

    def bars(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> pd.DataFrame:
        return self._trim(symbol, self._broker.bars(symbol, timeframe, count, include_forming))

    def ticks(self, symbol: str, start_utc: datetime, end_utc: datetime) -> pd.DataFrame:
        return self._trim(symbol, self._broker.ticks(symbol, start_utc, end_utc))
