"""One symbol's market state at one instant: closed bars on M5/M15/H1 and every indicator value
the range rules read, computed once and shared by detection, filters, strategies, scorer and
exits (so entry and exit decisions see the same numbers).

Timeframes: entries run on closed M5 bars. M15 is always aggregated from those M5 bars (only
complete buckets). H1 comes from ``bars_h1`` when given (its forming bar dropped), else it is
aggregated from M5 the same way; with the default 720 M5 bars that is about 60 H1 bars, enough
for ADX(14).

The market is built in parts: ``MarketBase`` holds what range detection finds its candidate
from and what the ADX gate reads (``market_base``), ``MarketCore`` adds what the range is built
with, its mid (the session VWAP) and the M15 expansion state (``core_of``), ``RangeMarket`` the
rest (``complete_market``), so an entry check whose decision those gates already make can stop
early. ``MarketMemo`` (owned by the caller, one per symbol) reuses results of exactly identical
inputs: the H1 values while the H1 bars do not change, the M15 values while the newest M15 bars
do not, and a whole market when the exit pass and the entry check of one step see the same
inputs; its ``M5Window`` carries what the last M5 window gave over to the next one
(engines/range_window.py). The M15 values the core does not read (all but the expansion state)
are computed by ``complete_market`` only, and the values only the strategies and the scorer
read (RSI, stochastic, timeframe directions) on their first read (``LateValues``): a decision
that stops at a gate never computes them. The confluence gate asks only whether the RSI is
beyond its thresholds, which an estimate answers unless the RSI is within 1e-6 of one
(``RangeMarket.rsi_beyond``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import numpy as np

from config.range_scalp_model import RangeScalpParams, SessionParams
from engines.indicators import AdxState, pairwise_sum, true_range, true_range_step
from engines.bars import FLOAT64, BarSeries
from engines.frozen import direct_init
from engines.range_data import (
    H1, M5, M15, Bars, Quote, RangeFlow, aggregate, bar_problem, epoch_s, to_bars, to_flow, to_quote,
)
from engines.range_indicators import (
    bollinger_last, candle_cvd_values, ema_direction, mean_atr_last, rolling_vwap_last, rsi_estimate, rsi_last,
    session_vwap_last, stochastic_last,
)
from engines.range_metrics import (
    BreakOfStructure, Divergence, TouchState, body_expansion, bb_width_expansion_pct, bos_from_levels,
    break_of_structure, count_touches, effective_atr, expansion_state, expansion_verdict, sample_width_step,
    sample_widths, step_divergence, swing_levels, touch_state, touches_after, vwap_momentum,
)
from engines.range_sessions import session_key_at, session_range_start, trading_day_start
from engines.range_window import M5Window, carried_count, same_bars

_T = TypeVar("_T")
_MTF_TAIL = 200  # bars fed to the direction EMA: ~10 periods, so the seed no longer matters
_WILDER_TAIL_PERIODS = 20  # Wilder RSI over 20 periods of bars: the seed's weight is < 1e-8 by then
_EXPANSION_TAIL = 60  # M15 bars of the expansion state
_DIVERGENCE_TAIL = 20  # M15 bars of the candle-CVD divergence
_BODY_TAIL = 15  # body expansion reads the last 15 bodies (the first 5 of a shorter series)
_NEW_M15_BARS = 4  # at most this many new M15 bars are stepped on plain floats; more: the arrays


@direct_init
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
                now: Any, flow: Any = None, memo: MarketMemo | None = None) -> MarketInputs:
    """Convert and cut the inputs; raises ValueError (naming the input) on unreadable data.
    ``memo``: the symbol's MarketMemo (its M5Window builds the M15 bars from the last ones)."""
    now_s = epoch_s(now)
    m5_all = to_bars(bars_m5, M5, "bars_m5").closed_at(now_s)
    m5 = m5_all.tail(params.data.lookback_m5_bars)
    m15 = memo.window.aggregate_m15(m5, now_s) if memo is not None else aggregate(m5, M15, now_s)
    if bars_h1 is None:
        h1 = aggregate(m5, H1, now_s)
    else:
        lookback = params.data.lookback_h1_bars
        if memo is not None:
            h1 = memo.h1_bars(bars_h1, now_s, lookback)
        else:
            h1 = to_bars(bars_h1, H1, "bars_h1").closed_at(now_s).tail(lookback)
    return MarketInputs(symbol, now_s, m5, m15, h1, to_quote(quote), to_flow(flow), len(m5_all.time))


def input_problem(inputs: MarketInputs, memo: "MarketMemo | None" = None) -> str | None:
    """Bad market data in the bars actually used (NaN, order, high < low...), or None."""
    for bars, what in ((inputs.m5, "M5 bars"), (inputs.h1, "H1 bars")):
        if len(bars.time):
            if memo is None:
                problem = bar_problem(bars, what)
            else:
                problem = memo.window.bar_problem(bars, what) if bars is inputs.m5 else memo.bar_problem(bars, what)
            if problem:
                return problem
    return None


