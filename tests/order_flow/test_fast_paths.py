"""The cheaper paths the monitor takes every step give the same numbers, bit for bit, as the
straightforward ones they replace (a backtest must not change by a last digit).

Each test runs both on random batches: columns vs ``FlowBar`` lists, the per-trade engine path vs
the vectorised one, the per-tick proxy path vs the numpy one, the searchsorted alignment vs the
original dictionary loop, the last-ATR and pivot helpers vs ``engines.indicators``."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

import engines.order_flow as order_flow
import engines.tick_proxy as tick_proxy
from engines import indicators
from engines.bars import BarSeries
from engines.order_flow import FlowBar, FlowBarColumns, OrderFlowEngine, fast_mean
from engines.order_flow_signals import (SignalParams, align_flow_to_bars, classify, last_atr,
                                        typical_window_volume)
from engines.tick_proxy import TickRuleState, classify_ticks, frame_columns
from feeds.tick_proxy import _first_new
from monitors.order_flow_rules import bar_arrays, flow_bars_since, signal_inputs

T0 = 1_723_161_240_000  # a UTC minute boundary
SYM = "X"
COLUMNS = ("start_ms", "seconds", "buy_volume", "sell_volume", "cvd")


def same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def random_batches(rng: np.random.Generator, batches: int):
    """Trade batches as polls and replays deliver them: mostly rising ids and times, sometimes
    several trades in one second, an id gap, a duplicate, a bad price or time stepping back."""
    next_id, t = 1, T0
    for _ in range(batches):
        n = int(rng.integers(0, 40))
        ids = next_id + np.cumsum(1 + rng.choice([0, 0, 0, 0, 1, 3], n))
        if n and rng.random() < 0.05:
            ids[rng.integers(0, n)] = ids[0]
        next_id = int(ids[-1]) + 1 if n else next_id
        mode = rng.random()
        step = (rng.choice([1000, 1500, 7000, 61_000], n) if mode < 0.5
                else rng.choice([0, 300, 1000, 7000], n) if mode < 0.9 else rng.integers(-1500, 3000, n))
        times = t + np.cumsum(step)
        t = int(times[-1]) if n else t
        price = np.round(100 + rng.normal(0, 1, n), 2)
        if n and rng.random() < 0.05:
            price[0] = np.nan
        yield ids, price, np.round(rng.random(n) * 3 + 0.001, 3), times, rng.random(n) < 0.5, rng.random() < 0.05


def engine_state(engine: OrderFlowEngine) -> list:
    book = engine.book(SYM)
    bars = [book.bars(60), book.bars(300)]  # read first: the ring and the bars take committed seconds when read
    ring = book.ring
    arrays = [a.tobytes() for a in (ring.stamp, ring.buy, ring.sell, ring.notional, ring.open, ring.high, ring.low,
                                    ring.close, ring.trades, ring.disc)]
    scalars = {k: v for k, v in vars(book).items() if k not in ("_ring", "builders", "_builder_list", "known_gaps")}
    return [arrays, repr(sorted(scalars.items())), list(book.known_gaps), bars]


# ------------------------------------------------------------------------------------------
# delta engine


@pytest.mark.parametrize("history", [10, 1440, None])
def test_bar_columns_equal_the_bars(history):
    rng = np.random.default_rng(1)
    engine = OrderFlowEngine(windows_seconds=(30, 60), bar_seconds=(60, 300), bar_history=history)
    assert len(engine.bar_columns(SYM, 60)) == 0
    for ids, price, qty, times, maker, _ in random_batches(rng, 200):
        engine.add_trades(SYM, ids, price, qty, times, maker)
        for seconds in (60, 300):
            for forming in (True, False):
                bars = engine.bars(SYM, seconds, forming)
                columns = engine.bar_columns(SYM, seconds, forming)
                expected = FlowBarColumns.from_bars(bars)
                assert all(same(getattr(columns, c), getattr(expected, c)) for c in COLUMNS)
                assert same(columns.delta, [b.delta for b in bars]) and same(columns.volume, [b.volume for b in bars])
    assert history is None or len(engine.bars(SYM, 60)) <= history + 2


def test_small_batches_trade_by_trade_equal_the_vectorised_path(monkeypatch):
    rng = np.random.default_rng(2)
    fast, reference = (OrderFlowEngine(windows_seconds=(10, 30, 60)) for _ in range(2))
    for ids, price, qty, times, maker, mark in random_batches(rng, 600):
        if mark:
            fast.mark_discontinuity(SYM)
            reference.mark_discontinuity(SYM)
        got = fast.add_trades(SYM, ids, price, qty, times, maker)
        with monkeypatch.context() as patch:
            patch.setattr(order_flow, "FEW_TRADES", 0)  # always the vectorised (or dirty-data) path
            expected = reference.add_trades(SYM, ids, price, qty, times, maker)
        assert got == expected
        if SYM in reference.symbols:
            assert engine_state(fast) == engine_state(reference)
            now = int(times[-1]) + 500 if len(times) else T0
            for window in (10, 30, 60):
                assert repr(fast.get_metrics(SYM, window, now)) == repr(reference.get_metrics(SYM, window, now))


def test_trade_lists_equal_adding_trade_by_trade():
    """``add_trade_lists`` (the tick proxy's path: a run of trades each in its own second is
    added with the state in locals) leaves the state ``add_trades`` leaves (trade by trade for
    such runs, vectorised for others)."""
    rng = np.random.default_rng(9)
    fast, reference = (OrderFlowEngine(windows_seconds=(10, 30, 60)) for _ in range(2))
    next_id, t = 1, T0
    for _ in range(3000):
        n = int(rng.integers(0, 12))
        times = (t + np.cumsum(rng.choice([0, 400, 1000, 2500, 61_000], n))).tolist()
        t = times[-1] if n else t
        price = np.round(100 + rng.normal(0, 1, n), 2).tolist()
        qty = np.round(rng.random(n) * 3 + 0.001, 3).tolist()
        if n and rng.random() < 0.03:
            price[int(rng.integers(0, n))] = math.nan
        maker = (rng.random(n) < 0.5).tolist()
        next_id += int(rng.choice([0, 0, 0, 2]))  # sometimes a gap before the batch
        if rng.random() < 0.03:
            fast.mark_discontinuity(SYM)
            reference.mark_discontinuity(SYM)
        got = fast.add_trade_lists(SYM, next_id, price, qty, times, maker)
        with np.errstate(invalid="ignore"):
            expected = reference.add_trades(SYM, np.arange(next_id, next_id + n), price, qty, times, maker)
        next_id += n
        assert got == expected
        if SYM in reference.symbols and rng.random() < 0.2:
            assert engine_state(fast) == engine_state(reference)
    assert engine_state(fast) == engine_state(reference)


def test_metrics_are_the_sums_of_the_seconds():
    rng = np.random.default_rng(3)
    engine = OrderFlowEngine(windows_seconds=(30, 60, 300))
    for ids, price, qty, times, maker, mark in random_batches(rng, 300):
        if mark:
            engine.mark_discontinuity(SYM)
        engine.add_trades(SYM, ids, price, qty, times, maker)
        if engine.get_metrics(SYM, 30, T0) is None:
            continue
        now = int(engine.book(SYM).last_time_ms) + int(rng.integers(0, 20_000))
        for window in (30, 60, 300):
            m, s = engine.get_metrics(SYM, window, now), engine.seconds(SYM, window, now)
            assert (m.buy_volume, m.sell_volume, m.notional) == (float(s.buy_volume.sum()), float(s.sell_volume.sum()),
                                                                 float(s.notional.sum()))
            assert m.trades == int(s.trades.sum()) and m.discontinuous == bool(s.discontinuous.any())
            x = np.arange(window) - (window - 1) / 2.0
            assert m.cvd_slope == float(x @ (s.cvd_end - s.cvd_end.mean())) / float(x @ x)
            if m.trades:
                with np.errstate(invalid="ignore"):
                    assert (m.price_high, m.price_low) == (float(np.nanmax(s.high)), float(np.nanmin(s.low)))
                assert m.price_open == float(s.open[np.argmax(s.trades > 0)])


def test_several_windows_in_one_pass_equal_one_window_at_a_time():
    """``get_metrics_many`` reads each window as the tail of the longest: same numbers, bit for bit."""
    rng = np.random.default_rng(4)
    engine = OrderFlowEngine(windows_seconds=(30, 60, 300))
    for ids, price, qty, times, maker, mark in random_batches(rng, 300):
        if mark:
            engine.mark_discontinuity(SYM)
        engine.add_trades(SYM, ids, price, qty, times, maker)
        now = int(engine.book(SYM).last_time_ms or T0) + int(rng.integers(-2_000, 20_000))
        for windows in ((30, 60), (300, 30), (60, 60, 1), (300,)):
            many = engine.get_metrics_many(SYM, windows, now)
            assert [repr(m) for m in many] == [repr(engine.get_metrics(SYM, w, now)) for w in windows]
    with pytest.raises(ValueError):
        engine.get_metrics_many(SYM, (30, 301), T0)


def test_pairwise_sum_is_numpys_sum_bit_for_bit():
    """The sparse windows' sums replay numpy's pairwise summation: checked on this numpy."""
    rng = np.random.default_rng(5)
    for n in (1, 5, 7, 8, 9, 16, 30, 60, 127, 128, 129, 300, 900, 3600, 9000, 20_000):
        for _ in range(25):
            k = int(rng.integers(0, min(n, 70) + 1))
            positions = sorted(set(rng.integers(0, n, k).tolist()))
            values = (rng.random(len(positions)) * 10.0 ** rng.integers(-3, 6, len(positions))).tolist()
            dense = np.zeros(n)
            dense[positions] = values
            skip = int(rng.integers(0, n))
            tail = [i for i, position in enumerate(positions) if position >= skip]
            assert order_flow._pairwise_sum(positions, values, 0, len(positions), 0, n) == float(np.add.reduce(dense))
            assert order_flow._pairwise_sum([positions[i] - skip for i in tail], [values[i] for i in tail], 0,
                                            len(tail), 0, n - skip) == float(np.add.reduce(dense[skip:]))
            # three columns at once (the sparse windows' buy, sell and notional)
            others = [(rng.random(len(positions)) * 10.0).tolist() for _ in range(2)]
            sums = order_flow._pairwise_sums(positions, (values, *others), n)
            for column, total in zip((values, *others), sums):
                dense[positions] = column
                assert total == float(np.add.reduce(dense))


def test_sparse_windows_equal_the_ring_columns(monkeypatch):
    """Windows summed from the recent seconds in Python equal those summed from the ring."""
    rng = np.random.default_rng(6)
    engine = OrderFlowEngine(windows_seconds=(30, 60, 300))
    book = engine.book(SYM)
    sparse = 0
    for ids, price, qty, times, maker, mark in random_batches(rng, 400):
        if mark:
            engine.mark_discontinuity(SYM)
        engine.add_trades(SYM, ids, price, qty, times, maker)
        if book.last_time_ms is None:
            continue
        now = int(book.last_time_ms) + int(rng.integers(-70_000, 20_000))
        for windows in ((30, 60), (300, 30), (60, 60, 1), (300,)):
            for slope in (True, False):
                fast = [repr(m) for m in book.metrics_many(windows, now, slope)]
                sparse += book._recent_seconds(max(windows), book._clamp_now(now)) is not None
                with monkeypatch.context() as patched:
                    patched.setattr(order_flow.SymbolFlow, "_recent_seconds", lambda *args: None)
                    assert fast == [repr(m) for m in book.metrics_many(windows, now, slope)]
    assert sparse > 500


def test_recent_seconds_stay_bounded_and_busy_windows_fall_back_to_the_ring(monkeypatch):
    """A trade every second for 500 s: only SPARSE_SECONDS + 1 seconds are kept in Python, a 60 s
    window is still summed from them, a 300 s window (300 seconds with trades) from the ring,
    and both equal the ring's sums."""
    engine = OrderFlowEngine(windows_seconds=(30, 60, 300))
    book = engine.book(SYM)
    for second in range(500):
        book.add(second + 1, 100.0 + (second % 7), 1.0 + (second % 3), T0 + second * 1000, second % 2 == 0)
    now = T0 + 499_500
    assert len(book._recent) == order_flow.SPARSE_SECONDS + 1
    assert book._recent_seconds(60, now) is not None and book._recent_seconds(300, now) is None
    fast = [repr(m) for m in book.metrics_many((60, 300), now, True)]
    with monkeypatch.context() as patched:
        patched.setattr(order_flow.SymbolFlow, "_recent_seconds", lambda *args: None)
        assert fast == [repr(m) for m in book.metrics_many((60, 300), now, True)]


