"""Risk filters of a range entry (spec A7): data quality, the weighted 3-confluence score,
range validity, false range, session blocks, trade activity, the ADX gate and the side-aware
entry-edge threshold. Each returns a ``Check`` (name, passed, one-line reason), so a decision
can always say which gate stopped it and why.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.range_scalp_model import RangeScalpParams
from engines.frozen import direct_init
from engines.range_data import iso
from engines.range_detection import (
    FalseRange, Invalidation, RangeStructure, bos_inside_range, false_range, invalidation,
)
from engines.range_market import MarketBase, MarketInputs, MarketMemo, RangeMarket, input_problem
from engines.range_sessions import blocked_window_at


class Check:
    """One gate's verdict: ``name``, ``passed`` and a one-line ``reason``; never changed once built.

    A gate may hand its reason over unformatted, as a function and its arguments
    (``Check(name, passed, text_of, args)``): ``text_of(*args)`` runs each time the reason is
    read. A brief evaluation (engines/range_scalp.py) reads only its failing gate's reason, so
    the numbers of the gates that passed are never formatted; whoever does read a reason reads
    the text an eager one would hold (equality and repr compare the text)."""

    __slots__ = ("name", "passed", "_reason", "_args")

    def __init__(self, name: str, passed: bool, reason: str | Callable[..., str],
                 args: tuple[Any, ...] | None = None) -> None:
        self.name = name
        self.passed = passed
        self._reason = reason
        self._args = args

    @property
    def reason(self) -> str:
        args = self._args
        return self._reason if args is None else self._reason(*args)  # type: ignore[operator,return-value]

    def line(self) -> str:
        return f"{self.name}: {'pass' if self.passed else 'FAIL'}: {self.reason}"

    def _key(self) -> tuple[str, bool, str]:
        return self.name, self.passed, self.reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Check) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Check(name={self.name!r}, passed={self.passed!r}, reason={self.reason!r})"


# ----------------------------------------------------------------------------------------------
# Data quality (A7.1)
# ----------------------------------------------------------------------------------------------

def data_quality(inputs: MarketInputs, params: RangeScalpParams, memo: MarketMemo | None = None) -> Check:
    """Enough closed M5 bars, clean values, and fresh: the last closed M5 bar closed at most
    ``max_bar_age_minutes`` before ``now``. Older than ``market_closed_minutes`` reads as
    'market closed' unless the symbol trades around the clock. ``memo``: see MarketMemo."""
    data = params.data
    problem = input_problem(inputs, memo)
    if problem:
        return Check("data_quality", False, problem)
    count = len(inputs.m5.time)
    if count < data.min_bars_m5:
        return Check("data_quality", False, f"{count} closed M5 bars, need {data.min_bars_m5}")
    closed_at = float(inputs.m5.time.item(-1) + inputs.m5.period_s)  # (plain ints: no numpy scalar)
    age_min = max(0.0, (inputs.now_s - closed_at) / 60.0)
    if age_min > data.max_bar_age_minutes:
        label = ("market closed" if age_min > data.market_closed_minutes and not data.always_open
                 else "stale data")
        return Check("data_quality", False, f"{label}: last M5 bar closed {age_min:.1f} min ago at "
                                            f"{iso(closed_at)} UTC (limit {data.max_bar_age_minutes:g} min)")
    return Check("data_quality", True, _fresh_text, (count, age_min))


def _fresh_text(count: int, age_min: float) -> str:
    return f"{count} closed M5 bars, last closed {age_min:.1f} min ago"


# ----------------------------------------------------------------------------------------------
# Weighted 3-confluence (A7.2)
# ----------------------------------------------------------------------------------------------

@direct_init
@dataclass(frozen=True)
class Confluence:
    score: float
    structure: float
    location: float
    confirmation: float
    signals: tuple[str, ...]
    passed: bool

    def check(self, params: RangeScalpParams) -> Check:
        """The confluence gate's verdict; its reason is formatted when read (see Check)."""
        return Check("confluence", self.passed, self._text, (params,))

    def _text(self, params: RangeScalpParams) -> str:
        conf = params.confluence
        parts = (f"structure {self.structure:g} + location {self.location:g} + confirmation "
                 f"{self.confirmation:g}{' (' + ', '.join(self.signals) + ')' if self.signals else ''}")
        verdict = ">=" if self.score >= conf.min_score else "<"
        suffix = "" if conf.required else " (not required)"
        return f"{self.score:g} {verdict} {conf.min_score:g}: {parts}{suffix}"


def _share(weight: float, fraction: float) -> float:
    return float(int(round(weight * fraction, 9)))


