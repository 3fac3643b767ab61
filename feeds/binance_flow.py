"""The delta engine shared between the Binance stream thread (writer) and monitors (readers).

``OrderFlowEngine`` is pure and unlocked; this wrapper puts every call behind one lock, held for
microseconds (a trade update is about 1 us, a 300 s metrics query about 0.1 ms). Engines are
keyed by Binance symbol; ``metrics_for`` maps a config symbol (e.g. BTCUSD) through the
``binance.symbols`` config map and returns None for symbols without an exchange tape.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

from engines.order_flow import FlowBar, FlowBarColumns, FlowMetrics, OrderFlowEngine, SecondSeries, TradeStatus
from feeds.binance import BinanceAggTradeStream, StreamSettings
from feeds.binance_frames import AggTrade


class SharedOrderFlow:
    """Thread-safe facade over ``OrderFlowEngine``; ``on_trade`` is the stream's callback."""

    def __init__(self, engine: OrderFlowEngine, symbol_map: dict[str, str] | None = None) -> None:
        self.engine = engine
        self.symbol_map = dict(symbol_map or {})
        self._lock = threading.Lock()

    def on_trade(self, trade: AggTrade) -> TradeStatus:
        with self._lock:
            return self.engine.add_trade(trade.symbol, trade.id, trade.price, trade.qty, trade.time_ms,
                                         trade.is_buyer_maker)

    def get_metrics(self, symbol: str, window_seconds: int, now_ms: int) -> FlowMetrics | None:
        with self._lock:
            return self.engine.get_metrics(symbol, window_seconds, now_ms)

    def get_metrics_many(self, symbol: str, windows_seconds: Sequence[int], now_ms: int, slope: bool = True
                         ) -> list[FlowMetrics | None]:
        """``get_metrics`` of each window from one pass over the tape, under one lock
        (``slope=False``: without the CVD slopes, ``engines.order_flow.SymbolFlow.metrics_many``)."""
        with self._lock:
            return self.engine.get_metrics_many(symbol, windows_seconds, now_ms, slope)

    def metrics_for(self, config_symbol: str, window_seconds: int, now_ms: int) -> FlowMetrics | None:
        """Metrics for a config symbol (BTCUSD -> BTCUSDT); None without a tape or without trades."""
        binance_symbol = self.symbol_map.get(config_symbol)
        if binance_symbol is None:
            return None
        return self.get_metrics(binance_symbol, window_seconds, now_ms)

    def all_metrics(self, symbol: str, now_ms: int) -> dict[int, FlowMetrics]:
        with self._lock:
            return self.engine.all_metrics(symbol, now_ms)

    def seconds(self, symbol: str, window_seconds: int, now_ms: int) -> SecondSeries | None:
        with self._lock:
            return self.engine.seconds(symbol, window_seconds, now_ms)

    def bars(self, symbol: str, seconds: int = 60, include_forming: bool = True) -> list[FlowBar]:
        with self._lock:
            return self.engine.bars(symbol, seconds, include_forming)

    def bar_columns(self, symbol: str, seconds: int = 60, include_forming: bool = True,
                    since_ms: int | None = None, before: int = 0) -> FlowBarColumns:
        """``bars`` as columns, the recent ones only with ``since_ms`` and ``before``
        (``engines.order_flow.SymbolFlow.bar_columns``): what the order-flow monitor reads."""
        with self._lock:
            return self.engine.bar_columns(symbol, seconds, include_forming, since_ms, before)

    def mark_discontinuity(self, symbol: str) -> None:
        with self._lock:
            self.engine.mark_discontinuity(symbol)

    def stats(self, symbol: str) -> dict[str, Any]:
        with self._lock:
            return self.engine.stats(symbol)


def build_order_flow_feed(order_flow_config: Any, *, store: Any = None, clock: Any = None,
                          session: Any = None) -> tuple[SharedOrderFlow, BinanceAggTradeStream | None]:
    """Wire the engine and the stream from ``OrderFlowConfig`` (the stream is not started).

    Returns ``(flow, None)`` when the Binance stream is disabled or maps no symbol.
    """
    engine = OrderFlowEngine.from_config(order_flow_config.flow)
    binance = order_flow_config.binance
    flow = SharedOrderFlow(engine, binance.symbols)
    if not binance.enabled or not binance.symbols:
        return flow, None
    stream = BinanceAggTradeStream(StreamSettings.from_config(binance), flow.on_trade, store=store,
                                   clock=clock, session=session)
    return flow, stream
