"""Candle and structure patterns on M1 bars, each a small pure function of ``Features``.

Sweep convention (explicit, because the original mixed two): a sweep is named after the liquidity
it TAKES and is traded as a FADE.
- ``side="low"``: a bar trades below the lowest low of the reference bars (sell-side liquidity,
  the stops under the lows) and closes back above that level -> ``trade_side="buy"``.
- ``side="high"``: a bar trades above the highest high of the reference bars and closes back
  below it -> ``trade_side="sell"``.
A break that closes beyond the level is a breakout, not a sweep, and is not reported.

Directions are the trade side a pattern supports: "buy", "sell" or None (non-directional).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from config.micro_scalp_model import MicroScalpParams
from engines.frozen import direct_init
from engines.micro_scalp_features import Features, list_mean

Side = Literal["buy", "sell"]
_NAN = float("nan")


def opposite(side: Side) -> Side:
    return "sell" if side == "buy" else "buy"


# ----------------------------------------------------------------------------------------------
# Single-bar patterns
# ----------------------------------------------------------------------------------------------

def wick_trap(f: Features, ratio: float, i: int = -1) -> Side | None:
    """Long-wick trap on bar ``i``: a wick at least ``ratio`` x the body (body > 0). A long lower
    wick (sellers trapped) supports a buy, a long upper wick a sell; if both qualify, the longer."""
    c, i = f.cols, i if i >= 0 else f.n + i
    body = c.body[i]
    if body <= 0:
        return None
    lower, upper = c.lower[i], c.upper[i]
    lower_ok = lower >= ratio * body
    upper_ok = upper >= ratio * body
    if lower_ok and (not upper_ok or lower > upper):
        return "buy"
    if upper_ok and (not lower_ok or upper > lower):
        return "sell"
    return None


def wick_ratio(f: Features, i: int = -1) -> float:
    """Largest wick / body of bar ``i`` (0 for a zero body: a doji is not a quality wick)."""
    c, i = f.cols, i if i >= 0 else f.n + i
    body = c.body[i]
    return 0.0 if body <= 0 else max(c.upper[i], c.lower[i]) / body


def engulfing(f: Features) -> Side | None:
    """Strong engulfing: the last body covers the previous, opposite-coloured body. The open may
    equal the previous close (continuous M1 data rarely gaps; the original's strict gap made the
    pattern almost impossible)."""
    c, n = f.cols, f.n
    po, pc, lo, lc = c.open[n - 2], c.close[n - 2], c.open[n - 1], c.close[n - 1]
    if pc < po and lc > lo and lo <= pc and lc > po:
        return "buy"
    if pc > po and lc < lo and lo >= pc and lc < po:
        return "sell"
    return None


def vwap_tap_rejection(f: Features, tolerance: float, ratio: float) -> Side | None:
    """The last bar tapped the VWAP band and was rejected: it crossed the VWAP with a wick of at
    least ``ratio`` x body and closed back on its side (upper wick through VWAP, close below ->
    sell; lower wick through VWAP, close above -> buy)."""
    cols, vw, last = f.cols, f.vwap_now, f.n - 1
    h, l, c, body = cols.high[last], cols.low[last], cols.close[last], cols.body[last]
    if body <= 0 or h < vw - tolerance or l > vw + tolerance:
        return None
    if c < vw < h and cols.upper[last] >= ratio * body:
        return "sell"
    if c > vw > l and cols.lower[last] >= ratio * body:
        return "buy"
    return None


# ----------------------------------------------------------------------------------------------
# Sweeps
# ----------------------------------------------------------------------------------------------

@direct_init
@dataclass(frozen=True)
class Sweep:
    side: Literal["low", "high"]   # which liquidity was taken
    trade_side: Side               # the fade: low -> buy, high -> sell
    level: float                   # the reference extreme that was swept
    extreme: float                 # the sweep bar's low (side low) or high (side high)
    bars_ago: int                  # 0 = the last bar
    confidence: float

    def describe(self) -> str:
        return (f"{self.side}s swept at {self.level:.6g} (extreme {self.extreme:.6g}, {self.bars_ago} bars ago, "
                f"conf {self.confidence:.2f}) -> {self.trade_side}")


_UNSEEN: Any = object()  # (Any: a dict.get default that is never a kept answer)
_KEEP_BARS = 256  # bars' answers (sweeps, CHOCHs) kept before the old ones are dropped


def micro_sweep(f: Features, p: MicroScalpParams) -> Sweep | None:
    """The most recent sweep within ``sweep_recent_bars`` whose level still holds at the last close.

    Confidence: 0.5 for the close back inside, +0.3 wick on the break side >= 1.5 x body, +0.2 bar
    volume >= 1.5 x the reference mean; halved if the break is under ``sweep_min_break_atr`` ATR.
    An outside bar sweeping both sides keeps the higher confidence; a tie reports nothing.

    Which levels bar t swept depends only on bars up to t, so each bar's answer is kept with the
    memo (``Features.kept``, as ``micro_choch`` keeps its) and examined once per window lineage;
    the last close and the ATR, which change with every bar, are applied here."""
    c = f.cols
    look = p.sweep_lookback
    highs, lows = c.high, c.low
    last_close = c.close[f.n - 1]
    seen: dict[int, tuple[float | None, float | None] | None] = f.kept(("sweep", look), dict)
    for ago in range(p.sweep_recent_bars):
        t = f.n - 1 - ago
        if t - look < 0:
            break
        swept = seen.get(t, _UNSEEN)
        if swept is _UNSEEN:
            if len(seen) >= _KEEP_BARS:
                _forget_before(seen, f.n - p.sweep_recent_bars)
            swept = seen[t] = _swept_levels(t, highs, lows, c.close, look)
        if swept is None:
            continue
        ref_low, ref_high = swept
        found: list[Sweep] = []
        if ref_low is not None and last_close > ref_low:
            low = lows[t]
            found.append(Sweep("low", "buy", ref_low, low, ago,
                               _sweep_confidence(f, p, t, ref_low - low, c.lower[t], look)))
        if ref_high is not None and last_close < ref_high:
            high = highs[t]
            found.append(Sweep("high", "sell", ref_high, high, ago,
                               _sweep_confidence(f, p, t, high - ref_high, c.upper[t], look)))
        if len(found) == 1:
            return found[0]
        if len(found) == 2:
            if found[0].confidence == found[1].confidence:
                return None
            return max(found, key=lambda s: s.confidence)
    return None


def _swept_levels(t: int, high: list[float], low: list[float], close: list[float], look: int
                  ) -> tuple[float | None, float | None] | None:
    """The levels bar ``t`` swept and closed back inside of (``micro_sweep``): the lowest low of
    the ``look`` bars before it (None if not swept so) and their highest high (likewise); None
    when it swept neither (most bars). Validated, NaN-free prices: ``max``/``min`` are numpy's."""
    ref_low, ref_high = min(low[t - look:t]), max(high[t - look:t])
    bar_close = close[t]
    swept_low = ref_low if low[t] < ref_low < bar_close else None
    swept_high = ref_high if high[t] > ref_high > bar_close else None
    if swept_low is None and swept_high is None:
        return None
    return swept_low, swept_high


