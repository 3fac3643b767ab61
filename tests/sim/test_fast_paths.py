"""The per-call fast paths of the simulated terminal answer exactly as the general paths do.

``SymbolMarket.rates``/``mt5_ticks`` slice prebuilt one-period tables, cycle by cycle; the
references here (``_reference_rates``, the market's ``_mt5_ticks_columns``) build any window
column by column, as the terminal did before the tables. The terminal skips the fault injector
when nothing is armed and memoizes per-instant answers.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from execution.simterminal import SimTerminal, make_test_terminal
from execution.simterminal import constants as c
from execution.simterminal.market import TIMEFRAME_MS, SymbolMarket, _max_min_last, series_from_ticks
from execution.simterminal.types import RATES_DTYPE
from tests.sim.conftest import MONDAY_NOON
from tests.sim.helpers import DATA, market_order
from monitors.clock import FakeClock

TIMEFRAMES = (c.TIMEFRAME_M1, c.TIMEFRAME_M5, c.TIMEFRAME_M15, c.TIMEFRAME_H1, c.TIMEFRAME_H4, c.TIMEFRAME_D1,
              c.TIMEFRAME_W1)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _same_types(a: list[tuple], b: list[tuple]) -> bool:
    return [tuple(map(type, row)) for row in a] == [tuple(map(type, row)) for row in b]


def _reference_rates(market: SymbolMarket, timeframe: int, g0: int, g1: int, now_ms: int) -> np.ndarray:
    """``SymbolMarket.rates`` built column by column from the aggregate (the former code)."""
    agg, s = market.aggregate(timeframe), market.series
    n = max(0, g1 - g0)
    out = np.empty(n, dtype=RATES_DTYPE)
    if not n:
        return out
    idx = np.arange(g0, g1, dtype=np.int64)
    cycle = idx // len(agg.time)
    k = idx - cycle * len(agg.time)
    starts = agg.time[k] + market.shift_ms + cycle * s.period_ms
    out["time"] = (starts + s.server_offset_ms) // 1000
    for name in ("open", "high", "low", "close", "tick_volume", "spread", "real_volume"):
        out[name] = getattr(agg, name)[k]
    if int(starts[-1]) + TIMEFRAME_MS[timeframe] > now_ms:
        _reference_fill_partial(market, out, n - 1, agg, int(k[-1]),
                                now_ms - market.shift_ms - int(cycle[-1]) * s.period_ms)
    return out


def _reference_fill_partial(market: SymbolMarket, out: np.ndarray, row: int, agg, k: int, phase: int) -> None:
    """``SymbolMarket._fill_partial`` as it was, with numpy reads and searches throughout."""
    s = market.series
    b0, b1 = int(agg.first_bar[k]), int(agg.end_bar[k])
    started = min(int(s.bar_time.searchsorted(phase, side="right")), b1)
    if started <= b0:
        return
    last = started - 1
    partial = phase < int(s.bar_time[last]) + s.bar_ms
    complete_end = last if partial else started
    high = float(s.bar_high[b0:complete_end].max()) if complete_end > b0 else -np.inf
    low = float(s.bar_low[b0:complete_end].min()) if complete_end > b0 else np.inf
    volume = int(s.bar_tick_volume[b0:complete_end].sum()) if complete_end > b0 else 0
    if partial:
        t0 = int(s.bar_first_tick[last])
        tn = int(s.tick_time.searchsorted(phase, side="right"))
        prices = s.tick_bid[t0:max(t0, tn)]
        open_price = float(s.bar_open[last])
        p_max, p_min = (float(prices.max()), float(prices.min())) if len(prices) else (open_price, open_price)
        high = max(high, open_price, p_max)
        low = min(low, open_price, p_min)
        close = float(prices[-1]) if len(prices) else open_price
        if s.recorded_tick_volume and s.generated_ticks:
            elapsed = (phase - int(s.bar_time[last])) / s.bar_ms
            volume += int(int(s.bar_tick_volume[last]) * elapsed)
        else:
            volume += max(1, len(prices))
    else:
        close = float(s.bar_close[complete_end - 1])
    if started - b0 == 1:
        spread, real_volume = int(s.bar_spread[b0]), int(s.bar_real_volume[b0])
    else:
        spread = int(s.bar_spread[b0:started].min())
        real_volume = int(s.bar_real_volume[b0:started].sum())
    out[row] = (out["time"][row], s.bar_open[b0], high, low, close, volume, spread, real_volume)


def _check_market(market: SymbolMarket, rng: random.Random, anchor_ms: int) -> None:
    """Random windows (inside one cycle, across cycle ends, long and short) at random instants."""
    for timeframe in TIMEFRAMES:
        agg = market.aggregate(timeframe)
        k_count = len(agg.time)
        for _ in range(60):
            now = anchor_ms + rng.randint(-30, 60) * 86_400_000 + rng.randint(0, 86_399_999)
            g_hi = market.last_bar_index(agg, now) - rng.choice([0, 0, 1, 5])
            g_lo = g_hi - rng.choice([0, 1, 2, 4, 60, k_count, k_count + 7]) + 1
            fast = market.rates(timeframe, g_lo, g_hi + 1, now)
            slow = _reference_rates(market, timeframe, g_lo, g_hi + 1, now)
            assert _same(fast, slow), (timeframe, g_lo, g_hi, now)
            rows = market.rate_rows(timeframe, g_lo, g_hi + 1, now)
            assert rows == fast.tolist() and _same_types(rows, fast.tolist()), (timeframe, g_lo, g_hi, now)
    ticks = market.series.ticks
    for _ in range(300):
        g0 = rng.randint(-ticks, 3 * ticks)
        g1 = g0 + rng.choice([0, 1, 2, 7, 100, ticks, ticks + 3])
        assert _same(market.mt5_ticks(g0, g1), market._mt5_ticks_columns(g0, g1)), (g0, g1)


def test_table_slices_equal_column_building_for_bar_feeds(mt5: SimTerminal) -> None:
    rng = random.Random(7)
    anchor = int(mt5.anchor.timestamp() * 1000)
    for market in mt5._markets.values():
        _check_market(market, rng, anchor)


def test_table_slices_equal_column_building_for_tick_feeds(mt5: SimTerminal) -> None:
    """A tick recording (real ticks, bars built from bids), with a server offset of 2 h."""
    rng = np.random.default_rng(3)
    spec = mt5._specs["XAUUSD"]
    start = pd.Timestamp("2026-01-05 00:00:00", tz="UTC")
    times = start + pd.to_timedelta(np.cumsum(rng.integers(50, 20_000, 40_000)), unit="ms")
    bid = np.round(2000 + np.cumsum(rng.normal(0, 0.05, len(times))), 2)
    frame = pd.DataFrame({"bid": bid, "ask": bid + 0.2}, index=pd.DatetimeIndex(times))
    series = series_from_ticks(frame, spec, 7_200_000)
    anchor = int(start.timestamp() * 1000) + 3 * 86_400_000 + 12_345
    _check_market(SymbolMarket("XAUUSD", spec, series, anchor), random.Random(11), anchor)


@pytest.mark.parametrize("values", [[1.5], [2.0, 1.0, 3.0], [1.0, float("nan"), 3.0], [float("nan")],
                                    [float("inf"), float("-inf"), 1.0], list(np.linspace(0, 1, 40))])
def test_max_min_last_agrees_with_numpy(values: list[float]) -> None:
    array = np.asarray(values, dtype=np.float64)
    expected = (float(array.max()), float(array.min()), float(array[-1]))
    assert np.array_equal(np.asarray(_max_min_last(array)), np.asarray(expected), equal_nan=True)


def test_memoized_tick_follows_the_clock(mt5: SimTerminal, clock: FakeClock) -> None:
    first = mt5.symbol_info_tick("XAUUSD")
    assert mt5.symbol_info_tick("XAUUSD") == first
    market = mt5._markets["XAUUSD"]
    for _ in range(20):  # until the market has a newer tick
        clock.advance(17)
        tick = mt5.symbol_info_tick("XAUUSD")
        view = int(clock.now().timestamp() * 1000)
        quote = market.quote_at_index(market.tick_index(view))
        assert tick._asdict() == {"time": quote.time_ms // 1000, "bid": quote.bid, "ask": quote.ask, "last": 0.0,
                                  "volume": 0, "time_msc": quote.time_ms, "flags": quote.flags, "volume_real": 0.0}
    assert tick.time_msc > first.time_msc


def test_faults_armed_after_idle_calls_still_fire(mt5: SimTerminal, clock: FakeClock) -> None:
    assert mt5.faults.idle
    assert mt5.account_info() is not None
    mt5.faults.schedule("ipc_error", count=1, function="account_info")
    assert not mt5.faults.idle
    assert mt5.account_info() is None
    assert mt5.last_error() == (c.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
    assert mt5.faults.idle and mt5.account_info() is not None
    before = mt5.symbol_info_tick("XAUUSD")
    mt5.faults.schedule("stale_quotes", seconds=120)
    clock.advance(90)
    assert mt5.symbol_info_tick("XAUUSD") == before  # the view is frozen
    clock.advance(60)
    assert mt5.symbol_info_tick("XAUUSD").time_msc >= before.time_msc
    assert mt5.faults.idle


def test_forming_rows_reuse_the_instants_positions_only_in_its_cycle(mt5: SimTerminal) -> None:
    """The forming bar counts its source bars and ticks from the positions the instant's quote
    also reads (one search per instant): the same row as searching for them; a bar of another
    cycle than the instant's (across the wrap) searches for itself."""
    market = mt5._markets["XAUUSD"]
    s = market.series
    rng = random.Random(5)
    anchor = int(mt5.anchor.timestamp() * 1000)
    for timeframe in (c.TIMEFRAME_M1, c.TIMEFRAME_M5, c.TIMEFRAME_H1):
        agg = market.aggregate(timeframe)
        for _ in range(100):
            v_ms = anchor + rng.randint(-30, 60) * 86_400_000 + rng.randint(0, 86_399_999)
            cycle, phase = market._locate(v_ms)
            instant = market._settle(v_ms)
            for bar_cycle in (cycle, cycle - 1):  # the instant's cycle, and the one before (a bar across the wrap)
                bar_phase = phase + (cycle - bar_cycle) * s.period_ms  # the same instant in that cycle's phase
                k = int(agg.time.searchsorted(bar_phase, side="right")) - 1
                if k < 0:
                    continue
                elsewhere = (None, (bar_cycle + 7, 0, 0), 0)  # an instant of another cycle: searched
                row = market._partial_row(agg, k, bar_phase, bar_cycle, 0, instant)
                assert row == market._partial_row(agg, k, bar_phase, bar_cycle, 0, elsewhere)
            assert market.tick_index(v_ms) == cycle * s.ticks + int(s.tick_time.searchsorted(phase, side="right")) - 1


