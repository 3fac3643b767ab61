"""Quiet mode (``evaluate(explain=False)``, what the monitor uses): only the failing check's reason.

It must be invisible: every decision equal to the explaining one, an idea's reasons complete and
identical, and a no-trade decision's one reason exactly the one the monitor picks from the full
list (the last reason of the failing check, else the last reason). Walked over real bars so every
regime detail, gate and checker path is formatted both ways.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config.micro_scalp_model import MicroScalpConfig
from engines.micro_scalp import RegimeState, evaluate
from engines.micro_scalp_features import Bars
from engines.micro_scalp_reasons import LazyText, failure_reason, text_of
from engines.spread import SpreadStats
from tests.micro_scalp.real_bars import EUR_FILE, XAU_FILE, read_real_bars

REPO = Path(__file__).resolve().parents[2]
WINDOW = 200
CASES = {"XAUUSD": (XAU_FILE, 0.20, 0.10), "EURUSD": (EUR_FILE, 0.00010, 0.00010)}


def monitor_why(reasons: tuple[str, ...], failed: str | None) -> str:
    """monitors/micro_scalp.py's choice of the reason to show for a decision without an idea."""
    failed = failed or "engine"
    return next((r for r in reversed(reasons) if r.startswith(f"{failed}:")), reasons[-1] if reasons else "")


@pytest.mark.parametrize("symbol", sorted(CASES))
def test_quiet_decisions_equal_explaining_ones(symbol: str) -> None:
    file, spread, stops_level = CASES[symbol]
    config = MicroScalpConfig.model_validate(json.loads((REPO / "config" / "micro_scalp.json").read_text()))
    params = config.for_symbol(symbol)
    bars = Bars.from_frame(read_real_bars(file).iloc[:2600])
    loud, quiet = RegimeState(), RegimeState()
    failed: Counter[str | None] = Counter()
    for step, end in enumerate(range(WINDOW, len(bars) + 1, 2)):
        window = Bars(*(a[end - WINDOW:end] for a in (bars.time_s, bars.open, bars.high, bars.low,
                                                        bars.close, bars.volume)))
        close = float(window.close[-1])
        now = datetime.fromtimestamp(int(window.time_s[-1]) + 60, tz=timezone.utc)
        stats = SpreadStats(spread, spread / (1.2 + step % 3), spread, 50) if step % 5 == 0 else None
        args = (window, (close - spread / 2, close + spread / 2), stats, None, params, symbol, now)
        full = evaluate(*args, loud, stops_level=stops_level)
        short = evaluate(*args, quiet, stops_level=stops_level, explain=False)
        loud, quiet = full.regime_state, short.regime_state
        assert (short.failed, short.regime, short.strategy, short.score, short.aplus, short.idea) == \
               (full.failed, full.regime, full.strategy, full.score, full.aplus, full.idea)
        assert loud == quiet
        if full.idea is None:
            detail = short.failure_detail(short.failed or "engine")  # what the monitor keeps, maybe lazy
            assert short.reasons == (monitor_why(full.reasons, full.failed),) == (str(detail),)
            assert type(short.reasons[0]) is str and type(full.failure_detail(full.failed or "engine")) is str
        else:
            assert short.reasons == full.reasons and short.idea.reasons == full.reasons
        failed[full.failed] += 1
    assert {None, "L1.atr1", "L2.location", "L3.primary", "L4.score"} <= set(failed), failed


def test_the_failure_reason_is_the_last_of_the_failing_check() -> None:
    reasons = ["data: ok", "L1.atr1: pass x", "L2.location: FAIL y", "router: edge"]
    assert failure_reason(reasons, "L2.location") == "L2.location: FAIL y"
    assert failure_reason(reasons, "L3.primary") == "router: edge"   # none of that check: the last one
    assert failure_reason(reasons, None) == "router: edge"
    assert failure_reason([], "x") == ""
    assert failure_reason(["L1.spread_median: FAIL a", "L1.spread: FAIL b", "z"], "L1.spread") == "L1.spread: FAIL b"


def test_a_single_reason_is_the_failure_reason_whatever_the_check() -> None:
    # the shortcut for a quiet decision's one reason gives what the prefix search gives
    for failed in ("L2.location", "L3.primary", None):
        assert failure_reason(("L2.location: FAIL y",), failed) == "L2.location: FAIL y"
        assert failure_reason(["router: edge"], failed) == monitor_why(("router: edge",), failed)


def test_a_clock_in_another_zone_decides_as_its_utc_instant() -> None:
    # evaluate converts ``now`` to UTC unless it is in UTC already (then it is used as given)
    file, spread, stops_level = CASES["XAUUSD"]
    config = MicroScalpConfig.model_validate(json.loads((REPO / "config" / "micro_scalp.json").read_text()))
    params = config.for_symbol("XAUUSD")
    bars = Bars.from_frame(read_real_bars(file).iloc[:WINDOW + 60])
    for end in range(WINDOW, len(bars) + 1, 6):
        window = Bars(*(a[end - WINDOW:end] for a in (bars.time_s, bars.open, bars.high, bars.low,
                                                        bars.close, bars.volume)))
        close = float(window.close[-1])
        utc = datetime.fromtimestamp(int(window.time_s[-1]) + 60, tz=timezone.utc)
        local = utc.astimezone(timezone(timedelta(hours=2)))
        args = (window, (close - spread / 2, close + spread / 2), None, None, params, "XAUUSD")
        in_utc, elsewhere = (evaluate(*args, now, RegimeState(), stops_level=stops_level) for now in (utc, local))
        assert (in_utc.failed, in_utc.reasons, in_utc.idea, in_utc.regime_state) == \
               (elsewhere.failed, elsewhere.reasons, elsewhere.idea, elsewhere.regime_state)


def test_a_lazy_text_is_formatted_once_when_read() -> None:
    calls: list[tuple[float, str]] = []

    def fmt(x: float, unit: str) -> str:
        calls.append((x, unit))
        return f"{x:.2f} {unit}"

    text = LazyText(fmt, 1.234, "pips")
    assert calls == []                                   # built: nothing formatted
    assert str(text) == "1.23 pips" == text_of(text) == f"{text}" and repr(text) == "'1.23 pips'"
    assert calls == [(1.234, "pips")]                    # read four times, formatted once
    assert text_of("as is") == "as is"


def test_a_quiet_decision_replaced_keeps_its_reasons() -> None:
    """``dataclasses.replace`` of a quiet no-trade decision hands its constructor the formatted
    tuple: the copy reads the same reasons and detail (the tuple path of the property)."""
    from dataclasses import replace
    from engines.micro_scalp import _QuietNoTrade
    lazy = _QuietNoTrade("XAUUSD", None, LazyText(lambda: "L2.location: FAIL far"), "L2.location")
    copy = replace(lazy, symbol="EURUSD")
    assert lazy.reasons == copy.reasons == ("L2.location: FAIL far",)
    assert str(lazy.failure_detail("L2.location")) == copy.failure_detail("L2.location") == "L2.location: FAIL far"
    assert copy.__dict__["reasons"] == ("L2.location: FAIL far",)