def _sweep_confidence(f: Features, p: MicroScalpParams, t: int, break_distance: float,
                      wick: float, look: int) -> float:
    c = f.cols
    confidence = 0.5
    if c.body[t] > 0 and wick >= 1.5 * c.body[t]:
        confidence += 0.3
    ref_vol = list_mean(c.volume[t - look:t])
    if ref_vol > 0 and c.volume[t] >= 1.5 * ref_vol:
        confidence += 0.2
    if break_distance < p.sweep_min_break_atr * f.atr_now:
        confidence *= 0.5
    return min(confidence, 1.0)


# ----------------------------------------------------------------------------------------------
# Structure: order blocks, equal highs/lows, change of character
# ----------------------------------------------------------------------------------------------

@direct_init
@dataclass(frozen=True)
class OrderBlock:
    side: Side       # bullish block (impulse up, then a pause) supports a buy
    low: float
    high: float
    strength: float  # impulse body / pause body, capped at 1 (original scale)

    def contains(self, price: float, tolerance: float = 0.0) -> bool:
        return self.low - tolerance <= price <= self.high + tolerance


def micro_order_blocks(f: Features, p: MicroScalpParams) -> list[OrderBlock]:
    """Impulse bar followed by a pause bar whose body is under ``ob_next_body_max_ratio`` x the
    impulse body, among the last ``ob_lookback`` (impulse, pause) pairs. The zone spans both bars
    and must be ``ob_zone_min_atr``..``ob_zone_max_atr`` ATR tall. Newest first."""
    c, body = f.cols, f.cols.body
    blocks: list[OrderBlock] = []
    max_ratio = p.ob_next_body_max_ratio
    min_height, max_height = p.ob_zone_min_atr * f.atr_now, p.ob_zone_max_atr * f.atr_now
    for k in range(1, p.ob_lookback + 1):
        nxt = f.n - k
        cand = nxt - 1
        if cand < 0:
            break
        body_c = body[cand]
        if body_c <= 0 or body[nxt] >= max_ratio * body_c:
            continue
        # min()/max() of two, as conditionals (a builtin call costs several comparisons); same picks
        low_c, low_n, high_c, high_n = c.low[cand], c.low[nxt], c.high[cand], c.high[nxt]
        zone_low = low_n if low_n < low_c else low_c
        zone_high = high_n if high_n > high_c else high_c
        if not min_height <= zone_high - zone_low <= max_height:
            continue
        side: Side = "buy" if c.close[cand] > c.open[cand] else "sell"
        ratio = body_c / body[nxt] if body[nxt] != 0 else 1.0
        strength = ratio if ratio < 1.0 else 1.0  # min(1.0, ratio)
        blocks.append(OrderBlock(side, zone_low, zone_high, strength))
    return blocks


