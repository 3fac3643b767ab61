"""The engine's fast paths give exactly what the straightforward computations give.

The ``*_last`` indicators, the light window views, the tail-based pivots, the one-conversion
DataFrame reader, the whole-array bar check, the MarketMemo and the monitor's brief evaluation
exist for speed only. Each is compared BIT FOR BIT (not approximately) with the full-array
computation it replaces: engines/indicators.py where it has the function, otherwise a reference
copy of the numpy code the engine used before (kept here).
"""
from __future__ import annotations

import math
from dataclasses import fields, replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import engines.range_data as range_data
from engines import indicators, range_market
from engines.range_data import M5, M15, Bars, aggregate, bar_problem, to_bars
from engines.range_indicators import (
    bollinger_last, candle_cvd, candle_cvd_values, ema_direction, last_pivot_high_low, last_pivot_points,
    last_swing_levels, mean_atr_last, pivots, rolling_vwap, rolling_vwap_last, rsi_estimate, rsi_last,
    session_vwap_last, stochastic, stochastic_last,
)
from engines.range_detection import detect_range, m15_detection, session_bars
from engines.range_filters import data_quality
from engines.range_market import (
    CarriedTouches, MarketMemo, compute_market, m15_tail_size, m15_values, market_core, read_inputs, replace_market,
    session_start_s,
)
from engines.range_metrics import (
    bb_width_expansion_pct, break_of_structure, count_touches, expansion_state, step_divergence, swing_levels,
    touch_state,
)
from engines.range_scalp import evaluate_entry
from tests.range_scalp.helpers import MONDAY, params, sine_bars

RNG = np.random.default_rng(20240601)


