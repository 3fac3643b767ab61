"""The engine's SeriesMemo (series extended between evaluations) against fresh computations.

The memo is only worth having if it is invisible: every decision, reason and indicator value must
be the one a fresh evaluation gives, bit for bit. The walks follow the monitor's window (the
first bar fixed, one more bar per step, the same bar re-checked) over real XAUUSD bars crossing a
VWAP session reset, and the cases where the memo must start over.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.micro_scalp_model import MicroScalpConfig
from engines import indicators as ind
from engines.micro_scalp import RegimeState, evaluate
from engines.micro_scalp_features import Bars, BadBars, SeriesMemo, compute_features
from engines.micro_scalp_signals import micro_choch, micro_sweep
from engines.spread import SpreadStats
from tests.micro_scalp.real_bars import XAU_FILE, read_real_bars

REPO = Path(__file__).resolve().parents[2]
SPREAD = 0.20


@pytest.fixture(scope="module")
def xau() -> tuple[Bars, object]:
    config = MicroScalpConfig.model_validate(json.loads((REPO / "config" / "micro_scalp.json").read_text()))
    return Bars.from_frame(read_real_bars(XAU_FILE).iloc[:3000]), config.for_symbol("XAUUSD")


def window(bars: Bars, start: int, end: int) -> Bars:
    """A fresh copy, as the monitor gets a fresh frame every time."""
    return Bars(*(a[start:end].copy() for a in (bars.time_s, bars.open, bars.high, bars.low, bars.close,
                                               bars.volume)))


def decide(bars: Bars, params, state: RegimeState | None):
    close = float(bars.close[-1])
    now = datetime.fromtimestamp(int(bars.time_s[-1]) + 60, tz=timezone.utc)
    return evaluate(bars, (close - SPREAD / 2, close + SPREAD / 2), SpreadStats(SPREAD, SPREAD, SPREAD, 100), None,
                    params, "XAUUSD", now, state, stops_level=0.1)


def same_decision(a, b) -> bool:
    return repr(a) == repr(b) and repr(a.regime_state.base) == repr(b.regime_state.base)


def bits(values) -> bytes:
    return np.asarray(values, dtype=np.float64).tobytes()


def test_growing_window_with_memo_decides_exactly_as_fresh_evaluations(xau):
    bars, params = xau
    start = 1000
    sessions = ind.session_ids(bars.time_s[start:1500], params.vwap_anchor_hour_utc)
    assert len(set(sessions.tolist())) > 1, "the walk must cross a VWAP session reset"
    kept = fresh = None
    reused = 0
    seen: set[tuple[str | None, str | None]] = set()
    for end in range(start + 100, 1500):
        for _ in range(2 if end % 7 == 0 else 1):  # some bars are checked twice, as at the 5 s cadence
            data = window(bars, start, end)
            memo_before = kept.regime_state.memo if kept else None
            kept = decide(data, params, kept.regime_state if kept else None)
            fresh = decide(data, params, replace(fresh.regime_state, memo=None) if fresh else None)
            assert same_decision(kept, fresh), end
            reused += kept.regime_state.memo is memo_before
            seen.add((kept.strategy, kept.failed))
    assert reused > 300  # the memo was carried (and extended) through the walk
    assert ("edge_based", None) in seen and len({strategy for strategy, _ in seen}) >= 4  # ideas, every checker


def test_memo_features_equal_fresh_features(xau):
    bars, params = xau
    memo = SeriesMemo()
    for end in list(range(1100, 1160)) + [1160, 1400]:
        data = window(bars, 1000, end)
        memo.begin(data)
        memo.validate(data)
        kept = compute_features(data, 2000.0, 2000.2, params, memo)
        fresh = compute_features(data, 2000.0, 2000.2, params)
        for name in ("atr_now", "atr1", "avg_range", "vwap_now", "vwap_std_now", "ema_now", "adx_now"):
            assert bits(getattr(kept, name)) == bits(getattr(fresh, name)), (end, name)
        assert kept.vwap_session_start == fresh.vwap_session_start and kept.vwap_partial == fresh.vwap_partial
        assert bits(kept.atr) == bits(ind.atr(data.high, data.low, data.close, params.atr_period))
        assert bits(kept.vwap_tail(10)) == bits(fresh.vwap[-10:])
        assert np.array_equal(kept.pivot_high, fresh.pivot_high) and np.array_equal(kept.pivot_low, fresh.pivot_low)
        for left, right in ((3, 3), (1, 4)):
            high, low = ind.swing_pivots(data.high, data.low, left, right)
            got_high, got_low = kept.pivots(left, right)
            assert np.array_equal(got_high, np.flatnonzero(high)) and np.array_equal(got_low, np.flatnonzero(low))
        assert bits(kept.bb_width) == bits(ind.bollinger(data.close[-(params.bb_period + 19):], params.bb_period,
                                                         params.bb_std).width)
        reference_adx = ind.adx(data.high, data.low, data.close, params.adx_period).adx[-1]
        assert bits(kept.adx_now) == bits(reference_adx)
        width = ind.bollinger(data.close[-(params.bb_period + 19):], params.bb_period, params.bb_std).width
        reference_ratio = float(np.mean(width[-5:])) / float(np.mean(width[-20:]))
        assert bits(kept.bb_width_ratio) == bits(reference_ratio), end


def test_memo_starts_over_when_the_window_is_not_an_extension(xau):
    bars, params = xau
    memo = SeriesMemo()
    revised = window(bars, 1000, 1301)
    revised.close[150] = (revised.high[150] + revised.low[150]) / 2  # a revised bar inside the kept window
    assert revised.close[150] != bars.close[1150]
    cases = [window(bars, 1000, 1300), window(bars, 1000, 1301), window(bars, 1001, 1302),  # slid
             window(bars, 1001, 1290),                                                     # shorter
             revised, window(bars, 1001, 1310)]
    for data in cases:
        memo.begin(data)
        memo.validate(data)
        kept = compute_features(data, 2000.0, 2000.2, params, memo)
        fresh = compute_features(data, 2000.0, 2000.2, params)
        for name in ("atr_now", "vwap_now", "vwap_std_now", "ema_now", "adx_now"):
            assert bits(getattr(kept, name)) == bits(getattr(fresh, name)), name
        assert np.array_equal(kept.pivot_high, fresh.pivot_high)


def test_features_of_an_older_evaluation_stay_correct_after_the_memo_moves_on(xau):
    bars, params = xau
    names = ("atr_now", "vwap_now", "vwap_std_now", "ema_now", "adx_now")
    for touch_first in (False, True):  # the series fetched before the move (values read after) or not
        memo = SeriesMemo()
        first = window(bars, 1000, 1200)
        memo.begin(first)
        early = compute_features(first, 2000.0, 2000.2, params, memo)
        if touch_first:
            early.atr_at(0), early.vwap_std_now
        later = window(bars, 1000, 1260)
        memo.begin(later)
        moved = compute_features(later, 2000.0, 2000.2, params, memo)
        for name in names:
            getattr(moved, name)  # the memo's series now cover 1260 bars
        fresh = compute_features(first, 2000.0, 2000.2, params)
        for name in names:
            assert bits(getattr(early, name)) == bits(getattr(fresh, name)), name
        assert bits(early.atr) == bits(fresh.atr) and early.atr_at(-15) == fresh.atr_at(-15)
        assert bits(early.vwap_tail(10)) == bits(fresh.vwap_tail(10))
        for name in ("avg_range", "bb_width_ratio"):  # read at construction, with the core series
            assert bits(getattr(early, name)) == bits(getattr(fresh, name)), name
        assert early.pivot_high == fresh.pivot_high and early.pivot_low == fresh.pivot_low
        stale = compute_features(first, 2000.0, 2000.2, params, memo)  # a memo begun with other bars
        assert stale.n == len(first) and bits(stale.atr_now) == bits(fresh.atr_now)
        assert stale.pivot_high == fresh.pivot_high and bits(stale.bb_width_ratio) == bits(fresh.bb_width_ratio)


def test_the_bollinger_width_ratio_needs_twenty_complete_widths(xau):
    """None while some of the last 20 widths are incomplete (fewer than bb_period + 19 bars),
    then the ratio of the means of the last 5 and the last 20 widths."""
    bars, params = xau
    short = params.bb_period + 18
    assert compute_features(window(bars, 1000, 1000 + short), 2000.0, 2000.2, params).bb_width_ratio is None
    data = window(bars, 1000, 1000 + short + 1)
    width = ind.bollinger(data.close, params.bb_period, params.bb_std).width[-20:]
    reference_ratio = float(np.mean(width[-5:])) / float(np.mean(width))
    assert bits(compute_features(data, 2000.0, 2000.2, params).bb_width_ratio) == bits(reference_ratio)


def test_validation_of_the_new_bars_reports_what_full_validation_reports(xau):
    bars, _ = xau
    problems = {
        "bars contain NaN or infinite prices": lambda b, i: b.high.__setitem__(i, np.nan),
        "bars contain zero or negative prices": lambda b, i: b.low.__setitem__(i, 0.0),
        "bars have high below low/open/close or low above open/close": lambda b, i: b.high.__setitem__(i, b.low[i] - 1),
        "bars contain NaN or negative volume": lambda b, i: b.volume.__setitem__(i, -1.0),
        "bar times are not strictly increasing": lambda b, i: b.time_s.__setitem__(i, b.time_s[i - 1]),
    }
    params = MicroScalpConfig().for_symbol("XAUUSD")
    for message, spoil in problems.items():
        for new_bars, read in itertools.product((1, 3, 30), (False, True)):  # small (plain float) and array tail
            memo = SeriesMemo()
            good = window(bars, 1000, 1200)
            memo.begin(good)
            memo.validate(good)
            if read:  # the memo's column lists are current: the new bars are checked as they are appended
                compute_features(good, 2000.0, 2000.2, params, memo).cols
            bad = window(bars, 1000, 1200 + new_bars)
            spoil(bad, len(bad) - 1)
            memo.begin(bad)
            with pytest.raises(BadBars, match=message.replace("(", r"\(").replace(")", r"\)")):
                memo.validate(bad)
            with pytest.raises(BadBars, match=message.replace("(", r"\(").replace(")", r"\)")):
                bad.validate()


def _reference_from_frame(frame: pd.DataFrame) -> Bars:
    """The original column-by-column conversion."""
    times = frame.index.tz_convert("UTC")
    volume = np.zeros(len(frame))
    for column in ("tick_volume", "volume"):
        if column in frame.columns:
            values = frame[column].to_numpy(np.float64)
            if not np.isnan(values).all():
                volume = values
                break
    return Bars(times.as_unit("s").asi8.astype(np.int64), *(frame[c].to_numpy(np.float64)
                                                            for c in ("open", "high", "low", "close")), volume)


def test_from_frame_gives_the_column_by_column_arrays(xau_bars):
    base = xau_bars.iloc[:300].copy()
    base["tick_volume"] = np.arange(len(base), dtype=np.uint64)
    base["spread"] = np.int32(16)
    variants = {"feed": base, "ns": base.set_axis(base.index.as_unit("ns")),
                "sub-second": base.set_axis(base.index + pd.Timedelta(milliseconds=500)),
                "new york": base.set_axis(base.index.tz_convert("America/New_York")),
                "text column": base.assign(symbol="XAUUSD"), "no tick volume": base.assign(tick_volume=np.nan),
                "no volume at all": base.drop(columns=["tick_volume", "volume"])}
    for name, frame in variants.items():
        got, expected = Bars.from_frame(frame), _reference_from_frame(frame)
        for a, b in zip((got.time_s, got.open, got.high, got.low, got.close, got.volume),
                        (expected.time_s, expected.open, expected.high, expected.low, expected.close,
                         expected.volume)):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name


def test_array_mean_is_numpy_mean_bit_for_bit():
    from engines.micro_scalp_features import array_mean, list_mean

    rng = np.random.default_rng(11)
    for size in (1, 2, 5, 7, 8, 9, 10, 16, 20, 33, 129, 1000):
        values = rng.normal(2000.0, 3.0, size * 2)
        for sample in (values[:size], values[::2][:size], values[-size:] - values[:size]):
            assert bits(array_mean(sample)) == bits(float(np.mean(sample))), size
            assert bits(list_mean(sample.tolist())) == bits(float(np.mean(sample))), size  # short rows inline
    assert np.isnan(list_mean([]))
    assert bits(list_mean([-0.0, -0.0])) == bits(float(np.mean(np.array([-0.0, -0.0]))))  # numpy's 0.0 start


def test_reloaded_params_take_effect_at_the_next_evaluation_with_the_same_memo(xau):
    """The memo keeps a plain copy of the params for reading (``SeriesMemo.params_view``): a hot
    reload brings a new params object, which must be read from the next evaluation on."""
    bars, params = xau
    data = window(bars, 1000, 1200)
    first = decide(data, params, None)
    memo = first.regime_state.memo
    view = memo.params_view(params)
    assert all(getattr(view, name) == getattr(params, name) for name in type(params).model_fields)
    assert memo.params_view(params) is view  # kept while the same params come back

    reloaded = params.model_copy(update={"atr_period": params.atr_period + 1})
    assert memo.params_view(reloaded).atr_period == params.atr_period + 1
    # through the engine: the reloaded params decide, as they do on a fresh memo
    again = decide(data, reloaded, first.regime_state)
    fresh = decide(data, reloaded, None)
    assert again.regime_state.memo is memo
    assert repr(again) == repr(fresh)
    assert again.reasons != first.reasons  # the ATR of the new period is in the data reason


def test_a_rejected_new_bar_leaves_the_memo_as_it_was(xau):
    """The one-new-bar check (``SeriesMemo._validate_next``) appends to the column lists only a
    good bar: after a rejected bar, the good window that follows reads what a fresh memo reads."""
    bars, params = xau
    memo = SeriesMemo()
    good = window(bars, 1000, 1200)
    memo.begin(good)
    memo.validate(good)
    compute_features(good, 2000.0, 2000.2, params, memo).cols
    bad = window(bars, 1000, 1201)
    bad.high[-1] = np.nan
    memo.begin(bad)
    with pytest.raises(BadBars):
        memo.validate(bad)
    assert memo.store.columns.upto == 200  # the good window only
    later = window(bars, 1000, 1202)
    memo.begin(later)
    memo.validate(later)
    kept = compute_features(later, 2000.0, 2000.2, params, memo)
    fresh = compute_features(later, 2000.0, 2000.2, params)
    assert kept.cols.high[:1202] == fresh.cols.high[:1202]
    for name in ("atr_now", "vwap_now", "vwap_std_now", "ema_now", "adx_now", "bb_width_ratio"):
        assert bits(getattr(kept, name)) == bits(getattr(fresh, name)), name


# ----------------------------------------------------------------------------------------------
# The bar feed's lineage: extensions proved from store rows instead of bytes
# ----------------------------------------------------------------------------------------------

def _mt5_series(bars: Bars, start: int, end: int):
    """``bars[start:end]`` as the broker hands them out: MT5's dtypes (integer tick counts)."""
    from engines.bars import BarSeries

    count = end - start
    return BarSeries(bars.time_s[start:end].copy(), *(a[start:end].copy() for a in (bars.open, bars.high, bars.low,
                                                                                    bars.close)),
                     bars.volume[start:end].astype(np.uint64), np.full(count, 20, dtype=np.int32),
                     np.zeros(count, dtype=np.uint64))