@direct_init
@dataclass(frozen=True)
class DayLevels:
    high: float
    low: float
    day_start_s: int


@direct_init
@dataclass(frozen=True)
class MarketBase:
    """What range detection finds its candidate from and what the ADX gate reads. ``price`` is
    the mid quote (analysis); orders use the ask (buys) or bid (sells)."""

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
    adx: float  # H1 ADX; NaN when H1 history is too short
    previous_day: DayLevels | None
    previous_day_note: str
    session_key: str
    # what the rest of the market is built from (not compared, not shown)
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


@direct_init
@dataclass(frozen=True)
class MarketCore(MarketBase):
    """The base plus what a detected range is built with (its mid and expansion state): all
    that range detection and the ADX gate read. A brief evaluation that the ADX gate stops
    builds only the base (engines/range_scalp.py)."""

    vwap: float  # session VWAP (the range mid)
    expansion_state: str


@direct_init
@dataclass(frozen=True)
class RangeMarket(MarketCore):
    """Indicator values at the last closed M5 bar plus the live quote: the core and the rest."""

    atr_m15: float
    vwap_momentum: float  # ATRe per M15 bar, signed
    bb_expansion_pct: float | None
    volume_current: float
    volume_avg: float
    bos: BreakOfStructure | None
    body_expansion: bool
    body_expansion_ratio: float
    candle_divergence: Divergence | None
    late: LateValues = field(repr=False)  # RSI, stochastic and directions, computed on first read
    m15_values: M15Values = field(repr=False, compare=False)

    @property
    def rsi(self) -> float:
        return self.late.values().rsi

    def rsi_beyond(self, oversold: float, overbought: float) -> bool:
        """``isfinite(rsi) and (rsi < oversold or rsi > overbought)``, from the RSI estimate
        when it is clearly on one side of both thresholds (the confluence gate asks this of
        every market that reaches it; the RSI itself is computed only otherwise)."""
        hint = self.late.rsi_hint
        if abs(hint - oversold) > _RSI_MARGIN and abs(hint - overbought) > _RSI_MARGIN:  # False for NaN
            return hint < oversold or hint > overbought
        rsi = self.rsi
        return math.isfinite(rsi) and (rsi < oversold or rsi > overbought)

    @property
    def stoch_k(self) -> float:
        return self.late.values().stoch_k

    @property
    def stoch_d(self) -> float:
        return self.late.values().stoch_d

    @property
    def directions(self) -> dict[str, int]:
        """'m5' / 'm15' / 'h1' -> +1 up, -1 down, 0 flat."""
        return self.late.values().directions


@direct_init
@dataclass(frozen=True)
class Late:
    """The values only the strategies and the scorer read, after every gate passed (and the
    RSI, which the confluence gate reads through ``RangeMarket.rsi_beyond``)."""

    rsi: float
    stoch_k: float
    stoch_d: float
    directions: dict[str, int]


class LateValues:
    """``Late`` values computed on their first read: a decision that stops at a gate (most of
    them) never computes the RSI, the stochastic and the three direction EMAs. ``rsi_hint``:
    ``rsi_estimate`` of the same closes (NaN: none). Equal when the values are."""

    __slots__ = ("_compute", "_values", "rsi_hint")

    def __init__(self, compute: Callable[[], Late], rsi_hint: float = math.nan) -> None:
        self._compute: Callable[[], Late] | None = compute
        self._values: Late | None = None
        self.rsi_hint = rsi_hint

    @classmethod
    def of(cls, values: Late) -> LateValues:
        late = cls(lambda: values)
        late.values()
        return late

    def values(self) -> Late:
        if self._values is None:
            assert self._compute is not None
            self._values, self._compute = self._compute(), None
        return self._values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LateValues) and self.values() == other.values()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LateValues({self.values()!r})"


def late_values(m5: Bars, m15: Bars, h1: Bars, params: RangeScalpParams) -> Late:
    """The RSI and the stochastic at the last M5 bar and the direction of each timeframe."""
    ind = params.indicators
    rsi = rsi_last(_rsi_closes(m5, params), ind.rsi_period)
    tail = ind.stoch_k + ind.stoch_d
    stoch_k, stoch_d = stochastic_last(m5.high[-tail:], m5.low[-tail:], m5.close[-tail:], ind.stoch_k, ind.stoch_d)
    directions = {name: ema_direction(bars.close[-_MTF_TAIL:], ind.mtf_ema_period, ind.mtf_slope_bars)
                  for name, bars in (("m5", m5), ("m15", m15), ("h1", h1))}
    return Late(rsi, stoch_k, stoch_d, directions)


_LATE_FIELDS = frozenset(f.name for f in fields(Late))
_RSI_MARGIN = 1e-6  # rsi_estimate is within ~1e-11 of the RSI: nearer a threshold than this, compute it


