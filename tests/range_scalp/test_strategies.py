"""The five strategies (entry rules, confidence formulas) and the applied R:R and stop sizes."""
from __future__ import annotations

import pytest

from engines.range_data import RangeFlow
from engines.range_market import DayLevels, RangeMarket
from engines.range_strategies import (
    Signal, bb_fade, build_setup, find_signals, liquidity_sweep, pdh_pdl_rejection, rsi_bounce, vwap_reversion,
)
from tests.range_scalp.helpers import MONDAY, make_range, market, params, set_last, sine_bars

N = 24 * 12 + 10 * 12
RANGE = make_range(101.5, 98.5, mid=100.0)
DAY = DayLevels(high=101.0, low=99.0, day_start_s=int(MONDAY.timestamp()))
NO_SIGNAL_YET = dict(rsi=50.0, stoch_k=50.0, stoch_d=50.0)


def m(rows=None, flow: RangeFlow | None = None, quote: tuple[float, float] | None = None, **values) -> RangeMarket:
    bars = sine_bars(MONDAY, N)
    if rows:
        bars = set_last(bars, rows)
    base = dict(price=100.0, vwap=100.0, atr_eff=0.4, bb_lower=99.0, bb_middle=100.0, bb_upper=101.0,
                volume_current=100.0, volume_avg=100.0, previous_day=DAY, **NO_SIGNAL_YET)
    base.update(values)
    return market(bars, quote=quote, flow=flow, **base)


# ----------------------------------------------------------------------------------------------
# vwap_reversion
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, side, confidence", [
    ({"price": 99.5, "rsi": 25.0}, "buy", 57),     # 30 + 20*1.25 + 0.5*5
    ({"price": 100.5, "rsi": 75.0}, "sell", 57),
    ({"price": 99.4, "rsi": 25.0, "atr_eff": 5.0}, "buy", 34),  # 0.6 % from VWAP: 30 + 20*0.12 + 2.5
    ({"price": 98.0, "rsi": 10.0}, "buy", 100),   # capped
    ({"price": 99.5, "rsi": 35.0}, None, None),   # RSI not extreme
    ({"price": 100.5, "rsi": 25.0}, None, None),  # oversold but above VWAP
    ({"price": 99.8, "rsi": 25.0}, None, None),   # 0.5 ATRe and 0.2 %: not stretched
    ({"price": 99.5, "rsi": 25.0, "atr_eff": 5.0}, None, None),  # 0.1 ATRe and exactly 0.5 %: not above
])
def test_vwap_reversion(values: dict, side: str | None, confidence: int | None) -> None:
    signal = vwap_reversion(m(**values), RANGE, params())
    if side is None:
        assert signal is None
    else:
        assert signal is not None and (signal.side, signal.confidence) == (side, confidence)


# ----------------------------------------------------------------------------------------------
# bb_fade
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, side, confidence", [
    ({"price": 99.05, "rsi": 20.0, "volume_current": 80.0}, "buy", 64),  # 40 + 0.4*10 + 20 (volume drying up)
    ({"price": 99.05, "rsi": 20.0}, "buy", 44),
    ({"price": 101.05, "rsi": 80.0}, "sell", 44),
    ({"price": 98.8, "rsi": 20.0}, None, None),   # 0.2 % from the band: not at it
    ({"price": 99.05, "rsi": 40.0}, None, None),  # at the band but RSI not oversold
    ({"price": 99.05, "rsi": 20.0, "bb_lower": float("nan")}, None, None),
])
def test_bb_fade(values: dict, side: str | None, confidence: int | None) -> None:
    signal = bb_fade(m(**values), RANGE, params())
    if side is None:
        assert signal is None
    else:
        assert signal is not None and (signal.side, signal.confidence) == (side, confidence)


# ----------------------------------------------------------------------------------------------
# pdh_pdl_rejection
# ----------------------------------------------------------------------------------------------

SELL_REJECTION = [(101.0, 101.2, 100.9, 101.0), (100.95, 101.05, 100.85, 100.9)]  # wick 0.10, body 0.05
BUY_REJECTION = [(99.0, 99.1, 98.8, 99.0), (99.05, 99.15, 98.95, 99.1)]