def test_metrics_without_slope_differ_only_in_the_slopes():
    rng = np.random.default_rng(7)
    engine = OrderFlowEngine(windows_seconds=(30, 60, 300))
    for ids, price, qty, times, maker, _ in random_batches(rng, 200):
        engine.add_trades(SYM, ids, price, qty, times, maker)
        now = int(engine.book(SYM).last_time_ms or T0) + int(rng.integers(0, 20_000))
        for full, bare in zip(engine.get_metrics_many(SYM, (30, 300), now),
                              engine.get_metrics_many(SYM, (30, 300), now, slope=False)):
            if full is None:
                assert bare is None
                continue
            assert math.isnan(bare.cvd_slope) and math.isnan(bare.cvd_slope_norm)
            assert repr(bare._replace(cvd_slope=full.cvd_slope, cvd_slope_norm=full.cvd_slope_norm)) == repr(full)


def test_ring_writes_many_seconds_as_one_by_one():
    rng = np.random.default_rng(8)
    for _ in range(50):
        one, many = order_flow._SecondRing(60), order_flow._SecondRing(60)
        seconds = np.cumsum(rng.choice([1, 2, 59, 60, 61, 120], int(rng.integers(1, 200)))).tolist()
        rows = [(sec, *rng.random(6).tolist(), int(rng.integers(1, 9)), float(rng.random()),
                 bool(rng.random() < 0.2), 0.0) for sec in seconds]
        for row in rows:
            one.commit(*row[:-1])
        many.commit_many(rows)
        for name in ("stamp", "buy", "sell", "notional", "open", "high", "low", "close", "trades", "disc"):
            assert same(getattr(one, name), getattr(many, name)), name