def test_rate_rows_answer_as_the_array_does(mt5: SimTerminal) -> None:
    """The adapter's rows form of ``copy_rates_from_pos`` (the simulator only): the array's rows,
    the same refusals."""
    for timeframe in (*TIMEFRAMES, c.TIMEFRAME_MN1):
        for start, count in ((0, 1), (0, 4), (1, 3), (0, 300), (5, 40)):
            array = mt5.copy_rates_from_pos("XAUUSD", timeframe, start, count)
            rows = mt5.copy_rates_from_pos_rows("XAUUSD", timeframe, start, count)
            assert rows == array.tolist() and _same_types(rows, array.tolist()), (timeframe, start, count)
            for shift_s in (7200, -3600):  # the adapter's server-to-UTC shift, made by the terminal
                shifted = [(row[0] - shift_s,) + row[1:] for row in array.tolist()]
                rows = mt5.copy_rates_from_pos_rows("XAUUSD", timeframe, start, count, shift_s)
                assert rows == shifted and _same_types(rows, shifted), (timeframe, start, count, shift_s)
    for args in (("NOPE", c.TIMEFRAME_M1, 0, 4), ("XAUUSD", c.TIMEFRAME_M1, 0, 0), ("XAUUSD", 12345, 0, 4)):
        assert mt5.copy_rates_from_pos(*args) is None
        refused = mt5.last_error()
        assert mt5.copy_rates_from_pos_rows(*args) is None and mt5.last_error() == refused, args


