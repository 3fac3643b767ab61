"""Order-flow signals (each alone, each threshold's edge) and the weighted classifier."""
from __future__ import annotations

import numpy as np
import pytest

from engines.order_flow import OrderFlowEngine
from engines.order_flow_signals import (Signal, SignalParams, absorption, align_flow_to_bars, classify,
                                        cvd_divergence, delta_divergence, detect_signals, last_atr,
                                        liquidity_sweep, normalised_weights, typical_window_volume,
                                        vwap_deviation)
from feeds.trade_readers import read_trades

P = SignalParams()

# 20 M1 bars: swing highs at bars 8 (105) and 16 (107, a higher high); one swing low at 12
HIGHS = np.array([97, 98, 99, 100, 101, 102, 103, 104, 105, 104, 103, 102, 101, 102, 104, 106, 107, 106, 105,
                  104], dtype=float)


def _cvd(at8: float, at16: float) -> np.ndarray:
    cvd = np.linspace(0, at8, 9).tolist() + np.linspace(at8, at16, 9)[1:].tolist() + [at16] * 3
    return np.array(cvd)


class TestCvdDivergence:
    def test_bearish_higher_high_with_falling_cvd(self):
        high, low = HIGHS, HIGHS - 2
        volume = np.full(20, 10.0)
        atr_value = 2.0
        s = cvd_divergence(high, low, _cvd(50, 30), volume, atr_value)
        assert s.side == "sell"
        # price: 2 / (1.0 * ATR 2) = 1.0; flow: |30 - 50| / 80 traded between the pivots = 0.25
        assert s.strength == pytest.approx(0.5 * (1.0 + 0.25))
        assert s.detail["pivots"] == (-12, -4)

    def test_bullish_lower_low_with_rising_cvd_is_the_mirror(self):
        low = 200 - HIGHS
        s = cvd_divergence(low + 2, low, -_cvd(50, 30), np.full(20, 10.0), 2.0)
        assert s.side == "buy" and s.strength == pytest.approx(0.625)

    def test_confirming_cvd_is_no_divergence(self):
        assert cvd_divergence(HIGHS, HIGHS - 2, _cvd(50, 60), np.full(20, 10.0), 2.0) is None

    def test_strength_is_scale_free(self):
        """The same shape on a 100x price and 1000x volume scores the same."""
        a = cvd_divergence(HIGHS, HIGHS - 2, _cvd(50, 30), np.full(20, 10.0), 2.0)
        b = cvd_divergence(HIGHS * 100, (HIGHS - 2) * 100, _cvd(50, 30) * 1000, np.full(20, 1e4), 200.0)
        assert a.strength == pytest.approx(b.strength)

    def test_missing_inputs(self):
        cvd = _cvd(50, 30)
        cvd[3] = np.nan  # a minute before the tape started: not aligned
        assert cvd_divergence(HIGHS, HIGHS - 2, cvd, np.full(20, 10.0), 2.0) is None
        assert cvd_divergence(HIGHS[1:], HIGHS[1:] - 2, _cvd(50, 30)[1:], np.full(19, 10.0), 2.0) is None
        assert cvd_divergence(HIGHS, HIGHS - 2, _cvd(50, 30), np.full(20, 10.0), None) is None


