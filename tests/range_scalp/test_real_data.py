"""The engine on real MT5 M5 exports (XAUUSD 2026-04-24..07-09, EURUSD 2026-05-13..07-09).

The files are in broker server time (UTC+3, see data/PROVENANCE.md) and are read through
feeds/readers.py with that offset. They carry no bid/ask, so the quote is the bar close as the
bid plus a typical spread as the ask. To stay fast the engine is evaluated at every 6th closed
M5 bar (about 1,850 evaluations per symbol) with the engine's own 720-bar lookback.

Reported (pytest -s, and as junit properties): the share of evaluated bars with a detected
range, per range type, and how many setups and ideas were found.
"""
from __future__ import annotations

import collections
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from config.range_scalp_model import RangeScalpConfig, RangeScalpParams
from engines.range_data import M5, Bars, to_bars
from engines.range_exits import RangeTrade
from engines.range_scalp import RangeDecision, evaluate_entry, evaluate_exit
from tests.range_scalp.helpers import EUR_M5, REPO, XAU_M5, read_real_m5

STEP = 6
SPREAD = {"XAUUSD": 0.20, "EURUSD": 0.00008}
FILES = {"XAUUSD": XAU_M5, "EURUSD": EUR_M5}


def shipped_params(symbol: str) -> RangeScalpParams:
    text = (REPO / "config" / "range_scalp.json").read_text(encoding="utf-8")
    return RangeScalpConfig.model_validate(json.loads(text)).for_symbol(symbol)


def run_symbol(symbol: str) -> tuple[list[RangeDecision], Bars, float]:
    bars = to_bars(read_real_m5(FILES[symbol]), M5)
    p = shipped_params(symbol)
    lookback = p.data.lookback_m5_bars
    decisions = []
    started = time.perf_counter()
    for i in range(lookback, len(bars), STEP):
        window = bars.slice(i + 1 - lookback, i + 1)
        close = float(window.close[-1])
        now = datetime.fromtimestamp(int(window.time[-1]) + M5 + 3, tz=timezone.utc)
        decisions.append(evaluate_entry(window, None, (close, close + SPREAD[symbol]), p, symbol, now))
    return decisions, bars, time.perf_counter() - started


@pytest.fixture(scope="module", params=["XAUUSD", "EURUSD"])
def evaluated(request):
    symbol = request.param
    decisions, bars, seconds = run_symbol(symbol)
    return symbol, decisions, bars, seconds


def test_ranges_are_detected_and_reported(evaluated, record_property) -> None:
    symbol, decisions, _, seconds = evaluated
    fresh = [d for d in decisions if d.failed != "data_quality"]
    with_range = [d for d in fresh if d.range is not None]
    share = len(with_range) / len(fresh)
    types = collections.Counter(d.range.range_type for d in with_range if d.range is not None)
    ideas = [d for d in decisions if d.idea is not None]
    failed = collections.Counter(d.failed for d in decisions if d.idea is None)
    print(f"\n{symbol}: {len(decisions)} evaluations (every {STEP}th M5 bar) in {seconds:.1f} s; "
          f"range detected on {share:.1%} of the bars with fresh data; types {dict(types)}; "
          f"{sum(len(d.candidates) for d in decisions)} scored setups, {len(ideas)} ideas; "
          f"first failing gate {dict(failed.most_common())}")
    record_property(f"range_share_{symbol}", round(share, 4))
    record_property(f"range_types_{symbol}", dict(types))
    record_property(f"ideas_{symbol}", len(ideas))
    assert len(fresh) > 1000
    assert share > 0.5
    assert len(types) >= 2
    assert ideas, f"no idea at all on {symbol}"


def test_every_setup_has_consistent_geometry(evaluated) -> None:
    symbol, decisions, _, _ = evaluated
    p = shipped_params(symbol)
    checked = 0
    for decision in decisions:
        for scored in decision.candidates:
            setup = scored.setup
            if setup.side == "buy":
                assert setup.sl < setup.entry < setup.tp
            else:
                assert setup.tp < setup.entry < setup.sl
            rules = getattr(p.strategies, setup.strategy)
            assert rules.min_rr - 1e-9 <= setup.rr <= rules.max_rr + 1e-9
            assert abs(setup.tp - setup.entry) == pytest.approx(setup.risk * setup.rr, rel=1e-9)
            assert 0 <= scored.total <= 100
            checked += 1
        if decision.idea is not None:
            idea, best = decision.idea, decision.candidates[0]
            assert decision.range is not None and decision.range.high > decision.range.low
            assert (idea.strategy, idea.side, idea.entry, idea.sl, idea.tp) == (
                best.strategy, best.side, best.setup.entry, best.setup.sl, best.setup.tp)
            assert idea.meta["score"] == best.total
    assert checked > 0


def test_exit_rules_run_over_the_ideas_that_followed(evaluated) -> None:
    symbol, decisions, bars, _ = evaluated
    p = shipped_params(symbol)
    kinds = collections.Counter()
    for decision in decisions:
        if decision.idea is None:
            continue
        idea = decision.idea
        opened = datetime.fromtimestamp(decision.bar_time + M5 + 3, tz=timezone.utc)
        trade = RangeTrade(symbol, idea.side, idea.entry, idea.sl, idea.tp, opened, decision.range, idea.strategy)
        for minutes in (5, 30, 65):
            now = opened + timedelta(minutes=minutes)
            end = int(bars.time.searchsorted(now.timestamp() - M5, side="right"))
            window = bars.slice(max(0, end - p.data.lookback_m5_bars), end)
            close = float(window.close[-1])
            bid, ask = close, close + SPREAD[symbol]
            action = evaluate_exit(trade, window, (bid, ask), p, now)
            kinds[action.reason] += 1
            if action.kind == "move_sl":
                assert action.new_sl is not None
                if trade.side == "buy":
                    assert trade.entry < action.new_sl < bid
                else:
                    assert ask < action.new_sl < trade.entry
    print(f"\n{symbol}: exit actions over the ideas at +5/+30/+65 min: {dict(kinds)}")
    assert sum(kinds.values()) > 0