@direct_init
@dataclass(frozen=True)
class EqualLevels:
    highs: tuple[float, ...]  # levels where >= 2 pivot highs sit within the tolerance
    lows: tuple[float, ...]


def equal_highs_lows(f: Features, p: MicroScalpParams) -> EqualLevels:
    """Liquidity clusters: two or more micro pivots within ``equal_level_tolerance_atr`` ATR of
    each other inside the last ``equal_level_lookback`` bars."""
    start = f.n - p.equal_level_lookback
    tolerance = p.equal_level_tolerance_atr * f.atr_now
    pivot_high, pivot_low, high, low = f.pivot_high, f.pivot_low, f.cols.high, f.cols.low  # ascending indices
    highs = [high[i] for i in pivot_high[bisect_left(pivot_high, start):]]
    lows = [low[i] for i in pivot_low[bisect_left(pivot_low, start):]]
    return EqualLevels(_clusters(highs, tolerance), _clusters(lows, tolerance))


def _clusters(values: list[float], tolerance: float) -> tuple[float, ...]:
    if len(values) < 2:
        return ()
    ordered = sorted(values)
    levels: list[float] = []
    group = [ordered[0]]
    for value in ordered[1:]:
        if value - group[0] <= tolerance:
            group.append(value)
        else:
            if len(group) >= 2:
                levels.append(list_mean(group))
            group = [value]
    if len(group) >= 2:
        levels.append(list_mean(group))
    return tuple(levels)


@direct_init
@dataclass(frozen=True)
class Choch:
    side: Side      # bullish change of character supports a buy
    level: float    # the swing that was broken
    bars_ago: int