def rejection_wick(range_: RangeStructure, market: RangeMarket, params: RangeScalpParams) -> str | None:
    """A recent M5 candle (last 3) that tested an edge and was rejected: wick near the edge,
    wick > 1.5 x body, close back inside. Returns 'upper' or 'lower', or None."""
    conf = params.confluence
    m5 = market.m5
    start = len(m5.time) - min(conf.rejection_lookback_bars, len(m5.time))  # the last bars, as ``tail``: no Bars built
    near = conf.rejection_wick_atr * market.atr_eff
    rows = zip(m5.open[start:].tolist(), m5.high[start:].tolist(), m5.low[start:].tolist(),
               m5.close[start:].tolist())  # floats: the same math
    for o, h, l, c in reversed(list(rows)):
        body = abs(c - o)
        if body <= 0:
            continue
        if abs(h - range_.high) <= near and h - max(o, c) > conf.rejection_wick_body_ratio * body and c < range_.high:
            return "upper"
        if abs(l - range_.low) <= near and min(o, c) - l > conf.rejection_wick_body_ratio * body and c > range_.low:
            return "lower"
    return None


def at_edge(range_: RangeStructure, price: float, atr: float, at_edge_atr: float) -> str | None:
    if abs(price - range_.high) < at_edge_atr * atr:
        return "upper"
    if abs(price - range_.low) < at_edge_atr * atr:
        return "lower"
    return None


def confluence(range_: RangeStructure, market: RangeMarket, params: RangeScalpParams) -> Confluence:
    """Structure (touches) + location (away from the mid, in a gap zone or at an edge) +
    confirmation (RSI extreme, rejection wick or tape pressure); pass at >= 80 of 100."""
    conf = params.confluence
    if range_.touch_total >= conf.min_touch_count:
        structure = conf.structure_weight
    elif range_.touch_total >= 2:
        structure = _share(conf.structure_weight, conf.structure_partial_fraction)
    else:
        structure = 0.0
    price, atr = market.price, market.atr_eff
    distance = abs(price - range_.mid) / atr if atr > 0 else 0.0
    in_zone = range_.critical_gaps.zone_of(price) is not None
    if distance >= conf.price_edge_threshold_atr or in_zone or at_edge(range_, price, atr, conf.at_edge_atr):
        location = conf.location_weight
    elif distance >= conf.price_edge_threshold_atr / 2.0:
        location = _share(conf.location_weight, conf.location_partial_fraction)
    else:
        location = 0.0
    signals: list[str] = []
    allowed = conf.allowed_signals
    if "rsi_extreme" in allowed and market.rsi_beyond(conf.rsi_oversold, conf.rsi_overbought):
        signals.append("rsi_extreme")
    if "rejection_wick" in allowed and rejection_wick(range_, market, params):
        signals.append("rejection_wick")
    if "tape_pressure" in allowed and market.flow is not None and market.flow.is_directional():
        signals.append("tape_pressure")
    confirmation = conf.confirmation_weight if signals else 0.0
    score = structure + location + confirmation
    return Confluence(score, structure, location, confirmation, tuple(signals),
                      score >= conf.min_score or not conf.required)


# ----------------------------------------------------------------------------------------------
# Range validity, false range, session, ADX
# ----------------------------------------------------------------------------------------------

def range_validity(range_: RangeStructure, market: RangeMarket, params: RangeScalpParams
                   ) -> tuple[Check, Invalidation]:
    """Valid = not invalidated (fewer than 2 of the 4 signals), no break of structure inside the
    range (integrity), and, if configured, validated by touches on both sides."""
    report = invalidation(range_, market, params)
    if report.invalidated:
        return Check("range_validity", False, "invalidated: " + "; ".join(report.details)), report
    if bos_inside_range(range_, market):
        assert market.bos is not None
        return Check("range_validity", False, f"integrity: M15 {market.bos.direction} break of "
                                              f"{market.bos.level:.6g} inside the range"), report
    if params.checks.require_validated_range and not range_.validated:
        return Check("range_validity", False, f"not validated: touches {range_.touches_upper}/"
                                              f"{range_.touches_lower}, need "
                                              f"{params.detection.min_touches_per_side} per side"), report
    return Check("range_validity", True, _intact_text, (report.signals,)), report


def _intact_text(signals: tuple[str, ...]) -> str:
    return f"intact (signals: {', '.join(signals)})" if signals else "intact"


def false_range_check(market: RangeMarket, params: RangeScalpParams) -> tuple[Check, FalseRange]:
    report = false_range(market, params)
    return Check("false_range", not report.is_false, _red_flags_text,
                 (report, params.false_range.red_flags_required)), report