def _store(bars: Bars, start: int, end: int, spare: int = 600):
    from feeds.bar_feed import _ClosedStore

    return _ClosedStore(_mt5_series(bars, start, end), spare)


def _counting_bytes(monkeypatch) -> list[int]:
    """Count the memo's byte reads (``_column_bytes``): the full comparison path."""
    import engines.micro_scalp_features as features

    calls: list[int] = []
    real = features._column_bytes

    def counted(bars):
        calls.append(len(bars))
        return real(bars)

    monkeypatch.setattr(features, "_column_bytes", counted)
    return calls


def _walk(bars: Bars, params, series_of, ends) -> None:
    """Evaluate the windows ``series_of(end)`` with one memo and each afresh: the same decisions."""
    kept = fresh = None
    for end in ends:
        series = series_of(end)
        close = float(series.close[-1])
        now = datetime.fromtimestamp(int(series.time_s[-1]) + 60, tz=timezone.utc)
        args = ((close - SPREAD / 2, close + SPREAD / 2), SpreadStats(SPREAD, SPREAD, SPREAD, 100), None, params,
                "XAUUSD", now)
        kept = evaluate(series, *args, kept.regime_state if kept else None, stops_level=0.1)
        fresh = evaluate(_mt5_series(bars, 1000, end), *args,
                         replace(fresh.regime_state, memo=None) if fresh else None, stops_level=0.1)
        assert same_decision(kept, fresh), end