@pytest.mark.parametrize("history", [10, None])
def test_bar_column_views_are_read_only_snapshots(history):
    engine = OrderFlowEngine(windows_seconds=(60,), bar_seconds=(60,), bar_history=history)
    snapshots = []
    for i in range(400):  # two trades a minute: after the second, the stored bars are all there is
        engine.add_trade(SYM, i + 1, 100.0 + i, 1.0 + i, T0 + i * 30_000, i % 3 == 0)
        columns = engine.bar_columns(SYM, 60, False)
        snapshots.append((columns, [getattr(columns, name).copy() for name in COLUMNS]))
    for columns, copies in snapshots:
        for name, copy in zip(COLUMNS, copies):
            assert same(getattr(columns, name), copy)
    views = [columns for columns, _ in snapshots if not columns.cvd.flags.writeable]
    assert len(views) >= 190
    with pytest.raises(ValueError):
        views[-1].cvd[0] = 1.0


def test_fast_mean_is_numpys_mean_bit_for_bit():
    rng = np.random.default_rng(4)
    for n in list(range(1, 40)) + [127, 128, 129, 200, 900, 3600]:
        values = rng.normal(0, 10.0 ** rng.uniform(-4, 6), n) + rng.choice([0.0, 1e6])
        assert fast_mean(values) == values.mean() and fast_mean(values[::2]) == values[::2].mean()


