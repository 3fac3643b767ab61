"""micro_scalp.json: the M1 mean-reversion scalper's switches and per-symbol parameters.

Every rule of engines/micro_scalp*.py reads its numbers from ``MicroScalpParams``. Values that
scale with the instrument are in ATR multiples (ATR = Wilder ATR(``atr_period``) of M1), percent
of price (``*_pct``: 0.05 means 0.05 %) or fractions of a measured width, never in dollars.
Stop-loss / take-profit sizes are in the unit chosen by ``stop_unit`` ("atr" or "pct").

The monitor (monitors/micro_scalp.py) reads the "monitor" keys: per symbol the entry gates
(trading sessions in UTC, cooldowns, hourly/daily caps, position limit, data freshness) and the
exits (trailing stop, time exit); strategy-wide the circuit breaker, the summary period and the
spread window. The engine ignores them.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from config.base import StrategyConfig, SymbolParams

Hour = int


class MicroScalpParams(SymbolParams):
    """Per-symbol micro-scalp parameters. Defaults are the shipped generic values; the JSON file
    overrides per symbol (XAUUSD, BTCUSD, EURUSD)."""

    # --- data and shared indicators ------------------------------------------------------------
    min_bars: int = Field(60, ge=40, le=5000, description="bars needed before any rule runs")
    atr_period: int = Field(14, ge=2, le=100, description="Wilder ATR period used for every ATR multiple")
    vwap_anchor_hour_utc: Hour = Field(0, ge=0, le=23, description="UTC hour the session VWAP resets")
    ema_period: int = Field(20, ge=2, le=200)
    bb_period: int = Field(20, ge=5, le=200)
    bb_std: float = Field(2.0, gt=0, le=5)
    pivot_left: int = Field(2, ge=1, le=10, description="micro structure pivots (CHOCH, equal highs/lows)")
    pivot_right: int = Field(2, ge=1, le=10)
    active_sessions_utc: list[tuple[Hour, Hour]] = Field(
        default_factory=lambda: [(8, 21)],
        description="[start, end) UTC hours counted as active (session momentum and quality); "
                    "start > end wraps midnight; end may be 24")

    # --- Layer 1: hard filters -----------------------------------------------------------------
    atr1_min_pct: float = Field(0.01, ge=0, le=5, description="ATR(1) = last bar's true range, min % of price")
    m1_range_avg_bars: int = Field(10, ge=2, le=200)
    m1_range_avg_min_pct: float = Field(0.015, ge=0, le=5, description="mean high-low of recent bars, min % of price")
    max_spread_pct: float = Field(0.02, gt=0, le=5, description="ask-bid cap, % of mid")
    max_spread_median_ratio: float | None = Field(
        2.5, gt=1, le=20, description="spread / rolling median cap when spread stats exist; null = off")
    spread_min_samples: int = Field(20, ge=1, le=10000, description="median ratio applies from this many samples")

    # --- Layer 2: location ---------------------------------------------------------------------
    vwap_tolerance_mode: Literal["fixed_pct", "atr"] = "fixed_pct"
    vwap_tolerance_pct: float = Field(0.05, gt=0, le=5, description="VWAP band half-width, % of VWAP")
    vwap_tolerance_atr: float = Field(0.15, gt=0, le=10, description="VWAP band half-width in ATR")
    intraday_range_bars: int = Field(20, ge=5, le=1000)
    edge_tolerance_atr: float = Field(0.25, gt=0, le=10, description="'at' a range edge or liquidity level")
    ob_lookback: int = Field(3, ge=1, le=20, description="candidate/next bar pairs examined for order blocks")
    ob_next_body_max_ratio: float = Field(0.5, gt=0, lt=1, description="pause bar body / impulse bar body")
    ob_zone_min_atr: float = Field(0.3, ge=0, le=20)
    ob_zone_max_atr: float = Field(3.0, gt=0, le=50)
    ob_retest_tolerance_atr: float = Field(0.1, ge=0, le=5)
    equal_level_tolerance_atr: float = Field(0.1, gt=0, le=5, description="two pivots this close are 'equal'")
    equal_level_lookback: int = Field(40, ge=10, le=1000)

    # --- Layer 3: candle signals ---------------------------------------------------------------
    wick_trap_ratio: float = Field(1.5, gt=0, le=20)
    sweep_lookback: int = Field(10, ge=3, le=200, description="reference bars whose high/low a sweep must take")
    sweep_recent_bars: int = Field(3, ge=1, le=20, description="a sweep counts if it happened this recently")
    sweep_min_break_atr: float = Field(0.1, ge=0, le=5, description="smaller breaks halve the sweep confidence")
    vwap_rejection_wick_ratio: float = Field(1.5, gt=0, le=20)
    choch_recent_bars: int = Field(5, ge=1, le=50)
    increasing_volume_ratio: float = Field(1.2, gt=1, le=20)
    volume_spike_ratio: float = Field(1.3, gt=1, le=20)
    volume_spike_lookback: int = Field(10, ge=2, le=500)
    absorption_wick_ratio: float = Field(2.0, gt=0, le=20)

    # --- Layer 4: confluence (every strategy's raw score is normalised to 0..10) --------------
    min_score: float = Field(6.0, ge=0, le=10)
    aplus_score: float = Field(8.5, ge=0, le=10)

    # --- regimes, hysteresis, router -----------------------------------------------------------
    regime_detection_enabled: bool = True
    vwap_reversion_threshold: float = Field(70, ge=0, le=100)
    range_threshold: float = Field(70, ge=0, le=100)
    balanced_threshold: float = Field(65, ge=0, le=100)
    router_min_confidence: float = Field(60, ge=0, le=100)
    regime_exit_margin: float = Field(10, ge=0, le=50, description="a held regime stays until it falls this far below its threshold")
    regime_switch_margin: float = Field(10, ge=0, le=50, description="a challenger must beat the held regime by this")
    regime_confirm_bars: int = Field(2, ge=1, le=20, description="bars a new regime must lead before it is adopted")
    vwap_min_sigma: float = Field(2.0, gt=0, le=10)
    vwap_min_deviation_pct: float = Field(0.2, gt=0, le=20)
    vwap_slope_bars: int = Field(5, ge=2, le=60)
    vwap_max_slope_atr: float = Field(0.1, gt=0, le=10, description="flat: |VWAP change over the slope window| / ATR below this")
    atr_compare_bars: int = Field(14, ge=2, le=500, description="ATR now is compared with ATR this many bars earlier")
    atr_stable_min: float = Field(0.9, gt=0, le=5)
    atr_stable_max: float = Field(1.5, gt=0, le=10)
    atr_drop_ratio: float = Field(0.95, gt=0, le=1)
    range_lookback: int = Field(30, ge=10, le=1000)
    range_pivot_left: int = Field(3, ge=1, le=10)
    range_pivot_right: int = Field(3, ge=1, le=10)
    range_min_width_atr: float = Field(2.0, ge=0, le=100)
    range_max_width_atr: float = Field(12.0, gt=0, le=500)
    range_edge_tolerance: float = Field(0.15, gt=0, lt=0.5, description="fraction of the range width counted as 'at the edge'")
    range_respect_tolerance: float = Field(0.1, gt=0, lt=0.5, description="fraction of width for an edge touch")
    range_min_respects: int = Field(4, ge=1, le=50, description="edge touches that were rejected, both edges at least once")
    range_max_adx: float = Field(25, gt=0, le=100, description="ADX below this = no trend")
    adx_period: int = Field(14, ge=2, le=100)
    bb_squeeze_ratio: float = Field(0.9, gt=0, le=2, description="mean of last 5 BB widths / mean of last 20 below this")
    compression_range_atr: float = Field(0.75, gt=0, le=5, description="mean range of the last 5 bars below this many ATR")
    equilibrium_max_atr: float = Field(0.3, gt=0, le=10, description="|EMA - VWAP| within this many ATR")
    balanced_alignment_atr: float = Field(0.5, gt=0, le=10, description="|VWAP - box mid| within this many ATR")
    balanced_box_bars: int = Field(3, ge=2, le=30, description="bars before the signal bar forming the breakout box")

    # --- stops (all strategies) ----------------------------------------------------------------
    stop_unit: Literal["atr", "pct"] = "atr"
    edge_sl: float = Field(1.0, gt=0, le=50)
    edge_tp: float = Field(2.0, gt=0, le=100)
    vwap_sl: float = Field(1.0, gt=0, le=50)
    vwap_tp: float = Field(1.5, gt=0, le=100)
    range_sl_buffer: float = Field(0.25, ge=0, le=50, description="beyond the swept extreme of the last 5 bars")
    balanced_sl: float = Field(1.0, gt=0, le=50)
    balanced_tp_r: float = Field(1.25, gt=0, le=20, description="balanced-zone TP as a multiple of its risk")
    min_reward_risk: float = Field(1.0, gt=0, le=20)
    min_stop_distance_pct: float = Field(0.0, ge=0, le=5, description="floor for SL/TP distance, % of price (broker stops level is added by the caller)")
    stops_level_buffer: float = Field(1.05, ge=1, le=3, description="a stop closer than the minimum is pushed to min x this")

    # --- monitor: entry gates and exits (read by monitors/micro_scalp.py, not by the engine) ----
    trading_sessions_utc: list[tuple[Hour, Hour]] = Field(
        default_factory=lambda: [(0, 24)],
        description="[start, end) UTC hours in which NEW entries are allowed (exits run always); "
                    "start > end wraps midnight; end may be 24")
    cooldown_after_trade_seconds: float = Field(120, ge=0, le=86400, description="no new entry this long after an entry")
    cooldown_after_failure_seconds: float = Field(60, ge=0, le=86400,
                                                  description="no new entry this long after an order that did not open")
    max_trades_per_hour: int = Field(6, ge=1, le=1000, description="entries on this symbol in a rolling hour")
    max_trades_per_day: int = Field(30, ge=1, le=10000, description="entries on this symbol since 00:00 UTC")
    max_positions_per_symbol: int = Field(1, ge=1, le=50, description="open micro-scalp positions on this symbol")
    max_bar_age_seconds: float = Field(150, ge=5, le=86400,
                                       description="the last CLOSED M1 bar must have closed at most this long ago")
    max_quote_age_seconds: float = Field(
        60, ge=1, le=3600, description="the last quote change must be at most this old (a quiet market may not tick for a while)")
    max_bars: int = Field(1500, ge=40, le=5000,
                          description="bars passed to the engine: back to the VWAP anchor hour, at most this many")
    trail_enabled: bool = True
    trail_start_r: float = Field(0.5, ge=0, le=20, description="the trailing stop starts once the trade is this many R up")
    trail_atr: float = Field(0.3, gt=0, le=20, description="the trailing stop follows price at this many ATR")
    trail_min_step_atr: float = Field(0.05, ge=0, le=5, description="move the stop only by at least this many ATR")
    time_exit_minutes: float | None = Field(None, gt=0, le=10080, description="close a trade held this long; null = off")

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "MicroScalpParams":
        problems = []
        if self.aplus_score < self.min_score:
            problems.append(f"aplus_score ({self.aplus_score}) must be >= min_score ({self.min_score})")
        if self.ob_zone_min_atr >= self.ob_zone_max_atr:
            problems.append("ob_zone_min_atr must be < ob_zone_max_atr")
        if self.atr_stable_min >= self.atr_stable_max:
            problems.append("atr_stable_min must be < atr_stable_max")
        if self.range_min_width_atr >= self.range_max_width_atr:
            problems.append("range_min_width_atr must be < range_max_width_atr")
        for name in ("vwap_reversion_threshold", "range_threshold", "balanced_threshold"):
            if getattr(self, name) - self.regime_exit_margin < 0:
                problems.append(f"regime_exit_margin ({self.regime_exit_margin}) exceeds {name}")
        if self.edge_tp / self.edge_sl < self.min_reward_risk:
            problems.append("edge_tp / edge_sl is below min_reward_risk")
        if self.vwap_tp / self.vwap_sl < self.min_reward_risk:
            problems.append("vwap_tp / vwap_sl is below min_reward_risk")
        if self.balanced_tp_r < self.min_reward_risk:
            problems.append("balanced_tp_r is below min_reward_risk")
        # rules that look back a fixed number of bars must fit inside min_bars
        needs = {
            "atr_compare_bars + atr_period + 1": self.atr_compare_bars + self.atr_period + 1,
            "2 * adx_period": 2 * self.adx_period,
            "bb_period + 20": self.bb_period + 20,
            "sweep_lookback + sweep_recent_bars": self.sweep_lookback + self.sweep_recent_bars,
            "range_lookback": self.range_lookback,
            "equal_level_lookback": self.equal_level_lookback,
            "2 * vwap_slope_bars": 2 * self.vwap_slope_bars,
        }
        for label, bars in needs.items():
            if bars > self.min_bars:
                problems.append(f"min_bars ({self.min_bars}) is smaller than {label} ({bars})")
        for key in ("active_sessions_utc", "trading_sessions_utc"):
            for start, end in getattr(self, key):
                if not (0 <= start <= 23 and 1 <= end <= 24 and start != end):
                    problems.append(f"{key} entry [{start}, {end}] must be 0<=start<=23, 1<=end<=24, start!=end")
        if not self.trading_sessions_utc:
            problems.append("trading_sessions_utc must list at least one [start, end] window ([[0, 24]] = all day)")
        if self.max_bars < self.min_bars:
            problems.append(f"max_bars ({self.max_bars}) must be >= min_bars ({self.min_bars})")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class MicroScalpConfig(StrategyConfig):
    params_model = MicroScalpParams
    interval_seconds: float = Field(5.0, ge=0.5, le=3600)
    # strategy-wide monitor settings (per-symbol ones live in MicroScalpParams)
    breaker_failures: int = Field(3, ge=1, le=100, description="consecutive engine errors that pause a symbol")
    breaker_pause_seconds: float = Field(300, ge=1, le=86400, description="how long a tripped symbol is paused")
    summary_minutes: float = Field(15, gt=0, le=1440, description="INFO summary of why no trade was taken, every N min")
    spread_window: int = Field(100, ge=5, le=10000, description="quote samples in the rolling spread median")
    defaults: MicroScalpParams = Field(default_factory=MicroScalpParams)
    overrides: dict[str, MicroScalpParams] = Field(default_factory=dict)