def test_a_window_growing_in_the_feeds_store_is_carried_by_its_lineage(xau, monkeypatch):
    """Views of one store growing at their end: the memo keeps its series without reading a byte,
    and every decision is the fresh one."""
    bars, params = xau
    store = _store(bars, 1000, 1100)
    ends = list(range(1100, 1400))
    calls = _counting_bytes(monkeypatch)

    def series_of(end: int):
        if end > store.filled:
            store.append(_mt5_series(bars, store.filled + 1000, end).rows())
        return store.view(0, end - 1000)

    _walk(bars, params, series_of, ends)
    assert len(calls) == len(ends) + 1  # each fresh evaluation, and the memo's first window only


def test_a_new_store_or_a_series_not_from_the_feed_is_compared_byte_for_byte(xau, monkeypatch):
    """Another store (the feed copied its rows over, or fetched them again), a revised bar in it,
    or bars from elsewhere: no lineage proves anything, the bytes are compared, and the memo is
    kept exactly when they extend the last window."""
    bars, params = xau
    memo = SeriesMemo()
    calls = _counting_bytes(monkeypatch)
    first = _store(bars, 1000, 1200)
    copied = _store(bars, 1000, 1201)
    revised_series = _mt5_series(bars, 1000, 1202)
    revised_series.close[150] = (revised_series.high[150] + revised_series.low[150]) / 2
    from feeds.bar_feed import _ClosedStore

    revised = _ClosedStore(revised_series, 5)
    cases = [(first.view(0, 200), None), (first.view(0, 200), True), (copied.view(0, 201), True),
             (revised.view(0, 202), False), (_mt5_series(bars, 1000, 1203), False),
             (_mt5_series(bars, 1000, 1204), True), (Bars.coerce(_mt5_series(bars, 1000, 1205)), True)]
    for series, kept in cases:
        data = Bars.coerce(series)
        store, read = memo.store, len(calls)
        memo.begin(data)
        memo.validate(data)
        assert kept is None or (memo.store is store) == kept, len(data)
        assert len(calls) > read or series is cases[1][0]  # the same rows again: carried by lineage
        features = compute_features(data, 2000.0, 2000.2, params, memo)
        fresh = compute_features(Bars.coerce(series).tail(len(data)), 2000.0, 2000.2, params)
        for name in ("atr_now", "vwap_now", "vwap_std_now", "ema_now", "adx_now", "bb_width_ratio"):
            assert bits(getattr(features, name)) == bits(getattr(fresh, name)), (len(data), name)