# ------------------------------------------------------------------------------------------
# tick proxy


def random_ticks(rng: np.random.Generator, n: int):
    """Quote and trade ticks with flags, zero and bad prices, NaN volumes; some columns absent."""
    times = np.sort(rng.integers(0, 5000, n)).astype(np.int64) + 1_700_000_000_000
    odd = np.array([1.0, 1.1, 0.0, -1.0, np.nan, np.inf, 2.0])
    bid = rng.choice(odd, n) if rng.random() < 0.3 else np.round(1 + rng.random(n) * 0.01, 4)
    ask = bid + (rng.choice([0.0, 0.0001, -0.0001, np.nan], n) if rng.random() < 0.3 else 0.0002)
    last = np.where(rng.random(n) < rng.random(), rng.choice(odd, n), 0.0) if rng.random() < 0.5 else None
    volume = rng.choice([0, 1, 3], n).astype(np.uint64) if rng.random() < 0.5 else None
    flags = rng.choice([0, 2, 4, 6, 8, 16, 24, 32, 34, 64, 66, 96], n).astype(np.uint32) if rng.random() < 0.7 else None
    volume_real = rng.choice([0.0, 0.5, np.nan, 2.0], n) if rng.random() < 0.5 else None
    return times, bid, ask, last, volume, flags, volume_real


def test_few_ticks_one_by_one_equal_the_numpy_path(monkeypatch):
    rng = np.random.default_rng(5)
    states = [None, TickRuleState(), TickRuleState(1.0, 1), TickRuleState(1.005, -1), TickRuleState(math.nan, 0)]
    for _ in range(3000):
        ticks = random_ticks(rng, int(rng.integers(0, tick_proxy.FEW_TICKS + 1)))
        state = states[int(rng.integers(0, len(states)))]
        got, got_state = classify_ticks(*ticks, state=state)
        with monkeypatch.context() as patch, np.errstate(invalid="ignore"):
            patch.setattr(tick_proxy, "FEW_TICKS", -1)
            expected, expected_state = classify_ticks(*ticks, state=state)
        assert all(same(getattr(got, c), getattr(expected, c)) for c in ("time_ms", "price", "qty", "is_sell"))
        counts = ("by_flag", "by_tick_rule", "unclassified", "quote_updates", "invalid")
        assert [getattr(got, c) for c in counts] == [getattr(expected, c) for c in counts]
        assert repr(got_state) == repr(expected_state)
        assert type(got_state.last_price) is type(expected_state.last_price)