def test_rate_rows_read_the_frozen_view_while_quotes_are_stale(mt5: SimTerminal, clock: FakeClock) -> None:
    """While a stale-quotes fault freezes the view, the rows read are the frozen ones (as the
    array's are), and the live ones again once the fault is cleared."""
    before = mt5.copy_rates_from_pos_rows("XAUUSD", c.TIMEFRAME_M1, 0, 3)
    mt5.faults.schedule("stale_quotes", seconds=600)
    clock.advance(300)
    assert mt5.copy_rates_from_pos_rows("XAUUSD", c.TIMEFRAME_M1, 0, 3) == before
    mt5.faults.clear()
    assert mt5.copy_rates_from_pos_rows("XAUUSD", c.TIMEFRAME_M1, 0, 3) != before


def test_rates_positions_of_other_integer_types_are_read_as_plain_ints_are(mt5: SimTerminal) -> None:
    """The plain-int shortcut of the argument check: numpy integers still count as integers (one
    or both of them; read as plain ints, so an int32 count no longer overflows the window
    arithmetic), bools, floats and negative positions are still refused."""
    expected = mt5.copy_rates_from_pos_rows("XAUUSD", c.TIMEFRAME_M1, 1, 4)
    for start, count in ((np.int64(1), 4), (1, np.int32(4)), (np.int64(1), np.int64(4))):
        assert mt5.copy_rates_from_pos_rows("XAUUSD", c.TIMEFRAME_M1, start, count) == expected
    for start, count in ((True, 4), (1, True), (1.0, 4), (1, 4.0), (-1, 4)):
        assert mt5.copy_rates_from_pos_rows("XAUUSD", c.TIMEFRAME_M1, start, count) is None, (start, count)
        assert mt5.last_error()[0] == c.RES_E_INVALID_PARAMS