class TestDeltaDivergence:
    CLOSE = 100.0 - np.arange(10.0)  # falls 9 over 10 bars
    DELTA = np.arange(10.0) - 5  # rises 9; mean |delta| 2.5

    def test_price_down_delta_up_is_bullish(self):
        s = delta_divergence(self.CLOSE, self.DELTA, 6.0)  # price trend -1.5 ATR, delta trend +3.6
        assert s.side == "buy" and s.strength == 1.0
        assert s.detail["price_trend_atr"] == pytest.approx(-1.5) and s.detail["delta_trend"] == pytest.approx(3.6)

    def test_mirror_is_bearish(self):
        assert delta_divergence(200 - self.CLOSE, -self.DELTA, 6.0).side == "sell"

    def test_price_threshold_edge(self):
        inside = delta_divergence(self.CLOSE, self.DELTA, 17.99)  # -0.5003 ATR
        assert inside is not None and inside.strength == pytest.approx(0.5, abs=1e-3)
        assert delta_divergence(self.CLOSE, self.DELTA, 18.01) is None  # -0.4997 ATR

    def test_delta_threshold_edge(self):
        params = SignalParams(delta_div_delta_threshold=3.59)
        assert delta_divergence(self.CLOSE, self.DELTA, 6.0, params) is not None
        assert delta_divergence(self.CLOSE, self.DELTA, 6.0, SignalParams(delta_div_delta_threshold=3.61)) is None

    def test_agreeing_trends_and_flat_delta_give_nothing(self):
        assert delta_divergence(self.CLOSE, -self.DELTA, 6.0) is None
        assert delta_divergence(self.CLOSE, np.zeros(10), 6.0) is None


class TestAbsorption:
    def test_absorbed_selling_is_a_buy_zone(self):
        s = absorption(5.0, 45.0, 100.1, 100.0, 100.05, 10.0, 1.0)
        assert s.side == "buy"
        assert s.strength == pytest.approx((1.0 + 1.0 + (1 - 0.1 / 0.25)) / 3)
        assert s.detail["price"] == 100.05 and s.detail["volume_ratio"] == 5.0

    def test_absorbed_buying_is_a_sell_zone(self):
        assert absorption(45.0, 5.0, 100.1, 100.0, 100.05, 10.0, 1.0).side == "sell"

    @pytest.mark.parametrize("buy, sell, high, typical, passes", [
        (2.0, 18.0, 100.0, 10.0, True),     # volume ratio exactly 2.0
        (2.0, 17.9, 100.0, 10.0, False),    # 1.99
        (3.5, 6.5, 100.0, 5.0, True),       # imbalance exactly 0.3
        (3.6, 6.4, 100.0, 5.0, False),      # 0.28
        (2.0, 18.0, 100.25, 10.0, True),    # range exactly 0.25 ATR
        (2.0, 18.0, 100.26, 10.0, False),   # 0.26 ATR: price moved, no absorption
    ])
    def test_threshold_edges(self, buy, sell, high, typical, passes):
        assert (absorption(buy, sell, high, 100.0, 100.0, typical, 1.0) is not None) is passes

    def test_units_are_the_instruments_own(self):
        """BTC-sized and FX-sized inputs with the same shape give the same strength."""
        btc = absorption(0.5, 4.5, 60_010.0, 60_000.0, 60_005.0, 1.0, 100.0)
        fx = absorption(5e6, 45e6, 1.08001, 1.08000, 1.080005, 1e7, 0.0001)
        assert btc.strength == pytest.approx(fx.strength)

    def test_missing_inputs(self):
        assert absorption(5.0, 45.0, 100.1, 100.0, 100.05, None, 1.0) is None
        assert absorption(0.0, 0.0, None, None, None, 10.0, 1.0) is None

    def test_typical_volume_from_flow_bars(self):
        engine = OrderFlowEngine()
        for i in range(120):  # 2 minutes, 1 base unit per second
            engine.add_trade("X", i + 1, 100.0, 1.0, 1_723_161_240_000 + i * 1000, i % 2 == 0)
        assert typical_window_volume(engine.bars("X", 60), 60) == pytest.approx(60.0)
        assert typical_window_volume([], 60) is None


def _sweep_bars(last_low: float, last_close: float, last_high: float = 104.0):
    high = np.array([105.0, 108, 110, 107, 104] * 12 + [104.0, 103.0, last_high])
    low = np.array([101.0, 103, 106, 102, 100] * 12 + [101.0, 100.5, last_low])
    close = np.array([103.0, 106, 108, 104, 102] * 12 + [102.0, 101.0, last_close])
    return high, low, close


