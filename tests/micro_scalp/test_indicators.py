"""Indicators against independent pandas references (1e-9 relative) and incremental twins."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engines import indicators as ind

RTOL = 1e-9


@pytest.fixture(scope="module")
def bars(xau_bars: pd.DataFrame) -> pd.DataFrame:
    # two days of real XAUUSD M1 bars, crossing a 22:00 UTC session boundary
    return xau_bars.iloc[:2600]


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), "NaN positions differ"
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(actual[ok], expected[ok], rtol=RTOL, atol=0)


def ref_true_range(df: pd.DataFrame) -> pd.Series:
    prev = df["close"].shift(1)
    tr = pd.concat([df["high"] - df["low"], (df["high"] - prev).abs(), (df["low"] - prev).abs()],
                   axis=1).max(axis=1)
    return tr


def ref_wilder(series: pd.Series, period: int) -> pd.Series:
    """Wilder RMA via pandas ewm: SMA seed placed at the period-th valid value."""
    s = series.copy().astype(float)
    first = s.first_valid_index()
    pos = s.index.get_loc(first)
    seeded = pd.Series(np.nan, index=s.index)
    seeded.iloc[pos + period - 1] = s.iloc[pos:pos + period].mean()
    seeded.iloc[pos + period:] = s.iloc[pos + period:]
    return seeded.ewm(alpha=1.0 / period, adjust=False, ignore_na=True).mean().where(
        np.arange(len(s)) >= pos + period - 1)


def test_true_range_matches_pandas(bars):
    assert_close(ind.true_range(bars.high, bars.low, bars.close), ref_true_range(bars))


@pytest.mark.parametrize("period", [1, 14])
def test_atr_wilder_matches_pandas_ewm(bars, period):
    expected = ref_true_range(bars) if period == 1 else ref_wilder(ref_true_range(bars), period)
    assert_close(ind.atr(bars.high, bars.low, bars.close, period), expected)
    assert np.isnan(ind.atr(bars.high, bars.low, bars.close, period)[: period - 1]).all()


def test_ema_matches_pandas(bars):
    assert_close(ind.ema(bars.close, 20), bars.close.ewm(span=20, adjust=False).mean())


def test_sma_and_average_range_match_rolling(bars):
    assert_close(ind.sma(bars.close, 7), bars.close.rolling(7).mean())
    assert_close(ind.average_range(bars.high, bars.low, 10), (bars.high - bars.low).rolling(10).mean())


def test_rsi_matches_pandas_wilder(bars):
    change = bars.close.diff()
    gain = change.clip(lower=0)
    loss = (-change).clip(lower=0)
    avg_gain = ref_wilder(gain.iloc[1:], 14)
    avg_loss = ref_wilder(loss.iloc[1:], 14)
    expected = pd.concat([pd.Series([np.nan]), 100 - 100 / (1 + avg_gain / avg_loss)]).to_numpy()
    assert_close(ind.rsi(bars.close, 14), expected)


def test_rsi_edge_cases():
    assert ind.rsi(np.arange(1.0, 20.0), 14)[-1] == 100.0
    assert ind.rsi(np.arange(20.0, 1.0, -1), 14)[-1] == 0.0
    assert ind.rsi(np.full(20, 5.0), 14)[-1] == 50.0


def test_bollinger_matches_pandas(bars):
    bb = ind.bollinger(bars.close, 20, 2.0)
    mid = bars.close.rolling(20).mean()
    # textbook two-pass population std per window (pandas' online rolling std carries ~1e-13
    # absolute error, too coarse for a 1e-9 relative check of a small width)
    std = bars.close.rolling(20).apply(lambda w: np.sqrt(np.mean((w - w.mean()) ** 2)), raw=True)
    assert_close(bb.middle, mid)
    assert_close(bb.upper, mid + 2 * std)
    assert_close(bb.lower, mid - 2 * std)
    assert_close(bb.width, 4 * std / mid)


def test_session_vwap_matches_groupby_reference(bars):
    anchor = 22
    time_s = bars.index.as_unit("s").asi8
    got = ind.session_vwap(time_s, bars.high, bars.low, bars.close, bars.volume, anchor, 2.0)
    typical = (bars.high + bars.low + bars.close) / 3
    session = (bars.index - pd.Timedelta(hours=anchor)).floor("D")
    grouped_w = bars.volume.groupby(session)
    cw = grouped_w.cumsum()
    vwap = (typical * bars.volume).groupby(session).cumsum() / cw
    # variance computed the textbook way: weighted mean of squared deviations from the vwap
    var = pd.Series(np.nan, index=bars.index)
    for _, idx in bars.groupby(session).groups.items():
        t = typical.loc[idx].to_numpy()
        w = bars.volume.loc[idx].to_numpy()
        for k in range(len(t)):
            m = np.sum(w[: k + 1] * t[: k + 1]) / np.sum(w[: k + 1])
            var.loc[idx[k]] = np.sum(w[: k + 1] * (t[: k + 1] - m) ** 2) / np.sum(w[: k + 1])
    assert len(set(session)) >= 2, "the sample must cross a session boundary"
    assert_close(got.vwap, vwap)
    # std of a near-constant session start is tiny: compare where it is meaningful
    meaningful = var.to_numpy() > 1e-6
    np.testing.assert_allclose(got.std[meaningful], np.sqrt(var.to_numpy()[meaningful]), rtol=1e-7)
    assert_close(got.upper, got.vwap + 2 * got.std)
    first_of_day = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    assert (got.session_start[first_of_day] == first_of_day).all()
    assert np.allclose(got.vwap[first_of_day], typical.to_numpy()[first_of_day])


def test_session_vwap_without_volume_is_time_weighted():
    time_s = np.arange(5) * 60
    high = np.array([2.0, 3.0, 4.0, 5.0, 6.0])
    low = high - 1
    close = high - 0.5
    got = ind.session_vwap(time_s, high, low, close, np.zeros(5), 0)
    typical = (high + low + close) / 3
    assert_close(got.vwap, np.cumsum(typical) / np.arange(1, 6))


def test_session_vwap_on_real_bars_without_volume(eur_bars):
    """HistData EURUSD has volume 0 everywhere: the VWAP is the running mean of typical price."""
    bars = eur_bars.iloc[:3000]
    volume = bars["tick_volume"] if "tick_volume" in bars and bars["tick_volume"].notna().any() else bars["volume"]
    assert (volume.fillna(0) == 0).all()
    time_s = bars.index.as_unit("s").asi8
    got = ind.session_vwap(time_s, bars.high, bars.low, bars.close, volume.fillna(0), 22)
    typical = (bars.high + bars.low + bars.close) / 3
    session = (bars.index - pd.Timedelta(hours=22)).floor("D")
    expected = typical.groupby(session).cumsum() / typical.groupby(session).cumcount().add(1)
    assert len(set(session)) >= 2
    assert_close(got.vwap, expected)


def test_adx_matches_pandas_wilder(bars):
    high, low, close = bars.high, bars.low, bars.close
    up = high.diff()
    down = -low.diff()
    plus_dm = pd.Series(np.where((up > down) & (up > 0), up, 0.0), index=bars.index).iloc[1:]
    minus_dm = pd.Series(np.where((down > up) & (down > 0), down, 0.0), index=bars.index).iloc[1:]
    tr = ref_true_range(bars).iloc[1:]
    s_tr = ref_wilder(tr, 14)
    plus_di = 100 * ref_wilder(plus_dm, 14) / s_tr
    minus_di = 100 * ref_wilder(minus_dm, 14) / s_tr
    dx = 100 * (plus_di - minus_di).abs() / (plus_di + minus_di)
    expected_adx = ref_wilder(dx, 14)
    got = ind.adx(high, low, close, 14)
    assert_close(got.plus_di[1:], plus_di)
    assert_close(got.minus_di[1:], minus_di)
    assert_close(got.adx[1:], expected_adx)
    assert np.isnan(got.adx[:27]).all() and not np.isnan(got.adx[27])


def test_swing_pivots_match_rolling_reference(bars):
    left, right = 3, 2
    high, low = bars.high, bars.low
    prev_max = high.shift(1).rolling(left).max()
    next_max = high[::-1].shift(1).rolling(right).max()[::-1]
    prev_min = low.shift(1).rolling(left).min()
    next_min = low[::-1].shift(1).rolling(right).min()[::-1]
    exp_high = ((high > prev_max) & (high >= next_max)).to_numpy()
    exp_low = ((low < prev_min) & (low <= next_min)).to_numpy()
    got_high, got_low = ind.swing_pivots(high, low, left, right)
    assert exp_high.sum() > 50 and exp_low.sum() > 50
    assert np.array_equal(got_high, exp_high)
    assert np.array_equal(got_low, exp_low)


def test_swing_pivot_on_constructed_bars():
    high = np.array([1, 2, 3, 5, 4, 5, 2, 1, 1.0])
    low = high - 0.5
    ph, pl = ind.swing_pivots(high, low, 2, 2)
    # index 3 (5) is above the 2 before and >= the 2 after (a tie with index 5 keeps the first)
    assert ph.tolist() == [False, False, False, True, False, False, False, False, False]
    assert not pl.any()


def test_incremental_states_equal_array_versions(bars):
    time_s = bars.index.as_unit("s").asi8
    h, l, c, v = (bars[k].to_numpy() for k in ("high", "low", "close", "volume"))
    atr_state, atr1_state = ind.AtrState(14), ind.AtrState(1)
    ema_state, rsi_state = ind.EmaState(20), ind.RsiState(14)
    vwap_state = ind.VwapState(anchor_hour_utc=22)
    got = {k: [] for k in ("atr", "atr1", "ema", "rsi", "vwap", "std")}
    for i in range(len(c)):
        got["atr"].append(atr_state.update(h[i], l[i], c[i]))
        got["atr1"].append(atr1_state.update(h[i], l[i], c[i]))
        got["ema"].append(ema_state.update(c[i]))
        got["rsi"].append(rsi_state.update(c[i]))
        vw, sd = vwap_state.update(int(time_s[i]), h[i], l[i], c[i], v[i])
        got["vwap"].append(vw)
        got["std"].append(sd)
    bands = ind.session_vwap(time_s, h, l, c, v, 22)
    # identical arithmetic in the same order: exact equality, not just closeness
    np.testing.assert_array_equal(got["atr"], ind.atr(h, l, c, 14))
    np.testing.assert_array_equal(got["atr1"], ind.atr(h, l, c, 1))
    np.testing.assert_array_equal(got["ema"], ind.ema(c, 20))
    np.testing.assert_array_equal(got["rsi"], ind.rsi(c, 14))
    np.testing.assert_array_equal(got["vwap"], bands.vwap)
    np.testing.assert_array_equal(got["std"], bands.std)
    assert math.isclose(rsi_state.value, got["rsi"][-1])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="period must be an integer >= 1"):
        ind.atr([1.0], [0.5], [0.8], 0)
    with pytest.raises(ValueError, match="anchor_hour_utc must be 0..23"):
        ind.session_ids(np.array([0]), 24)
    with pytest.raises(ValueError, match="same length"):
        ind.session_vwap(np.array([0, 60]), [1.0], [1.0], [1.0], [1.0])


# ----------------------------------------------------------------------------------------------
# Speed helpers and incremental twins used by the engine's SeriesMemo: bit-identical, not close
# ----------------------------------------------------------------------------------------------

def _bits(values) -> bytes:
    return np.asarray(values, dtype=np.float64).tobytes()


def test_window_view_and_row_mean_std_equal_numpy(bars):
    close = bars.close.to_numpy()[:500]
    for width in (2, 5, 20, 37):
        rows = ind.window_view(close, width)
        reference = np.lib.stride_tricks.sliding_window_view(close, width)
        assert rows.shape == reference.shape and rows.strides == reference.strides
        mean, std = ind.row_mean_std(rows)
        assert _bits(mean) == _bits(reference.mean(axis=1))
        assert _bits(std) == _bits(reference.std(axis=1))
    strided = close[::2]  # not contiguous: the plain sliding window view
    assert np.array_equal(ind.window_view(strided, 3), np.lib.stride_tricks.sliding_window_view(strided, 3))


def test_wilder_continue_is_wilder_smooth_after_its_seed(bars):
    tr = ind.true_range(bars.high, bars.low, bars.close)
    full = ind.wilder_smooth(tr, 14)
    assert _bits(ind.wilder_continue(float(full[99]), tr[100:].tolist(), 14)) == _bits(full[100:])


def test_swing_pivots_equal_max_min_rule_with_nan_and_ties():
    rng = np.random.default_rng(3)
    high = np.round(rng.random(400) * 5, 0) + 10  # many ties
    high[[17, 150, 151]] = np.nan
    low = high - 1
    for left in (1, 2, 3):
        for right in (1, 2, 4):
            got_high, got_low = ind.swing_pivots(high, low, left, right)
            n = len(high)
            for i in range(n):
                inside = left <= i < n - right
                before, after = high[i - left:i], high[i + 1:i + 1 + right]
                expect = inside and bool(high[i] > np.max(before) and high[i] >= np.max(after))
                assert got_high[i] == expect, (left, right, i)
                lb, la = low[i - left:i], low[i + 1:i + 1 + right]
                assert got_low[i] == (inside and bool(low[i] < np.min(lb) and low[i] <= np.min(la)))


@pytest.mark.parametrize("period", [5, 14])
def test_adx_state_continues_the_array_adx(bars, period):
    h, l, c = (bars[k].to_numpy() for k in ("high", "low", "close"))
    expected = ind.adx(h, l, c, period).adx
    assert not ind.AdxState.from_arrays(h[:2 * period - 1], l[:2 * period - 1], c[:2 * period - 1], period).ready
    for cut in (2 * period, 300, 1700):
        state = ind.AdxState.from_arrays(h[:cut], l[:cut], c[:cut], period)
        assert state.ready and _bits(state.value) == _bits(expected[cut - 1])
        batch = ind.AdxState.from_arrays(h[:cut], l[:cut], c[:cut], period)
        got = [state.update(h[i], l[i], c[i]) for i in range(cut, min(cut + 400, len(c)))]
        assert _bits(got) == _bits(expected[cut:cut + len(got)])
        end = cut + len(got)  # update_all: the same steps, the same state
        assert _bits(batch.update_all(h[cut:end].tolist(), l[cut:end].tolist(), c[cut:end].tolist())) == _bits(got[-1])
        fields = ("prev_high", "prev_low", "prev_close", "s_tr", "s_plus", "s_minus", "value")
        assert _bits([getattr(batch, k) for k in fields]) == _bits([getattr(state, k) for k in fields])


def test_last_session_vwap_is_the_last_session_of_session_vwap_and_continues(bars):
    time_s = bars.index.as_unit("s").asi8
    h, l, c, v = (bars[k].to_numpy() for k in ("high", "low", "close", "volume"))
    full = ind.session_vwap(time_s, h, l, c, v, 22)
    assert len(set(full.session_start[700:2400].tolist())) > 1, "the continuations must cross a session reset"
    for cut in (1, 700, 1500, 2000):
        start, vwap, std, state = ind.last_session_vwap(time_s[:cut], h[:cut], l[:cut], c[:cut], v[:cut], 22)
        assert start == full.session_start[cut - 1]
        assert _bits(vwap) == _bits(full.vwap[start:cut]) and _bits(std) == _bits(full.std[start:cut])
        got = [state.update(int(time_s[i]), h[i], l[i], c[i], v[i]) for i in range(cut, min(cut + 900, len(c)))]
        assert _bits([g[0] for g in got]) == _bits(full.vwap[cut:cut + len(got)])  # across a session reset
        assert _bits([g[1] for g in got]) == _bits(full.std[cut:cut + len(got)])


@pytest.mark.parametrize("n", [0, 1, 5, 7, 8, 9, 10, 15, 16, 17, 20, 23, 24, 31, 128, 129, 300, 1500])
def test_pairwise_sum_has_numpys_bits(n):
    rng = np.random.default_rng(n)
    for scale in (1e-4, 1.0, 2000.0):
        values = rng.normal(scale, scale / 3, n)
        assert ind.pairwise_sum(values.tolist()) == float(np.add.reduce(values))
    zeros = np.full(n, -0.0)  # numpy's reduction starts at +0.0: a sum of negative zeros is +0.0
    assert np.signbit(ind.pairwise_sum(zeros.tolist())) == np.signbit(np.add.reduce(zeros))


def test_bollinger_width_step_has_the_array_paths_bits(bars):
    close = bars["close"].to_numpy(np.float64)[:600]
    for period, num_std in ((20, 2.0), (7, 1.5), (10, 2.0), (16, 1.0), (33, 2.5)):
        width = ind.bollinger(close, period, num_std).width
        steps = [ind.bollinger_width_step(close[i - period + 1:i + 1].tolist(), num_std)
                 for i in range(period - 1, len(close))]
        assert np.array_equal(np.array(steps).view(np.int64), width[period - 1:].view(np.int64))


def test_batch_updates_over_a_range_are_the_single_updates(bars):
    """``VwapState.update_all`` (a session change and volume-less bars inside the batch),
    ``EmaState.update_all`` and ``AdxState.update_all`` over ``start..stop`` of whole lists:
    the same values and the same state as ``update`` bar by bar."""
    time_s = bars.index.as_unit("s").asi8.tolist()
    h, l, c = (bars[k].to_numpy().tolist() for k in ("high", "low", "close"))
    volume = bars["tick_volume"].to_numpy(np.float64).tolist() if "tick_volume" in bars else [1.0] * len(c)
    volume[:40] = [0.0] * 40  # the first session's first bars carry no volume: weighed by count
    day = 86400
    start = next(i for i in range(1, len(time_s)) if time_s[i] // day != time_s[i - 1] // day) - 30
    stop = start + 90  # crosses midnight (anchor 0)
    for cut in (0, 40, start):
        single, batch = ind.VwapState(0), ind.VwapState(0)
        for i in range(cut):
            single.update(time_s[i], h[i], l[i], c[i], volume[i])
            batch.update(time_s[i], h[i], l[i], c[i], volume[i])
        expected = [single.update(time_s[i], h[i], l[i], c[i], volume[i]) for i in range(cut, stop)]
        vwaps, began, std = batch.update_all(time_s, h, l, c, volume, cut, stop)
        assert _bits(vwaps) == _bits([v for v, _ in expected]) and _bits(std) == _bits(expected[-1][1])
        sessions = [i for i in range(max(cut, 1), stop) if time_s[i] // day != time_s[i - 1] // day]
        assert began == (sessions[-1] if sessions else (cut if cut == 0 else -1))
        assert batch == single
    ema_single, ema_batch = ind.EmaState(9), ind.EmaState(9)
    assert _bits([ema_single.update(x) for x in c[100:130]][-1]) == _bits(ema_batch.update_all(c, 100, 130))
    adx_single = ind.AdxState.from_arrays(np.array(h[:100]), np.array(l[:100]), np.array(c[:100]), 14)
    adx_batch = ind.AdxState.from_arrays(np.array(h[:100]), np.array(l[:100]), np.array(c[:100]), 14)
    assert _bits([adx_single.update(h[i], l[i], c[i]) for i in range(100, 130)][-1]) \
        == _bits(adx_batch.update_all(h, l, c, 100, 130))
    assert adx_batch == adx_single


@pytest.mark.parametrize("n", [15, 16, 17, 20, 23, 24])
def test_mean_std_has_row_mean_stds_bits(n):
    """``mean_std`` (written out for 20 values, the Bollinger window, and its sums for 16 to 23) against
    ``row_mean_std``: the same bits, for prices, tiny values, signed zeros, NaN and infinity."""
    rng = np.random.default_rng(n)
    rows = [rng.normal(scale, scale / 3, n) for scale in (1e-4, 1.0, 2000.0)]
    rows += [np.full(n, -0.0), np.r_[np.full(n - 1, 2000.0), np.nan], np.r_[np.full(n - 1, 2000.0), np.inf]]
    for row in rows:
        for ddof in (0, 1):  # (the range's sample widths take ddof=1)
            mean, std = ind.mean_std(row.tolist(), ddof)
            with np.errstate(invalid="ignore"):  # inf - inf
                expected_mean, expected_std = ind.row_mean_std(row[np.newaxis, :], ddof)
            assert _bits([mean, std]) == _bits([expected_mean[0], expected_std[0]])
