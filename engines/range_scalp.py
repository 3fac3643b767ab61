"""Range scalping engine: the entry and exit decisions, pure (data in, decisions out).

    evaluate_entry(bars_m5, bars_h1, quote, params, symbol, now, flow=None,
                   *, history=None, news_blackout=None, memo=None, brief=False) -> RangeDecision
    evaluate_exit(trade, bars_m5, quote, params, now, flow=None,
                  *, bars_h1=None, min_stop_distance=0.0) -> ExitAction

Call ``evaluate_entry`` once per new CLOSED M5 bar (``decision.bar_time`` says which bar was
evaluated, so a monitor can skip repeats). Bars still forming at ``now`` are ignored. M15 is
aggregated from the M5 bars; H1 comes from ``bars_h1`` or, when that is None, from the M5 bars
too (see engines/range_market.py). ``params`` is ``RangeScalpConfig.for_symbol(symbol)``.

The entry pipeline (each gate's verdict is in ``decision.checks`` and ``decision.reasons``):
data quality -> range detection (session, previous day, swing) -> ADX gate -> range validity
-> false range -> 3-confluence -> session -> trade activity -> re-entry -> the five strategies
-> entry edge and R:R -> scoring with ADX-regime weights -> buy/sell conflict -> best setup.
An idea is proposed only when every gate passes; the scored candidates are reported anyway
so a signal-only monitor can show what was close. ``brief=True`` (what the monitor records)
stops a decision at its first failing gate instead, skipping the work of the gates after it.

For an exit pass over many trades, build the market once per symbol with ``prepare_market``
and call ``exit_action(trade, market, params)`` for each trade. A caller that evaluates one
symbol bar after bar passes the symbol's ``MarketMemo`` (``memo=``): identical inputs are not
computed twice (engines/range_market.py) and what the last M5 window gave is carried over to the
next one (engines/range_window.py); it changes no decision.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from config.range_scalp_model import RangeScalpParams
from engines.frozen import direct_init
from engines.range_data import RangeFlow, iso
from engines.range_detection import (
    Candidate, RangeStructure, build_range, detect_candidate, nested_alignment, with_signals,
)
from engines.range_exits import (
    INVALIDATION_EXIT_REASONS, ExitAction, ExitRecord, RangeHistory, RangeTrade, apply_exit_action, exit_action,
    reentry_allowed,
)
from engines.range_filters import (
    Check, Confluence, adx_gate, confluence, data_quality, edge_check, false_range_check, range_validity,
    session_filter, trade_activity,
)
from engines.range_market import (
    MarketBase, MarketInputs, MarketMemo, RangeMarket, complete_market, compute_market, core_of, market_base,
    read_inputs,
)
from engines.range_scorer import ScoredSetup, resolve_conflicts, score_setup
from engines.range_strategies import Setup, Signal, build_setup, find_signals
from engines.types import Decision, TradeIdea

__all__ = [
    "evaluate_entry", "evaluate_exit", "prepare_market", "exit_action", "apply_exit_action",
    "reentry_allowed", "RangeDecision", "RangeTrade", "RangeHistory", "ExitRecord", "ExitAction",
    "RangeStructure", "RangeFlow", "MarketUnavailable", "MarketMemo", "INVALIDATION_EXIT_REASONS",
]


@direct_init
@dataclass(frozen=True)
class RangeDecision(Decision):
    """A ``Decision`` with the range engine's details: the best setup's score and strategy, the
    range, every gate's verdict and the scored candidates (best first)."""

    score: float | None = None
    strategy: str | None = None
    range: RangeStructure | None = None
    checks: tuple[Check, ...] = ()
    candidates: tuple[ScoredSetup, ...] = ()
    bar_time: int | None = None  # open time (epoch s, UTC) of the last closed M5 bar evaluated

    def summary(self) -> str:
        if self.idea is not None:
            return (f"{self.symbol}: {self.idea.side} {self.strategy} score {self.score:g} entry "
                    f"{self.idea.entry:.6g} sl {self.idea.sl:.6g} tp {self.idea.tp:.6g}")
        why = next((c.reason for c in self.checks if not c.passed), None)
        if why is None:  # asked only then: a brief decision builds its reasons when read
            reasons = self.reasons
            why = reasons[-1] if reasons else ""
        return f"{self.symbol}: no trade ({self.failed}: {why})"


class MarketUnavailable(ValueError):
    """The bars cannot support a decision (too few, stale or bad values)."""


