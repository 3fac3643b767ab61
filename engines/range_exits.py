"""Exit rules for open range trades (spec A12) and re-entry rules after an exit.

``exit_action`` is pure: (trade, market, params) -> ExitAction. The first matching rule wins:

1. CRITICAL  m15_bos_confirmed       the range's structure broke on M15: close, whatever the P/L
2. HIGH      candles_outside_range   range invalidated (>= 2 signals) incl. this one, profit < 0.8 R
3. HIGH      vwap_momentum_high      range invalidated incl. this one, profit < 0.8 R
4. MEDIUM    bb_width_expansion      range invalidated incl. this one, profit < 0.3 R
5. HIGH      quick move to +0.5 R within 30 min:
               - price back at or through the entry afterwards: close (breakeven_retrace)
               - else, once: move the SL to entry +/- 0.1 ATRe (move_sl, 'breakeven_move')
6. MEDIUM    stagnation_energy_loss  open >= 60 min, |profit| < 0.3 R, target not reached
7. LOW       strong_divergence       order-flow CVD divergence against the trade >= 0.7, profit >= 0.1 R
8. LOW       opposite_order_flow     tape pressure shift against the trade beyond 0.6: close at
                                     >= 0.6 R, or when losing

Fixes of the original: direction is the position's real side (the original guessed it from
price, so losers read as 0 R); the breakeven move is issued ONCE (``breakeven_armed`` is set by
``apply_exit_action`` and the rule never fires again); whether the trade reached +0.5 R in its
first 30 minutes is read from the bars since entry, so a spike between two 5-minute checks
still arms breakeven, and a return to entry after it closes the trade.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np

from config.range_scalp_model import RangeScalpParams
from engines.range_data import epoch_s
from engines.range_detection import RangeStructure, invalidation
from engines.range_market import RangeMarket

ActionKind = Literal["close", "move_sl", "none"]
Priority = Literal["critical", "high", "medium", "low"]

INVALIDATION_EXIT_REASONS = frozenset(
    {"m15_bos_confirmed", "candles_outside_range", "vwap_momentum_high", "bb_width_expansion"})


@dataclass(frozen=True)
class RangeTrade:
    """An open range trade as the exit manager sees it. ``risk`` is 1 R, the INITIAL stop
    distance (it stays fixed after the stop moves); it defaults to |entry - sl| at creation."""

    symbol: str
    side: str
    entry: float
    sl: float
    tp: float
    opened_at: datetime
    range: RangeStructure
    strategy: str
    ticket: int | None = None
    breakeven_armed: bool = False
    risk: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ValueError(f"trade side must be 'buy' or 'sell', not {self.side!r}")
        epoch_s(self.opened_at)  # refuses naive datetimes
        if self.risk <= 0:
            object.__setattr__(self, "risk", abs(self.entry - self.sl))
        if not self.risk > 0:
            raise ValueError(f"trade needs a positive initial risk: entry={self.entry} sl={self.sl}")

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "side": self.side, "entry": self.entry, "sl": self.sl, "tp": self.tp,
                "opened_at": self.opened_at.isoformat(), "range": self.range.to_dict(),
                "strategy": self.strategy, "ticket": self.ticket, "breakeven_armed": self.breakeven_armed,
                "risk": self.risk, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RangeTrade":
        try:
            return cls(symbol=str(data["symbol"]), side=str(data["side"]), entry=float(data["entry"]),
                       sl=float(data["sl"]), tp=float(data["tp"]),
                       opened_at=datetime.fromisoformat(data["opened_at"]),
                       range=RangeStructure.from_dict(data["range"]), strategy=str(data["strategy"]),
                       ticket=None if data.get("ticket") is None else int(data["ticket"]),
                       breakeven_armed=bool(data.get("breakeven_armed", False)),
                       risk=float(data.get("risk", 0.0)), meta=dict(data.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"range trade record is incomplete or malformed: {exc}") from None


@dataclass(frozen=True)
class ExitAction:
    kind: ActionKind
    reason: str  # rule name, or 'hold'
    priority: Priority | None = None
    new_sl: float | None = None
    profit_r: float = 0.0
    detail: str = ""

    @property
    def closes(self) -> bool:
        return self.kind == "close"


def apply_exit_action(trade: RangeTrade, action: ExitAction) -> RangeTrade:
    """The trade state after the broker carried out ``action``: a stop move records the new stop
    and arms breakeven, so the move is never sent twice. Close and hold change nothing here (a
    closed trade leaves the registry)."""
    if action.kind == "move_sl":
        assert action.new_sl is not None
        return replace(trade, sl=action.new_sl, breakeven_armed=True)
    return trade


def exit_price(trade: RangeTrade, market: RangeMarket) -> float:
    """Where the position would close now: longs at the bid, shorts at the ask."""
    return market.quote.bid if trade.side == "buy" else market.quote.ask


def profit_r(trade: RangeTrade, price: float) -> float:
    move = price - trade.entry if trade.side == "buy" else trade.entry - price
    return move / trade.risk


def best_r_within(trade: RangeTrade, market: RangeMarket, minutes: float) -> float:
    """Best favourable excursion in R during the first ``minutes`` of the trade, from the M5
    bars (the bar containing the entry counts from its open: entries follow a bar close within
    seconds) and the current price while still inside the window."""
    opened = epoch_s(trade.opened_at)
    until = opened + minutes * 60.0
    m5 = market.m5
    start = opened - opened % m5.period_s
    lo = int(np.searchsorted(m5.time, start, side="left"))
    hi = int(np.searchsorted(m5.time, until, side="left"))
    best = -math.inf
    if hi > lo:
        best = (float(m5.high[lo:hi].max()) - trade.entry if trade.side == "buy"
                else trade.entry - float(m5.low[lo:hi].min())) / trade.risk
    if market.now_s <= until:
        best = max(best, profit_r(trade, exit_price(trade, market)))
    return best


def breakeven_stop(trade: RangeTrade, params: RangeScalpParams) -> float:
    ex = params.exits
    buffer = ex.breakeven_buffer_atr * trade.range.atr if trade.range.atr > 0 else 0.0
    if buffer <= 0:
        buffer = trade.entry * ex.breakeven_buffer_pct / 100.0
    return trade.entry + buffer if trade.side == "buy" else trade.entry - buffer


def _tp_reached(trade: RangeTrade, price: float) -> bool:
    return price >= trade.tp if trade.side == "buy" else price <= trade.tp


def exit_action(trade: RangeTrade, market: RangeMarket, params: RangeScalpParams,
                min_stop_distance: float = 0.0) -> ExitAction:
    """The action for ``trade`` now (see the module doc for the rules and their order).
    ``min_stop_distance`` is the broker's stops level in price units (stops_level x point): a
    breakeven stop closer than that to the current price cannot be placed."""
    ex = params.exits
    price = exit_price(trade, market)
    r_now = profit_r(trade, price)
    minutes = (market.now_s - epoch_s(trade.opened_at)) / 60.0
    report = invalidation(trade.range, market, params)
    details = "; ".join(report.details)

    def close(reason: str, priority: Priority, detail: str) -> ExitAction:
        return ExitAction("close", reason, priority, None, r_now, detail)

    if ex.bos_exit and "m15_bos_confirmed" in report.signals:
        return close("m15_bos_confirmed", "critical", details)
    if report.invalidated:
        if "candles_outside_range" in report.signals and r_now < ex.invalidation_exit_max_r:
            return close("candles_outside_range", "high", f"range invalidated at {r_now:+.2f} R: {details}")
        if "vwap_momentum_high" in report.signals and r_now < ex.invalidation_exit_max_r:
            return close("vwap_momentum_high", "high", f"range invalidated at {r_now:+.2f} R: {details}")
        if "bb_width_expansion" in report.signals and r_now < ex.bb_expansion_exit_max_r:
            return close("bb_width_expansion", "medium", f"range invalidated at {r_now:+.2f} R: {details}")

    hold_notes: list[str] = []
    quick = best_r_within(trade, market, ex.breakeven_window_minutes)
    if quick >= ex.breakeven_trigger_r:
        if r_now <= 0:
            return close("breakeven_retrace", "high",
                         f"reached {quick:+.2f} R within {ex.breakeven_window_minutes:g} min, back to {r_now:+.2f} R")
        if not trade.breakeven_armed:
            new_sl = breakeven_stop(trade, params)
            safe = (new_sl < price - min_stop_distance) if trade.side == "buy" else (new_sl > price + min_stop_distance)
            if safe:
                return ExitAction("move_sl", "breakeven_move", "high", new_sl, r_now,
                                  f"reached {quick:+.2f} R within {ex.breakeven_window_minutes:g} min: "
                                  f"stop to {new_sl:.6g}")
            hold_notes.append(f"breakeven stop {new_sl:.6g} too close to price {price:.6g}")

    if minutes >= ex.stagnation_minutes and abs(r_now) < ex.stagnation_max_abs_r and not _tp_reached(trade, price):
        return close("stagnation_energy_loss", "medium", f"{minutes:.0f} min in trade at {r_now:+.2f} R")

    flow = market.flow
    if flow is not None:
        against = "bearish" if trade.side == "buy" else "bullish"
        divergence_against = flow.cvd_divergence_type in (None, against)
        if (flow.cvd_divergence_strength >= ex.divergence_strength and divergence_against
                and r_now >= ex.divergence_min_profit_r):
            return close("strong_divergence", "low",
                         f"CVD divergence {flow.cvd_divergence_strength:.2f} against the trade at {r_now:+.2f} R")
        shift = flow.tape_pressure_shift
        opposed = shift <= -ex.opposite_flow_shift if trade.side == "buy" else shift >= ex.opposite_flow_shift
        if opposed and (r_now >= ex.opposite_flow_min_profit_r or (ex.exit_if_losing and r_now < 0)):
            return close("opposite_order_flow", "low", f"tape pressure {shift:+.2f} against the trade at {r_now:+.2f} R")

    return ExitAction("none", "hold", None, None, r_now, "; ".join(hold_notes) or f"{r_now:+.2f} R, {minutes:.0f} min")


# ----------------------------------------------------------------------------------------------
# Re-entry
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExitRecord:
    """The last exit on a symbol, as the re-entry rule needs it."""

    reason: str
    closed_at: datetime
    range: RangeStructure | None = None


@dataclass(frozen=True)
class RangeHistory:
    """What the monitor remembers for one symbol between entry evaluations."""

    last_entry_at: datetime | None = None
    entries_today: int = 0
    last_exit: ExitRecord | None = None


def same_range(a: RangeStructure, b: RangeStructure, tolerance: float) -> bool:
    """Both edges within ``tolerance`` x the width of ``b``."""
    limit = tolerance * b.width
    return abs(a.high - b.high) <= limit and abs(a.low - b.low) <= limit


def reentry_allowed(last_exit: ExitRecord | None, current_range: RangeStructure | None, now: datetime,
                    params: RangeScalpParams) -> tuple[bool, str]:
    """After an invalidation exit, no new entry in that same range (a new range must form);
    after any exit, a cool-down of ``reentry.cooldown_minutes``."""
    if last_exit is None:
        return True, "no earlier exit"
    re = params.reentry
    minutes = (epoch_s(now) - epoch_s(last_exit.closed_at)) / 60.0
    if minutes < re.cooldown_minutes:
        return False, f"cool-down: last exit ({last_exit.reason}) {minutes:.1f} min ago (< {re.cooldown_minutes:g})"
    if (re.block_after_invalidation and last_exit.reason in INVALIDATION_EXIT_REASONS
            and last_exit.range is not None and current_range is not None
            and same_range(current_range, last_exit.range, re.same_range_tolerance)):
        return False, (f"range {last_exit.range.low:.6g}-{last_exit.range.high:.6g} was invalidated "
                       f"({last_exit.reason}); waiting for a new range")
    return True, f"last exit ({last_exit.reason}) {minutes:.0f} min ago"