def micro_choch(f: Features, p: MicroScalpParams) -> Choch | None:
    """Fresh change of character within ``choch_recent_bars``: after a down-structure (the last
    two confirmed pivot highs falling AND the last two pivot lows falling) the first close above
    the latest pivot high is a bullish CHOCH; the mirror is bearish. Pivots count only once
    confirmed (``pivot_right`` bars later) before the breaking bar. Most recent first.

    Whether bar t breaks so depends only on bars up to t (the pivots it counts are final), so the
    bars are examined once per window lineage (``ChochScan``, kept with the memo)."""
    n = f.n
    first = n - p.choch_recent_bars
    if first < 1:  # (bar 0 has no previous close to break from)
        first = 1
    if first >= n:
        return None
    scan = f.kept(("choch", p.pivot_left, p.pivot_right), ChochScan)
    scan.examine(f, first, p.pivot_right)
    k = bisect_left(scan.events, n) - 1  # the latest CHOCH bar before n
    if k < 0 or scan.events[k] < first:
        return None
    t = scan.events[k]
    side, level = scan.answers[t]
    return Choch(side, level, n - 1 - t)


class ChochScan:
    """``micro_choch``'s bars of one window lineage: bars ``[lo, hi)`` examined, the ones among
    them that made a CHOCH (ascending) and what each made. A bar's answer never changes in a
    lineage, so an evaluation examines only the bars after ``hi`` (the new ones). A window that
    does not continue the examined bars (they start after its first recent bar, or end before
    it: skipped bars need no examining) starts over from its first recent bar, and so does a
    scan holding ``_KEEP_BARS`` events."""

    def __init__(self) -> None:
        self.lo = self.hi = 0
        self.events: list[int] = []
        self.answers: dict[int, tuple[Side, float]] = {}

    def examine(self, f: Features, first: int, right: int) -> None:
        """Bring the scan to cover bars ``[first, f.n)``."""
        if first < self.lo or first > self.hi or len(self.events) >= _KEEP_BARS:
            self.lo = self.hi = first
            self.events, self.answers = [], {}
        if self.hi < f.n:
            c = f.cols
            for t in range(self.hi, f.n):
                event = _choch_at(t, c.high, c.low, c.close, f.pivot_high, f.pivot_low, right)
                if event is not None:
                    self.events.append(t)
                    self.answers[t] = event
            self.hi = f.n


def _forget_before(seen: dict[int, Any], first: int) -> None:
    for t in [t for t in seen if t < first]:
        del seen[t]


def _choch_at(t: int, high: list[float], low: list[float], close: list[float], pivot_high: list[int],
              pivot_low: list[int], right: int) -> tuple[Side, float] | None:
    """The CHOCH bar ``t`` makes (side, broken level), if any (``micro_choch``)."""
    known = t - 1 - right  # pivots at or before it are confirmed by bar t-1
    hi_count, lo_count = bisect_right(pivot_high, known), bisect_right(pivot_low, known)
    if hi_count < 2 or lo_count < 2:
        return None
    h1, h2 = high[pivot_high[hi_count - 2]], high[pivot_high[hi_count - 1]]
    l1, l2 = low[pivot_low[lo_count - 2]], low[pivot_low[lo_count - 1]]
    if h2 < h1 and l2 < l1 and close[t] > h2 >= close[t - 1]:
        return "buy", h2
    if h2 > h1 and l2 > l1 and close[t] < l2 <= close[t - 1]:
        return "sell", l2
    return None


# ----------------------------------------------------------------------------------------------
# Volume, volatility, compression
# ----------------------------------------------------------------------------------------------

def volume_spike(f: Features, p: MicroScalpParams) -> bool:
    """Last bar volume >= ``volume_spike_ratio`` x mean of the previous ``volume_spike_lookback``.
    Data without volume never spikes."""
    v, last = f.cols.volume, f.n - 1
    first = last - p.volume_spike_lookback
    base = list_mean(v[first if first > 0 else 0:last])
    return base > 0 and v[last] >= p.volume_spike_ratio * base


def increasing_volume(f: Features, p: MicroScalpParams) -> bool:
    v, last = f.cols.volume, f.n - 1
    return v[last - 1] > 0 and v[last] > p.increasing_volume_ratio * v[last - 1]


def volatility_expanding(f: Features) -> bool:
    """Mean true range of the last 5 bars above 1.1 x the mean of the 5 before."""
    n = f.n
    tr = f.true_ranges[max(n - 10, 0):n]
    return list_mean(tr[-5:]) > 1.1 * list_mean(tr[-10:-5])


