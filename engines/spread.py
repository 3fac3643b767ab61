"""Spread statistics: what the engine's Layer 1 reads, and the rolling tracker that produces them.

The tracker is pure (no clock, no I/O): the caller feeds it one quote sample per check. A sample
is rejected when the quote is crossed or locked (ask <= bid) or not finite. ``is_acceptable``
applies both limits the monitor needs: an absolute cap (percent of mid) and a multiple of the
rolling median, the median applying only once enough samples exist (``rejection``: the same
check, without the text of a pass).
"""
from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field
from math import isfinite

from engines.frozen import direct_init


@direct_init
@dataclass(frozen=True)
class SpreadStats:
    """A summary of recent spreads (price units); one is built at every new quote of the
    micro-scalp monitor's spread gate, hence ``direct_init``."""

    current: float
    median: float
    mean: float
    samples: int

    @property
    def ratio_to_median(self) -> float:
        return self.current / self.median if self.median > 0 else float("nan")


@dataclass(frozen=True)
class SpreadVerdict:
    ok: bool
    reason: str


@dataclass
class SpreadTracker:
    """Rolling window of the last ``window`` spread samples of one symbol."""

    window: int = 100
    _samples: deque[float] = field(default_factory=deque, repr=False)
    rejected: int = 0
    # stats() of the current samples (the monitor reads them twice per quote): reset by add_quote
    _stats: SpreadStats | None = field(default=None, init=False, repr=False, compare=False)
    # the samples in ascending order, kept as they come and go (a new quote every step: no sort)
    _ordered: list[float] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        self._samples = deque(self._samples, maxlen=self.window)
        self._ordered = sorted(self._samples)

    def add_quote(self, bid: float, ask: float) -> bool:
        """Record ask - bid; returns False (and counts it) for a crossed, locked or bad quote."""
        if not (isfinite(bid) and isfinite(ask)) or bid <= 0 or ask <= bid:
            self.rejected += 1
            return False
        spread = ask - bid
        samples = self._samples
        ordered = self._ordered
        if len(samples) == samples.maxlen:  # the oldest leaves the window with this one
            del ordered[bisect_left(ordered, samples[0])]
        samples.append(spread)
        insort(ordered, spread)
        self._stats = None
        return True

    def __len__(self) -> int:
        return len(self._samples)

    def stats(self) -> SpreadStats | None:
        if self._stats is None and self._samples:
            ordered = self._ordered  # sorted(self._samples)
            count = len(ordered)
            middle = count // 2
            median = ordered[middle] if count % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0
            self._stats = SpreadStats(self._samples[-1], median, sum(ordered) / count, count)
        return self._stats

    def is_acceptable(self, bid: float, ask: float, max_spread_pct: float,
                      max_median_ratio: float | None, min_samples: int = 20) -> SpreadVerdict:
        """Judge a fresh quote against the absolute cap and the rolling median (the fresh quote is
        not added: call ``add_quote`` separately so a wide quote does not vote on its own test)."""
        problem = self.rejection(bid, ask, max_spread_pct, max_median_ratio, min_samples)
        if problem is not None:
            return SpreadVerdict(False, problem)
        spread = ask - bid
        pct = 100.0 * spread / ((bid + ask) / 2.0)
        stats = self.stats()
        if self._median_applies(stats, max_median_ratio, min_samples):
            assert stats is not None
            return SpreadVerdict(True, f"spread {pct:.4f}% <= {max_spread_pct}%, {spread / stats.median:.2f}x median")
        return SpreadVerdict(True, f"spread {pct:.4f}% <= {max_spread_pct}% (median check needs "
                                   f"{min_samples} samples, have {0 if stats is None else stats.samples})")

    def rejection(self, bid: float, ask: float, max_spread_pct: float, max_median_ratio: float | None,
                  min_samples: int = 20) -> str | None:
        """``is_acceptable``'s reason when it refuses the quote, else None: the check alone, for a
        caller that reads only refusals (the monitor, at every step)."""
        if not (isfinite(bid) and isfinite(ask)) or bid <= 0 or ask <= bid:
            return f"bad quote bid={bid} ask={ask}"
        spread = ask - bid
        pct = 100.0 * spread / ((bid + ask) / 2.0)
        if pct > max_spread_pct:
            return f"spread {pct:.4f}% > cap {max_spread_pct}%"
        stats = self.stats()
        if self._median_applies(stats, max_median_ratio, min_samples):
            assert stats is not None and max_median_ratio is not None
            ratio = spread / stats.median
            if ratio > max_median_ratio:
                return f"spread {ratio:.2f}x median > {max_median_ratio}x ({stats.samples} samples)"
        return None

    @staticmethod
    def _median_applies(stats: SpreadStats | None, max_median_ratio: float | None, min_samples: int) -> bool:
        return max_median_ratio is not None and stats is not None and stats.samples >= min_samples \
            and stats.median > 0
