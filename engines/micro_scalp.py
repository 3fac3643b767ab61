"""Micro-scalp engine: M1 bars + quote in, one decision with reasons out. Pure and deterministic.

    decision = evaluate(bars, (bid, ask), spread_stats, flow, params, "XAUUSD", now, regime_state)
    regime_state = decision.regime_state        # keep it per symbol, pass it back next time

The regime state also carries the symbol's indicator memory (``SeriesMemo``): when the next
call's bars are this call's bars plus new ones (the monitor's window grows through the session),
the ATR/EMA/ADX/VWAP series and the pivots are extended instead of recomputed, with the same
results.

Order of work (each step appears in ``decision.reasons``, unless ``explain=False`` asked for only
the failing check's reason; ``decision.failed`` is the first gate that failed):
1. data: enough bars (``params.min_bars``), sane bars and quote, ATR defined;
2. regimes: the three detectors score 0..100 and the hysteresis updates the held regime (this runs
   even when a later layer fails, so the regime memory follows every bar);
3. Layer 1 hard filters (ATR(1), average M1 range, spread);
4. router: regime detection off, no regime, or a held regime whose live confidence is under
   ``router_min_confidence`` -> the edge-based fallback; otherwise the regime's checker;
5. the checker's Layers 2-4 and its SL/TP plan (see engines/micro_scalp_checkers.py).

Bars: the bar feed's ``BarSeries``, a DataFrame with a UTC DatetimeIndex, or ``Bars``, oldest
first, CLOSED bars only: the last row is the signal bar, so the caller drops the bar still forming. The session VWAP anchors at the
first bar given when the session began earlier: pass bars back to ``vwap_anchor_hour_utc`` for a
full-session VWAP (the reasons say "vwap partial" otherwise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from config.micro_scalp_model import MicroScalpParams
from engines.frozen import direct_init
from engines.micro_scalp_checkers import CHECKERS, EDGE, Context, Trace, layer1
from engines.micro_scalp_features import Bars, BadBars, Features, SeriesMemo, compute_features
from engines.micro_scalp_reasons import LazyText, failure_reason, text_of
from engines.micro_scalp_regimes import NONE, RegimeScore, RegimeState, Why, detect_all, transition
from engines.spread import SpreadStats
from engines.types import Decision, TradeIdea

__all__ = ["evaluate", "MicroDecision", "RegimeState", "Bars", "route"]


@direct_init
@dataclass(frozen=True)
class MicroDecision(Decision):
    """A Decision that also carries the updated regime memory and what the router chose."""

    regime_state: RegimeState = field(default_factory=RegimeState)
    regime: str = NONE
    strategy: str | None = None
    score: float | None = None   # 0..10 when the checker reached Layer 4
    aplus: bool = False

    def failure_detail(self, failed: str | None) -> str | LazyText:
        """``failure_reason(reasons, failed)``: what a monitor shows of a decision without a trade
        (a quiet decision's may be a ``LazyText``, formatted by ``str()`` when shown)."""
        return failure_reason(self.reasons, failed)


class _QuietNoTrade(MicroDecision):
    """A quiet evaluation's decision without a trade (see ``evaluate``): its one reason is kept
    as the quiet trace kept it, maybe a ``LazyText``, and formatted when ``reasons`` is read
    (the monitor reads ``failure_detail()`` instead, and formats it only when shown). Every field
    reads as that of the eager decision: the property shadows the ``reasons`` the constructor
    stores (the one reason, or a tuple given by ``dataclasses.replace``)."""

    @property  # type: ignore[override]
    def reasons(self) -> tuple[str, ...]:
        kept = self.__dict__["reasons"]
        return kept if kept.__class__ is tuple else (text_of(kept),)

    def failure_detail(self, failed: str | None) -> str | LazyText:
        kept = self.__dict__["reasons"]
        return failure_reason(kept, failed) if kept.__class__ is tuple else kept


def _quote(quote: Any) -> tuple[float, float]:
    if hasattr(quote, "bid") and hasattr(quote, "ask"):
        return float(quote.bid), float(quote.ask)
    bid, ask = quote
    return float(bid), float(ask)


def _bar_time(time_s: int) -> datetime:
    return datetime.fromtimestamp(time_s, tz=timezone.utc)


def _data_reason(n: int, last_bar_s: int, bid: float, ask: float, atr: float, vwap: float, vwap_std: float,
                 vwap_partial: bool) -> str:
    return (f"data: {n} bars to {_bar_time(last_bar_s):%Y-%m-%d %H:%M}Z, bid {bid:.6g} ask {ask:.6g}, "
            f"ATR {atr:.6g}, VWAP {vwap:.6g} +/- {vwap_std:.6g}"
            + (" (vwap partial: session began before the first bar)" if vwap_partial else ""))


def route(p: MicroScalpParams, state: RegimeState) -> tuple[str, str]:
    """(strategy, why). The fallback is the edge-based checker."""
    strategy, (template, args) = _route(p, state)
    return strategy, template.format(*args)


def _route(p: MicroScalpParams, state: RegimeState) -> tuple[str, Why]:
    """``route`` with the explanation not yet formatted."""
    if not p.regime_detection_enabled:
        return EDGE, ("regime detection disabled", ())
    if state.regime == NONE:
        return EDGE, ("no regime held", ())
    if state.confidence < p.router_min_confidence:
        return EDGE, ("{} confidence {:.0f} < {:.0f}", (state.regime, state.confidence, p.router_min_confidence))
    return state.regime, ("{} confidence {:.0f} >= {:.0f}", (state.regime, state.confidence, p.router_min_confidence))


def _hysteresis_text(why: Why, regime: str) -> str:
    return f"hysteresis: {why[0].format(*why[1])} -> {regime}"


def _router_text(strategy: str, why: Why) -> str:
    return f"router: {strategy} ({why[0].format(*why[1])})"


def evaluate(bars: Any, quote: Any, spread_stats: SpreadStats | None, flow: Any,
             params: MicroScalpParams, symbol: str, now: datetime,
             regime_state: RegimeState | None = None, *, stops_level: float = 0.0,
             explain: bool = True) -> MicroDecision:
    """Decide whether ``symbol`` has a micro-scalp entry now.

    ``quote`` is (bid, ask) or an object with ``bid``/``ask``; ``spread_stats`` may be None;
    ``flow`` is optional order-flow metrics (object or mapping with ``divergence``/``cvd_slope``);
    ``stops_level`` is the broker's minimum SL/TP distance in PRICE units (stops level x point),
    0 if unknown; ``now`` is an aware UTC datetime (used for sessions only).

    ``explain=False`` (the monitor's quiet mode): a decision without an idea carries only the
    reason of its failing check (``failure_reason``: what the monitor shows), formatted alone and
    only when read (``reasons``; ``failure_detail`` hands it over unformatted, a ``LazyText``);
    a decision with an idea always carries every reason (Layer 1 and the checker, which kept
    none, run again explaining: the same outcome). Decisions are otherwise identical (a quiet
    no-trade decision is a ``_QuietNoTrade``: its fields read the same, its class differs)."""
    if not isinstance(params, MicroScalpParams):
        raise TypeError(f"params must be MicroScalpParams, not {type(params).__name__}")
    if now.tzinfo is None:
        raise ValueError("now must be an aware UTC datetime")
    if now.tzinfo is not timezone.utc:  # (for UTC itself ``astimezone`` returns ``now``: no call)
        now = now.astimezone(timezone.utc)
    state = regime_state or RegimeState()
    memo = state.memo
    if memo is None:
        memo = SeriesMemo()
        state = replace(state, memo=memo)

    try:
        data = Bars.coerce(bars)
        size = len(data.close)  # len(data), without ``Bars.__len__``'s Python call
        if size < params.min_bars:
            return _reject(symbol, state, "data.bars", f"need {params.min_bars} bars, have {size}")
        memo.begin(data)
        memo.validate(data)
    except BadBars as exc:
        return _reject(symbol, state, "data.bars", str(exc))
    try:
        bid, ask = _quote(quote)
    except (TypeError, ValueError):
        return _reject(symbol, state, "data.quote", f"quote must be (bid, ask), got {quote!r}")
    if not (math.isfinite(bid) and math.isfinite(ask)) or bid <= 0 or ask < bid:
        return _reject(symbol, state, "data.quote", f"bad quote bid={bid} ask={ask}")

    params = memo.params_view(params)  # the same values, cheaper to read
    f = compute_features(data, bid, ask, params, memo)
    if not math.isfinite(f.atr_now) or f.atr_now <= 0:
        return _reject(symbol, state, "data.atr",
                       f"ATR({params.atr_period}) is {f.atr_now}: no movement to size anything on")
    last_bar_s = int(f.cols.time[f.n - 1])  # int(data.time_s[-1]), from the list
    scores = detect_all(f, params, explain)
    why: Why | None = None
    if params.regime_detection_enabled:
        state, why = transition(state, scores, last_bar_s, params)

    trace = Trace(explain)
    if not layer1(f, params, spread_stats, trace):
        if not explain:
            # positional (``{}``: the meta the field's factory would make): keywords cost more per call
            return _QuietNoTrade(symbol, None, _quiet_reason(trace),  # type: ignore[arg-type]  # (the property's)
                                 trace.failed, {}, state, state.regime)
        told = _all_reasons(f, last_bar_s, scores, why, state, None, trace)
        return MicroDecision(symbol, None, told, trace.failed, {}, state, state.regime)

    strategy, route_why = _route(params, state)
    stops = float(stops_level)
    ctx = Context(f, params, now, flow, scores, stops if stops > 0.0 else 0.0)  # max(0.0, stops), without the call
    outcome = CHECKERS[strategy](ctx, trace)
    if not outcome.passed:
        if not explain:
            return _QuietNoTrade(symbol, None, _quiet_reason(trace),  # type: ignore[arg-type]  # (the property's)
                                 outcome.failed, {}, state, state.regime, strategy, outcome.score)
        told = _all_reasons(f, last_bar_s, scores, why, state, (strategy, route_why), trace)
        return MicroDecision(symbol, None, told, outcome.failed, {}, state, state.regime, strategy, outcome.score)
    if not explain:  # the quiet checks kept no reasons: check again explaining (the same outcome)
        trace = Trace()
        layer1(f, params, spread_stats, trace)
        outcome = CHECKERS[strategy](ctx, trace)
    all_reasons = _all_reasons(f, last_bar_s, scores, why, state, (strategy, route_why), trace)
    assert outcome.side is not None and outcome.entry is not None and outcome.sl is not None \
        and outcome.tp is not None and outcome.score is not None
    meta = {**outcome.meta, "regime": state.regime, "regime_confidence": state.confidence,
            "score": outcome.score, "aplus": outcome.aplus, "atr": f.atr_now, "atr1": f.atr1,
            "vwap": f.vwap_now, "bar_time": _bar_time(last_bar_s).isoformat()}
    idea = TradeIdea(symbol, outcome.side, outcome.entry, outcome.sl, outcome.tp, strategy, all_reasons, meta)
    return MicroDecision(symbol, idea, all_reasons, None, regime_state=state, regime=state.regime,
                         strategy=strategy, score=outcome.score, aplus=outcome.aplus)


def _reject(symbol: str, state: RegimeState, failed: str, text: str) -> MicroDecision:
    """A decision failing a data check (before the regimes ran: the state is as given)."""
    return MicroDecision(symbol, None, (f"{failed}: FAIL {text}",), failed, regime_state=state, regime=state.regime)


def _all_reasons(f: Features, last_bar_s: int, scores: dict[str, RegimeScore], why: Why | None,
                 state: RegimeState, route: tuple[str, Why] | None, trace: Trace) -> tuple[str, ...]:
    """Every reason of an explained evaluation, in order: data, the regimes, the hysteresis (when
    regime detection is on), the router (once Layer 1 passed), then the checks of ``trace``."""
    reasons = [_data_reason(f.n, last_bar_s, f.bid, f.ask, f.atr_now, f.vwap_now, f.vwap_std_now, f.vwap_partial)]
    reasons += [score.describe() for score in scores.values()]
    if why is not None:
        reasons.append(_hysteresis_text(why, state.regime))
    if route is not None:
        reasons.append(_router_text(*route))
    return (*reasons, *trace.reasons)


def _quiet_reason(trace: Trace) -> str | LazyText:
    """A failed quiet decision's one reason: the failing check's, the only one the quiet trace
    kept (the other reasons are never formatted), maybe not formatted yet."""
    return failure_reason(trace.reasons, trace.failed)
