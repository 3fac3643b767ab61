"""Exits of open micro-scalp trades: broker-side SL/TP detection, trailing stop, time exit.

The stop loss and take profit sit at the broker from the moment of the fill, so a trade is
protected even when the bot is down; ``Executor.sync_closed`` records the ones the broker
closed. On top of that, each step:
- trailing stop: once the trade is ``trail_start_r`` R in profit (measured at the price it would
  close at: bid for a buy, ask for a sell), the stop follows that price at ``trail_atr`` ATR,
  where ATR is the engine's ATR at entry (``trade.meta["atr"]``; 1 R if the trade has none). The
  stop only ever tightens, by at least ``trail_min_step_atr`` ATR (so the broker is not asked
  every 5 s for a tick's worth), and never closer to the price than the broker's stops level;
- time exit: a trade held ``time_exit_minutes`` is closed at market (off when null).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from config.micro_scalp_model import MicroScalpParams
from execution.errors import BrokerError
from state.registry import Trade

log = logging.getLogger(__name__)


def trailing_stop(trade: Trade, price: float, atr: float, params: MicroScalpParams,
                  min_distance: float = 0.0) -> float | None:
    """The tighter stop the trailing rule wants now, or None to leave the stop where it is.

    ``price`` is the closing side of the quote (bid for a buy, ask for a sell); ``min_distance``
    is the broker's minimum stop distance in price."""
    risk = trade.risk_distance
    if not params.trail_enabled or risk <= 0 or atr <= 0 or price <= 0:
        return None
    buy = trade.side == "buy"
    progress = (price - trade.entry) / risk if buy else (trade.entry - price) / risk
    if progress < params.trail_start_r:
        return None
    distance = max(params.trail_atr * atr, min_distance)
    candidate = price - distance if buy else price + distance
    step = params.trail_min_step_atr * atr
    if trade.sl <= 0:  # no stop at all: any stop is tighter
        return candidate
    if buy:
        return candidate if candidate > trade.sl + step and candidate > trade.sl else None
    return candidate if candidate < trade.sl - step and candidate < trade.sl else None


@dataclass
class ExitCounters:
    trail_moves: int = 0
    trail_failures: int = 0
    time_exits: int = 0
    time_exit_failures: int = 0
    broker_closes: int = 0


class ExitManager:
    """Applies the exit rules to every open micro-scalp trade through the executor."""

    def __init__(self, executor: Any, registry: Any, broker: Any, counters: ExitCounters | None = None) -> None:
        self.executor = executor
        self.registry = registry
        self.broker = broker
        self.counters = counters or ExitCounters()

    def run(self, now: datetime, params_for: Callable[[str], MicroScalpParams],
            min_distance_for: Callable[[str], float]) -> list[Trade]:
        """One pass; returns the trades the broker closed since the last pass."""
        if not self.registry.open_trades("micro_scalp"):
            return []  # nothing to manage, and nothing the broker could have closed
        closed = self.executor.sync_closed("micro_scalp")
        self.counters.broker_closes += len(closed)
        for trade in self.registry.open_trades("micro_scalp"):
            params = params_for(trade.symbol)
            try:
                if self._time_exit(trade, now, params):
                    continue
                self._trail(trade, now, params, min_distance_for)
            except BrokerError as exc:
                log.warning("micro_scalp exits for ticket %d (%s) skipped this step: %s", trade.ticket,
                            trade.symbol, exc)
            except Exception:  # one trade's surprise must not leave the others unmanaged
                log.exception("micro_scalp exits for ticket %d (%s) failed", trade.ticket, trade.symbol)
        return closed

    def _time_exit(self, trade: Trade, now: datetime, params: MicroScalpParams) -> bool:
        if params.time_exit_minutes is None:
            return False
        held = (now - datetime.fromisoformat(trade.opened_at)).total_seconds()
        if held < params.time_exit_minutes * 60:
            return False
        outcome = self.executor.close(trade, f"time exit: held {held / 60:.1f} min "
                                             f"(limit {params.time_exit_minutes:g} min)")
        if outcome.status in ("closed", "already_closed"):
            self.counters.time_exits += 1
            return True
        self.counters.time_exit_failures += 1
        log.warning("micro_scalp time exit of ticket %d failed: %s", trade.ticket, outcome.reason)
        return False

    def _trail(self, trade: Trade, now: datetime, params: MicroScalpParams,
               min_distance_for: Callable[[str], float]) -> None:
        if not params.trail_enabled:
            return
        quote = self.broker.quote(trade.symbol)
        if (now - quote.time).total_seconds() > params.max_quote_age_seconds:
            return  # never move a stop on a stale price
        price = quote.bid if trade.side == "buy" else quote.ask
        atr = trade.meta.get("atr")
        atr = float(atr) if isinstance(atr, (int, float)) and atr > 0 else trade.risk_distance
        new_sl = trailing_stop(trade, price, atr, params, min_distance_for(trade.symbol))
        if new_sl is None:
            return
        new_sl = self.broker.normalize_price(trade.symbol, new_sl)
        if (trade.side == "buy" and new_sl <= trade.sl) or (trade.side == "sell" and 0 < trade.sl <= new_sl):
            return  # rounding to the tick undid the improvement: the stop never loosens
        updated = self.executor.modify(trade, new_sl, trade.tp,
                                       f"trailing stop {trade.sl:g} -> {new_sl:g} at price {price:g} "
                                       f"({params.trail_atr:g} ATR behind)")
        if updated is None:
            self.counters.trail_failures += 1
            return
        self.counters.trail_moves += 1
        log.info("micro_scalp %s ticket %d trailing stop %g -> %g (price %g)", trade.symbol, trade.ticket,
                 trade.sl, updated.sl, price)