def test_the_tripwire_catches_a_store_that_broke_its_promise(xau):
    """Should a store ever change a written row, the lineage would lie: the last bar the memo holds
    is compared, and a changed one makes the memo start over (nothing that store held is trusted,
    not even the bytes of the last window, read from it)."""
    bars, params = xau
    store = _store(bars, 1000, 1200)
    memo = SeriesMemo()
    for stop in (200, 201):  # the second window is carried by its lineage
        store.append(_mt5_series(bars, 1000 + store.filled, 1000 + stop).rows())
        data = Bars.coerce(store.view(0, stop))
        memo.begin(data)
        memo.validate(data)
        compute_features(data, 2000.0, 2000.2, params, memo).cols
    held = memo.store
    high, low = store.columns[2][200], store.columns[3][200]
    store._writable[4][200] = (high + low) / 2  # the last close, changed behind the views' backs
    assert store.columns[4][200] != bars.close[1200]
    store.append(_mt5_series(bars, 1201, 1202).rows())
    data = Bars.coerce(store.view(0, 202))
    memo.begin(data)
    assert memo.store is not held
    memo.validate(data)
    features = compute_features(data, 2000.0, 2000.2, params, memo)
    fresh = compute_features(Bars.coerce(_copy_series(store.view(0, 202))), 2000.0, 2000.2, params)
    for name in ("atr_now", "vwap_now", "ema_now", "adx_now"):
        assert bits(getattr(features, name)) == bits(getattr(fresh, name)), name


