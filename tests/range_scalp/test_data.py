"""Input normalisation: bars from every shape the bot hands over, closed bars, aggregation,
bad-data detection, quote and order-flow inputs."""
from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, replace
from datetime import datetime, timedelta, timezone, tzinfo

import numpy as np
import pandas as pd
import pytest

from engines.range_data import (
    H1, M5, M15, BarDataError, Bars, Quote, RangeFlow, aggregate, bar_problem, epoch_s, to_bars, to_flow, to_quote,
)
from tests.range_scalp.helpers import MONDAY, bars_from_rows, utc

ROWS = [(1.0, 1.2, 0.9, 1.1, 10), (1.1, 1.3, 1.0, 1.2, 20), (1.2, 1.25, 1.05, 1.1, 30)]
T0 = int(MONDAY.timestamp())


def test_dataframe_with_utc_index_as_the_readers_return_it() -> None:
    index = pd.DatetimeIndex(pd.to_datetime([T0, T0 + 300, T0 + 600], unit="s", utc=True), name="time")
    frame = pd.DataFrame({"open": [1.0, 1.1, 1.2], "high": [1.2, 1.3, 1.25], "low": [0.9, 1.0, 1.05],
                          "close": [1.1, 1.2, 1.1], "tick_volume": [10.0, 20.0, np.nan],
                          "volume": [np.nan] * 3}, index=index)
    bars = to_bars(frame, M5)
    assert bars.time.tolist() == [T0, T0 + 300, T0 + 600]
    assert bars.volume.tolist() == [10.0, 20.0, 0.0]  # tick volume preferred, "not recorded" -> 0


def test_dataframe_time_column_in_another_timezone_is_converted_to_utc() -> None:
    times = pd.to_datetime([T0, T0 + 300], unit="s", utc=True).tz_convert("Europe/Athens")
    frame = pd.DataFrame({"time": times, "open": [1, 1], "high": [2, 2], "low": [0.5, 0.5], "close": [1, 1]})
    bars = to_bars(frame, M5)
    assert bars.time.tolist() == [T0, T0 + 300]
    assert bars.volume.tolist() == [0.0, 0.0]


def test_mt5_structured_array_and_mapping() -> None:
    dtype = [("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
             ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")]
    rates = np.array([(T0 + 300 * i, o, h, l, c, v, 5, 0) for i, (o, h, l, c, v) in enumerate(ROWS)], dtype=dtype)
    bars = to_bars(rates, M5)
    assert bars.close.tolist() == [1.1, 1.2, 1.1] and bars.volume.tolist() == [10, 20, 30]
    mapping = {"time": rates["time"], "open": rates["open"], "high": rates["high"], "low": rates["low"],
               "close": rates["close"]}
    assert to_bars(mapping, M5).high.tolist() == [1.2, 1.3, 1.25]


def test_unreadable_bars_name_the_problem() -> None:
    with pytest.raises(BarDataError, match="bars_m5: no 'close' column"):
        to_bars({"time": [T0], "open": [1], "high": [1], "low": [1]}, M5, "bars_m5")
    with pytest.raises(BarDataError, match="different lengths"):
        to_bars({"time": [T0, T0 + 300], "open": [1], "high": [1], "low": [1], "close": [1]}, M5)
    with pytest.raises(BarDataError, match="expected 300 s bars"):
        to_bars(bars_from_rows(MONDAY, ROWS, H1), M5)


def test_closed_at_drops_the_forming_bar() -> None:
    bars = bars_from_rows(MONDAY, ROWS)
    assert len(bars.closed_at(T0 + 900)) == 3  # the last bar (opened T0+600) closed at T0+900
    assert len(bars.closed_at(T0 + 899)) == 2
    assert len(bars.closed_at(T0 + 10)) == 0


def test_aggregate_keeps_complete_buckets_only_with_correct_ohlcv() -> None:
    rows = [(10 + i, 10.5 + i, 9.5 + i, 10.2 + i, 1 + i) for i in range(7)]  # 00:00 .. 00:30
    bars = bars_from_rows(MONDAY, rows)
    m15 = aggregate(bars, M15, T0 + 35 * 60)
    assert m15.time.tolist() == [T0, T0 + 900]  # 00:30 bucket not complete at 00:35
    assert m15.open.tolist() == [10, 13]
    assert m15.high.tolist() == [12.5, 15.5]
    assert m15.low.tolist() == [9.5, 12.5]
    assert m15.close.tolist() == [12.2, 15.2]
    assert m15.volume.tolist() == [1 + 2 + 3, 4 + 5 + 6]
    assert len(aggregate(bars, H1, T0 + 35 * 60)) == 0
    # a window entering a bucket midway: that first bucket is partial and dropped
    late = bars.slice(1, len(bars))  # starts 00:05
    assert aggregate(late, M15, T0 + 35 * 60).time.tolist() == [T0 + 900]
    assert aggregate(late, M15, T0 + 35 * 60, drop_partial_first=False).time.tolist() == [T0, T0 + 900]
    with pytest.raises(ValueError, match="cannot aggregate"):
        aggregate(bars, 7 * 60, T0 + 3600)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["close"].__setitem__(1, np.nan), "NaN"),
    (lambda c: c["low"].__setitem__(2, -1.0), "zero or negative"),
    (lambda c: c["high"].__setitem__(0, 0.8), "high below low"),
    (lambda c: c["close"].__setitem__(0, 1.5), "open/close outside"),
    (lambda c: c["time"].__setitem__(2, T0 + 300), "out of order or duplicated"),
    (lambda c: c["volume"].__setitem__(0, -5.0), "bad volume"),
])
def test_bar_problems_are_named(change, message: str) -> None:
    columns = {"time": np.array([T0, T0 + 300, T0 + 600]), "open": np.array([1.0, 1.1, 1.2]),
               "high": np.array([1.2, 1.3, 1.25]), "low": np.array([0.9, 1.0, 1.05]),
               "close": np.array([1.1, 1.2, 1.1]), "volume": np.array([1.0, 1.0, 1.0])}
    assert bar_problem(to_bars(columns, M5), "M5 bars") is None
    change(columns)
    problem = bar_problem(to_bars(columns, M5), "M5 bars")
    assert problem is not None and message in problem and problem.startswith("M5 bars")