class TestLiquiditySweep:
    def test_lows_swept_and_reclaimed_is_a_buy(self):
        s = liquidity_sweep(*_sweep_bars(99.5, 100.5), 2.0)
        assert s.side == "buy" and s.detail["level"] == 100.0
        assert s.strength == pytest.approx(0.5 + 0.5 * min(1.0, 0.5 / 0.5))

    def test_sweep_without_reclaim_is_nothing(self):
        assert liquidity_sweep(*_sweep_bars(99.5, 99.8), 2.0) is None
        assert liquidity_sweep(*_sweep_bars(100.2, 101.0), 2.0) is None  # never traded through

    def test_highs_swept_and_rejected_is_a_sell(self):
        s = liquidity_sweep(*_sweep_bars(100.5, 109.5, last_high=110.5), 2.0)
        assert s.side == "sell" and s.detail["level"] == 110.0

    def test_too_few_bars(self):
        high, low, close = _sweep_bars(99.5, 100.5)
        assert liquidity_sweep(high[-50:], low[-50:], close[-50:], 2.0) is None


class TestVwapDeviation:
    H = np.array([99.0, 101.0] * 100)  # typical price alternates 99/101: VWAP 100, sigma 1

    @pytest.mark.parametrize("price, side, strength", [
        (102.5, "sell", 1.0), (101.5, "sell", 0.75), (101.0, "sell", 0.5), (98.0, "buy", 1.0)])
    def test_deviation_in_sigmas(self, price, side, strength):
        s = vwap_deviation(self.H, self.H, self.H, np.ones(200), price)
        assert (s.side, s.strength) == (side, pytest.approx(strength))
        assert s.detail["vwap"] == 100.0 and s.detail["sigma"] == 1.0

    def test_inside_one_sigma_is_nothing(self):
        assert vwap_deviation(self.H, self.H, self.H, np.ones(200), 100.99) is None

    def test_zero_volume_bars_weigh_equally(self):
        assert vwap_deviation(self.H, self.H, self.H, np.zeros(200), 102.5).detail["vwap"] == 100.0


class TestClassifier:
    def _all_buy(self):
        return [Signal("absorption", "buy", 1.0), Signal("delta_divergence", "buy", 0.8),
                Signal("liquidity_sweep", "buy", 1.0), Signal("cvd_divergence", "buy", 0.6),
                Signal("vwap_deviation", "buy", 0.7)]

    def test_worked_example_of_the_plan(self):
        c = classify(self._all_buy())
        assert c.side == "buy" and c.probability == pytest.approx(0.86) and c.meets_threshold
        assert c.pattern_type == "absorption"
        assert c.contributions["cvd_divergence"] == pytest.approx(0.09)

    def test_minimal_passing_set_is_exactly_the_threshold(self):
        for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
            names = ["absorption", "delta_divergence", "liquidity_sweep"]
            c = classify([Signal(names[i], "sell", 1.0) for i in order])
            assert c.meets_threshold and c.side == "sell" and c.probability == pytest.approx(0.75)

    def test_without_absorption_the_maximum_is_070(self):
        c = classify([s for s in self._all_buy() if s.name != "absorption"] +
                     [Signal("delta_divergence", "buy", 1.0), Signal("cvd_divergence", "buy", 1.0),
                      Signal("vwap_deviation", "buy", 1.0)])
        assert c.probability == pytest.approx(0.70) and not c.meets_threshold

    def test_conflicting_signals_do_not_add_up(self):
        signals = [Signal("absorption", "buy", 1.0), Signal("delta_divergence", "sell", 1.0),
                   Signal("liquidity_sweep", "sell", 1.0)]
        c = classify(signals)
        assert (c.side, c.buy_score, c.sell_score) == ("sell", pytest.approx(0.30), pytest.approx(0.45))
        assert not c.meets_threshold
        as_buy = classify(signals, side="buy")
        assert as_buy.probability == pytest.approx(0.30) and list(as_buy.contributions) == ["absorption"]

    def test_tie_and_nothing_give_no_side(self):
        assert classify([]).side is None and classify([]).pattern_type == "unknown"
        tie = classify([Signal("delta_divergence", "buy", 1.0), Signal("delta_divergence", "sell", 1.0)])
        assert tie.side is None and not tie.meets_threshold

    def test_custom_weights_are_normalised_and_validated(self):
        c = classify([Signal("vwap_deviation", "buy", 1.0)], weights={"vwap_deviation": 3, "absorption": 1},
                     threshold=0.7)
        assert c.probability == pytest.approx(0.75) and c.meets_threshold
        assert sum(normalised_weights({"absorption": 2.0}).values()) == pytest.approx(1.0)
        with pytest.raises(ValueError, match="unknown signal weights: whales"):
            classify([], weights={"whales": 1.0})
        with pytest.raises(ValueError, match="positive sum"):
            classify([], weights={"absorption": 0.0})

    def test_strength_is_clamped_and_duplicates_count_once(self):
        c = classify([Signal("absorption", "buy", 3.0), Signal("absorption", "buy", 0.2),
                      Signal("liquidity_sweep", "buy", -1.0)])
        assert c.probability == pytest.approx(0.30)


