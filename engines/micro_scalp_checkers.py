"""Layer 1 (shared hard filters) and the four strategy checkers (Layers 2-4 and the trade plan).

Every checker returns a ``CheckOutcome`` whose reasons name each layer with its numbers and whose
``failed`` is the first failing gate ("L2.location", "L3.primary", "L4.score", "stops.reward_risk").
Scores are normalised to 0..10 (raw / strategy maximum x 10) so ``min_score`` and ``aplus_score``
mean the same for every strategy.

Entry is the ask for a buy and the bid for a sell. SL/TP sizes are in ``stop_unit``: "atr"
(multiples of ATR(``atr_period``)) or "pct" (percent of the entry price).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from config.micro_scalp_model import MicroScalpParams
from engines.frozen import direct_init
from engines.micro_scalp_features import Features
from engines.micro_scalp_reasons import LazyText
from engines.micro_scalp_regimes import RANGE, RangeStructure, RegimeScore, count_respects, vwap_deviation, \
    vwap_slope_atr
from engines.micro_scalp_signals import (Choch, EqualLevels, OrderBlock, Side, Sweep, bb_squeeze, compression_block,
                                         cvd_divergence, engulfing, equal_highs_lows, in_sessions, increasing_volume,
                                         micro_choch, micro_order_blocks, micro_sweep, volatility_expanding,
                                         volume_spike, vwap_tap_rejection, wick_ratio, wick_trap)
from engines.spread import SpreadStats

EDGE = "edge_based"
CLUSTER = "LIQUIDITY_CLUSTER"


def _gate_line(name: str, passed: bool, text: str) -> str:
    return f"{name}: {'pass' if passed else 'FAIL'} {text}"


def _failed_line(name: str, fmt: Callable[..., str], args: tuple[Any, ...]) -> str:
    """``_gate_line`` of a failed gate whose text is ``fmt(*args)``."""
    return _gate_line(name, False, fmt(*args))


class Trace:
    """Collects reasons and remembers the first failing gate. With ``explain=False`` (the
    engine's quiet mode) it keeps only that gate's reason, the one a no-trade decision carries:
    passing gates record nothing and ``gate_later`` formats nothing for them."""

    def __init__(self, explain: bool = True) -> None:
        self.reasons: list[str] = []  # a quiet trace's one reason may be a LazyText
        self.failed: str | None = None
        self.explain = explain

    def gate(self, name: str, passed: bool, text: str) -> bool:
        if passed:
            if self.explain:
                self.reasons.append(_gate_line(name, True, text))
            return True
        if self.failed is None:
            self.failed = name
            self.reasons.append(_gate_line(name, False, text))
        elif self.explain:
            self.reasons.append(_gate_line(name, False, text))
        return False

    def gate_later(self, name: str, passed: bool, fmt: Callable[..., str], *args: Any) -> bool:
        """``gate(name, passed, fmt(*args))``, with ``fmt`` called only when its reason is kept,
        and, for the one reason a quiet trace keeps, only when that is read (a ``LazyText``)."""
        if self.explain:
            return self.gate(name, passed, fmt(*args))
        if passed or self.failed is not None:
            return passed
        self.failed = name
        self.reasons.append(LazyText(_failed_line, name, fmt, args))  # type: ignore[arg-type]
        return False

    def note(self, text: str) -> None:
        if self.explain:
            self.reasons.append(text)


@direct_init
@dataclass(frozen=True)
class CheckOutcome:
    strategy: str
    passed: bool
    reasons: tuple[str, ...]   # only the failing gate's when the Trace was quiet (explain=False), maybe a LazyText
    failed: str | None = None
    side: Side | None = None
    entry: float | None = None
    sl: float | None = None
    tp: float | None = None
    score: float | None = None
    aplus: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@direct_init
@dataclass(frozen=True)
class Context:
    """What a checker needs besides the features."""

    f: Features
    p: MicroScalpParams
    now: datetime
    flow: Any
    scores: dict[str, RegimeScore]
    min_stop_distance: float  # price units, broker stops level (+ freeze) from the caller


# ----------------------------------------------------------------------------------------------
# Layer 1
# ----------------------------------------------------------------------------------------------

def layer1(f: Features, p: MicroScalpParams, spread_stats: SpreadStats | None, trace: Trace) -> bool:
    """ATR(1), average M1 range and spread, all relative to price. Every check is reported; the
    first failure is the decision's ``failed``."""
    price = f.mid
    atr1_pct = 100.0 * f.atr1 / price
    range_pct = 100.0 * f.avg_range / price
    spread_pct = 100.0 * f.spread / price
    median = _spread_median_check(f, p, spread_stats)
    if not trace.explain and atr1_pct >= p.atr1_min_pct and range_pct >= p.m1_range_avg_min_pct \
            and spread_pct <= p.max_spread_pct and (median is None or median[0] <= median[2]):
        return True  # quiet and passing: no reason is kept, so no gate needs to record one
    ok = trace.gate_later("L1.atr1", atr1_pct >= p.atr1_min_pct, _atr1_text, f.atr1, atr1_pct, p.atr1_min_pct)
    ok &= trace.gate_later("L1.avg_range", range_pct >= p.m1_range_avg_min_pct, _avg_range_text,
                           p.m1_range_avg_bars, f.avg_range, range_pct, p.m1_range_avg_min_pct)
    ok &= trace.gate_later("L1.spread", spread_pct <= p.max_spread_pct, _spread_text,
                           f.spread, spread_pct, p.max_spread_pct)
    if median is not None:
        ratio, median_spread, maximum = median
        ok &= trace.gate_later("L1.spread_median", ratio <= maximum, _spread_median_text, ratio, median_spread,
                               maximum)
    return bool(ok)


def _spread_median_check(f: Features, p: MicroScalpParams,
                         spread_stats: SpreadStats | None) -> tuple[float, float, float] | None:
    """(spread / median spread, the median, the maximum ratio) for the L1.spread_median gate;
    None when it does not apply."""
    maximum = p.max_spread_median_ratio
    if maximum is None or spread_stats is None or spread_stats.samples < p.spread_min_samples \
            or not spread_stats.median > 0:  # (a NaN median, too: the gate does not apply)
        return None
    return f.spread / spread_stats.median, spread_stats.median, maximum


def _atr1_text(atr1: float, atr1_pct: float, minimum: float) -> str:
    return f"ATR(1) {atr1:.6g} = {atr1_pct:.4f}% >= {minimum}%"


def _avg_range_text(bars: int, avg_range: float, range_pct: float, minimum: float) -> str:
    return f"avg range({bars}) {avg_range:.6g} = {range_pct:.4f}% >= {minimum}%"


def _spread_text(spread: float, spread_pct: float, maximum: float) -> str:
    return f"spread {spread:.6g} = {spread_pct:.4f}% <= {maximum}%"


def _spread_median_text(ratio: float, median: float, maximum: float) -> str:
    return f"spread {ratio:.2f}x median {median:.6g} <= {maximum}x"


# ----------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------

def _box(f: Features, count: int, end: int | None = None) -> tuple[float, float]:
    """(highest high, lowest low) of the ``count`` bars before index ``end`` (default: the last
    ``count`` bars); validated prices, so the same values as the arrays' max/min. The last
    ``count`` bars' box is carried from the previous bar's (``CarriedBox``)."""
    c = f.cols
    if end is None:
        return f.kept(("box", count), CarriedBox).at(c.high, c.low, f.n, count)
    first = end - count if end > count else 0
    return max(c.high[first:end]), min(c.low[first:end])


class CarriedBox:
    """The box of the last ``count`` bars of one window lineage, kept between evaluations: when
    the window moved on by one bar, the bar that left it decides. Unless it held the old
    extreme, the new extreme is the larger (smaller) of the old one and the new bar's: the same
    value ``max``/``min`` of the slice give (validated prices: no NaN, and positive, so no -0.0).
    Anything else (more bars, fewer, the bar that left held the extreme) takes the slice's."""

    def __init__(self) -> None:
        self.end = self.count = -1
        self.high = self.low = 0.0

    def at(self, high: list[float], low: list[float], end: int, count: int) -> tuple[float, float]:
        """(highest high, lowest low) of bars [end - count, end) (from 0 when fewer)."""
        if end == self.end and count == self.count:
            return self.high, self.low
        first = end - count
        if end == self.end + 1 and count == self.count and first > 0:  # slid by one: bar first - 1 left
            last = end - 1
            if high[first - 1] < self.high:
                if high[last] > self.high:
                    self.high = high[last]
            else:
                self.high = max(high[first:end])
            if low[first - 1] > self.low:
                if low[last] < self.low:
                    self.low = low[last]
            else:
                self.low = min(low[first:end])
        else:
            if first < 0:
                first = 0
            self.high, self.low, self.count = max(high[first:end]), min(low[first:end]), count
        self.end = end
        return self.high, self.low


def entry_price(f: Features, side: Side) -> float:
    return f.ask if side == "buy" else f.bid


def stop_unit(ctx: Context, entry: float) -> float:
    """Price size of one SL/TP unit: one ATR, or one percent of the entry."""
    return ctx.f.atr_now if ctx.p.stop_unit == "atr" else entry / 100.0


def vwap_tolerance(f: Features, p: MicroScalpParams) -> float:
    """Half-width of the VWAP band in price (``vwap_tolerance_text`` names it)."""
    if p.vwap_tolerance_mode == "atr":
        return p.vwap_tolerance_atr * f.atr_now
    return p.vwap_tolerance_pct / 100.0 * f.vwap_now


def vwap_tolerance_text(p: MicroScalpParams) -> str:
    """How ``vwap_tolerance`` was sized (formatted only for a reason that is kept)."""
    return f"{p.vwap_tolerance_atr}ATR" if p.vwap_tolerance_mode == "atr" else f"{p.vwap_tolerance_pct}% of VWAP"


def vwap_side(f: Features) -> Side | None:
    if f.mid < f.vwap_now:
        return "buy"
    if f.mid > f.vwap_now:
        return "sell"
    return None


def normalised(raw: float, maximum: float) -> float:
    return round(10.0 * raw / maximum, 6)


def score_gate(trace: Trace, p: MicroScalpParams, raw: float, maximum: float, parts: list[str]) -> tuple[bool, float, bool]:
    score = normalised(raw, maximum)
    aplus = score >= p.aplus_score
    passed = trace.gate("L4.score", score >= p.min_score,
                        f"{raw:g}/{maximum:g} = {score:.2f}/10 >= {p.min_score} (A+ {p.aplus_score}: {aplus}) "
                        f"[{', '.join(parts)}]")
    return passed, score, aplus


def finalize(ctx: Context, trace: Trace, strategy: str, side: Side, entry: float, sl: float, tp: float,
             score: float, aplus: bool, meta: dict[str, Any]) -> CheckOutcome:
    """Sides, broker minimum distance and reward:risk; SL/TP closer than the minimum distance are
    pushed out to minimum x ``stops_level_buffer`` (reported)."""
    p = ctx.p
    sign = 1.0 if side == "buy" else -1.0
    minimum = max(ctx.min_stop_distance, p.min_stop_distance_pct / 100.0 * entry)
    sl_dist = sign * (entry - sl)
    tp_dist = sign * (tp - entry)
    if not trace.gate("stops.sides", sl_dist > 0 and tp_dist > 0,
                      f"{side} entry {entry:.6g} sl {sl:.6g} tp {tp:.6g}"):
        return _fail(strategy, trace, side)
    if minimum > 0:
        pushed = []
        if sl_dist < minimum:
            sl_dist = minimum * p.stops_level_buffer
            pushed.append("sl")
        if tp_dist < minimum:
            tp_dist = minimum * p.stops_level_buffer
            pushed.append("tp")
        trace.note(f"stops.min_distance: {minimum:.6g} ({'pushed ' + '+'.join(pushed) if pushed else 'ok'})")
        sl, tp = entry - sign * sl_dist, entry + sign * tp_dist
    rr = tp_dist / sl_dist
    if not trace.gate("stops.reward_risk", rr >= p.min_reward_risk - 1e-12,
                      f"{rr:.2f} >= {p.min_reward_risk} (risk {sl_dist:.6g}, reward {tp_dist:.6g})"):
        return _fail(strategy, trace, side)
    return CheckOutcome(strategy, True, tuple(trace.reasons), None, side, entry, sl, tp, score, aplus,
                        {**meta, "reward_risk": round(rr, 4)})


def _fail(strategy: str, trace: Trace, side: Side | None = None, score: float | None = None) -> CheckOutcome:
    # positional (``{}``: the meta the field's factory would make): keywords cost more per call
    return CheckOutcome(strategy, False, tuple(trace.reasons), trace.failed, side, None, None, None, score, False, {})


def _signals_text(found: dict[str, Side | None | bool]) -> str:
    return ", ".join(f"{name}({value})" if isinstance(value, str) else name for name, value in found.items()) or "none"


# ----------------------------------------------------------------------------------------------
# edge-based (the fallback)
# ----------------------------------------------------------------------------------------------

def check_edge(ctx: Context, trace: Trace) -> CheckOutcome:
    """Generic micro scalp at an edge. Direction priority: fresh CHOCH, then sweep (fade
    convention), then the VWAP side (below -> buy). Directional candle signals count only when
    they agree with that direction. (Straight code, without comprehensions or dicts of the
    signals: it runs on about half the bars, and each of those costs a call or an object.)"""
    f, p = ctx.f, ctx.p
    atr, mid = f.atr_now, f.mid
    tol = vwap_tolerance(f, p)
    vwap_dist = abs(mid - f.vwap_now)
    in_band = vwap_dist <= tol
    box_high, box_low = _box(f, p.intraday_range_bars)
    edge_tol = p.edge_tolerance_atr * atr
    blocks = micro_order_blocks(f, p)
    tags: list[str] = []
    if in_band:
        tags.append("VWAP_BAND")
    if abs(mid - box_high) <= edge_tol or abs(mid - box_low) <= edge_tol:
        tags.append("INTRADAY_RANGE")
    if _block_holds(blocks, mid, 0.0, None):
        tags.append("OB_ZONE")
    # the liquidity clusters (the costliest tag) can wait in quiet mode once another tag located the
    # price: the gate passes either way and its text is not kept; the score and meta add them later
    levels: EqualLevels | None = None
    if trace.explain or not tags:
        levels = equal_highs_lows(f, p)
        if _near_level(mid, levels, edge_tol):
            tags.append(CLUSTER)
    if not trace.gate_later("L2.location", bool(tags), _edge_location_text, tags, vwap_dist, tol, p,
                            p.intraday_range_bars, box_low, box_high, edge_tol, len(blocks), levels):
        return _fail(EDGE, trace)

    choch = micro_choch(f, p)
    sweep = micro_sweep(f, p)
    side = choch.side if choch is not None else sweep.trade_side if sweep is not None else vwap_side(f)
    if not trace.gate_later("L3.direction", side is not None, _edge_direction_text, side, choch, sweep):
        return _fail(EDGE, trace)

    found = (wick_trap(f, p.wick_trap_ratio), sweep.trade_side if sweep else None,
             vwap_tap_rejection(f, tol, p.vwap_rejection_wick_ratio), engulfing(f))  # as _EDGE_PRIMARIES
    primary_hits = _agreeing(_EDGE_PRIMARIES, found, side)
    if not trace.gate_later("L3.primary", bool(primary_hits), _edge_primary_text, primary_hits, side, found):
        return _fail(EDGE, trace, side)
    session = in_sessions(ctx.now, p.active_sessions_utc)
    secondary_hits: list[str] = []
    if _block_holds(blocks, mid, p.ob_retest_tolerance_atr * atr, side):
        secondary_hits.append("OB_RETEST")
    if choch is not None and choch.side == side:
        secondary_hits.append("FRESH_MICRO_CHOCH")
    if session:
        secondary_hits.append("SESSION_MOMENTUM")
    if increasing_volume(f, p):
        secondary_hits.append("INCREASING_VOLUME")
    if cvd_divergence(ctx.flow) == side:
        secondary_hits.append("CVD_DIVERGENCE")
    if not trace.gate_later("L3.secondary", bool(secondary_hits), _hits_text, secondary_hits):
        return _fail(EDGE, trace, side)

    if levels is None and _near_level(mid, equal_highs_lows(f, p), edge_tol):  # (quiet mode waited)
        tags.append(CLUSTER)
    ratio = wick_ratio(f)
    wick_pts = 2 if ratio >= 2.0 else 1 if ratio >= 1.5 else 0
    vwap_pts = (2 if vwap_dist <= tol / 2 else 1) if in_band else 0
    edge_pts = min(len(tags), 2)
    vol_pts = 1 if volatility_expanding(f) else 0
    session_pts = 1 if session else 0
    raw = wick_pts + vwap_pts + edge_pts + vol_pts + session_pts
    passed, score, aplus = score_gate(trace, p, raw, 8, [
        f"wick {wick_pts} ({ratio:.2f}x)", f"vwap {vwap_pts}", f"edges {edge_pts}",
        f"volatility {vol_pts}", f"session {session_pts}"])
    if not passed:
        return _fail(EDGE, trace, side, score)
    entry = entry_price(f, side)
    unit = stop_unit(ctx, entry)
    sign = 1.0 if side == "buy" else -1.0
    sl, tp = entry - sign * p.edge_sl * unit, entry + sign * p.edge_tp * unit
    trace.note(f"stops.plan: sl {p.edge_sl} x {unit:.6g}, tp {p.edge_tp} x {unit:.6g} ({p.stop_unit})")
    return finalize(ctx, trace, EDGE, side, entry, sl, tp, score, aplus,
                    {"location": tags, "primary": primary_hits, "secondary": secondary_hits})


_EDGE_PRIMARIES = ("LONG_WICK_TRAP", "MICRO_LIQUIDITY_SWEEP", "VWAP_TAP_REJECTION", "STRONG_ENGULFING")


def _agreeing(names: tuple[str, ...], found: tuple[Side | None, ...], side: Side) -> list[str]:
    """The ``names`` whose signal ``found`` (in the same order) supports ``side``."""
    hits = []
    for name, signal in zip(names, found):
        if signal == side:
            hits.append(name)
    return hits


def _block_holds(blocks: list[OrderBlock], price: float, tolerance: float, side: Side | None) -> bool:
    """Does one of ``blocks`` (of ``side``, unless None) contain ``price`` within ``tolerance``?"""
    for block in blocks:
        if (side is None or block.side == side) and block.contains(price, tolerance):
            return True
    return False


def _edge_direction_text(side: Side | None, choch: Choch | None, sweep: Sweep | None) -> str:
    if choch is not None:
        why = f"CHOCH {choch.side} {choch.bars_ago} bars ago"
    elif sweep is not None:
        why = f"sweep: {sweep.describe()}"
    else:
        why = "VWAP side"
    return f"{side} from {why}"


def _hits_text(hits: list[str]) -> str:
    return f"{hits or 'none'}"


def _near_level(price: float, levels: EqualLevels, tolerance: float) -> bool:
    """``price`` within ``tolerance`` of an equal-highs or equal-lows level (LIQUIDITY_CLUSTER)."""
    for level in levels.highs + levels.lows:
        if abs(price - level) <= tolerance:
            return True
    return False


def _edge_location_text(tags: list[str], vwap_dist: float, tol: float, p: MicroScalpParams, range_bars: int,
                        box_low: float, box_high: float, edge_tol: float, blocks: int, levels: EqualLevels) -> str:
    return (f"tags {tags or 'none'} (vwap dist {vwap_dist:.6g} vs {tol:.6g} [{vwap_tolerance_text(p)}]; "
            f"{range_bars}-bar range {box_low:.6g}-{box_high:.6g} tol {edge_tol:.6g}; "
            f"{blocks} OB; equal highs {len(levels.highs)} lows {len(levels.lows)})")


def _edge_primary_text(primary_hits: list[str], side: Side, found: tuple[Side | None, ...]) -> str:
    seen = {name: signal for name, signal in zip(_EDGE_PRIMARIES, found) if signal}
    return f"{_signals_text(dict.fromkeys(primary_hits, side))} agree with {side}; seen {_signals_text(seen)}"


# ----------------------------------------------------------------------------------------------
# VWAP reversion
# ----------------------------------------------------------------------------------------------

def _vwap_location_text(sigma: float, min_sigma: float, pct: float, min_pct: float, slope: float | None,
                        max_slope: float, flat: bool) -> str:
    slope_text = "n/a" if slope is None else f"{slope:+.3f}"
    return (f"sigma {sigma:.2f} (>= {min_sigma}) or dev {pct:.3f}% (>= {min_pct}%); "
            f"slope {slope_text}ATR (< {max_slope}) flat={flat}")


def check_vwap_reversion(ctx: Context, trace: Trace) -> CheckOutcome:
    """Fade a stretched price back toward the session VWAP (below VWAP -> buy)."""
    name = "vwap_reversion"
    f, p = ctx.f, ctx.p
    sigma, pct = vwap_deviation(f)
    slope = vwap_slope_atr(f, p)
    stretched = sigma >= p.vwap_min_sigma or pct >= p.vwap_min_deviation_pct
    flat = slope is not None and abs(slope) < p.vwap_max_slope_atr
    if not trace.gate_later("L2.location", f.vwap_std_now > 0 and stretched and flat, _vwap_location_text,
                            sigma, p.vwap_min_sigma, pct, p.vwap_min_deviation_pct, slope, p.vwap_max_slope_atr, flat):
        return _fail(name, trace)
    side = vwap_side(f)
    if not trace.gate("L3.direction", side is not None, f"{side} toward VWAP {f.vwap_now:.6g}"):
        return _fail(name, trace)
    choch = micro_choch(f, p)
    sweep = micro_sweep(f, p)
    primaries = {
        "CHOCH_AT_EXTREME": choch is not None and choch.side == side and sigma >= p.vwap_min_sigma,
        "MICRO_LIQUIDITY_SWEEP": sweep is not None and sweep.trade_side == side,
        "LONG_WICK_TRAP": wick_trap(f, p.wick_trap_ratio) == side,
    }
    primary_hits = [k for k, v in primaries.items() if v]
    if not trace.gate("L3.primary", bool(primary_hits), f"{primary_hits or 'none'} for {side}"):
        return _fail(name, trace, side)
    spike = volume_spike(f, p)
    c, last = f.cols, f.n - 1
    body = c.body[last]
    absorption_wick = c.lower[last] if side == "buy" else c.upper[last]
    absorption = body > 0 and absorption_wick > p.absorption_wick_ratio * body or body == 0 and absorption_wick > 0
    secondaries = {"VOLUME_CONFIRMED": spike, "ABSORPTION_WICK": bool(absorption),
                   "CVD_DIVERGENCE": cvd_divergence(ctx.flow) == side}
    secondary_hits = [k for k, v in secondaries.items() if v]
    if not trace.gate_later("L3.secondary", bool(secondary_hits), _hits_text, secondary_hits):
        return _fail(name, trace, side)
    deviation_pts = 2.0 if sigma >= 2.5 else 1.5 if sigma >= 2.0 else 1.0 if sigma >= 1.5 else 0.0
    choch_pts = 2.0 if primaries["CHOCH_AT_EXTREME"] else 1.0
    raw = 2 * deviation_pts + 2 * choch_pts + 2 * (2.0 if spike else 0.0) + (1.0 if flat else 0.0) + \
        (1.0 if absorption else 0.0)
    passed, score, aplus = score_gate(trace, p, raw, 14, [
        f"deviation {deviation_pts}x2", f"choch {choch_pts}x2", f"volume {2.0 if spike else 0.0}x2",
        f"slope {1.0 if flat else 0.0}", f"absorption {1.0 if absorption else 0.0}"])
    if not passed:
        return _fail(name, trace, side, score)
    entry = entry_price(f, side)
    unit = stop_unit(ctx, entry)
    sign = 1.0 if side == "buy" else -1.0
    trace.note(f"stops.plan: sl {p.vwap_sl} x {unit:.6g}, tp {p.vwap_tp} x {unit:.6g} ({p.stop_unit})")
    return finalize(ctx, trace, name, side, entry, entry - sign * p.vwap_sl * unit,
                    entry + sign * p.vwap_tp * unit, score, aplus,
                    {"sigma": round(sigma, 4), "primary": primary_hits, "secondary": secondary_hits})


# ----------------------------------------------------------------------------------------------
# range scalp
# ----------------------------------------------------------------------------------------------

def _edge_of(low: float, high: float, price: float, tolerance: float) -> str | None:
    """The range edge ``price`` is at (within ``tolerance`` of the width), as RangeStructure.position."""
    pos = (price - low) / (high - low)
    if -tolerance <= pos <= tolerance:
        return "low"
    if 1 - tolerance <= pos <= 1 + tolerance:
        return "high"
    return None


def _range_location_text(source: str, rng: RangeStructure, mid: float, edge: str | None, tol: float,
                         min_respects: int) -> str:
    return (f"{source} {rng.low:.6g}-{rng.high:.6g} position {rng.position(mid):.2f} edge {edge} "
            f"(tol {tol}); respects {rng.respects} >= {min_respects}")


def check_range(ctx: Context, trace: Trace) -> CheckOutcome:
    """Fade a sweep of a range edge: near the low -> buy after the lows were swept; TP the range
    midpoint (TP2, the opposite edge, in meta); SL beyond the last 5 bars' extreme plus a buffer."""
    name = "range_scalp"
    f, p = ctx.f, ctx.p
    close = f.cols.close
    tol = p.range_edge_tolerance
    regime_range = ctx.scores[RANGE].range if RANGE in ctx.scores else None
    rng, source, edge = None, "", None
    if regime_range is not None and regime_range.width > 0:
        edge = _edge_of(regime_range.low, regime_range.high, f.mid, tol)
        rng, source = regime_range, "regime swing range"
    if edge is None:
        k = p.intraday_range_bars
        high, low = _box(f, k)
        if high > low:
            box_edge = _edge_of(low, high, f.mid, tol)
            if box_edge is not None or rng is None:  # (else the box and its respects are not used)
                rng = RangeStructure(high, low, count_respects(f, high, low, p, f.n - k))
                source, edge = f"{k}-bar box", box_edge
    if rng is None:
        trace.gate("L2.location", False, "no range")
        return _fail(name, trace)
    located = edge is not None and rng.respects >= p.range_min_respects
    if not trace.gate_later("L2.location", located, _range_location_text, source, rng, f.mid, edge, tol,
                            p.range_min_respects):
        return _fail(name, trace)
    side: Side = "buy" if edge == "low" else "sell"
    sweep = micro_sweep(f, p)
    swept = sweep is not None and sweep.trade_side == side
    if not trace.gate("L3.primary", swept,
                      f"MICRO_LIQUIDITY_SWEEP of the {edge}s: {sweep.describe() if sweep else 'none'}"):
        return _fail(name, trace, side)
    assert sweep is not None
    choch = micro_choch(f, p)
    sweep_bar = f.n - 1 - sweep.bars_ago
    follow = sweep.bars_ago > 0 and ((close[f.n - 1] > close[sweep_bar]) if side == "buy"
                                     else (close[f.n - 1] < close[sweep_bar]))
    secondaries = {"CHOCH_REVERSAL": choch is not None and choch.side == side,
                   "FOLLOW_THROUGH": bool(follow),
                   "INCREASING_VOLUME": increasing_volume(f, p),
                   "CVD_DIVERGENCE": cvd_divergence(ctx.flow) == side}
    secondary_hits = [k for k, v in secondaries.items() if v]
    if not trace.gate_later("L3.secondary", bool(secondary_hits), _hits_text, secondary_hits):
        return _fail(name, trace, side)
    distance = rng.position(f.mid) if edge == "low" else 1 - rng.position(f.mid)
    proximity = 2.0 if abs(distance) <= tol / 3 else 1.0
    quality = 2.0 if follow or (sweep.bars_ago == 0 and sweep.confidence >= 0.8) else 1.0
    respects = 2.0 if rng.respects >= 3 else 1.5 if rng.respects == 2 else 1.0
    squeezed, _ = bb_squeeze(f, p)
    raw = 2 * proximity + 2 * quality + 2 * respects + (1.0 if squeezed else 0.0) + \
        (1.0 if secondaries["CHOCH_REVERSAL"] else 0.0)
    passed, score, aplus = score_gate(trace, p, raw, 14, [
        f"proximity {proximity}x2", f"sweep {quality}x2", f"respects {respects}x2",
        f"bb {1.0 if squeezed else 0.0}", f"choch {1.0 if secondaries['CHOCH_REVERSAL'] else 0.0}"])
    if not passed:
        return _fail(name, trace, side, score)
    entry = entry_price(f, side)
    unit = stop_unit(ctx, entry)
    if side == "buy":
        extreme = min(_box(f, 5)[1], sweep.extreme)
        sl, tp, tp2 = extreme - p.range_sl_buffer * unit, rng.mid, rng.high
    else:
        extreme = max(_box(f, 5)[0], sweep.extreme)
        sl, tp, tp2 = extreme + p.range_sl_buffer * unit, rng.mid, rng.low
    trace.note(f"stops.plan: sl beyond 5-bar extreme {extreme:.6g} + {p.range_sl_buffer} x {unit:.6g}; "
               f"tp range mid {rng.mid:.6g}; tp2 {tp2:.6g}")
    return finalize(ctx, trace, name, side, entry, sl, tp, score, aplus,
                    {"tp2": tp2, "range_high": rng.high, "range_low": rng.low,
                     "secondary": secondary_hits})


# ----------------------------------------------------------------------------------------------
# balanced zone
# ----------------------------------------------------------------------------------------------

def _balanced_location_text(compressed: bool, comp_detail: str, levels: EqualLevels, alignment: float,
                            max_alignment: float, entry_type: str, equilibrium: float, max_equilibrium: float) -> str:
    return (f"compression {compressed} ({comp_detail}); equal highs {len(levels.highs)} lows "
            f"{len(levels.lows)}; vwap-box gap {alignment:.2f}ATR (<= {max_alignment}); "
            f"{entry_type}; ema-vwap {equilibrium:.2f}ATR (fade needs <= {max_equilibrium})")


def check_balanced(ctx: Context, trace: Trace) -> CheckOutcome:
    """A compressed zone around fair value with liquidity on its edges: fade its extremes, or take
    the breakout when the last bar closes outside the box of the bars before it."""
    name = "balanced_zone"
    f, p = ctx.f, ctx.p
    atr = f.atr_now
    compressed, comp_detail = compression_block(f, p, f.n - 1)
    levels = equal_highs_lows(f, p)
    box20_high, box20_low = _box(f, p.intraday_range_bars)
    box20_mid = (box20_high + box20_low) / 2.0
    alignment = abs(f.vwap_now - box20_mid) / atr
    aligned = alignment <= p.balanced_alignment_atr
    box_high, box_low = _box(f, p.balanced_box_bars, f.n - 1)
    close = f.cols.close[f.n - 1]
    entry_type = "breakout" if close > box_high or close < box_low else "fade"
    equilibrium = abs(f.ema_now - f.vwap_now) / atr
    located = compressed and bool(levels.highs or levels.lows) and aligned and \
        (entry_type == "breakout" or equilibrium <= p.equilibrium_max_atr)
    if not trace.gate_later("L2.location", located, _balanced_location_text, compressed, comp_detail, levels,
                            alignment, p.balanced_alignment_atr, entry_type, equilibrium, p.equilibrium_max_atr):
        return _fail(name, trace)
    spike = volume_spike(f, p)
    if entry_type == "breakout":
        side: Side = "buy" if close > box_high else "sell"
        primary_hits = ["COMPRESSION_BREAKOUT"]
        trace.gate("L3.primary", True, f"COMPRESSION_BREAKOUT {side}: close {close:.6g} outside {box_low:.6g}-{box_high:.6g}")
    else:
        high5, low5 = _box(f, 5)
        side = "sell" if high5 - f.mid < f.mid - low5 else "buy"
        choch = micro_choch(f, p)
        fade_hits = {"FADE_EXTREME_CHOCH": choch is not None and choch.side == side,
                     "FADE_EXTREME_WICK": wick_trap(f, p.wick_trap_ratio) == side}
        primary_hits = [kk for kk, v in fade_hits.items() if v]
        if not trace.gate("L3.primary", bool(primary_hits),
                          f"{primary_hits or 'none'} fading the 5-bar {'high' if side == 'sell' else 'low'} ({side})"):
            return _fail(name, trace, side)
    secondaries = {"COMPRESSION_CONFIRMED": compressed,
                   "VOLUME_ON_BREAKOUT": entry_type == "breakout" and spike,
                   "CVD_DIVERGENCE": cvd_divergence(ctx.flow) == side}
    secondary_hits = [kk for kk, v in secondaries.items() if v]
    if not trace.gate("L3.secondary", bool(secondary_hits), f"{secondary_hits}"):
        return _fail(name, trace, side)
    eq_pts = 2.0 if levels.highs and levels.lows else 1.0
    raw = 2 * 2.0 + 2 * eq_pts + 2 * 2.0 + (1.0 if secondaries["VOLUME_ON_BREAKOUT"] else 0.0) + \
        (1.0 if entry_type == "fade" else 0.0)
    passed, score, aplus = score_gate(trace, p, raw, 14, [
        "compression 2x2", f"equal levels {eq_pts}x2", "vwap alignment 2x2",
        f"breakout volume {1.0 if secondaries['VOLUME_ON_BREAKOUT'] else 0.0}",
        f"fade extreme {1.0 if entry_type == 'fade' else 0.0}"])
    if not passed:
        return _fail(name, trace, side, score)
    entry = entry_price(f, side)
    sign = 1.0 if side == "buy" else -1.0
    if entry_type == "breakout":
        sl = box_low if side == "buy" else box_high
        trace.note(f"stops.plan: breakout sl at the box edge {sl:.6g}, tp {p.balanced_tp_r}R")
    else:
        unit = stop_unit(ctx, entry)
        sl = entry - sign * p.balanced_sl * unit
        trace.note(f"stops.plan: fade sl {p.balanced_sl} x {unit:.6g} ({p.stop_unit}), tp {p.balanced_tp_r}R")
    risk = sign * (entry - sl)
    tp = entry + sign * p.balanced_tp_r * risk  # risk <= 0 puts tp on the wrong side: 'stops.sides' fails
    return finalize(ctx, trace, name, side, entry, sl, tp, score, aplus,
                    {"entry_type": entry_type, "primary": primary_hits, "secondary": secondary_hits})


CHECKERS = {
    "vwap_reversion": check_vwap_reversion,
    "range_scalp": check_range,
    "balanced_zone": check_balanced,
    EDGE: check_edge,
}

