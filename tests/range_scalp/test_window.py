"""The M5 window carried from one evaluation to the next (engines/range_window.py) gives, window
after window, BIT FOR BIT what the whole-window computations give: the bar check, the M15
buckets, the M5 ATR, the session VWAP and the previous day's levels. The windows slide the way a bar feed
serves them (one or a few bars on, the oldest dropped) and also jump, repeat, shrink, carry a
revised bar, a gap, a bad bar or data without volume."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engines.range_data import M5, M15, Bars, aggregate, bar_problem
from engines.range_indicators import mean_atr_last, session_vwap_last
from engines.indicators import adx, row_mean_std, window_view
from engines.range_market import CarriedAdx, CarriedExpansion, m15_expansion, previous_day_levels
from engines.range_metrics import bb_width_expansion_pct
from engines.range_window import M5Window, carried_count

RNG = np.random.default_rng(20261121)
START = 1_780_272_000  # 2026-06-01 00:00 UTC, a Monday


def series(n: int, gaps: bool = False, volume: bool = True) -> Bars:
    steps = RNG.integers(1, 4, n) if gaps else np.ones(n, dtype=np.int64)
    time = START + M5 * np.cumsum(steps).astype(np.int64) + int(RNG.integers(0, 3)) * M5
    close = 100 + np.cumsum(RNG.normal(0, 0.3, n))
    if RNG.random() < 0.5:
        close = np.round(close, 1)
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) + RNG.uniform(0, 0.2, n) * (RNG.random() > 0.1)
    low = np.minimum(open_, close) - RNG.uniform(0, 0.2, n) * (RNG.random() > 0.1)
    vol = RNG.integers(0, 50, n).astype(float) * (RNG.random() > 0.2) if volume else np.zeros(n)
    if volume and RNG.random() < 0.5:
        vol = vol + RNG.random(n)  # fractional volume: sums in a different order would show
    return Bars(time, open_, high, low, close, vol, M5)


def same_float(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def same_bars(a: Bars, b: Bars) -> bool:
    return a.period_s == b.period_s and all(
        getattr(a, n).dtype == getattr(b, n).dtype and getattr(a, n).tobytes() == getattr(b, n).tobytes()
        for n in ("time", "open", "high", "low", "close", "volume"))


def changed(bars: Bars, index: int, column: str, value: float) -> Bars:
    arrays = {n: getattr(bars, n).copy() for n in ("time", "open", "high", "low", "close", "volume")}
    arrays[column][index] = value
    return Bars(arrays["time"], arrays["open"], arrays["high"], arrays["low"], arrays["close"], arrays["volume"], M5)


def windows(bars: Bars, lookback: int):
    """Windows as a feed serves them, with the odd jump, repeat, shrink and revision; and the
    evaluation time (a bar closed, now somewhere before the next close)."""
    end = lookback // 2
    while end < len(bars):
        roll = RNG.random()
        window = bars.slice(max(0, end - lookback), end)
        if roll < 0.05:
            window = changed(window, len(window) - 1 - int(RNG.integers(0, 5)), "close",
                             float(window.close[-1]) + 0.1)
        elif roll < 0.08 and len(window) > 3:
            window = changed(window, len(window) - 1, "high", math.nan)
        elif roll < 0.10:
            window = bars.slice(max(0, end - lookback // 2), end)
        now = int(window.time[-1]) + M5 + int(RNG.integers(0, 4)) * 100
        yield window, float(now)
        if roll > 0.97:
            yield Bars(*(getattr(window, n).copy() for n in ("time", "open", "high", "low", "close", "volume")),
                       M5), float(now)  # the same bars again, in new arrays (exit pass, then entry)
        end += int(RNG.choice([1, 1, 1, 1, 2, 3, 40]))


@pytest.mark.parametrize("case", range(12))
def test_the_carried_window_equals_the_whole_window_computations(case: int) -> None:
    bars = series(1500, gaps=case % 3 == 1, volume=case % 4 != 3)
    lookback = int(RNG.choice([60, 300, 720]))
    anchor, day_hour, min_hours = int(RNG.integers(0, 24)), int(RNG.integers(0, 24)), float(RNG.choice([4.0, 12.0]))
    memo = M5Window()
    for window, now_s in windows(bars, lookback):
        want_m15 = aggregate(window, M15, now_s)
        assert same_bars(memo.aggregate_m15(window, now_s), want_m15)
        want_atr = mean_atr_last(window.high, window.low, window.close, 14)
        assert same_float(memo.mean_atr(window, 14), want_atr)
        problem = bar_problem(window, "M5 bars")
        assert memo.bar_problem(window, "M5 bars") == problem
        if problem is not None:
            continue  # the engine stops at the data-quality check
        want_vwap = session_vwap_last(window.time, window.high, window.low, window.close, window.volume, anchor)
        assert same_float(memo.session_vwap(window, anchor), want_vwap)
        want_day = previous_day_levels(window, now_s, day_hour, min_hours)
        assert memo.previous_day(window, now_s, day_hour, min_hours, previous_day_levels) == want_day
        want_bb = reference_bb_expansion(window.close[-61:], 20, 60)
        assert same_value(memo.bb_expansion_pct(window, 20, 60), want_bb)
        assert same_value(bb_width_expansion_pct(window.close[-61:], 20, 60), want_bb)


def reference_bb_expansion(close: np.ndarray, period: int, min_bars: int) -> float | None:
    """``bb_width_expansion_pct`` as numpy arrays compute it (the widths and their mean)."""
    n = len(close)
    first, last = max(period, n - 40), n - 21
    if n < min_bars or n < period + 1 or last < first:
        return None
    mean, std = row_mean_std(window_view(close[first - period:], period))
    widths = 4.0 * std / mean * 100.0
    count = last - first + 1
    historical = float(np.add.reduce(widths[:count]) / count)
    if not historical > 0:
        return None
    return (float(widths[-1]) - historical) / historical * 100.0


def same_value(a: float | None, b: float | None) -> bool:
    return a is None and b is None or a is not None and b is not None and same_float(a, b)


def test_bollinger_widths_are_carried_only_over_clean_windows_and_a_few_new_bars() -> None:
    """The cases where the widths must NOT be carried: a window that did not pass the bar
    check here, more new bars than ``_SMALL``, a revised close among the carried bars."""
    bars = series(400)
    memo = M5Window()
    first = bars.slice(0, 200)
    assert memo.bar_problem(first, "M5 bars") is None
    memo.bb_expansion_pct(first, 20, 60)
    unchecked = bars.slice(1, 201)  # never checked: computed whole, nothing kept
    assert same_value(memo.bb_expansion_pct(unchecked, 20, 60), reference_bb_expansion(unchecked.close[-61:], 20, 60))
    assert memo._widths is None
    for window in (bars.slice(2, 202), bars.slice(30, 230), changed(bars.slice(31, 231), 190, "close", float(bars.low[221])),
                   bars.slice(32, 232)):
        assert memo.bar_problem(window, "M5 bars") is None
        assert same_value(memo.bb_expansion_pct(window, 20, 60), reference_bb_expansion(window.close[-61:], 20, 60))
    window = bars.slice(33, 233)  # another Bollinger period: the carried widths are not this period's
    assert memo.bar_problem(window, "M5 bars") is None
    assert same_value(memo.bb_expansion_pct(window, 21, 60), reference_bb_expansion(window.close[-61:], 21, 60))


def test_the_h1_adx_is_carried_while_the_window_grows_and_recomputed_otherwise() -> None:
    """``CarriedAdx`` against ``adx(...)[-1]`` over windows that grow (carried), slide (the seed
    moves: recomputed), carry a revised bar, repeat, or are too short for a ready state."""
    hourly = aggregate(series(6000), 3600, float(START + 6000 * M5 * 2), drop_partial_first=False)
    carried = CarriedAdx()
    cuts = [(0, n) for n in range(1, 60)] + [(0, 60), (0, 62), (1, 63), (1, 64), (1, 64), (0, 70), (1, 71), (1, 73)]
    for start, stop in cuts:
        window = hourly.slice(start, stop)
        if stop == 62:
            window = Bars(window.time, window.open, window.high.copy(), window.low, window.close,
                          window.volume, window.period_s)
            window.high[40] += 0.5  # a revised hour among the carried ones
        want = adx(window.high, window.low, window.close, 14).adx[-1]
        assert same_float(carried.last(window, 14), float(want))


def test_a_new_h1_bar_that_is_not_finite_gives_the_adx_of_the_arrays() -> None:
    """A NaN or infinite value among two new hours makes the carried state unready half-way:
    the ADX is then the arrays' (NaN), not an error, and the next window is right again."""
    hourly = aggregate(series(3000), 3600, float(START + 3000 * M5 * 2), drop_partial_first=False)
    for bad in (math.nan, math.inf):
        carried = CarriedAdx()
        high = hourly.high.copy()
        high[40] = bad
        bars = Bars(hourly.time, hourly.open, high, hourly.low, hourly.close, hourly.volume, hourly.period_s)
        for stop in (40, 42, 43):
            window = bars.slice(0, stop)
            want = adx(window.high, window.low, window.close, 14).adx[-1]
            assert same_float(carried.last(window, 14), float(want))


