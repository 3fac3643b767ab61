"""One symbol's market state at one instant: closed bars on M5/M15/H1 and every indicator value
the range rules read, computed once and shared by detection, filters, strategies, scorer and
exits (so entry and exit decisions see the same numbers).

Timeframes: entries run on closed M5 bars. M15 is always aggregated from those M5 bars (only
complete buckets). H1 comes from ``bars_h1`` when given (its forming bar dropped), else it is
aggregated from M5 the same way; with the default 720 M5 bars that is about 60 H1 bars, enough
for ADX(14).

The market is built in two parts: ``MarketCore`` holds what range detection and the ADX gate
read (``market_core``), ``RangeMarket`` adds the rest (``complete_market``), so an entry check
whose decision those gates already make can stop early. ``MarketMemo`` (owned by the caller,
one per symbol) reuses results of exactly identical inputs: the H1 values while the H1 bars do
not change, the M15 values while the newest M15 bars do not, and a whole market when the exit
pass and the entry check of one step see the same inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from config.range_scalp_model import RangeScalpParams
from engines.indicators import adx as adx_indicator
from engines.range_data import (
    H1, M5, M15, Bars, Quote, RangeFlow, aggregate, bar_problem, epoch_s, to_bars, to_flow, to_quote,
)
from engines.range_indicators import (
    bollinger_last, candle_cvd, ema_direction, mean_atr_last, rolling_vwap, rsi_last, session_vwap_last,
    stochastic_last,
)
from engines.range_metrics import (
    BreakOfStructure, Divergence, body_expansion, bb_width_expansion_pct, bos_from_levels, break_of_structure,
    effective_atr, expansion_state, step_divergence, swing_levels, vwap_momentum,
)
from engines.range_sessions import session_key_at, session_range_start, trading_day_start

_MTF_TAIL = 200  # bars fed to the direction EMA: ~10 periods, so the seed no longer matters
_WILDER_TAIL_PERIODS = 20  # Wilder RSI over 20 periods of bars: the seed's weight is < 1e-8 by then
_EXPANSION_TAIL = 60  # M15 bars of the expansion state
_DIVERGENCE_TAIL = 20  # M15 bars of the candle-CVD divergence
_BODY_TAIL = 15  # body expansion reads the last 15 bodies (the first 5 of a shorter series)


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


def input_problem(inputs: MarketInputs, memo: "MarketMemo | None" = None) -> str | None:
    """Bad market data in the bars actually used (NaN, order, high < low...), or None."""
    for bars, what in ((inputs.m5, "M5 bars"), (inputs.h1, "H1 bars")):
        if len(bars):
            problem = memo.bar_problem(bars, what) if memo is not None and bars is inputs.h1 else bar_problem(bars, what)
            if problem:
                return problem
    return None


@dataclass(frozen=True)
class DayLevels:
    high: float
    low: float
    day_start_s: int


@dataclass(frozen=True)
class MarketCore:
    """What range detection and the ADX gate read. ``price`` is the mid quote (analysis);
    orders use the ask (buys) or bid (sells)."""

    inputs: MarketInputs
    price: float
    atr: float  # simple-mean ATR(14) on M5
    atr_eff: float  # effective ATR (A6.1)
    atr_h1: float
    atr_h1_prev: float
    bb_upper: float
    bb_middle: float
    bb_lower: float
    bb_width: float  # fraction of the middle band
    vwap: float  # session VWAP (the range mid)
    expansion_state: str
    adx: float  # H1 ADX; NaN when H1 history is too short
    previous_day: DayLevels | None
    previous_day_note: str
    session_key: str
    # what the rest of the market is built from (not compared, not shown)
    m15_values: M15Values = field(repr=False, compare=False)
    h1_values: H1Values = field(repr=False, compare=False)

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


@dataclass(frozen=True)
class RangeMarket(MarketCore):
    """Indicator values at the last closed M5 bar plus the live quote: the core and the rest."""

    atr_m15: float
    rsi: float
    stoch_k: float
    stoch_d: float
    vwap_momentum: float  # ATRe per M15 bar, signed
    bb_expansion_pct: float | None
    volume_current: float
    volume_avg: float
    directions: dict[str, int]  # 'm5' / 'm15' / 'h1' -> +1 up, -1 down, 0 flat
    bos: BreakOfStructure | None
    body_expansion: bool
    body_expansion_ratio: float
    candle_divergence: Divergence | None


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
            return (DayLevels(float(np.maximum.reduce(m5.high[start:end])),
                              float(np.minimum.reduce(m5.low[start:end])), start_s), "")
        end = start
    return None, "no previous day in the bars given"


@dataclass(frozen=True)
class H1Values:
    """What the market reads from the H1 bars."""

    atr: float  # simple-mean ATR(14) at the last H1 bar
    atr_prev: float  # the same ``anchor_atr_lookback_h1_bars`` bars earlier
    adx: float
    direction: int


def h1_values(h1: Bars, params: RangeScalpParams) -> H1Values:
    ind = params.indicators
    n, lookback = len(h1), params.detection.anchor_atr_lookback_h1_bars
    atr = mean_atr_last(h1.high, h1.low, h1.close, ind.atr_period) if n > ind.atr_period else math.nan
    end = n - lookback  # the bar ``lookback`` bars before the last, exclusive end
    atr_prev = (mean_atr_last(h1.high[:end], h1.low[:end], h1.close[:end], ind.atr_period)
                if n > ind.atr_period and end > 0 else math.nan)
    adx_value = _last(adx_indicator(h1.high, h1.low, h1.close, ind.adx_period).adx) if n else math.nan
    direction = ema_direction(h1.close[-_MTF_TAIL:], ind.mtf_ema_period, ind.mtf_slope_bars)
    return H1Values(atr, atr_prev, adx_value, direction)


@dataclass(frozen=True)
class M15Values:
    """What the market reads from the newest M15 bars (``m15_tail_size`` of them)."""

    atr: float  # simple-mean ATR(14)
    rolling_vwap: np.ndarray | None  # the momentum window's rolling VWAP, None: too few bars
    bos: BreakOfStructure | None
    bos_known: bool  # False: the tail holds too few swing points, BOS needs all the bars
    body_expansion: bool
    body_expansion_ratio: float
    divergence: Divergence | None
    expansion_state: str
    direction: int


def m15_tail_size(params: RangeScalpParams) -> int:
    """The newest M15 bars every M15Values field depends on: each is computed from at most
    this many of the last bars, and branches on lengths up to it (longer series agree)."""
    ind, inv, det = params.indicators, params.invalidation, params.detection
    return max(_MTF_TAIL, _EXPANSION_TAIL, _DIVERGENCE_TAIL, _BODY_TAIL, ind.atr_period + 1, det.bos_min_bars,
               inv.vwap_window_m15 + inv.vwap_momentum_bars - 1)


def m15_values(m15: Bars, total: int, params: RangeScalpParams) -> M15Values:
    """M15Values of ``m15``, the last ``m15_tail_size`` bars of a series of ``total`` bars: the
    same values as computed over all of them (the BOS says when it cannot know)."""
    ind, inv, det = params.indicators, params.invalidation, params.detection
    atr = mean_atr_last(m15.high, m15.low, m15.close, ind.atr_period) if len(m15) > ind.atr_period else math.nan
    rolling = None
    span = inv.vwap_window_m15 + inv.vwap_momentum_bars - 1
    if len(m15) >= span:
        window = m15.slice(len(m15) - span, len(m15))
        rolling = rolling_vwap(window.high, window.low, window.close, window.volume, inv.vwap_window_m15)
    bos, bos_known = None, True
    if len(m15) >= det.bos_min_bars and math.isfinite(atr) and atr > 0:
        highs, lows, found = swing_levels(m15.high, m15.low, det.swing_left, det.swing_right, det.bos_swing_count)
        bos_known = found >= det.bos_swing_count or len(m15) == total
        if bos_known and found:
            bos = bos_from_levels(highs, lows, float(m15.close[-1]), atr, det.bos_threshold_atr)
    body_fires, body_ratio = body_expansion(m15.open[-_BODY_TAIL:], m15.close[-_BODY_TAIL:],
                                            params.false_range.body_expansion_multiplier)
    divergence = None
    if len(m15) >= _DIVERGENCE_TAIL:
        tail = m15.tail(_DIVERGENCE_TAIL)
        divergence = step_divergence(tail.close, candle_cvd(tail.open, tail.close, tail.volume))
    state = expansion_state(m15.high[-_EXPANSION_TAIL:], m15.low[-_EXPANSION_TAIL:], m15.close[-_EXPANSION_TAIL:],
                            ind.atr_period, ind.bb_period, det.expansion_ratio_high, det.expansion_ratio_low)
    return M15Values(atr, rolling, bos, bos_known, body_fires, body_ratio, divergence, state,
                     ema_direction(m15.close[-_MTF_TAIL:], ind.mtf_ema_period, ind.mtf_slope_bars))


def market_core(inputs: MarketInputs, params: RangeScalpParams, memo: MarketMemo | None = None) -> MarketCore:
    """The core values (see MarketCore); ``memo``: the symbol's MarketMemo (speed only)."""
    if memo is not None:
        return memo.core(inputs, params)
    return _market_core(inputs, params, None)