def test_quote_forms_and_validation() -> None:
    class Tick:
        bid, ask = 1.1, 1.2

    assert to_quote(Tick()) == Quote(1.1, 1.2)
    assert to_quote({"bid": 1.1, "ask": 1.2}) == Quote(1.1, 1.2)
    assert to_quote((1.1, 1.2)).mid == pytest.approx(1.15)
    with pytest.raises(ValueError, match="need 0 < bid <= ask"):
        Quote(1.2, 1.1)
    with pytest.raises(ValueError, match="bid and ask"):
        to_quote("1.1")
    for bid, ask in ((math.nan, 1.2), (1.1, math.inf), (0.0, 1.0)):
        with pytest.raises(ValueError, match="bad quote"):
            Quote(bid, ask)
    quote = Quote(bid=1.1, ask=1.2)  # its own __init__: still a frozen dataclass in every other way
    assert replace(quote, ask=1.3) == Quote(1.1, 1.3) and hash(quote) == hash(Quote(1.1, 1.2))
    with pytest.raises(FrozenInstanceError):
        quote.bid = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="bad quote"):
        replace(quote, ask=1.0)


def test_flow_inputs() -> None:
    assert to_flow(None) is None
    flow = to_flow({"signal": "BULLISH", "tape_pressure_shift": 0.4})
    assert flow is not None and flow.confirms("buy") and not flow.confirms("sell") and flow.is_directional()
    with pytest.raises(ValueError, match="unknown keys cvd"):
        to_flow({"cvd": 3})
    with pytest.raises(ValueError, match="tape_pressure_shift"):
        RangeFlow(tape_pressure_shift=1.5)
    with pytest.raises(ValueError, match="cvd_divergence_type"):
        RangeFlow(cvd_divergence_type="up")
    strong = RangeFlow.from_volumes(300.0, 100.0)
    assert (strong.signal, strong.pressure_side, strong.tape_pressure_shift) == ("BULLISH", "BUY", 0.5)
    assert RangeFlow.from_volumes(100.0, 110.0).signal == "NEUTRAL"
    assert RangeFlow.from_volumes(0.0, 0.0).signal == "NEUTRAL"
    assert RangeFlow.from_volumes(50.0, 100.0).pressure_with("sell")


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        epoch_s(datetime(2026, 6, 1))
    assert epoch_s(utc(2026, 6, 1)) == T0

    class NoOffset(tzinfo):  # a zone without an offset: naive too (only timezone.utc skips the question)
        def utcoffset(self, dt: datetime | None) -> timedelta | None:
            return None

    with pytest.raises(ValueError, match="naive datetime"):
        epoch_s(datetime(2026, 6, 1, tzinfo=NoOffset()))
    assert epoch_s(datetime(2026, 6, 1, 2, tzinfo=timezone(timedelta(hours=2)))) == T0  # another fixed offset
    bars = Bars(np.array([T0]), *(np.array([1.0]) for _ in range(5)), M5)
    assert len(bars.since(T0 + 1)) == 0 and len(bars.since(T0)) == 1
    assert datetime.fromtimestamp(T0, tz=timezone.utc).weekday() == 0
