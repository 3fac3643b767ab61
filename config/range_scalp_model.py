"""range_scalp.json: range detection and edge trading; exits managed every few minutes.

Every rule parameter of the range-scalp engine lives here, grouped by the job that reads it
(data, indicators, detection, invalidation, false range, confluence, sessions, activity,
strategies, scoring, exits, re-entry). Defaults are the original system's values
(../shared/spec/original-range-and-order-flow-rules.md part A) with its bugs fixed.

Per-symbol overrides are merged DEEPLY: ``{"invalidation": {"candles_outside_range": 3}}``
changes that one key and keeps every other invalidation key from ``defaults``. A section that
is a list (blocked windows, session map, allowed signals) is replaced as a whole.
Tables whose rows differ (per strategy, per session) are models with one named field per row,
each with that row's own defaults, so a partial override of one row validates on its own.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from config.base import StrategyConfig, StrictModel, SymbolParams, merged_params

STRATEGY_NAMES = ("vwap_reversion", "bb_fade", "pdh_pdl_rejection", "rsi_bounce", "liquidity_sweep")
SESSION_KEYS = ("asian", "london", "overlap", "ny", "late_ny")
SessionKey = Literal["asian", "london", "overlap", "ny", "late_ny"]
RangeType = Literal["session", "daily", "dynamic"]
ConfirmationSignal = Literal["rsi_extreme", "rejection_wick", "tape_pressure"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


# ----------------------------------------------------------------------------------------------
# Data and indicators
# ----------------------------------------------------------------------------------------------

class DataParams(StrictModel):
    """How much history the engine looks at and when that history counts as usable."""

    lookback_m5_bars: int = Field(720, ge=120, le=20000, description="closed M5 bars the engine uses (60 h)")
    lookback_h1_bars: int = Field(200, ge=40, le=5000, description="closed H1 bars used when H1 is given")
    min_bars_m5: int = Field(50, ge=20, le=5000, description="fewer closed M5 bars: no trade")
    max_bar_age_minutes: float = Field(
        5.5, gt=0, le=1440, description="age of the last closed M5 bar's CLOSE time at `now`")
    market_closed_minutes: float = Field(360, gt=0, le=10080, description="older data reads as 'market closed'")
    always_open: bool = Field(False, description="24/7 market (crypto): stale data is never 'market closed'")

    @model_validator(mode="after")
    def _lookback_covers_minimum(self) -> "DataParams":
        if self.lookback_m5_bars < self.min_bars_m5:
            raise ValueError("lookback_m5_bars must be at least min_bars_m5")
        return self


class IndicatorParams(StrictModel):
    """Indicator periods, the effective ATR and the multi-timeframe direction."""

    atr_period: int = Field(14, ge=2, le=200, description="ATR = simple mean of the true range")
    rsi_period: int = Field(14, ge=2, le=200)
    bb_period: int = Field(20, ge=5, le=200)
    bb_std: float = Field(2.0, gt=0, le=5)
    stoch_k: int = Field(14, ge=2, le=200)
    stoch_d: int = Field(3, ge=1, le=50)
    adx_period: int = Field(14, ge=2, le=100)
    mtf_ema_period: int = Field(20, ge=2, le=200, description="EMA whose slope gives a timeframe's direction")
    mtf_slope_bars: int = Field(3, ge=1, le=50)
    vwap_anchor_hour_utc: int = Field(0, ge=0, le=23, description="session VWAP (the range mid) resets here")
    volume_avg_bars: int = Field(12, ge=2, le=288, description="M5 bars in the '1 h average' volume")
    effective_atr: bool = Field(True, description="ATRe = max(ATR, bb_width_fraction * price * multiplier)")
    bb_width_multiplier: float = Field(0.5, gt=0, le=5)


# ----------------------------------------------------------------------------------------------
# Range detection, invalidation, false range
# ----------------------------------------------------------------------------------------------

class DetectionParams(StrictModel):
    """Range candidates (session, previous day, swing), touches, gap zones and width limits."""

    range_types: list[RangeType] = Field(
        default_factory=lambda: ["session", "daily", "dynamic"], description="order of preference")
    session_starts_utc: list[int] = Field(
        default_factory=lambda: [0, 8, 13], description="UTC hours where the session range restarts")
    session_min_bars_m15: int = Field(4, ge=1, le=96, description="closed M15 bars a session range needs")
    day_start_hour_utc: int = Field(0, ge=0, le=23, description="previous-day levels use days starting here")
    min_previous_day_hours: float = Field(
        6, ge=0, le=24, description="a shorter day (a Sunday open) is skipped for the one before")
    swing_left: int = Field(3, ge=1, le=20)
    swing_right: int = Field(3, ge=1, le=20)
    dynamic_touch_hours: float = Field(48, gt=0, le=240, description="touches of a swing range counted over")
    touch_tolerance_pct: float = Field(0.2, gt=0, le=5, description="a touch is within this % of the level")
    min_touches_per_side: int = Field(2, ge=1, le=20, description="fewer on either side: not validated")
    critical_gap_fraction: float = Field(0.15, gt=0, lt=0.5, description="edge zones, fraction of the width")
    min_width_pct: float = Field(0.1, gt=0, le=50, description="narrower (in % of mid): too narrow")
    max_width_pct: float = Field(2.0, gt=0, le=100, description="wider: likely not a range")
    min_width_atr: float = Field(2.0, gt=0, le=500, description="narrower than this many ATRe: too narrow")
    max_width_atr: float = Field(40.0, gt=0, le=1000, description="wider than this many ATRe: too wide")
    bos_threshold_atr: float = Field(0.2, gt=0, le=5, description="close beyond a swing by this many M15 ATR")
    bos_swing_count: int = Field(5, ge=2, le=20, description="labelled swings a BOS is measured against")
    bos_min_bars: int = Field(10, ge=7, le=500)
    expansion_ratio_high: float = Field(1.2, gt=1, le=5)
    expansion_ratio_low: float = Field(0.8, gt=0, lt=1)
    adaptive_anchors: bool = Field(True, description="move the previous-day anchors when the market moved on")
    anchor_atr_change_pct: float = Field(40, gt=0, le=1000, description="H1 ATR change that swaps in session levels")
    anchor_atr_lookback_h1_bars: int = Field(24, ge=1, le=500)
    anchor_drift_pct: float = Field(0.25, gt=0, le=20, description="session extreme beyond the anchor by this %")
    anchor_hold_minutes: float = Field(15, ge=0, le=1440, description="a new extreme must hold this long")

    @field_validator("range_types")
    @classmethod
    def _types_unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one range type is needed")
        if len(set(value)) != len(value):
            raise ValueError("each range type may appear only once")
        return value

    @field_validator("session_starts_utc")
    @classmethod
    def _starts_valid(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("at least one session start hour is needed")
        if any(not 0 <= h <= 23 for h in value):
            raise ValueError("session start hours are 0..23")
        if sorted(set(value)) != value:
            raise ValueError("session start hours must be strictly increasing")
        return value

    @model_validator(mode="after")
    def _limits_ordered(self) -> "DetectionParams":
        if self.min_width_pct >= self.max_width_pct:
            raise ValueError("min_width_pct must be below max_width_pct")
        if self.min_width_atr >= self.max_width_atr:
            raise ValueError("min_width_atr must be below max_width_atr")
        return self


class InvalidationParams(StrictModel):
    """A range is broken when at least ``signals_required`` of the four signals fire."""

    candles_outside_range: int = Field(2, ge=1, le=20, description="consecutive M5 closes outside the range")
    vwap_momentum_atr: float = Field(0.2, gt=0, le=1, description="|VWAP slope| in ATRe per M15 bar")
    vwap_window_m15: int = Field(20, ge=2, le=200, description="rolling VWAP length for the momentum")
    vwap_momentum_bars: int = Field(5, ge=2, le=50)
    bb_width_expansion_pct: float = Field(50, ge=0, le=1000, description="M5 BB width above its mean by this %")
    bb_expansion_min_bars: int = Field(60, ge=41, le=1000)
    require_m15_bos: bool = Field(True, description="evaluate the M15 break-of-structure signal")
    signals_required: int = Field(2, ge=1, le=4)


class FalseRangeParams(StrictModel):
    """An 'imbalanced consolidation' shows at least ``red_flags_required`` of four red flags."""

    volume_increase_fraction: float = Field(0.15, gt=0, le=1, description="last bar volume above the 1 h mean")
    vwap_momentum_atr: float = Field(0.1, gt=0, le=1)
    body_expansion_multiplier: float = Field(1.5, gt=1, le=10)
    cvd_divergence_strength: float = Field(0.6, ge=0, le=1)
    red_flags_required: int = Field(2, ge=1, le=4)


# ----------------------------------------------------------------------------------------------
# Risk filters
# ----------------------------------------------------------------------------------------------

class ConfluenceParams(StrictModel):
    """The weighted 3-confluence score: structure (touches), location (edge), confirmation."""

    required: bool = True
    min_score: float = Field(80, ge=0, le=100)
    structure_weight: float = Field(40, ge=0, le=100)
    location_weight: float = Field(35, ge=0, le=100)
    confirmation_weight: float = Field(25, ge=0, le=100)
    structure_partial_fraction: float = Field(0.7, ge=0, le=1, description="share given for 2 touches")
    location_partial_fraction: float = Field(0.6, ge=0, le=1, description="share given at half the edge distance")
    min_touch_count: int = Field(3, ge=1, le=50, description="total touches for the full structure score")
    price_edge_threshold_atr: float = Field(0.75, ge=0.1, le=10, description="distance from the mid, in ATRe")
    at_edge_atr: float = Field(0.1, gt=0, le=5, description="'at the range edge' within this many ATRe")
    rejection_wick_atr: float = Field(0.15, gt=0, le=5)
    rejection_wick_body_ratio: float = Field(1.5, gt=0, le=20)
    rejection_lookback_bars: int = Field(3, ge=1, le=5)
    rsi_oversold: float = Field(30, gt=0, lt=100)
    rsi_overbought: float = Field(70, gt=0, lt=100)
    allowed_signals: list[ConfirmationSignal] = Field(
        default_factory=lambda: ["rsi_extreme", "rejection_wick", "tape_pressure"])

    @model_validator(mode="after")
    def _weights_and_bands(self) -> "ConfluenceParams":
        total = self.structure_weight + self.location_weight + self.confirmation_weight
        if abs(total - 100) > 1e-9:
            raise ValueError(f"structure_weight + location_weight + confirmation_weight must be 100, got {total:g}")
        if self.rsi_oversold >= self.rsi_overbought:
            raise ValueError("rsi_oversold must be below rsi_overbought")
        return self


class CheckSwitches(StrictModel):
    """Which risk checks gate an entry (all on by default)."""

    false_range: bool = True
    range_validity: bool = True
    session_filter: bool = True
    trade_activity: bool = True
    edge_filter: bool = True
    require_validated_range: bool = Field(False, description="also demand min_touches_per_side on both sides")


class SessionWindow(StrictModel):
    """A UTC time-of-day window, [start, end); it wraps past midnight when end <= start."""

    name: str = Field(..., min_length=1, max_length=40)
    start: str = Field(..., description="HH:MM UTC")
    end: str = Field(..., description="HH:MM UTC, exclusive")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("expected a time as HH:MM (00:00 to 23:59)")
        return value

    def minutes(self) -> tuple[int, int]:
        sh, sm = (int(x) for x in self.start.split(":"))
        eh, em = (int(x) for x in self.end.split(":"))
        return sh * 60 + sm, eh * 60 + em


class SessionSpan(StrictModel):
    """UTC hours [start_hour, end_hour) belonging to one session key."""

    key: SessionKey
    start_hour: int = Field(..., ge=0, le=23)
    end_hour: int = Field(..., ge=1, le=24)

    @model_validator(mode="after")
    def _ordered(self) -> "SessionSpan":
        if self.end_hour <= self.start_hour:
            raise ValueError("end_hour must be after start_hour")
        return self


class SessionAdjustment(StrictModel):
    """How a session scales the R:R and the stop; a disabled session takes no range trades."""

    enabled: bool = True
    rr_multiplier: float = Field(1.0, gt=0, le=5)
    stop_tightener: float = Field(1.0, gt=0, le=5)
    max_rr: float = Field(10.0, gt=0, le=50)


class SessionAdjustments(StrictModel):
    asian: SessionAdjustment = Field(default_factory=lambda: SessionAdjustment(
        rr_multiplier=0.9, stop_tightener=0.85, max_rr=1.2))
    london: SessionAdjustment = Field(default_factory=lambda: SessionAdjustment(
        rr_multiplier=1.15, stop_tightener=1.0, max_rr=2.0))
    overlap: SessionAdjustment = Field(default_factory=lambda: SessionAdjustment(enabled=False))
    ny: SessionAdjustment = Field(default_factory=lambda: SessionAdjustment(
        rr_multiplier=1.0, stop_tightener=1.0, max_rr=1.8))
    late_ny: SessionAdjustment = Field(default_factory=lambda: SessionAdjustment(
        rr_multiplier=1.0, stop_tightener=1.0, max_rr=1.8))


class StrategyPoints(StrictModel):
    """Session component points (0..20) for each strategy in one session."""

    vwap_reversion: float = Field(10, ge=0, le=20)
    bb_fade: float = Field(10, ge=0, le=20)
    pdh_pdl_rejection: float = Field(10, ge=0, le=20)
    rsi_bounce: float = Field(10, ge=0, le=20)
    liquidity_sweep: float = Field(10, ge=0, le=20)


class SessionScores(StrictModel):
    asian: StrategyPoints = Field(default_factory=lambda: StrategyPoints(
        vwap_reversion=20, bb_fade=18, pdh_pdl_rejection=16, rsi_bounce=12, liquidity_sweep=10))
    london: StrategyPoints = Field(default_factory=lambda: StrategyPoints(
        vwap_reversion=15, bb_fade=12, pdh_pdl_rejection=20, rsi_bounce=10, liquidity_sweep=18))
    overlap: StrategyPoints = Field(default_factory=StrategyPoints)  # the original's "unknown session": 10
    ny: StrategyPoints = Field(default_factory=lambda: StrategyPoints(
        vwap_reversion=18, bb_fade=15, pdh_pdl_rejection=15, rsi_bounce=20, liquidity_sweep=16))
    late_ny: StrategyPoints = Field(default_factory=lambda: StrategyPoints(
        vwap_reversion=16, bb_fade=14, pdh_pdl_rejection=10, rsi_bounce=18, liquidity_sweep=8))


def _default_session_map() -> list[SessionSpan]:
    return [SessionSpan(key="asian", start_hour=0, end_hour=8),
            SessionSpan(key="london", start_hour=8, end_hour=13),
            SessionSpan(key="overlap", start_hour=13, end_hour=16),
            SessionSpan(key="ny", start_hour=16, end_hour=20),
            SessionSpan(key="late_ny", start_hour=20, end_hour=24)]


def _default_blocked_windows() -> list[SessionWindow]:
    return [SessionWindow(name="london_ny_overlap", start="12:00", end="15:00"),
            SessionWindow(name="london_open_buffer", start="08:00", end="08:30"),
            SessionWindow(name="ny_open_buffer", start="13:00", end="13:30")]


class SessionParams(StrictModel):
    """UTC session map (hour -> key), blocked windows, per-session R:R and score tables."""

    session_map: list[SessionSpan] = Field(default_factory=_default_session_map)
    blocked_windows: list[SessionWindow] = Field(default_factory=_default_blocked_windows)
    adjustments: SessionAdjustments = Field(default_factory=SessionAdjustments)
    scores: SessionScores = Field(default_factory=SessionScores)

    @field_validator("session_map")
    @classmethod
    def _covers_the_day(cls, spans: list[SessionSpan]) -> list[SessionSpan]:
        ordered = sorted(spans, key=lambda s: s.start_hour)
        hour = 0
        for span in ordered:
            if span.start_hour != hour:
                raise ValueError(f"session_map must cover every UTC hour once: hour {hour} "
                                 f"{'is missing' if span.start_hour > hour else 'is covered twice'}")
            hour = span.end_hour
        if hour != 24:
            raise ValueError(f"session_map must reach hour 24, it stops at {hour}")
        return ordered


class ActivityParams(StrictModel):
    """Trade-activity criteria: enough volume, enough displacement, spacing and a daily cap."""

    min_volume_ratio: float = Field(0.5, gt=0, le=1, description="last bar volume / 1 h mean volume")
    min_price_deviation_atr: float = Field(0.5, gt=0, le=10, description="|price - VWAP| in ATRe")
    min_minutes_between_trades: float = Field(15, ge=0, le=1440)
    max_trades_per_day: int = Field(10, ge=1, le=1000)


# ----------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------

class StrategyRules(StrictModel):
    """R:R band and stop size of one strategy. The applied R:R is
    min(target_rr * session rr_multiplier, session max_rr, max_rr); below min_rr the setup is
    skipped. SL distance = ATRe * stop_atr_mult * session stop_tightener."""

    enabled: bool = True
    min_rr: float = Field(1.0, ge=0.5, le=20)
    target_rr: float = Field(1.2, gt=0, le=20)
    max_rr: float = Field(1.5, gt=0, le=20)
    stop_atr_mult: float = Field(0.8, gt=0, le=20)
    session_adjusted: bool = Field(True, description="apply the session R:R and stop adjustments")

    @model_validator(mode="after")
    def _rr_ordered(self) -> "StrategyRules":
        if not self.min_rr < self.target_rr < self.max_rr:
            raise ValueError(f"need min_rr < target_rr < max_rr, got {self.min_rr:g}, "
                             f"{self.target_rr:g}, {self.max_rr:g}")
        return self


class VwapReversionRules(StrategyRules):
    session_adjusted: bool = Field(False, description="the original never adjusts this strategy")
    deviation_pct: float = Field(0.5, gt=0, le=20, description="|P - VWAP| / VWAP above this %, or")
    deviation_atr: float = Field(0.75, gt=0, le=20, description="|P - VWAP| above this many ATRe")


class BbFadeRules(StrategyRules):
    min_rr: float = Field(1.3, ge=0.5, le=20)
    target_rr: float = Field(1.5, gt=0, le=20)
    max_rr: float = Field(2.0, gt=0, le=20)
    stop_atr_mult: float = Field(0.9, gt=0, le=20)
    band_touch_pct: float = Field(0.1, gt=0, le=5, description="'at the band' within this % of it")
    volume_decreasing_ratio: float = Field(0.9, gt=0, le=2)


class PdhPdlRejectionRules(StrategyRules):
    min_rr: float = Field(1.5, ge=0.5, le=20)
    target_rr: float = Field(1.8, gt=0, le=20)
    max_rr: float = Field(2.5, gt=0, le=20)
    stop_atr_mult: float = Field(0.9, gt=0, le=20)
    break_pct: float = Field(0.1, gt=0, le=5, description="the previous bar pierced the level by this %")
    wick_body_ratio: float = Field(1.5, gt=0, le=20)


class RsiBounceRules(StrategyRules):
    min_rr: float = Field(1.0, ge=0.5, le=20)
    target_rr: float = Field(1.2, gt=0, le=20)
    max_rr: float = Field(1.5, gt=0, le=20)
    stop_atr_mult: float = Field(0.7, gt=0, le=20)
    stoch_oversold: float = Field(20, gt=0, lt=100)
    stoch_overbought: float = Field(80, gt=0, lt=100)

    @model_validator(mode="after")
    def _stoch_ordered(self) -> "RsiBounceRules":
        if self.stoch_oversold >= self.stoch_overbought:
            raise ValueError("stoch_oversold must be below stoch_overbought")
        return self


class LiquiditySweepRules(StrategyRules):
    min_rr: float = Field(2.0, ge=0.5, le=20)
    target_rr: float = Field(2.5, gt=0, le=20)
    max_rr: float = Field(3.0, gt=0, le=20)
    stop_atr_mult: float = Field(1.0, gt=0, le=20)
    break_pct: float = Field(0.2, gt=0, le=5, description="the sweep pierced the level by this %")
    wick_body_ratio: float = Field(1.5, gt=0, le=20)


class StrategiesParams(StrictModel):
    vwap_reversion: VwapReversionRules = Field(default_factory=VwapReversionRules)
    bb_fade: BbFadeRules = Field(default_factory=BbFadeRules)
    pdh_pdl_rejection: PdhPdlRejectionRules = Field(default_factory=PdhPdlRejectionRules)
    rsi_bounce: RsiBounceRules = Field(default_factory=RsiBounceRules)
    liquidity_sweep: LiquiditySweepRules = Field(default_factory=LiquiditySweepRules)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------

class StrategyWeights(StrictModel):
    """Dynamic strategy weights; each table sums to 1 (within 0.01). Every strategy has one."""

    vwap_reversion: float = Field(..., ge=0, le=1)
    bb_fade: float = Field(..., ge=0, le=1)
    pdh_pdl_rejection: float = Field(..., ge=0, le=1)
    rsi_bounce: float = Field(..., ge=0, le=1)
    liquidity_sweep: float = Field(..., ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> "StrategyWeights":
        total = sum(getattr(self, name) for name in STRATEGY_NAMES)
        if abs(total - 1.0) > 0.01:
            raise ValueError(f"weights must sum to 1.0 (+/- 0.01), got {total:.4f}")
        return self


class ScoringParams(StrictModel):
    """Total score = entry + multi-timeframe + order-flow + session components (0..100)."""

    adx_trending: float = Field(25, gt=0, le=100, description="H1 ADX above this: no range scalps")
    adx_low: float = Field(15, gt=0, le=100, description="H1 ADX below this: low-ADX weights")
    weights_low_adx: StrategyWeights = Field(default_factory=lambda: StrategyWeights(
        vwap_reversion=0.315, bb_fade=0.27, pdh_pdl_rejection=0.18, rsi_bounce=0.135, liquidity_sweep=0.10))
    weights_normal: StrategyWeights = Field(default_factory=lambda: StrategyWeights(
        vwap_reversion=0.20, bb_fade=0.16, pdh_pdl_rejection=0.24, rsi_bounce=0.20, liquidity_sweep=0.20))
    entry_confidence_factor: float = Field(0.4, gt=0, le=1)
    entry_cap: float = Field(40, ge=0, le=100)
    mtf_points_3: float = Field(20, ge=0, le=100)
    mtf_points_2: float = Field(12, ge=0, le=100)
    mtf_points_1: float = Field(6, ge=0, le=100)
    flow_aligned_points: float = Field(12, ge=0, le=100)
    flow_neutral_points: float = Field(6, ge=0, le=100, description="also used when no order flow is given")
    flow_pressure_points: float = Field(8, ge=0, le=100)
    flow_cap: float = Field(20, ge=0, le=100)
    conflict_min_gap: float = Field(
        20, ge=0, le=100, description="opposite setups closer than this (total score) cancel out")

    @model_validator(mode="after")
    def _adx_ordered(self) -> "ScoringParams":
        if self.adx_low >= self.adx_trending:
            raise ValueError("adx_low must be below adx_trending")
        return self


# ----------------------------------------------------------------------------------------------
# Exits, re-entry, execution
# ----------------------------------------------------------------------------------------------

class ExitParams(StrictModel):
    """Early-exit rules, evaluated in priority order by the exit manager."""

    bos_exit: bool = Field(True, description="CRITICAL: close on an M15 break of structure")
    invalidation_exit_max_r: float = Field(0.8, ge=-5, le=20, description="invalidated & below this R: close")
    bb_expansion_exit_max_r: float = Field(0.3, ge=-5, le=20)
    breakeven_trigger_r: float = Field(0.5, gt=0, le=20)
    breakeven_window_minutes: float = Field(30, gt=0, le=1440)
    breakeven_buffer_atr: float = Field(0.1, ge=0, le=5, description="BE stop = entry +/- this many ATRe")
    breakeven_buffer_pct: float = Field(0.01, ge=0, le=5, description="buffer in % of entry when ATRe is 0")
    stagnation_minutes: float = Field(60, gt=0, le=10080)
    stagnation_max_abs_r: float = Field(0.3, gt=0, le=20)
    divergence_strength: float = Field(0.7, ge=0, le=1)
    divergence_min_profit_r: float = Field(0.1, ge=-5, le=20)
    opposite_flow_shift: float = Field(0.6, gt=0, le=1, description="|tape pressure shift| against the trade")
    opposite_flow_min_profit_r: float = Field(0.6, ge=0, le=20)
    exit_if_losing: bool = Field(True, description="opposite flow also closes a losing trade")


class ReentryParams(StrictModel):
    """After an exit: a cool-down, and no re-entry into a range that was invalidated."""

    cooldown_minutes: float = Field(15, ge=0, le=1440)
    block_after_invalidation: bool = True
    same_range_tolerance: float = Field(
        0.1, ge=0, le=1, description="edges within this fraction of the width: the same range")


class ExecutionParams(StrictModel):
    """Read by the monitor: trade automatically, or only send the setup as a signal."""

    auto_execute: bool = False
    auto_execute_min_score: float = Field(
        55, ge=0, le=100, description="total score (0..100) needed to auto-trade; below it: signal only")


class RangeScalpParams(SymbolParams):
    """Per-symbol range-scalp parameters, grouped by the job that reads them."""

    data: DataParams = Field(default_factory=DataParams)
    indicators: IndicatorParams = Field(default_factory=IndicatorParams)
    detection: DetectionParams = Field(default_factory=DetectionParams)
    invalidation: InvalidationParams = Field(default_factory=InvalidationParams)
    false_range: FalseRangeParams = Field(default_factory=FalseRangeParams)
    confluence: ConfluenceParams = Field(default_factory=ConfluenceParams)
    checks: CheckSwitches = Field(default_factory=CheckSwitches)
    sessions: SessionParams = Field(default_factory=SessionParams)
    activity: ActivityParams = Field(default_factory=ActivityParams)
    strategies: StrategiesParams = Field(default_factory=StrategiesParams)
    scoring: ScoringParams = Field(default_factory=ScoringParams)
    exits: ExitParams = Field(default_factory=ExitParams)
    reentry: ReentryParams = Field(default_factory=ReentryParams)
    execution: ExecutionParams = Field(default_factory=ExecutionParams)

    @model_validator(mode="after")
    def _history_is_enough(self) -> "RangeScalpParams":
        needed = max(self.invalidation.bb_expansion_min_bars, self.indicators.bb_period + 1,
                     self.indicators.rsi_period + 1, self.indicators.stoch_k + self.indicators.stoch_d)
        if self.data.lookback_m5_bars < needed:
            raise ValueError(f"data.lookback_m5_bars must be at least {needed} for the configured indicators")
        if self.confluence.min_touch_count < 2:
            raise ValueError("confluence.min_touch_count must be at least 2 (the partial score needs 2 touches)")
        return self


def _deep_merge(base: dict[str, Any], override: BaseModel) -> dict[str, Any]:
    """``base`` (a dumped model) with the keys the operator actually wrote in ``override`` on top,
    recursing into sub-models so that unwritten keys keep ``base``'s values."""
    merged = dict(base)
    for key in override.model_fields_set:
        value = getattr(override, key)
        if isinstance(value, BaseModel) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        elif isinstance(value, BaseModel):
            merged[key] = value.model_dump()
        elif isinstance(value, list):
            merged[key] = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
        else:
            merged[key] = value
    return merged


