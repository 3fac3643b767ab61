"""Proxy order flow from ticks: the tick rule on the real EURUSD ticks, broker flags, batching,
and the poller over the simulated terminal (copy_ticks_range) replaying the same real ticks."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import feeds.tick_proxy as tick_proxy_feed
from engines.tick_proxy import (TICK_FLAG_ASK, TICK_FLAG_BID, TICK_FLAG_BUY, TICK_FLAG_LAST, TICK_FLAG_SELL,
                                TickFlowProxy, TickRuleState, classify_ticks)
from execution.errors import BrokerError
from feeds.readers import read_ticks
from feeds.tick_proxy import TickProxyFeed
from monitors.clock import FakeClock

PROJECT = Path(__file__).resolve().parents[2]
EURUSD_TICKS = PROJECT / "data" / "ticks" / "EURUSD_ticks_2020-01-01_EST_histdata.csv"


@pytest.fixture(scope="module")
def eurusd_ticks() -> pd.DataFrame:
    if not EURUSD_TICKS.is_file():
        pytest.skip(f"real tick file {EURUSD_TICKS} is missing")
    return read_ticks(EURUSD_TICKS)


def pandas_tick_rule(frame: pd.DataFrame) -> pd.DataFrame:
    """Independent computation: mid changes signed, zero changes carry, first tick dropped."""
    mid = (frame["bid"] + frame["ask"]) / 2
    direction = np.sign(mid.diff()).replace(0.0, np.nan).ffill()
    out = pd.DataFrame({"dir": direction, "price": mid}, index=frame.index).dropna()
    out["buy"] = (out["dir"] > 0).astype(float)
    out["sell"] = (out["dir"] < 0).astype(float)
    out["time_ms"] = out.index.as_unit("ms").asi8
    return out


def test_tick_rule_on_real_eurusd_ticks_matches_pandas_per_minute(eurusd_ticks):
    proxy = TickFlowProxy()
    classified = proxy.add_frame("EURUSD", eurusd_ticks)
    expected = pandas_tick_rule(eurusd_ticks)
    assert len(classified) == len(expected) == len(eurusd_ticks) - 1  # only the first tick has no direction
    assert classified.by_tick_rule == len(expected) and classified.by_flag == 0 and classified.unclassified == 1
    minute = expected.groupby(expected["time_ms"] // 60_000 * 60_000)
    table = pd.DataFrame({"buy": minute["buy"].sum(), "sell": minute["sell"].sum(), "n": minute.size(),
                          "close": minute["price"].last()})
    table["cvd"] = (table["buy"] - table["sell"]).cumsum()
    bars = proxy.bars("EURUSD", 60, include_forming=True)
    assert [b.start_ms for b in bars] == table.index.tolist()
    assert [b.buy_volume for b in bars] == table["buy"].tolist()
    assert [b.sell_volume for b in bars] == table["sell"].tolist()
    assert [b.trades for b in bars] == table["n"].tolist()
    assert [b.cvd for b in bars] == table["cvd"].tolist()
    assert np.allclose([b.close for b in bars], table["close"].to_numpy())
    # a real session is not one-sided: both directions are present in bulk
    assert 0.4 < table["buy"].sum() / table["n"].sum() < 0.6


@pytest.mark.parametrize("window", [30, 300, 900])
def test_windowed_metrics_on_real_ticks_match_pandas(eurusd_ticks, window):
    for cut in (2_000, 5_000, len(eurusd_ticks) - 1):
        frame = eurusd_ticks.iloc[:cut]
        expected = pandas_tick_rule(frame)
        seconds = expected["time_ms"] // 1000
        proxy = TickFlowProxy()
        proxy.add_frame("EURUSD", frame)
        now_ms = int(frame.index[-1].value // 1_000_000) + 400
        m = proxy.get_metrics("EURUSD", window, now_ms)
        inside = expected[(seconds > now_ms // 1000 - window) & (seconds <= now_ms // 1000)]
        buy, sell = inside["buy"].sum(), inside["sell"].sum()
        assert (m.buy_volume, m.sell_volume, m.trades) == (buy, sell, len(inside))
        assert m.delta == buy - sell
        assert m.aggressor_ratio == pytest.approx(buy / (buy + sell))
        assert m.imbalance == pytest.approx((buy - sell) / (buy + sell))
        assert m.cvd == expected["buy"].sum() - expected["sell"].sum()
        assert m.staleness_ms == 400


def test_batches_give_the_same_flow_as_one_pass(eurusd_ticks):
    whole = TickFlowProxy()
    whole.add_frame("EURUSD", eurusd_ticks)
    pieces = TickFlowProxy()
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.choice(np.arange(1, len(eurusd_ticks)), size=60, replace=False))
    for part in np.split(np.arange(len(eurusd_ticks)), cuts):
        pieces.add_frame("EURUSD", eurusd_ticks.iloc[part])
    now_ms = int(eurusd_ticks.index[-1].value // 1_000_000)
    for window in (30, 300, 900):
        assert pieces.get_metrics("EURUSD", window, now_ms) == whole.get_metrics("EURUSD", window, now_ms)
    assert pieces.bars("EURUSD", 60) == whole.bars("EURUSD", 60)
    assert pieces.counters("EURUSD") == whole.counters("EURUSD")


def test_broker_flags_volume_and_trade_prints():
    """A broker that sends trade prints: flags sign them, volume_real sizes them, quote-only
    updates are not trades, and an unflagged print falls back to the tick rule."""
    t = np.arange(7, dtype=np.int64) * 100 + 1_700_000_000_000
    bid = np.full(7, 99.0)
    ask = np.full(7, 101.0)
    last = np.array([100.0, 100.5, 100.5, 100.2, 100.2, 100.2, 100.4])
    flags = np.array([TICK_FLAG_LAST | TICK_FLAG_BUY, TICK_FLAG_LAST | TICK_FLAG_SELL,  # flags beat the price move
                      TICK_FLAG_BID | TICK_FLAG_ASK,  # a quote update on a traded instrument: skipped
                      TICK_FLAG_LAST,  # unflagged print: down tick
                      TICK_FLAG_LAST,  # unchanged: carries "down"
                      TICK_FLAG_LAST | TICK_FLAG_BUY | TICK_FLAG_SELL,  # both flags: no side from flags
                      0])  # no flags at all, last set: a print (up tick)
    volume_real = np.array([2.5, 1.5, 0.0, 0.0, 3.0, 0.0, 0.0])
    volume = np.array([0, 0, 0, 4, 0, 0, 0])
    c, state = classify_ticks(t, bid, ask, last, volume, flags, volume_real)
    assert c.quote_updates == 1 and c.by_flag == 2 and c.by_tick_rule == 4 and c.unclassified == 0
    assert c.is_sell.tolist() == [False, True, True, True, True, False]
    assert c.qty.tolist() == [2.5, 1.5, 4.0, 3.0, 1.0, 1.0]
    assert c.price.tolist() == [100.0, 100.5, 100.2, 100.2, 100.2, 100.4]
    assert state == TickRuleState(100.4, 1)


def test_state_carries_direction_and_price_across_batches():
    first, state = classify_ticks([1, 2], [1.0, 1.0], [1.2, 1.4])  # mid 1.1 then 1.2: up
    assert first.is_sell.tolist() == [False] and first.unclassified == 1
    second, state = classify_ticks([3, 4], [1.0, 0.9], [1.4, 1.3], state=state)  # unchanged (carry up), then down
    assert second.is_sell.tolist() == [False, True] and second.unclassified == 0
    assert state == TickRuleState(pytest.approx(1.1), -1)


def test_bad_ticks_are_counted_and_skipped():
    c, _ = classify_ticks([1, 2, 3, 4, 5], [1.0, np.nan, 1.0, 1.2, 1.0], [1.2, 1.2, 0.9, 1.4, 1.2])
    assert c.invalid == 2  # NaN bid; ask below bid
    assert c.price.tolist() == [pytest.approx(1.3), pytest.approx(1.1)] and c.is_sell.tolist() == [False, True]
    with pytest.raises(ValueError, match="tick column 'ask' has shape"):
        classify_ticks([1, 2], [1.0, 1.0], [1.0])


# ------------------------------------------------------------------------------------------
# the poller

class ListBroker:
    """Returns the ticks of a fixed frame in [start, end], like copy_ticks_range (inclusive)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.calls: list[tuple[datetime, datetime]] = []
        self.fail: Exception | None = None

    def ticks(self, symbol: str, start: datetime, end: datetime) -> pd.DataFrame:
        self.calls.append((start, end))
        if self.fail is not None:
            raise self.fail
        return self.frame[(self.frame.index >= start) & (self.frame.index <= end)]


