"""The bar feed over the simulated terminal: cache, fallback, validation, health."""
from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engines.bars import BarSeries
from feeds.bar_feed import BadBars, BarFeed, validate_bars
from tests.execution.harness import build_stack


def frame(rows: list[tuple], start: str = "2026-01-05 10:00") -> pd.DataFrame:
    index = pd.date_range(start, periods=len(rows), freq="1min", tz="UTC")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index).assign(tick_volume=1)


GOOD = [(10, 11, 9, 10.5), (10.5, 12, 10, 11), (11, 11.5, 10.5, 11.2)]


def serve(broker, bars) -> None:
    """The broker answers with ``bars(symbol, timeframe, count, include_forming)``, as a series
    (``bars``) and as its rows (``bar_rows``): the two agree, as the Broker protocol says."""
    broker.bars = bars
    broker.bar_rows = lambda *args, **kwargs: bars(*args, **kwargs).rows()


def test_valid_bars_pass() -> None:
    validate_bars(BarSeries.from_frame(frame(GOOD)), "X", "M1")
    validate_bars(BarSeries.empty(), "X", "M1")  # market closed: nothing to check


def _with_index_change(data: pd.DataFrame, index_change: str | None) -> pd.DataFrame:
    """``data`` with its second bar time repeated ("duplicate") or its times reversed ("reverse")."""
    if index_change == "duplicate":
        data.index = data.index[[0, 1, 1]]
    elif index_change == "reverse":
        data.index = data.index[::-1]
    return data


@pytest.mark.parametrize("rows,index_change,message", [
    ([(10, 11, 9, np.nan)], None, "non-finite price"),
    ([(10, 11, 0, 10.5)], None, "non-positive price"),
    ([(10, 9, 11, 10)], None, "high/low do not contain"),
    ([(10, 10.2, 9, 10.5)], None, "high/low do not contain"),
    (GOOD, "duplicate", "duplicate bar time"),
    (GOOD, "reverse", "out of order"),
])
def test_bad_bars_are_rejected_with_the_reason(rows, index_change, message) -> None:
    data = _with_index_change(frame(rows), index_change)
    with pytest.raises(BadBars, match=message):
        validate_bars(BarSeries.from_frame(data), "XAUUSD", "M1")


@pytest.fixture
def feed_stack(tmp_path: Path):
    stack = build_stack(tmp_path)
    feed = BarFeed(stack.broker, stack.clock, lambda: [("XAUUSD", "M1"), ("EURUSD", "M5")], depth=200,
                   max_age_seconds=5)
    return stack, feed


def test_readers_are_served_from_the_cache_while_it_is_fresh(feed_stack) -> None:
    stack, feed = feed_stack
    feed.step(stack.clock.now())
    bars = feed.get("XAUUSD", "M1", 100)
    assert len(bars) == 100 and feed.stats.cache_hits == 1 and feed.stats.direct_fetches == 0
    assert bars.open_time().utcoffset() == timedelta(0)
    forming = feed.get("XAUUSD", "M1", 5, include_forming=True)
    assert forming.open_time() > bars.open_time()  # the last closed bar comes before the forming one
    assert forming.open_time() <= stack.clock.now() < forming.open_time() + timedelta(minutes=1)


def test_a_stale_cache_falls_back_to_a_direct_fetch_and_says_so(feed_stack, caplog) -> None:
    stack, feed = feed_stack
    feed.step(stack.clock.now())
    stack.clock.advance(120)  # two new M1 bars, the cache is 120 s old
    with caplog.at_level(logging.DEBUG, logger="feeds.bar_feed"):
        bars = feed.get("XAUUSD", "M1", 50)
    assert feed.stats.direct_fetches == 1
    assert "served by a direct fetch (cache 120.0 s old)" in caplog.text
    assert (stack.clock.now() - bars.open_time()).total_seconds() < 120


def test_a_broker_outage_keeps_the_last_good_bars_and_counts_the_error(feed_stack) -> None:
    stack, feed = feed_stack
    feed.step(stack.clock.now())
    before = feed.get("XAUUSD", "M1", 10)
    stack.terminal.faults.schedule("ipc_error", count=50, function="copy_rates_from_pos")
    feed.step(stack.clock.now())
    assert feed.stats.errors >= 1
    stack.terminal.faults.clear()
    assert feed.get("XAUUSD", "M1", 10).to_frame().equals(before.to_frame())