def test_ingest_feeds_the_engine_as_add_ticks_does(monkeypatch):
    """The poll's path (classifier lists straight into the engine) leaves the same engine state,
    counters and tick-rule state as classifying into arrays and adding the batch, with the
    engine's per-trade path turned off for the reference."""
    rng = np.random.default_rng(7)
    fast, reference = tick_proxy.TickFlowProxy(), tick_proxy.TickFlowProxy()
    start = 1_700_000_000_000
    for _ in range(1500):
        n = int(rng.integers(0, tick_proxy.FEW_TICKS + 8))
        ticks = list(random_ticks(rng, n))
        spread = rng.choice([1000, 5000, 60_000])  # from one second to a minute per tick
        ticks[0] = start + np.sort(rng.integers(0, spread * max(n, 1), n)).astype(np.int64)
        start = int(ticks[0][-1]) if n else start
        if rng.random() < 0.03:
            fast.mark_discontinuity(SYM)
            reference.mark_discontinuity(SYM)
        got = fast.ingest(SYM, *ticks)
        with monkeypatch.context() as patch, np.errstate(invalid="ignore"):
            patch.setattr(order_flow, "FEW_TRADES", 0)
            expected = reference.add_ticks(SYM, *ticks)
        assert got == len(expected)
        assert repr(fast.counters(SYM)) == repr(reference.counters(SYM))
        assert repr(fast._book(SYM).state) == repr(reference._book(SYM).state)
        assert fast._book(SYM).next_id == reference._book(SYM).next_id
        if SYM in reference.engine.symbols:
            assert engine_state(fast.engine) == engine_state(reference.engine)


def _tick_frame(columns: dict, unit: str = "ms") -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    index = pd.DatetimeIndex(pd.to_datetime(np.arange(n) * 1000 + 1_700_000_000_123, unit="ms", utc=True),
                             name="time").as_unit(unit)
    return pd.DataFrame(columns, index=index)


@pytest.mark.parametrize("extra", [{}, {"note": "x"}, {"flags": np.full(9, 2 ** 60 + 6, dtype=np.uint64)},
                                   {"flags": np.full(9, 6.0)}])
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_frame_columns_read_the_frame_at_once_with_the_same_result(extra, unit):
    rng = np.random.default_rng(6)
    _, bid, ask, last, _, flags, volume_real = random_ticks(rng, 9)
    columns = {"bid": bid, "ask": ask, "last": np.zeros(9) if last is None else last,
               "volume": np.arange(9, dtype=np.uint64), "flags": np.full(9, 6, np.uint32) if flags is None else flags,
               "volume_real": np.zeros(9) if volume_real is None else volume_real}
    frame = _tick_frame({**columns, **{k: (np.full(9, v) if isinstance(v, str) else v) for k, v in extra.items()}},
                        unit)
    got = frame_columns(frame)
    assert same(got["time_ms"], frame.index.as_unit("ms").asi8.astype(np.int64))
    one_by_one = {"time_ms": got["time_ms"], **{c: frame[c].to_numpy() for c in columns}}
    a, state_a = classify_ticks(**got)
    b, state_b = classify_ticks(**one_by_one)
    assert repr((a, state_a)) == repr((b, state_b))
    if "flags" in extra and extra["flags"].dtype == np.uint64:
        assert got["flags"].dtype == np.uint64  # beyond 2**53: read column by column, exactly


def test_frame_columns_without_optional_columns():
    got = frame_columns(_tick_frame({"bid": [1.0, 1.1], "ask": [1.1, 1.2]}))
    assert got["last"] is None and got["flags"] is None and got["volume"] is None
    with pytest.raises(ValueError, match="bid and ask"):
        frame_columns(_tick_frame({"bid": [1.0, 1.1]}))


@pytest.mark.parametrize("times, start, skip", [
    ([], 5, 0), ([1, 2, 3], 2, 0), ([1, 2, 2, 2, 3], 2, 2), ([1, 2, 2, 3], 2, 5), ([2, 2], 2, 2),
    ([3, 4], 2, 1), ([1, 1], 2, 0), ([5, 5, 5], 5, 1)])
