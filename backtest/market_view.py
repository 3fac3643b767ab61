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

import bisect
from datetime import datetime
from typing import Any

import pandas as pd

from engines.bars import BarSeries
from engines.ticks import TickSeries


class RecordedHistory:
    """``Broker`` protocol view of ``broker`` whose ``bars``/``ticks`` start at the recording."""

    def __init__(self, broker: Any, first: dict[str, datetime]) -> None:
        self._broker = broker
        nanos = {symbol: pd.Timestamp(when).as_unit("ns").value for symbol, when in first.items()}
        self._first_s = {symbol: -(-ns // 1_000_000_000) for symbol, ns in nanos.items()}  # ceil: bar times are s
        self._first_ms = {symbol: -(-ns // 1_000_000) for symbol, ns in nanos.items()}  # tick times are ms
        self.trimmed = 0  # reads that had data from before the recording removed
        # the calls monitors make at every step, bound once: ``__getattr__`` runs only after a
        # failed lookup, which costs more than the call itself
        self.quote = broker.quote
        self.symbol_spec = broker.symbol_spec

    def history_start(self, symbol: str) -> int | None:
        """UTC epoch second of the symbol's first recorded instant: no bar before it is served."""
        return self._first_s.get(symbol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def bars(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> BarSeries:
        series = self._broker.bars(symbol, timeframe, count, include_forming)
        first = self._first_s.get(symbol)
        if first is None or series.is_empty or series.time_s.item(0) >= first:
            return series
        self.trimmed += 1
        return series.since(first)

    def bar_rows(self, symbol: str, timeframe: str, count: int, include_forming: bool = False) -> list[tuple]:
        """``bars`` as rows (``Broker.bar_rows``), trimmed the same way."""
        rows = self._broker.bar_rows(symbol, timeframe, count, include_forming)
        first = self._first_s.get(symbol)
        if first is None or not rows or rows[0][0] >= first:
            return rows
        self.trimmed += 1
        return rows[bisect.bisect_left(rows, first, key=_open_time):]

    def ticks(self, symbol: str, start_utc: datetime, end_utc: datetime) -> TickSeries:
        ticks = self._broker.ticks(symbol, start_utc, end_utc)
        first = self._first_ms.get(symbol)
        if first is None or ticks.is_empty or int(ticks.time_ms[0]) >= first:
            return ticks
        self.trimmed += 1
        return ticks.since(first)


def _open_time(row: tuple) -> int:
    return row[0]