def test_bad_bars_from_the_broker_never_replace_good_data(feed_stack, monkeypatch) -> None:
    stack, feed = feed_stack
    feed.step(stack.clock.now())
    good = feed.get("XAUUSD", "M1", 10)
    real_bars = stack.broker.bars

    def corrupted(symbol, timeframe, count, include_forming=False):
        data = real_bars(symbol, timeframe, count, include_forming).to_frame()
        data.iloc[-3, data.columns.get_loc("low")] = -1.0
        return BarSeries.from_frame(data)

    serve(stack.broker, corrupted)
    feed.step(stack.clock.now())
    assert feed.stats.rejected == {"XAUUSD:M1": 1, "EURUSD:M5": 1}
    assert feed.get("XAUUSD", "M1", 10).to_frame().equals(good.to_frame())



def test_a_fetched_bar_with_an_infinite_high_is_refused(feed_stack) -> None:
    """An incremental fetch (a few bars, checked one by one) whose newest bar has a high of +inf
    (open, close and low in place, so only the finiteness test can catch it) is refused and
    counted with its reason."""
    stack, feed = feed_stack
    feed.step(stack.clock.now())
    real_bars = stack.broker.bars
    asked: list[int] = []

    def infinite_high(symbol, timeframe, count, include_forming=False):
        bars = real_bars(symbol, timeframe, count, include_forming)
        if symbol != "XAUUSD":
            return bars
        asked.append(count)
        data = bars.to_frame()
        data.iloc[-1, data.columns.get_loc("high")] = np.inf
        return BarSeries.from_frame(data)

    serve(stack.broker, infinite_high)
    stack.clock.advance(60)  # a new bar: fetched incrementally
    feed.step(stack.clock.now())
    assert asked and max(asked) <= 8  # (a few bars: the one-by-one check)
    assert feed.stats.rejected == {"XAUUSD:M1": 1}
    assert "XAUUSD M1: non-finite price at" in feed.stats.last_error


def test_health_reports_data_age_per_feed(feed_stack) -> None:
    stack, feed = feed_stack
    feed.step(stack.clock.now())
    stack.clock.advance(3)
    health = feed.health()
    assert set(health["feeds"]) == {"XAUUSD:M1", "EURUSD:M5"}
    entry = health["feeds"]["XAUUSD:M1"]
    assert entry["cache_age_s"] == pytest.approx(3.0)
    assert 0 <= entry["data_age_s"] < 120


def _same(a: BarSeries, b: BarSeries) -> bool:
    return a.to_frame().equals(b.to_frame())


def test_later_fetches_ask_only_for_new_bars_and_equal_a_full_fetch(feed_stack) -> None:
    stack, feed = feed_stack
    asked: list[int] = []
    real_bars = stack.broker.bars

    def counting(symbol, timeframe, count, include_forming=False):
        asked.append(count)
        return real_bars(symbol, timeframe, count, include_forming)

    serve(stack.broker, counting)
    first = feed.get("XAUUSD", "M1", 150)
    assert asked == [200] and feed.stats.full_fetches == 1
    for _ in range(12):  # a minute and a half per step: some steps see one new bar, some two
        stack.clock.advance(90)
        asked.clear()
        merged = feed.get("XAUUSD", "M1", 150, include_forming=True)
        assert asked and max(asked) <= 5  # the overlapping bar, the (at most 3) closed since, the forming one
        full = real_bars("XAUUSD", "M1", 150, include_forming=True)
        assert _same(merged, full)
    assert feed.stats.incremental_fetches == 12 and feed.stats.full_fetches == 1
    assert first.time_s[-1] < merged.time_s[-1]