def test_table_rows_is_the_structured_tolist() -> None:
    """Field by field and zipped: the row-by-row conversion's tuples and types, NaN, signed zero
    and the largest unsigned volume included; empty stays empty."""
    from execution.simterminal.market import table_rows
    table = np.zeros(5, dtype=RATES_DTYPE)
    table["time"] = [-1, 0, 1, 2**40, 2**62]
    table["open"] = [np.nan, -0.0, 1e-300, np.inf, 1.5]
    table["high"] = [1.0, 2.0, np.nan, 3.0, 4.0]
    table["tick_volume"] = [0, 1, 2**64 - 1, 7, 8]
    table["spread"] = [-2**31, 0, 2**31 - 1, 3, 4]
    table["real_volume"] = [2**64 - 1, 0, 1, 2, 3]
    expected = table.tolist()
    rows = table_rows(table)
    assert [tuple(map(repr, row)) for row in rows] == [tuple(map(repr, row)) for row in expected]
    assert _same_types(rows, expected)
    assert table_rows(table[:0]) == []


def test_bucket_runs_equal_the_bucket_slice_reductions(mt5: SimTerminal) -> None:
    """Each source bar's running figures are its bucket's bars up to it, reduced (NaN, gaps too),
    and ``last_bar_index`` finds the bucket holding a bar."""
    from bisect import bisect_right
    market = mt5._markets["XAUUSD"]
    s = market.series
    for timeframe in TIMEFRAMES:
        agg = market.aggregate(timeframe)
        f = agg.forming
        for b in sorted(random.Random(timeframe).sample(range(s.bars), 300)):
            k = b if agg.unit else bisect_right(f.first_bar, b) - 1
            b0 = agg.first_bar.item(k)
            assert b0 <= b < agg.end_bar.item(k) and f.first_bar[k] == b0 and f.time[k] == agg.time.item(k)
            offset, (high, low, volume, spread, real) = market._bucket_runs(agg, k, b0, b)
            at = b - offset
            assert high[at] == s.bar_high[b0:b + 1].max() and low[at] == s.bar_low[b0:b + 1].min()
            assert volume[at] == s.bar_tick_volume[b0:b + 1].sum()
            assert spread[at] == s.bar_spread[b0:b + 1].min() and real[at] == s.bar_real_volume[b0:b + 1].sum()
            assert type(high[at]) is float and type(volume[at]) is int and type(spread[at]) is int