def _copy_series(series):
    from engines.bars import BarSeries

    return BarSeries(*(np.array(column) for column in (series.time_s, series.open, series.high, series.low,
                                                       series.close, series.tick_volume, series.spread,
                                                       series.real_volume)))


def test_bars_from_the_feed_read_their_rows_and_volume_as_the_arrays_hold_them(xau):
    """``Bars.row`` (from the store row) and the volume converted on first read are what the
    arrays and ``_series_volume`` give; big tick counts included."""
    from engines.micro_scalp_features import _series_volume

    bars, _ = xau
    series = _mt5_series(bars, 1000, 1100)
    series.tick_volume[:3] = [2 ** 53 + 1, 2 ** 64 - 1, 2 ** 53 - 1]
    from feeds.bar_feed import _ClosedStore

    view = _ClosedStore(series, 3).view(0, 100)
    for data in (Bars.coerce(view), Bars.coerce(series)):
        for i in (0, 1, 2, 50, 99):
            assert data.row(i) == (data.time_s.item(i), data.open.item(i), data.high.item(i), data.low.item(i),
                                   data.close.item(i), _series_volume(series).item(i))
        assert data.volume.tobytes() == _series_volume(series).tobytes()
    assert Bars.coerce(view).lineage == view.lineage and Bars.coerce(series).lineage is None


