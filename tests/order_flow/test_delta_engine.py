"""The delta engine: sign rule, windows from the one-second ring, tape integrity, bars."""
from __future__ import annotations

import numpy as np
import pytest

from engines.order_flow import (ACCEPTED, DUPLICATE, INVALID, OUT_OF_ORDER, OrderFlowEngine)
from feeds.trade_readers import read_trades

T0 = 1_723_161_240_000  # a UTC minute boundary (2024-08-08 23:54:00)
SYM = "BTCUSDT"


def feed(engine, trades, symbol=SYM):
    return [engine.add_trade(symbol, *t) for t in trades]


def test_sign_rule_buyer_maker_is_sell_volume():
    engine = OrderFlowEngine()
    feed(engine, [(1, 100.0, 2.0, T0, False),   # taker bought: +2
                  (2, 101.0, 0.5, T0 + 10, True)])  # buyer was maker, taker sold: -0.5
    m = engine.get_metrics(SYM, 30, T0 + 500)
    assert (m.buy_volume, m.sell_volume, m.delta, m.cvd, m.trades) == (2.0, 0.5, 1.5, 1.5, 2)
    assert m.aggressor_ratio == pytest.approx(0.8) and m.imbalance == pytest.approx(0.6)
    assert m.vwap == pytest.approx((100 * 2 + 101 * 0.5) / 2.5)
    assert m.last_price == 101.0 and m.staleness_ms == 490
    assert m.complete is False  # half a second of tape cannot fill a 30 s window
    assert engine.get_metrics(SYM, 1, T0 + 500).complete is True


def test_300s_window_is_not_cut_at_60s():
    """The original kept 60 s of trades, so a 300 s window silently saw 60 s."""
    engine = OrderFlowEngine(windows_seconds=(30, 60, 300, 900))
    feed(engine, [(i + 1, 100.0, 1.0, T0 + i * 1000, False) for i in range(400)])  # 1 buy per second
    now = T0 + 399 * 1000 + 999
    assert engine.get_metrics(SYM, 60, now).buy_volume == 60.0
    assert engine.get_metrics(SYM, 300, now).buy_volume == 300.0
    m900 = engine.get_metrics(SYM, 900, now)
    assert m900.buy_volume == 400.0 and m900.complete is False  # only 400 s of tape exist
    assert engine.get_metrics(SYM, 300, now).complete is True


def test_windows_slide_with_now_and_count_only_their_seconds():
    engine = OrderFlowEngine()
    feed(engine, [(1, 100.0, 1.0, T0, False), (2, 100.0, 3.0, T0 + 45_000, True)])
    assert engine.get_metrics(SYM, 30, T0 + 45_000).delta == -3.0  # the first trade is 45 s old
    assert engine.get_metrics(SYM, 60, T0 + 45_000).delta == -2.0
    later = engine.get_metrics(SYM, 30, T0 + 120_000)
    assert later.trades == 0 and later.vwap is None and later.aggressor_ratio is None
    assert later.cvd == -2.0 and later.staleness_ms == 75_000 and later.last_price == 100.0


def test_window_longer_than_the_ring_is_refused():
    engine = OrderFlowEngine(windows_seconds=(30, 300))
    feed(engine, [(1, 100.0, 1.0, T0, False)])
    with pytest.raises(ValueError, match="1..300"):
        engine.get_metrics(SYM, 301, T0)
    assert engine.get_metrics("ETHUSDT", 30, T0) is None  # never traded: callers fail closed


def test_ring_slots_are_reused_without_leaking_old_seconds():
    engine = OrderFlowEngine(windows_seconds=(10,))
    feed(engine, [(1, 100.0, 5.0, T0, False), (2, 100.0, 1.0, T0 + 10_000, True)])  # same ring slot
    m = engine.get_metrics(SYM, 10, T0 + 10_500)
    assert (m.buy_volume, m.sell_volume) == (0.0, 1.0)


def test_duplicates_dropped_and_backwards_ids_rejected():
    engine = OrderFlowEngine()
    status = feed(engine, [(10, 100.0, 1.0, T0, False), (11, 100.0, 1.0, T0 + 1, False),
                           (11, 100.0, 1.0, T0 + 2, False),   # same id again
                           (10, 100.0, 1.0, T0 + 3, False),   # already seen
                           (5, 100.0, 1.0, T0 + 4, False),    # before the first id ever seen
                           (14, 100.0, 1.0, T0 + 5, False),   # skips 12, 13
                           (12, 100.0, 1.0, T0 + 6, False)])  # late trade from the gap
    assert status == [ACCEPTED, ACCEPTED, DUPLICATE, DUPLICATE, OUT_OF_ORDER, ACCEPTED, OUT_OF_ORDER]
    stats = engine.stats(SYM)
    assert (stats["duplicates"], stats["out_of_order"], stats["gaps"], stats["missing_ids"]) == (2, 2, 1, 2)
    assert engine.get_metrics(SYM, 30, T0 + 10).buy_volume == 3.0


