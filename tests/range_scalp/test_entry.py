"""evaluate_entry end to end on a constructed market: a calm two-day range, then a sharp drop
to its lower part on Wednesday 10:00 UTC (London). Worked out: every gate passes, three buy
signals fire, and vwap_reversion wins on its low-ADX weight."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from engines.range_data import H1, Bars, RangeFlow, aggregate
from engines.range_exits import ExitRecord, RangeHistory
from engines.range_scalp import evaluate_entry
from tests.range_scalp.helpers import MONDAY, close_time, drop_at_end, params, sine_bars

N = 2 * 288 + 120  # Monday 00:00 .. Wednesday 10:00
SPREAD = 0.01


def scenario(n: int = N) -> Bars:
    return drop_at_end(sine_bars(MONDAY, n), [-0.08, -0.10, -0.10, -0.06])


def quote(bars: Bars) -> tuple[float, float]:
    last = float(bars.close[-1])
    return last, last + SPREAD


def evaluate(bars: Bars, now: datetime | None = None, **kwargs):
    return evaluate_entry(bars, None, quote(bars), params(), "TEST", now or close_time(bars), **kwargs)


def independent_atr_eff(bars: Bars, price: float) -> float:
    h, l, c = bars.high, bars.low, bars.close
    tr = np.maximum(h[1:] - l[1:], np.maximum(abs(h[1:] - c[:-1]), abs(l[1:] - c[:-1])))
    atr = tr[-14:].mean()
    window = c[-20:]
    width = 4 * window.std() / window.mean()  # (upper - lower) / middle, 2 sigma bands
    return max(atr, width * price * 0.5)


def test_the_worked_scenario_produces_the_expected_idea() -> None:
    bars = scenario()
    decision = evaluate(bars)
    assert decision.failed is None and decision.idea is not None, decision.reasons
    idea = decision.idea
    assert [c.name for c in decision.checks] == [
        "data_quality", "range", "adx", "range_validity", "false_range", "confluence", "session", "activity",
        "reentry"]
    assert all(c.passed for c in decision.checks)
    assert [(c.strategy, c.side) for c in decision.candidates] == [
        ("vwap_reversion", "buy"), ("bb_fade", "buy"), ("rsi_bounce", "buy")]
    # rsi_bounce has the highest total, but in a low-ADX market vwap_reversion's weight wins
    assert max(decision.candidates, key=lambda c: c.total).strategy == "rsi_bounce"
    assert decision.strategy == idea.strategy == "vwap_reversion" and idea.side == "buy"
    assert decision.idea.meta["adx_regime"] == "low_adx"
    bid, ask = quote(bars)
    atr_eff = independent_atr_eff(bars, (bid + ask) / 2)
    assert idea.entry == ask
    assert idea.sl == pytest.approx(ask - 0.8 * atr_eff, rel=1e-9)          # vwap_reversion stop 0.8 ATRe
    assert idea.tp == pytest.approx(ask + 1.2 * 0.8 * atr_eff, rel=1e-9)    # 1.2 R, no session adjustment
    assert idea.sl < idea.entry < idea.tp
    assert decision.score == idea.meta["score"] == sum(idea.meta["components"].values())
    assert idea.meta["session"] == "london" and idea.meta["rr"] == pytest.approx(1.2)
    assert decision.range is not None and idea.meta["range"] == decision.range.to_dict()
    assert decision.bar_time == int(bars.time[-1])
    assert "buy vwap_reversion" in decision.summary()


def test_the_forming_bar_is_ignored() -> None:
    bars = scenario()
    forming = Bars(np.r_[bars.time, bars.time[-1] + 300], np.r_[bars.open, 90.0], np.r_[bars.high, 90.0],
                   np.r_[bars.low, 80.0], np.r_[bars.close, 85.0], np.r_[bars.volume, 1.0], bars.period_s)
    decision = evaluate_entry(forming, None, quote(bars), params(), "TEST", close_time(bars, 60))
    assert decision.bar_time == int(bars.time[-1])
    assert decision.idea is not None and decision.idea.strategy == "vwap_reversion"


def test_dataframe_input_and_given_h1_bars_give_the_same_decision() -> None:
    bars = scenario()
    frame = pd.DataFrame({"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
                          "tick_volume": bars.volume},
                         index=pd.DatetimeIndex(pd.to_datetime(bars.time, unit="s", utc=True), name="time"))
    now = close_time(bars)
    h1 = aggregate(bars, H1, now.timestamp())
    reference = evaluate(bars)
    for variant in (evaluate_entry(frame, None, quote(bars), params(), "TEST", now),
                    evaluate_entry(bars, h1, quote(bars), params(), "TEST", now)):
        assert variant.idea == reference.idea and variant.reasons == reference.reasons


def test_spacing_daily_cap_news_and_reentry_block_the_same_setup() -> None:
    bars = scenario()
    now = close_time(bars)
    spaced = evaluate(bars, history=RangeHistory(last_entry_at=now - timedelta(minutes=5)))
    assert spaced.idea is None and spaced.failed == "activity"
    assert spaced.candidates  # the setup is still reported for a signal-only monitor
    capped = evaluate(bars, history=RangeHistory(entries_today=10))
    assert capped.failed == "activity" and "10 range entries today" in capped.summary()
    news = evaluate(bars, news_blackout="FOMC 18:00 UTC")
    assert news.failed == "activity" and "news blackout: FOMC 18:00 UTC" in news.summary()
    reference = evaluate(bars)
    assert reference.range is not None
    invalidated = RangeHistory(last_exit=ExitRecord("candles_outside_range", now - timedelta(hours=1),
                                                    reference.range))
    blocked = evaluate(bars, history=invalidated)
    assert blocked.failed == "reentry" and "waiting for a new range" in blocked.summary()
    cooled = RangeHistory(last_exit=ExitRecord("stagnation_energy_loss", now - timedelta(minutes=30),
                                               reference.range))
    assert evaluate(bars, history=cooled).idea is not None


def test_stale_data_stops_at_the_first_gate() -> None:
    bars = scenario()
    decision = evaluate(bars, now=close_time(bars, 1800))
    assert decision.failed == "data_quality" and decision.idea is None and len(decision.checks) == 1
    assert decision.summary().startswith("TEST: no trade (data_quality: stale data: last M5 bar closed 30.0 min ago")


def test_a_trending_market_is_refused_by_the_adx_gate() -> None:
    times = int(MONDAY.timestamp()) + 300 * np.arange(N)
    close = 100 + 0.004 * np.arange(N) + 0.02 * np.sin(np.arange(N))  # +0.4 % per 100 bars
    open_ = np.r_[100.0, close[:-1]]
    bars = Bars(times, open_, np.maximum(open_, close) + 0.01, np.minimum(open_, close) - 0.01, close,
                np.full(N, 100.0), 300)
    decision = evaluate_entry(bars, None, quote(bars), params(detection={"max_width_pct": 50.0,
                                                                         "max_width_atr": 1000.0}),
                              "TEST", close_time(bars))
    adx = next(c for c in decision.checks if c.name == "adx")
    assert not adx.passed and "trending, no range scalps" in adx.reason
    assert decision.idea is None


def test_a_blocked_session_stops_an_otherwise_valid_setup() -> None:
    bars = scenario()
    decision = evaluate_entry(bars, None, quote(bars), params(sessions={"blocked_windows": [
        {"name": "desk_closed", "start": "09:00", "end": "11:00"}]}), "TEST", close_time(bars))
    assert decision.failed == "session" and decision.idea is None
    assert "blocked window desk_closed 09:00-11:00 UTC" in decision.summary()


def test_no_signal_is_reported_as_such() -> None:
    bars = sine_bars(MONDAY, N)  # the calm range without the drop: price at the mid, RSI neutral
    decision = evaluate(bars)
    assert decision.idea is None and decision.failed == "confluence"
    assert decision.summary() == "TEST: no trade (confluence: 40 < 80: structure 40 + location 0 + confirmation 0)"
    assert not decision.candidates
    lenient = evaluate_entry(bars, None, quote(bars), params(
        confluence={"required": False}, checks={"trade_activity": False}), "TEST", close_time(bars))
    assert lenient.failed == "strategies" and "no strategy fired" in lenient.reasons[-1]


def test_unreadable_inputs_raise() -> None:
    bars = scenario()
    with pytest.raises(ValueError, match="naive datetime"):
        evaluate_entry(bars, None, quote(bars), params(), "TEST", datetime(2026, 6, 3, 10))
    with pytest.raises(ValueError, match="bid <= ask"):
        evaluate_entry(bars, None, (100.0, 99.0), params(), "TEST", close_time(bars))
    assert close_time(bars).tzinfo is timezone.utc


def test_order_flow_raises_the_score_and_the_engine_is_deterministic() -> None:
    bars = scenario()
    plain = evaluate(bars)
    again = evaluate(bars)
    assert plain.idea == again.idea and plain.reasons == again.reasons  # pure: same input, same output
    confirmed = evaluate(bars, flow=RangeFlow(signal="BULLISH", pressure_side="BUY"))
    assert plain.idea is not None and confirmed.idea is not None
    assert plain.idea.meta["components"]["flow"] == 6  # no flow given: neutral
    assert confirmed.idea.meta["components"]["flow"] == 20
    assert confirmed.score == plain.score + 14