def _frame(times_ms: list[int], bids: list[float]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(times_ms, unit="ms", utc=True), name="time")
    return pd.DataFrame({"bid": bids, "ask": [b + 0.0002 for b in bids]}, index=index)


@pytest.fixture(params=["lists", "arrays"])
def poll_path(request, monkeypatch):
    """A poll of a few ticks handles them as Python lists; more take the array path: both."""
    if request.param == "arrays":
        monkeypatch.setattr(tick_proxy_feed, "FEW_TICKS", 0)
    return request.param


def test_poller_takes_each_tick_once_even_within_one_millisecond(poll_path):
    base = 1_767_614_400_000  # 2026-01-05 12:00 UTC
    frame = _frame([base + 100, base + 200, base + 200, base + 300], [1.1000, 1.1001, 1.1002, 1.1001])
    broker = ListBroker(frame.iloc[:3])  # the 2nd tick at +200 ms arrives...
    clock = FakeClock(datetime(2026, 1, 5, 12, 0, 1, tzinfo=timezone.utc))
    feed = TickProxyFeed(broker, clock, warmup_seconds=600)
    assert feed.poll("EURUSD").new_ticks == 3
    assert broker.calls[0][0] == clock.now() - timedelta(seconds=600)  # warm-up on the first poll
    broker.frame = frame  # ...and another one in the same millisecond later, then a new tick
    clock.advance(5)
    result = feed.poll("EURUSD")
    assert broker.calls[1][0] == datetime.fromtimestamp((base + 200) / 1000, tz=timezone.utc)
    assert (result.fetched, result.new_ticks) == (3, 1)  # the two at +200 fetched again, one is new
    assert feed.proxy.counters("EURUSD").ticks == 4
    clock.advance(5)
    assert feed.poll("EURUSD").new_ticks == 0