def test_bucket_runs_carry_nan_as_the_reductions_do() -> None:
    from execution.simterminal.market import PhaseSeries, SymbolMarket
    from execution.simterminal.symbols import load_symbol_specs
    bar_time = np.arange(6, dtype=np.int64) * 60_000
    high = np.array([1.0, np.nan, 2.0, 3.0, 1.0, 5.0])
    series = PhaseSeries(
        period_ms=7 * 86_400_000, window_ms=0, first_ms=0, bar_ms=60_000, server_offset_ms=0, bar_time=bar_time,
        bar_open=high, bar_high=high, bar_low=high, bar_close=high, bar_tick_volume=np.ones(6, dtype=np.uint64),
        bar_spread=np.arange(6, dtype=np.int32), bar_real_volume=np.zeros(6, dtype=np.uint64),
        bar_first_tick=np.arange(6, dtype=np.int64), recorded_tick_volume=True, tick_time=bar_time, tick_bid=high,
        tick_ask=high, tick_flags=np.zeros(6, dtype=np.uint32), tick_jump=np.ones(6, dtype=bool),
        generated_ticks=False)
    spec = load_symbol_specs(DATA / "sim_symbols.json")["XAUUSD"]
    market = SymbolMarket("XAUUSD", spec, series, 0)
    agg = market.aggregate(c.TIMEFRAME_M5)
    offset, (run_high, _, _, run_spread, _) = market._bucket_runs(agg, 0, 0, 4)
    assert offset == 0 and run_high[0] == 1.0 and all(np.isnan(run_high[b]) for b in range(1, 5))
    assert run_spread == [0, 0, 0, 0, 0]
    offset, (run_high, _, _, run_spread, _) = market._bucket_runs(agg, 1, 5, 6)  # the next bucket: bar 5 alone
    assert offset == 5 and run_high == [5.0] and run_spread == [5]
    offset, (run_high, _, _, run_spread, _) = market._bucket_runs(agg, 0, 0, 0)  # read as the bucket opens:
    assert offset == 0 and run_high[0] == 1.0 and run_spread[0] == 0  # its first bar's own figures, no accumulation
    offset, (run_high, *_) = market._bucket_runs(agg, 0, 0, 1)  # a bar later: accumulated (the NaN carried)
    assert offset == 0 and type(run_high) is list and np.isnan(run_high[1])