def test_a_changed_overlapping_bar_means_a_full_fetch(feed_stack) -> None:
    stack, feed = feed_stack
    feed.get("XAUUSD", "M1", 100)
    stack.clock.advance(60)
    real_bars = stack.broker.bars

    def rewritten(symbol, timeframe, count, include_forming=False):  # the broker corrected its history
        data = real_bars(symbol, timeframe, count, include_forming).to_frame()
        data["close"] = data["close"] + 0.01
        data["high"] = data["high"] + 0.01
        return BarSeries.from_frame(data)

    serve(stack.broker, rewritten)
    bars = feed.get("XAUUSD", "M1", 100)
    assert feed.stats.full_fetches == 2 and feed.stats.incremental_fetches == 0
    expected = rewritten("XAUUSD", "M1", 200, include_forming=True).slice(None, -1).tail(100)
    assert _same(bars, expected)


def test_a_fetch_after_a_long_gap_is_a_full_fetch(feed_stack) -> None:
    stack, feed = feed_stack
    feed.get("XAUUSD", "M1", 100)
    stack.clock.advance(60 * 400)  # more new bars than the depth: nothing to merge
    bars = feed.get("XAUUSD", "M1", 100)
    assert feed.stats.full_fetches == 2 and feed.stats.incremental_fetches == 0
    assert _same(bars, stack.broker.bars("XAUUSD", "M1", 100))


@pytest.mark.parametrize("rows,index_change,message", [
    ([(10, 11, 9, np.nan)], None, "non-finite price at 2026-01-05 10:00:00+00:00"),
    ([(10, 11, 9, 10), (10, 11, 0, 10.5)], None, "non-positive price at 2026-01-05 10:01:00+00:00"),
    ([(10, 11, 9, 10), (10, np.inf, 9, 10.5)], None, "non-finite price at 2026-01-05 10:01:00+00:00"),
    ([(10, 9, 11, 10)], None, "high/low do not contain"),
    (GOOD, "duplicate", "duplicate bar time 2026-01-05 10:01:00"),
    (GOOD, "reverse", "out of order"),
])
def test_a_few_bars_get_the_same_verdict_as_many(rows, index_change, message) -> None:
    """Incremental fetches bring a few bars, checked one by one: the same message as the array check."""
    data = _with_index_change(frame(rows), index_change)
    few = BarSeries.from_frame(data)
    many = BarSeries.from_frame(pd.concat([frame(GOOD * 4, start="2026-01-04 10:00"), data]))
    errors = []
    for bars in (few, many):
        with pytest.raises(BadBars, match=re.escape(message)) as caught:
            validate_bars(bars, "XAUUSD", "M1")
        errors.append(str(caught.value))
    assert len(few) <= 8 < len(many) and errors[0] == errors[1]


def test_a_short_history_is_asked_for_in_full_until_it_fills(feed_stack) -> None:
    """A terminal still loading history serves fewer bars than asked: merging new bars onto them
    would never pick up the older ones, so a short cache means a full fetch every time."""
    stack, feed = feed_stack
    real_bars = stack.broker.bars
    loaded = {"bars": 50}

    def loading(symbol, timeframe, count, include_forming=False):
        return real_bars(symbol, timeframe, count, include_forming).tail(loaded["bars"])

    serve(stack.broker, loading)
    assert len(feed.get("XAUUSD", "M1", 150)) == 49
    loaded["bars"] = 500  # the download finished
    stack.clock.advance(60)
    assert len(feed.get("XAUUSD", "M1", 150)) == 150
    assert feed.stats.full_fetches == 2 and feed.stats.incremental_fetches == 0
    stack.clock.advance(60)
    feed.get("XAUUSD", "M1", 150)
    assert feed.stats.incremental_fetches == 1


def test_a_short_history_that_reaches_the_known_start_is_extended_bar_by_bar(feed_stack) -> None:
    """In a backtest the recording's start bounds the history: a cache reaching back to it is
    complete, so new bars are merged although there are fewer than the depth."""
    stack, _ = feed_stack
    real_bars = stack.broker.bars
    start = int(real_bars("XAUUSD", "M1", 60, include_forming=True).time_s[0])

    def recorded(symbol, timeframe, count, include_forming=False):
        return real_bars(symbol, timeframe, count, include_forming).since(start)

    serve(stack.broker, recorded)
    feed = BarFeed(stack.broker, stack.clock, lambda: [], depth=200, history_start=lambda symbol: start)
    assert len(feed.get("XAUUSD", "M1", 150)) == 59
    stack.clock.advance(60)
    bars = feed.get("XAUUSD", "M1", 150)
    assert len(bars) == 60 and feed.stats.incremental_fetches == 1 and feed.stats.full_fetches == 1
    assert _same(bars, recorded("XAUUSD", "M1", 200).tail(150))