class RangeScalpConfig(StrategyConfig):
    params_model = RangeScalpParams
    interval_seconds: float = Field(5.0, ge=0.5, le=3600, description="entry scan cadence")
    exit_interval_seconds: float = Field(300.0, ge=5, le=86400)
    max_critical_errors_per_hour: int = Field(3, ge=1, le=1000, description="then entries auto-disable")
    exit_retry_attempts: int = Field(3, ge=0, le=20)
    exit_retry_interval_seconds: float = Field(2.0, ge=0, le=60)
    exit_max_slippage_pct: float = Field(0.15, gt=0, le=5)
    entry_max_slippage_pct: float = Field(0.1, gt=0, le=5)
    summary_minutes: float = Field(15, gt=0, le=1440, description="INFO summary of why no trade was taken, every N min")
    max_open_trades_per_symbol: int = Field(
        1, ge=1, le=10, description="open range trades per symbol; no new entry while this many are open")
    engine_failures_critical: int = Field(
        3, ge=1, le=100, description="engine exceptions in a row on one symbol that count as one critical error")
    reenable_entries: int = Field(
        0, ge=0, description="bump to re-enable entries after an auto-disable (any other edit of this file does too)")
    defaults: RangeScalpParams = Field(default_factory=RangeScalpParams)
    overrides: dict[str, RangeScalpParams] = Field(default_factory=dict)

    def for_symbol(self, symbol: str) -> RangeScalpParams:
        """Defaults with the symbol's override merged in deeply (see the module doc)."""
        override = self.overrides.get(symbol)
        if override is None:
            return self.defaults
        return merged_params(self, symbol, lambda: RangeScalpParams.model_validate(
            _deep_merge(self.defaults.model_dump(), override)))
