"""Regime detection (VWAP reversion, range, balanced zone) and the hysteresis that holds a regime.

Each detector scores 0..100 from named components and reports every component with its number.
The intended formulas are used where the original had unit or window bugs:
- VWAP slope: VWAP change between two consecutive ``vwap_slope_bars`` windows, in ATR (price over
  price), and undefined (not flat) when a session reset falls inside those windows;
- ATR comparisons: ATR now vs ATR ``atr_compare_bars`` earlier, both over complete windows;
- the range must be 2..12 ATR wide (configurable) instead of the original's "< 1.2 ATR", and
  being at its edge is left to the range checker's location layer;
- Bollinger compression is relative to the band's own recent width (the original's 2 % absolute
  width is always true on M1); the M15 trend leg is replaced by ADX on M1.

Hysteresis (``advance_regime``) works per closed bar, so the 5-second monitor re-evaluating the
same bar gets the same answer:
- a held regime stays while its confidence >= its threshold - ``regime_exit_margin``, unless a
  challenger beats it by ``regime_switch_margin``;
- a new regime (from none or a challenger) must lead for ``regime_confirm_bars`` bars;
- a regime that falls below its exit level is dropped at once (to none, or to a confirmed one).
"""
from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from config.micro_scalp_model import MicroScalpParams
from engines import indicators as ind
from engines.frozen import direct_init
from engines.micro_scalp_features import Features, SeriesMemo, list_mean
from engines.micro_scalp_signals import bb_squeeze, choppy, compression, compression_detail, volume_spike

VWAP_REVERSION = "vwap_reversion"
RANGE = "range_scalp"
BALANCED = "balanced_zone"
NONE = "none"
REGIMES = (VWAP_REVERSION, RANGE, BALANCED)  # also the tie-break priority


@direct_init
@dataclass(frozen=True)
class RangeStructure:
    high: float
    low: float
    respects: int

    @property
    def width(self) -> float:
        return self.high - self.low

    @property
    def mid(self) -> float:
        return (self.high + self.low) / 2.0

    def position(self, price: float) -> float:
        """0 at the low edge, 1 at the high edge (outside the range: below 0 / above 1)."""
        return (price - self.low) / self.width


@direct_init
@dataclass(frozen=True)
class RegimeScore:
    name: str
    confidence: float
    threshold: float
    details: tuple[str, ...]
    range: RangeStructure | None = None
    # quiet mode (evaluate(explain=False)): ``details`` is () and these format them when described
    later: tuple[Callable[..., tuple[str, ...]], tuple[Any, ...]] | None = field(default=None, repr=False,
                                                                              compare=False)

    @property
    def detected(self) -> bool:
        return self.confidence >= self.threshold

    def describe(self) -> str:
        verdict = "detected" if self.detected else "below"
        details = self.details if self.later is None else self.later[0](*self.later[1])
        return f"regime {self.name}: {self.confidence:.0f}/{self.threshold:.0f} {verdict} [{'; '.join(details)}]"


def _scored(name: str, confidence: float, threshold: float, explain: bool,
            details: Callable[..., tuple[str, ...]], args: tuple[Any, ...],
            rng: RangeStructure | None = None) -> RegimeScore:
    """A RegimeScore whose details are ``details(*args)``: now, or when described (quiet mode)."""
    if explain:
        return RegimeScore(name, confidence, threshold, details(*args), rng)
    return RegimeScore(name, confidence, threshold, (), rng, (details, args))  # (positional: no kwargs dict)


def thresholds(p: MicroScalpParams) -> dict[str, float]:
    return {VWAP_REVERSION: p.vwap_reversion_threshold, RANGE: p.range_threshold,
            BALANCED: p.balanced_threshold}


# ----------------------------------------------------------------------------------------------
# shared measurements
# ----------------------------------------------------------------------------------------------

def vwap_deviation(f: Features) -> tuple[float, float]:
    """(sigma, percent): distance of mid from the session VWAP in band standard deviations and in
    percent of VWAP. sigma is 0 when the band has no width yet."""
    distance = abs(f.mid - f.vwap_now)
    sigma = distance / f.vwap_std_now if f.vwap_std_now > 0 else 0.0
    return sigma, 100.0 * distance / f.vwap_now