def _copy(bars: BarSeries) -> BarSeries:
    return BarSeries(*(np.array(getattr(bars, name)) for name in ("time_s", "open", "high", "low", "close",
                                                                   "tick_volume", "spread", "real_volume")))


def test_merged_bars_equal_full_fetches_and_handed_out_bars_never_change(feed_stack, monkeypatch) -> None:
    """New closed bars are written in place after the cached ones (a store with spare rows, here
    tiny so it is copied over often): every answer equals a full fetch, with the adapter's
    dtypes, and no series handed out earlier changes, whatever depth and count are asked."""
    import feeds.bar_feed as bar_feed

    monkeypatch.setattr(bar_feed, "SPARE_ROWS", 3)
    stack, feed = feed_stack
    real_bars = stack.broker.bars
    handed: list[tuple[BarSeries, BarSeries]] = []
    rng = np.random.default_rng(5)
    for step in range(120):
        stack.clock.advance(float(rng.choice([20, 60, 60, 60, 90, 150, 400])))
        count = int(rng.choice([1, 5, 150, 199, 250]))  # 250: deeper than the feed, a direct fetch that deep
        if step % 7 == 3:
            feed.refresh("XAUUSD", "M1")  # the feed's own depth (200), fresh: served from it
            count = min(count, 199)
        forming = bool(rng.integers(0, 2))
        bars = feed.get("XAUUSD", "M1", count, include_forming=forming)
        full = real_bars("XAUUSD", "M1", count, include_forming=forming)
        assert _same(bars, full), step
        assert all(getattr(bars, f).dtype == getattr(full, f).dtype for f in ("time_s", "open", "tick_volume",
                                                                                "spread", "real_volume"))
        handed.append((bars, _copy(bars)))
    assert feed.stats.incremental_fetches > 50
    for bars, copy in handed:
        assert _same(bars, copy)


@pytest.mark.parametrize("offset_s", [0, 7200])
def test_rows_of_rates_are_the_series_rows(offset_s) -> None:
    """``rates_rows`` (what ``Mt5Broker.bar_rows`` hands the feed) reads MT5 rates in one call:
    exactly the values and Python types of ``from_rates(...).rows()`` and of the columns, times
    shifted to UTC; an array of another layout gets the same through the columns."""
    from engines.bars import MT5_RATES_DTYPE, rates_rows

    rates = np.zeros(3, dtype=MT5_RATES_DTYPE)
    rates["time"] = [1_767_600_000, 1_767_600_060, 1_767_600_120]
    rates["open"], rates["high"], rates["low"], rates["close"] = 10.1, 11.3, 9.7, 10.9
    rates["tick_volume"], rates["spread"], rates["real_volume"] = 2 ** 63 + 5, -3, 7
    series = BarSeries.from_rates(rates, offset_s)
    from_columns = list(zip(*(getattr(series, name).tolist() for name in (
        "time_s", "open", "high", "low", "close", "tick_volume", "spread", "real_volume"))))
    same_layout = np.zeros(3, dtype=np.dtype(MT5_RATES_DTYPE.descr))  # an equal dtype, another object
    same_layout[:] = rates
    other_layout = rates.astype([(name, "<f8") for name in MT5_RATES_DTYPE.names])  # all floats
    for rows in (series.rows(), rates_rows(rates, offset_s), rates_rows(same_layout, offset_s)):
        assert rows == from_columns and [type(v) for v in rows[0]] == [type(v) for v in from_columns[0]]
    assert rows[0][0] == 1_767_600_000 - offset_s
    assert rates_rows(other_layout, offset_s) == BarSeries.from_rates(other_layout, offset_s).rows()
    assert rates_rows(rates[:0], offset_s) == [] and rates_rows(None) == []
    rates["low"][1] = 12.0  # high below low: the same verdict as an array check of many bars
    with pytest.raises(BadBars, match="high/low do not contain open/close at 2026-01-05 08:01:00"):
        validate_bars(BarSeries.from_rates(rates, 0), "XAUUSD", "M1")