def _rsi_closes(m5: Bars, params: RangeScalpParams) -> np.ndarray:
    """The closes the RSI is computed from: Wilder over 20 periods (the seed's weight < 1e-8)."""
    return m5.close[-_WILDER_TAIL_PERIODS * params.indicators.rsi_period:]


def replace_market(market: RangeMarket, **values: Any) -> RangeMarket:
    """``dataclasses.replace`` that also takes the late values (``rsi``, ``stoch_k``,
    ``stoch_d``, ``directions``); for tests and what-if tools."""
    late = {name: values.pop(name) for name in list(values) if name in _LATE_FIELDS}
    if late:
        values["late"] = LateValues.of(replace(market.late.values(), **late))
    return replace(market, **values)


def _last(values: np.ndarray) -> float:
    return float(values.item(-1)) if len(values) else math.nan


def previous_day_levels(m5: Bars, now_s: float, day_start_hour_utc: int, min_hours: float
                        ) -> tuple[DayLevels | None, str]:
    """High and low of the last complete trading day before the current one. A day shorter than
    ``min_hours`` (a Sunday open) is skipped for the one before it. The day must be fully inside
    the bars given (a bar before it exists), otherwise its levels would be partial."""
    day_start = trading_day_start(now_s, day_start_hour_utc)
    end = int(m5.time.searchsorted(day_start, side="left"))
    while end > 0:
        start_s = trading_day_start(float(m5.time[end - 1]), day_start_hour_utc)
        start = int(m5.time.searchsorted(start_s, side="left"))
        span_h = (m5.time[end - 1] + m5.period_s - m5.time[start]) / 3600.0
        if start == 0 and m5.time[0] > start_s:
            return None, "previous day not fully inside the bars given"
        if span_h >= min_hours:
            return (DayLevels(float(np.maximum.reduce(m5.high[start:end])),
                              float(np.minimum.reduce(m5.low[start:end])), start_s), "")
        end = start
    return None, "no previous day in the bars given"


@direct_init
@dataclass(frozen=True)
class H1Values:
    """What the market reads from the H1 bars."""

    atr: float  # simple-mean ATR(14) at the last H1 bar
    atr_prev: float  # the same ``anchor_atr_lookback_h1_bars`` bars earlier
    adx: float


def h1_values(h1: Bars, params: RangeScalpParams, adx: CarriedAdx | None = None) -> H1Values:
    """``adx``: the symbol's CarriedAdx (MarketMemo), which gives the same ADX with less work."""
    ind = params.indicators
    n, lookback = len(h1), params.detection.anchor_atr_lookback_h1_bars
    atr = mean_atr_last(h1.high, h1.low, h1.close, ind.atr_period) if n > ind.atr_period else math.nan
    end = n - lookback  # the bar ``lookback`` bars before the last, exclusive end
    atr_prev = (mean_atr_last(h1.high[:end], h1.low[:end], h1.close[:end], ind.atr_period)
                if n > ind.atr_period and end > 0 else math.nan)
    adx_value = (adx or CarriedAdx()).last(h1, ind.adx_period) if n else math.nan
    return H1Values(atr, atr_prev, adx_value)


class CarriedAdx:
    """The H1 ADX at the last bar, carried from one H1 window to the next.

    While the H1 window only grows (the history start stays the first bar, as in a backtest's
    first days or a short broker history), the new window is the last one plus new bars, and
    Wilder's recursion goes on from the last bar's state (``AdxState.update_all``: the same
    steps as ``engines.indicators.adx``, so the same bits). Once the window slides (its first
    bar dropped, so the seed moves) or the state is not ready, the ADX is computed over all the
    bars (``AdxState.from_arrays``), as also when a new bar's NaN or infinity made the state
    unready on the way. Owned by the MarketMemo; mutable, not thread-safe."""

    __slots__ = ("_bars", "_state")

    def __init__(self) -> None:
        self._bars: Bars | None = None
        self._state: AdxState | None = None

    def last(self, h1: Bars, period: int) -> float:
        """``engines.indicators.adx(h1.high, h1.low, h1.close, period).adx[-1]`` (NaN: undefined)."""
        state = self._carried(h1, period)
        if state is None:
            state = self._state = AdxState.from_arrays(h1.high, h1.low, h1.close, period)
        self._bars = h1
        return state.value

    def _carried(self, h1: Bars, period: int) -> AdxState | None:
        """The last state stepped on over ``h1``'s new bars; None where the arrays decide: no ready
        state of this period, a window that does not extend the last one, or a new bar's NaN or
        infinity making the state unready on the way (``update_all`` raises and changes nothing)."""
        last, state = self._bars, self._state
        if (last is None or state is None or not state.ready or state.period != period
                or carried_count(last, h1) != len(last)):
            return None
        count = len(last)
        try:
            state.update_all(h1.high[count:].tolist(), h1.low[count:].tolist(), h1.close[count:].tolist())
        except ValueError:
            return None
        return state


