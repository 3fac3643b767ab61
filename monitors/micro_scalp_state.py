"""Per-symbol memory of the micro-scalp monitor that must outlive one monitor instance.

The supervisor stops the monitor when the strategy is switched off and builds a NEW instance
when it is switched on again (and after a fault). Cooldowns, the circuit breaker, the regime
hysteresis, the rolling spread sample and the why-no-trade counts must not reset on such a
restart, so they live here and the composition root keeps one ``MicroScalpState`` for the life of
the process and hands it to every instance. Entry times (for the cooldown and the caps) are
seeded from the trade registry, so they also survive a process restart.
"""
from __future__ import annotations

import threading
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from engines.micro_scalp import RegimeState
from engines.micro_scalp_reasons import LazyText, text_of
from engines.spread import SpreadTracker
from monitors.base import DayStart
from monitors.micro_scalp_exits import ExitCounters
from monitors.why_not import WhyNoTrade

STRATEGY = "micro_scalp"
HOUR = timedelta(hours=1)


@dataclass
class Breaker:
    """Consecutive engine exceptions; ``paused_until`` is set when they reach the threshold."""

    failures: int = 0
    paused_until: datetime | None = None
    paused_at: datetime | None = None
    last_error: str | None = None
    opens: int = 0

    def is_open(self, now: datetime) -> bool:
        return self.paused_until is not None and now < self.paused_until

    def record_failure(self, error: str, now: datetime, threshold: int, pause_seconds: float) -> bool:
        """Count one failure; True when this failure opened the breaker."""
        self.failures += 1
        self.last_error = error
        if self.failures >= threshold and not self.is_open(now):
            self.paused_until = now + timedelta(seconds=pause_seconds)
            self.paused_at = now
            self.opens += 1
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0

    def expire(self, now: datetime) -> bool:
        """Close an elapsed pause (failures start again from 0); True when it just closed."""
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None
            self.failures = 0
            return True
        return False


@dataclass
class SymbolState:
    spread: SpreadTracker
    regime: RegimeState | None = None
    breaker: Breaker = field(default_factory=Breaker)
    entries: deque[datetime] | None = None        # entry times, sorted (newest last); None = not seeded yet
    failure_until: datetime | None = None         # cooldown after an order that did not open
    failure_reason: str | None = None
    last_traded_bar: str | None = None            # signal bar of the last entry (one entry per bar)
    last_spread_quote_time: datetime | None = None
    last_gate: str | None = None                  # last decision: failing gate, or "TRADE"
    detail: str | LazyText = ""                   # its text (``last_detail``), maybe not formatted yet
    last_check_at: datetime | None = None
    day_start: DayStart = field(default_factory=DayStart, repr=False, compare=False)  # midnight of a step's day
    # (params, entries kept, failure cooldown, instant) of the last pass of the cooldown and caps gates
    _entry_gates_passed: tuple[Any, int, datetime | None, datetime] | None = field(
        default=None, init=False, repr=False, compare=False)

    @property
    def last_detail(self) -> str:
        """The last decision's text: a refusal or an engine reason, formatted when first read
        (most are never read; a ``LazyText`` keeps its text, so this state is not written)."""
        return text_of(self.detail)

    def entry_gates_pass(self, params: Any, now: datetime) -> bool:
        """Do the cooldown and caps gates pass at ``now`` without being asked, because they passed
        at an earlier instant with the same parameters object, the same entries and the same
        failure cooldown? With those fixed, each refuses only less as time goes on: the time since
        the last entry grows, the failure cooldown runs out, and fewer entries lie in the last
        hour or since midnight (in one zone, midnight never moves back). So only forward in time
        and in the same zone. The entries are the same while neither ``add_entry`` nor a pruning
        that removed one ran since (both forget the pass: an entry added and another pruned
        leave the count as it was) and their count is (an edit by hand), and the failure
        cooldown only changes by a new instant object or None."""
        passed = self._entry_gates_passed
        return passed is not None and passed[0] is params and passed[1] == self.entry_count() \
            and passed[2] is self.failure_until and now >= passed[3] and now.tzinfo is passed[3].tzinfo

    def entry_gates_passed(self, params: Any, now: datetime) -> None:
        """The cooldown and caps gates passed at ``now`` (see ``entry_gates_pass``)."""
        self._entry_gates_passed = (params, self.entry_count(), self.failure_until, now)

    def last_entry(self) -> datetime | None:
        return self.entries[-1] if self.entries else None

    def add_entry(self, when: datetime) -> None:
        if self.entries is None:
            self.entries = deque()
        insort(self.entries, when)  # an append, unless the clock stepped back
        self._entry_gates_passed = None  # the gates must see the new entry

    def prune_entries(self, now: datetime) -> None:
        """Keep what the caps and the cooldown can still need (the last day and a bit)."""
        entries = self.entries
        if not entries or entries[0] >= now - HOUR:  # the horizon is at most an hour back: nothing older
            return
        horizon = min(now - HOUR, self.day_start(now))
        while entries and entries[0] < horizon:
            entries.popleft()
            self._entry_gates_passed = None  # other entries now: the gates must count them again

    def count_entries_since(self, since: datetime) -> int:
        """Entries at or after ``since`` (the entries are sorted: a bisection)."""
        entries = self.entries
        return len(entries) - bisect_left(entries, since) if entries else 0

    def entry_count(self) -> int:
        """Entries kept (an upper bound of any ``count_entries_since``)."""
        return len(self.entries) if self.entries else 0