def bb_squeeze(f: Features, p: MicroScalpParams) -> tuple[bool, float]:
    """Bollinger width contracting: mean of the last 5 widths / mean of the last 20 (complete
    windows only) below ``bb_squeeze_ratio``. Returns (squeezed, ratio)."""
    ratio = f.bb_width_ratio
    if ratio is None:
        return False, float("nan")
    return ratio < p.bb_squeeze_ratio, ratio


def compression_block(f: Features, p: MicroScalpParams, end: int) -> tuple[bool, str]:
    """Compression in the bars before index ``end`` (exclusive): the last two of them are strict
    inside bars, or their last 5 ranges average under ``compression_range_atr`` ATR."""
    compressed, inside, mean_range = compression(f, p, end)
    return compressed, compression_detail(inside, mean_range, f.atr_now)


def compression(f: Features, p: MicroScalpParams, end: int) -> tuple[bool, bool | None, float]:
    """``compression_block`` with its detail not yet formatted: (compressed, inside bars, mean
    range of the last 5); inside is None when there are too few bars."""
    c = f.cols
    h, l = c.high, c.low
    if end < 6:
        return False, None, _NAN
    last, before = end - 1, end - 2
    inside = h[last] < h[before] and l[last] > l[before] and h[before] < h[before - 1] and l[before] > l[before - 1]
    mean_range = list_mean(c.span[end - 5:end])
    return inside or mean_range < p.compression_range_atr * f.atr_now, inside, mean_range


def compression_detail(inside: bool | None, mean_range: float, atr: float) -> str:
    """``compression_block``'s detail of ``compression``'s numbers."""
    if inside is None:
        return "too few bars"
    return f"inside_bars={inside} mean_range5={mean_range / atr:.2f}ATR"


_WICKY_SHARE = 0.5       # a bar is mostly wick above this share of its range (``choppy``)
_DISPLACEMENT_SHARE = 0.7  # a displacement bar's body is above this share


def choppy(f: Features) -> bool:
    """Of the last 5 bars, >= 3 are mostly wick (wicks > 50 % of range) and < 2 are displacement
    bars (body > 70 % of range). Bars without range count as neither (their shares are NaN).

    Counted in C: ``_WICKY_SHARE.__lt__(share)`` is ``share > 0.5`` for a float share (False for
    NaN), and ``sum`` adds the True ones; the bodies are counted only when the wicks already
    decide nothing (a per-bar Python loop costs several times more)."""
    c, n = f.cols, f.n
    first = n - 5 if n > 5 else 0
    if sum(map(_WICKY_SHARE.__lt__, c.wick_share[first:n])) < 3:
        return False
    return sum(map(_DISPLACEMENT_SHARE.__lt__, c.body_share[first:n])) < 2


# ----------------------------------------------------------------------------------------------
# Session and order flow
# ----------------------------------------------------------------------------------------------

def in_sessions(now: datetime, sessions: list[tuple[int, int]]) -> bool:
    """``now`` (aware UTC) falls in one of the [start, end) UTC hour windows (start > end wraps)."""
    hour = now.hour
    for start, end in sessions:
        if start < end and start <= hour < end:
            return True
        if start > end and (hour >= start or hour < end):
            return True
    return False


def cvd_divergence(flow: Any) -> Side | None:
    """Order-flow divergence, read from any object or mapping with ``divergence`` and
    ``cvd_slope``. ``divergence`` may be "bullish"/"bearish" (or "buy"/"sell"), or a bool whose
    side is the sign of ``cvd_slope`` (buyers absorbing a falling price -> positive slope -> buy)."""
    if flow is None:
        return None
    get = flow.get if isinstance(flow, dict) else (lambda key, default=None: getattr(flow, key, default))
    divergence = get("divergence", None)
    if isinstance(divergence, str):
        text = divergence.lower()
        if text in ("bullish", "buy"):
            return "buy"
        if text in ("bearish", "sell"):
            return "sell"
        return None
    if divergence:
        slope = get("cvd_slope", None)
        if slope is None or slope == 0 or slope != slope:
            return None
        return "buy" if slope > 0 else "sell"
    return None