def test_the_carried_count_compares_every_bit() -> None:
    bars = series(50)
    window = bars.slice(0, 40)
    assert carried_count(window, bars.slice(1, 41)) == 39
    assert carried_count(window, bars.slice(5, 45)) == 35
    assert carried_count(window, window) == 40
    assert carried_count(window, bars.slice(40, 50)) == 0  # nothing in common
    assert carried_count(window, changed(bars.slice(1, 41), 20, "volume", float(bars.volume[21]) + 1)) == 0
    assert carried_count(window, changed(bars.slice(1, 41), 3, "close", -0.0 if bars.close[4] == 0 else 0.0)) == 0
    assert carried_count(window, bars.slice(0, 30)) == 0  # a shorter window is not "the same bars plus new ones"


def test_new_bad_bars_are_reported_as_the_whole_window_check_reports_them() -> None:
    bars = series(200)
    memo = M5Window()
    assert memo.bar_problem(bars.slice(0, 100), "M5 bars") is None
    for column, value in (("high", math.nan), ("low", 0.0), ("volume", -1.0), ("volume", math.inf),
                          ("close", 1e9), ("time", int(bars.time[99]))):
        window = changed(bars.slice(1, 101), 99, column, value)
        assert memo.bar_problem(window, "M5 bars") == bar_problem(window, "M5 bars") is not None
        assert memo.bar_problem(bars.slice(0, 100), "M5 bars") is None