class MicroScalpState:
    """Everything the monitor keeps between steps and across instances."""

    def __init__(self, summary_minutes: float = 15.0) -> None:
        self.lock = threading.RLock()
        self.symbols: dict[str, SymbolState] = {}
        self.why = WhyNoTrade(STRATEGY, summary_minutes)
        self.stats: Any = None  # MicroScalpStats, loaded lazily by the first monitor instance
        self.counters: dict[str, int] = {}
        self.exit_counters = ExitCounters()
        self.last_step_at: datetime | None = None

    def symbol(self, name: str, spread_window: int) -> SymbolState:
        state = self.symbols.get(name)
        if state is not None and state.spread.window == spread_window:
            return state  # the answer of every step but the first: no lock needed to read it
        with self.lock:
            state = self.symbols.get(name)
            if state is None:
                state = SymbolState(spread=SpreadTracker(window=spread_window))
                self.symbols[name] = state
            elif state.spread.window != spread_window:  # the window was edited: start a new sample
                state.spread = SpreadTracker(window=spread_window)
            return state

    def count(self, key: str, amount: int = 1) -> None:
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + amount

    def seed_entries(self, state: SymbolState, opened_at: Iterable[str]) -> None:
        """Entry times from the registry (ISO strings), once per symbol and state object."""
        if state.entries is not None:
            return
        times = sorted(datetime.fromisoformat(t) for t in opened_at)
        state.entries = deque(times)

    def health(self, now: datetime) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {}
            for name, s in sorted(self.symbols.items()):
                stats = s.spread.stats()
                out[name] = {
                    "last_gate": s.last_gate,
                    "last_detail": s.last_detail,
                    "last_check_at": s.last_check_at.isoformat() if s.last_check_at else None,
                    "regime": s.regime.regime if s.regime else None,
                    "breaker": {"failures": s.breaker.failures, "opens": s.breaker.opens,
                                "paused_until": s.breaker.paused_until.isoformat() if s.breaker.is_open(now) else None,
                                "last_error": s.breaker.last_error},
                    "cooldown_failure_until": (s.failure_until.isoformat()
                                               if s.failure_until and s.failure_until > now else None),
                    "last_entry_at": s.last_entry().isoformat() if s.last_entry() else None,
                    "entries_last_hour": s.count_entries_since(now - timedelta(hours=1)),
                    "spread_median": None if stats is None else stats.median,
                    "spread_samples": 0 if stats is None else stats.samples,
                }
            return out