def test_invalid_values_are_rejected_and_counted():
    engine = OrderFlowEngine()
    status = feed(engine, [(1, float("nan"), 1.0, T0, False), (2, 100.0, 0.0, T0, False),
                           (3, -1.0, 1.0, T0, False), (4, 100.0, float("inf"), T0, False),
                           (5, 100.0, 1.0, T0, False)])
    assert status == [INVALID] * 4 + [ACCEPTED]
    assert engine.stats(SYM)["invalid"] == 4


def test_gap_marks_windows_and_bars_discontinuous():
    engine = OrderFlowEngine()
    feed(engine, [(1, 100.0, 1.0, T0, False), (2, 100.0, 1.0, T0 + 1000, False),
                  (9, 100.0, 1.0, T0 + 70_000, False), (10, 100.0, 1.0, T0 + 71_000, False)])
    assert engine.get_metrics(SYM, 30, T0 + 71_000).discontinuous is True
    assert engine.get_metrics(SYM, 30, T0 + 120_000).discontinuous is False  # gap second left the window
    bars = engine.bars(SYM, 60)
    assert [b.discontinuous for b in bars] == [False, True]


def test_mark_discontinuity_flags_the_next_trades():
    engine = OrderFlowEngine()
    feed(engine, [(1, 100.0, 1.0, T0, False)])
    engine.mark_discontinuity(SYM)
    feed(engine, [(2, 100.0, 1.0, T0 + 5000, False)])
    assert engine.get_metrics(SYM, 2, T0 + 5000).discontinuous is True
    assert engine.stats(SYM)["marked_discontinuities"] == 1


def test_cvd_slope_normalised_is_scale_free():
    """Steady one-sided flow gives +-1 whatever the instrument's size; balanced flow gives 0."""
    results = []
    for qty in (0.001, 250.0):
        engine = OrderFlowEngine()
        feed(engine, [(i + 1, 100.0, qty, T0 + i * 1000, False) for i in range(60)])
        m = engine.get_metrics(SYM, 60, T0 + 59_500)
        assert m.cvd_slope == pytest.approx(qty)  # base units per second
        results.append(m.cvd_slope_norm)
    assert results == pytest.approx([1.0, 1.0])
    engine = OrderFlowEngine()
    feed(engine, [(i + 1, 100.0, 1.0, T0 + i * 1000, i % 2 == 1) for i in range(60)])
    assert abs(engine.get_metrics(SYM, 60, T0 + 59_500).cvd_slope_norm) < 0.05
    engine = OrderFlowEngine()
    feed(engine, [(i + 1, 100.0, 1.0, T0 + i * 1000, True) for i in range(60)])
    assert engine.get_metrics(SYM, 60, T0 + 59_500).cvd_slope_norm == pytest.approx(-1.0)


def test_query_clock_behind_the_exchange_is_clamped():
    engine = OrderFlowEngine()
    feed(engine, [(1, 100.0, 1.0, T0 + 1_200, False)])
    m = engine.get_metrics(SYM, 30, T0 + 900)  # local clock 300 ms behind the trade time
    assert m.trades == 1 and m.staleness_ms == 0 and m.now_ms == T0 + 1_200


def test_time_stepping_back_is_counted_and_kept_in_the_open_second():
    engine = OrderFlowEngine()
    feed(engine, [(1, 100.0, 1.0, T0 + 5000, False), (2, 100.0, 1.0, T0 + 3000, True)])
    assert engine.stats(SYM)["time_regressions"] == 1
    m = engine.get_metrics(SYM, 1, T0 + 5000)
    assert (m.buy_volume, m.sell_volume) == (1.0, 1.0)


def test_per_second_series_and_vwap():
    engine = OrderFlowEngine()
    feed(engine, [(1, 100.0, 1.0, T0, False), (2, 102.0, 1.0, T0 + 100, True),
                  (3, 105.0, 2.0, T0 + 2000, False)])
    s = engine.seconds(SYM, 3, T0 + 2000)
    assert s.start_sec == T0 // 1000
    assert s.trades.tolist() == [2, 0, 1]
    assert s.vwap[0] == pytest.approx(101.0) and np.isnan(s.vwap[1]) and s.vwap[2] == 105.0
    assert s.cvd_end.tolist() == [0.0, 0.0, 2.0]
    assert s.high[0] == 102.0 and s.low[0] == 100.0