def test_align_flow_to_bars_carries_cvd_over_quiet_minutes():
    engine = OrderFlowEngine()
    t0 = 1_723_161_240_000
    engine.add_trade("X", 1, 100.0, 2.0, t0 + 1000, False)
    engine.add_trade("X", 2, 100.0, 0.5, t0 + 120_000, True)  # minute 1 has no trades
    starts = [t0 - 60_000, t0, t0 + 60_000, t0 + 120_000]
    cvd, delta, volume = align_flow_to_bars(starts, engine.bars("X", 60))
    assert np.isnan(cvd[0]) and np.isnan(delta[0])
    assert cvd[1:].tolist() == [2.0, 2.0, 1.5] and delta[1:].tolist() == [2.0, 0.0, -0.5]
    assert volume[1:].tolist() == [2.0, 0.0, 0.5]


def test_signals_on_the_real_futures_tape_are_well_formed(usdm_trades_path):
    """Replay the real tape minute by minute and run every detector; outputs stay in range."""
    tape = read_trades(usdm_trades_path)
    engine = OrderFlowEngine(windows_seconds=(60, 300))
    engine.add_trades("BTC", tape.ids, tape.price, tape.qty, tape.time_ms, tape.is_buyer_maker)
    bars = engine.bars("BTC", 60, include_forming=False)
    starts = np.arange(bars[0].start_ms, bars[-1].start_ms + 60_000, 60_000)
    cvd, delta, volume = align_flow_to_bars(starts, bars)
    by_start = {b.start_ms: b for b in bars}
    close = []
    for s in starts.tolist():  # quiet minutes repeat the last close as a flat bar
        close.append(by_start[s].close if s in by_start else close[-1])
    high = np.array([by_start[s].high if s in by_start else c for s, c in zip(starts.tolist(), close)])
    low = np.array([by_start[s].low if s in by_start else c for s, c in zip(starts.tolist(), close)])
    close = np.array(close)
    assert last_atr(high, low, close) > 0
    seen = set()
    for end in range(63, len(starts), 7):
        sl = slice(0, end)
        window = engine.get_metrics("BTC", 60, int(starts[end - 1]) + 59_999)
        signals = detect_signals(high[sl], low[sl], close[sl], volume[sl], cvd[sl], delta[sl],
                                 buy_volume=window.buy_volume, sell_volume=window.sell_volume,
                                 window_high=window.price_high, window_low=window.price_low,
                                 window_vwap=window.vwap, typical_volume=typical_window_volume(
                                     [b for b in bars if b.start_ms < starts[end - 1]], 60), price=close[end - 1])
        for s in signals:
            assert s.side in ("buy", "sell") and 0.0 <= s.strength <= 1.0, s
            seen.add(s.name)
        c = classify(signals)
        assert 0.0 <= c.probability <= 1.0
    assert seen, "a thin 8-hour tape still produces some signals"