def test_the_adapter_bar_rows_are_its_bars_rows(feed_stack) -> None:
    """The MT5 adapter's two answers agree (the Broker protocol), forming bar included."""
    stack, _ = feed_stack
    for timeframe, count, forming in (("M1", 3, True), ("M1", 7, False), ("M5", 300, True), ("H1", 1, True)):
        rows = stack.broker.bar_rows("XAUUSD", timeframe, count, include_forming=forming)
        assert rows == stack.broker.bars("XAUUSD", timeframe, count, include_forming=forming).rows()
        assert len(rows) == count


def test_the_backtest_view_trims_bar_rows_as_it_trims_bars(feed_stack) -> None:
    """``RecordedHistory`` serves no bar from before the recording, as rows too, and counts the
    trimmed reads the same way."""
    from datetime import datetime, timezone

    from backtest.market_view import RecordedHistory

    stack, _ = feed_stack
    times = stack.broker.bars("XAUUSD", "M1", 10, include_forming=True).time_s
    first = datetime.fromtimestamp(int(times[4]) - 30, tz=timezone.utc)  # inside bar 3: bars 4.. are kept
    view = RecordedHistory(stack.broker, {"XAUUSD": first})
    for count in (3, 6, 10):
        rows = view.bar_rows("XAUUSD", "M1", count, include_forming=True)
        assert rows == view.bars("XAUUSD", "M1", count, include_forming=True).rows()
        assert len(rows) == min(count, 6)
    assert view.trimmed == 2  # count 10 only (6 of 10 kept), once as rows and once as bars


def test_the_lineage_tells_how_a_read_carries_the_last_one(feed_stack, monkeypatch) -> None:
    """Series served from the feed's store say which store rows they are (``lineage``): whenever
    ``carried_from`` answers n, the new series' first n bars are the old one's last n, bit for
    bit; a store copied over (tiny spare here), a full fetch or a forming bar answer None."""
    import feeds.bar_feed as bar_feed

    monkeypatch.setattr(bar_feed, "SPARE_ROWS", 3)
    stack, feed = feed_stack
    rng = np.random.default_rng(11)
    old = feed.get("XAUUSD", "M1", 150)
    assert old.lineage is None  # a full fetch: not rows of a store
    answers = []
    for step in range(80):
        stack.clock.advance(float(rng.choice([20, 60, 60, 90, 150])))
        new = feed.get("XAUUSD", "M1", int(rng.choice([150, 150, 199, 40])))
        carried = new.carried_from(old)
        answers.append(carried)
        if carried is not None:
            assert _same(new.slice(0, carried), old.slice(len(old) - carried, None)), step
            assert carried == len(old) or new.time_s[0] > old.time_s[0]
        old = new
    assert any(a is None for a in answers) and sum(a is not None and a > 0 for a in answers) > 30
    assert feed.get("XAUUSD", "M1", 10, include_forming=True).lineage is None
    assert old.slice(0, len(old) - 1).lineage is None  # a slice is not marked: it may be anything


def _store(stack, count: int = 20, spare: int = 5):
    from feeds.bar_feed import _ClosedStore

    return _ClosedStore(stack.broker.bars("XAUUSD", "M1", count), spare)


def test_carried_from_answers_only_what_the_store_rows_prove(feed_stack) -> None:
    """``carried_from`` on views of one store: the overlap when the old rows end inside the new
    ones; None when the old ones start later or end past the new ones, or for another store."""
    stack, _ = feed_stack
    store, other = _store(stack), _store(stack)
    old = store.view(2, 10)
    assert store.view(2, 14).carried_from(old) == 8  # starts with all of old
    assert store.view(6, 15).carried_from(old) == 4  # old's last 4 bars first
    assert store.view(10, 15).carried_from(old) == 0  # right after old
    assert store.view(1, 15).carried_from(old) is None  # old starts later: not old's LAST bars
    assert store.view(3, 9).carried_from(old) is None  # old ends past it
    assert store.view(11, 15).carried_from(old) is None  # a gap
    assert other.view(2, 14).carried_from(old) is None  # same values, another store: not known
    assert _same(store.view(6, 15).slice(0, 4), old.slice(4, None))