def test_first_new_tick_is_the_first_the_mask_kept(times, start, skip):
    times = np.asarray(times, dtype=np.int64)
    keep = times >= start
    keep[np.flatnonzero(times == start)[:skip]] = False
    assert same(times[_first_new(times, start, skip):], times[keep])
    assert _first_new(times.tolist(), start, skip) == _first_new(times, start, skip)


# ------------------------------------------------------------------------------------------
# signals


def reference_alignment(starts, flow_bars):
    """The original per-bar loop (the specification of ``align_flow_to_bars``)."""
    by_start = {b.start_ms: b for b in flow_bars}
    cvd, delta, volume = (np.full(len(starts), np.nan) for _ in range(3))
    first = min(by_start) if by_start else None
    carried = math.nan
    for i, start in enumerate(np.asarray(starts, dtype=np.int64).tolist()):
        bar = by_start.get(start)
        if bar is not None:
            carried = bar.cvd
            cvd[i], delta[i], volume[i] = bar.cvd, bar.delta, bar.volume
        elif first is not None and start > first:
            cvd[i], delta[i], volume[i] = carried, 0.0, 0.0
    return cvd, delta, volume


def test_alignment_equals_the_per_bar_loop_also_on_unsorted_and_repeated_bars():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        minutes = rng.choice(np.arange(-20, 80), int(rng.integers(0, 60)), replace=rng.random() < 0.2)
        starts = T0 + 60_000 * (minutes if rng.random() < 0.2 else np.sort(minutes))
        bars = [FlowBar(int(s), 60, 1.0, 1.0, 1.0, 1.0, float(rng.random() * 5), float(rng.random() * 5), 3, 1.0,
                        float(rng.normal()), False) for s in starts]
        price_starts = T0 + 60_000 * np.sort(rng.choice(np.arange(-30, 90), int(rng.integers(0, 70)), replace=False))
        expected = reference_alignment(price_starts, bars)
        for flow in (bars, FlowBarColumns.from_bars(bars)):
            assert all(same(a, b) for a, b in zip(align_flow_to_bars(price_starts, flow), expected))
        for count in (0, 1, 5, 30, 100):
            by_list = typical_window_volume(bars, 60, count)
            assert repr(typical_window_volume(FlowBarColumns.from_bars(bars), 60, count)) == repr(by_list)


def test_last_atr_equals_the_indicator():
    rng = np.random.default_rng(8)
    for _ in range(1500):
        n, period = int(rng.integers(0, 260)), int(rng.choice([1, 2, 3, 14, 20]))
        close = 100 + np.cumsum(rng.normal(0, 1, n))
        high, low = close + rng.random(n), close - rng.random(n)
        if n > 3 and rng.random() < 0.2:
            high[: int(rng.integers(1, 3))] = np.nan
        expected = float(indicators.atr(high, low, close, period)[-1]) if n >= period else None
        if expected is not None and not (math.isfinite(expected) and expected > 0):
            expected = None
        assert repr(last_atr(high, low, close, period)) == repr(expected)
        assert repr(indicators.atr_last(high, low, close, period)) == repr(float(indicators.atr(
            high, low, close, period)[-1]) if n else float("nan"))


def test_bar_arrays_equal_the_columns_read_one_by_one():
    n = 50
    index = pd.DatetimeIndex([datetime(2026, 1, 5, tzinfo=timezone.utc) + timedelta(minutes=i) for i in range(n)])
    rng = np.random.default_rng(9)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    frame = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close,
                          "tick_volume": rng.integers(1, 99, n).astype(np.uint64),
                          "spread": np.full(n, 12, np.int32)}, index=index)
    for bars in (frame, frame.drop(columns="tick_volume")):  # a reader's frame may lack tick volume: NaN
        starts, high, low, close_, volume = bar_arrays(BarSeries.from_frame(bars))
        assert same(starts, bars.index.as_unit("ms").asi8.astype(np.int64))
        for got, name in ((high, "high"), (low, "low"), (close_, "close")):
            assert same(got, bars[name].to_numpy(dtype=np.float64))
        assert same(volume, bars["tick_volume"].to_numpy(dtype=np.float64) if "tick_volume" in bars
                    else np.full(n, np.nan))


