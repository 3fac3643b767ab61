"""evaluate(): data checks, Layer 1, router, reasons, regime memory, determinism, entry prices."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.micro_scalp_model import MicroScalpParams
from engines.micro_scalp import MicroDecision, evaluate
from engines.spread import SpreadStats
from engines.types import Decision
from tests.micro_scalp.scenarios import flat_base, make, oscillation

NOW = datetime(2024, 3, 5, 11, 1, tzinfo=timezone.utc)
EDGE_ROWS = flat_base() + [(100.0, 100.1, 99.45, 100.05)]
QUOTE = (100.04, 100.06)
P = MicroScalpParams()


def frame(rows, volume=None) -> pd.DataFrame:
    bars = make(rows, volume)
    index = pd.DatetimeIndex(pd.to_datetime(bars.time_s, unit="s", utc=True), name="time")
    return pd.DataFrame({"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
                         "volume": bars.volume}, index=index)


def decide(rows=EDGE_ROWS, quote=QUOTE, params=P, **kwargs) -> MicroDecision:
    kwargs.setdefault("now", NOW)
    return evaluate(frame(rows), quote, kwargs.pop("spread_stats", None), kwargs.pop("flow", None), params,
                    "XAUUSD", **kwargs)


def reason(decision, prefix):
    return next(r for r in decision.reasons if r.startswith(prefix))


def test_edge_idea_end_to_end_with_reasons_for_every_layer():
    d = decide()
    assert isinstance(d, Decision) and d.failed is None and d.idea is not None
    idea = d.idea
    assert (idea.symbol, idea.side, idea.strategy, idea.entry) == ("XAUUSD", "buy", "edge_based", 100.06)
    assert idea.sl < idea.entry < idea.tp
    prefixes = ["data:", "regime vwap_reversion", "regime range_scalp", "regime balanced_zone", "hysteresis:",
                "L1.atr1: pass", "L1.avg_range: pass", "L1.spread: pass", "router: edge_based",
                "L2.location: pass", "L3.primary: pass", "L3.secondary: pass", "L4.score: pass", "stops.sides: pass"]
    for prefix in prefixes:
        assert any(r.startswith(prefix) for r in d.reasons), prefix
    assert "ATR(1) 0.65 = 0.6497% >= 0.01%" in reason(d, "L1.atr1")  # the sweep bar's true range
    assert idea.meta["score"] == pytest.approx(8.75) and idea.meta["aplus"] is True
    assert d.score == pytest.approx(8.75) and d.aplus and d.strategy == "edge_based"


def test_decisions_are_deterministic():
    assert decide() == decide()
    assert decide().idea == decide().idea


@pytest.mark.parametrize("overrides,failed,text", [
    ({"atr1_min_pct": 0.7}, "L1.atr1", "0.6497% >= 0.7%"),
    ({"m1_range_avg_min_pct": 0.5}, "L1.avg_range", "avg range(10) 0.425 = 0.4248% >= 0.5%"),
    ({"max_spread_pct": 0.01}, "L1.spread", "spread 0.02 = 0.0200% <= 0.01%"),
])
def test_layer1_failures_name_the_filter_and_numbers(overrides, failed, text):
    d = decide(params=MicroScalpParams(**overrides))
    assert d.idea is None and d.failed == failed
    assert text in reason(d, failed + ": FAIL")
    assert not any(r.startswith("router:") for r in d.reasons)  # nothing after a failed Layer 1


def test_layer1_reports_all_three_then_first_failure_wins():
    d = decide(params=MicroScalpParams(atr1_min_pct=0.7, max_spread_pct=0.01))
    assert d.failed == "L1.atr1"
    assert reason(d, "L1.spread").startswith("L1.spread: FAIL")


def test_spread_against_rolling_median():
    wide_vs_median = SpreadStats(current=0.02, median=0.005, mean=0.005, samples=50)
    d = decide(spread_stats=wide_vs_median)
    assert d.failed == "L1.spread_median" and "4.00x median" in reason(d, "L1.spread_median")
    few = SpreadStats(current=0.02, median=0.005, mean=0.005, samples=5)  # under spread_min_samples
    assert decide(spread_stats=few).failed is None
    assert decide(spread_stats=SpreadStats(0.02, 0.015, 0.015, 50)).failed is None


def test_sell_entry_is_the_bid():
    # mirror the edge scenario around 100: a sweep of the highs -> sell at the bid
    rows = [(200 - o, 200 - l, 200 - h, 200 - c) for o, h, l, c in EDGE_ROWS]
    d = decide(rows, quote=(99.945, 99.955))
    assert d.idea is not None and d.idea.side == "sell" and d.idea.entry == 99.945
    assert d.idea.tp < d.idea.entry < d.idea.sl


def test_data_failures():
    assert decide(EDGE_ROWS[:30]).failed == "data.bars"
    assert "need 60 bars, have 30" in decide(EDGE_ROWS[:30]).reasons[-1]
    bad = list(EDGE_ROWS)
    bad[10] = (100.0, 99.0, 99.5, 100.0)
    assert "high below low" in decide(bad).reasons[-1]
    nan = list(EDGE_ROWS)
    nan[5] = (100.0, float("nan"), 99.9, 100.0)
    assert decide(nan).failed == "data.bars"
    assert decide(quote=(100.06, 100.04)).failed == "data.quote"
    assert decide(quote=(float("nan"), 100.0)).failed == "data.quote"
    assert decide(quote="100").failed == "data.quote"
    flat = [(100.0, 100.0, 100.0, 100.0)] * 60
    assert decide(flat, quote=(100.0, 100.0)).failed == "data.atr"


def test_bars_out_of_order_and_naive_times_are_refused():
    df = frame(EDGE_ROWS)
    shuffled = df.iloc[::-1]
    assert "not strictly increasing" in evaluate(shuffled, QUOTE, None, None, P, "X", NOW).reasons[-1]
    naive = df.tz_localize(None)
    assert "timezone-aware" in evaluate(naive, QUOTE, None, None, P, "X", NOW).reasons[-1]
    with pytest.raises(ValueError, match="aware UTC"):
        evaluate(df, QUOTE, None, None, P, "X", datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="MicroScalpParams"):
        evaluate(df, QUOTE, None, None, {"min_bars": 60}, "X", NOW)


def test_accepts_bars_arrays_and_a_time_column():
    via_frame = decide()
    via_arrays = evaluate(make(EDGE_ROWS), QUOTE, None, None, P, "XAUUSD", NOW)
    with_column = evaluate(frame(EDGE_ROWS).reset_index(), QUOTE, None, None, P, "XAUUSD", NOW)
    assert via_arrays.idea == via_frame.idea == with_column.idea


def test_router_sends_a_confirmed_range_to_the_range_checker():
    rows = flat_base(20) + oscillation(4) + [(99.0, 99.1, 98.6, 99.0), (99.0, 99.2, 98.95, 99.15)]
    p = MicroScalpParams(regime_confirm_bars=1)
    d = decide(rows, quote=(99.145, 99.155), params=p)
    assert d.regime == "range_scalp" and d.strategy == "range_scalp"
    assert d.idea is not None and d.idea.strategy == "range_scalp" and d.idea.tp == pytest.approx(100.0)
    assert "router: range_scalp (range_scalp confidence" in reason(d, "router:")
    # the same market with regime detection off goes to the edge-based fallback
    off = decide(rows, quote=(99.145, 99.155), params=MicroScalpParams(regime_detection_enabled=False))
    assert off.strategy == "edge_based" and "regime detection disabled" in reason(off, "router:")


def test_regime_state_is_threaded_and_idempotent_per_bar():
    rows = flat_base(20) + oscillation(4)
    first = decide(rows, quote=(99.6, 99.6))
    assert first.regime == "none" and first.regime_state.pending == "range_scalp"
    again = decide(rows, quote=(99.6, 99.6), regime_state=first.regime_state)
    assert again.regime_state.pending_count == 1  # same bar: no progress
    next_bar = rows + [(99.0, 99.5, 98.95, 99.4)]
    second = decide(next_bar, quote=(99.6, 99.6), regime_state=first.regime_state)
    assert second.regime == "range_scalp" and second.regime_state.since_s is not None


def test_layer1_failure_still_updates_regime_memory():
    rows = flat_base(20) + oscillation(4)
    d = decide(rows, quote=(99.6, 99.6), params=MicroScalpParams(atr1_min_pct=5))
    assert d.failed == "L1.atr1" and d.regime_state.pending == "range_scalp"


def test_stops_level_from_the_caller_is_respected():
    d = decide(stops_level=0.6)
    assert d.idea.entry - d.idea.sl == pytest.approx(0.63)
    assert d.idea.tp - d.idea.entry >= 0.6


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1.1, 100.0, 2000.0, 40000.0]),
       confirm=st.integers(1, 3))
def test_any_sane_market_gives_a_decision_and_only_valid_ideas(seed, scale, confirm):
    """Robustness: random-walk bars at several price scales never raise, and an idea always has
    SL/TP on the correct sides of an entry equal to the ask (buy) or bid (sell)."""
    rng = np.random.default_rng(seed)
    n = 120
    close = scale * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.r_[close[0], close[:-1]]
    spread_up = scale * np.abs(rng.normal(0, 0.0004, n))
    spread_down = scale * np.abs(rng.normal(0, 0.0004, n))
    rows = [(o, max(o, c) + u, min(o, c) - d, c) for o, c, u, d in zip(open_, close, spread_up, spread_down)]
    params = MicroScalpParams(regime_confirm_bars=confirm, min_score=4.0)
    state = None
    for end in range(100, n + 1, 5):
        last = rows[end - 1][3]
        bid, ask = last * (1 - 0.00003), last * (1 + 0.00003)
        d = evaluate(make(rows[:end], rng.integers(0, 50, end).astype(float)), (bid, ask), None, None, params,
                     "SYM", NOW, state)
        state = d.regime_state
        assert (d.idea is None) == (d.failed is not None)
        if d.idea is not None:
            assert d.idea.entry == (ask if d.idea.side == "buy" else bid)
            sign = 1 if d.idea.side == "buy" else -1
            assert sign * (d.idea.entry - d.idea.sl) > 0 and sign * (d.idea.tp - d.idea.entry) > 0