def same(a: float, b: float) -> bool:
    """Equal to the last bit (NaN equals NaN, 0.0 differs from -0.0)."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def random_series(n: int) -> tuple[np.ndarray, ...]:
    """(time, open, high, low, close, volume) with the awkward cases mixed in: prices on a tick
    grid (ties), flat stretches, zero volume, gaps in time, very small and very large prices."""
    scale = RNG.choice([1e-4, 1.0, 2e3])
    close = 100 + np.cumsum(RNG.normal(0, 0.3, n))
    if RNG.random() < 0.3:
        close = np.round(close, 1)
    if n > 10 and RNG.random() < 0.2:
        close[n // 3:n // 2] = close[n // 3]
    open_ = np.r_[100.0, close[:-1]][:n]
    high = np.maximum(open_, close) + RNG.uniform(0, 0.2, n) * (RNG.random() > 0.1)
    low = np.minimum(open_, close) - RNG.uniform(0, 0.2, n) * (RNG.random() > 0.1)
    volume = RNG.integers(0, 50, n).astype(float) * (RNG.random() > 0.2)
    time = 1_700_000_000 + 300 * np.cumsum(RNG.integers(1, 4, n)).astype(np.int64)
    return time, open_ * scale, high * scale, low * scale, close * scale, volume


LENGTHS = [0, 1, 2, 5, 13, 14, 15, 16, 17, 20, 21, 30, 59, 60, 61, 100, 287, 300, 720]


@pytest.mark.parametrize("n", LENGTHS)
def test_last_value_indicators_equal_the_full_arrays(n: int) -> None:
    for _ in range(25):
        t, o, h, l, c, v = random_series(n)
        period = int(RNG.integers(1, 30))
        full_atr = indicators.sma(indicators.true_range(h, l, c), period)
        assert same(mean_atr_last(h, l, c, period), full_atr[-1] if n else math.nan)
        if n == 0:
            continue
        bands = indicators.bollinger(c[-(period + 1):], period, 2.0)
        got = bollinger_last(c[-(period + 1):], period, 2.0)
        for value, want in zip(got, (bands.middle[-1], bands.upper[-1], bands.lower[-1], bands.width[-1])):
            assert same(value, want)
        assert same(rsi_last(c[-280:], period), indicators.rsi(c[-280:], period)[-1])
        anchor = int(RNG.integers(0, 24))
        assert same(session_vwap_last(t, h, l, c, v, anchor), indicators.session_vwap(t, h, l, c, v, anchor).vwap[-1])
        no_volume = np.zeros(n)
        assert same(session_vwap_last(t, h, l, c, no_volume, anchor),
                    indicators.session_vwap(t, h, l, c, no_volume, anchor).vwap[-1])


@pytest.mark.parametrize("n", LENGTHS)
def test_rsi_estimate_stays_within_far_less_than_its_margin(n: int) -> None:
    """rsi_estimate (the confluence gate's shortcut) is within 1e-9 of rsi_last, NaN alike."""
    for _ in range(25):
        c = random_series(n)[4]
        period = int(RNG.integers(1, 30))
        exact, estimate = rsi_last(c[-20 * period:], period), rsi_estimate(c[-20 * period:], period)
        assert math.isnan(exact) == math.isnan(estimate)
        if not math.isnan(exact):
            assert abs(exact - estimate) < 1e-9


def test_rsi_beyond_is_the_exact_test_at_and_near_the_thresholds() -> None:
    """Far from both thresholds the estimate answers; at a threshold the RSI itself does."""
    p = params()
    bars = noisy_bars(900)
    now = datetime.fromtimestamp(int(bars.time[-1]) + M5 + 2, tz=timezone.utc)
    market = compute_market(read_inputs(bars, None, (100.0, 100.02), p, "TEST", now), p, MarketMemo())
    assert market.late._values is None
    rsi = rsi_last(bars.close[-20 * p.indicators.rsi_period:], p.indicators.rsi_period)
    for low, high in ((rsi - 5, rsi + 5), (rsi + 5, rsi + 10), (rsi - 10, rsi - 5)):
        assert market.rsi_beyond(low, high) == (rsi < low or rsi > high)
    assert market.late._values is None  # decided from the estimate
    assert market.rsi_beyond(rsi, rsi + 5) is False and market.rsi_beyond(rsi - 5, rsi) is False
    assert market.rsi == rsi  # the exact value decided those
    nudged = math.nextafter(rsi, math.inf)
    assert market.rsi_beyond(nudged, nudged + 5) is True


def reference_direction(close: np.ndarray, period: int, slope_bars: int) -> int:
    if len(close) < max(period, slope_bars + 1):
        return 0
    line = indicators.ema(np.asarray(close, float), period)
    change = line[-1] - line[-1 - slope_bars]
    return 1 if change > 0 else -1 if change < 0 else 0


def reference_stochastic(high, low, close, k_period, d_period):
    n = len(close)
    k = np.full(n, np.nan)
    if n >= k_period:
        hh = sliding_window_view(high, k_period).max(axis=1)
        ll = sliding_window_view(low, k_period).min(axis=1)
        span = hh - ll
        with np.errstate(divide="ignore", invalid="ignore"):
            k[k_period - 1:] = np.where(span > 0, 100.0 * (close[k_period - 1:] - ll) / span, 50.0)
    d = np.full(n, np.nan)
    if n - (k_period - 1) >= d_period:
        d[k_period - 1:] = indicators.sma(k[k_period - 1:], d_period)
    return k, d


def reference_rolling_vwap(high, low, close, volume, window):
    typical = (high + low + close) / 3.0
    out = np.full(len(typical), np.nan)
    if len(typical) < window:
        return out
    tw = sliding_window_view(typical * volume, window).sum(axis=1)
    vw = sliding_window_view(volume, window).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[window - 1:] = np.where(vw > 0, tw / vw, sliding_window_view(typical, window).mean(axis=1))
    return out


@pytest.mark.parametrize("n", LENGTHS)
def test_direction_stochastic_and_rolling_vwap_equal_the_references(n: int) -> None:
    for _ in range(25):
        t, o, h, l, c, v = random_series(n)
        period, slope = int(RNG.integers(1, 40)), int(RNG.integers(1, 6))
        assert ema_direction(c[-200:], period, slope) == reference_direction(c[-200:], period, slope)
        k_period, d_period, tail = int(RNG.integers(1, 16)), int(RNG.integers(1, 5)), int(RNG.integers(1, 30))
        k, d = stochastic(h[-tail:], l[-tail:], c[-tail:], k_period, d_period)
        ref_k, ref_d = reference_stochastic(h[-tail:], l[-tail:], c[-tail:], k_period, d_period)
        assert np.array_equal(k, ref_k, equal_nan=True) and np.array_equal(d, ref_d, equal_nan=True)
        last_k, last_d = stochastic_last(h[-tail:], l[-tail:], c[-tail:], k_period, d_period)
        assert same(last_k, k[-1] if len(k) else math.nan) and same(last_d, d[-1] if len(d) else math.nan)
        window = int(RNG.integers(2, 25))
        whole = rolling_vwap(h, l, c, v, window)
        assert np.array_equal(whole, reference_rolling_vwap(h, l, c, v, window), equal_nan=True)
        count = int(RNG.integers(1, 8))
        if count + window - 1 <= n:  # the last complete windows on plain floats: the same bits
            assert np.array(rolling_vwap_last(h, l, c, v, window, count)).tobytes() == whole[-count:].tobytes()


@pytest.mark.parametrize("n", LENGTHS)
def test_pivots_and_the_latest_pivots_equal_swing_pivots(n: int) -> None:
    for _ in range(25):
        _, _, h, l, _, _ = random_series(n)
        left, right = int(RNG.integers(1, 5)), int(RNG.integers(1, 5))
        is_high, is_low = indicators.swing_pivots(h, l, left, right)
        fast_high, fast_low = pivots(h, l, left, right)
        assert np.array_equal(is_high, fast_high) and np.array_equal(is_low, fast_low)
        count = int(RNG.integers(1, 8))
        points = np.flatnonzero(is_high | is_low)[-count:]
        got_points, got_high, got_low = last_pivot_points(h, l, left, right, count)
        assert np.array_equal(points, got_points)
        assert np.array_equal(is_high[points], got_high) and np.array_equal(is_low[points], got_low)
        highs, lows = np.flatnonzero(is_high), np.flatnonzero(is_low)
        assert last_pivot_high_low(h, l, left, right) == (int(highs[-1]) if len(highs) else None,
                                                          int(lows[-1]) if len(lows) else None)


@pytest.mark.parametrize("n", LENGTHS)
def test_the_swing_level_scan_equals_the_array_pivots(n: int) -> None:
    """``last_swing_levels`` (the bar-by-bar scan) against the swing pivots of all bars, and the
    cases where it must answer None: a NaN or infinite value in the tail, no point asked for,
    too few points in a tail with bars before it."""
    for case in range(25):
        _, _, h, l, _, _ = random_series(n)
        left, right, count = int(RNG.integers(1, 5)), int(RNG.integers(1, 5)), int(RNG.integers(1, 8))
        if case % 5 == 4 and n > 2:
            (h if case % 2 else l)[int(RNG.integers(max(0, n - 70), n))] = [math.nan, math.inf][case % 3 == 0]
        is_high, is_low = indicators.swing_pivots(h, l, left, right)
        points = np.flatnonzero(is_high | is_low)[-count:]
        want = ([float(h[i]) for i in points if is_high[i]], [float(l[i]) for i in points if is_low[i]], len(points))
        assert swing_levels(h, l, left, right, count) == want
        scanned = last_swing_levels(h, l, left, right, count)
        if not (np.isfinite(h[-64:]).all() and np.isfinite(l[-64:]).all()):
            assert scanned is None
        elif n >= left + right + 1 and (n <= 64 or len(np.flatnonzero((is_high | is_low)[n - 64 + left:])) >= count):
            assert scanned == want
        else:
            assert scanned is None
    assert last_swing_levels(h, l, 3, 3, 0) is None


def test_the_swing_level_scan_leaves_too_few_points_in_the_tail_to_all_bars() -> None:
    """A steady fall has one dip far back, before the scan's last 64 bars: the scan finds fewer
    points than asked for there and answers None, and ``swing_levels`` gives the dip, as the
    pivots of all bars do."""
    n = 200
    high = np.linspace(200.0, 100.0, n) + 0.05
    low = np.linspace(200.0, 100.0, n) - 0.05
    low[50] = 150.0
    is_high, is_low = indicators.swing_pivots(high, low, 3, 3)
    assert np.flatnonzero(is_high | is_low).tolist() == [50]
    assert last_swing_levels(high, low, 3, 3, 2) is None
    assert swing_levels(high, low, 3, 3, 2) == ([], [150.0], 1)


def test_latest_pivots_far_back_are_found_beyond_the_tail() -> None:
    """Few pivots in the newest bars: the search falls back to all bars."""
    n = 300
    high = np.linspace(100.0, 130.0, n)  # a steady climb has no pivots...
    low = high - 1.0
    high[40], low[60] = 140.0, 50.0  # ...except these two, far from the end
    assert last_pivot_high_low(high, low, 3, 3) == (40, 60)
    points, is_high, is_low = last_pivot_points(high, low, 3, 3, 5)
    assert points.tolist() == [40, 60] and is_high.tolist() == [True, False] and is_low.tolist() == [False, True]


def reference_width_pct(windows: np.ndarray) -> np.ndarray:
    return 4.0 * windows.std(axis=1) / windows.mean(axis=1) * 100.0


def reference_bb_expansion(close, period=20, min_bars=60):
    n = len(close)
    if n < min_bars or n < period + 1:
        return None
    current = float(reference_width_pct(close[n - period:][None, :])[0])
    first, last = max(period, n - 40), n - 21
    if last < first:
        return None
    historical = float(reference_width_pct(sliding_window_view(close[first - period:last], period)).mean())
    if not historical > 0:
        return None
    return (current - historical) / historical * 100.0


def reference_expansion_state(high, low, close, atr_period=14, bb_period=20, ratio_high=1.2, ratio_low=0.8):
    n = len(close)
    if n < max(atr_period, bb_period) + 15:
        return "forming"
    tr = indicators.true_range(high, low, close)
    current_atr = float(tr[-atr_period:].mean())
    hist_slice = tr[-40:-20] if n >= 40 else tr[-30:-15]
    ratios = []
    if len(hist_slice) and hist_slice.mean() > 0:
        ratios.append(current_atr / float(hist_slice.mean()))
    widths = 4.0 * sliding_window_view(close, bb_period).std(axis=1, ddof=1)
    first, last = max(bb_period, n - 40), n - 21
    if last >= first:
        hist_width = float(widths[first - bb_period + 1:last - bb_period + 2].mean())
        if hist_width > 0:
            ratios.append(float(widths[-1]) / hist_width)
    if not ratios:
        return "forming"
    if any(r >= ratio_high for r in ratios):
        return "expanding"
    if any(r <= ratio_low for r in ratios):
        return "contracting"
    return "stable"


def reference_bos(high, low, close, atr, threshold, count, left, right, min_bars):
    if len(close) < min_bars or not atr > 0:
        return None
    is_high, is_low = indicators.swing_pivots(high, low, left, right)
    points = np.flatnonzero(is_high | is_low)[-count:]
    if len(points) == 0:
        return None
    highs = [float(high[i]) for i in points if is_high[i]]
    lows = [float(low[i]) for i in points if is_low[i]]
    last = float(close[-1])
    if highs and last - max(highs) >= threshold * atr:
        return ("bullish", max(highs), last)
    if lows and min(lows) - last >= threshold * atr:
        return ("bearish", min(lows), last)
    return None


@pytest.mark.parametrize("n", LENGTHS)
def test_metrics_equal_the_references(n: int) -> None:
    for _ in range(25):
        _, _, h, l, c, _ = random_series(n)
        period, min_bars = int(RNG.integers(5, 30)), int(RNG.integers(41, 80))
        tail = c[-max(min_bars, 61):]
        got, want = bb_width_expansion_pct(tail, period, min_bars), reference_bb_expansion(tail, period, min_bars)
        assert (got is None and want is None) or same(got, want)
        atr_period, bb_period = int(RNG.integers(5, 20)), int(RNG.integers(5, 25))
        for k in (45, 60, 100):
            assert (expansion_state(h[-k:], l[-k:], c[-k:], atr_period, bb_period)
                    == reference_expansion_state(h[-k:], l[-k:], c[-k:], atr_period, bb_period))
        args = (h, l, c, float(RNG.uniform(0.01, 1.0)) * float(np.nanmean(c) if n else 1.0) / 100,
                float(RNG.uniform(0.05, 1.0)), int(RNG.integers(2, 8)), int(RNG.integers(1, 5)),
                int(RNG.integers(1, 5)), int(RNG.integers(7, 20)))
        bos = break_of_structure(*args)
        assert (None if bos is None else (bos.direction, bos.level, bos.close)) == reference_bos(*args)


# ----------------------------------------------------------------------------------------------
# Reading and checking bars
# ----------------------------------------------------------------------------------------------

def feed_frame(n: int = 50) -> pd.DataFrame:
    """A frame shaped like the bar feed's: UTC DatetimeIndex, MT5 columns with their dtypes."""
    t, o, h, l, c, v = random_series(n)
    index = pd.DatetimeIndex(pd.to_datetime(t, unit="s", utc=True), name="time")
    return pd.DataFrame({"open": o, "high": h, "low": l, "close": c, "tick_volume": v.astype(np.uint64),
                         "spread": np.full(n, 12, dtype=np.int32), "real_volume": np.zeros(n, dtype=np.uint64)},
                        index=index)


def frame_variants() -> dict[str, pd.DataFrame]:
    frame = feed_frame()
    nan_volume = frame.astype({"tick_volume": float})
    nan_volume.iloc[3, 4] = np.nan
    naive = frame.copy()
    naive.index = naive.index.tz_localize(None)
    seconds = frame.copy()
    seconds.index = seconds.index.as_unit("s")
    return {
        "feed": frame, "new_york": frame.tz_convert("America/New_York"), "naive": naive, "seconds": seconds,
        "no_volume": frame.drop(columns=["tick_volume"]),
        "volume_column": frame.rename(columns={"tick_volume": "volume"}).drop(columns=["real_volume"]),
        "nan_volume": nan_volume, "reordered": frame[["close", "open", "low", "high"]],
        "text_column": frame.assign(symbol="XAUUSD"), "time_column": frame.reset_index(), "empty": frame.iloc[:0],
    }


@pytest.mark.parametrize("name", sorted(frame_variants()))
def test_frames_read_in_one_conversion_equal_the_column_by_column_read(name: str, monkeypatch) -> None:
    frame = frame_variants()[name]
    fast = to_bars(frame, M5)
    monkeypatch.setattr(range_data, "_indexed_frame_bars", lambda *args: None)
    slow = to_bars(frame, M5)
    for column in ("time", "open", "high", "low", "close", "volume"):
        a, b = getattr(fast, column), getattr(slow, column)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes() and a.flags.c_contiguous, column


def test_the_whole_array_bar_check_reports_what_the_check_by_check_path_reports() -> None:
    base = to_bars(feed_frame(40), M5)
    assert bar_problem(base, "M5 bars") is None

    def changed(column: str, index: int, value: float) -> Bars:
        arrays = {c: getattr(base, c).copy() for c in ("time", "open", "high", "low", "close", "volume")}
        arrays[column][index] = value
        return Bars(arrays["time"], arrays["open"], arrays["high"], arrays["low"], arrays["close"],
                    arrays["volume"], M5)

    broken = [changed("close", 5, math.nan), changed("high", 7, math.inf), changed("low", 3, 0.0),
              changed("low", 9, -1.0), changed("high", 11, float(base.low[11]) - 1), changed("open", 2, 1e9),
              changed("close", 4, 1e-9), changed("time", 6, int(base.time[5])), changed("volume", 8, -1.0),
              changed("volume", 8, math.inf), changed("volume", 8, math.nan), changed("volume", 8, -0.0)]
    for bars in broken:
        assert bar_problem(bars, "M5 bars") == range_data._first_problem(bars, "M5 bars")
    assert bar_problem(broken[-1], "M5 bars") is None  # -0.0 volume is not negative


# ----------------------------------------------------------------------------------------------
# The memo and the brief evaluation
# ----------------------------------------------------------------------------------------------

def market_values(market) -> dict[str, str]:
    """Every field the rules read, as exact text (repr keeps all float digits)."""
    return {f.name: repr(getattr(market, f.name)) for f in fields(market)
            if f.name not in ("inputs", "m15_values", "h1_values")}


def windows(bars: Bars, lookback: int, count: int):
    for end in range(len(bars) - count, len(bars)):
        window = bars.slice(max(0, end + 1 - lookback), end + 1)
        yield window, datetime.fromtimestamp(int(window.time[-1]) + M5 + 2, tz=timezone.utc)


def noisy_bars(n: int) -> Bars:
    calm = sine_bars(MONDAY, n, period=40)
    noise = RNG.normal(0, 0.05, n)
    o, c = calm.open + noise, calm.close + np.r_[noise[1:], 0.0]
    return Bars(calm.time, o, np.maximum(o, c) + 0.03, np.minimum(o, c) - 0.03, c,
                RNG.integers(50, 300, n).astype(float), M5)


def test_the_memo_changes_no_value_of_the_market() -> None:
    p = params()
    bars = noisy_bars(900)
    memo = MarketMemo()
    for window, now in windows(bars, p.data.lookback_m5_bars, 40):
        quote = (float(window.close[-1]), float(window.close[-1]) + 0.02)
        plain = compute_market(read_inputs(window, None, quote, p, "TEST", now), p)
        inputs = read_inputs(window, None, quote, p, "TEST", now)
        remembered = compute_market(inputs, p, memo)
        assert market_values(remembered) == market_values(plain)
        assert compute_market(inputs, p, memo) is remembered  # the same inputs again: the same market
    assert memo.hits > 40  # H1 and the newest M15 bars repeat between M5 bars


def test_m15_values_of_the_tail_equal_those_of_all_bars() -> None:
    p = params()
    bars = noisy_bars(900)
    now = datetime.fromtimestamp(int(bars.time[-1]) + M5 + 2, tz=timezone.utc)
    m15 = aggregate(bars, M15, now.timestamp())
    size = m15_tail_size(p)
    assert len(m15) > size
    tail, whole = m15_values(m15.tail(size), len(m15), p), m15_values(m15, len(m15), p)
    assert repr(replace(tail, rolling_vwap=None)) == repr(replace(whole, rolling_vwap=None))
    assert np.array(tail.rolling_vwap).tobytes() == np.array(whole.rolling_vwap).tobytes()
    assert len(tail.rolling_vwap) == p.invalidation.vwap_momentum_bars


def test_a_break_of_structure_behind_the_m15_tail_is_still_found() -> None:
    """A steady fall has no swing points except one dip far back, before the M15 tail: the
    market's BOS is measured against it, as over all bars."""
    p = params()
    n = 900
    path = np.linspace(200.0, 100.0, n + 1)
    o, c = path[:-1].copy(), path[1:].copy()
    high, low = o + 0.05, c - 0.05
    low[250] = 150.0  # inside the 720-bar lookback, in the oldest M15 bars
    bars = Bars(int(MONDAY.timestamp()) + M5 * np.arange(n, dtype=np.int64), o, high, low, c, np.full(n, 100.0), M5)
    now = datetime.fromtimestamp(int(bars.time[-1]) + M5 + 2, tz=timezone.utc)
    inputs = read_inputs(bars, None, (100.0, 100.02), p, "TEST", now)
    m15 = inputs.m15
    assert not m15_values(m15.tail(m15_tail_size(p)), len(m15), p).bos_known
    for memo in (None, MarketMemo()):
        bos = compute_market(inputs, p, memo).bos
        assert bos is not None and (bos.direction, bos.level) == ("bearish", 150.0)


def test_late_values_are_computed_on_first_read_from_all_bars() -> None:
    """The stochastic and the directions wait for their first read and are then those of the
    whole series (each timeframe's direction EMA over its last 200 bars)."""
    p = params()
    ind = p.indicators
    bars = noisy_bars(900)
    now = datetime.fromtimestamp(int(bars.time[-1]) + M5 + 2, tz=timezone.utc)
    inputs = read_inputs(bars, None, (100.0, 100.02), p, "TEST", now)
    market = compute_market(inputs, p, MarketMemo())
    assert market.late._values is None  # nothing read yet
    m5, m15, h1 = inputs.m5, inputs.m15, inputs.h1
    k, d = stochastic(m5.high, m5.low, m5.close, ind.stoch_k, ind.stoch_d)
    assert (market.stoch_k, market.stoch_d) == (float(k[-1]), float(d[-1]))
    assert market.directions == {name: ema_direction(b.close[-200:], ind.mtf_ema_period, ind.mtf_slope_bars)
                                 for name, b in (("m5", m5), ("m15", m15), ("h1", h1))}
    changed = replace_market(market, stoch_k=5.0, directions={"m5": 1, "m15": 1, "h1": -1}, rsi=20.0)
    assert (changed.stoch_k, changed.stoch_d, changed.rsi) == (5.0, market.stoch_d, 20.0)
    assert changed.directions == {"m5": 1, "m15": 1, "h1": -1} and changed != market


@pytest.mark.parametrize("order", [["session", "daily", "dynamic"], ["daily", "dynamic", "session"],
                                   ["dynamic", "session", "daily"]])
def test_detection_with_the_memo_equals_detection_without_it(order: list[str]) -> None:
    """The M15Detection the memo keeps is reused only while the M15 bars are the same object
    and the session start the same (a new bucket, a new session: a new one), and every range
    it helps detect is the one detected without it, across sessions and days."""
    p = params(detection={"range_types": order})
    bars = noisy_bars(1300)
    memo, kept, types = MarketMemo(), 0, set()
    last = None
    for window, now in windows(bars, p.data.lookback_m5_bars, 400):
        quote = (float(window.close[-1]), float(window.close[-1]) + 0.02)
        inputs = read_inputs(window, None, quote, p, "TEST", now, memo=memo)
        assert data_quality(inputs, p, memo).passed  # the bar check the M5 window carries its M15 bars on
        core = market_core(inputs, p, memo)
        plain = market_core(read_inputs(window, None, quote, p, "TEST", now), p)
        found = detect_range(core, p, memo)
        assert repr(found) == repr(detect_range(plain, p))
        types.add(found[0].range_type if found[0] else None)
        facts = m15_detection(core, p, memo)
        assert facts.m15 is core.m15 and facts.session_start_s == session_start_s(core, p)
        if last is not None and facts is last:
            kept += 1
        else:
            assert last is None or last.m15 is not core.m15 or last.session_start_s != facts.session_start_s
        last = facts
    assert 100 < kept < 390 and order[0] in types  # kept between M15 buckets, rebuilt at each


def test_session_bars_extremes_and_hold_times_equal_the_array_search() -> None:
    """Since when each session extreme has held: the close of the last bar reaching it, as
    ``np.flatnonzero(high >= max)[-1]`` finds it, and the last bar when none does (NaN)."""
    m15 = aggregate(noisy_bars(900), M15, float(MONDAY.timestamp()) + 900 * M5)
    for start in m15.time[::5].tolist():
        bars = m15.since(start)
        found = session_bars(m15, start)
        high, low = float(np.maximum.reduce(bars.high)), float(np.minimum.reduce(bars.low))
        assert (found.high, found.low) == (high, low) and found.bars.time.tobytes() == bars.time.tobytes()
        assert found.high_held_since == float(bars.time[np.flatnonzero(bars.high >= high)[-1]] + M15)
        assert found.low_held_since == float(bars.time[np.flatnonzero(bars.low <= low)[-1]] + M15)
    with_nan = Bars(m15.time, m15.open, np.r_[m15.high[:-3], np.nan, m15.high[-2:]], m15.low, m15.close,
                    m15.volume, M15)
    found = session_bars(with_nan, int(m15.time[-10]))
    assert math.isnan(found.high) and found.high_held_since == float(m15.time[-1] + M15)
    empty = session_bars(m15, int(m15.time[-1]) + M15)
    assert len(empty.bars) == 0 and math.isnan(empty.high) and math.isnan(empty.low_held_since)


def test_brief_decisions_record_what_full_decisions_record() -> None:
    p = params()
    bars = noisy_bars(1000)
    memo, seen = MarketMemo(), set()
    for window, now in windows(bars, p.data.lookback_m5_bars, 150):
        quote = (float(window.close[-1]), float(window.close[-1]) + 0.02)
        full = evaluate_entry(window, None, quote, p, "TEST", now)
        brief = evaluate_entry(window, None, quote, p, "TEST", now, memo=memo, brief=True)
        assert (brief.failed, brief.summary(), brief.bar_time) == (full.failed, full.summary(), full.bar_time)
        assert repr(brief.idea) == repr(full.idea) and brief.score == full.score
        if full.idea is not None:
            assert repr(brief) == repr(full)
        else:
            assert brief.checks == full.checks[:len(brief.checks)]
            assert brief.reasons == full.reasons[:len(brief.reasons)]  # formatted when read, the same lines
            assert brief.reasons  # (an empty tuple is the start of any tuple: there are lines to compare)
        seen.add(full.failed)
    assert len(seen) >= 3  # several different gates decided


def test_an_adx_stopped_brief_decision_builds_its_range_when_read_and_the_memo_goes_on() -> None:
    """The ADX gate shut for stretches of bars (every ADX above 1e-6 'trends'): those brief decisions build their range only when read, the same range as a full
    evaluation's before its invalidation signals, and the memo's windows, which skipped the
    range's VWAP, expansion state and touches meanwhile, give the same decisions after them."""
    p = params()
    shut = params(scoring={"adx_trending": 1e-6, "adx_low": 5e-7})
    bars = noisy_bars(1000)
    memo, stopped, decided = MarketMemo(), 0, set()
    for i, (window, now) in enumerate(windows(bars, p.data.lookback_m5_bars, 150)):
        q = shut if (i // 12) % 2 == 0 else p
        quote = (float(window.close[-1]), float(window.close[-1]) + 0.02)
        full = evaluate_entry(window, None, quote, q, "TEST", now)
        brief = evaluate_entry(window, None, quote, q, "TEST", now, memo=memo, brief=True)
        assert (brief.failed, brief.summary(), brief.bar_time) == (full.failed, full.summary(), full.bar_time)
        if brief.failed == "adx":
            stopped += 1
            assert brief.range == replace(full.range, invalidation_signals=())
            assert brief.checks == full.checks[:3] and brief.reasons == full.reasons[:3]
            assert replace(brief, symbol="COPY").range == brief.range  # a copy is handed the built range
        else:
            assert brief.checks == full.checks[:len(brief.checks)]
            decided.add(brief.failed)
    assert stopped >= 50 and len(decided) >= 2  # both kinds of stretch were evaluated


def test_the_monitor_evaluates_with_the_symbols_memo_and_briefly(tmp_path) -> None:
    from tests.range_scalp.test_monitor_rig import EUR_SETUP_START, Rig

    calls: list[dict] = []
    rig = Rig(tmp_path, symbols=("EURUSD", "XAUUSD"))

    def evaluate(*args, **kwargs):
        calls.append(kwargs)
        return evaluate_entry(*args, **kwargs)

    rig.monitor = rig.make_monitor(evaluate=evaluate)
    rig.monitor.recover(rig.clock.now())
    rig.run_until(EUR_SETUP_START + timedelta(minutes=15))
    assert calls and all(kw["brief"] is True for kw in calls)
    by_symbol = {}
    for symbol in ("EURUSD", "XAUUSD"):
        memos = {id(kw["memo"]) for kw in calls if kw["memo"] is rig.monitor.memo(symbol)}
        by_symbol[symbol] = memos
        assert len(memos) == 1
    assert by_symbol["EURUSD"] != by_symbol["XAUUSD"]  # one memo per symbol
    assert rig.monitor.memo("EURUSD").hits > 0


def reference_candle_cvd(open_, close, volume):
    with np.errstate(invalid="ignore"):
        return np.cumsum(np.sign(np.asarray(close, float) - np.asarray(open_, float)) * np.asarray(volume, float))


def reference_step_divergence(price, cvd):
    price, cvd = np.asarray(price, dtype=np.float64)[-10:], np.asarray(cvd, dtype=np.float64)[-10:]
    if len(price) < 10 or len(cvd) < 10:
        return None
    with np.errstate(invalid="ignore"):
        dp, dc = np.diff(price), np.diff(cvd)
    up_p, up_c = price[1:][dp > 0], cvd[1:][dc > 0]
    down_p, down_c = price[1:][dp < 0], cvd[1:][dc < 0]

    def strength(p, c):
        return min(1.0, (abs(p[-1] - p[-2]) / p[-2] + abs(c[-1] - c[-2]) / max(abs(c[-2]), 1.0)) * 10.0)

    if len(up_p) >= 2 and len(up_c) >= 2 and up_p[-1] > up_p[-2] and up_c[-1] < up_c[-2]:
        return "bearish", strength(up_p, up_c)
    if len(down_p) >= 2 and len(down_c) >= 2 and down_p[-1] < down_p[-2] and down_c[-1] > down_c[-2]:
        return "bullish", strength(down_p, down_c)
    return None


@pytest.mark.parametrize("n", [0, 1, 9, 10, 11, 20, 30])
def test_candle_divergence_on_plain_floats_equals_the_array_steps(n: int) -> None:
    found = set()
    for trial in range(300):
        _, o, _, _, c, v = random_series(n)
        if n and trial % 7 == 0:  # NaN prices, negative zero and odd volumes: numpy's sign and sums rule
            c[RNG.integers(0, n)] = math.nan
            v[RNG.integers(0, n)] = RNG.choice([-0.0, -3.0, 0.5, math.inf])
        cvd = candle_cvd_values(o, c, v)
        reference = reference_candle_cvd(o, c, v)
        assert np.array(cvd, dtype=np.float64).tobytes() == reference.tobytes()
        assert candle_cvd(o, c, v).tobytes() == reference.tobytes()
        got, want = step_divergence(c, cvd), reference_step_divergence(c, reference)
        assert (got is None) == (want is None)
        if got is not None:
            assert got.kind == want[0] and same(got.strength, want[1])
            found.add(got.kind)
    assert n < 11 or found == {"bearish", "bullish"}


def test_carried_touch_counts_equal_the_whole_count(monkeypatch) -> None:
    t, o, h, l, c, v = random_series(120)
    bars = Bars(t, o, h, l, c, v, M5)
    high, low = float(np.quantile(h, 0.8)), float(np.quantile(l, 0.2))
    full = []
    monkeypatch.setattr(range_market, "touch_state", lambda *a: full.append(1) or touch_state(*a))
    carry = CarriedTouches()
    for stop in range(1, 121):  # the bars grow with the same levels: counted on after the first count
        part = bars.slice(0, stop)
        assert carry.count(part, high, low, 0.05) == count_touches(part, high, low, 0.05)
    assert len(full) == 1
    changed = [bars.slice(3, 120),  # the head dropped: not the old bars plus new ones
               Bars(t, o, h + 0.0, l, np.r_[c[:50], c[50] * 1.01, c[51:]], v, M5)]  # a carried close differs
    for other in changed:
        assert carry.count(other, high, low, 0.05) == count_touches(other, high, low, 0.05)
        carry.count(bars, high, low, 0.05)
    assert len(full) == 5  # each of them, and the bars after each (not their continuation), counted in full
    assert carry.count(bars, high * 1.0001, low, 0.05) == count_touches(bars, high * 1.0001, low, 0.05)
    assert carry.count(bars, high * 1.0001, low, 0.06) == count_touches(bars, high * 1.0001, low, 0.06)
    assert len(full) == 7  # new levels or tolerance: counted in full
    single = Bars(t, o.astype(np.float32), h.astype(np.float32), l.astype(np.float32), c.astype(np.float32), v, M5)
    for stop in (60, 61):  # float32 prices: numpy's arithmetic, never the plain floats
        assert carry.count(single.slice(0, stop), high, low, 0.05) == count_touches(single.slice(0, stop), high, low,
                                                                                    0.05)
    assert carry.count(bars.slice(0, 0), high, low, 0.05) == (0, 0)
    assert len(full) == 7


def test_touches_of_float32_levels_are_counted_as_the_arrays_count_them() -> None:
    """A float32 level makes plain-float steps float32 (numpy 2's promotion): such levels are
    counted in full, never carried, so each count is the whole array's."""
    from engines.range_market import CarriedTouches

    n = 8
    times = np.arange(n, dtype=np.int64) * 900
    high = np.array([99.5] * 4 + [100.19999, 99.0, 99.7999999, 99.0])
    low, close = np.full(n, 98.9), np.full(n, 99.0)
    carried = CarriedTouches()
    for k in range(1, n + 1):
        bars = Bars(times[:k], close[:k], high[:k], low[:k], close[:k], np.ones(k), 900)
        assert carried.count(bars, np.float32(100), np.float32(98), 0.2) == \
            count_touches(bars, np.float32(100), np.float32(98), 0.2)


def test_a_divergence_from_a_zero_price_is_measured_as_numpy_divides() -> None:
    """A previous price of 0 (only a direct caller can give one) is an infinite relative move,
    capped at 1, not a ZeroDivisionError."""
    divergence = step_divergence([1, -1, 0, -2, -3, -4, -5, -6, -7, 1], [0, 10, 20, 10, 5, 4, 3, 2, 1, 5])
    assert divergence is not None and (divergence.kind, divergence.strength) == ("bearish", 1.0)


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        candle_cvd(np.ones(5), np.arange(6.0), np.ones(6))
    with pytest.raises(ValueError, match="different lengths"):
        rolling_vwap_last(np.ones(6), np.ones(6), np.ones(5), np.ones(6), 3, 2)