def test_signal_inputs_from_columns_equal_those_from_bars():
    rng = np.random.default_rng(10)
    engine = OrderFlowEngine()
    for ids, price, qty, times, maker, _ in random_batches(rng, 150):
        engine.add_trades(SYM, ids, price, qty, times, maker)
    flow_bars = engine.bars(SYM, 60, False)
    n = 200
    last_start = flow_bars[-1].start_ms
    index = pd.DatetimeIndex(pd.to_datetime(last_start - 60_000 * np.arange(n)[::-1], unit="ms", utc=True))
    close = 100 + np.cumsum(rng.normal(0, 0.3, n))
    bars = BarSeries.from_frame(pd.DataFrame({"open": close, "high": close + 0.2, "low": close - 0.2, "close": close,
                                              "tick_volume": np.ones(n)}, index=index))
    window = engine.get_metrics(SYM, 60, last_start + 59_999)
    params = SignalParams()
    a = signal_inputs(bars, flow_bars, window, float(close[-1]), params)
    b = signal_inputs(bars, engine.bar_columns(SYM, 60, False), window, float(close[-1]), params)
    for name in ("high", "low", "close", "bar_volume", "cvd", "delta", "flow_volume"):
        assert same(getattr(a, name), getattr(b, name))
    assert (a.typical_volume, a.atr) == (b.typical_volume, b.atr) and a.typical_volume is not None


def test_classifier_weights_follow_a_changed_mapping():
    weights = {"absorption": 1.0, "vwap_deviation": 1.0}
    from engines.order_flow_signals import Signal
    signals = [Signal("absorption", "buy", 1.0)]
    assert classify(signals, weights).probability == 0.5
    weights["absorption"] = 3.0  # the memo is keyed on the contents, not the object
    assert classify(signals, weights).probability == 0.75
    with pytest.raises(ValueError, match="unknown signal weights"):
        classify(signals, {"nope": 1.0})


@pytest.mark.parametrize("history", [40, 1440])
def test_signal_inputs_from_the_recent_flow_bars_equal_those_from_all(history):
    """The monitor copies only the flow bars ``flow_bars_since`` names: the signal inputs are
    those from every stored bar, whatever the price bars' span (before, across or after the
    tape's start), the window's length and the typical-volume bar count."""
    rng = np.random.default_rng(11)
    engine = OrderFlowEngine(windows_seconds=(30, 60, 300), bar_history=history)
    checked = 0
    for ids, price, qty, times, maker, _ in random_batches(rng, 120):
        engine.add_trades(SYM, ids, price, qty, times, maker)
        every = engine.bar_columns(SYM, 60, False)
        if len(every) == 0:
            continue
        n = int(rng.integers(15, 60))
        last_start = int(every.start_ms[-1]) + 60_000 * int(rng.integers(-3, 3))
        index = pd.DatetimeIndex(pd.to_datetime(last_start - 60_000 * np.arange(n)[::-1], unit="ms", utc=True))
        close = 100 + np.cumsum(rng.normal(0, 0.3, n))
        bars = BarSeries.from_frame(pd.DataFrame({"open": close, "high": close + 0.2, "low": close - 0.2,
                                                  "close": close, "tick_volume": np.ones(n)}, index=index))
        window = engine.get_metrics(SYM, int(rng.choice([30, 60, 300])), last_start + int(rng.integers(0, 200_000)))
        params = SignalParams(absorption_typical_bars=int(rng.choice([1, 5, 30])))
        since = flow_bars_since(int(bars.time_s[0]) * 1000, window, params)
        recent = engine.bar_columns(SYM, 60, False, since_ms=since[0], before=since[1])
        assert len(recent) <= len(every)
        a = signal_inputs(bars, every, window, float(close[-1]), params)
        b = signal_inputs(bars, recent, window, float(close[-1]), params)
        for name in ("high", "low", "close", "bar_volume", "cvd", "delta", "flow_volume"):
            assert same(getattr(a, name), getattr(b, name))
        assert repr((a.typical_volume, a.atr)) == repr((b.typical_volume, b.atr))
        checked += len(recent) < len(every)
    assert checked > 10


def test_bar_columns_since_are_the_tail_of_all():
    rng = np.random.default_rng(12)
    engine = OrderFlowEngine(windows_seconds=(30, 60))
    for ids, price, qty, times, maker, _ in random_batches(rng, 80):
        engine.add_trades(SYM, ids, price, qty, times, maker)
    for forming in (True, False):
        every = engine.bar_columns(SYM, 60, forming)
        assert len(every) > 10
        for since in (every.start_ms[0] - 1, every.start_ms[0], every.start_ms[5], every.start_ms[5] + 1):
            for before in (0, 1, 3, 10_000):
                got = engine.bar_columns(SYM, 60, forming, since_ms=int(since), before=before)
                first = max(0, int(np.searchsorted(every.start_ms, since)) - before)
                assert all(same(getattr(got, c), getattr(every, c)[first:]) for c in COLUMNS)