def test_m1_and_m5_bars_with_forming_bar():
    engine = OrderFlowEngine(bar_seconds=(60, 300))
    feed(engine, [(1, 100.0, 1.0, T0 + 1000, False), (2, 103.0, 1.0, T0 + 30_000, True),
                  (3, 99.0, 2.0, T0 + 61_000, False), (4, 101.0, 1.0, T0 + 62_000, True)])
    m1 = engine.bars(SYM, 60)
    assert [(b.open, b.high, b.low, b.close, b.delta, b.cvd, b.trades) for b in m1] == [
        (100.0, 103.0, 100.0, 103.0, 0.0, 0.0, 2), (99.0, 101.0, 99.0, 101.0, 1.0, 1.0, 2)]
    assert m1[1].low == 99.0 and m1[0].vwap == pytest.approx(101.5)
    assert len(engine.bars(SYM, 60, include_forming=False)) == 1
    m5 = engine.bars(SYM, 300)
    # T0 is 23:54 UTC: the M5 boundary at 23:55 splits the same trades as the M1 boundary did
    assert [(b.start_ms, b.trades, b.high, b.low) for b in m5] == [
        (T0 - 240_000, 2, 103.0, 100.0), (T0 + 60_000, 2, 101.0, 99.0)]
    with pytest.raises(ValueError, match="no 900 s bars"):
        engine.bars(SYM, 900)


def test_batch_equals_trade_by_trade_on_the_real_tape(spot_trades_path):
    tape = read_trades(spot_trades_path)
    one, batch = OrderFlowEngine(), OrderFlowEngine()
    for a, p, q, t, m in zip(tape.ids.tolist(), tape.price.tolist(), tape.qty.tolist(),
                             tape.time_ms.tolist(), tape.is_buyer_maker.tolist()):
        one.add_trade(SYM, a, p, q, t, m)
    half = len(tape) // 2  # two batches: the second continues the first's open second
    batch.add_trades(SYM, tape.ids[:half], tape.price[:half], tape.qty[:half], tape.time_ms[:half],
                     tape.is_buyer_maker[:half])
    batch.add_trades(SYM, tape.ids[half:], tape.price[half:], tape.qty[half:], tape.time_ms[half:],
                     tape.is_buyer_maker[half:])
    now = int(tape.time_ms[-1])
    for window in (30, 60, 300, 900):
        a, b = one.get_metrics(SYM, window, now), batch.get_metrics(SYM, window, now)
        for field in ("buy_volume", "sell_volume", "delta", "notional", "cvd", "cvd_slope_norm", "vwap"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-9, abs=1e-9), field
        assert (a.trades, a.price_high, a.price_low, a.price_open) == (b.trades, b.price_high, b.price_low,
                                                                        b.price_open)
    bars_a, bars_b = one.bars(SYM, 60), batch.bars(SYM, 60)
    assert [(x.start_ms, x.open, x.high, x.low, x.close, x.trades) for x in bars_a] == \
        [(x.start_ms, x.open, x.high, x.low, x.close, x.trades) for x in bars_b]
    assert np.allclose([x.cvd for x in bars_a], [x.cvd for x in bars_b])
    # the 900 s window covers the whole 11-minute tape: its delta is the tape's signed volume
    signed = np.where(tape.is_buyer_maker, -tape.qty, tape.qty).sum()
    assert one.get_metrics(SYM, 900, now).delta == pytest.approx(signed)


def test_batch_with_duplicates_falls_back_to_the_same_rules():
    engine = OrderFlowEngine()
    result = engine.add_trades(SYM, [1, 2, 2, 1, 4], [100.0] * 5, [1.0] * 5, [T0] * 5,
                               [False] * 5)
    assert (result.accepted, result.duplicates) == (3, 2)
    assert engine.stats(SYM)["gaps"] == 1
    with pytest.raises(ValueError, match="same length"):
        engine.add_trades(SYM, [5, 6], [100.0], [1.0], [T0], [False])


def test_memory_is_bounded_by_the_ring():
    engine = OrderFlowEngine(windows_seconds=(86_400,))
    feed(engine, [(1, 100.0, 1.0, T0, False)])
    assert 5e6 < engine.memory_bytes() < 7e6  # one day of one-second buckets for one symbol