def vwap_slope_atr(f: Features, p: MicroScalpParams) -> float | None:
    """(mean VWAP of the last k bars - mean VWAP of the k before) / ATR; None when those 2k bars
    are not all in the current VWAP session (a reset is a jump, not a slope)."""
    k = p.vwap_slope_bars
    if f.n - 2 * k < f.vwap_session_start or f.atr_now <= 0:
        return None
    line = f.vwap_window(2 * k)
    recent = list_mean(line[k:])
    before = list_mean(line[:k])
    return (recent - before) / f.atr_now


def atr_ratio(f: Features, p: MicroScalpParams) -> float | None:
    """ATR now / ATR ``atr_compare_bars`` bars ago; None unless both are complete-window values."""
    earlier_index = f.n - 1 - p.atr_compare_bars
    if earlier_index < 0:
        return None
    earlier = f.atr_values[earlier_index]  # (0 <= earlier_index < n)
    if math.isnan(earlier) or earlier <= 0 or math.isnan(f.atr_now):
        return None
    return f.atr_now / earlier


# ----------------------------------------------------------------------------------------------
# detectors
# ----------------------------------------------------------------------------------------------

def _vwap_stretch_details(sigma: float, pct: float, min_sigma: float, min_pct: float) -> list[str]:
    return [f"sigma {sigma:.2f} (min {min_sigma})", f"dev {pct:.3f}% (min {min_pct}%)"]


def _vwap_gate_details(sigma: float, pct: float, min_sigma: float, min_pct: float) -> tuple[str, ...]:
    return tuple(_vwap_stretch_details(sigma, pct, min_sigma, min_pct) + ["gate: not stretched"])


def _vwap_details(sigma: float, pct: float, min_sigma: float, min_pct: float, spike: bool, slope: float | None,
                  flat: bool, ratio: float | None, stable: bool) -> tuple[str, ...]:
    return tuple(_vwap_stretch_details(sigma, pct, min_sigma, min_pct) + [
        f"volume_spike {spike}",
        f"slope {'n/a' if slope is None else f'{slope:+.3f}'}ATR flat={flat}",
        f"atr_ratio {'n/a' if ratio is None else f'{ratio:.2f}'} stable={stable}"])


def detect_vwap_reversion(f: Features, p: MicroScalpParams, explain: bool = True) -> RegimeScore:
    """Price stretched from the session VWAP in a flat, steady market: +40 sigma >= min, +20 volume
    spike, +20 VWAP flat, +20 ATR stable. Gate: sigma >= min or deviation >= min %."""
    threshold = p.vwap_reversion_threshold
    sigma, pct = vwap_deviation(f)
    stretch = (sigma, pct, p.vwap_min_sigma, p.vwap_min_deviation_pct)
    if sigma < p.vwap_min_sigma and pct < p.vwap_min_deviation_pct:
        return _scored(VWAP_REVERSION, 0.0, threshold, explain, _vwap_gate_details, stretch)
    score = 0.0
    if sigma >= p.vwap_min_sigma:
        score += 40
    spike = volume_spike(f, p)
    score += 20 if spike else 0
    slope = vwap_slope_atr(f, p)
    flat = slope is not None and abs(slope) < p.vwap_max_slope_atr
    score += 20 if flat else 0
    ratio = atr_ratio(f, p)
    stable = ratio is not None and p.atr_stable_min <= ratio <= p.atr_stable_max
    score += 20 if stable else 0
    return _scored(VWAP_REVERSION, score, threshold, explain, _vwap_details,
                   stretch + (spike, slope, flat, ratio, stable))


