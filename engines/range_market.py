"""One symbol's market state at one instant: closed bars on M5/M15/H1 and every indicator value
the range rules read, computed once and shared by detection, filters, strategies, scorer and
exits (so entry and exit decisions see the same numbers).

Timeframes: entries run on closed M5 bars. M15 is always aggregated from those M5 bars (only
complete buckets). H1 comes from ``bars_h1`` when given (its forming bar dropped), else it is
aggregated from M5 the same way; with the default 720 M5 bars that is about 60 H1 bars, enough
for ADX(14).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from config.range_scalp_model import RangeScalpParams
from engines.indicators import bollinger, rsi, session_vwap
from engines.range_data import (
    H1, M5, M15, Bars, Quote, RangeFlow, aggregate, bar_problem, epoch_s, to_bars, to_flow, to_quote,
)
from engines.range_indicators import candle_cvd, ema_direction, mean_atr, rolling_vwap, stochastic
from engines.range_metrics import (
    BreakOfStructure, Divergence, body_expansion, bb_width_expansion_pct, break_of_structure,
    effective_atr, expansion_state, step_divergence, vwap_momentum,
)
from engines.range_sessions import session_key_at, session_range_start, trading_day_start
from engines.indicators import adx as adx_indicator

_MTF_TAIL = 200  # bars fed to the direction EMA: ~10 periods, so the seed no longer matters
_WILDER_TAIL_PERIODS = 20  # Wilder RSI over 20 periods of bars: the seed's weight is < 1e-8 by then


@dataclass(frozen=True)
class MarketInputs:
    """Normalised inputs: closed bars only, the quote and the optional order flow."""

    symbol: str
    now_s: float
    m5: Bars
    m15: Bars
    h1: Bars
    quote: Quote
    flow: RangeFlow | None
    raw_m5_count: int  # closed M5 bars before the lookback cut (for the data-quality report)


def read_inputs(bars_m5: Any, bars_h1: Any, quote: Any, params: RangeScalpParams, symbol: str,
                now: Any, flow: Any = None) -> MarketInputs:
    """Convert and cut the inputs; raises ValueError (naming the input) on unreadable data."""
    now_s = epoch_s(now)
    m5_all = to_bars(bars_m5, M5, "bars_m5").closed_at(now_s)
    m5 = m5_all.tail(params.data.lookback_m5_bars)
    m15 = aggregate(m5, M15, now_s)
    if bars_h1 is None:
        h1 = aggregate(m5, H1, now_s)
    else:
        h1 = to_bars(bars_h1, H1, "bars_h1").closed_at(now_s).tail(params.data.lookback_h1_bars)
    return MarketInputs(symbol, now_s, m5, m15, h1, to_quote(quote), to_flow(flow), len(m5_all))


def input_problem(inputs: MarketInputs) -> str | None:
    """Bad market data in the bars actually used (NaN, order, high < low...), or None."""
    for bars, what in ((inputs.m5, "M5 bars"), (inputs.h1, "H1 bars")):
        if len(bars):
            problem = bar_problem(bars, what)
            if problem:
                return problem
    return None


@dataclass(frozen=True)
class DayLevels:
    high: float
    low: float
    day_start_s: int


@dataclass(frozen=True)
class RangeMarket:
    """Indicator values at the last closed M5 bar plus the live quote. ``price`` is the mid
    quote (analysis); orders use the ask (buys) or bid (sells)."""

    inputs: MarketInputs
    price: float
    atr: float  # simple-mean ATR(14) on M5
    atr_eff: float  # effective ATR (A6.1)
    atr_m15: float
    atr_h1: float
    atr_h1_prev: float
    rsi: float
    stoch_k: float
    stoch_d: float
    bb_upper: float
    bb_middle: float
    bb_lower: float
    bb_width: float  # fraction of the middle band
    vwap: float  # session VWAP (the range mid)
    vwap_momentum: float  # ATRe per M15 bar, signed
    bb_expansion_pct: float | None
    expansion_state: str
    adx: float  # H1 ADX; NaN when H1 history is too short
    volume_current: float
    volume_avg: float
    previous_day: DayLevels | None
    previous_day_note: str
    directions: dict[str, int]  # 'm5' / 'm15' / 'h1' -> +1 up, -1 down, 0 flat
    session_key: str
    bos: BreakOfStructure | None
    body_expansion: bool
    body_expansion_ratio: float
    candle_divergence: Divergence | None

    @property
    def now_s(self) -> float:
        return self.inputs.now_s

    @property
    def m5(self) -> Bars:
        return self.inputs.m5

    @property
    def m15(self) -> Bars:
        return self.inputs.m15

    @property
    def flow(self) -> RangeFlow | None:
        return self.inputs.flow

    @property
    def quote(self) -> Quote:
        return self.inputs.quote


def _last(values: np.ndarray) -> float:
    return float(values[-1]) if len(values) else math.nan


def previous_day_levels(m5: Bars, now_s: float, day_start_hour_utc: int, min_hours: float
                        ) -> tuple[DayLevels | None, str]:
    """High and low of the last complete trading day before the current one. A day shorter than
    ``min_hours`` (a Sunday open) is skipped for the one before it. The day must be fully inside
    the bars given (a bar before it exists), otherwise its levels would be partial."""
    day_start = trading_day_start(now_s, day_start_hour_utc)
    end = int(np.searchsorted(m5.time, day_start, side="left"))
    while end > 0:
        start_s = trading_day_start(float(m5.time[end - 1]), day_start_hour_utc)
        start = int(np.searchsorted(m5.time, start_s, side="left"))
        span_h = (m5.time[end - 1] + m5.period_s - m5.time[start]) / 3600.0
        if start == 0 and m5.time[0] > start_s:
            return None, "previous day not fully inside the bars given"
        if span_h >= min_hours:
            return DayLevels(float(m5.high[start:end].max()), float(m5.low[start:end].min()), start_s), ""
        end = start
    return None, "no previous day in the bars given"


def compute_market(inputs: MarketInputs, params: RangeScalpParams) -> RangeMarket:
    """All indicator values the range rules use. Needs at least ``data.min_bars_m5`` M5 bars
    (the data-quality check runs first); values without enough history are NaN or None."""
    ind, inv = params.indicators, params.invalidation
    m5, m15, h1 = inputs.m5, inputs.m15, inputs.h1
    price = inputs.quote.mid

    atr = _last(mean_atr(m5.high, m5.low, m5.close, ind.atr_period))
    bands = bollinger(m5.close[-(ind.bb_period + 1):], ind.bb_period, ind.bb_std)
    bb_width = _last(bands.width)
    atr_eff = effective_atr(atr, bb_width, price, ind.bb_width_multiplier, ind.effective_atr)
    k, d = stochastic(m5.high[-(ind.stoch_k + ind.stoch_d):], m5.low[-(ind.stoch_k + ind.stoch_d):],
                      m5.close[-(ind.stoch_k + ind.stoch_d):], ind.stoch_k, ind.stoch_d)
    vwap_line = session_vwap(m5.time, m5.high, m5.low, m5.close, m5.volume, ind.vwap_anchor_hour_utc).vwap

    atr_m15 = _last(mean_atr(m15.high, m15.low, m15.close, ind.atr_period)) if len(m15) > ind.atr_period else math.nan
    momentum = 0.0
    if len(m15) >= inv.vwap_window_m15 + inv.vwap_momentum_bars - 1:
        window = m15.slice(len(m15) - (inv.vwap_window_m15 + inv.vwap_momentum_bars - 1), len(m15))
        rolling = rolling_vwap(window.high, window.low, window.close, window.volume, inv.vwap_window_m15)
        momentum = vwap_momentum(rolling[-inv.vwap_momentum_bars:], atr_eff)

    atr_h1_line = mean_atr(h1.high, h1.low, h1.close, ind.atr_period) if len(h1) > ind.atr_period else np.array([])
    lookback = params.detection.anchor_atr_lookback_h1_bars
    atr_h1_prev = float(atr_h1_line[-1 - lookback]) if len(atr_h1_line) > lookback else math.nan
    adx_value = _last(adx_indicator(h1.high, h1.low, h1.close, ind.adx_period).adx) if len(h1) else math.nan

    volume_window = m5.volume[-ind.volume_avg_bars:]
    day, note = previous_day_levels(m5, inputs.now_s, params.detection.day_start_hour_utc,
                                    params.detection.min_previous_day_hours)
    det = params.detection
    bos = None
    if len(m15) and math.isfinite(atr_m15):
        bos = break_of_structure(m15.high, m15.low, m15.close, atr_m15, det.bos_threshold_atr,
                                 det.bos_swing_count, det.swing_left, det.swing_right, det.bos_min_bars)
    body_fires, body_ratio = body_expansion(m15.open, m15.close, params.false_range.body_expansion_multiplier)
    divergence = None
    if len(m15) >= 20:
        tail = m15.tail(20)
        divergence = step_divergence(tail.close, candle_cvd(tail.open, tail.close, tail.volume))

    return RangeMarket(
        inputs=inputs, price=price, atr=atr, atr_eff=atr_eff, atr_m15=atr_m15,
        atr_h1=_last(atr_h1_line), atr_h1_prev=atr_h1_prev,
        rsi=_last(rsi(m5.close[-_WILDER_TAIL_PERIODS * ind.rsi_period:], ind.rsi_period)), stoch_k=_last(k), stoch_d=_last(d),
        bb_upper=_last(bands.upper), bb_middle=_last(bands.middle), bb_lower=_last(bands.lower),
        bb_width=bb_width, vwap=_last(vwap_line), vwap_momentum=momentum,
        bb_expansion_pct=bb_width_expansion_pct(m5.close[-max(inv.bb_expansion_min_bars, 61):],
                                                ind.bb_period, inv.bb_expansion_min_bars),
        expansion_state=expansion_state(m15.high[-60:], m15.low[-60:], m15.close[-60:], ind.atr_period,
                                        ind.bb_period, det.expansion_ratio_high, det.expansion_ratio_low),
        adx=adx_value,
        volume_current=_last(m5.volume), volume_avg=float(volume_window.mean()) if len(volume_window) else math.nan,
        previous_day=day, previous_day_note=note,
        directions={
            "m5": ema_direction(m5.close[-_MTF_TAIL:], ind.mtf_ema_period, ind.mtf_slope_bars),
            "m15": ema_direction(m15.close[-_MTF_TAIL:], ind.mtf_ema_period, ind.mtf_slope_bars),
            "h1": ema_direction(h1.close[-_MTF_TAIL:], ind.mtf_ema_period, ind.mtf_slope_bars),
        },
        session_key=session_key_at(inputs.now_s, params.sessions),
        bos=bos, body_expansion=body_fires, body_expansion_ratio=body_ratio, candle_divergence=divergence,
    )


def session_start_s(market: RangeMarket, params: RangeScalpParams) -> int:
    return session_range_start(market.now_s, params.detection.session_starts_utc)