def test_absorption_possible_is_false_only_when_absorption_finds_nothing_at_any_atr():
    from engines.order_flow_signals import absorption, absorption_possible
    rng = np.random.default_rng(14)
    params = SignalParams()
    possible = 0
    for _ in range(3000):
        buy, sell = (float(v) for v in rng.choice([0.0, 0.5, 1.0, 3.0, 8.0], 2) * rng.random(2))
        high = float(rng.choice([np.nan, 100.0 + rng.random()]))
        args = (buy, sell, None if rng.random() < 0.05 else high, 99.5, None if rng.random() < 0.05 else 100.0,
                float(rng.choice([0.0, 0.5, 2.0, np.nan])) if rng.random() < 0.9 else None)
        if absorption_possible(*args, params):
            possible += 1
            continue
        assert all(absorption(*args, atr, params) is None for atr in (None, 0.0, 1e-6, 0.5, 1e6, np.nan))
    assert 100 < possible < 2900


def test_the_window_alone_rules_absorption_out_as_absorption_possible_does():
    """``classifier_may_pass`` reads the typical volume only when ``_window_may_absorb``."""
    from types import SimpleNamespace

    from engines.order_flow_signals import absorption_possible
    from monitors.order_flow_rules import _window_may_absorb
    rng = np.random.default_rng(15)
    params = SignalParams()
    ruled_out = 0
    for _ in range(3000):
        buy, sell = (float(v) for v in rng.choice([0.0, 0.5, 1.0, 3.0, 8.0], 2) * rng.random(2))
        window = SimpleNamespace(buy_volume=buy, sell_volume=sell, vwap=None if rng.random() < 0.05 else 100.0,
                                 price_high=None if rng.random() < 0.05 else float(rng.choice([np.nan, 100.5])),
                                 price_low=None if rng.random() < 0.05 else 99.5)
        if _window_may_absorb(window, params):
            continue
        ruled_out += 1
        for typical in (None, 0.0, 1e-9, 0.5, 2.0, 1e9, np.nan):
            assert not absorption_possible(buy, sell, window.price_high, window.price_low, window.vwap, typical,
                                           params)
    assert 100 < ruled_out < 2900


@pytest.mark.parametrize("weights,threshold,expected", [
    (None, 0.75, False), (None, 0.70, True), (None, 0.70 + 3e-9, False),
    ({"absorption": 0.0, "vwap_deviation": 1.0}, 1.0, True), ({"absorption": 1.0, "vwap_deviation": 1.0}, 0.51, False)])
def test_can_meet_threshold_bounds_the_classifier(weights, threshold, expected):
    from engines.order_flow_signals import SIGNAL_NAMES, Signal, can_meet_threshold
    others = [n for n in SIGNAL_NAMES if n != "absorption"]
    assert can_meet_threshold(others, weights, threshold) is expected
    best = classify([Signal(n, "buy", 1.0) for n in others], weights, threshold)
    assert best.meets_threshold is expected  # the bound is the score at full strength


def test_few_series_lists_equal_the_columns_as_lists():
    """A small ``TickSeries`` (MT5 dtypes: uint64 volume, uint32 flags) goes to lists with the
    values and types ``frame_columns`` then ``tolist`` give; a large one is left to the arrays."""
    from engines.ticks import TickSeries
    rng = np.random.default_rng(12)
    for n in (0, 1, 5, tick_proxy.FEW_TICKS):
        time_ms = np.sort(rng.integers(0, 10**12, n)).astype(np.int64)
        bid = rng.random(n) + 1.0
        series = TickSeries(time_ms, bid, bid + 0.1, rng.random(n), rng.integers(0, 9, n).astype(np.uint64),
                            rng.integers(0, 128, n).astype(np.uint32), rng.random(n))
        lists = tick_proxy.few_series_lists(series)
        expected = {name: values.tolist() for name, values in frame_columns(series).items()}
        assert repr(lists) == repr(expected)
    big = TickSeries(*(np.zeros(tick_proxy.FEW_TICKS + 1, dtype=np.int64 if i == 0 else np.float64) for i in range(7)))
    assert tick_proxy.few_series_lists(big) is None