def find_range(f: Features, p: MicroScalpParams) -> RangeStructure | None:
    """Highest confirmed swing-pivot high and lowest swing-pivot low (``range_pivot_left/right``)
    inside the last ``range_lookback`` bars; None unless both exist and high > low."""
    b = f.bars
    start = f.n - p.range_lookback
    left = p.range_pivot_left
    if start < 0:  # fewer bars than the lookback (only below a valid min_bars)
        ph, pl = ind.swing_pivots(b.high[start:], b.low[start:], left, p.range_pivot_right)
        if not ph.any() or not pl.any():
            return None
        high, low = float(np.max(b.high[start:][ph])), float(np.min(b.low[start:][pl]))
        return RangeStructure(high, low, count_respects(f, high, low, p, start)) if high > low else None
    # the pivots of bars[start:] are the pivots of all bars with ``left`` bars inside the slice
    pivot_highs, pivot_lows = f.range_pivot_high, f.range_pivot_low  # f.pivots(left, p.range_pivot_right)
    memo = f.kept(("range", left, p.range_pivot_right, p.range_lookback), SwingRange)
    if not memo.extremes(pivot_highs, pivot_lows, f.cols, start + left) or memo.high <= memo.low:
        return None
    return RangeStructure(memo.high, memo.low, _respects(f, memo.touches, memo.high, memo.low, p, start))


class SwingRange:
    """``find_range``'s state for one window lineage: the pivot extremes inside the window, kept
    while the same pivots are inside it (a pivot list is replaced, never changed, when pivots are
    added, and a bar's prices never change in a lineage), and the range's edge touches."""

    def __init__(self) -> None:
        self.highs: list[int] | None = None   # the pivot lists the extremes were taken from
        self.lows: list[int] | None = None
        self.first_high = self.first_low = -1  # and the first pivot of each inside the window
        self.high = self.low = 0.0
        self.touches = EdgeTouches()

    def extremes(self, pivot_highs: list[int], pivot_lows: list[int], cols: Any, first: int) -> bool:
        """Bring ``high``/``low`` to the pivots at or after bar ``first``; False if a side has none."""
        first_high, first_low = bisect_left(pivot_highs, first), bisect_left(pivot_lows, first)
        if first_high == len(pivot_highs) or first_low == len(pivot_lows):
            return False
        if first_high != self.first_high or pivot_highs is not self.highs:
            bar_high = cols.high  # max of validated (NaN-free) prices: numpy's
            self.high = max([bar_high[i] for i in pivot_highs[first_high:]])
            self.highs, self.first_high = pivot_highs, first_high
        if first_low != self.first_low or pivot_lows is not self.lows:
            bar_low = cols.low
            self.low = min([bar_low[i] for i in pivot_lows[first_low:]])
            self.lows, self.first_low = pivot_lows, first_low
        return True


def count_respects(f: Features, high: float, low: float, p: MicroScalpParams, start: int) -> int:
    """Edge rejections since ``start``: a bar touching the top band (within
    ``range_respect_tolerance`` of the width) followed by a lower low, or touching the bottom band
    followed by a higher high. A run of touching bars is one touch. Returns 0 unless BOTH edges
    rejected price at least once (a one-sided 'range' is a trend leg)."""
    first = start if start >= 0 else max(f.n + start, 0)  # a negative start counts from the end
    return _respects(f, f.kept(("respects", f.n - first), EdgeTouches), high, low, p, first)


def _respects(f: Features, touches: "EdgeTouches", high: float, low: float, p: MicroScalpParams,
              first: int) -> int:
    """``count_respects`` from bar ``first`` on, with the window's kept ``touches``."""
    tol = p.range_respect_tolerance * (high - low)
    top_runs, bottom_runs = touches.update(f.cols.high, f.cols.low, first, f.n - 1, high - tol, low + tol)
    if not top_runs or not bottom_runs:  # (no runs: no touches)
        return 0
    return top_runs + bottom_runs


def _runs(indices: list[int]) -> int:
    """Runs of consecutive numbers in ascending ``indices`` (a run of touching bars is one touch)."""
    runs, last = 0, -2
    for index in indices:
        runs += index != last + 1
        last = index
    return runs