def test_coarse_timeframes_keep_no_figures_per_source_bar() -> None:
    """A coarse timeframe's aggregate holds per-bucket arrays only: its memory does not grow with
    the source bars (running figures were once kept per source bar and timeframe: 17 MB for H1
    over a year of M1), and building it allocates no (bucket x slot) grid."""
    import tracemalloc
    from execution.simterminal.market import PhaseSeries
    minutes = np.arange(365 * 1440, dtype=np.int64)
    bar_time = minutes[(minutes // 1440) % 7 < 5] * 60_000  # a year of weekday M1 bars
    n = len(bar_time)
    flat = np.full(n, 100.0)
    series = PhaseSeries(
        period_ms=53 * 7 * 86_400_000, window_ms=0, first_ms=0, bar_ms=60_000, server_offset_ms=0,
        bar_time=bar_time, bar_open=flat, bar_high=flat, bar_low=flat, bar_close=flat,
        bar_tick_volume=np.ones(n, dtype=np.uint64), bar_spread=np.zeros(n, dtype=np.int32),
        bar_real_volume=np.zeros(n, dtype=np.uint64), bar_first_tick=np.arange(n, dtype=np.int64),
        recorded_tick_volume=True, tick_time=bar_time, tick_bid=flat, tick_ask=flat,
        tick_flags=np.zeros(n, dtype=np.uint32), tick_jump=np.ones(n, dtype=bool), generated_ticks=False)
    tracemalloc.start()
    try:
        series.aggregate(c.TIMEFRAME_H1)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 2_000_000, kept  # 6,240 buckets: a few per-bucket arrays
    assert peak < 12 * n, peak  # the reduceat temporaries, no per-bar grid


def test_row_blocks_answer_as_the_table_slice_does(mt5: SimTerminal) -> None:
    """Any window (inside a block, across a block edge, longer than a block) after any history of
    reads (blocks evicted and converted again) is the table slice's ``tolist``."""
    from execution.simterminal.market import ROW_BLOCK, ROW_BLOCKS_KEPT, RowBlocks
    market = mt5._markets["XAUUSD"]
    table = market._rates_table(c.TIMEFRAME_M1, market.aggregate(c.TIMEFRAME_M1))[0]
    blocks = RowBlocks(table)
    rng = random.Random(13)
    for _ in range(400):
        start = rng.randrange(len(table))
        stop = min(len(table), start + rng.choice([1, 2, 4, ROW_BLOCK - 1, ROW_BLOCK, 3 * ROW_BLOCK]))
        rows = blocks.rows(start, stop)
        assert rows == table[start:stop].tolist() and _same_types(rows, table[start:stop].tolist())
        assert len(blocks._blocks) <= ROW_BLOCKS_KEPT


@pytest.mark.parametrize("seed", range(5))
def test_bisect_near_is_bisect_right(seed: int) -> None:
    import bisect
    from execution.simterminal.market import _bisect_near
    rng = random.Random(seed)
    values = memoryview(np.cumsum(np.array([rng.choice([0, 1, 1, 5]) for _ in range(60)], dtype=np.int64)))
    for _ in range(300):
        x = rng.randint(-2, values[-1] + 2)
        lo = rng.randint(0, bisect.bisect_right(values, x))  # every element before ``lo`` is at most ``x``
        assert _bisect_near(values, x, lo) == bisect.bisect_right(values, x)


def test_bar_and_tick_positions_follow_the_clock_either_way(mt5: SimTerminal) -> None:
    """The positions searched from the last answer (forward a bar, forward far, backwards, across
    a cycle) are the full searches'."""
    market = mt5._markets["XAUUSD"]
    s = market.series
    anchor = int(mt5.anchor.timestamp() * 1000)
    rng = random.Random(17)
    v_ms = anchor
    for _ in range(600):
        v_ms += rng.choice([0, 1, 59_999, 60_000, 60_000, 60_001, 120_000, 600_000, -60_000, -86_400_000,
                            7 * 86_400_000, -8 * 86_400_000])
        cycle, phase = market._locate(v_ms)
        assert market._bar_position(v_ms) == (cycle, phase, int(s.bar_time.searchsorted(phase, side="right")) - 1)
        assert market.tick_index(v_ms) == cycle * s.ticks + int(s.tick_time.searchsorted(phase, side="right")) - 1


def test_tick_slice_inside_a_cycle_equals_the_indexed_ticks(mt5: SimTerminal) -> None:
    market = mt5._markets["XAUUSD"]
    s = market.series
    rng = random.Random(19)
    for _ in range(200):
        g0 = rng.randint(-s.ticks, 2 * s.ticks)
        g1 = g0 + rng.choice([0, 1, 7, 300, s.ticks + 5])
        fast = market.tick_slice(g0, g1)
        idx = np.arange(g0, g1, dtype=np.int64)
        cycle = idx // s.ticks
        i = idx - cycle * s.ticks
        expected = (s.tick_time[i] + market.shift_ms + cycle * s.period_ms, s.tick_bid[i], s.tick_ask[i],
                    s.tick_jump[i])
        for got, want in zip((fast.time_ms, fast.bid, fast.ask, fast.jump), expected):
            assert _same(np.asarray(got), want) or (not len(want) and not len(got)), (g0, g1)


def test_tick_slice_prices_cannot_be_written_through(mt5: SimTerminal) -> None:
    """The views of the shared recording are read-only: a write raises instead of rewriting the
    market for every terminal and alias in the process."""
    market = mt5._markets["XAUUSD"]
    ticks, before = market.tick_slice(10, 20), market.quote_at_index(10).bid
    for column in (ticks.bid, ticks.ask, ticks.jump):
        with pytest.raises(ValueError):
            column[0] = 0
    assert market.quote_at_index(10).bid == before


def test_faults_idle_follows_every_change(mt5: SimTerminal, clock: FakeClock) -> None:
    faults = mt5.faults
    faults.schedule("disconnect", seconds=30)
    assert not faults.idle and mt5.account_info() is None
    clock.advance(31)
    assert mt5.account_info() is not None and faults.idle  # the window ended: the call saw it, none armed now
    assert not mt5.terminal_info().connected and mt5.initialize() is True
    faults.schedule("ipc_error", count=2)
    faults.schedule("reject", retcode=mt5.TRADE_RETCODE_REJECT)
    faults.clear("ipc_error")
    assert not faults.idle
    faults.clear()
    assert faults.idle
    faults.schedule("autotrading_off")
    assert faults.idle  # not a fault a call's answer can see before it is asked


def test_ticks_between_as_rows_equals_the_tick_slice(mt5: SimTerminal) -> None:
    """A few ticks inside one cycle come as ``TickRows`` of plain numbers with the slice's values;
    more than ``TICK_ROWS_MAX``, or a span crossing a cycle's end, as the arrays."""
    from execution.simterminal.market import TICK_ROWS_MAX, TickRows, TickSlice
    market = mt5._markets["XAUUSD"]
    s = market.series
    period_end = market.window_virtual_ms + s.period_ms
    rng = random.Random(23)
    for _ in range(300):
        after = rng.randint(market.window_virtual_ms - 3_600_000, period_end + 3_600_000)
        upto = after + rng.choice([0, 1, 15_000, 60_000, 300_000, 86_400_000])
        got = market.ticks_between(after, upto)
        g0, g1 = market.tick_index(after) + 1, market.tick_index(upto) + 1
        want = market.tick_slice(g0, g1)
        crosses = g0 // s.ticks != (g1 - 1) // s.ticks and g1 > g0
        if g1 - g0 > TICK_ROWS_MAX or crosses:
            assert type(got) is TickSlice
            continue
        assert type(got) is TickRows
        for rows, column in zip((got.time_ms, got.bid, got.ask, got.jump), (want.time_ms, want.bid, want.ask, want.jump)):
            assert rows == column.tolist() and [type(v) for v in rows] == [type(v) for v in column.tolist()]


def test_first_stop_hit_over_rows_equals_the_array_scan() -> None:
    """The tick-by-tick scan of ``TickRows`` finds the hit numpy's element-wise scan finds: longs
    and shorts, either level unset, NaN prices, jumps, both levels reached by one tick."""
    from execution.simterminal.book import Position
    from execution.simterminal.market import TickRows, TickSlice
    from execution.simterminal.terminal import _first_stop_hit
    rng = random.Random(29)
    for _ in range(3000):
        n = rng.randint(0, 9)
        bid = [rng.choice([99.0, 99.5, 100.0, 100.5, 101.0, float("nan")]) for _ in range(n)]
        ask = [b + 0.25 for b in bid]
        times = [1_000 * i for i in range(n)]
        jump = [rng.random() < 0.3 for _ in range(n)]
        kind = rng.choice([c.POSITION_TYPE_BUY, c.POSITION_TYPE_SELL])
        sl, tp = rng.choice([0.0, 99.5, 100.0, 100.75]), rng.choice([0.0, 100.25, 100.5, 99.75])
        position = Position(ticket=1, symbol="XAUUSD", type=kind, volume=0.1, price_open=100.0, sl=sl, tp=tp,
                            time_ms=0, time_update_ms=0, magic=0, reason=0, comment="", margin=0.0)
        arrays = TickSlice(np.array(times, dtype=np.int64), np.array(bid), np.array(ask), np.array(jump, dtype=bool))
        want = _first_stop_hit(position, arrays)
        got = _first_stop_hit(position, TickRows(times, bid, ask, jump))
        assert got == want and [type(v) for v in got or ()] == [type(v) for v in want or ()], (kind, sl, tp, bid, jump)


def test_the_call_instant_reads_the_clocks_timestamp_only_while_the_clock_shows_it() -> None:
    """``_call_ms`` takes ``Clock.timestamp()`` while the clock still reads the call's instant,
    else the instant's own ``timestamp()``: the same milliseconds either way."""
    clock = FakeClock()
    terminal = SimTerminal(clock, None, symbols=("EURUSD",))
    terminal._call_now = clock.now()
    assert terminal._call_ms() == SimTerminal._ms(clock.now())
    instant = terminal._call_now = clock.now()
    terminal._call_ms_memo = None  # (the same instant object as above: its kept answer would be read)
    clock.advance(0.5)  # the clock has moved on since the call began
    assert terminal._call_ms() == SimTerminal._ms(instant) != SimTerminal._ms(clock.now())


def test_an_instant_with_a_fractional_millisecond_rounds_to_the_nearest(tmp_path, clock: FakeClock) -> None:
    """The terminal reads a clock at ``T - 0.4`` ms (``T - 1`` ms and 600 us) as millisecond ``T``,
    not ``T - 1``: its quote there is the tick stamped ``T`` (the call instant, ``_call_ms``) and a
    deal made there is stamped ``T`` (``_ms``)."""
    first = make_test_terminal(tmp_path / "a", clock)
    assert first.initialize()
    start = MONDAY_NOON - timedelta(minutes=1)
    times = first.copy_ticks_range("EURUSD", start, start + timedelta(seconds=59), c.COPY_TICKS_ALL)["time_msc"]
    # a tick whose previous one is at least 2 ms earlier: at T - 1 ms the quote is still the previous one
    gaps = np.flatnonzero(np.diff(times) >= 2) + 1
    assert len(gaps) > 0
    stamp, before = int(times[gaps[0]]), int(times[gaps[0] - 1])
    instant = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=stamp * 1000 - 400)
    later = FakeClock(instant)
    mt5 = make_test_terminal(tmp_path / "b", later)  # (server time = UTC, as the fixture's)
    assert mt5.initialize()
    assert mt5.symbol_info_tick("EURUSD").time_msc == stamp != before
    result = mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1))
    assert result.retcode == mt5.TRADE_RETCODE_DONE
    [deal] = mt5.history_deals_get(position=result.order)
    assert deal.time_msc == stamp and mt5.positions_get()[0].time_msc == stamp


