"""Market replay of the simulated terminal, checked against the recorded files themselves."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from execution.simterminal import RATES_DTYPE, TICKS_DTYPE, SimTerminal, make_test_terminal
from feeds.readers import read_bars, read_ticks
from monitors.clock import FakeClock
from tests.sim.conftest import MONDAY_NOON
from tests.sim.helpers import spec_file

DATA = Path(__file__).resolve().parents[2] / "data"
EUR_FILE = DATA / "bars" / "EURUSD_M1_2015-02-01_2015-02-13_EST_histdata.csv"
XAU_FILE = DATA / "bars" / "XAUUSD_M1_2023-04-16_2023-05-01.csv"
WEEK = timedelta(days=7)

REAL_RATES_DTYPE = [("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
                    ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")]
REAL_TICKS_DTYPE = [("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"), ("volume", "<u8"),
                    ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8")]


def recorded(path: Path) -> pd.DataFrame:
    return read_bars(path)


def source_time(virtual: datetime, first_recorded: pd.Timestamp, anchor: datetime = MONDAY_NOON) -> pd.Timestamp:
    """Where the replay reads the recording for ``virtual`` (first period, whole-week shift)."""
    weeks = (anchor - first_recorded.to_pydatetime()) // WEEK
    return pd.Timestamp(virtual - weeks * WEEK)


def epoch(when: datetime) -> int:
    return int(when.timestamp())


def test_dtypes_are_the_real_ones(mt5: SimTerminal) -> None:
    rates = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 10)
    ticks = mt5.copy_ticks_range("EURUSD", MONDAY_NOON - timedelta(minutes=5), MONDAY_NOON, mt5.COPY_TICKS_ALL)
    assert rates.dtype == np.dtype(REAL_RATES_DTYPE) == RATES_DTYPE
    assert ticks.dtype == np.dtype(REAL_TICKS_DTYPE) == TICKS_DTYPE
    assert len(rates) == 10 and len(ticks) > 10


def test_closed_bars_are_the_recorded_bars_shifted_by_whole_weeks(mt5: SimTerminal) -> None:
    bars = recorded(EUR_FILE)
    rates = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 1, 30)
    for row in rates:
        virtual = datetime.fromtimestamp(int(row["time"]), timezone.utc)
        source = bars.loc[source_time(virtual, bars.index[0])]
        assert virtual.weekday() == source.name.weekday() and virtual.hour == source.name.hour
        assert (row["open"], row["high"], row["low"], row["close"]) == \
            (source.open, source.high, source.low, source.close)
    assert rates["time"][-1] == epoch(MONDAY_NOON - timedelta(minutes=1))
    assert np.all(np.diff(rates["time"]) > 0)


def test_xauusd_prices_are_rounded_to_its_two_digits(mt5: SimTerminal) -> None:
    bars = recorded(XAU_FILE)
    row = mt5.copy_rates_from_pos("XAUUSD", mt5.TIMEFRAME_M1, 1, 1)[0]
    source = bars.loc[source_time(datetime.fromtimestamp(int(row["time"]), timezone.utc), bars.index[0])]
    for field in ("open", "high", "low", "close"):
        assert abs(row[field] - source[field]) <= 0.005 + 1e-9
        assert row[field] == round(row[field], 2)


def test_forming_bar_walks_open_nearer_extreme_other_extreme_close(clock: FakeClock, mt5: SimTerminal) -> None:
    bars = recorded(EUR_FILE)
    source = bars.loc[source_time(MONDAY_NOON, bars.index[0])]
    high_first = source.high - source.open <= source.open - source.low
    seen = []
    for seconds in (0, 16, 31, 46, 59):
        clock.set(MONDAY_NOON + timedelta(seconds=seconds))
        forming = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 1)[0]
        tick = mt5.symbol_info_tick("EURUSD")
        assert forming["time"] == epoch(MONDAY_NOON) and forming["open"] == source.open
        assert forming["close"] == tick.bid  # the forming bar and the quote agree
        seen.append((forming["high"], forming["low"], forming["close"]))
    first_extreme = source.high if high_first else source.low
    assert seen[1][2] == first_extreme            # a quarter into the bar: the nearer extreme
    assert seen[2][2] == (source.low if high_first else source.high)  # half-way: the other one
    assert seen[3] == (source.high, source.low, source.close)         # three quarters: complete
    clock.set(MONDAY_NOON + timedelta(minutes=1))
    closed = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 1, 1)[0]
    assert (closed["high"], closed["low"], closed["close"]) == (source.high, source.low, source.close)


def test_quote_is_bid_plus_configured_spread(mt5: SimTerminal) -> None:
    for symbol, spread in (("XAUUSD", 16), ("EURUSD", 2), ("BTCUSD", 1500)):
        tick = mt5.symbol_info_tick(symbol)
        info = mt5.symbol_info(symbol)
        assert round((tick.ask - tick.bid) / info.point) == spread == info.spread
        assert tick.flags == mt5.TICK_FLAG_BID | mt5.TICK_FLAG_ASK


def test_higher_timeframes_aggregate_the_recorded_minutes(clock: FakeClock, mt5: SimTerminal) -> None:
    bars = recorded(EUR_FILE)
    h1 = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 1, 3)
    for row in h1:
        start = source_time(datetime.fromtimestamp(int(row["time"]), timezone.utc), bars.index[0])
        minutes = bars.loc[start:start + pd.Timedelta(minutes=59)]
        assert (row["open"], row["high"], row["low"], row["close"]) == (
            minutes.open.iloc[0], minutes.high.max(), minutes.low.min(), minutes.close.iloc[-1])
    forming = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 0, 1)[0]
    assert forming["time"] == epoch(MONDAY_NOON) and forming["tick_volume"] >= 1
    m15 = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M15, 0, 8)
    assert np.all(m15["time"] % 900 == 0)
    d1 = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_D1, 0, 3)
    assert np.all(d1["time"] % 86400 == 0)
    w1 = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_W1, 0, 2)
    assert all(datetime.fromtimestamp(int(t), timezone.utc).weekday() == 6 for t in w1["time"])  # Sunday
    mn1 = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_MN1, 0, 2)
    assert [datetime.fromtimestamp(int(t), timezone.utc).day for t in mn1["time"]] == [1, 1]


def test_server_time_offset_applies_to_bars_ticks_and_date_arguments(tmp_path: Path, clock: FakeClock) -> None:
    mt5 = make_test_terminal(tmp_path, clock, server_utc_offset_hours=2)
    assert mt5.initialize()
    rates = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 1)
    assert rates["time"][0] == epoch(MONDAY_NOON) + 7200
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick.time_msc // 1000 == tick.time and tick.time <= epoch(MONDAY_NOON) + 7200
    # date arguments are server time, like the bar stamps they are compared with
    server_noon = MONDAY_NOON + timedelta(hours=2)
    by_date = mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, server_noon - timedelta(minutes=10), 1)
    assert by_date["time"][0] == epoch(server_noon - timedelta(minutes=10))
    assert len(mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, epoch(server_noon) - 600, epoch(server_noon))) == 11


def test_replay_wraps_by_whole_weeks_and_time_never_goes_back(clock: FakeClock, mt5: SimTerminal) -> None:
    before = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 1, 60)
    eur = recorded(EUR_FILE)
    # the two-week recording starts again at the Sunday open two weeks after its first play
    clock.set(datetime(2026, 1, 18, 22, 1, tzinfo=timezone.utc))
    first_bar = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 1, 1)[0]
    assert first_bar["time"] == epoch(datetime(2026, 1, 18, 22, 0, tzinfo=timezone.utc))
    assert first_bar["open"] == eur.open.iloc[0]
    clock.set(datetime(2026, 1, 18, 22, 30, tzinfo=timezone.utc))
    across = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 300)
    assert np.all(np.diff(across["time"]) > 0)  # history runs on into Friday's bars, in order
    assert across["time"][0] < epoch(datetime(2026, 1, 17, tzinfo=timezone.utc))
    clock.set(MONDAY_NOON + 2 * WEEK)
    after = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 1, 60)
    assert np.array_equal(after["close"], before["close"])
    assert np.array_equal(after["time"] - before["time"], np.full(60, 2 * 7 * 86400))


def test_weekend_market_is_closed_with_a_stale_quote(clock: FakeClock, mt5: SimTerminal) -> None:
    clock.set(datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc))  # Saturday
    tick = mt5.symbol_info_tick("EURUSD")
    assert datetime.fromtimestamp(tick.time, timezone.utc).weekday() == 4  # Friday's last quote
    assert not mt5.market_open("EURUSD")
    assert mt5.market_open("BTCUSD")  # crypto trades through the weekend
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 1)["time"][0] == tick.time // 60 * 60


def test_generated_ticks_follow_the_bar_path(mt5: SimTerminal) -> None:
    bars = recorded(EUR_FILE)
    start = MONDAY_NOON - timedelta(minutes=1)
    ticks = mt5.copy_ticks_range("EURUSD", start, start + timedelta(seconds=59), mt5.COPY_TICKS_ALL)
    source = bars.loc[source_time(start, bars.index[0])]
    path = np.r_[source.open, ticks["bid"]]  # an open equal to the previous quote is not re-sent
    assert (path.max(), path.min(), ticks["bid"][-1]) == (source.high, source.low, source.close)
    assert np.all(ticks["flags"] == mt5.TICK_FLAG_BID | mt5.TICK_FLAG_ASK)
    assert np.all(ticks["time"] == ticks["time_msc"] // 1000) and np.all(np.diff(ticks["time_msc"]) > 0)
    rate = mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, start, 1)[0]
    assert rate["tick_volume"] == len(ticks)  # tick volume counts the generated ticks
    assert len(mt5.copy_ticks_from("EURUSD", start, 3, mt5.COPY_TICKS_ALL)) == 3
    assert len(mt5.copy_ticks_range("EURUSD", start, start + timedelta(seconds=59), mt5.COPY_TICKS_TRADE)) == 0
    future = mt5.copy_ticks_from("EURUSD", MONDAY_NOON + timedelta(hours=1), 10, mt5.COPY_TICKS_ALL)
    assert len(future) == 0 and mt5.last_error() == (1, "Success")


def test_a_tick_fed_symbol_replays_the_real_ticks(tmp_path: Path) -> None:
    # the EURUSD tick file covers Wednesday 2020-01-01 22:00 UTC onwards for six hours
    wednesday = datetime(2026, 1, 7, 23, 0, tzinfo=timezone.utc)
    clock = FakeClock(wednesday)
    spec = spec_file(tmp_path, "EURUSD", feed={"kind": "ticks",
                                                    "file": "ticks/EURUSD_ticks_2020-01-01_EST_histdata.csv"})
    mt5 = make_test_terminal(tmp_path, clock, symbols=("EURUSD",), symbols_spec_path=spec)
    assert mt5.initialize()
    real = read_ticks(DATA / "ticks" / "EURUSD_ticks_2020-01-01_EST_histdata.csv")
    shift = pd.Timestamp(wednesday) - pd.Timestamp("2020-01-01 23:00", tz="UTC")
    expected = real.loc[:pd.Timestamp("2020-01-01 23:00", tz="UTC")].iloc[-1]
    tick = mt5.symbol_info_tick("EURUSD")
    assert (tick.bid, tick.ask) == (expected.bid, expected.ask)
    window = mt5.copy_ticks_range("EURUSD", wednesday - timedelta(minutes=5), wednesday, mt5.COPY_TICKS_ALL)
    source = real.loc[pd.Timestamp("2020-01-01 22:55", tz="UTC"):pd.Timestamp("2020-01-01 23:00", tz="UTC")]
    source = source[(source.bid.diff() != 0) | (source.ask.diff() != 0)]
    assert np.array_equal(window["bid"], source.bid.to_numpy()[-len(window):])
    assert window["time_msc"][-1] == (source.index[-1] + shift).value // 1_000_000
    bar = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 1, 1)[0]
    minute = real.loc[pd.Timestamp("2020-01-01 22:59", tz="UTC"):pd.Timestamp("2020-01-01 22:59:59.999", tz="UTC")]
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (
        minute.bid.iloc[0], minute.bid.max(), minute.bid.min(), minute.bid.iloc[-1])


def test_an_m5_fed_symbol_serves_m5_and_up_but_not_m1(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 5, 5, 12, 0, tzinfo=timezone.utc))
    spec = spec_file(tmp_path, "XAUUSD", feed={
        "kind": "bars", "file": "bars/XAUUSD_M5_2026-04-24_2026-07-09_mt5.csv", "format": "mt5",
        "utc_offset_hours": 3})
    mt5 = make_test_terminal(tmp_path, clock, symbols=("XAUUSD",), symbols_spec_path=spec)
    assert mt5.initialize()
    m5 = mt5.copy_rates_from_pos("XAUUSD", mt5.TIMEFRAME_M5, 1, 3)
    native = read_bars(DATA / "bars" / "XAUUSD_M5_2026-04-24_2026-07-09_mt5.csv", 3, format="mt5")
    virtual = datetime.fromtimestamp(int(m5["time"][-1]), timezone.utc)
    source = native.loc[source_time(virtual, native.index[0], anchor=clock.now())]
    assert (m5["close"][-1], m5["tick_volume"][-1]) == (source.close, source.tick_volume)
    assert len(mt5.copy_rates_from_pos("XAUUSD", mt5.TIMEFRAME_H1, 0, 5)) == 5
    assert mt5.copy_rates_from_pos("XAUUSD", mt5.TIMEFRAME_M1, 0, 5) is None
    assert mt5.last_error() == (-1, "Terminal: Call failed")


def test_data_call_errors_match_the_real_package(mt5: SimTerminal) -> None:
    assert mt5.copy_rates_from_pos("NOPE", mt5.TIMEFRAME_M1, 0, 10) is None
    assert mt5.last_error() == (-1, "Terminal: Call failed")
    assert mt5.copy_ticks_from("NOPE", MONDAY_NOON, 10, mt5.COPY_TICKS_ALL) is None
    assert mt5.last_error() == (-4, "Terminal: Not found")
    assert mt5.symbol_info("NOPE") is None and mt5.last_error() == (-4, "Terminal: Not found")
    assert mt5.copy_rates_from_pos("EURUSD", 7, 0, 10) is None
    assert mt5.last_error() == (-2, "Terminal: Invalid params")
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 0) is None
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 200_000, 10) is None
    assert mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, "yesterday", 10) is None
    assert mt5.last_error()[0] == -2
    empty = mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, MONDAY_NOON + WEEK, MONDAY_NOON + 2 * WEEK)
    assert len(empty) == 0 and empty.dtype == RATES_DTYPE
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 5) is not None
    assert mt5.last_error() == (1, "Success")


def test_symbols_and_selection(tmp_path: Path, clock: FakeClock) -> None:
    mt5 = make_test_terminal(tmp_path, clock, preselect=False, symbol_suffix="c")
    assert mt5.initialize()
    assert mt5.symbols_total() == 3
    assert [s.name for s in mt5.symbols_get(group="*USD*,!EUR*")] == ["XAUUSDc", "BTCUSDc"]
    assert mt5.symbol_info("XAUUSDc").select is False
    assert mt5.symbol_info_tick("XAUUSDc") is None and mt5.last_error() == (-4, "Terminal: Not found")
    assert mt5.symbol_select("XAUUSDc", True) is True
    info = mt5.symbol_info("XAUUSDc")
    assert info.select and info.visible and info.digits == 2 and info.trade_contract_size == 100
    assert info.filling_mode == 2 and info.trade_exemode == mt5.SYMBOL_TRADE_EXECUTION_MARKET
    assert mt5.symbol_info_tick("XAUUSDc") is not None
    assert mt5.symbol_select("XAUUSD", True) is False and mt5.last_error() == (-1, "Terminal: Call failed")