class EdgeTouches:
    """The bars touching a range's bands that the next bar rejected (``count_respects``), kept
    between evaluations of one growing window: a bar's touch depends only on its own and the
    next bar's prices and on the levels, so while the levels stay the same (most bars) only the
    new bars are examined. Anything else is examined afresh."""

    def __init__(self) -> None:
        self.levels: tuple[float, float] | None = None
        self.first = self.end = 0
        self.tops: list[int] = []     # bars i in [first, end) with high >= top level, next low lower
        self.bottoms: list[int] = []  # ... with low <= bottom level, next high higher
        self.top_runs = self.bottom_runs = 0  # ``_runs`` of each (a run of touching bars is one touch)

    def update(self, high: list[float], low: list[float], first: int, end: int, top_level: float,
               bottom_level: float) -> tuple[int, int]:
        """The touch runs at the top and at the bottom among the bars in [first, end) (bar
        ``end`` exists: it rejects or not)."""
        if (top_level, bottom_level) != self.levels or first < self.first or end < self.end:  # afresh
            self.levels, self.first, self.end = (top_level, bottom_level), first, end
            self.tops = [i for i in range(first, end) if high[i] >= top_level and low[i + 1] < low[i]]
            self.bottoms = [i for i in range(first, end) if low[i] <= bottom_level and high[i + 1] > high[i]]
            self.top_runs, self.bottom_runs = _runs(self.tops), _runs(self.bottoms)
            return self.top_runs, self.bottom_runs
        tops, bottoms = self.tops, self.bottoms
        for i in range(self.end, end):
            if high[i] >= top_level and low[i + 1] < low[i]:
                self.top_runs += not tops or tops[-1] != i - 1
                tops.append(i)
            if low[i] <= bottom_level and high[i + 1] > high[i]:
                self.bottom_runs += not bottoms or bottoms[-1] != i - 1
                bottoms.append(i)
        self.end = end
        if first > self.first:  # bars that left the window
            self.first = first
            if tops and tops[0] < first:
                self.tops = tops = tops[bisect_left(tops, first):]
                self.top_runs = _runs(tops)
            if bottoms and bottoms[0] < first:
                self.bottoms = bottoms = bottoms[bisect_left(bottoms, first):]
                self.bottom_runs = _runs(bottoms)
        return self.top_runs, self.bottom_runs


def _range_head(low: float, high: float, width_atr: float, pos: float, respects: int) -> list[str]:
    return [f"range {low:.6g}-{high:.6g} width {width_atr:.1f}ATR", f"position {pos:.2f}", f"respects {respects}"]


def _range_width_details(low: float, high: float, width_atr: float, pos: float, respects: int,
                         min_width: float, max_width: float) -> tuple[str, ...]:
    return tuple(_range_head(low, high, width_atr, pos, respects)
                 + [f"gate: width outside {min_width}-{max_width}ATR"])


def _range_outside_details(low: float, high: float, width_atr: float, pos: float, respects: int) -> tuple[str, ...]:
    return tuple(_range_head(low, high, width_atr, pos, respects) + ["gate: price outside the range"])


def _range_details(low: float, high: float, width_atr: float, pos: float, respects: int, squeezed: bool,
                   ratio: float, adx: float, no_trend: bool) -> tuple[str, ...]:
    return tuple(_range_head(low, high, width_atr, pos, respects)
                 + [f"bb_squeeze {squeezed} ({ratio:.2f})", f"adx {adx:.1f} no_trend={no_trend}"])


def detect_range(f: Features, p: MicroScalpParams, explain: bool = True) -> RegimeScore:
    """A contained, respected range: gate = a swing range 2..12 ATR wide (configurable) with price
    inside it (within ``range_edge_tolerance`` of the width beyond an edge); +30 contained,
    +30 respects >= min, +20 Bollinger squeeze, +20 ADX below ``range_max_adx``.

    Being AT an edge is the range checker's Layer 2, not part of the regime: the original gated
    the regime on it, which made the regime flip with every bar's position."""
    threshold = p.range_threshold
    rng = find_range(f, p)
    if rng is None:
        return RegimeScore(RANGE, 0.0, threshold, ("no swing high/low pair in lookback",))
    width = rng.high - rng.low  # rng.width and rng.position(f.mid), without the calls
    width_atr = width / f.atr_now
    pos = (f.mid - rng.low) / width
    head = (rng.low, rng.high, width_atr, pos, rng.respects)
    if not p.range_min_width_atr <= width_atr <= p.range_max_width_atr:
        return _scored(RANGE, 0.0, threshold, explain, _range_width_details,
                       head + (p.range_min_width_atr, p.range_max_width_atr), rng)
    tol = p.range_edge_tolerance
    if not -tol <= pos <= 1 + tol:
        return _scored(RANGE, 0.0, threshold, explain, _range_outside_details, head, rng)
    score = 30.0
    score += 30 if rng.respects >= p.range_min_respects else 0
    squeezed, ratio = bb_squeeze(f, p)
    score += 20 if squeezed else 0
    no_trend = not math.isnan(f.adx_now) and f.adx_now < p.range_max_adx
    score += 20 if no_trend else 0
    return _scored(RANGE, score, threshold, explain, _range_details,
                   head + (squeezed, ratio, f.adx_now, no_trend), rng)


