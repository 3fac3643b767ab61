"""The range engine's own indicators and derived metrics, against independent references."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engines.range_indicators import candle_cvd, ema_direction, mean_atr, rolling_vwap, stochastic
from engines.range_metrics import (
    bb_width_expansion_pct, body_expansion, break_of_structure, effective_atr, expansion_state,
    step_divergence, vwap_momentum,
)

RNG = np.random.default_rng(7)


def random_bars(n: int = 120):
    close = 100 + np.cumsum(RNG.normal(0, 0.2, n))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) + RNG.uniform(0, 0.2, n)
    low = np.minimum(open_, close) - RNG.uniform(0, 0.2, n)
    volume = RNG.integers(50, 500, n).astype(float)
    return open_, high, low, close, volume


def test_mean_atr_is_the_simple_mean_of_true_range() -> None:
    o, h, l, c, v = random_bars()
    prev = pd.Series(c).shift(1)
    tr = pd.concat([pd.Series(h - l), (pd.Series(h) - prev).abs(), (pd.Series(l) - prev).abs()], axis=1).max(axis=1)
    expected = tr.rolling(14).mean().to_numpy()
    np.testing.assert_allclose(mean_atr(h, l, c, 14), expected, rtol=1e-12, equal_nan=True)


def test_stochastic_against_pandas() -> None:
    o, h, l, c, v = random_bars()
    hh = pd.Series(h).rolling(14).max()
    ll = pd.Series(l).rolling(14).min()
    k_ref = 100 * (pd.Series(c) - ll) / (hh - ll)
    d_ref = k_ref.rolling(3).mean()
    k, d = stochastic(h, l, c, 14, 3)
    np.testing.assert_allclose(k, k_ref.to_numpy(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(d, d_ref.to_numpy(), rtol=1e-12, equal_nan=True)
    flat_k, _ = stochastic(np.ones(20), np.ones(20), np.ones(20), 14, 3)
    assert flat_k[-1] == 50.0


def test_rolling_vwap_against_pandas_and_without_volume() -> None:
    o, h, l, c, v = random_bars()
    tp = (h + l + c) / 3
    ref = (pd.Series(tp * v).rolling(20).sum() / pd.Series(v).rolling(20).sum()).to_numpy()
    np.testing.assert_allclose(rolling_vwap(h, l, c, v, 20), ref, rtol=1e-12, equal_nan=True)
    no_volume = rolling_vwap(h, l, c, np.zeros_like(v), 20)
    assert no_volume[-1] == pytest.approx(tp[-20:].mean())


def test_candle_cvd_signs_volume_by_bar_direction() -> None:
    cvd = candle_cvd(np.array([1.0, 2.0, 2.0, 3.0]), np.array([2.0, 1.0, 2.0, 5.0]), np.array([10, 4, 7, 1.0]))
    assert cvd.tolist() == [10, 6, 6, 7]


def test_ema_direction() -> None:
    rising = np.linspace(100, 110, 60)
    assert ema_direction(rising, 20, 3) == 1
    assert ema_direction(rising[::-1], 20, 3) == -1
    assert ema_direction(np.full(60, 5.0), 20, 3) == 0
    assert ema_direction(rising[:10], 20, 3) == 0  # too short


def test_effective_atr_uses_band_width_as_a_fraction_of_price() -> None:
    # width 0.004 of price 2000 -> 8 in price units; half of it (multiplier 0.5) = 4 > ATR 3
    assert effective_atr(3.0, 0.004, 2000.0, 0.5) == pytest.approx(4.0)
    assert effective_atr(5.0, 0.004, 2000.0, 0.5) == 5.0
    assert effective_atr(3.0, 0.004, 2000.0, 0.5, enabled=False) == 3.0
    assert effective_atr(3.0, float("nan"), 2000.0, 0.5) == 3.0


def test_vwap_momentum_keeps_the_sign() -> None:
    assert vwap_momentum(np.array([100.0, 100.1, 100.2, 100.3, 100.4]), 0.5) == pytest.approx(0.2)
    assert vwap_momentum(np.array([100.4, 100.0]), 0.5) == pytest.approx(-0.8)
    assert vwap_momentum(np.array([100.0]), 0.5) == 0.0
    assert vwap_momentum(np.array([100.0, 101.0]), 0.0) == 0.0


def test_bb_width_expansion_against_a_direct_computation() -> None:
    close = np.r_[100 + 0.05 * np.sin(np.arange(50)), 100 + 0.6 * np.sin(np.arange(20))]  # 70 closes
    n = len(close)

    def width_pct(window: np.ndarray) -> float:
        return 4 * window.std() / window.mean() * 100

    current = width_pct(close[-20:])
    historical = np.mean([width_pct(close[i - 20:i]) for i in range(max(20, n - 40), n - 21 + 1)])
    expected = (current - historical) / historical * 100
    assert bb_width_expansion_pct(close, 20, 60) == pytest.approx(expected, rel=1e-12)
    assert expected > 50  # the quiet-then-wild series expands
    assert bb_width_expansion_pct(close[:59], 20, 60) is None


def test_expansion_state() -> None:
    calm = 100 + 0.1 * np.sin(np.arange(80) / 2)
    wild = np.r_[calm[:60], 100 + 2.0 * np.sin(np.arange(20) / 2)]
    high, low = calm + 0.05, calm - 0.05
    assert expansion_state(high, low, calm) == "stable"
    assert expansion_state(np.maximum(wild, wild) + 0.05, wild - 0.05, wild) == "expanding"
    shrinking = np.r_[100 + 2.0 * np.sin(np.arange(60) / 2), 100 + 0.1 * np.sin(np.arange(20) / 2)]
    assert expansion_state(shrinking + 0.05, shrinking - 0.05, shrinking) == "contracting"
    assert expansion_state(high[:20], low[:20], calm[:20]) == "forming"


def test_body_expansion() -> None:
    open_ = np.full(15, 100.0)
    close = np.r_[np.full(10, 100.1), np.full(5, 100.4)]  # bodies 0.1 then 0.4: x4
    fires, ratio = body_expansion(open_, close, 1.5)
    assert fires and ratio == pytest.approx(4.0)
    assert body_expansion(open_, np.full(15, 100.1), 1.5) == (False, pytest.approx(1.0))
    assert body_expansion(open_[:9], close[:9], 1.5) == (False, 0.0)


def test_step_divergence() -> None:
    # price up-steps rising (100.5 -> 101.0) while CVD up-steps fall (50 -> 40): bearish
    price = np.array([100, 100.5, 100.2, 100.1, 101.0, 100.8, 100.7, 100.6, 100.5, 100.4])
    cvd = np.array([0, 50, 45, 30, 40, 35, 30, 25, 20, 15.0])
    div = step_divergence(price, cvd)
    assert div is not None and div.kind == "bearish"
    assert div.strength == pytest.approx(min(1.0, (0.5 / 100.5 + 10 / 50) * 10))
    bull = step_divergence(200 - price, -cvd)
    assert bull is not None and bull.kind == "bullish"
    assert step_divergence(np.linspace(100, 101, 10), np.linspace(0, 10, 10)) is None
    assert step_divergence(price[:9], cvd[:9]) is None


def test_break_of_structure() -> None:
    # a zig-zag with swing highs at 101 and swing lows at 99, then a close above 101 + 0.2 ATR
    base = [100, 100.5, 101, 100.5, 100, 99.5, 99, 99.5, 100, 100.5, 101, 100.5, 100, 99.5, 99, 99.5, 100]
    high = np.array(base, float) + 0.05
    low = np.array(base, float) - 0.05
    close = np.array(base, float)
    assert break_of_structure(high, low, close, atr=1.0) is None
    up = np.r_[close, 101.3]
    bos = break_of_structure(np.r_[high, 101.35], np.r_[low, 101.25], up, atr=1.0)
    assert bos is not None and bos.direction == "bullish" and bos.level == pytest.approx(101.05)
    assert break_of_structure(np.r_[high, 101.2], np.r_[low, 101.1], np.r_[close, 101.15], atr=1.0) is None
    down = break_of_structure(np.r_[high, 98.7], np.r_[low, 98.6], np.r_[close, 98.65], atr=1.0)
    assert down is not None and down.direction == "bearish" and down.level == pytest.approx(98.95)
    assert break_of_structure(high[:9], low[:9], close[:9], atr=1.0) is None
