"""Market data, positions and deals out of the adapter: config symbol names and UTC times, with the
broker's server clock at UTC+2 (the simulated terminal stamps everything in server time)."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from execution.broker import BAR_COLUMNS, Broker, TICK_COLUMNS
from tests.execution.conftest import bot_config_for


def test_adapter_satisfies_the_broker_protocol(broker):
    assert isinstance(broker, Broker)


def test_quote_time_is_utc(broker, sim, clock):
    quote = broker.quote("XAUUSD")
    raw = sim.symbol_info_tick("XAUUSD")
    assert raw.time_msc / 1000 == pytest.approx(clock.now().timestamp() + 7200, abs=60)  # server clock
    assert quote.time.tzinfo is not None and quote.time.utcoffset() == timedelta(0)
    assert timedelta(0) <= clock.now() - quote.time < timedelta(minutes=1)
    assert quote.time == datetime.fromtimestamp(raw.time_msc / 1000 - 7200, timezone.utc)
    assert quote.spread_points == round((quote.ask - quote.bid) / 0.01) and quote.spread_points > 0


def test_bars_are_indexed_by_utc_open_time(broker, sim, clock):
    series = broker.bars("XAUUSD", "M1", 30)
    assert series.time_s.dtype == np.int64 and series.close.dtype == np.float64 and len(series) == 30
    closed = series.to_frame()
    forming = broker.bars("XAUUSD", "M1", 30, include_forming=True).to_frame()
    assert list(closed.columns) == list(BAR_COLUMNS) and len(closed) == 30
    assert isinstance(closed.index, pd.DatetimeIndex) and str(closed.index.tz) == "UTC"
    assert closed.index.name == "time" and closed.index.is_monotonic_increasing
    now = pd.Timestamp(clock.now())
    assert forming.index[-1] <= now < forming.index[-1] + pd.Timedelta(minutes=1)   # the bar forming now
    assert closed.index[-1] == forming.index[-2]                                   # ...left out by default
    raw = sim.copy_rates_from_pos("XAUUSD", sim.TIMEFRAME_M1, 1, 30)
    assert int(raw["time"][-1]) - 7200 == int(closed.index[-1].timestamp()) == int(series.time_s[-1])
    assert closed["close"].iloc[-1] == pytest.approx(float(raw["close"][-1]))
    h1 = broker.bars("EURUSD", "H1", 5).to_frame()
    assert (h1.index.minute == 0).all() and len(h1) == 5
    with pytest.raises(ValueError, match="unknown timeframe 'M7'"):
        broker.bars("XAUUSD", "M7", 5)


def test_bar_rows_of_a_utc_plus_2_server_are_the_bars_rows(broker, sim):
    """The simulator hands the adapter its rows already shifted to UTC (``copy_rates_from_pos_rows``
    with the adapter's offset): the rows of ``bars``, and the terminal's server-time rows less 2 h,
    the forming bar included; the terminal's own rows stay in server time."""
    assert sim.reads_rate_rows and broker.server_utc_offset() == timedelta(hours=2)
    for timeframe, code in (("M1", sim.TIMEFRAME_M1), ("M5", sim.TIMEFRAME_M5), ("H1", sim.TIMEFRAME_H1)):
        for count, forming in ((3, True), (7, False), (300, True)):
            rows = broker.bar_rows("XAUUSD", timeframe, count, include_forming=forming)
            assert rows == broker.bars("XAUUSD", timeframe, count, include_forming=forming).rows()
            server = sim.copy_rates_from_pos_rows("XAUUSD", code, 0 if forming else 1, count)
            assert rows == [(row[0] - 7200,) + row[1:] for row in server] and len(rows) == count


def test_bar_rows_follow_a_new_offset(broker, sim):
    """The whole-second offset the rows are shifted by is kept per offset: an offset measured again
    (a daylight-saving change) shifts the next read by the new one, a numpy count reads as an int."""
    code = sim.TIMEFRAME_M1
    server = sim.copy_rates_from_pos_rows("XAUUSD", code, 0, 3)
    assert broker.bar_rows("XAUUSD", "M1", 3, include_forming=True) == [(r[0] - 7200,) + r[1:] for r in server]
    broker._offset_s = 3600.4  # (rounded to whole seconds, as before)
    assert broker.bar_rows("XAUUSD", "M1", np.int64(3), include_forming=True) == \
        [(r[0] - 3600,) + r[1:] for r in server]
    broker._offset_s = 7200.0
    assert broker.bar_rows("XAUUSD", "M1", 3, include_forming=True) == [(r[0] - 7200,) + r[1:] for r in server]



def test_bar_rows_round_a_fractional_offset_to_the_nearest_second(broker, sim):
    """The whole-second shift is the offset rounded, not truncated: 3600.6 s shifts the rows by
    3601 s and -3600.6 s by -3601 s (a UTC-1 server), each kept for its own offset value."""
    server = sim.copy_rates_from_pos_rows("XAUUSD", sim.TIMEFRAME_M1, 0, 3)
    broker._offset_s = 3600.6
    assert broker.bar_rows("XAUUSD", "M1", 3, include_forming=True) == [(r[0] - 3601,) + r[1:] for r in server]
    broker._offset_s = -3600.6
    assert broker.bar_rows("XAUUSD", "M1", 3, include_forming=True) == [(r[0] + 3601,) + r[1:] for r in server]
    broker._offset_s = 3600.6  # (back to an offset seen before: the same rounding again)
    assert broker.bar_rows("XAUUSD", "M1", 3, include_forming=True) == [(r[0] - 3601,) + r[1:] for r in server]


def test_a_numpy_count_reaches_the_module_as_a_plain_int(broker, sim, monkeypatch):
    """The real MetaTrader5 module wants a plain int count: a numpy integer handed to ``bars`` or
    ``bar_rows`` is converted before the call (the simulator itself would accept either)."""
    seen: list[type] = []

    def recording(name):
        original = getattr(sim, name)

        def call(symbol, timeframe, start_pos, count, *rest):
            seen.append(type(count))
            return original(symbol, timeframe, start_pos, count, *rest)

        monkeypatch.setattr(sim, name, call)

    recording("copy_rates_from_pos")
    recording("copy_rates_from_pos_rows")
    assert len(broker.bar_rows("XAUUSD", "M1", np.int64(4))) == 4
    assert len(broker.bars("XAUUSD", "M1", np.int32(5))) == 5
    assert len(broker.bar_rows("XAUUSD", "M1", 3)) == 3
    assert seen == [int, int, int]

def test_ticks_for_a_utc_range(broker, clock):
    end = clock.now()
    start = end - timedelta(minutes=5)
    series = broker.ticks("EURUSD", start, end)
    assert series.time_ms.dtype == np.int64 and (np.diff(series.time_ms) >= 0).all()
    ticks = series.to_frame()
    assert list(ticks.columns) == list(TICK_COLUMNS) and len(ticks) > 10
    assert ticks.index.min() >= start and ticks.index.max() <= end
    assert (ticks["ask"] > ticks["bid"]).all()
    empty = broker.ticks("EURUSD", end + timedelta(hours=1), end + timedelta(hours=2)).to_frame()
    assert empty.empty and str(empty.index.tz) == "UTC"


def test_position_and_deal_times_are_utc(broker, sim, clock):
    opened_at = clock.now()
    result = broker.market_order("EURUSD", "buy", 0.01, None, None, magic=8, client_id="t-time-o")
    clock.advance(90)
    broker.close_position(result.position, client_id="t-time-c")
    [entry, exit_] = broker.deals(opened_at - timedelta(minutes=1), clock.now(), symbol="EURUSD")
    assert entry.time == opened_at and exit_.time == opened_at + timedelta(seconds=90)
    assert entry.position_id == exit_.position_id == result.position
    assert (entry.entry, entry.side, exit_.entry, exit_.side) == ("in", "buy", "out", "sell")
    raw = [d for d in sim.history_deals_get(position=result.position)]
    assert raw[0].time == int(opened_at.timestamp()) + 7200   # the terminal's own stamps are server time
    # the window is in UTC: a window ending before the open finds nothing
    assert broker.deals(opened_at - timedelta(hours=2), opened_at - timedelta(minutes=1)) == []
    assert broker.deals(opened_at, clock.now(), magic=999) == []


def test_open_position_time_is_utc(broker, clock):
    result = broker.market_order("BTCUSD", "sell", 0.01, None, None, magic=8, client_id="t-time-p")
    position = broker.position(result.position)
    assert position.time == clock.now() and position.side == "sell" and position.magic == 8


def test_server_offset_configured_wins(make_sim, make_broker):
    broker = make_broker(make_sim(server_utc_offset_hours=3), config=bot_config_for(server_utc_offset_hours=3))
    state = broker.connection_state()
    assert state["server_utc_offset_hours"] == 3 and state["server_utc_offset_source"] == "configured"
    assert broker.server_utc_offset() == timedelta(hours=3)


def test_a_configured_offset_is_never_corrected_by_live_ticks(make_sim, make_broker, clock):
    """``_observe_tick`` returns at once for a configured offset (it stays configured): even ticks
    implying another offset leave it, and the quotes' times follow it."""
    broker = make_broker(make_sim(server_utc_offset_hours=2), config=bot_config_for(server_utc_offset_hours=3))
    for _ in range(3):
        clock.advance(30)
        quote = broker.quote("XAUUSD")
    assert broker.connection_state()["server_utc_offset_source"] == "configured"
    assert broker.server_utc_offset() == timedelta(hours=3)
    assert clock.now() - quote.time > timedelta(minutes=59)  # a 2 h server clock read as 3 h


def test_server_offset_falls_back_when_markets_are_closed(make_sim, make_broker, clock, caplog):
    clock.set(datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc))   # Saturday: gold and euro are closed
    terminal = make_sim(symbols=("XAUUSD", "EURUSD"))
    with caplog.at_level(logging.WARNING):
        broker = make_broker(terminal, config=bot_config_for({"XAUUSD": None, "EURUSD": None}))
    assert broker.connection_state()["server_utc_offset_source"] == "default"
    assert broker.server_utc_offset() == timedelta(0)   # not the -12 h a stale Friday tick suggests
    assert "set mt5.server_utc_offset_hours" in caplog.text
    # Monday: the first live tick corrects the offset, and times come out right
    clock.set(datetime(2026, 1, 12, 9, 0, tzinfo=timezone.utc))
    quote = broker.quote("EURUSD")
    assert broker.server_utc_offset() == timedelta(hours=2)
    assert broker.connection_state()["server_utc_offset_source"] == "live"
    assert "corrected from +0.0 h to +2.0 h" in caplog.text
    assert timedelta(0) <= clock.now() - quote.time < timedelta(minutes=1)


def test_live_ticks_confirm_a_measured_offset(broker, clock):
    assert broker.connection_state()["server_utc_offset_source"] == "measured"
    clock.advance(30)
    broker.quote("XAUUSD")
    assert broker.connection_state()["server_utc_offset_source"] == "live"
    assert broker.server_utc_offset() == timedelta(hours=2)


def test_weekend_offset_measured_from_a_market_that_is_open(make_sim, make_broker, clock):
    clock.set(datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc))   # BTCUSD trades at the weekend
    broker = make_broker(make_sim(server_utc_offset_hours=-5))
    assert broker.server_utc_offset() == timedelta(hours=-5)


def test_find_by_client_id_position_then_deal(broker, clock):
    since = clock.now()
    result = broker.market_order("EURUSD", "buy", 0.01, None, None, magic=8, client_id="t-find")
    found = broker.find_by_client_id("t-find", since)
    assert found.ticket == result.position and found.comment == "t-find"
    broker.close_position(result.position, client_id="t-find-close")
    deal = broker.find_by_client_id("t-find", since)
    assert deal.entry == "in" and deal.position_id == result.position
    assert broker.find_by_client_id("t-nothing", since) is None