def _market_core(inputs: MarketInputs, params: RangeScalpParams, memo: MarketMemo | None) -> MarketCore:
    ind, det = params.indicators, params.detection
    m5, m15, h1 = inputs.m5, inputs.m15, inputs.h1
    price = inputs.quote.mid
    atr = mean_atr_last(m5.high, m5.low, m5.close, ind.atr_period)
    bb_middle, bb_upper, bb_lower, bb_width = bollinger_last(m5.close[-(ind.bb_period + 1):], ind.bb_period,
                                                             ind.bb_std)
    tail = m15.tail(m15_tail_size(params))
    m15v = memo.m15(tail, len(m15), params) if memo is not None else m15_values(tail, len(m15), params)
    h1v = memo.h1(h1, params) if memo is not None else h1_values(h1, params)
    day, note = previous_day_levels(m5, inputs.now_s, det.day_start_hour_utc, det.min_previous_day_hours)
    return MarketCore(
        inputs=inputs, price=price, atr=atr,
        atr_eff=effective_atr(atr, bb_width, price, ind.bb_width_multiplier, ind.effective_atr),
        atr_h1=h1v.atr, atr_h1_prev=h1v.atr_prev,
        bb_upper=bb_upper, bb_middle=bb_middle, bb_lower=bb_lower, bb_width=bb_width,
        vwap=session_vwap_last(m5.time, m5.high, m5.low, m5.close, m5.volume, ind.vwap_anchor_hour_utc),
        expansion_state=m15v.expansion_state, adx=h1v.adx, previous_day=day, previous_day_note=note,
        session_key=session_key_at(inputs.now_s, params.sessions), m15_values=m15v, h1_values=h1v)