def test_order_send_after_a_check_answers_as_a_fresh_send(mt5: SimTerminal, clock: FakeClock) -> None:
    """A check binds nothing: a send at a later instant fills at that instant's ask, and another
    request after a check is judged on its own (50 lots: no money)."""
    request = market_order(mt5, "EURUSD", "buy", 0.1)
    checked_ask = mt5.symbol_info_tick("EURUSD").ask
    assert mt5.order_check(request).retcode == 0
    clock.advance(600)  # another instant: another quote
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick.ask != checked_ask
    result = mt5.order_send(request)
    assert result.retcode == 10009 and result.price == tick.ask
    assert mt5.order_check(request).retcode == 0
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 50.0)).retcode == 10019  # another request: no money


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("key", ["volume", "price", "sl", "tp", "stoplimit"])
def test_a_non_finite_float_field_is_refused_as_an_invalid_argument(mt5: SimTerminal, key: str, value: float) -> None:
    """The float fast path of the request check refuses NaN and infinities as the general check
    does: no result, ``last_error() == (-2, 'Invalid "<field>" argument')``, nothing traded."""
    for call in (mt5.order_check, mt5.order_send):
        request = market_order(mt5, "EURUSD", "buy", 0.1)
        request[key] = value
        assert call(request) is None, (call.__name__, key, value)
        assert mt5.last_error() == (c.RES_E_INVALID_PARAMS, f'Invalid "{key}" argument'), (call.__name__, key)
    assert mt5.positions_get() == () and mt5.orders_get() == ()
    assert mt5.order_send(market_order(mt5, "EURUSD", "buy", 0.1)).retcode == c.TRADE_RETCODE_DONE  # a finite one goes