def test_m15_buckets_of_bars_that_are_not_positive_come_from_numpy() -> None:
    """Python's max and min could differ from numpy's on NaN or signed zeros: such buckets are
    left to ``aggregate``."""
    bars = series(120)
    memo = M5Window()
    first = bars.slice(0, 90)
    now = float(first.time[-1] + M5)
    memo.aggregate_m15(first, now)
    memo.bar_problem(first, "M5 bars")
    for column, value in (("high", math.nan), ("low", -0.0), ("volume", math.nan)):
        window = changed(bars.slice(3, 93), 89, column, value)
        later = float(window.time[-1] + M5)
        assert same_bars(memo.aggregate_m15(window, later), aggregate(window, M15, later))


def test_decisions_with_the_memo_equal_those_without_it() -> None:
    """Window after window (and the same inputs twice, as an exit pass and an entry check of one
    step see them), the remembered window, M15 buckets, candidates and touches change nothing."""
    from datetime import datetime, timezone

    from engines.range_market import MarketMemo
    from engines.range_scalp import evaluate_entry
    from tests.range_scalp.helpers import params

    p = params()
    bars = series(1400, volume=True)
    memo = MarketMemo()
    decided = set()
    for end in range(p.data.lookback_m5_bars, len(bars), 1):
        window = bars.slice(end - p.data.lookback_m5_bars, end)
        now = datetime.fromtimestamp(int(window.time[-1]) + M5 + 2, tz=timezone.utc)
        quote = (float(window.close[-1]), float(window.close[-1]) + 0.02)
        plain = evaluate_entry(window, None, quote, p, "TEST", now)
        for _ in range(1 + (end % 7 == 0)):
            remembered = evaluate_entry(window, None, quote, p, "TEST", now, memo=memo)
            assert repr(remembered) == repr(plain)
        decided.add(plain.failed)
    assert len(decided) >= 3 and memo.hits > 0