@direct_init
@dataclass(frozen=True)
class M15Values:
    """What the complete market reads from the newest M15 bars (``m15_tail_size`` of them);
    the core reads only the expansion state (``m15_expansion``), so an entry check that stops
    at range detection or the ADX gate never computes these."""

    atr: float  # simple-mean ATR(14)
    rolling_vwap: list[float] | None  # the rolling VWAP of the momentum bars, None: too few bars
    bos: BreakOfStructure | None
    bos_known: bool  # False: the tail holds too few swing points, BOS needs all the bars
    body_expansion: bool
    body_expansion_ratio: float
    divergence: Divergence | None


def m15_tail_size(params: RangeScalpParams) -> int:
    """The newest M15 bars every M15Values field depends on: each is computed from at most
    this many of the last bars, and branches on lengths up to it (longer series agree). It
    includes the direction EMA's tail (``late_values``), whose length also lets the BOS find
    its swing points in the tail nearly always."""
    ind, inv, det = params.indicators, params.invalidation, params.detection
    return max(_MTF_TAIL, _DIVERGENCE_TAIL, _BODY_TAIL, ind.atr_period + 1, det.bos_min_bars,
               inv.vwap_window_m15 + inv.vwap_momentum_bars - 1)


def m15_values(m15: Bars, total: int, params: RangeScalpParams) -> M15Values:
    """M15Values of ``m15``, the last ``m15_tail_size`` bars of a series of ``total`` bars: the
    same values as computed over all of them (the BOS says when it cannot know)."""
    ind, inv, det = params.indicators, params.invalidation, params.detection
    atr = mean_atr_last(m15.high, m15.low, m15.close, ind.atr_period) if len(m15) > ind.atr_period else math.nan
    rolling = None
    if len(m15) >= inv.vwap_window_m15 + inv.vwap_momentum_bars - 1:
        rolling = rolling_vwap_last(m15.high, m15.low, m15.close, m15.volume, inv.vwap_window_m15,
                                    inv.vwap_momentum_bars)
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
        divergence = step_divergence(tail.close, candle_cvd_values(tail.open, tail.close, tail.volume))
    return M15Values(atr, rolling, bos, bos_known, body_fires, body_ratio, divergence)


def m15_expansion(m15: Bars, params: RangeScalpParams) -> str:
    """The expansion state of the M15 bars (their last ``_EXPANSION_TAIL``), which the core reads."""
    ind, det = params.indicators, params.detection
    return expansion_state(m15.high[-_EXPANSION_TAIL:], m15.low[-_EXPANSION_TAIL:], m15.close[-_EXPANSION_TAIL:],
                           ind.atr_period, ind.bb_period, det.expansion_ratio_high, det.expansion_ratio_low)


class CarriedExpansion:
    """``m15_expansion`` of the M15 tail, carrying what the last tail gave: its true ranges
    and Bollinger widths (the values ``expansion_state`` reads). When the new tail is the last
    one moved on by a few bars (``carried_count``), a carried bar's true range (its own high
    and low and the close before it, all carried) and a window's width (its closes, all
    carried) are the same, so only the new bars' are computed, with ``true_range_step`` and
    ``sample_width_step`` (the array path's bits), and the ratios are taken with
    ``pairwise_sum`` (numpy's sums). Taken for a full tail only: more than ``max(40, ATR
    period)`` float64 bars, so the first bar's special true range is never read and the
    history slices are the plain ``[-40:-20]`` ones. Owned by the MarketMemo; not thread-safe."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        # (tail, ATR period, BB period, true ranges of its last bars, widths of its windows)
        self._last: tuple[Bars, int, int, list[float], list[float]] | None = None

    def state(self, tail: Bars, params: RangeScalpParams) -> str:
        ind, det = params.indicators, params.detection
        tail = tail.tail(_EXPANSION_TAIL)
        atr_period, bb_period, n = ind.atr_period, ind.bb_period, len(tail)
        keep = max(40, atr_period)  # the true ranges read: the last ``atr_period`` and [-40:-20]
        if (n <= keep or n < bb_period + 21 or n < max(atr_period, bb_period) + 15 or bb_period < 2
                or not (tail.high.dtype is FLOAT64 and tail.low.dtype is FLOAT64 and tail.close.dtype is FLOAT64)):
            self._last = None
            return m15_expansion(tail, params)
        first = max(bb_period, n - 40)  # the windows end at first .. n - 1
        spans, widths = self._carried(tail, atr_period, bb_period, n - keep, first)
        self._last = (tail, atr_period, bb_period, spans, widths)
        ratios = []
        current_atr, hist_atr = pairwise_sum(spans[-atr_period:]) / atr_period, pairwise_sum(spans[-40:-20]) / 20
        if hist_atr > 0:
            ratios.append(current_atr / hist_atr)
        hist = widths[:n - 20 - first]  # the windows ending at first .. n - 21
        hist_width = pairwise_sum(hist) / len(hist)
        if hist_width > 0:
            ratios.append(widths[-1] / hist_width)
        return expansion_verdict(ratios, det.expansion_ratio_high, det.expansion_ratio_low)

    def _carried(self, tail: Bars, atr_period: int, bb_period: int, span_start: int, first: int
                 ) -> tuple[list[float], list[float]]:
        """The true ranges of the bars from ``span_start`` and the widths of the windows ending
        at ``first`` .. the last bar: the last tail's where they are carried, else computed."""
        n, last = len(tail), self._last
        high, low, close = tail.high, tail.low, tail.close
        if last is not None and last[1] == atr_period and last[2] == bb_period and len(last[0]) == n:
            count = carried_count(last[0], tail)
            new = n - count
            if count and new <= _NEW_M15_BARS and new < n - span_start and new < n - first:
                spans = last[3][new:] + [true_range_step(high.item(i), low.item(i), close.item(i - 1))
                                         for i in range(count, n)]
                widths = last[4][new:] + [sample_width_step(close[i - bb_period + 1:i + 1].tolist())
                                          for i in range(count, n)]
                return spans, widths
        spans = true_range(high, low, close)[span_start:].tolist()
        return spans, sample_widths(close, first, bb_period).tolist()