def prepare_market(bars_m5: Any, bars_h1: Any, quote: Any, params: RangeScalpParams, symbol: str,
                   now: datetime, flow: Any = None, *, memo: MarketMemo | None = None) -> RangeMarket:
    """One symbol's market state for ``now``; raises MarketUnavailable when data quality fails.
    ``memo``: the symbol's MarketMemo (engines/range_market.py), which only saves time."""
    inputs = read_inputs(bars_m5, bars_h1, quote, params, symbol, now, flow, memo)
    check = data_quality(inputs, params, memo)
    if not check.passed:
        raise MarketUnavailable(f"{symbol}: {check.reason}")
    return compute_market(inputs, params, memo)


def _switch(enabled: bool, name: str, run: Any) -> Check:
    return run() if enabled else Check(name, True, "check disabled in config")


def _range_text(detected: RangeStructure, passed_over: tuple[str, ...]) -> str:
    over = f"; passed over: {'; '.join(passed_over)}" if passed_over else ""
    return detected.describe() + over


class _BriefNoTrade(RangeDecision):
    """A brief evaluation's decision without a trade: its ``reasons`` are the lines of its
    checks, built each time they are read (the monitor reads only ``failed`` and ``summary()``,
    so the passing gates' reasons are never formatted; see Check). Every field reads as that of
    the eager ``_no_trade`` decision: the property shadows the ``reasons`` the constructor stores."""

    @property  # type: ignore[override]
    def reasons(self) -> tuple[str, ...]:
        return tuple(c.line() for c in self.checks)


def _bar_time(inputs: MarketInputs) -> int | None:
    """The newest M5 bar's open time, the decision's ``bar_time`` (None without bars)."""
    return int(inputs.m5.time.item(-1)) if len(inputs.m5.time) else None


def _no_trade(inputs: MarketInputs, checks: list[Check], failed: str, extra: tuple[str, ...] = (),
              range_: RangeStructure | None = None, candidates: tuple[ScoredSetup, ...] = ()) -> RangeDecision:
    return RangeDecision(inputs.symbol, None, tuple(c.line() for c in checks) + extra, failed, {}, None, None,
                         range_, tuple(checks), candidates, _bar_time(inputs))


def _brief_no_trade(inputs: MarketInputs, checks: list[Check], failed: str,
                    range_: "RangeStructure | _FoundRange | None" = None,
                    kind: type[_BriefNoTrade] = _BriefNoTrade) -> RangeDecision:
    """``_no_trade`` of a brief evaluation: no notes, no candidates, reasons built when read.
    ``kind``: ``_AdxStopped`` for a range built when read (``_adx_stopped``)."""
    return kind(inputs.symbol, None, (), failed, {}, None, None, range_, tuple(checks), (),  # type: ignore[arg-type]
                _bar_time(inputs))


class _FoundRange:
    """The range of a brief evaluation that the ADX gate stopped, built when first read (the
    monitor reads only such a decision's ``failed`` and ``summary()``, which never read it):
    from the base's bars alone (``core_of`` and ``build_range`` without the memo, whose carried
    values are the same values: engines/range_market.py), so it is the range the evaluation
    would have built at once, and the memo's windows skip the range's VWAP, expansion state and
    touches while the ADX gate is shut. It reads the caller's bars when built, so those must not
    change after the evaluation (the bar feed's views are read-only; evaluate_entry says so)."""

    __slots__ = ("_args", "_range")

    def __init__(self, candidate: Candidate, base: MarketBase, params: RangeScalpParams) -> None:
        self._args = (candidate, base, params)
        self._range: RangeStructure | None = None

    def value(self) -> RangeStructure:
        if self._range is None:
            candidate, base, params = self._args
            self._range = build_range(candidate, core_of(base, params), params)
        return self._range


def _found_range_text(found: _FoundRange, passed_over: tuple[str, ...]) -> str:
    return _range_text(found.value(), passed_over)


class _AdxStopped(_BriefNoTrade):
    """A brief decision that the ADX gate stopped: its ``range`` (a ``_FoundRange`` where the
    constructor stores it) is built when read, and reads as that of ``_brief_no_trade``. A copy
    made with ``dataclasses.replace`` is handed the built range: that is read as it is."""

    @property  # type: ignore[override]
    def range(self) -> RangeStructure:
        kept = self.__dict__["range"]
        return kept.value() if isinstance(kept, _FoundRange) else kept


def _adx_stopped(inputs: MarketInputs, checks: list[Check], adx: Check, found: _FoundRange,
                 passed_over: tuple[str, ...]) -> RangeDecision:
    """``_brief_no_trade(inputs, checks + [range check, adx], "adx", range)`` with the range and
    the range gate's reason built when read (``_FoundRange``)."""
    range_check = Check("range", True, _found_range_text, (found, passed_over))
    return _brief_no_trade(inputs, checks + [range_check, adx], "adx", found, _AdxStopped)