def _balanced_details(squeezed: bool, ratio: float, compressed: bool, inside: bool | None, mean_range: float,
                      atr: float, dropping: bool, atr_r: float | None, chop: bool, gap_atr: float,
                      equilibrium: bool) -> tuple[str, ...]:
    comp_detail = compression_detail(inside, mean_range, atr)
    return (f"bb_squeeze {squeezed} ({ratio:.2f})", f"compression {compressed} ({comp_detail})",
            f"atr_dropping {dropping} ({'n/a' if atr_r is None else f'{atr_r:.2f}'})",
            f"choppy {chop}", f"ema_vwap_gap {gap_atr:.2f}ATR equilibrium={equilibrium}")


def detect_balanced(f: Features, p: MicroScalpParams, explain: bool = True) -> RegimeScore:
    """Compressed, two-sided market around fair value: +30 Bollinger squeeze, +30 compression block,
    +20 ATR dropping, +10 choppy, +10 EMA/VWAP equilibrium."""
    threshold = p.balanced_threshold
    squeezed, ratio = bb_squeeze(f, p)
    compressed, inside, mean_range = compression(f, p, f.n)  # its detail formatted when described
    atr_r = atr_ratio(f, p)
    dropping = atr_r is not None and atr_r < p.atr_drop_ratio
    chop = choppy(f)
    gap_atr = abs(f.ema_now - f.vwap_now) / f.atr_now
    equilibrium = gap_atr <= p.equilibrium_max_atr
    score = 30.0 * squeezed + 30.0 * compressed + 20.0 * dropping + 10.0 * chop + 10.0 * equilibrium
    return _scored(BALANCED, score, threshold, explain, _balanced_details,
                   (squeezed, ratio, compressed, inside, mean_range, f.atr_now, dropping, atr_r, chop, gap_atr,
                    equilibrium))


def detect_all(f: Features, p: MicroScalpParams, explain: bool = True) -> dict[str, RegimeScore]:
    """The three scores; ``explain=False`` leaves their details unformatted until described."""
    return {VWAP_REVERSION: detect_vwap_reversion(f, p, explain), RANGE: detect_range(f, p, explain),
            BALANCED: detect_balanced(f, p, explain)}


# ----------------------------------------------------------------------------------------------
# hysteresis
# ----------------------------------------------------------------------------------------------

@direct_init
@dataclass(frozen=True)
class RegimeState:
    """Per-symbol regime memory, returned updated in every decision and passed back next time.

    ``base`` is the state before ``bar_time_s`` was processed, as its first six fields (``Prior``):
    evaluating the same bar again re-applies the transition to it, so repeated calls on one bar
    never advance counters. (A tuple: a state per bar is built, and a second one for the prior
    fields would cost as much again; a tuple also cannot chain to older states.)"""

    regime: str = NONE
    confidence: float = 0.0
    since_s: int | None = None        # bar time the held regime was adopted
    pending: str | None = None        # a regime waiting for confirmation
    pending_count: int = 0
    bar_time_s: int | None = None     # last bar this state has processed
    base: "Prior | None" = field(default=None, repr=False, compare=False)
    # the symbol's indicator memory (engines/micro_scalp_features.SeriesMemo), carried along so
    # the next evaluation extends the series instead of recomputing them
    memo: SeriesMemo | None = field(default=None, repr=False, compare=False)