def test_store_rows_cannot_change_once_written(feed_stack) -> None:
    """What makes the lineage trustworthy: nothing handed out can write into the store (its
    columns and views are read-only), and ``append`` writes past the filled rows only."""
    stack, _ = feed_stack
    store = _store(stack, 20, 5)
    view = store.view(0, 20)
    before = _copy(view)
    for column in (view.time_s, view.close, view.tick_volume, *store.columns):
        with pytest.raises(ValueError):
            column[0] = column[1]
    store.append(stack.broker.bars("XAUUSD", "M1", 3).rows())
    assert store.filled == 23 and _same(view, before) and _same(store.view(0, 20), before)


def test_store_rows_are_the_values_numpy_gives(feed_stack) -> None:
    """Rows are written and read through memoryviews (``_write_row``, ``row``): the same values
    as numpy's element writes and ``item``; a value of another kind (a float for an integer
    column, an int for a price) is written by numpy, converted as it converts it."""
    stack, _ = feed_stack
    source = stack.broker.bars("XAUUSD", "M1", 10)
    store = _store(stack, 10, 8)
    rows = source.rows()
    odd = (rows[0][0] + 60, 2000, 2001.0, 1999, 2000.5, 7.9, 3, 0)  # ints for prices, a float tick volume
    store.append(rows[-3:] + [odd])
    reference = [np.empty(18, dtype=getattr(source, name).dtype) for name in ("time_s", "open", "high", "low",
                                                                              "close", "tick_volume", "spread",
                                                                              "real_volume")]
    for at, row in enumerate(rows + rows[-3:] + [odd]):
        for column, value in zip(reference, row):
            column[at] = value
    for got, expected in zip(store.columns, reference):
        assert got[:14].tobytes() == expected[:14].tobytes()
    for position in range(14):
        assert store.row(position) == tuple(column.item(position) for column in reference)
        assert all(type(a) is type(b) for a, b in zip(store.row(position), store.view(0, 14).rows()[position]))


def test_the_same_rows_are_the_same_view(feed_stack) -> None:
    """A reader asking for the same closed bars again (a slower timeframe between its closes) gets
    the very series it got (read-only rows that never change); other rows, a new one."""
    stack, _ = feed_stack
    store = _store(stack)
    first = store.view(5, 20)
    assert store.view(5, 20) is first
    store.append(stack.broker.bars("XAUUSD", "M1", 2).rows()[:1])
    assert store.view(5, 20) is first
    grown = store.view(5, 21)
    assert grown is not first and grown.carried_from(first) == len(first)


def test_a_store_and_its_views_can_be_copied_and_pickled(feed_stack) -> None:
    """Memoryviews cannot be pickled: a store travels as its writable columns and filled count and
    rebuilds the rest, so a copy is a store of its own (views of it carry it, not the original),
    read-only, with the same rows, and it grows as the original does."""
    import copy
    import pickle

    stack, _ = feed_stack
    store = _store(stack, 20, 5)
    view = store.view(0, 20)
    for copied in (copy.deepcopy(view), pickle.loads(pickle.dumps(view))):
        twin = copied.lineage[0]
        assert twin is not store and _same(copied, view) and twin.row(19) == store.row(19)
        assert copied.carried_from(view) is None  # another store: the values must be compared
        with pytest.raises(ValueError):
            twin.columns[1][0] = 0.0
        twin.append(stack.broker.bars("XAUUSD", "M1", 2).rows())
        assert twin.filled == 22 and store.filled == 20 and twin.view(0, 22).carried_from(copied) == 20


@pytest.mark.parametrize("position", [-1, -2, 0, 1])
def test_open_time_is_the_bar_time_as_an_aware_utc_datetime(position) -> None:
    """``open_time`` reads the time as a plain int (``item``): the datetime the numpy scalar gave."""
    from datetime import datetime, timezone
    bars = BarSeries.from_frame(frame(GOOD))
    expected = datetime.fromtimestamp(int(bars.time_s[position]), tz=timezone.utc)
    assert bars.open_time(position) == expected and bars.open_time(position).tzinfo is timezone.utc
    with pytest.raises(IndexError):
        BarSeries.empty().open_time()