def test_feed_h1_bars_are_reused_only_while_they_are_the_same() -> None:
    """The bar feed serves a new H1 BarSeries at every step: the memo gives back the last H1
    Bars while the columns and the closed-bar cut are the same, and the market is the same."""
    from datetime import datetime, timezone

    from engines.bars import BarSeries
    from engines.range_data import H1
    from engines.range_market import MarketMemo, compute_market, read_inputs
    from tests.range_scalp.helpers import params

    p = params()
    bars = series(1200)
    hourly = aggregate(bars, H1, float(bars.time[-1] + M5), drop_partial_first=False)
    memo = MarketMemo()
    reused = 0
    last_h1 = None
    for end in range(p.data.lookback_m5_bars, len(bars), 2):
        window = bars.slice(end - p.data.lookback_m5_bars, end)
        now = datetime.fromtimestamp(int(window.time[-1]) + M5 + 2, tz=timezone.utc)
        shown = hourly.slice(0, int(hourly.time.searchsorted(now.timestamp())))  # with the forming hour
        close = shown.close.copy()
        if end % 10 == 0 and len(close) > 2:
            close[-2] += 0.01  # the broker revised a closed hour: not the bars of the last step
        feed = BarSeries(shown.time.copy(), shown.open.copy(), shown.high.copy(), shown.low.copy(),
                         close, shown.volume.astype(np.uint64), np.zeros(len(shown), np.int32),
                         np.zeros(len(shown), np.uint64))
        quote = (float(window.close[-1]), float(window.close[-1]) + 0.02)
        plain = read_inputs(window, feed, quote, p, "TEST", now)
        inputs = read_inputs(window, feed, quote, p, "TEST", now, memo=memo)
        assert same_bars(inputs.h1, plain.h1)
        reused += inputs.h1 is last_h1
        last_h1 = inputs.h1
        assert market_text(compute_market(inputs, p, memo)) == market_text(compute_market(plain, p))
    assert reused > 50


def market_text(market) -> dict[str, str]:
    """Every value the rules read, as exact text (the bars themselves are compared above)."""
    from dataclasses import fields

    return {f.name: repr(getattr(market, f.name)) for f in fields(market) if f.name != "inputs"}


def test_the_same_feed_view_of_h1_bars_is_known_without_reading_its_bytes(monkeypatch) -> None:
    """The feed hands out the same read-only view for the same store rows: the memo knows it by
    identity and compares no bytes. Any other series is compared (and a revised bar is seen)."""
    from engines.bars import BarSeries
    from engines.range_data import H1
    from feeds.bar_feed import _ClosedStore

    import engines.range_market as range_market

    bars = series(1200)
    hourly = aggregate(bars, H1, float(bars.time[-1] + M5), drop_partial_first=False)

    def feed_series(close: np.ndarray) -> BarSeries:
        return BarSeries(hourly.time.copy(), hourly.open.copy(), hourly.high.copy(), hourly.low.copy(), close,
                         hourly.volume.astype(np.uint64), np.zeros(len(hourly), np.int32),
                         np.zeros(len(hourly), np.uint64))

    plain = feed_series(hourly.close.copy())
    view = _ClosedStore(plain, 4).view(0, len(plain))
    now = float(hourly.time[-1] + H1 + 5)
    compared: list[int] = []
    real = range_market._same_columns
    monkeypatch.setattr(range_market, "_same_columns", lambda a, b: compared.append(1) or real(a, b))

    memo = range_market.MarketMemo()
    first = memo.h1_bars(view, now, 48)
    assert memo.h1_bars(view, now, 48) is first and not compared  # the same view: no byte read
    assert memo.h1_bars(plain, now, 48) is first and compared == [1]  # another object: compared, equal
    revised = hourly.close.copy()
    revised[-1] += 1.0
    other = memo.h1_bars(feed_series(revised), now, 48)  # compared, not equal: converted again
    assert compared == [1, 1] and other is not first and other.close[-1] == first.close[-1] + 1.0


def feed_windows(bars: Bars, spare: int = 64):
    """A bar feed store of ``bars`` (its first 300 rows, then appended one by one) and a view
    function: the windows the feed hands out, with their lineage."""
    from engines.bars import BarSeries
    from feeds.bar_feed import _ClosedStore

    def as_series(part: Bars) -> BarSeries:
        return BarSeries(part.time.copy(), part.open.copy(), part.high.copy(), part.low.copy(), part.close.copy(),
                         part.volume.astype(np.uint64), np.zeros(len(part), np.int32), np.zeros(len(part), np.uint64))

    store = _ClosedStore(as_series(bars.slice(0, 300)), spare)
    return store, as_series