def _red_flags_text(report: FalseRange, need: int) -> str:
    text = "; ".join(report.details) if report.details else "no red flags"
    if report.is_false:
        return f"{len(report.flags)} red flags (>= {need}): {text}"
    return f"{len(report.flags)} red flag(s) (< {need}): {text}"


def session_filter(market: RangeMarket, params: RangeScalpParams) -> Check:
    """Blocked UTC windows (London/NY overlap, open buffers) and sessions whose R:R adjustment
    is disabled take no range trades."""
    window = blocked_window_at(market.now_s, params.sessions)
    key = market.session_key
    if window is not None:
        return Check("session", False, f"blocked window {window.name} {window.start}-{window.end} UTC")
    if not getattr(params.sessions.adjustments, key).enabled:
        return Check("session", False, f"session '{key}' is disabled for range trades")
    return Check("session", True, f"session '{key}'")


def adx_gate(market: MarketBase, params: RangeScalpParams) -> tuple[Check, str]:
    """No range scalps in a trending market (H1 ADX above 25). Returns the weight regime:
    'low_adx' below 15, else 'normal'. Unknown ADX fails closed."""
    sc = params.scoring
    adx = market.adx
    if not math.isfinite(adx):
        need = 2 * params.indicators.adx_period
        return Check("adx", False, f"H1 ADX unavailable ({len(market.inputs.h1)} closed H1 bars, need {need})"), "normal"
    if adx > sc.adx_trending:
        return Check("adx", False, f"H1 ADX {adx:.1f} > {sc.adx_trending:g}: trending, no range scalps"), "normal"
    regime = "low_adx" if adx < sc.adx_low else "normal"
    return Check("adx", True, _adx_text, (adx, regime)), regime


def _adx_text(adx: float, regime: str) -> str:
    return f"H1 ADX {adx:.1f} ({regime} weights)"


# ----------------------------------------------------------------------------------------------
# Trade activity (A7.4)
# ----------------------------------------------------------------------------------------------

def trade_activity(market: RangeMarket, params: RangeScalpParams, last_entry_s: float | None,
                   entries_today: int, news_blackout: str | None) -> Check:
    """Enough volume (last bar >= 0.5 x the 1 h mean), price displaced from VWAP by >= 0.5 ATRe,
    15 min since the last range entry, under the daily cap, and no news blackout."""
    act = params.activity
    if news_blackout:
        return Check("activity", False, f"news blackout: {news_blackout}")
    if market.volume_avg > 0:
        ratio = market.volume_current / market.volume_avg
        if ratio < act.min_volume_ratio:
            return Check("activity", False, f"volume {ratio:.2f} x the 1 h mean < {act.min_volume_ratio:g}")
    else:
        ratio = math.nan  # no volume in the data: the volume test cannot apply
    deviation = abs(market.price - market.vwap) / market.atr_eff if market.atr_eff > 0 else 0.0
    if deviation < act.min_price_deviation_atr:
        return Check("activity", False, f"price {deviation:.2f} ATRe from VWAP < {act.min_price_deviation_atr:g}")
    if last_entry_s is not None:
        minutes = (market.now_s - last_entry_s) / 60.0
        if minutes < act.min_minutes_between_trades:
            return Check("activity", False, f"last range entry {minutes:.1f} min ago "
                                            f"(< {act.min_minutes_between_trades:g})")
    if entries_today >= act.max_trades_per_day:
        return Check("activity", False, f"{entries_today} range entries today (max {act.max_trades_per_day})")
    volume_text = "no volume data" if math.isnan(ratio) else f"volume {ratio:.2f} x mean"
    return Check("activity", True, f"{volume_text}, {deviation:.2f} ATRe from VWAP")


# ----------------------------------------------------------------------------------------------
# Entry edge (side aware)
# ----------------------------------------------------------------------------------------------

def edge_check(side: str, range_: RangeStructure, market: RangeMarket, params: RangeScalpParams) -> str | None:
    """None when price sits on the edge a ``side`` trade fades: for a buy at least
    ``price_edge_threshold_atr`` ATRe below the mid, or in the lower gap zone, or at the range
    low; sells mirror this. Otherwise the reason it does not."""
    conf = params.confluence
    price, atr = market.price, market.atr_eff
    wanted = "lower" if side == "buy" else "upper"
    distance = ((range_.mid - price) if side == "buy" else (price - range_.mid)) / atr if atr > 0 else 0.0
    if distance >= conf.price_edge_threshold_atr:
        return None
    if range_.critical_gaps.zone_of(price) == wanted or at_edge(range_, price, atr, conf.at_edge_atr) == wanted:
        return None
    return (f"{side} needs price {conf.price_edge_threshold_atr:g} ATRe {'below' if side == 'buy' else 'above'} "
            f"the mid or at the {wanted} edge; it is {distance:+.2f} ATRe")