def test_a_bool_timeframe_is_refused_after_the_pair_was_kept(mt5: SimTerminal) -> None:
    """The kept answer for (symbol, timeframe) serves plain-int timeframes only: ``True`` equals
    TIMEFRAME_M1 (and hashes like it) but is refused with the invalid-params error, before and
    after a valid M1 read, by the array and the rows forms alike."""
    assert c.TIMEFRAME_M1 == 1 == True  # noqa: E712 (the look-alike the shortcut must not take)
    for read in (mt5.copy_rates_from_pos, mt5.copy_rates_from_pos_rows):
        assert read("XAUUSD", True, 0, 3) is None and mt5.last_error() == (-2, "Terminal: Invalid params")
    assert len(mt5.copy_rates_from_pos("XAUUSD", c.TIMEFRAME_M1, 0, 3)) == 3
    assert len(mt5.copy_rates_from_pos_rows("XAUUSD", c.TIMEFRAME_M1, 0, 3)) == 3
    assert mt5.last_error() == (1, "Success")
    for read in (mt5.copy_rates_from_pos, mt5.copy_rates_from_pos_rows):
        assert read("XAUUSD", True, 0, 3) is None, read.__name__
        assert mt5.last_error() == (-2, "Terminal: Invalid params"), read.__name__
        assert read("XAUUSD", c.TIMEFRAME_M1, 0, 3) is not None  # the kept pair still serves M1
