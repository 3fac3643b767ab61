"""order_flow.json: delta/CVD scalping from the Binance tape and an MT5 tick proxy.

Sections beyond the strategy switches:
- ``binance``: where the aggTrade tape comes from (spot or USD-M futures), how the stream
  reconnects, how gaps are backfilled and which config symbol maps to which Binance symbol.
- ``flow``: the delta engine's windows and bar timeframes. The engine keeps one-second buckets
  in a ring sized for the longest window, so every window up to that length is exact.
- ``proxy``: order flow from MT5 ticks for symbols with no Binance mapping (gold, FX); a proxy
  (tick-rule pressure, no real aggressor side): give those symbols conservative ``overrides``.
- ``flip_exit``: close a position when the windowed delta turns against it (-0.8 x entry delta).
Per-symbol ``defaults``/``overrides`` hold the signal thresholds, the entry gates (session,
cooldown, open trades, flow freshness) and the stop/target rules.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from config.base import StrategyConfig, StrictModel, SymbolParams

MARKET_ENDPOINTS: dict[str, tuple[str, str]] = {
    # market -> (websocket base URL, REST base URL)
    "spot": ("wss://stream.binance.com:9443", "https://api.binance.com"),
    "usdm": ("wss://fstream.binance.com", "https://fapi.binance.com"),
}
BINANCE_SYMBOL = re.compile(r"^[A-Z0-9_]{2,32}$")
MAX_WINDOW_SECONDS = 86_400  # one day of one-second buckets (about 6 MB per symbol)


class BinanceStreamConfig(StrictModel):
    """The aggTrade websocket and its REST backfill. URLs are config so tests can use 127.0.0.1."""

    enabled: bool = True
    market: Literal["spot", "usdm"] = "spot"
    ws_url: str = Field("", description="websocket base URL; empty = the market's default")
    rest_url: str = Field("", description="REST base URL; empty = the market's default")
    symbols: dict[str, str] = Field(
        default_factory=dict,
        description='config symbol name -> Binance symbol streamed for it, e.g. {"BTCUSD": "BTCUSDT"}')
    connect_timeout_seconds: float = Field(10.0, ge=1, le=60)
    reconnect_initial_seconds: float = Field(1.0, ge=0.5, le=60,
                                             description="first backoff; doubles per failure")
    reconnect_max_seconds: float = Field(60.0, ge=1, le=900)
    stable_connection_seconds: float = Field(
        60.0, ge=1, le=3600, description="a connection that lived this long resets the backoff")
    planned_reconnect_hours: float = Field(23.5, gt=0, lt=24,
                                           description="reconnect before Binance's 24 h cut")
    idle_reconnect_seconds: float = Field(120.0, ge=10, le=900,
                                          description="reconnect when nothing (not even a ping) arrives")
    backfill_max_pages: int = Field(20, ge=0, le=1000,
                                    description="gaps needing more pages are not filled (0 = never)")
    backfill_page_limit: int = Field(1000, ge=1, le=1000)
    backfill_min_interval_seconds: float = Field(0.25, ge=0.05, le=60,
                                                 description="at most one REST request per interval")
    rest_timeout_seconds: float = Field(10.0, ge=1, le=60)
    max_buffered_frames: int = Field(100_000, ge=100, le=5_000_000,
                                     description="live trades held while a gap is backfilled")
    state_save_seconds: float = Field(5.0, ge=1, le=3600,
                                      description="cadence of saving the last ids")

    @model_validator(mode="before")
    @classmethod
    def _market_default_urls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            market = data.get("market", "spot")
            if market in MARKET_ENDPOINTS:
                ws_default, rest_default = MARKET_ENDPOINTS[market]
                data = dict(data)
                if not data.get("ws_url"):
                    data["ws_url"] = ws_default
                if not data.get("rest_url"):
                    data["rest_url"] = rest_default
        return data

    @field_validator("ws_url")
    @classmethod
    def _ws_scheme(cls, value: str) -> str:
        if value and not re.match(r"^wss?://[^\s/?#]+(/[^\s?#]*)?$", value):
            raise ValueError("a websocket URL starts with ws:// or wss:// and has no query")
        return value.rstrip("/")

    @field_validator("rest_url")
    @classmethod
    def _rest_scheme(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", value):
            raise ValueError("a REST URL starts with http:// or https:// and has no query")
        return value.rstrip("/")

    @field_validator("symbols")
    @classmethod
    def _binance_symbols(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(v for v in value.values() if not BINANCE_SYMBOL.match(v))
        if bad:
            raise ValueError(f"Binance symbols are upper-case letters, digits or _: {', '.join(bad)}")
        if len(set(value.values())) != len(value):
            raise ValueError("two config symbols map to the same Binance symbol")
        return value

    @model_validator(mode="after")
    def _backoff_consistent(self) -> "BinanceStreamConfig":
        if self.reconnect_max_seconds < self.reconnect_initial_seconds:
            raise ValueError("reconnect_max_seconds must be >= reconnect_initial_seconds")
        return self

    def binance_symbol(self, config_symbol: str) -> str | None:
        """The Binance symbol streamed for ``config_symbol`` (None: no exchange tape, use the proxy)."""
        return self.symbols.get(config_symbol)


class FlowEngineConfig(StrictModel):
    """Windows served by the delta engine and the bars it builds."""

    windows_seconds: list[int] = Field(default_factory=lambda: [30, 60, 300, 900])
    bar_seconds: list[int] = Field(default_factory=lambda: [60, 300],
                                   description="bar timeframes built from the tape (M1, M5)")
    bar_history: int = Field(1440, ge=10, le=100_000, description="completed bars kept per timeframe")

    @field_validator("windows_seconds")
    @classmethod
    def _windows(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("at least one window is needed")
        bad = [w for w in value if not 1 <= w <= MAX_WINDOW_SECONDS]
        if bad:
            raise ValueError(f"windows must be 1..{MAX_WINDOW_SECONDS} s, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError("windows must be unique")
        return sorted(value)

    @field_validator("bar_seconds")
    @classmethod
    def _bars(cls, value: list[int]) -> list[int]:
        bad = [b for b in value if b < 1 or b > MAX_WINDOW_SECONDS or MAX_WINDOW_SECONDS % b]
        if bad:
            raise ValueError(f"bar timeframes must divide one day evenly (e.g. 60, 300), got {bad}")
        if len(set(value)) != len(value):
            raise ValueError("bar timeframes must be unique")
        return sorted(value)

    @property
    def ring_seconds(self) -> int:
        """One-second buckets kept per symbol: enough for the longest window."""
        return max(self.windows_seconds)


class TickProxyConfig(StrictModel):
    """Proxy order flow from MT5 ticks (see engines/tick_proxy.py for the rules and limits)."""

    enabled: bool = True
    warmup_seconds: int = Field(1800, ge=60, le=86_400,
                                description="history fetched on the first poll and after an outage")
    flow: FlowEngineConfig = Field(default_factory=FlowEngineConfig)


class FlipExitConfig(StrictModel):
    """Order-flow flip exit: a buy entered on positive delta closes when the delta over
    ``window_seconds`` falls to -threshold x the entry delta (a sell mirrors it). No data means
    no exit (the broker-side stop loss still protects the position)."""

    enabled: bool = True
    threshold: float = Field(0.8, gt=0, le=10, description="fraction of the entry delta, opposite sign")
    window_seconds: int = Field(30, ge=1, le=MAX_WINDOW_SECONDS, description="window of the current delta")
    min_hold_seconds: float = Field(0.0, ge=0, le=86_400, description="no flip exit before this age")
    apply_to_proxy: bool = Field(True, description="also flip-exit trades whose flow is the tick proxy")


SIGNAL_NAMES = ("absorption", "delta_divergence", "liquidity_sweep", "cvd_divergence", "vwap_deviation")


class OrderFlowParams(SymbolParams):
    """Per-symbol order-flow parameters: signal thresholds in the instrument's own units (ATR,
    fractions of volume, standard deviations) and the classifier's weights and threshold.
    Field names match ``engines.order_flow_signals.SignalParams``."""

    pattern_weights: dict[str, float] = Field(
        default_factory=lambda: {"absorption": 0.30, "delta_divergence": 0.25, "liquidity_sweep": 0.20,
                                 "cvd_divergence": 0.15, "vwap_deviation": 0.10},
        description="classifier weights (normalised to sum to 1)")
    pattern_threshold: float = Field(0.75, gt=0, le=1, description="score needed to trade")
    atr_period: int = Field(14, ge=2, le=200)
    pivot_lookback_bars: int = Field(20, ge=5, le=500, description="M1 bars searched for swing pivots")
    cvd_div_price_atr: float = Field(1.0, gt=0, le=20, description="pivot price gap (ATR) for full strength")
    delta_div_bars: int = Field(10, ge=3, le=500)
    delta_div_price_threshold: float = Field(0.5, gt=0, le=20, description="price trend over the bars, ATR")
    delta_div_delta_threshold: float = Field(0.5, gt=0, le=50, description="delta trend, in mean |delta|")
    absorption_window_seconds: int = Field(60, ge=5, le=3600)
    absorption_volume_ratio: float = Field(2.0, gt=0, le=100, description="window volume / typical volume")
    absorption_imbalance: float = Field(0.3, gt=0, le=1, description="|buy - sell| / (buy + sell)")
    absorption_max_move_atr: float = Field(0.25, gt=0, le=10, description="price range in the window, ATR")
    absorption_typical_bars: int = Field(30, ge=1, le=1440)
    sweep_lookback_bars: int = Field(60, ge=10, le=1440)
    sweep_recent_bars: int = Field(3, ge=1, le=60)
    sweep_cluster_atr: float = Field(0.1, ge=0, le=5, description="equal highs/lows tolerance, ATR")
    sweep_reclaim_atr: float = Field(0.25, gt=0, le=10, description="reclaim distance for full strength, ATR")
    vwap_bars: int = Field(200, ge=20, le=5000)
    vwap_min_sigma: float = Field(1.0, gt=0, le=10)
    vwap_full_sigma: float = Field(2.0, gt=0, le=10)

    # --- entry gates (the monitor) -----------------------------------------------------------
    sessions_utc: list[tuple[int, int]] = Field(
        default_factory=list,
        description="[start, end) UTC hours when entries are allowed; start > end wraps midnight; "
                    "end may be 24; empty = always")
    cooldown_seconds: float = Field(300.0, ge=0, le=86_400,
                                    description="after an entry attempt, an open or a close on the symbol")
    max_open_trades: int = Field(1, ge=1, le=20, description="open order-flow trades per symbol")
    max_flow_age_seconds: float = Field(
        10.0, gt=0, le=3600, description="newest trade (or proxy tick) older than this: flow is stale")
    entry_delta_window_seconds: int = Field(30, ge=1, le=MAX_WINDOW_SECONDS,
                                            description="window of the entry delta stored with the trade")
    require_entry_delta_agreement: bool = Field(
        False, description="enter only when the entry delta has the trade's sign (the flip exit is then armed)")

    # --- stops and targets ------------------------------------------------------------------
    stop_mode: Literal["atr", "absorption"] = Field(
        "absorption", description="absorption: stop beyond an agreeing absorption zone, else ATR")
    sl_atr: float = Field(1.0, gt=0, le=20, description="ATR-mode stop distance, in M1 ATR")
    tp_atr: float = Field(1.5, gt=0, le=50, description="ATR-mode target distance, in M1 ATR")
    zone_buffer_atr: float = Field(0.1, ge=0, le=5, description="stop this far beyond the zone, in ATR")
    zone_tp_r: float = Field(1.5, gt=0, le=20, description="zone-mode target, in multiples of the stop")
    min_sl_atr: float = Field(0.3, gt=0, le=20, description="stops are never closer than this")
    max_sl_atr: float = Field(3.0, gt=0, le=50, description="stops are never farther than this")
    min_sl_spreads: float = Field(2.0, ge=0, le=50,
                                  description="stops are never closer than this many current spreads")

    @field_validator("pattern_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(SIGNAL_NAMES))
        if unknown:
            raise ValueError(f"unknown signals {', '.join(unknown)}; known: {', '.join(SIGNAL_NAMES)}")
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        return value

    @field_validator("sessions_utc")
    @classmethod
    def _sessions(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for start, end in value:
            if not (0 <= start <= 23 and 1 <= end <= 24 and start != end):
                raise ValueError(f"session [{start}, {end}] must be 0<=start<=23, 1<=end<=24, start!=end")
        return value

    @model_validator(mode="after")
    def _sigmas(self) -> "OrderFlowParams":
        if self.vwap_full_sigma < self.vwap_min_sigma:
            raise ValueError("vwap_full_sigma must be >= vwap_min_sigma")
        if self.max_sl_atr < self.min_sl_atr:
            raise ValueError("max_sl_atr must be >= min_sl_atr")
        return self

    def in_session(self, hour_utc: int) -> bool:
        """True when entries are allowed at this UTC hour (no sessions configured: always)."""
        if not self.sessions_utc:
            return True
        for start, end in self.sessions_utc:
            if (start < end and start <= hour_utc < end) or (start > end and (hour_utc >= start or hour_utc < end)):
                return True
        return False

    @property
    def bars_needed(self) -> int:
        """Closed M1 bars every detector and the ATR need."""
        return max(self.atr_period + 1, self.pivot_lookback_bars, self.delta_div_bars,
                   self.sweep_lookback_bars + self.sweep_recent_bars, self.vwap_bars)


class OrderFlowConfig(StrategyConfig):
    params_model = OrderFlowParams
    interval_seconds: float = Field(5.0, ge=0.5, le=3600)
    defaults: OrderFlowParams = Field(default_factory=OrderFlowParams)
    overrides: dict[str, OrderFlowParams] = Field(default_factory=dict)
    binance: BinanceStreamConfig = Field(default_factory=BinanceStreamConfig)
    flow: FlowEngineConfig = Field(default_factory=FlowEngineConfig)
    proxy: TickProxyConfig = Field(default_factory=TickProxyConfig)
    flip_exit: FlipExitConfig = Field(default_factory=FlipExitConfig)

    @model_validator(mode="after")
    def _mapped_symbols_listed(self) -> "OrderFlowConfig":
        unknown = sorted(set(self.binance.symbols) - set(self.symbols))
        if unknown:
            raise ValueError(f"binance.symbols maps symbols not listed in 'symbols': {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _windows_fit_the_rings(self) -> "OrderFlowConfig":
        """Every window the monitor asks for must fit the ring of the engine that serves it."""
        for symbol in [None, *self.symbols]:
            params = self.defaults if symbol is None else self.for_symbol(symbol)
            uses_tape = symbol is not None and self.uses_binance(symbol)
            ring, where = ((self.flow.ring_seconds, "flow") if uses_tape
                           else (self.proxy.flow.ring_seconds, "proxy.flow"))
            rings = [(ring, where)] if symbol is not None else [
                (self.flow.ring_seconds, "flow"), (self.proxy.flow.ring_seconds, "proxy.flow")]
            for ring, where in rings:
                for name in ("absorption_window_seconds", "entry_delta_window_seconds"):
                    if getattr(params, name) > ring:
                        raise ValueError(f"{name} {getattr(params, name)} of {symbol or 'defaults'} is longer "
                                         f"than the longest {where}.windows_seconds ({ring})")
                if self.flip_exit.window_seconds > ring:
                    raise ValueError(f"flip_exit.window_seconds {self.flip_exit.window_seconds} is longer than "
                                     f"the longest {where}.windows_seconds ({ring})")
        return self

    def uses_binance(self, symbol: str) -> bool:
        """The symbol's flow comes from the Binance tape (mapped and the stream enabled)."""
        return self.binance.enabled and symbol in self.binance.symbols

    def flow_source(self, symbol: str) -> str | None:
        """'binance', 'tick_proxy' or None (no flow: entries on the symbol fail closed)."""
        if self.uses_binance(symbol):
            return "binance"
        return "tick_proxy" if self.proxy.enabled else None