def test_only_mt5s_dtypes_take_the_deferred_volume(xau):
    """``from_series`` defers the volume (and rests on the lineage) only for MT5's dtypes: int64
    times, float64 prices, integer tick counts. Times of another dtype give the whole arrays
    now, and the memo's byte comparison (which starts over on such times) decides."""
    from engines.bars import BarSeries

    bars, _ = xau
    store = _store(bars, 1000, 1100)
    mt5 = Bars.from_series(store.view(0, 100))
    assert "volume" not in mt5.__dict__ and mt5.lineage is not None
    other = store.view(0, 100)
    odd = BarSeries(other.time_s.astype(np.int32), other.open, other.high, other.low, other.close,
                    other.tick_volume, other.spread, other.real_volume).with_lineage(store, 0, 100)
    made = Bars.from_series(odd)
    assert "volume" in made.__dict__ and made.lineage is None
    assert np.array_equal(made.volume, mt5.volume) and made.volume.dtype == np.float64


def test_kept_sweep_and_choch_answers_equal_fresh_ones(xau):
    """``micro_sweep`` and ``micro_choch`` keep each bar's answer with the memo: along a growing
    window (long enough for old answers to be dropped), the same bar again, windows that skip
    bars, and windows that are not extensions (a revised bar, a slide: the answers start over),
    they find what a fresh evaluation finds."""
    bars, params = xau
    memo = SeriesMemo()
    revised = window(bars, 1000, 1601)
    revised.low[597] = revised.low[597] - 5.0  # a revised bar inside the kept window: a deeper low
    cases = [window(bars, 1000, end) for end in range(1100, 1500)] + [window(bars, 1000, 1499)]  # (same bar)
    cases += [window(bars, 1000, end) for end in (1503, 1509, 1510, 1530, 1600)]  # skipped bars
    cases += [revised, window(bars, 1001, 1602)]
    sweeps = chochs = 0
    for data in cases:
        memo.begin(data)
        memo.validate(data)
        kept = compute_features(data, 2000.0, 2000.2, params, memo)
        fresh = compute_features(data, 2000.0, 2000.2, params)
        sweep, choch = micro_sweep(kept, params), micro_choch(kept, params)
        assert sweep == micro_sweep(fresh, params) and choch == micro_choch(fresh, params), len(data)
        sweeps += sweep is not None
        chochs += choch is not None
    assert sweeps > 10 and chochs > 10  # there were some to find


def test_kept_answers_follow_a_config_reload_in_the_middle_of_a_lineage(xau):
    """A config reload changes ``sweep_lookback``, ``choch_recent_bars`` or the pivots while the
    memo keeps its window: the kept answers are keyed on what they depend on, so each snapshot
    finds what a fresh evaluation with it finds."""
    bars, params = xau
    reloads = [params,
               params.model_copy(update={"sweep_lookback": 25}),
               params.model_copy(update={"choch_recent_bars": 20}),  # the same scan, further back
               params.model_copy(update={"pivot_left": 3})]
    memo = SeriesMemo()
    sweeps = chochs = 0
    for end in range(1100, 1400):
        p = reloads[(end // 7) % len(reloads)]  # a reload every few bars, back and forth
        data = window(bars, 1000, end)
        memo.begin(data)
        memo.validate(data)
        kept = compute_features(data, 2000.0, 2000.2, p, memo)
        fresh = compute_features(data, 2000.0, 2000.2, p)
        sweep, choch = micro_sweep(kept, p), micro_choch(kept, p)
        assert sweep == micro_sweep(fresh, p) and choch == micro_choch(fresh, p), (end, p is params)
        sweeps += sweep is not None
        chochs += choch is not None
    assert sweeps > 10 and chochs > 10