def complete_market(core: MarketCore, params: RangeScalpParams) -> RangeMarket:
    """The core plus every other value the range rules read."""
    ind, inv, det = params.indicators, params.invalidation, params.detection
    m5, m15 = core.m5, core.m15
    m15v, h1v = core.m15_values, core.h1_values
    momentum = 0.0
    if m15v.rolling_vwap is not None:
        momentum = vwap_momentum(m15v.rolling_vwap[-inv.vwap_momentum_bars:], core.atr_eff)
    bos = m15v.bos
    if not m15v.bos_known:  # fewer swing points in the tail than the BOS looks at: all bars decide
        bos = break_of_structure(m15.high, m15.low, m15.close, m15v.atr, det.bos_threshold_atr,
                                 det.bos_swing_count, det.swing_left, det.swing_right, det.bos_min_bars)
    stoch_tail = ind.stoch_k + ind.stoch_d
    stoch_k, stoch_d = stochastic_last(m5.high[-stoch_tail:], m5.low[-stoch_tail:], m5.close[-stoch_tail:],
                                       ind.stoch_k, ind.stoch_d)
    volume_window = m5.volume[-ind.volume_avg_bars:]
    return RangeMarket(
        inputs=core.inputs, price=core.price, atr=core.atr, atr_eff=core.atr_eff, atr_h1=core.atr_h1,
        atr_h1_prev=core.atr_h1_prev, bb_upper=core.bb_upper, bb_middle=core.bb_middle, bb_lower=core.bb_lower,
        bb_width=core.bb_width, vwap=core.vwap, expansion_state=core.expansion_state, adx=core.adx,
        previous_day=core.previous_day, previous_day_note=core.previous_day_note, session_key=core.session_key,
        m15_values=m15v, h1_values=h1v,
        atr_m15=m15v.atr,
        rsi=rsi_last(m5.close[-_WILDER_TAIL_PERIODS * ind.rsi_period:], ind.rsi_period),
        stoch_k=stoch_k, stoch_d=stoch_d, vwap_momentum=momentum,
        bb_expansion_pct=bb_width_expansion_pct(m5.close[-max(inv.bb_expansion_min_bars, 61):],
                                                ind.bb_period, inv.bb_expansion_min_bars),
        volume_current=_last(m5.volume),
        volume_avg=float(np.add.reduce(volume_window) / len(volume_window)) if len(volume_window) else math.nan,
        directions={"m5": ema_direction(m5.close[-_MTF_TAIL:], ind.mtf_ema_period, ind.mtf_slope_bars),
                    "m15": m15v.direction, "h1": h1v.direction},
        bos=bos, body_expansion=m15v.body_expansion, body_expansion_ratio=m15v.body_expansion_ratio,
        candle_divergence=m15v.divergence,
    )