@pytest.mark.parametrize("rows, range_high, side, confidence", [
    (SELL_REJECTION, 101.5, "sell", 90),  # 50 + 10*min(2, 3) + 20
    (BUY_REJECTION, 101.5, "buy", 90),
    (SELL_REJECTION, 100.8, None, None),  # closed above the range high: rejected
    ([(101.0, 101.05, 100.9, 101.0), SELL_REJECTION[1]], 101.5, None, None),  # pierced < 0.1 %
    ([SELL_REJECTION[0], (100.9, 101.05, 100.85, 100.9)], 101.5, "sell", 70),  # no body
    ([SELL_REJECTION[0], (100.45, 101.0, 100.4, 100.4)], 101.5, "sell", 100),   # wick/body 11: capped at 3
    ([SELL_REJECTION[0], (100.9, 100.98, 100.85, 100.95)], 101.5, None, None),  # wick 0.03 < 1.5 x 0.05
    ([(100.0, 101.2, 98.8, 100.0), (100.0, 100.3, 99.7, 100.05)], 101.5, "buy", 100),  # both: buy wins
])
def test_pdh_pdl_rejection(rows, range_high: float, side: str | None, confidence: int | None) -> None:
    signal = pdh_pdl_rejection(m(rows), make_range(range_high, 98.5, mid=100.0), params())
    if side is None:
        assert signal is None
    else:
        assert signal is not None and (signal.side, signal.confidence) == (side, confidence)


def test_pdh_pdl_rejection_needs_previous_day_levels() -> None:
    assert pdh_pdl_rejection(m(SELL_REJECTION, previous_day=None), RANGE, params()) is None


# ----------------------------------------------------------------------------------------------
# rsi_bounce
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, side, confidence", [
    ({"rsi": 25.0, "stoch_k": 10.0, "stoch_d": 15.0}, "buy", 68),   # 60 + 0.8*5 + 0.4*(20-10)
    ({"rsi": 75.0, "stoch_k": 90.0, "stoch_d": 85.0}, "sell", 66),  # 60 + 4 + 0.4*5
    ({"rsi": 25.0, "stoch_k": 25.0, "stoch_d": 15.0}, None, None),
    ({"rsi": 35.0, "stoch_k": 10.0, "stoch_d": 10.0}, None, None),
    ({"rsi": 25.0, "stoch_k": float("nan"), "stoch_d": 10.0}, None, None),
])
def test_rsi_bounce(values: dict, side: str | None, confidence: int | None) -> None:
    signal = rsi_bounce(m(**values), RANGE, params())
    if side is None:
        assert signal is None
    else:
        assert signal is not None and (signal.side, signal.confidence) == (side, confidence)


# ----------------------------------------------------------------------------------------------
# liquidity_sweep
# ----------------------------------------------------------------------------------------------

SWEEP_HIGH = [(101.0, 101.3, 100.95, 101.2), (101.2, 101.25, 100.8, 100.85)]  # bearish close back below PDH
SWEEP_LOW = [(99.0, 99.05, 98.7, 98.8), (98.8, 99.2, 98.75, 99.1)]


@pytest.mark.parametrize("rows, flow, side, confidence", [
    (SWEEP_HIGH, None, "sell", 80),
    (SWEEP_HIGH, RangeFlow(signal="BEARISH"), "sell", 100),
    (SWEEP_HIGH, RangeFlow(signal="STRONG_SELL"), "sell", 100),
    (SWEEP_HIGH, RangeFlow(signal="BULLISH"), "sell", 80),
    (SWEEP_LOW, RangeFlow(signal="STRONG_BUY"), "buy", 100),
    ([(101.0, 101.15, 100.95, 101.1), SWEEP_HIGH[1]], None, None, None),  # pierced only 0.15 %
    ([SWEEP_HIGH[0], (100.85, 100.96, 100.8, 100.95)], None, None, None),  # bullish bar, no wick
    ([SWEEP_HIGH[0], (100.85, 101.2, 100.8, 100.95)], None, "sell", 80),   # bullish, but a long wick
    ([SWEEP_HIGH[0], (101.2, 101.25, 101.0, 101.05)], None, None, None),   # closed above PDH
])
def test_liquidity_sweep(rows, flow, side: str | None, confidence: int | None) -> None:
    signal = liquidity_sweep(m(rows, flow=flow), RANGE, params())
    if side is None:
        assert signal is None
    else:
        assert signal is not None and (signal.side, signal.confidence) == (side, confidence)