def test_poller_errors_and_backward_times_do_not_advance(poll_path):
    base = 1_767_614_400_000
    broker = ListBroker(_frame([base + 100, base + 50], [1.1, 1.2]))
    clock = FakeClock(datetime(2026, 1, 5, 12, 0, 1, tzinfo=timezone.utc))
    feed = TickProxyFeed(broker, clock, warmup_seconds=600)
    assert feed.poll("EURUSD").error == "tick times go backwards in the fetched batch"
    assert feed.get_metrics("EURUSD", 30, base + 1000) is None  # nothing ingested: entries fail closed
    broker.fail = BrokerError(10031, "no connection")
    assert "no connection" in feed.poll("EURUSD").error
    health = feed.health()["EURUSD"]
    assert (health["rejected_batches"], health["errors"], health["ticks"]) == (1, 1, 0)


@pytest.fixture
def tick_sim(tmp_path):
    """A simulated terminal whose EURUSD replays the real tick file (Wed 2020-01-01 22:00-04:00
    UTC plays on Wed 2026-01-07 at the same times)."""
    from config.loader import load_config
    from config.secrets import Secrets
    from execution.mt5 import Mt5Broker, Mt5Settings
    from execution.simterminal import make_test_terminal
    if not EURUSD_TICKS.is_file():
        pytest.skip("real tick file missing")
    spec = json.loads((PROJECT / "data" / "sim_symbols.json").read_text())
    spec["symbols"]["EURUSD"]["feed"] = {"kind": "ticks", "file": "ticks/" + EURUSD_TICKS.name,
                                         "format": "histdata_ticks", "utc_offset_hours": -5}
    (tmp_path / "symbols.json").write_text(json.dumps(spec))
    clock = FakeClock()
    terminal = make_test_terminal(tmp_path, clock, symbols_spec_path=tmp_path / "symbols.json",
                                  data_dir=PROJECT / "data")
    broker = Mt5Broker(terminal, Secrets(), load_config(PROJECT / "config").bot, clock, sleep=clock.advance,
                       settings=Mt5Settings(recheck_delay_s=0.5))
    broker.connect()
    clock.set(datetime(2026, 1, 7, 22, 20, tzinfo=timezone.utc))
    return broker, clock


def test_poller_over_the_sim_equals_one_fetch_of_the_same_ticks(tick_sim):
    broker, clock = tick_sim
    start = clock.now()
    feed = TickProxyFeed(broker, clock, warmup_seconds=900)
    polls = 0
    while clock.now() < start + timedelta(minutes=20):
        clock.advance(5)
        feed.poll("EURUSD")
        polls += 1
    reference = TickFlowProxy()
    all_ticks = broker.ticks("EURUSD", start - timedelta(seconds=900) + timedelta(seconds=5), clock.now())
    reference.add_frame("EURUSD", all_ticks)
    assert feed.proxy.counters("EURUSD").ticks == len(all_ticks) > 300
    now_ms = int(clock.now().timestamp() * 1000)
    for window in (30, 300, 900):
        assert feed.get_metrics("EURUSD", window, now_ms) == reference.get_metrics("EURUSD", window, now_ms)
    assert feed.bars("EURUSD", 60) == reference.bars("EURUSD", 60)
    assert feed.health()["EURUSD"]["polls"] == polls and feed.health()["EURUSD"]["errors"] == 0
    m = feed.get_metrics("EURUSD", 300, now_ms)
    assert m.trades > 0 and not m.discontinuous and m.complete and m.aggressor_ratio is not None


def test_poller_marks_an_outage_longer_than_the_warmup(tick_sim):
    broker, clock = tick_sim
    feed = TickProxyFeed(broker, clock, warmup_seconds=300)
    feed.poll("EURUSD")
    clock.advance(400)  # the bot was away longer than the warm-up: ticks in between are not fetched
    feed.poll("EURUSD")
    now_ms = int(clock.now().timestamp() * 1000)
    assert feed.health()["EURUSD"]["outages"] == 1
    assert feed.get_metrics("EURUSD", 900, now_ms).discontinuous
    clock.advance(300)
    feed.poll("EURUSD")
    assert not feed.get_metrics("EURUSD", 30, int(clock.now().timestamp() * 1000)).discontinuous