@direct_init
@dataclass(frozen=True)
class _Gates:
    checks: list[Check]
    range: RangeStructure  # with its current invalidation signals
    confluence: Confluence | None  # None when a brief evaluation stopped before the confluence gate
    regime: str  # 'low_adx' | 'normal'


def _run_gates(market: RangeMarket, range_: RangeStructure, params: RangeScalpParams, history: RangeHistory,
               news_blackout: str | None, now: datetime, adx: tuple[Check, str], brief: bool = False) -> _Gates:
    """Every gate after range detection, in the documented order; disabled ones say so.
    ``adx``: the ADX gate's check and weight regime. ``brief``: stop at the first failing gate
    (the confluence is then computed only when its gate is reached)."""
    switches = params.checks
    adx_check, regime = adx
    validity, report = range_validity(range_, market, params)
    range_ = with_signals(range_, report)
    found: list[Confluence] = []

    def confluence_check() -> Check:
        found.append(confluence(range_, market, params))
        return found[0].check(params)

    last_entry_s = history.last_entry_at.timestamp() if history.last_entry_at else None
    gates: tuple[Callable[[], Check], ...] = (
        lambda: adx_check,
        lambda: validity if switches.range_validity else Check("range_validity", True, "check disabled in config"),
        lambda: _switch(switches.false_range, "false_range", lambda: false_range_check(market, params)[0]),
        confluence_check,
        lambda: _switch(switches.session_filter, "session", lambda: session_filter(market, params)),
        lambda: _switch(switches.trade_activity, "activity", lambda: trade_activity(
            market, params, last_entry_s, history.entries_today, news_blackout)),
        lambda: Check("reentry", *reentry_allowed(history.last_exit, range_, now, params)),
    )
    checks: list[Check] = []
    for gate in gates:
        checks.append(gate())
        if brief and not checks[-1].passed:
            break
    return _Gates(checks, range_, found[0] if found else None, regime)


def _price_signals(signals: list[Signal], market: RangeMarket, range_: RangeStructure, params: RangeScalpParams
                   ) -> tuple[list[Setup], list[str]]:
    """Setups for the signals that sit on their edge and meet their strategy's minimum R:R,
    and a line for every signal skipped."""
    setups: list[Setup] = []
    skipped: list[str] = []
    for signal in signals:
        edge = edge_check(signal.side, range_, market, params) if params.checks.edge_filter else None
        if edge:
            skipped.append(f"{signal.strategy} {signal.side} skipped: {edge}")
            continue
        priced = build_setup(signal, market, params)
        if isinstance(priced, str):
            skipped.append(f"{priced} (skipped)")
        else:
            setups.append(priced)
    return setups, skipped


def _idea(symbol: str, best: ScoredSetup, gates: _Gates, market: RangeMarket, params: RangeScalpParams,
          nested: tuple[str, ...]) -> TradeIdea:
    setup, range_, conf = best.setup, gates.range, gates.confluence
    assert conf is not None  # every gate passed, the confluence gate too
    return TradeIdea(
        symbol=symbol, side=setup.side, entry=setup.entry, sl=setup.sl, tp=setup.tp,  # type: ignore[arg-type]
        strategy=setup.strategy,
        reasons=(setup.signal.reason, range_.describe(), conf.check(params).line(),
                 best.describe()) + nested,
        meta={
            "engine": "range_scalp", "score": best.total, "weighted_score": best.weighted,
            "confidence": setup.signal.confidence, "rr": setup.rr, "risk": setup.risk,
            "range": range_.to_dict(), "confluence_score": conf.score,
            "session": market.session_key, "adx": market.adx, "adx_regime": gates.regime,
            "atr_eff": market.atr_eff,
            "components": {"entry": best.entry_points, "mtf": best.mtf_points, "flow": best.flow_points,
                           "session": best.session_points},
            "bar_time": int(market.m5.time[-1]), "evaluated_at": iso(market.now_s),
        })


