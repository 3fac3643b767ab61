"""The tick proxy's feed: polls new MT5 ticks for proxy symbols and keeps their proxy flow.

Each ``poll(symbol)`` asks the broker only for ticks since the last one already taken: the
request starts AT the last tick's time (millisecond precision, inclusive, because several ticks
can share a millisecond and more may arrive in it later) and the ticks already taken at that
exact millisecond are dropped by count. The first poll (and any poll after an outage longer than
``warmup_seconds``) starts ``warmup_seconds`` back, so windows and M1 flow bars are filled at
once; an outage is marked as a discontinuity so windows spanning it say so.

Bad batches (tick times going backwards) are rejected whole and counted; the position is not
advanced, so the symbol's flow goes stale and entries on it fail closed.

The order-flow monitor calls ``poll`` for the symbols it needs at the start of each step (no
extra thread). Reads (``get_metrics``, ``bars``) may come from any thread: one lock guards the
proxy books; a second lock serialises polls so two callers never take the same ticks twice.
See ``engines/tick_proxy.py`` for how ticks are signed and the proxy's limits.
"""
from __future__ import annotations

import logging
import threading
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple, Sequence

import numpy as np

from engines.order_flow import (FlowBar, FlowBarColumns, FlowMetrics, OrderFlowEngine, named_tuple_eq,
                                named_tuple_ne)
from engines.tick_proxy import FEW_TICKS, TickFlowProxy, few_series_lists, frame_columns
from engines.ticks import TickSeries
from execution.errors import BrokerError
from monitors.clock import Clock

log = logging.getLogger(__name__)


@dataclass
class PollState:
    last_ms: int | None = None  # time of the newest tick taken (UTC epoch ms)
    taken_at_last_ms: int = 0  # how many ticks at exactly last_ms were taken
    polls: int = 0
    errors: int = 0
    rejected_batches: int = 0
    outages: int = 0
    last_error: str | None = None
    last_ok_ms: int | None = None  # market time of the last successful poll


class PollResult(NamedTuple):
    """One poll's counts (a named tuple, cheaper to build than a frozen dataclass: one per step)."""

    symbol: str
    fetched: int
    new_ticks: int
    trades: int
    error: str | None = None

    def __eq__(self, other: object) -> bool:
        return named_tuple_eq(self, other)

    def __ne__(self, other: object) -> bool:
        return named_tuple_ne(self, other)

    __hash__ = tuple.__hash__