def test_windows_of_one_store_are_carried_by_their_lineage() -> None:
    """Windows converted from the feed's store rows keep their lineage through ``closed_at``,
    ``tail`` and ``slice``; the carried count is then read from it without comparing bytes, and
    every value derived from the carried window is still the whole-window one."""
    import engines.range_window as range_window
    from engines.range_data import to_bars

    bars = series(400, volume=True)
    bars = Bars(bars.time, bars.open, bars.high, bars.low, bars.close, np.floor(bars.volume), M5)
    store, as_series = feed_windows(bars)
    memo = M5Window()
    last = None
    for stop in range(300, 360):
        if stop > 300:
            store.append(as_series(bars.slice(stop - 1, stop)).rows())
        window = to_bars(store.view(max(0, stop - 250), stop), M5).tail(240)
        assert window.lineage == (store, stop - 240, stop)
        if last is not None:
            assert range_window.carried_count(last, window) == 239
        now_s = float(window.time[-1] + M5)
        assert same_bars(memo.aggregate_m15(window, now_s), aggregate(window, M15, now_s))
        assert memo.bar_problem(window, "M5 bars") is None
        assert same_float(memo.mean_atr(window, 14), mean_atr_last(window.high, window.low, window.close, 14))
        assert same_float(memo.session_vwap(window, 7),
                          session_vwap_last(window.time, window.high, window.low, window.close, window.volume, 7))
        last = window
    assert window.slice(10, 20).lineage == (store, 359 - 240 + 10, 359 - 240 + 20)
    assert window.slice(-5, 20).lineage is None  # only plain in-range slices say which rows they are


def test_a_lineage_whose_last_carried_bar_differs_carries_nothing() -> None:
    """The lineage is trusted without reading the bars, but for a tripwire: should two windows
    claim rows of one store that do not hold the same last bar, the count is 0 (everything is
    computed from the whole window)."""
    from engines.range_data import to_bars

    bars = series(400)
    bars = Bars(bars.time, bars.open, bars.high, bars.low, bars.close, np.floor(bars.volume), M5)
    store, _ = feed_windows(bars)
    last = to_bars(store.view(0, 200), M5)
    new = to_bars(store.view(10, 210 - 10), M5)
    assert carried_count(last, new) == 190
    forged = changed(new, 189, "close", float(new.close[189]) + 1.0)
    forged.__dict__["lineage"] = new.lineage
    assert carried_count(last, forged) == 0
    unread = changed(new, 100, "close", float(new.close[100]) + 1.0)  # bytes would tell 0: the lineage is read
    unread.__dict__["lineage"] = new.lineage
    assert carried_count(last, unread) == 190
    assert carried_count(last, to_bars(store.view(200, 300), M5)) == 0  # adjacent rows: nothing in common
    assert carried_count(to_bars(store.view(50, 100), M5), last) == 0  # starts before the last one: bytes decide


def test_the_session_key_is_kept_within_its_hour_only() -> None:
    from engines.range_market import MarketMemo
    from engines.range_sessions import session_key_at
    from tests.range_scalp.helpers import params

    sessions = params().sessions
    memo = MarketMemo()
    for now_s in np.arange(START - 7200.0, START + 2 * 86400.0, 599.5):
        assert memo.session_key(float(now_s), sessions) == session_key_at(float(now_s), sessions)
    for now_s in (START + 3599.999, START + 3600.0, START + 3599.0, START + 7200.0 - 1e-6):
        assert memo.session_key(now_s, sessions) == session_key_at(now_s, sessions)


@pytest.mark.parametrize("case", range(4))
def test_the_m15_expansion_state_carried_tail_to_tail_is_the_whole_computation(case: int) -> None:
    """``CarriedExpansion`` against ``m15_expansion`` over M15 tails that move on one or a few
    bars (carried), jump, repeat, carry a revised or a NaN bar, or are too short (recomputed),
    with the ratio thresholds near the ratios so that every state shows up."""
    from dataclasses import replace

    from tests.range_scalp.helpers import params

    base = params()
    p = base.model_copy(update={"detection": base.detection.model_copy(
        update={"expansion_ratio_high": 1.05, "expansion_ratio_low": 0.95})})
    other = p.model_copy(update={"indicators": p.indicators.model_copy(update={"bb_period": 18})})
    m15 = aggregate(series(4000, gaps=case == 1), M15, float(START + 4000 * M5 * 3), drop_partial_first=False)
    carried, states = CarriedExpansion(), set()

    def kept(expansion: CarriedExpansion) -> str | None:
        last = expansion._last
        return None if last is None else repr(last[1:])

    end = 30
    while end < len(m15):
        tail = m15.slice(max(0, end - 60), end)
        roll = RNG.random()
        if roll < 0.05:
            tail = changed(tail, len(tail) - 1 - int(RNG.integers(0, 30)), "high", float(tail.high[-1]) + 5.0)
        elif roll < 0.07:
            tail = changed(tail, len(tail) - 1 - int(RNG.integers(0, 30)), "close", math.nan)
        tail = replace(tail, period_s=M15)
        q = other if RNG.random() < 0.05 else p  # params changed between two tails: nothing carried
        want = m15_expansion(tail, q)
        assert carried.state(tail, q) == want
        fresh = CarriedExpansion()
        fresh.state(tail, q)
        assert kept(carried) == kept(fresh)  # what is carried on is what a fresh computation keeps, bit for bit
        states.add(want)
        end += int(RNG.choice([1, 1, 1, 1, 2, 3, 0, 9]))
    assert states >= {"expanding", "contracting", "stable"}


