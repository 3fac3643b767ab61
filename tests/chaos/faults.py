"""Randomized fault schedules for the simulated terminal (its ``faults`` API), seeded.

``FaultSchedule(rng).maybe_inject(terminal)`` arms at most one fault on a terminal with the
given probability: every kind of ``execution.simterminal.faults.FAULT_KINDS`` (IPC errors,
timeouts with and without placement, requotes, rejections, disconnects, stale quotes,
AutoTrading switched off). What the terminal actually fired is in ``terminal.faults.injected``
(kind, function, time); ``count_fired`` tallies it for the chaos report.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from execution.simterminal.faults import FAULT_KINDS

# rejections a real server sends: invalid stops, no money, market closed, trade disabled, invalid fill
REJECT_RETCODES = (10016, 10019, 10018, 10017, 10030)
IPC_FUNCTIONS = (None, "positions_get", "history_deals_get", "symbol_info_tick", "order_send", "account_info",
                 "copy_rates_from_pos")


@dataclass
class FaultSchedule:
    """Arms random faults; ``armed`` counts what was scheduled (fired faults are the terminal's)."""

    rng: random.Random
    probability: float = 0.3
    max_window_seconds: float = 90.0
    armed: Counter = field(default_factory=Counter)

    def maybe_inject(self, terminal: Any) -> str | None:
        """With ``probability``, arm one random fault on ``terminal``; returns its kind."""
        if self.rng.random() >= self.probability:
            return None
        kind = self.rng.choice(FAULT_KINDS)
        self.inject(terminal, kind)
        return kind

    def inject(self, terminal: Any, kind: str) -> None:
        faults = terminal.faults
        rng = self.rng
        if kind == "ipc_error":
            faults.schedule(kind, count=rng.randint(1, 4), function=rng.choice(IPC_FUNCTIONS))
        elif kind in ("timeout_placed", "timeout_not_placed", "requote"):
            faults.schedule(kind, count=rng.randint(1, 2))
        elif kind == "reject":
            faults.schedule(kind, retcode=rng.choice(REJECT_RETCODES))
        elif kind in ("disconnect", "stale_quotes"):
            faults.schedule(kind, seconds=rng.uniform(1.0, self.max_window_seconds))
        elif kind == "autotrading_off":
            faults.schedule(kind)
        else:  # a new kind in the terminal: this schedule must learn it
            raise ValueError(f"fault kind {kind!r} has no schedule here")
        self.armed[kind] += 1

    def maybe_clear_autotrading(self, terminal: Any, probability: float = 0.5) -> bool:
        """The operator switches AutoTrading back on (with ``probability``)."""
        if terminal.faults.autotrading_off and self.rng.random() < probability:
            terminal.faults.clear("autotrading_off")
            return True
        return False


def count_fired(terminal: Any) -> Counter:
    """Faults the terminal actually fired, by kind."""
    return Counter(f.kind for f in terminal.faults.injected)
