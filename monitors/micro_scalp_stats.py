"""Micro-scalp performance: every closed trade scored once, persisted across restarts.

Scoring uses what the registry recorded from the broker (the real fill price as entry, the
deal-based exit price and time), never the planned prices:
- R = ``Trade.r`` (move from the fill to the exit in units of the INITIAL stop distance, so a
  trailed stop does not shrink the unit); a trade with no R (zero stop distance) is still counted
  and classified by its money P&L, but adds nothing to the R sums;
- a trade within +/-``BREAKEVEN_R`` is breakeven: neither a win nor a loss, and it resets the
  streak (the original counted it as a loss);
- win rate = wins / trades; profit factor = gross winning R / gross losing R (and the same in
  money when P&L is known), None while there is no loss;
- hold time = deal close time - open time, a true mean (the original used an EMA of the
  detection time);
- execution latency: true mean over all samples and p95 over the last ``LATENCY_WINDOW``, for
  the executor's pipeline (idea -> order_send, ``Executor.latencies_ms``) and for the whole
  ``open`` call as the monitor measured it (including the broker round trip).

The document ``stats_micro_scalp`` holds the aggregates and the tickets already scored; when it is
missing it is rebuilt from ``registry.closed_trades("micro_scalp")`` (latency history cannot be
rebuilt: it starts empty).
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Callable

import numpy as np

from state.registry import CLOSED_KEPT, Trade, TradeRegistry
from state.store import StateStore

log = logging.getLogger(__name__)

DOCUMENT = "stats_micro_scalp"
STRATEGY = "micro_scalp"
BREAKEVEN_R = 0.02
LATENCY_WINDOW = 1000
SCORED_KEPT = 2 * CLOSED_KEPT  # the registry keeps CLOSED_KEPT closed trades: a ticket older than this can't recur


@dataclass
class Aggregate:
    """Running totals of one set of trades (the strategy, or one symbol)."""

    trades: int = 0
    wins: int = 0
    losses: int = 0
    breakevens: int = 0
    r_trades: int = 0
    total_r: float = 0.0
    gross_win_r: float = 0.0
    gross_loss_r: float = 0.0
    priced_trades: int = 0
    gross_profit: float = 0.0
    gross_loss: float = 0.0
    current_streak: int = 0      # > 0 a run of wins, < 0 a run of losses
    best_streak: int = 0
    worst_streak: int = 0
    largest_win_r: float = 0.0
    largest_loss_r: float = 0.0
    hold_count: int = 0
    hold_seconds_total: float = 0.0

    def add(self, r: float | None, pnl: float | None, hold_seconds: float | None) -> str:
        """Score one trade; returns its outcome: win, loss or breakeven."""
        self.trades += 1
        if r is not None:
            outcome = "win" if r > BREAKEVEN_R else "loss" if r < -BREAKEVEN_R else "breakeven"
        elif pnl is not None:
            outcome = "win" if pnl > 0 else "loss" if pnl < 0 else "breakeven"
        else:
            outcome = "breakeven"
        if outcome == "win":
            self.wins += 1
            self.current_streak = max(0, self.current_streak) + 1
        elif outcome == "loss":
            self.losses += 1
            self.current_streak = min(0, self.current_streak) - 1
        else:
            self.breakevens += 1
            self.current_streak = 0
        self.best_streak = max(self.best_streak, self.current_streak)
        self.worst_streak = min(self.worst_streak, self.current_streak)
        if r is not None:
            self.r_trades += 1
            self.total_r += r
            if r > 0:
                self.gross_win_r += r
                self.largest_win_r = max(self.largest_win_r, r)
            elif r < 0:
                self.gross_loss_r += -r
                self.largest_loss_r = min(self.largest_loss_r, r)
        if pnl is not None:
            self.priced_trades += 1
            if pnl > 0:
                self.gross_profit += pnl
            else:
                self.gross_loss += -pnl
        if hold_seconds is not None:
            self.hold_count += 1
            self.hold_seconds_total += hold_seconds
        return outcome

    def to_json(self) -> dict[str, Any]:
        """``asdict(self)`` (every field is a number: no deep copy needed)."""
        return {name: getattr(self, name) for name in _AGGREGATE_FIELDS}

    def avg_r(self) -> float | None:
        return round(self.total_r / self.r_trades, 4) if self.r_trades else None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = self.to_json()
        out["win_rate"] = round(self.wins / self.trades, 4) if self.trades else None
        out["avg_r"] = self.avg_r()
        out["profit_factor"] = round(self.gross_win_r / self.gross_loss_r, 4) if self.gross_loss_r > 0 else None
        out["profit_factor_money"] = (round(self.gross_profit / self.gross_loss, 4)
                                      if self.gross_loss > 0 else None)
        out["avg_hold_seconds"] = round(self.hold_seconds_total / self.hold_count, 1) if self.hold_count else None
        for key in ("total_r", "gross_win_r", "gross_loss_r", "gross_profit", "gross_loss", "largest_win_r",
                    "largest_loss_r", "hold_seconds_total"):
            out[key] = round(out[key], 4)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Aggregate":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_AGGREGATE_FIELDS = tuple(f.name for f in fields(Aggregate))


class LatencySeries:
    """A true mean over every sample, and percentiles over the most recent ones."""

    def __init__(self, count: int = 0, total: float = 0.0, recent: list[float] | None = None) -> None:
        self.count = count
        self.total = total
        self.recent: deque[float] = deque(recent or (), maxlen=LATENCY_WINDOW)

    def add(self, ms: float) -> None:
        self.count += 1
        self.total += ms
        self.recent.append(ms)

    def summary(self) -> dict[str, Any]:
        p95 = float(np.percentile(np.asarray(self.recent), 95)) if self.recent else None
        return {"samples": self.count, "mean_ms": round(self.total / self.count, 3) if self.count else None,
                "p95_ms": None if p95 is None else round(p95, 3), "p95_window": len(self.recent)}

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total, "recent": list(self.recent)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "LatencySeries":
        data = data or {}
        return cls(int(data.get("count", 0)), float(data.get("total", 0.0)), list(data.get("recent", [])))


def _hold_seconds(trade: Trade) -> float | None:
    try:
        opened = datetime.fromisoformat(trade.opened_at)
        closed = datetime.fromisoformat(trade.closed_at) if trade.closed_at else None
    except (TypeError, ValueError):
        return None
    if closed is None:
        return None
    return max(0.0, (closed - opened).total_seconds())


class MicroScalpStats:
    """Scores closed micro-scalp trades from the registry and keeps latency samples."""

    def __init__(self, store: StateStore, registry: TradeRegistry,
                 save: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.store = store
        self.registry = registry
        self._save = save or store.save
        self._lock = threading.Lock()
        self.total = Aggregate()
        self.per_symbol: dict[str, Aggregate] = {}
        self.pipeline = LatencySeries()
        self.round_trip = LatencySeries()
        self._scored: deque[int] = deque(maxlen=SCORED_KEPT)
        self._scored_set: set[int] = set()
        self._clean_version: int | None = None  # registry closed_version when every closed trade was scored
        self.last_trade: dict[str, Any] | None = None
        self.rebuilt = False
        self._load()

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        data = self.store.load(DOCUMENT, {})
        if not data.get("total"):
            self.rebuilt = True
            scored = self.score_new(save=False)
            log.info("micro-scalp statistics rebuilt from %d closed trade(s) in the registry", len(scored))
            self.save()
            return
        self.total = Aggregate.from_json(data["total"])
        self.per_symbol = {s: Aggregate.from_json(v) for s, v in data.get("per_symbol", {}).items()}
        latency = data.get("latency", {})
        self.pipeline = LatencySeries.from_json(latency.get("pipeline"))
        self.round_trip = LatencySeries.from_json(latency.get("round_trip"))
        for ticket in data.get("scored_tickets", []):
            self._remember(int(ticket))
        self.last_trade = data.get("last_trade")

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"total": self.total.to_json(), "per_symbol": {s: a.to_json() for s, a in self.per_symbol.items()},
                    "latency": {"pipeline": self.pipeline.to_json(), "round_trip": self.round_trip.to_json()},
                    "scored_tickets": list(self._scored), "last_trade": self.last_trade}

    def save(self) -> None:
        try:
            self._save(DOCUMENT, self.to_json())
        except Exception:  # statistics must never stop trading; the next change retries the write
            log.exception("could not save %s", DOCUMENT)

    # ------------------------------------------------------------------ scoring
    def _remember(self, ticket: int) -> None:
        if len(self._scored) == self._scored.maxlen:
            self._scored_set.discard(self._scored[0])
        self._scored.append(ticket)
        self._scored_set.add(ticket)

    def score_new(self, save: bool = True) -> list[Trade]:
        """Score every closed trade of the strategy not scored yet (however it was closed:
        broker SL/TP, this monitor's exits, the reconciler, by hand).

        Runs every step: while the registry's closed trades are unchanged since a scan found
        nothing new, the answer is still nothing and the scan is skipped."""
        version = self.registry.closed_version(STRATEGY)
        if version == self._clean_version:
            return []
        fresh = [t for t in self.registry.closed_trades(STRATEGY) if t.ticket not in self._scored_set]
        if not fresh:
            self._clean_version = version
            return []
        self._clean_version = None  # scoring may evict old tickets: the next call scans again
        with self._lock:
            for trade in fresh:
                hold = _hold_seconds(trade)
                outcome = self.total.add(trade.r, trade.pnl, hold)
                self.per_symbol.setdefault(trade.symbol, Aggregate()).add(trade.r, trade.pnl, hold)
                self._remember(trade.ticket)
                self.last_trade = {"ticket": trade.ticket, "symbol": trade.symbol, "side": trade.side,
                                   "r": trade.r, "pnl": trade.pnl, "outcome": outcome, "hold_seconds": hold,
                                   "reason": trade.close_reason, "closed_at": trade.closed_at}
                log.info("micro_scalp %s %s ticket %d scored: %s, R %s, P&L %s, held %s s (%s); "
                         "win rate %d/%d, avg R %s", trade.symbol, trade.side, trade.ticket, outcome, trade.r,
                         trade.pnl, None if hold is None else round(hold), trade.close_reason, self.total.wins,
                         self.total.trades, self.total.avg_r())
        if save:
            self.save()
        return fresh

    def record_latency(self, round_trip_ms: float, pipeline_ms: float | None) -> None:
        with self._lock:
            self.round_trip.add(round_trip_ms)
            if pipeline_ms is not None:
                self.pipeline.add(pipeline_ms)
        self.save()

    # ------------------------------------------------------------------ reading
    def health(self) -> dict[str, Any]:
        with self._lock:
            return {**self.total.summary(),
                    "per_symbol": {s: a.summary() for s, a in sorted(self.per_symbol.items())},
                    "latency_ms": {"pipeline": self.pipeline.summary(), "round_trip": self.round_trip.summary()},
                    "last_trade": self.last_trade}