def test_the_same_feed_view_is_cut_again_when_its_newest_bar_is_not_closed_at_now() -> None:
    """The identity shortcut of ``h1_bars`` holds only while the last cut kept the whole view and
    ``now`` keeps it too: an earlier ``now`` (the newest hour still forming) or another lookback
    is cut and converted as without a memo."""
    from engines.bars import BarSeries
    from engines.range_data import H1, to_bars
    from engines.range_market import MarketMemo
    from feeds.bar_feed import _ClosedStore

    bars = series(1200)
    hourly = aggregate(bars, H1, float(bars.time[-1] + M5), drop_partial_first=False)
    plain = BarSeries(hourly.time.copy(), hourly.open.copy(), hourly.high.copy(), hourly.low.copy(),
                      hourly.close.copy(), hourly.volume.astype(np.uint64), np.zeros(len(hourly), np.int32),
                      np.zeros(len(hourly), np.uint64))
    view = _ClosedStore(plain, 4).view(0, len(plain))
    closed = float(hourly.time[-1] + H1 + 5)
    memo = MarketMemo()
    whole = memo.h1_bars(view, closed, 48)
    assert memo.h1_bars(view, closed + H1 - 10, 48) is whole  # the newest bar stays closed: no search
    forming = closed - H1  # the newest hour still forming: cut off
    cut = memo.h1_bars(view, forming, 48)
    expected = to_bars(view, H1).closed_at(forming).tail(48)
    assert cut is not whole and same_bars(cut, expected) and cut.time[-1] == hourly.time[-2]
    assert memo.h1_bars(view, closed, 48) is not cut  # back to the whole view: cut again
    shorter = memo.h1_bars(view, closed, 24)
    assert len(shorter.time) == 24 and same_bars(shorter, to_bars(view, H1).closed_at(closed).tail(24))


def test_feed_series_with_a_lineage_keeps_the_checks_of_a_float_volume() -> None:
    """``to_bars`` of a lineage series skips the length and NaN checks only for an integer volume
    (the feed's): a float volume's NaN still reads as no volume, as for any other series."""
    from engines.bars import BarSeries
    from engines.range_data import H1, to_bars
    from feeds.bar_feed import _ClosedStore

    bars = series(400)
    hourly = aggregate(bars, H1, float(bars.time[-1] + M5), drop_partial_first=False)
    n = len(hourly)
    volume = hourly.volume.copy()
    volume[-1] = np.nan
    counts = hourly.volume.astype(np.uint64)
    for tick_volume, expected in ((counts, counts.astype(np.float64)),
                                  (volume, np.nan_to_num(volume, nan=0.0))):
        plain = BarSeries(hourly.time.copy(), hourly.open.copy(), hourly.high.copy(), hourly.low.copy(),
                          hourly.close.copy(), tick_volume, np.zeros(n, np.int32), np.zeros(n, np.uint64))
        view = _ClosedStore(plain, 4).view(0, n)
        converted = to_bars(view, H1)
        assert converted.lineage == view.lineage and same_bars(converted, to_bars(plain, H1))
        assert converted.volume.dtype == np.float64 and np.array_equal(converted.volume, expected)


def test_a_series_without_a_lineage_is_still_checked_column_by_column() -> None:
    """Only a bar feed series (with a lineage: rows of one store) skips the column checks; any
    other BarSeries of unequal columns is refused with the lengths named."""
    from engines.bars import BarSeries
    from engines.range_data import BarDataError, to_bars
    time = np.arange(3, dtype=np.int64) * M5
    price = np.full(3, 100.0)
    short = np.full(2, 100.0)
    integers = np.ones(3, dtype=np.int64)
    series = BarSeries(time, price, price, short, price, integers, integers, integers)
    assert series.lineage is None
    with pytest.raises(BarDataError, match=r"different lengths \[2, 3\]"):
        to_bars(series, M5, "bars_m5")