class CarriedTouches:
    """``count_touches`` of a candidate's touch bars, counting on from the last bars counted
    while the levels and tolerance are the same and the new bars are those bars plus bars after
    them (a session's or day's M15 bars as each M15 bar closes). Whether a bar is a touch reads
    only its own high, low and close and whether the bar before was near the edge, so the old
    bars' counts hold when the new bars begin with them, bit for bit (``carried_count``), and
    only the new bars are classified (``touches_after``). Counts are integers: exact. Any other
    case is counted in full. Bars are taken as never changed in place once counted (the
    engine's M15 arrays are always new ones). Owned by the MarketMemo; not thread-safe."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[Bars, tuple[float, float, float], TouchState] | None = None  # float64 bars only

    def count(self, bars: Bars, high: float, low: float, tolerance_pct: float) -> tuple[int, int]:
        last, levels = self._last, (high, low, tolerance_pct)
        if not (len(bars.time) and _float_prices(bars) and _float_levels(levels)):
            self._last = None
            return count_touches(bars, high, low, tolerance_pct)
        if last is not None and last[1] == levels and carried_count(last[0], bars) == len(last[0].time):
            state = touches_after(last[2], bars, len(last[0].time), high, low, tolerance_pct)
        else:
            state = touch_state(bars, high, low, tolerance_pct)
        self._last = (bars, levels, state)
        return state[0], state[1]


def _float_levels(levels: tuple[float, float, float]) -> bool:
    """Levels that compute in float64 as the arrays do (Python or float64 numbers: a float32
    level would make the plain-float steps float32 under numpy 2's promotion rules)."""
    return all(isinstance(value, (float, int)) for value in levels)


def _float_prices(bars: Bars) -> bool:
    return bars.high.dtype is FLOAT64 and bars.low.dtype is FLOAT64 and bars.close.dtype is FLOAT64


def market_core(inputs: MarketInputs, params: RangeScalpParams, memo: MarketMemo | None = None) -> MarketCore:
    """The core values (see MarketCore); ``memo``: the symbol's MarketMemo (speed only)."""
    if memo is not None:
        return memo.core(inputs, params)
    return core_of(_market_base(inputs, params, None), params)


def market_base(inputs: MarketInputs, params: RangeScalpParams, memo: MarketMemo | None = None) -> MarketBase:
    """The base values (see MarketBase): the core but the range's mid and expansion state;
    ``memo``: the symbol's MarketMemo (speed only)."""
    if memo is not None:
        return memo.base(inputs, params)
    return _market_base(inputs, params, None)


def _market_base(inputs: MarketInputs, params: RangeScalpParams, memo: MarketMemo | None) -> MarketBase:
    ind, det = params.indicators, params.detection
    m5, h1 = inputs.m5, inputs.h1
    price = inputs.quote.mid
    if memo is None:
        atr = mean_atr_last(m5.high, m5.low, m5.close, ind.atr_period)
    else:
        atr = memo.window.mean_atr(m5, ind.atr_period)
    bb_middle, bb_upper, bb_lower, bb_width = bollinger_last(m5.close[-(ind.bb_period + 1):], ind.bb_period,
                                                             ind.bb_std)
    h1v = memo.h1(h1, params) if memo is not None else h1_values(h1, params)
    if memo is None:
        day, note = previous_day_levels(m5, inputs.now_s, det.day_start_hour_utc, det.min_previous_day_hours)
    else:
        day, note = memo.window.previous_day(m5, inputs.now_s, det.day_start_hour_utc, det.min_previous_day_hours,
                                             previous_day_levels)
    session = (session_key_at(inputs.now_s, params.sessions) if memo is None else
               memo.session_key(inputs.now_s, params.sessions))
    atr_eff = effective_atr(atr, bb_width, price, ind.bb_width_multiplier, ind.effective_atr)
    # positional, in MarketBase's field order (a base is built at every M5 bar: keyword
    # arguments would cost the constructor a dictionary)
    return MarketBase(inputs, price, atr, atr_eff, h1v.atr, h1v.atr_prev, bb_upper, bb_middle, bb_lower, bb_width,
                      h1v.adx, day, note, session, h1v)


def core_of(base: MarketBase, params: RangeScalpParams, memo: MarketMemo | None = None) -> MarketCore:
    """``base`` plus the session VWAP and the M15 expansion state. ``memo``: the symbol's
    MarketMemo, whose carried windows give the same values with less work; without it they are
    computed from the base's bars alone (so the same values at any later time)."""
    m5, m15, anchor = base.m5, base.m15, params.indicators.vwap_anchor_hour_utc
    if memo is None:
        state = m15_expansion(m15.tail(_EXPANSION_TAIL), params)
        vwap = session_vwap_last(m5.time, m5.high, m5.low, m5.close, m5.volume, anchor)
    else:
        state = memo.m15_expansion(memo.m15_tail(m15, _EXPANSION_TAIL), params)
        vwap = memo.window.session_vwap(m5, anchor)
    # positional, in MarketCore's field order
    return MarketCore(base.inputs, base.price, base.atr, base.atr_eff, base.atr_h1, base.atr_h1_prev, base.bb_upper,
                      base.bb_middle, base.bb_lower, base.bb_width, base.adx, base.previous_day,
                      base.previous_day_note, base.session_key, base.h1_values, vwap, state)


def complete_market(core: MarketCore, params: RangeScalpParams, memo: MarketMemo | None = None) -> RangeMarket:
    """The core plus every other value the range rules read; ``memo``: see MarketMemo."""
    ind, inv, det = params.indicators, params.invalidation, params.detection
    m5, m15 = core.m5, core.m15
    size = m15_tail_size(params)
    if memo is None:
        m15v = m15_values(m15.tail(size), len(m15), params)
    else:
        m15v = memo.m15(memo.m15_tail(m15, size), len(m15.time), params)
    h1v = core.h1_values
    momentum = 0.0
    if m15v.rolling_vwap is not None:
        momentum = vwap_momentum(m15v.rolling_vwap, core.atr_eff)
    bos = m15v.bos
    if not m15v.bos_known:  # fewer swing points in the tail than the BOS looks at: all bars decide
        bos = break_of_structure(m15.high, m15.low, m15.close, m15v.atr, det.bos_threshold_atr,
                                 det.bos_swing_count, det.swing_left, det.swing_right, det.bos_min_bars)
    if memo is None:
        bb_expansion = bb_width_expansion_pct(m5.close[-max(inv.bb_expansion_min_bars, 61):], ind.bb_period,
                                              inv.bb_expansion_min_bars)
    else:
        bb_expansion = memo.window.bb_expansion_pct(m5, ind.bb_period, inv.bb_expansion_min_bars)
    volume_window = m5.volume[-ind.volume_avg_bars:]
    volume_avg = float(np.add.reduce(volume_window) / len(volume_window)) if len(volume_window) else math.nan
    late = LateValues(lambda: late_values(m5, m15, core.inputs.h1, params),
                      rsi_estimate(_rsi_closes(m5, params), ind.rsi_period))
    # positional, in RangeMarket's field order: the core's fields, then its own (built at
    # most once per M5 bar: 28 keyword arguments would cost the constructor a dictionary)
    return RangeMarket(
        core.inputs, core.price, core.atr, core.atr_eff, core.atr_h1, core.atr_h1_prev, core.bb_upper, core.bb_middle,
        core.bb_lower, core.bb_width, core.adx, core.previous_day, core.previous_day_note, core.session_key, h1v,
        core.vwap, core.expansion_state,
        m15v.atr, momentum, bb_expansion, _last(m5.volume), volume_avg, bos, m15v.body_expansion,
        m15v.body_expansion_ratio, m15v.divergence, late, m15v)


def compute_market(inputs: MarketInputs, params: RangeScalpParams, memo: MarketMemo | None = None) -> RangeMarket:
    """All indicator values the range rules use. Needs at least ``data.min_bars_m5`` M5 bars
    (the data-quality check runs first); values without enough history are NaN or None.
    ``memo``: the symbol's MarketMemo, to reuse results of identical inputs (see there)."""
    if memo is not None:
        return memo.market(inputs, params)
    return complete_market(core_of(_market_base(inputs, params, None), params), params)


def _h1_columns(raw: BarSeries) -> tuple[np.ndarray, ...]:
    """The columns of a bar feed series that ``to_bars`` reads."""
    return raw.time_s, raw.open, raw.high, raw.low, raw.close, raw.tick_volume


def _same_columns(last: tuple[np.ndarray, ...], new: tuple[np.ndarray, ...]) -> bool:
    """The same arrays, or arrays of the same dtype, shape and bytes."""
    for a, b in zip(last, new):
        if a is not b and (a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes()):
            return False
    return True


class MarketMemo:
    """One symbol's last results, reused while their exact inputs come back.

    The H1 bars change once an hour but the engine runs every 5 minutes; the newest M15 bars
    change every third M5 bar; a step that runs the exit pass and the entry check builds the
    same market twice. Every slot keeps the inputs it was computed from (the params object,
    the bars, the other inputs) and is reused only when the new ones are the same object or
    equal to the last bit (``same_bars``), so a hit returns what the computation would return:
    the memo changes speed, never a result. One slot per kind (the last inputs). ``window``
    carries the M5 window from one evaluation to the next (engines/range_window.py); a new
    H1 window continues the last one's ADX (``CarriedAdx``) and a new M15 tail the last one's
    true ranges and widths (``CarriedExpansion``), and range detection's touch counts go on over
    the M15 bars that close (``CarriedTouches``), each only where that gives the same bits.
    The caller owns it (the monitor keeps one per symbol); not thread-safe."""

    def __init__(self) -> None:
        self._h1: tuple[RangeScalpParams, Bars, H1Values] | None = None
        self._adx = CarriedAdx()  # the H1 ADX of the last H1 bars, continued while they only grow
        self._expansion_carry = CarriedExpansion()  # the M15 expansion state's true ranges and widths
        self._m15: tuple[RangeScalpParams, Bars, bool, M15Values] | None = None
        self._expansion: tuple[RangeScalpParams, Bars, str] | None = None
        self._problem: tuple[str, Bars, str | None] | None = None
        self._base: tuple[MarketInputs, RangeScalpParams, MarketBase] | None = None
        self._core: tuple[MarketBase, RangeScalpParams, MarketCore] | None = None
        self._market: tuple[MarketInputs, RangeScalpParams, RangeMarket] | None = None
        self._h1_raw: tuple[tuple[np.ndarray, ...], int, int, Bars, BarSeries] | None = None
        self._m15_tails: dict[int, tuple[Bars, Bars]] = {}  # tail size -> (M15 bars, their tail)
        self._session: tuple[SessionParams, int, str] | None = None  # (sessions, UTC hour since epoch, key)
        self._last: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self.window = M5Window()  # the last M5 window and what was derived from it
        self.touches = CarriedTouches()  # the last touch count of range detection, counted on as bars close
        self.hits = 0
        self.misses = 0

    def _count(self, hit: bool) -> bool:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        return hit

    def last(self, kind: str, key: tuple[Any, ...], compute: Callable[[], _T]) -> _T:
        """``compute()``, or its last result for ``kind`` when that was computed from the same
        ``key`` (the same objects, or equal values): for results that depend only on the key
        (range detection keeps its ``M15Detection`` while the M15 bars object, the session
        start and the params are the same)."""
        slot = self._last.get(kind)
        if self._count(slot is not None and slot[0] == key):
            assert slot is not None
            return slot[1]
        value = compute()
        self._last[kind] = (key, value)
        return value

    def h1_bars(self, raw: Any, now_s: float, lookback: int) -> Bars:
        """``to_bars(raw, H1).closed_at(now_s).tail(lookback)``; the very Bars of the last call
        when ``raw`` is a bar feed BarSeries with the same columns (dtypes and bytes) cut at the
        same bar (the H1 bars change once an hour): every H1 slot then knows them by identity.
        The very series of the last call with a lineage has the same bytes without reading them:
        it is a read-only view of store rows that never change (``engines.bars.Lineage``; the
        feed hands out the same view for the same rows): when the last call's cut kept all of it
        and ``now_s`` still does (its newest bar closed), that is known without searching."""
        last = self._h1_raw
        if (last is not None and last[4] is raw and last[2] == lookback and raw.lineage is not None
                and 0 < last[1] == len(raw.time_s) and raw.time_s.item(-1) <= math.floor(now_s) - H1):
            return last[3]
        if not isinstance(raw, BarSeries) or raw.time_s.dtype != np.int64:
            return to_bars(raw, H1, "bars_h1").closed_at(now_s).tail(lookback)
        stop = int(raw.time_s.searchsorted(math.floor(now_s) - H1, side="right"))  # closed_at's cut
        columns = None
        if last is not None and last[1] == stop and last[2] == lookback:
            if last[4] is raw and raw.lineage is not None:
                return last[3]
            columns = _h1_columns(raw)
            if _same_columns(last[0], columns):
                return last[3]
        h1 = to_bars(raw, H1, "bars_h1").closed_at(now_s).tail(lookback)
        self._h1_raw = (columns if columns is not None else _h1_columns(raw), stop, lookback, h1, raw)
        return h1

    def session_key(self, now_s: float, sessions: SessionParams) -> str:
        """``session_key_at(now_s, sessions)``, which depends only on the UTC hour: kept while
        the same sessions object (params are frozen) asks within the same hour."""
        hour = int(now_s // 3600)
        slot = self._session
        if slot is None or slot[1] != hour or slot[0] is not sessions:
            slot = self._session = (sessions, hour, session_key_at(now_s, sessions))
        return slot[2]

    def m15_tail(self, m15: Bars, size: int) -> Bars:
        """``m15.tail(size)``: the very object of the last call when ``m15`` is the same object
        (the M5 window keeps its M15 bars while no bucket is added or dropped), so the slots
        keyed on the tail see it by identity instead of comparing its bytes."""
        last = self._m15_tails.get(size)
        if last is not None and last[0] is m15:
            return last[1]
        tail = m15.tail(size)
        self._m15_tails[size] = (m15, tail)
        return tail

    def h1(self, h1: Bars, params: RangeScalpParams) -> H1Values:
        slot = self._h1
        if not self._count(slot is not None and slot[0] is params and same_bars(slot[1], h1)):
            slot = self._h1 = (params, h1, h1_values(h1, params, self._adx))
        assert slot is not None
        return slot[2]

    def m15(self, tail: Bars, total: int, params: RangeScalpParams) -> M15Values:
        """``m15_values`` keyed on the tail: a bar more or less at the head of the lookback
        window (which the tail never reaches) reuses the values."""
        slot, whole = self._m15, len(tail.time) == total
        if not self._count(slot is not None and slot[0] is params and slot[2] == whole and same_bars(slot[1], tail)):
            slot = self._m15 = (params, tail, whole, m15_values(tail, total, params))
        assert slot is not None
        return slot[3]

    def m15_expansion(self, tail: Bars, params: RangeScalpParams) -> str:
        """``m15_expansion`` keyed on the columns it reads (a new tail: ``CarriedExpansion``)."""
        slot = self._expansion
        if not self._count(slot is not None and slot[0] is params
                           and same_bars(slot[1], tail, ("high", "low", "close"))):
            slot = self._expansion = (params, tail, self._expansion_carry.state(tail, params))
        assert slot is not None
        return slot[2]

    def bar_problem(self, bars: Bars, what: str) -> str | None:
        slot = self._problem
        if not self._count(slot is not None and slot[0] == what and same_bars(slot[1], bars)):
            slot = self._problem = (what, bars, bar_problem(bars, what))
        assert slot is not None
        return slot[2]

    @staticmethod
    def _same_inputs(slot: tuple[MarketInputs, RangeScalpParams, Any] | None, inputs: MarketInputs,
                     params: RangeScalpParams) -> bool:
        if slot is None or slot[1] is not params:
            return False
        last = slot[0]
        return last is inputs or (
            last.now_s == inputs.now_s and last.symbol == inputs.symbol and last.quote == inputs.quote
            and last.flow == inputs.flow and last.raw_m5_count == inputs.raw_m5_count
            and same_bars(last.m5, inputs.m5) and same_bars(last.h1, inputs.h1))

    def base(self, inputs: MarketInputs, params: RangeScalpParams) -> MarketBase:
        market = self._market
        if self._same_inputs(market, inputs, params):
            assert market is not None
            self.hits += 1
            return market[2]
        return self._base_of(inputs, params)

    def _base_of(self, inputs: MarketInputs, params: RangeScalpParams) -> MarketBase:
        base = self._base
        if not self._count(self._same_inputs(base, inputs, params)):
            base = self._base = (inputs, params, _market_base(inputs, params, self))
        assert base is not None
        return base[2]

    def core(self, inputs: MarketInputs, params: RangeScalpParams) -> MarketCore:
        return self.core_of(self.base(inputs, params), params)

    def core_of(self, base: MarketBase, params: RangeScalpParams) -> MarketCore:
        """``core_of(base, params)``, once per base object (a core is its own)."""
        if isinstance(base, MarketCore):
            return base
        core = self._core
        if core is None or core[0] is not base or core[1] is not params:
            core = self._core = (base, params, core_of(base, params, self))
        return core[2]

    def complete(self, inputs: MarketInputs, core: MarketCore, params: RangeScalpParams) -> RangeMarket:
        """``complete_market(core)``, kept as the market of ``inputs``, whose core ``core`` is
        (from ``core(inputs)``: the market itself when it was kept already)."""
        if isinstance(core, RangeMarket):
            return core
        market = complete_market(core, params, self)
        self._market = (inputs, params, market)
        return market

    def market(self, inputs: MarketInputs, params: RangeScalpParams) -> RangeMarket:
        market = self._market
        if self._count(self._same_inputs(market, inputs, params)):
            assert market is not None
            return market[2]
        return self.complete(inputs, self.core_of(self._base_of(inputs, params), params), params)


def session_start_s(market: MarketBase, params: RangeScalpParams) -> int:
    return session_range_start(market.now_s, params.detection.session_starts_utc)