def evaluate_entry(bars_m5: Any, bars_h1: Any, quote: Any, params: RangeScalpParams, symbol: str,
                   now: datetime, flow: Any = None, *, history: RangeHistory | None = None,
                   news_blackout: str | None = None, memo: MarketMemo | None = None,
                   brief: bool = False) -> RangeDecision:
    """The best range setup for ``symbol`` at ``now``, or None with the reasons (module doc).

    ``history``: the symbol's last entry time, entries today and last exit (spacing, daily cap,
    re-entry). ``news_blackout``: a reason string while the news calendar blocks the symbol.
    ``memo``: the symbol's MarketMemo (engines/range_market.py): results of identical inputs
    are reused, the decision is the same with or without it. ``brief``: a decision without a
    trade ends at its first failing gate: its checks and reasons stop there, it has no
    candidates (and no invalidation signals on its range when ADX failed; that range is built
    only when read), and the reasons of its passing gates are formatted only when read (the same
    text); ``failed``, ``summary()`` and
    every decision with a trade are exactly those of a full evaluation. The bars must not change
    while a brief decision is kept: one that the ADX gate stopped builds its range from them
    when read (the bar feed hands out read-only views that never change).
    Unreadable inputs (missing columns, naive datetimes, a bad quote) raise ValueError."""
    history = history or RangeHistory()
    inputs = read_inputs(bars_m5, bars_h1, quote, params, symbol, now, flow, memo)
    no_trade = _brief_no_trade if brief else _no_trade
    checks = [data_quality(inputs, params, memo)]
    if not checks[0].passed:
        return no_trade(inputs, checks, "data_quality")
    base = market_base(inputs, params, memo)  # all that detection's candidate and the ADX gate read
    candidate, passed_over, facts = detect_candidate(base, params, memo)
    if candidate is None:
        checks.append(Check("range", False, "no range: " + "; ".join(passed_over)))
        return no_trade(inputs, checks, "range")
    adx = adx_gate(base, params)
    if brief and not adx[0].passed:
        return _adx_stopped(inputs, checks, adx[0], _FoundRange(candidate, base, params), passed_over)

    core = core_of(base, params) if memo is None else memo.core_of(base, params)
    detected = build_range(candidate, core, params, facts)
    checks.append(Check("range", True, _range_text, (detected, passed_over)))
    market = complete_market(core, params) if memo is None else memo.complete(inputs, core, params)
    gates = _run_gates(market, detected, params, history, news_blackout, now, adx, brief)
    checks += gates.checks
    range_ = gates.range
    failing = next((c for c in checks if not c.passed), None)
    if brief and failing is not None:
        return _brief_no_trade(inputs, checks, failing.name, range_)
    signals = find_signals(market, range_, params)
    setups, skipped = _price_signals(signals, market, range_, params)
    scored = [score_setup(s, market, params, gates.regime) for s in setups]
    kept, conflict_note = resolve_conflicts(scored, params)
    candidates = tuple(sorted(scored, key=lambda s: (s.weighted, s.total), reverse=True))
    signal_lines = tuple(f"signal {s.strategy} {s.side} conf {s.confidence}: {s.reason}" for s in signals)
    notes = signal_lines + tuple(skipped) + tuple(c.describe() for c in candidates)

    if failing is not None:
        return _no_trade(inputs, checks, failing.name, notes, range_, candidates)
    if not signals:
        return _no_trade(inputs, checks, "strategies", (
            f"no strategy fired (RSI {market.rsi:.1f}, stochastic {market.stoch_k:.0f}/{market.stoch_d:.0f}, "
            f"price {market.price:.6g} vs VWAP {market.vwap:.6g})",), range_, candidates)
    if not setups:
        return _no_trade(inputs, checks, "setups", notes, range_, candidates)
    if not kept:
        return _no_trade(inputs, checks, "conflict", notes + (conflict_note,), range_, candidates)

    best = kept[0]
    nested = nested_alignment(market, params, best.side)
    return RangeDecision(
        symbol=symbol, idea=_idea(symbol, best, gates, market, params, nested),
        reasons=tuple(c.line() for c in checks) + notes + (conflict_note,) + nested,
        failed=None, score=best.total, strategy=best.strategy, range=range_, checks=tuple(checks),
        candidates=candidates, bar_time=int(inputs.m5.time[-1]))


def evaluate_exit(trade: RangeTrade, bars_m5: Any, quote: Any, params: RangeScalpParams, now: datetime,
                  flow: Any = None, *, bars_h1: Any = None, min_stop_distance: float = 0.0) -> ExitAction:
    """The exit action for one open range trade (rules in engines/range_exits.py). When the
    bars cannot support a decision the answer is 'hold' with the reason: the position keeps
    its broker-side stop and target (exits fail open)."""
    try:
        market = prepare_market(bars_m5, bars_h1, quote, params, trade.symbol, now, flow)
    except MarketUnavailable as exc:
        return ExitAction("none", "hold", detail=f"no exit decision: {exc}")
    return exit_action(trade, market, params, min_stop_distance)