Prior = tuple[str, float, int | None, str | None, int, int | None]
"""A ``RegimeState``'s regime, confidence, since_s, pending, pending_count and bar_time_s."""


def _best(scores: dict[str, RegimeScore]) -> str:
    """The detected regime with the highest confidence (ties keep the REGIMES order), else NONE.
    (``detected`` is spelled out: a property call per score costs more than its comparison.)"""
    best, best_confidence = NONE, 0.0
    for name in REGIMES:
        score = scores[name]
        confidence = score.confidence
        if confidence >= score.threshold and (best == NONE or confidence > best_confidence):
            best, best_confidence = name, confidence
    return best


Why = tuple[str, tuple[Any, ...]]  # an explanation as a ``str.format`` template and its arguments


def advance_regime(state: RegimeState, scores: dict[str, RegimeScore], bar_time_s: int,
                   p: MicroScalpParams) -> tuple[RegimeState, str]:
    """Apply one bar's detector scores to ``state``; returns (new state, explanation)."""
    new, (template, args) = transition(state, scores, bar_time_s, p)
    return new, template.format(*args)


def transition(state: RegimeState, scores: dict[str, RegimeScore], bar_time_s: int,
               p: MicroScalpParams) -> tuple[RegimeState, Why]:
    """``advance_regime`` with the explanation not yet formatted (the engine's quiet mode
    formats it only when it is read)."""
    memo = state.memo
    if state.bar_time_s is not None and bar_time_s == state.bar_time_s and state.base is not None:
        state = RegimeState(*state.base)         # same bar again: recompute from the prior state
    elif state.bar_time_s is not None and bar_time_s < state.bar_time_s:
        state = RegimeState()                    # time went backwards (new replay): start afresh
    base = (state.regime, state.confidence, state.since_s, state.pending, state.pending_count, state.bar_time_s)
    current = state.regime
    top = _best(scores)
    current_ok = current != NONE and scores[current].confidence >= scores[current].threshold - p.regime_exit_margin
    if current_ok:
        challenger_wins = top not in (NONE, current) and \
            scores[top].confidence >= scores[current].confidence + p.regime_switch_margin
        if not challenger_wins:
            return _adopt(current, scores, state, bar_time_s, base, memo, "hold {} ({:.0f} >= exit {:.0f})",
                          (current, scores[current].confidence, scores[current].threshold - p.regime_exit_margin))
    if top == NONE:
        if current == NONE:
            return _adopt(current, scores, state, bar_time_s, base, memo, "no regime detected", ())
        return _adopt(NONE, scores, state, bar_time_s, base, memo, "drop {} ({:.0f} below exit level)",
                      (current, scores[current].confidence))
    count = state.pending_count + 1 if state.pending == top else 1
    if count >= p.regime_confirm_bars:
        return _adopt(top, scores, state, bar_time_s, base, memo, "switch {} -> {} ({:.0f}, confirmed {} bars)",
                      (current, top, scores[top].confidence, count))
    if current_ok:
        return (RegimeState(current, scores[current].confidence, state.since_s, top, count, bar_time_s, base,
                            memo), ("hold {}; {} pending {}/{}", (current, top, count, p.regime_confirm_bars)))
    return (RegimeState(NONE, 0.0, None, top, count, bar_time_s, base, memo),
            ("drop {}; {} pending {}/{}" if current != NONE else "{1} pending {2}/{3}",
             (current, top, count, p.regime_confirm_bars)))


def _adopt(name: str, scores: dict[str, RegimeScore], state: RegimeState, bar_time_s: int, base: Prior,
           memo: SeriesMemo | None, template: str, args: tuple[Any, ...]) -> tuple[RegimeState, Why]:
    """``state`` holding regime ``name`` (its live confidence; the bar time it was adopted, now
    if it is new) after ``bar_time_s``, nothing pending; and the explanation."""
    confidence = scores[name].confidence if name != NONE else 0.0
    since = bar_time_s if name != state.regime else state.since_s
    return RegimeState(name, confidence, since, None, 0, bar_time_s, base, memo), (template, args)
