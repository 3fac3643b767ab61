"""The range-scalp monitor over the simulated terminal: the rig the monitor and recovery tests share.

Everything is production code (MT5 adapter over SimTerminal, registry, risk, journal, executor,
bar feed, the real engine); only the clock is fake, so the tests move the market by advancing it.

Times used by the tests, found by scanning the bundled data on the simulated clock (the sim
shifts its data by whole weeks onto 2026-01-05):
- EURUSD: the 03:35 M5 bar of 2026-01-06 gives a vwap_reversion BUY (score 56; entry 1.13343,
  sl ~1.13292), evaluated at 03:40:00; the trade's stop is hit at 03:49:30. The 03:45 bar
  gives another vwap_reversion buy (score 58).
- XAUUSD on 2026-01-05: ~2009 at 12:00; 2007.44 bid at 12:28 then down to ~2002.5 by 12:33.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from config.range_scalp_model import RangeScalpConfig
from engines.range_detection import RangeStructure, critical_gaps
from engines.range_exits import RangeTrade
from engines.range_scalp import evaluate_entry
from engines.types import TradeIdea
from execution.executor import magic_for
from feeds.bar_feed import BarFeed
from monitors.clock import FakeClock
from monitors.range_scalp import RangeScalpMonitor
from tests.execution.harness import Stack, build_stack

UTC = timezone.utc
EUR_SETUP_START = datetime(2026, 1, 6, 3, 30, 0, tzinfo=UTC)  # two bars before the EURUSD setup
EUR_SETUP_AT = datetime(2026, 1, 6, 3, 40, 0, tzinfo=UTC)     # the 03:35 bar has just closed
XAU_NOON = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
# only candles outside the range may invalidate it (the other three signals are switched off)
ONLY_CANDLES_INVALIDATE = {"defaults": {"invalidation": {"signals_required": 1, "vwap_momentum_atr": 1.0,
                                                         "bb_width_expansion_pct": 1000, "require_m15_bos": False}}}


def deep_update(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = deep_update(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Rig:
    """The stack, a bar feed, the monitor, and what it notified."""

    def __init__(self, tmp_path: Path, start: datetime = EUR_SETUP_START, symbols: tuple[str, ...] = ("EURUSD",),
                 changes: dict | None = None, clock: FakeClock | None = None, recover: bool = True) -> None:
        self.tmp_path = tmp_path
        self.clock = clock or FakeClock(start)
        self.stack: Stack = build_stack(tmp_path, clock=self.clock)
        self.set_config(symbols, changes or {})
        self.feed = BarFeed(self.stack.broker, self.clock, lambda: [], depth=800)
        self.notes: list[tuple[str, dict[str, Any]]] = []
        self.evaluations: list[tuple[str, int | None]] = []
        self.monitor = self.make_monitor()
        if recover:
            self.monitor.recover(self.clock.now())

    # ------------------------------------------------------------------ config
    def set_config(self, symbols: tuple[str, ...] | None = None, changes: dict | None = None) -> RangeScalpConfig:
        """Swap in range_scalp.json with ``changes`` deep-merged (validated like a reload);
        ``defaults`` changes apply to every symbol, overrides of unlisted symbols are dropped."""
        snapshot = self.stack.holder.current
        raw = copy.deepcopy(snapshot.raw["range_scalp.json"])
        if symbols is not None:
            raw["symbols"] = list(symbols)
        raw = deep_update(raw, changes or {})
        raw["overrides"] = {s: o for s, o in raw.get("overrides", {}).items() if s in raw["symbols"]}
        config = RangeScalpConfig.model_validate(raw)
        self.stack.holder.swap(replace(snapshot, range_scalp=config,
                                       raw={**snapshot.raw, "range_scalp.json": raw},
                                       version=snapshot.version + 1), [])
        return config

    def config(self) -> RangeScalpConfig:
        return self.stack.holder.current.range_scalp

    # ------------------------------------------------------------------ monitor
    def _evaluate(self, *args: Any, **kwargs: Any):
        decision = evaluate_entry(*args, **kwargs)
        self.evaluations.append((args[4], decision.bar_time))
        return decision

    def make_monitor(self, **kwargs: Any) -> RangeScalpMonitor:
        s = self.stack
        options = dict(journal=s.journal, notify=lambda kind, data: self.notes.append((kind, data)),
                       evaluate=self._evaluate)
        options.update(kwargs)
        return RangeScalpMonitor(s.holder, self.feed, s.broker, s.executor, s.registry, self.clock, **options)

    def step(self, advance: float = 0.0) -> None:
        if advance:
            self.clock.advance(advance)
        self.monitor.step(self.clock.now())

    def run_until(self, when: datetime, every: float = 5.0) -> int:
        """Step every ``every`` seconds of clock time up to and including ``when``."""
        steps = 0
        while self.clock.now() < when:
            self.step()
            steps += 1
            self.clock.advance(min(every, (when - self.clock.now()).total_seconds()))
        self.step()
        return steps + 1

    # ------------------------------------------------------------------ what happened
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.notes]

    def notes_of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.notes if k == kind]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.stack.journal_events() if name is None or e["event"] == name]

    def range_magic(self) -> int:
        return magic_for(self.stack.holder.current, "range_scalp")

    # ------------------------------------------------------------------ constructed trades
    def open_range_trade(self, symbol: str, side: str, sl_distance: float, tp_distance: float,
                         range_low: float, range_high: float, range_atr: float, setup: str = "bb_fade",
                         risk: float | None = None, opened_minutes_ago: float = 0.0,
                         register: bool = True) -> RangeTrade | Any:
        """A real position through the executor, with a constructed range; registered in the
        monitor's book (unless ``register`` is False: a crash between the fill and the save).
        ``risk`` (1 R for the exit rules) defaults to the fill's stop distance;
        ``opened_minutes_ago`` back-dates the range trade's open time (stagnation)."""
        quote = self.stack.broker.quote(symbol)
        entry = quote.ask if side == "buy" else quote.bid
        sign = 1 if side == "buy" else -1
        range_ = RangeStructure("session", range_high, range_low, (range_high + range_low) / 2, range_atr,
                                critical_gaps(range_high, range_low, 0.15), 2, 2, True,
                                detected_at=self.clock.now().timestamp())
        idea = TradeIdea(symbol, side, entry, entry - sign * sl_distance, entry + sign * tp_distance, "range_scalp",
                         (f"constructed {setup} trade",),
                         {"range": range_.to_dict(), "setup": setup, "score": 60.0, "rr": tp_distance / sl_distance})
        outcome = self.stack.executor.open(idea)
        assert outcome.opened, outcome.reason
        if not register:
            return outcome.trade
        registered = self.monitor.register_fill(idea, outcome.trade, self.clock.now())
        changes: dict[str, Any] = {}
        if risk is not None:
            changes["risk"] = risk
        if opened_minutes_ago:
            changes["opened_at"] = registered.opened_at - timedelta(minutes=opened_minutes_ago)
        if changes:
            registered = replace(registered, **changes)
            self.monitor.book.update(registered, self.clock.now())
        return registered