def test_find_signals_respects_the_enabled_switch() -> None:
    market_ = m(rsi=25.0, stoch_k=10.0, stoch_d=10.0, price=99.5)
    names = [s.strategy for s in find_signals(market_, RANGE, params())]
    assert names == ["vwap_reversion", "rsi_bounce"]
    off = params(strategies={"rsi_bounce": {"enabled": False}})
    assert [s.strategy for s in find_signals(market_, RANGE, off)] == ["vwap_reversion"]


# ----------------------------------------------------------------------------------------------
# Stops and targets: the per-strategy table and the session adjustment, applied
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy, session, stop_mult, rr", [
    ("vwap_reversion", "asian", 0.8, 1.2),         # never session-adjusted
    ("vwap_reversion", "london", 0.8, 1.2),
    ("bb_fade", "london", 0.9, 1.5 * 1.15),        # 1.725 under the caps
    ("bb_fade", "ny", 0.9, 1.5),
    ("pdh_pdl_rejection", "london", 0.9, 2.0),     # 1.8 * 1.15 = 2.07, capped by London's 2.0
    ("pdh_pdl_rejection", "ny", 0.9, 1.8),
    ("rsi_bounce", "asian", 0.7 * 0.85, 1.08),     # 1.2 * 0.9, Asian stop tightened
    ("rsi_bounce", "late_ny", 0.7, 1.2),
    ("liquidity_sweep", "london", 1.0, 2.0),
])
def test_setups_apply_their_own_rr_and_stop(strategy: str, session: str, stop_mult: float, rr: float) -> None:
    market_ = m(session_key=session, atr_eff=0.5, quote=(99.98, 100.02))
    for side in ("buy", "sell"):
        setup = build_setup(Signal(strategy, side, 80, "test"), market_, params())
        assert not isinstance(setup, str), setup
        assert setup.rr == pytest.approx(rr)
        assert setup.risk == pytest.approx(0.5 * stop_mult)
        if side == "buy":
            assert setup.entry == 100.02  # the ask
            assert setup.sl == pytest.approx(100.02 - 0.5 * stop_mult)
            assert setup.tp == pytest.approx(100.02 + 0.5 * stop_mult * rr)
            assert setup.sl < setup.entry < setup.tp
        else:
            assert setup.entry == 99.98  # the bid
            assert setup.sl == pytest.approx(99.98 + 0.5 * stop_mult)
            assert setup.tp == pytest.approx(99.98 - 0.5 * stop_mult * rr)
            assert setup.tp < setup.entry < setup.sl


@pytest.mark.parametrize("strategy, session, reason", [
    ("pdh_pdl_rejection", "asian", "pdh_pdl_rejection: R:R 1.20 in session 'asian' is below the strategy minimum 1.5"),
    ("bb_fade", "asian", "bb_fade: R:R 1.20 in session 'asian' is below the strategy minimum 1.3"),
    ("liquidity_sweep", "ny", "liquidity_sweep: R:R 1.80 in session 'ny' is below the strategy minimum 2"),
    ("rsi_bounce", "overlap", "rsi_bounce: session 'overlap' is disabled"),
])
def test_setups_below_the_strategy_minimum_are_skipped(strategy: str, session: str, reason: str) -> None:
    assert build_setup(Signal(strategy, "buy", 80, "t"), m(session_key=session), params()) == reason


def test_no_atr_no_setup() -> None:
    assert build_setup(Signal("bb_fade", "buy", 80, "t"), m(session_key="ny", atr_eff=0.0), params()) == \
        "bb_fade: no usable ATR"
