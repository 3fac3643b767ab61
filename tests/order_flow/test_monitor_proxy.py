"""The order-flow monitor on proxy flow (MT5 ticks) for symbols without a Binance tape.

EURUSD replays the real tick file in data/ticks through the simulated terminal (Wed 2020-01-01
22:00-04:00 UTC plays on Wed 2026-01-07 at the same times); gold and EURUSD otherwise get the
sim's generated ticks. Proxy symbols keep their own, higher classifier threshold (0.85 in the
shipped order_flow.json), so the 0.75 stub that trades BTC is refused on them.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from config.loader import load_config
from execution.errors import BrokerError
from execution.simterminal import make_test_terminal
from monitors.clock import FakeClock
from tests.order_flow.test_monitor import BINANCE, Rig, set_order_flow, stub_signals

PROJECT = Path(__file__).resolve().parents[2]
TICK_FILE = PROJECT / "data" / "ticks" / "EURUSD_ticks_2020-01-01_EST_histdata.csv"
STRONG = ("absorption", "delta_divergence", "liquidity_sweep", "cvd_divergence")  # 0.90 >= 0.85
HUGE_STOPS = {"stop_mode": "atr", "sl_atr": 20.0, "max_sl_atr": 20.0, "tp_atr": 40.0}


def shipped_overrides() -> dict:
    """The proxy symbols' overrides exactly as config/order_flow.json ships them."""
    cfg = load_config(PROJECT / "config").order_flow
    return {s: o.model_dump(exclude_unset=True) for s, o in cfg.overrides.items()}


def eurusd_only(**defaults) -> dict:
    overrides = shipped_overrides()
    overrides.update({"BTCUSD": {"enabled": False}, "XAUUSD": {"enabled": False}})
    return {"overrides": overrides, "defaults": defaults}


@pytest.fixture
def tick_market(tmp_path, request):
    """(clock, terminal): EURUSD fed by the real ticks; the clock at Wed 2026-01-07 22:20 UTC
    unless the test is parametrized indirectly with another start."""
    start = getattr(request, "param", datetime(2026, 1, 7, 22, 20, tzinfo=timezone.utc))
    if not TICK_FILE.is_file():
        pytest.skip(f"real tick file {TICK_FILE} is missing")
    spec = json.loads((PROJECT / "data" / "sim_symbols.json").read_text())
    spec["symbols"]["EURUSD"]["feed"] = {"kind": "ticks", "file": "ticks/" + TICK_FILE.name,
                                         "format": "histdata_ticks", "utc_offset_hours": -5}
    (tmp_path / "symbols.json").write_text(json.dumps(spec))
    clock = FakeClock(start)
    terminal = make_test_terminal(tmp_path, clock, symbols_spec_path=tmp_path / "symbols.json",
                                  data_dir=PROJECT / "data")
    return clock, terminal


def independent_tick_delta(broker, now: datetime, window: int = 30, warmup: int = 1800) -> float:
    """The proxy's rule computed apart: ticks since the warm-up, mid changes signed, zero
    changes carry the last direction, summed over the seconds of the window."""
    ticks = broker.ticks("EURUSD", now - timedelta(seconds=warmup), now).to_frame()
    mid = ((ticks["bid"] + ticks["ask"]) / 2).to_numpy()
    direction = np.sign(np.diff(mid))
    for i in range(1, len(direction)):
        if direction[i] == 0:
            direction[i] = direction[i - 1]
    seconds = ticks.index.as_unit("ms").asi8[1:] // 1000
    now_sec = int(now.timestamp())
    inside = (seconds > now_sec - window) & (seconds <= now_sec)
    return float(direction[inside].sum())


