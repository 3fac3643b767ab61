"""Risk filters: data quality, weighted 3-confluence, validity, session, activity, ADX, edge."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest

from engines.range_data import Bars, RangeFlow
from engines.range_filters import (
    Check, adx_gate, confluence, data_quality, edge_check, range_validity, rejection_wick, session_filter, trade_activity,
)
from engines.range_market import RangeMarket, read_inputs
from engines.range_metrics import BreakOfStructure
from tests.range_scalp.helpers import (
    MONDAY, close_time, make_range, market, params, set_last, sine_bars, utc,
)

N = 24 * 12 + 10 * 12  # Monday 00:00 .. Tuesday 10:00


def at(m: RangeMarket, moment: datetime, key: str) -> RangeMarket:
    return replace(m, inputs=replace(m.inputs, now_s=moment.timestamp()), session_key=key)


# ----------------------------------------------------------------------------------------------
# The Check itself
# ----------------------------------------------------------------------------------------------

def test_a_check_formatted_when_read_is_the_eager_check() -> None:
    """A reason handed over as a function and its arguments reads, compares, hashes and prints
    as the formatted text; it is formatted at each read, never before."""
    calls: list[float] = []

    def text_of(adx: float) -> str:
        calls.append(adx)
        return f"H1 ADX {adx:.1f}"

    lazy, eager = Check("adx", True, text_of, (12.34,)), Check("adx", True, "H1 ADX 12.3")
    assert calls == []
    assert lazy.reason == eager.reason == "H1 ADX 12.3" and lazy.line() == eager.line() == "adx: pass: H1 ADX 12.3"
    assert lazy == eager and hash(lazy) == hash(eager) and repr(lazy) == repr(eager)
    assert repr(eager) == "Check(name='adx', passed=True, reason='H1 ADX 12.3')"
    assert hash(lazy) == hash(("adx", True, "H1 ADX 12.3"))  # the frozen dataclass's hash: its fields' tuple
    assert lazy != Check("adx", False, "H1 ADX 12.3") and lazy != Check("adx", True, "H1 ADX 12.4")
    assert lazy != ("adx", True, "H1 ADX 12.3")


# ----------------------------------------------------------------------------------------------
# Data quality
# ----------------------------------------------------------------------------------------------

def quality(bars: Bars, now: datetime, **data: object):
    p = params(data=data) if data else params()
    return data_quality(read_inputs(bars, None, (100.0, 100.0), p, "TEST", now), p)


def test_fresh_data_passes() -> None:
    bars = sine_bars(MONDAY, N)
    check = quality(bars, close_time(bars, 20))
    assert check.passed and check.reason == "408 closed M5 bars, last closed 0.3 min ago"


def test_too_few_bars() -> None:
    bars = sine_bars(MONDAY, 30)
    check = quality(bars, close_time(bars))
    assert not check.passed and check.reason == "30 closed M5 bars, need 50"


def test_the_forming_bar_is_not_counted() -> None:
    bars = sine_bars(MONDAY, 51)
    mid_bar = close_time(bars, -150)  # halfway through the last bar
    check = quality(bars, mid_bar)
    assert check.passed and check.reason.startswith("50 closed M5 bars, last closed 2.5 min ago")


def test_stale_data_and_market_closed() -> None:
    bars = sine_bars(MONDAY, N)
    stale = quality(bars, close_time(bars, 600))
    assert not stale.passed and stale.reason.startswith("stale data: last M5 bar closed 10.0 min ago")
    weekend = quality(bars, close_time(bars, 7 * 3600))
    assert not weekend.passed and weekend.reason.startswith("market closed: last M5 bar closed 420.0 min ago")
    crypto = quality(bars, close_time(bars, 7 * 3600), always_open=True)
    assert not crypto.passed and crypto.reason.startswith("stale data")
    lenient = quality(bars, close_time(bars, 600), max_bar_age_minutes=15)
    assert lenient.passed


def test_bad_values_fail_data_quality() -> None:
    bars = sine_bars(MONDAY, N)
    close = bars.close.copy()
    close[-3] = np.nan
    broken = Bars(bars.time, bars.open, bars.high, bars.low, close, bars.volume, bars.period_s)
    check = quality(broken, close_time(bars))
    assert not check.passed and check.reason == "M5 bars: NaN or infinite price"


# ----------------------------------------------------------------------------------------------
# Weighted 3-confluence
# ----------------------------------------------------------------------------------------------

def conf_market(price: float, rsi: float = 25.0, atr: float = 0.4, flow: RangeFlow | None = None) -> RangeMarket:
    return market(sine_bars(MONDAY, N), flow=flow, price=price, atr_eff=atr, rsi=rsi)


@pytest.mark.parametrize("up, down, price, rsi, total, passed", [
    (2, 1, 99.5, 25, 100, True),    # 3 touches, 1.25 ATRe from the mid, RSI extreme
    (1, 1, 99.5, 25, 88, True),     # 2 touches: int(40 * 0.7) = 28
    (2, 1, 99.8, 25, 86, True),     # 0.5 ATRe from the mid: int(35 * 0.6) = 21
    (2, 1, 99.5, 50, 75, False),    # no confirmation: confirmation is mandatory
    (1, 1, 99.8, 75, 74, False),    # 28 + 21 + 25
    (1, 0, 99.5, 25, 60, False),    # 1 touch: no structure points
    (2, 1, 99.9, 25, 65, False),    # 0.25 ATRe from the mid: no location points
])
def test_confluence_worked_totals(up: int, down: int, price: float, rsi: float, total: float, passed: bool) -> None:
    result = confluence(make_range(101.0, 99.0, mid=100.0, up=up, down=down), conf_market(price, rsi), params())
    assert result.score == total and result.passed is passed
    assert result.structure + result.location + result.confirmation == total


def test_location_from_a_gap_zone_or_the_edge_even_close_to_the_mid() -> None:
    rng = make_range(101.0, 99.0, mid=100.0, up=2, down=1)  # zones 99.0-99.3 and 100.7-101.0
    atr = 2.0  # full distance 1.5, partial 0.75, "at the edge" within 0.2
    in_zone = confluence(rng, conf_market(99.25, atr=atr), params())  # 0.375 ATRe: partial, but in the zone
    assert in_zone.location == 35
    beyond_high = confluence(rng, conf_market(101.03, atr=atr), params())  # outside the zone, at the edge
    assert beyond_high.location == 35
    partial = confluence(rng, conf_market(101.3, atr=atr), params())  # 0.65 ATRe, not at the edge
    assert partial.location == 21
    centre = confluence(rng, conf_market(100.3, atr=atr), params())
    assert centre.location == 0


def test_tape_pressure_confirms_only_when_allowed() -> None:
    flow = RangeFlow(signal="BEARISH")
    rng = make_range(101.0, 99.0, mid=100.0, up=2, down=1)
    result = confluence(rng, conf_market(99.5, rsi=50, flow=flow), params())
    assert result.signals == ("tape_pressure",) and result.score == 100
    limited = params(confluence={"allowed_signals": ["rsi_extreme", "rejection_wick"]})
    assert confluence(rng, conf_market(99.5, rsi=50, flow=flow), limited).score == 75
    assert confluence(rng, conf_market(99.5, rsi=50, flow=RangeFlow()), params()).signals == ()


def test_rejection_wick_at_either_edge() -> None:
    bars = set_last(sine_bars(MONDAY, N), [(100.5, 101.02, 100.45, 100.55)])  # wick 0.47, body 0.05
    rng = make_range(101.0, 99.0, mid=100.0, up=2, down=1)
    m = market(bars, atr_eff=0.4, rsi=50.0, price=100.55)
    assert rejection_wick(rng, m, params()) == "upper"
    result = confluence(rng, m, params())
    assert result.signals == ("rejection_wick",) and result.confirmation == 25
    low_bars = set_last(sine_bars(MONDAY, N), [(99.5, 99.55, 98.98, 99.45)])  # lower wick 0.47, body 0.05
    assert rejection_wick(rng, market(low_bars, atr_eff=0.4), params()) == "lower"
    closed_out = set_last(sine_bars(MONDAY, N), [(100.9, 101.3, 100.85, 101.05)])  # closed above the high
    assert rejection_wick(rng, market(closed_out, atr_eff=0.4), params()) is None
    far = set_last(sine_bars(MONDAY, N), [(100.5, 100.8, 100.45, 100.55)])  # wick tip 0.2 below the high
    assert rejection_wick(rng, market(far, atr_eff=0.4), params()) is None  # > 0.15 ATRe away


def test_confluence_not_required_still_reports_the_score() -> None:
    rng = make_range(101.0, 99.0, mid=100.0, up=2, down=1)
    result = confluence(rng, conf_market(99.5, rsi=50), params(confluence={"required": False}))
    assert result.passed and result.score == 75
    assert "(not required)" in result.check(params(confluence={"required": False})).reason


# ----------------------------------------------------------------------------------------------
# Validity, session, ADX
# ----------------------------------------------------------------------------------------------

def test_range_validity() -> None:
    rng = make_range(101.0, 99.0, up=1, down=3)
    calm = market(sine_bars(MONDAY, N), vwap_momentum=0.0, bb_expansion_pct=0.0, bos=None)
    check, report = range_validity(rng, calm, params())
    assert check.passed and check.reason == "intact" and report.signals == ()
    broken = replace(calm, vwap_momentum=0.3, bb_expansion_pct=70.0)
    check, report = range_validity(rng, broken, params())
    assert not check.passed and check.reason.startswith("invalidated: VWAP momentum")
    bos = replace(calm, bos=BreakOfStructure("bullish", 100.8, 101.2))
    check, _ = range_validity(rng, bos, params())
    assert not check.passed and check.reason == "integrity: M15 bullish break of 100.8 inside the range"
    check, _ = range_validity(rng, calm, params(checks={"require_validated_range": True}))
    assert not check.passed and check.reason == "not validated: touches 1/3, need 2 per side"
    one_signal = replace(calm, vwap_momentum=0.3)
    check, _ = range_validity(rng, one_signal, params())
    assert check.passed and check.reason == "intact (signals: vwap_momentum_high)"


@pytest.mark.parametrize("moment, key, passed, reason", [
    (utc(2026, 6, 2, 10, 0), "london", True, "session 'london'"),
    (utc(2026, 6, 2, 8, 10), "london", False, "blocked window london_open_buffer 08:00-08:30 UTC"),
    (utc(2026, 6, 2, 12, 30), "london", False, "blocked window london_ny_overlap 12:00-15:00 UTC"),
    (utc(2026, 6, 2, 15, 30), "overlap", False, "session 'overlap' is disabled for range trades"),
    (utc(2026, 6, 2, 21, 0), "late_ny", True, "session 'late_ny'"),
])
def test_session_filter(moment: datetime, key: str, passed: bool, reason: str) -> None:
    check = session_filter(at(market(sine_bars(MONDAY, N)), moment, key), params())
    assert (check.passed, check.reason) == (passed, reason)


@pytest.mark.parametrize("adx, passed, regime, text", [
    (30.0, False, "normal", "H1 ADX 30.0 > 25: trending, no range scalps"),
    (25.0, True, "normal", "H1 ADX 25.0 (normal weights)"),
    (14.9, True, "low_adx", "H1 ADX 14.9 (low_adx weights)"),
    (float("nan"), False, "normal", "H1 ADX unavailable"),
])
def test_adx_gate(adx: float, passed: bool, regime: str, text: str) -> None:
    check, got = adx_gate(market(sine_bars(MONDAY, N), adx=adx), params())
    assert check.passed is passed and got == regime and check.reason.startswith(text)


# ----------------------------------------------------------------------------------------------
# Trade activity
# ----------------------------------------------------------------------------------------------

def activity_market(**values: object) -> RangeMarket:
    base = dict(volume_current=100.0, volume_avg=100.0, price=99.5, vwap=100.0, atr_eff=0.4)
    base.update(values)
    return market(sine_bars(MONDAY, N), **base)


@pytest.mark.parametrize("values, last_entry_min, today, news, reason", [
    ({}, None, 0, None, None),
    ({"volume_current": 40.0}, None, 0, None, "volume 0.40 x the 1 h mean < 0.5"),
    ({"price": 99.9}, None, 0, None, "price 0.25 ATRe from VWAP < 0.5"),
    ({}, 10.0, 0, None, "last range entry 10.0 min ago (< 15)"),
    ({}, 20.0, 0, None, None),
    ({}, None, 10, None, "10 range entries today (max 10)"),
    ({}, None, 0, "US CPI 12:30 UTC", "news blackout: US CPI 12:30 UTC"),
    ({"volume_current": 0.0, "volume_avg": 0.0}, None, 0, None, None),  # no volume data: test skipped
])
def test_trade_activity(values: dict, last_entry_min: float | None, today: int, news: str | None,
                        reason: str | None) -> None:
    m = activity_market(**values)
    last = None if last_entry_min is None else m.now_s - last_entry_min * 60
    check = trade_activity(m, params(), last, today, news)
    assert check.passed is (reason is None)
    if reason:
        assert check.reason == reason


# ----------------------------------------------------------------------------------------------
# Entry edge
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("side, price, ok", [
    ("buy", 99.6, True),     # 1.0 ATRe below the mid
    ("buy", 99.8, False),    # only 0.5 ATRe below, above the lower zone (99.3)
    ("buy", 99.25, True),    # in the lower gap zone
    ("buy", 100.8, False),   # the wrong edge
    ("sell", 100.4, True),
    ("sell", 100.2, False),
    ("sell", 101.03, True),  # just beyond the high: at the edge
])
def test_edge_check_is_side_aware(side: str, price: float, ok: bool) -> None:
    rng = make_range(101.0, 99.0, mid=100.0)
    reason = edge_check(side, rng, market(sine_bars(MONDAY, N), price=price, atr_eff=0.4), params())
    assert (reason is None) is ok
    if not ok:
        assert reason is not None and reason.startswith(f"{side} needs price 0.75 ATRe")


def test_edge_at_the_range_extreme_with_a_large_atr() -> None:
    rng = make_range(101.0, 99.0, mid=100.0)
    m = market(sine_bars(MONDAY, N), price=98.95, atr_eff=1.0)  # below the low, 1.05 ATRe from the mid
    assert edge_check("buy", rng, m, params()) is None
    assert edge_check("buy", rng, replace(m, price=98.97, atr_eff=20.0), params()) is None  # at the low edge
