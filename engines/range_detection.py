"""Range detection (spec A3), invalidation (A4) and false-range red flags (A5).

A range is tried in the configured order of preference (session range, previous-day range,
dynamic swing range); the first candidate with usable geometry wins. Geometry means: high above
low, and a width neither too narrow nor too wide, both in percent of the mid and in effective
ATRs. Touches, critical gap zones and the expansion state describe the range; whether it may be
traded is decided later by the filters (validity, false range, confluence).

What the candidates derive from the M15 bars alone (the session bars and their extremes, the
previous day's touch bars, the swing levels, touches and gap zones of given levels) lives in an
``M15Detection``, built when the M15 bars object (one M5 close in three), the session start or the
params change, and kept by the
symbol's MarketMemo in between; only what depends on the clock and the M5 values (widths in
ATRs, the anchors' hold, the range's mid and ATR) is worked out at every close.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from config.range_scalp_model import RangeScalpParams
from engines.frozen import direct_init
from engines.indicators import swing_pivots
from engines.range_data import Bars, iso
from engines.range_market import CarriedTouches, MarketBase, MarketCore, MarketMemo, RangeMarket, session_start_s
from engines.range_metrics import count_touches

INVALIDATION_SIGNALS = ("m15_bos_confirmed", "candles_outside_range", "vwap_momentum_high", "bb_width_expansion")


@direct_init
@dataclass(frozen=True)
class CriticalGaps:
    """The edge zones of a range: the top and bottom ``fraction`` of its width (A3.1)."""

    upper_start: float
    upper_end: float
    lower_start: float
    lower_end: float

    def zone_of(self, price: float) -> str | None:
        if self.upper_start <= price <= self.upper_end:
            return "upper"
        if self.lower_start <= price <= self.lower_end:
            return "lower"
        return None


def critical_gaps(high: float, low: float, fraction: float) -> CriticalGaps:
    gap = fraction * (high - low)
    return CriticalGaps(high - gap, high, low, low + gap)


@direct_init
@dataclass(frozen=True)
class RangeStructure:
    """A detected range. ``mid`` is the session VWAP (the range's fair value) or the midpoint;
    ``atr`` is the effective ATR when it was detected. Serialisable for the trade registry."""

    range_type: str  # 'session' | 'daily' | 'dynamic'
    high: float
    low: float
    mid: float
    atr: float
    critical_gaps: CriticalGaps
    touches_upper: int
    touches_lower: int
    validated: bool
    expansion_state: str = "stable"
    detected_at: float = 0.0  # epoch seconds
    invalidation_signals: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def width(self) -> float:
        return self.high - self.low

    @property
    def width_pct(self) -> float:
        centre = (self.high + self.low) / 2.0
        return self.width / centre * 100.0

    @property
    def width_atr(self) -> float:
        return self.width / self.atr if self.atr > 0 else math.inf

    @property
    def touch_total(self) -> int:
        return self.touches_upper + self.touches_lower

    def describe(self) -> str:
        return (f"{self.range_type} range {self.low:.6g}-{self.high:.6g} (width {self.width_pct:.2f}%, "
                f"{self.width_atr:.1f} ATRe), touches {self.touches_upper} up / {self.touches_lower} down"
                f"{'' if self.validated else ' (not validated)'}, {self.expansion_state}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "range_type": self.range_type, "high": self.high, "low": self.low, "mid": self.mid,
            "atr": self.atr,
            "critical_gaps": {"upper_zone": {"start": self.critical_gaps.upper_start,
                                             "end": self.critical_gaps.upper_end},
                              "lower_zone": {"start": self.critical_gaps.lower_start,
                                             "end": self.critical_gaps.lower_end}},
            "touch_count": {"upper": self.touches_upper, "lower": self.touches_lower},
            "validated": self.validated, "expansion_state": self.expansion_state,
            "detected_at": self.detected_at, "invalidation_signals": list(self.invalidation_signals),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RangeStructure":
        try:
            gaps = data["critical_gaps"]
            return cls(
                range_type=str(data["range_type"]), high=float(data["high"]), low=float(data["low"]),
                mid=float(data["mid"]), atr=float(data["atr"]),
                critical_gaps=CriticalGaps(float(gaps["upper_zone"]["start"]), float(gaps["upper_zone"]["end"]),
                                           float(gaps["lower_zone"]["start"]), float(gaps["lower_zone"]["end"])),
                touches_upper=int(data["touch_count"]["upper"]), touches_lower=int(data["touch_count"]["lower"]),
                validated=bool(data["validated"]), expansion_state=str(data.get("expansion_state", "stable")),
                detected_at=float(data.get("detected_at", 0.0)),
                invalidation_signals=tuple(data.get("invalidation_signals", ())),
                notes=tuple(data.get("notes", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"range record is incomplete or malformed: {exc!r}") from None


# ----------------------------------------------------------------------------------------------
# Candidates
# ----------------------------------------------------------------------------------------------

@direct_init
@dataclass(frozen=True)
class Candidate:
    range_type: str
    high: float
    low: float
    touch_bars: Bars
    notes: tuple[str, ...] = ()


@direct_init
@dataclass(frozen=True)
class SessionBars:
    """The closed M15 bars of the current session range and what both the session candidate
    and the adaptive anchors read of them: their extremes and since when each has held (the
    CLOSE time of the last bar that reached it). Extremes are NaN without bars."""

    start_s: int
    bars: Bars
    high: float
    low: float
    high_held_since: float
    low_held_since: float


def _last_reaching(values: list[float], level: float, above: bool) -> int:
    """Index of the last value at or beyond ``level`` (``>=`` above, ``<=`` below), else the
    last index: ``np.flatnonzero(values >= level)[-1]`` with its fallback, as plain floats
    (NaN reaches nothing, as in numpy)."""
    for index in range(len(values) - 1, -1, -1):
        if (values[index] >= level) if above else (values[index] <= level):
            return index
    return len(values) - 1


def session_bars(m15: Bars, start_s: int) -> SessionBars:
    """The M15 bars opening at or after ``start_s`` and their extremes (see SessionBars)."""
    bars = m15.since(start_s)
    if len(bars) == 0:
        return SessionBars(start_s, bars, math.nan, math.nan, math.nan, math.nan)
    high, low = float(np.maximum.reduce(bars.high)), float(np.minimum.reduce(bars.low))
    time = bars.time
    close_after = bars.period_s
    high_at = _last_reaching(bars.high.tolist(), high, True)
    low_at = _last_reaching(bars.low.tolist(), low, False)
    return SessionBars(start_s, bars, high, low, float(time[high_at] + close_after), float(time[low_at] + close_after))


class M15Detection:
    """What detection derives from one M15 bars object and the session start alone: the session
    bars and candidate, the daily touch bars, the latest swing levels, the touches and gap zones
    of given levels. Each part is computed when first asked and kept: bars never change once
    built, so while the M15 bars stay the same object (two M5 closes in three) every part is
    the one the whole computation would give again. ``MarketMemo`` keeps the last one
    (``m15_detection``); a caller without a memo builds one per call."""

    def __init__(self, m15: Bars, session_start_s: int, params: RangeScalpParams,
                 touches: CarriedTouches | None = None) -> None:
        self.m15 = m15
        self.session_start_s = session_start_s
        self.params = params
        self.touches = touches  # the memo's touch count carried from one M15 bars object to the next
        self._daily: tuple[int, Bars] | None = None  # (day start, the M15 bars since then)
        self._edges: dict[tuple[Bars, float, float], tuple[int, int, CriticalGaps]] = {}

    @cached_property
    def session(self) -> SessionBars:
        return session_bars(self.m15, self.session_start_s)

    @cached_property
    def session_candidate(self) -> Candidate | str:
        return _session_candidate(self.session, self.params)

    @cached_property
    def swings(self) -> tuple[float, float] | None:
        det = self.params.detection
        return latest_swings(self.m15, det.swing_left, det.swing_right)

    def daily_bars(self, day_start_s: int) -> Bars:
        """The M15 bars since the previous day began (the last day start asked is kept)."""
        if self._daily is None or self._daily[0] != day_start_s:
            self._daily = (day_start_s, self.m15.since(day_start_s))
        return self._daily[1]

    def edges(self, candidate: Candidate) -> tuple[int, int, CriticalGaps]:
        """``range_edges(candidate)``, kept per touch bars object and levels (all it depends on
        with these params; the key holds the bars, so their identity is never reused). A dynamic
        candidate's touch window moves with the clock: counted every time, not kept."""
        if candidate.range_type == "dynamic":
            return range_edges(candidate, self.params, self.touches)
        key = (candidate.touch_bars, candidate.high, candidate.low)
        edges = self._edges.get(key)
        if edges is None:
            edges = self._edges[key] = range_edges(candidate, self.params, self.touches)
        return edges


def m15_detection(market: MarketBase, params: RangeScalpParams, memo: MarketMemo | None = None) -> M15Detection:
    """The M15Detection of ``market`` now: the memo's last one while its M15 bars are the same
    object, the params the same and the session start the same; else a new one."""
    m15, start = market.m15, session_start_s(market, params)
    if memo is None:
        return M15Detection(m15, start, params)
    return memo.last("m15_detection", (params, m15, start), lambda: M15Detection(m15, start, params, memo.touches))


def _facts(market: MarketBase, params: RangeScalpParams, facts: M15Detection | None) -> M15Detection:
    """``facts``, which must be of ``market``'s M15 bars and these params, or a new M15Detection."""
    if facts is None:
        return m15_detection(market, params)
    assert facts.m15 is market.m15 and facts.params is params, "M15Detection of other bars or params"
    return facts


def session_candidate(market: MarketBase, params: RangeScalpParams, facts: M15Detection | None = None
                      ) -> Candidate | str:
    """High and low of the closed M15 bars since the current session range started (A3.2).
    ``facts``: the M15Detection of ``market`` (built when not given)."""
    return _facts(market, params, facts).session_candidate


def _session_candidate(session: SessionBars, params: RangeScalpParams) -> Candidate | str:
    need = params.detection.session_min_bars_m15
    count = len(session.bars)
    if count < need:
        return f"session range: {count} closed M15 bars since {iso(session.start_s)} UTC, need {need}"
    return Candidate("session", session.high, session.low, session.bars, (f"session since {iso(session.start_s)} UTC",))


def adaptive_anchors(pdh: float, pdl: float, market: MarketBase, params: RangeScalpParams,
                     facts: M15Detection | None = None) -> tuple[float, float, tuple[str, ...]]:
    """Move stale previous-day anchors (A3.9): after a 40 % change of the H1 ATR the anchors
    become the session extremes; otherwise a session extreme beyond an anchor by more than
    0.25 % replaces it. A session extreme is used only once it has held ``anchor_hold_minutes``
    (the original planned this hold but never implemented it). ``facts``: see session_candidate."""
    det = params.detection
    if not det.adaptive_anchors:
        return pdh, pdl, ()
    session = _facts(market, params, facts).session
    if len(session.bars) == 0:
        return pdh, pdl, ()
    s_high, s_low = session.high, session.low
    hold_s = det.anchor_hold_minutes * 60.0
    high_held = market.now_s - session.high_held_since >= hold_s
    low_held = market.now_s - session.low_held_since >= hold_s
    notes: list[str] = []
    prev = market.atr_h1_prev
    if math.isfinite(prev) and prev > 0 and math.isfinite(market.atr_h1):
        change = abs(market.atr_h1 - prev) / prev * 100.0
        if change > det.anchor_atr_change_pct:
            high, low = (s_high if high_held else pdh), (s_low if low_held else pdl)
            if high > low:
                return high, low, (f"anchors: H1 ATR changed {change:.0f}%, held session levels used",)
    if s_high > pdh * (1 + det.anchor_drift_pct / 100.0) and high_held:
        notes.append(f"anchors: high moved {pdh:.6g} -> {s_high:.6g}")
        pdh = s_high
    if s_low < pdl * (1 - det.anchor_drift_pct / 100.0) and low_held:
        notes.append(f"anchors: low moved {pdl:.6g} -> {s_low:.6g}")
        pdl = s_low
    return pdh, pdl, tuple(notes)


def daily_candidate(market: MarketBase, params: RangeScalpParams, facts: M15Detection | None = None
                    ) -> Candidate | str:
    """The previous trading day's high and low (A3.3), adapted by the anchors rule; touches are
    counted over the M15 bars since that day began. ``facts``: see session_candidate."""
    day = market.previous_day
    if day is None:
        return f"daily range: {market.previous_day_note}"
    facts = _facts(market, params, facts)
    high, low, notes = adaptive_anchors(day.high, day.low, market, params, facts)
    return Candidate("daily", high, low, facts.daily_bars(day.day_start_s), notes)


def dynamic_candidate(market: MarketBase, params: RangeScalpParams, facts: M15Detection | None = None
                      ) -> Candidate | str:
    """The most recent M15 swing high and swing low (A3.4); touches over the last 48 h.
    ``facts``: see session_candidate."""
    det = params.detection
    m15 = market.m15
    levels = _facts(market, params, facts).swings
    if levels is None:
        return "dynamic range: no M15 swing high and swing low yet"
    high, low = levels
    if high <= low:
        return f"dynamic range: latest swing high {high:.6g} is not above swing low {low:.6g}"
    touch_bars = m15.since(int(market.now_s - det.dynamic_touch_hours * 3600))
    return Candidate("dynamic", high, low, touch_bars if len(touch_bars) else m15)


def latest_swings(bars: Bars, left: int, right: int) -> tuple[float, float] | None:
    """(high, low) of the latest swing high and the latest swing low, or None without both."""
    is_high, is_low = swing_pivots(bars.high, bars.low, left, right)
    highs, lows = np.flatnonzero(is_high), np.flatnonzero(is_low)
    if len(highs) == 0 or len(lows) == 0:
        return None
    return float(bars.high[highs[-1]]), float(bars.low[lows[-1]])


_BUILDERS = {"session": session_candidate, "daily": daily_candidate, "dynamic": dynamic_candidate}


def width_problem(high: float, low: float, atr_eff: float, params: RangeScalpParams) -> str | None:
    """Too narrow or too wide, in % of the centre and in effective ATRs (seed 2.4)."""
    det = params.detection
    if high <= low:
        return f"high {high:.6g} is not above low {low:.6g}"
    width = high - low
    pct = width / ((high + low) / 2.0) * 100.0
    if pct < det.min_width_pct:
        return f"too narrow: {pct:.3f}% < {det.min_width_pct:g}%"
    if pct > det.max_width_pct:
        return f"too wide: {pct:.3f}% > {det.max_width_pct:g}% (likely not a range)"
    if atr_eff > 0:
        in_atr = width / atr_eff
        if in_atr < det.min_width_atr:
            return f"too narrow: {in_atr:.2f} ATRe < {det.min_width_atr:g}"
        if in_atr > det.max_width_atr:
            return f"too wide: {in_atr:.1f} ATRe > {det.max_width_atr:g}"
    return None


def range_edges(candidate: Candidate, params: RangeScalpParams, touches: CarriedTouches | None = None
                ) -> tuple[int, int, CriticalGaps]:
    """The candidate's touches of each edge and its gap zones: what a range adds to its levels.
    ``touches``: counts on from the last count (the same counts, see CarriedTouches)."""
    det = params.detection
    count = count_touches if touches is None else touches.count
    upper, lower = count(candidate.touch_bars, candidate.high, candidate.low, det.touch_tolerance_pct)
    return upper, lower, critical_gaps(candidate.high, candidate.low, det.critical_gap_fraction)


def build_range(candidate: Candidate, market: MarketCore, params: RangeScalpParams,
                facts: M15Detection | None = None) -> RangeStructure:
    """The range of ``candidate`` now. ``facts``: the M15Detection the candidate came from,
    which keeps its touches and gap zones (they depend on the touch bars and levels only)."""
    det = params.detection
    upper, lower, gaps = range_edges(candidate, params) if facts is None else facts.edges(candidate)
    mid = market.vwap if math.isfinite(market.vwap) else (candidate.high + candidate.low) / 2.0
    validated = upper >= det.min_touches_per_side and lower >= det.min_touches_per_side
    # positional, in RangeStructure's field order (built at every M5 bar: keyword arguments
    # would cost the constructor a dictionary); no invalidation signals yet
    return RangeStructure(candidate.range_type, candidate.high, candidate.low, mid, market.atr_eff, gaps, upper, lower,
                          validated, market.expansion_state, market.now_s, (), candidate.notes)


def detect_range(market: MarketCore, params: RangeScalpParams, memo: MarketMemo | None = None
                 ) -> tuple[RangeStructure | None, tuple[str, ...]]:
    """The first range type, in order of preference, with usable geometry; plus why each
    earlier type was passed over. ``memo``: the symbol's MarketMemo, which keeps the last
    M15Detection: what depends only on the M15 bars is derived once per M15 bars object."""
    candidate, passed_over, facts = detect_candidate(market, params, memo)
    if candidate is None:
        return None, passed_over
    return build_range(candidate, market, params, facts), passed_over


def detect_candidate(market: MarketBase, params: RangeScalpParams, memo: MarketMemo | None = None
                     ) -> tuple[Candidate | None, tuple[str, ...], M15Detection]:
    """``detect_range`` before its range is built: the candidate it builds the range of (None:
    no range), why the earlier types were passed over and the M15Detection it came from (for
    ``build_range``). Reads only the base: whether there is a range does not depend on its
    mid or expansion state."""
    facts = m15_detection(market, params, memo)
    passed_over: list[str] = []
    for range_type in params.detection.range_types:
        candidate = _BUILDERS[range_type](market, params, facts)
        if isinstance(candidate, str):
            passed_over.append(candidate)
            continue
        problem = width_problem(candidate.high, candidate.low, market.atr_eff, params)
        if problem:
            passed_over.append(f"{range_type} range {candidate.low:.6g}-{candidate.high:.6g}: {problem}")
            continue
        return candidate, tuple(passed_over), facts
    return None, tuple(passed_over), facts


# ----------------------------------------------------------------------------------------------
# Invalidation (A4) and integrity (A3.6)
# ----------------------------------------------------------------------------------------------

@direct_init
@dataclass(frozen=True)
class Invalidation:
    signals: tuple[str, ...]
    details: tuple[str, ...]
    invalidated: bool


def bos_inside_range(range_: RangeStructure, market: RangeMarket) -> bool:
    """An M15 break of structure whose broken level lies within the range: the structure that
    defined the range has been broken (A3.6 integrity; the A4 'm15_bos_confirmed' signal)."""
    bos = market.bos
    return bos is not None and range_.low <= bos.level <= range_.high


def invalidation(range_: RangeStructure, market: RangeMarket, params: RangeScalpParams) -> Invalidation:
    """Which of the four invalidation signals fire for ``range_`` now; broken at >= 2 (config)."""
    inv = params.invalidation
    signals: list[str] = []
    details: list[str] = []
    closes = market.m5.close[-inv.candles_outside_range:].tolist()
    if len(closes) == inv.candles_outside_range and all(c > range_.high or c < range_.low for c in closes):
        signals.append("candles_outside_range")
        details.append(f"last {inv.candles_outside_range} M5 closes outside {range_.low:.6g}-{range_.high:.6g}")
    if abs(market.vwap_momentum) > inv.vwap_momentum_atr:
        signals.append("vwap_momentum_high")
        details.append(f"VWAP momentum {market.vwap_momentum:+.3f} ATRe/bar beyond {inv.vwap_momentum_atr:g}")
    if market.bb_expansion_pct is not None and market.bb_expansion_pct > inv.bb_width_expansion_pct:
        signals.append("bb_width_expansion")
        details.append(f"BB width {market.bb_expansion_pct:+.0f}% vs its mean (limit {inv.bb_width_expansion_pct:g}%)")
    if inv.require_m15_bos and bos_inside_range(range_, market):
        assert market.bos is not None
        signals.append("m15_bos_confirmed")
        details.append(f"M15 {market.bos.direction} BOS of {market.bos.level:.6g} (close {market.bos.close:.6g})")
    return Invalidation(tuple(signals), tuple(details), len(signals) >= inv.signals_required)


def with_signals(range_: RangeStructure, report: Invalidation) -> RangeStructure:
    """``replace(range_, invalidation_signals=report.signals)``, built directly (every entry
    check that reaches the gates makes one; ``replace`` costs several times more). A range that
    has those signals already (none, mostly) is returned itself: the copy would equal it."""
    r = range_
    if r.invalidation_signals == report.signals:
        return r
    return RangeStructure(r.range_type, r.high, r.low, r.mid, r.atr, r.critical_gaps, r.touches_upper,
                          r.touches_lower, r.validated, r.expansion_state, r.detected_at, report.signals, r.notes)


# ----------------------------------------------------------------------------------------------
# False range (A5)
# ----------------------------------------------------------------------------------------------

@direct_init
@dataclass(frozen=True)
class FalseRange:
    flags: tuple[str, ...]
    details: tuple[str, ...]
    is_false: bool


def false_range(market: RangeMarket, params: RangeScalpParams) -> FalseRange:
    """Red flags of an imbalanced consolidation: rising volume, VWAP drifting, candle bodies
    growing, a CVD divergence (real order flow when given, else the candle-CVD fallback)."""
    fr = params.false_range
    flags: list[str] = []
    details: list[str] = []
    if market.volume_avg > 0:
        increase = market.volume_current / market.volume_avg - 1.0
        if increase > fr.volume_increase_fraction:
            flags.append("volume_increasing")
            details.append(f"volume {increase:+.0%} vs the 1 h mean")
    if abs(market.vwap_momentum) > fr.vwap_momentum_atr:
        flags.append("vwap_momentum_high")
        details.append(f"VWAP momentum {market.vwap_momentum:+.3f} ATRe/bar")
    if market.body_expansion:
        flags.append("candle_body_expansion")
        details.append(f"candle bodies x{market.body_expansion_ratio:.2f}")
    if market.flow is not None:
        strength, source = market.flow.cvd_divergence_strength, "order flow"
    else:
        strength = market.candle_divergence.strength if market.candle_divergence else 0.0
        source = "candle CVD"
    if strength > fr.cvd_divergence_strength:
        flags.append("cvd_divergence")
        details.append(f"{source} divergence strength {strength:.2f}")
    return FalseRange(tuple(flags), tuple(details), len(flags) >= fr.red_flags_required)


# ----------------------------------------------------------------------------------------------
# Nested ranges (A3.8 / A7.5): informational only, as in the original's intent
# ----------------------------------------------------------------------------------------------

def swing_range(bars: Bars, left: int, right: int) -> tuple[float, float] | None:
    """(high, low) of the latest swing high and swing low, or None."""
    if len(bars) < left + right + 1:
        return None
    levels = latest_swings(bars, left, right)
    return levels if levels is not None and levels[0] > levels[1] else None


def nested_alignment(market: RangeMarket, params: RangeScalpParams, side: str | None = None) -> tuple[str, ...]:
    """Warnings when the swing ranges are not nested (M5 inside M15 inside H1), and for a
    ``side`` when the M5 range sits in the wrong third of the M15 range (a buy high up, a sell
    low down). Informational: it never blocks a trade."""
    det = params.detection
    frames = {"M5": swing_range(market.m5.tail(288), det.swing_left, det.swing_right),
              "M15": swing_range(market.m15, det.swing_left, det.swing_right),
              "H1": swing_range(market.inputs.h1, det.swing_left, det.swing_right)}
    warnings = []
    for inner, outer in (("M5", "M15"), ("M15", "H1")):
        a, b = frames[inner], frames[outer]
        if a and b and not (b[1] <= a[1] and a[0] <= b[0]):
            warnings.append(f"nested: {inner} range {a[1]:.6g}-{a[0]:.6g} not inside {outer} {b[1]:.6g}-{b[0]:.6g}")
    m5, m15 = frames["M5"], frames["M15"]
    if side and m5 and m15:
        mid, third = (m5[0] + m5[1]) / 2.0, (m15[0] - m15[1]) / 3.0
        if side == "buy" and mid > m15[0] - third:
            warnings.append("nested: buy with the M5 range in the upper third of the M15 range")
        if side == "sell" and mid < m15[1] + third:
            warnings.append("nested: sell with the M5 range in the lower third of the M15 range")
    return tuple(warnings)