def test_proxy_symbol_trades_on_tick_flow_with_its_own_threshold(tmp_path, tick_market):
    clock, terminal = tick_market
    rig = Rig(tmp_path, tape_second=0, feed=False, with_proxy=True, clock=clock, terminal=terminal,
              signals=stub_signals("buy"), changes=eurusd_only(**HUGE_STOPS))
    rig.step()
    assert rig.decision("EURUSD") == "classifier"
    assert "0.75 < 0.85" in rig.monitor.last_decisions["EURUSD"]["detail"]
    assert rig.decision("BTCUSD") == "disabled" and rig.open_trades() == []

    rig.signals = stub_signals("buy", names=STRONG)
    monitor = rig.make_monitor()
    clock.advance(5)
    expected = independent_tick_delta(rig.stack.broker, clock.now())
    monitor.step(clock.now())
    [trade] = rig.open_trades()
    assert monitor.last_decisions["EURUSD"]["failed"] is None
    assert trade.symbol == "EURUSD" and trade.meta["flow_source"] == "tick_proxy"
    assert trade.meta["entry_delta"] == expected and trade.meta["flip_armed"] == (expected > 0)
    assert trade.meta["probability"] == pytest.approx(0.90)
    assert rig.proxy.health()["EURUSD"]["ticks"] > 100 and rig.proxy.health()["EURUSD"]["by_flag"] == 0


@pytest.mark.parametrize("tick_market", [datetime(2026, 1, 8, 1, 58, 10, tzinfo=timezone.utc)], indirect=True)
def test_proxy_flip_exit_closes_when_tick_pressure_turns(tmp_path, tick_market):
    """At 01:58:10 the 30 s tick-rule delta is +10; every 5 s after it reads 12, 14, 18, 12, 9, 9,
    7, 1, 1, 4, 11, 11, 10, 10, 6, -4 and then -8: exactly -0.8 x 10, where the flip fires."""
    clock, terminal = tick_market
    rig = Rig(tmp_path, tape_second=0, feed=False, with_proxy=True, clock=clock, terminal=terminal,
              signals=stub_signals("buy", names=STRONG), changes=eurusd_only(**HUGE_STOPS))
    rig.step()
    [trade] = rig.open_trades()
    entry_delta = trade.meta["entry_delta"]
    assert entry_delta == 10.0
    trace = []
    for _ in range(60):
        clock.advance(5)
        delta = independent_tick_delta(rig.stack.broker, clock.now())
        rig.monitor.step(clock.now())
        is_open = rig.stack.registry.get(trade.ticket) is not None
        trace.append((delta, is_open))
        assert is_open == (delta > -0.8 * entry_delta), trace
        if not is_open:
            break
    assert trace == [(d, True) for d in (12, 14, 18, 12, 9, 9, 7, 1, 1, 4, 11, 11, 10, 10, 6, -4)] + [(-8, False)]
    [closed] = rig.stack.registry.closed_trades("order_flow")
    assert closed.close_reason.startswith(f"order_flow_flip: 30 s delta {trace[-1][0]:+.6g}")


def test_proxy_flip_exit_fails_open_and_entries_fail_closed_when_ticks_stop(tmp_path, tick_market, caplog):
    clock, terminal = tick_market
    rig = Rig(tmp_path, tape_second=0, feed=False, with_proxy=True, clock=clock, terminal=terminal,
              signals=stub_signals("buy", names=STRONG), changes=eurusd_only(**HUGE_STOPS))
    rig.step()
    [trade] = rig.open_trades()
    real_ticks = rig.proxy.broker.ticks

    def no_ticks(symbol, start, end):
        raise BrokerError(-10004, "IPC recv failed")  # the terminal stops answering tick requests
    rig.proxy.broker = type("Down", (), {"ticks": staticmethod(no_ticks)})()
    caplog.set_level(logging.INFO, logger="monitors.order_flow")
    for _ in range(30):  # 150 s: past max_flow_age_seconds (120 s for proxy symbols)
        clock.advance(5)
        rig.monitor.step(clock.now())
    assert rig.stack.registry.get(trade.ticket) is not None
    assert rig.monitor.counters["flip_hold_flow_stale"] >= 1
    assert any("flow_stale" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert rig.proxy.health()["EURUSD"]["errors"] == 30
    # entries on the same stale proxy fail closed (a second slot, so the open trade is no gate)
    set_order_flow(rig.stack, {"defaults": {"max_open_trades": 2, "cooldown_seconds": 0}})
    rig.monitor.step(clock.now())
    assert rig.decision("EURUSD") == "flow_stale" and len(rig.open_trades()) == 1
    rig.proxy.broker = type("Up", (), {"ticks": staticmethod(real_ticks)})()
    clock.advance(5)
    rig.monitor.step(clock.now())
    assert rig.decision("EURUSD") != "flow_stale"


def test_closed_market_gives_no_proxy_flow(tmp_path):
    clock = FakeClock(datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc))  # Saturday
    rig = Rig(tmp_path, tape_second=0, feed=False, with_proxy=True, clock=clock,
              signals=stub_signals("buy", names=STRONG), changes={"overrides": shipped_overrides()})
    rig.step()
    assert rig.decision("EURUSD") == "flow_missing" and rig.decision("XAUUSD") == "flow_missing"
    assert rig.open_trades() == []