def compute_market(inputs: MarketInputs, params: RangeScalpParams, memo: MarketMemo | None = None) -> RangeMarket:
    """All indicator values the range rules use. Needs at least ``data.min_bars_m5`` M5 bars
    (the data-quality check runs first); values without enough history are NaN or None.
    ``memo``: the symbol's MarketMemo, to reuse results of identical inputs (see there)."""
    if memo is not None:
        return memo.market(inputs, params)
    return complete_market(_market_core(inputs, params, None), params)


def _bars_key(bars: Bars) -> tuple[Any, ...]:
    """The exact content of ``bars``: equal keys, equal bars to the last bit."""
    return (bars.period_s, bars.time.tobytes(), bars.open.tobytes(), bars.high.tobytes(), bars.low.tobytes(),
            bars.close.tobytes(), bars.volume.tobytes())


class MarketMemo:
    """One symbol's last results, reused while their exact inputs come back.

    The H1 bars change once an hour but the engine runs every 5 minutes; the newest M15 bars
    change every third M5 bar; a step that runs the exit pass and the entry check builds the
    same market twice. Every entry is keyed on the exact bytes of the bars it was computed
    from (plus the params object and the other inputs), so a hit returns what the computation
    would return: the memo changes speed, never a result. One slot per kind (the last key).
    The caller owns it (the monitor keeps one per symbol); not thread-safe."""

    def __init__(self) -> None:
        self._h1: tuple[Any, H1Values] | None = None
        self._m15: tuple[Any, M15Values] | None = None
        self._problem: tuple[Any, str | None] | None = None
        self._core: tuple[Any, MarketCore] | None = None
        self._market: tuple[Any, RangeMarket] | None = None
        self._inputs: tuple[MarketInputs, RangeScalpParams, Any] | None = None
        self.hits = 0
        self.misses = 0

    def _found(self, slot: tuple[Any, Any] | None, key: Any) -> bool:
        hit = slot is not None and slot[0] == key
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        return hit

    def h1(self, h1: Bars, params: RangeScalpParams) -> H1Values:
        key = (id(params), params, _bars_key(h1))
        if not self._found(self._h1, key):
            self._h1 = (key, h1_values(h1, params))
        assert self._h1 is not None
        return self._h1[1]

    def m15(self, tail: Bars, total: int, params: RangeScalpParams) -> M15Values:
        """``m15_values`` keyed on the tail: a bar more or less at the head of the lookback
        window (which the tail never reaches) reuses the values."""
        key = (id(params), params, len(tail) == total, _bars_key(tail))
        if not self._found(self._m15, key):
            self._m15 = (key, m15_values(tail, total, params))
        assert self._m15 is not None
        return self._m15[1]

    def bar_problem(self, bars: Bars, what: str) -> str | None:
        key = (what, _bars_key(bars))
        if not self._found(self._problem, key):
            self._problem = (key, bar_problem(bars, what))
        assert self._problem is not None
        return self._problem[1]

    def _inputs_key(self, inputs: MarketInputs, params: RangeScalpParams) -> Any:
        last = self._inputs
        if last is not None and last[0] is inputs and last[1] is params:
            return last[2]
        key = (id(params), params, inputs.symbol, inputs.now_s, inputs.quote, inputs.flow, inputs.raw_m5_count,
               _bars_key(inputs.m5), _bars_key(inputs.h1))
        self._inputs = (inputs, params, key)
        return key

    def core(self, inputs: MarketInputs, params: RangeScalpParams) -> MarketCore:
        key = self._inputs_key(inputs, params)
        if self._market is not None and self._market[0] == key:
            self.hits += 1
            return self._market[1]
        if not self._found(self._core, key):
            self._core = (key, _market_core(inputs, params, self))
        assert self._core is not None
        return self._core[1]

    def market(self, inputs: MarketInputs, params: RangeScalpParams) -> RangeMarket:
        key = self._inputs_key(inputs, params)
        if not self._found(self._market, key):
            self._market = (key, complete_market(self.core(inputs, params), params))
        assert self._market is not None
        return self._market[1]


def session_start_s(market: MarketCore, params: RangeScalpParams) -> int:
    return session_range_start(market.now_s, params.detection.session_starts_utc)