class TickProxyFeed:
    def __init__(self, broker: Any, clock: Clock, proxy: TickFlowProxy | None = None,
                 warmup_seconds: float = 1800.0) -> None:
        if warmup_seconds <= 0:
            raise ValueError("warmup_seconds must be positive")
        self.broker = broker
        self.clock = clock
        self.proxy = proxy or TickFlowProxy()
        self.warmup_seconds = float(warmup_seconds)
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._state: dict[str, PollState] = {}

    @classmethod
    def from_config(cls, proxy_config: Any, broker: Any, clock: Clock) -> "TickProxyFeed":
        """From ``config.order_flow_model.TickProxyConfig``. Engine sizes are fixed at construction."""
        return cls(broker, clock, TickFlowProxy(OrderFlowEngine.from_config(proxy_config.flow)),
                   proxy_config.warmup_seconds)

    # ------------------------------------------------------------------ polling
    def poll(self, symbol: str, now: datetime | None = None) -> PollResult:
        """Fetch and ingest the ticks of ``symbol`` that arrived since the last poll."""
        with self._poll_lock:
            return self._poll(symbol, now or self.clock.now())

    def _poll(self, symbol: str, now: datetime) -> PollResult:
        state = self._state.get(symbol)
        if state is None:
            state = self._state[symbol] = PollState()
        state.polls += 1
        now_ms = int(now.timestamp() * 1000)
        warmup_ms = int(self.warmup_seconds * 1000)
        start_ms, skip_at_start = (state.last_ms, state.taken_at_last_ms) if state.last_ms is not None else (None, 0)
        outage = start_ms is not None and now_ms - start_ms > warmup_ms
        if start_ms is None or outage:
            start_ms, skip_at_start = now_ms - warmup_ms, 0
        try:
            columns, few = self._fetch(symbol, start_ms, now)
        except (BrokerError, ValueError, KeyError) as exc:
            state.errors += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("tick proxy %s: fetching ticks failed: %s", symbol, state.last_error)
            return PollResult(symbol, 0, 0, 0, state.last_error)
        times = columns["time_ms"]
        fetched = len(times)
        if _goes_backwards(times):
            state.rejected_batches += 1
            state.last_error = "tick times go backwards in the fetched batch"
            log.warning("tick proxy %s: %s; batch of %d rejected", symbol, state.last_error, fetched)
            return PollResult(symbol, fetched, 0, 0, state.last_error)
        first = _first_new(times, start_ms, skip_at_start)
        fresh = columns if not first else {name: (None if values is None else values[first:])
                                           for name, values in columns.items()}
        new_times = fresh["time_ms"]
        count = len(new_times)
        with self._lock:
            if outage:
                state.outages += 1
                self.proxy.mark_discontinuity(symbol)
                log.warning("tick proxy %s: no poll for %.0f s (> warmup %.0f s); flow marked discontinuous",
                            symbol, (now_ms - (state.last_ms or now_ms)) / 1000, self.warmup_seconds)
            ingest = self.proxy.ingest_lists if few else self.proxy.ingest
            trades = ingest(symbol, **fresh) if count else 0
        if count:
            newest = int(new_times[-1])
            at_newest = count - bisect_left(new_times, newest)  # sorted: the ticks at the newest ms
            if newest == state.last_ms and not outage:
                state.taken_at_last_ms += at_newest
            else:
                state.last_ms, state.taken_at_last_ms = newest, at_newest
        state.last_ok_ms = now_ms
        state.last_error = None
        return PollResult(symbol, fetched, count, trades)

    def _fetch(self, symbol: str, start_ms: int, now: datetime) -> tuple[dict[str, Any], bool]:
        """The broker's ticks in [start, now) as ``frame_columns`` (time_ms, bid, ask, ...), and
        whether they are Python lists: the usual poll brings a few ticks, cheaper as lists than as
        arrays all the way (``few_series_lists``, ``_few_as_lists``). The one place a poll turns
        the broker's answer into columns."""
        ticks = self.broker.ticks(symbol, _utc(start_ms), now)
        lists = few_series_lists(ticks) if isinstance(ticks, TickSeries) else None
        if lists is not None:
            return lists, True
        columns = frame_columns(ticks)
        lists = _few_as_lists(columns)
        return (columns, False) if lists is None else (lists, True)

    def poll_all(self, symbols: list[str], now: datetime | None = None) -> list[PollResult]:
        now = now or self.clock.now()
        return [self.poll(symbol, now) for symbol in symbols]

    # ------------------------------------------------------------------ reading
    def get_metrics(self, symbol: str, window_seconds: int, now_ms: int) -> FlowMetrics | None:
        with self._lock:
            return self.proxy.get_metrics(symbol, window_seconds, now_ms)

    def get_metrics_many(self, symbol: str, windows_seconds: Sequence[int], now_ms: int, slope: bool = True
                         ) -> list[FlowMetrics | None]:
        """``get_metrics`` of each window under one lock and one pass over the tape
        (``slope=False``: without the CVD slopes, ``engines.order_flow.SymbolFlow.metrics_many``)."""
        with self._lock:
            return self.proxy.get_metrics_many(symbol, windows_seconds, now_ms, slope)

    def bars(self, symbol: str, seconds: int = 60, include_forming: bool = True) -> list[FlowBar]:
        with self._lock:
            return self.proxy.bars(symbol, seconds, include_forming)

    def bar_columns(self, symbol: str, seconds: int = 60, include_forming: bool = True,
                    since_ms: int | None = None, before: int = 0) -> FlowBarColumns:
        """``bars`` as columns (what the order-flow monitor reads every step); ``since_ms`` and
        ``before`` limit them to the recent ones (``engines.order_flow.SymbolFlow.bar_columns``)."""
        with self._lock:
            return self.proxy.bar_columns(symbol, seconds, include_forming, since_ms, before)

    def last_poll_ms(self, symbol: str) -> int | None:
        state = self._state.get(symbol)
        return None if state is None else state.last_ok_ms

    def health(self) -> dict[str, Any]:
        with self._lock:
            out = {}
            for symbol, state in sorted(self._state.items()):
                c = self.proxy.counters(symbol)
                out[symbol] = {
                    "polls": state.polls, "errors": state.errors, "rejected_batches": state.rejected_batches,
                    "outages": state.outages, "last_error": state.last_error, "last_tick_ms": state.last_ms,
                    "ticks": c.ticks, "trades": c.trades, "by_flag": c.by_flag, "by_tick_rule": c.by_tick_rule,
                    "unclassified": c.unclassified, "quote_updates": c.quote_updates, "invalid": c.invalid,
                }
            return out


_INT_COLUMNS = ("time_ms", "flags")
_INT64, _FLOAT64 = np.dtype(np.int64), np.dtype(np.float64)


def _few_as_lists(columns: dict[str, np.ndarray | None]) -> dict[str, list | None] | None:
    """The columns as Python lists when they are few (``FEW_TICKS``) and already of the dtypes
    the classifier reads (int64 times and flags, float64 others: always so from a ``TickSeries``),
    so the lists hold what ``_tick_columns`` would; else None (the array path converts them)."""
    if columns["time_ms"].shape[0] > FEW_TICKS:
        return None
    out: dict[str, list | None] = {}
    for name, values in columns.items():
        if values is not None:
            if values.dtype != (_INT64 if name in _INT_COLUMNS else _FLOAT64) or values.ndim != 1:
                return None
            values = values.tolist()
        out[name] = values
    return out


def _goes_backwards(times: list[int] | np.ndarray) -> bool:
    """Some tick time is earlier than the one before it."""
    if isinstance(times, list):
        return times != sorted(times)  # integers: unsorted exactly when one is below the one before
    return times.shape[0] > 1 and bool(np.logical_or.reduce(times[1:] < times[:-1]))  # .any() minus its layers


def _first_new(times: list[int] | np.ndarray, start_ms: int, skip_at_start: int) -> int:
    """Index of the first tick not taken yet in ``times`` (ascending): the ticks before
    ``start_ms`` and the first ``skip_at_start`` ticks at exactly ``start_ms`` were taken before."""
    first = bisect_left(times, start_ms)
    if skip_at_start:
        at_start = bisect_right(times, start_ms) - first
        first += min(skip_at_start, at_start)
    return first


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