def test_each_symbol_reads_the_flow_its_config_maps(tmp_path):
    """Monday 12:00 in the default sim: BTCUSD on the Binance tape, gold and EURUSD on the tick
    proxy over the sim's ticks; a reload that unmaps BTCUSD moves it to the proxy, and its open
    trade's flip exit then holds (an entry delta in BTC is not comparable with tick counts)."""
    rig = Rig(tmp_path, tape_second=230, with_proxy=True, signals=stub_signals("buy", names=STRONG),
              changes={"defaults": HUGE_STOPS})
    rig.step()
    trades = {t.symbol: t for t in rig.open_trades()}
    assert set(trades) == {"BTCUSD", "XAUUSD", "EURUSD"}, rig.monitor.last_decisions
    assert trades["BTCUSD"].meta["flow_source"] == "binance" and trades["BTCUSD"].meta["flow_symbol"] == BINANCE
    assert trades["BTCUSD"].meta["entry_delta"] == pytest.approx(8.184, abs=1e-3)
    for symbol in ("XAUUSD", "EURUSD"):
        meta = trades[symbol].meta
        assert meta["flow_source"] == "tick_proxy" and meta["flow_symbol"] == symbol
        assert meta["entry_delta"] == float(int(meta["entry_delta"]))  # tick counts
    set_order_flow(rig.stack, {"binance": {"enabled": False}})
    rig.step(5)
    holds = rig.monitor.health()["flip_inactive"]
    assert holds[str(trades["BTCUSD"].ticket)] == "source_changed"
    set_order_flow(rig.stack, {"flip_exit": {"apply_to_proxy": False}})
    rig.step(5)
    holds = rig.monitor.health()["flip_inactive"]
    assert holds[str(trades["XAUUSD"].ticket)] == holds[str(trades["EURUSD"].ticket)] == "proxy_excluded"
    assert all(rig.stack.registry.get(t.ticket) is not None for t in trades.values())


def test_skipping_the_detectors_records_the_decisions_of_running_them(tmp_path, tick_market, monkeypatch):
    """Without absorption the other four detectors weigh 0.70 < 0.85: the monitor then records
    "classifier" without running them, and its detail (formatted when read) is the text of the
    full path (a monitor with a stand-in that runs the same detectors)."""
    import monitors.order_flow as monitor_module
    from monitors.order_flow_rules import default_signals

    clock, terminal = tick_market
    rig = Rig(tmp_path, tape_second=0, feed=False, with_proxy=True, clock=clock, terminal=terminal,
              signals=default_signals, changes=eurusd_only())
    skipping = rig.make_monitor()
    rig.signals = lambda inputs, params: default_signals(inputs, params)
    running = rig.make_monitor()
    real_inputs, runs = monitor_module.signal_inputs, []
    monkeypatch.setattr(monitor_module, "signal_inputs", lambda *a: runs.append(1) or real_inputs(*a))
    skipped = 0
    for _ in range(40):
        clock.advance(30)
        before = len(runs)
        skipping.step(clock.now())
        skipped += len(runs) == before
        running.step(clock.now())
        fast, full = skipping.last_decisions["EURUSD"], running.last_decisions["EURUSD"]
        assert fast == full and fast["failed"] is not None
    assert skipped > 20 and rig.open_trades() == []
