"""The order-flow monitor over the simulated terminal, with the real Binance tape.

The BTCUSDT spot tape in data/trades (2024-08-08 23:54, ~30 trades/s) is replayed through
``SharedOrderFlow.on_trade`` (the stream's own callback) with its times shifted by whole seconds
so that a chosen second of the tape falls on the fake clock; the market (bars, quotes, fills) is
the simulated terminal's. The tape's real 30 s delta at 5 s steps is, for example: +8.18 at tape
second 230, then +13.7, +12.5, +11.9, +4.21, +2.25, -2.86 and -11.56 at 265 (below -0.8 x 8.18 =
-6.55): a flip.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from config.order_flow_model import OrderFlowConfig
from engines.order_flow import OrderFlowEngine
from engines.order_flow_signals import Signal
from execution.executor import Executor
from execution.risk import RiskManager
from feeds.bar_feed import BarFeed
from feeds.binance_flow import SharedOrderFlow
from feeds.binance_frames import AggTrade
from feeds.tick_proxy import TickProxyFeed
from feeds.trade_readers import TradeArrays, read_trades
from monitors.order_flow import OrderFlowMonitor
from state.registry import TradeRegistry
from tests.execution.harness import Stack, build_stack
from tests.order_flow.conftest import SPOT_TRADES, trades_file

BINANCE = "BTCUSDT"
WIDE_STOPS = {"stop_mode": "atr", "sl_atr": 3.0, "tp_atr": 6.0, "max_sl_atr": 3.0}


# ------------------------------------------------------------------------------------------
# harness

def deep_update(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = deep_update(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def set_order_flow(stack: Stack, changes: dict) -> OrderFlowConfig:
    """Swap in an order_flow config with ``changes`` applied (validated like a file reload);
    ``overrides`` given in ``changes`` replace the file's overrides as a whole."""
    snapshot = stack.holder.current
    data = deep_update(snapshot.order_flow.model_dump(exclude_unset=True), changes)
    if "overrides" in changes:
        data["overrides"] = changes["overrides"]
    cfg = OrderFlowConfig.model_validate(data)
    stack.holder.swap(replace(snapshot, order_flow=cfg), [])
    return cfg


class TapeReplay:
    """Feeds the real tape into the flow up to the clock, as the stream would deliver it."""

    def __init__(self, flow: SharedOrderFlow, tape: TradeArrays, offset_ms: int, start_index: int = 0) -> None:
        self.flow, self.tape, self.offset_ms, self.next = flow, tape, offset_ms, start_index
        self.paused = False

    def feed_until(self, now_ms: int) -> int:
        if self.paused:
            return 0
        t = self.tape
        fed = 0
        while self.next < len(t) and int(t.time_ms[self.next]) + self.offset_ms <= now_ms:
            i = self.next
            time_ms = int(t.time_ms[i]) + self.offset_ms
            self.flow.on_trade(AggTrade(BINANCE, int(t.ids[i]), float(t.price[i]), float(t.qty[i]), time_ms,
                                        bool(t.is_buyer_maker[i]), time_ms))
            self.next += 1
            fed += 1
        return fed


def stub_signals(side: str, strength: float = 1.0,
                 names: tuple[str, ...] = ("absorption", "delta_divergence", "liquidity_sweep")):
    """Stand-in for the five detectors (the classifier and every gate stay real): absorption
    + delta divergence + sweep at full strength score exactly 0.75, the default threshold."""
    calls: list[Any] = []

    def signals(inputs, params):
        calls.append(inputs)
        w = inputs.window
        return [Signal(n, side, strength, {"low": w.price_low, "high": w.price_high} if n == "absorption" else {})
                for n in names]

    signals.calls = calls  # type: ignore[attr-defined]
    return signals


class Rig:
    """The stack, the flow fed from the real tape, the bar feed and the monitor."""

    def __init__(self, tmp_path, tape_second: float, signals=None, changes: dict | None = None,
                 with_flow: bool = True, feed: bool = True, with_proxy: bool = False, clock=None,
                 terminal=None) -> None:
        self.stack = build_stack(tmp_path, clock=clock, terminal=terminal)
        base = {} if with_proxy else {"symbols": ["BTCUSD"], "overrides": {}}
        self.cfg = set_order_flow(self.stack, deep_update(base, changes or {}))
        self.proxy = TickProxyFeed.from_config(self.cfg.proxy, self.stack.broker, self.stack.clock) \
            if with_proxy else None
        self.tape = read_trades(trades_file(SPOT_TRADES))
        self.flow = SharedOrderFlow(OrderFlowEngine.from_config(self.cfg.flow), self.cfg.binance.symbols)
        # tape second ``tape_second`` (counted from the first trade's whole second) is now; a
        # whole-second shift keeps the exchange's one-second buckets
        self.offset_ms = self.now_ms() - (int(self.tape.time_ms[0]) // 1000 * 1000 + int(tape_second * 1000))
        self.replay = TapeReplay(self.flow, self.tape, self.offset_ms)
        if not feed:
            self.replay.paused = True
        self.replay.feed_until(self.now_ms())
        self.bar_feed = BarFeed(self.stack.broker, self.stack.clock, lambda: [])
        self.signals = signals or stub_signals("buy")
        self.monitor = self.make_monitor(with_flow)

    def make_monitor(self, with_flow: bool = True, registry=None, executor=None, flow=None) -> OrderFlowMonitor:
        s = self.stack
        return OrderFlowMonitor(s.holder, self.bar_feed, s.broker, executor or s.executor, registry or s.registry,
                                s.clock, flow=(flow or self.flow) if with_flow else None, proxy=self.proxy,
                                signals=self.signals)

    def now_ms(self) -> int:
        return int(self.stack.clock.now().timestamp() * 1000)

    def delta(self, window: int = 30) -> float:
        return self.flow.get_metrics(BINANCE, window, self.now_ms()).delta

    def step(self, seconds: float = 0.0, monitor: OrderFlowMonitor | None = None) -> None:
        if seconds:
            self.stack.clock.advance(seconds)
        self.replay.feed_until(self.now_ms())
        (monitor or self.monitor).step(self.stack.clock.now())

    def decision(self, symbol: str = "BTCUSD") -> str | None:
        return self.monitor.last_decisions[symbol]["failed"]

    def open_trades(self):
        return self.stack.registry.open_trades("order_flow")


# ------------------------------------------------------------------------------------------
# entries

def test_a_classifier_pass_opens_a_trade_with_the_entry_delta_stored_and_persisted(tmp_path):
    rig = Rig(tmp_path, tape_second=230)
    expected_delta = rig.delta(30)
    assert expected_delta == pytest.approx(8.184, abs=1e-3)  # the real tape's 30 s delta at that second
    rig.step()
    assert rig.decision() is None, rig.monitor.last_decisions
    [trade] = rig.open_trades()
    assert trade.side == "buy" and trade.symbol == "BTCUSD" and trade.strategy == "order_flow"
    assert trade.meta["entry_delta"] == expected_delta
    assert trade.meta["flow_source"] == "binance" and trade.meta["flow_symbol"] == BINANCE
    assert trade.meta["flip_armed"] is True and trade.meta["entry_delta_window_seconds"] == 30
    assert trade.meta["probability"] == pytest.approx(0.75)
    assert set(trade.meta["contributions"]) == {"absorption", "delta_divergence", "liquidity_sweep"}
    assert trade.sl < trade.entry < trade.tp
    # the stop sits beyond the absorption zone (measured on the tape), within [0.3, 3] ATR
    atr = trade.meta["atr"]
    assert 0.3 * atr - 0.01 <= trade.entry - trade.sl <= 3 * atr + 0.01
    assert any(r.startswith("stop: absorption zone") for r in trade.reasons)
    position = rig.stack.broker.position(trade.ticket)
    assert position is not None and position.side == "buy"
    # persisted: a registry loaded from the same store (a restart) has the entry delta
    reloaded = TradeRegistry(rig.stack.store).get(trade.ticket)
    assert reloaded is not None and reloaded.meta["entry_delta"] == expected_delta
    assert rig.monitor.why_not._trades["BTCUSD"] == 1
    assert [e["event"] for e in rig.stack.journal_events()][-2:] == ["intent", "opened"]


def test_atr_stops_when_configured(tmp_path):
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": {"stop_mode": "atr", "sl_atr": 1.0, "tp_atr": 2.0,
                                                               "min_sl_spreads": 0}})
    rig.step()
    [trade] = rig.open_trades()
    atr = trade.meta["atr"]
    assert trade.entry - trade.sl == pytest.approx(atr, abs=0.02)
    assert trade.tp - trade.entry == pytest.approx(2 * atr, abs=0.02)


def test_a_stop_is_never_inside_two_spreads(tmp_path):
    # M1 ATR here is about 27 and the sim's BTCUSD spread 15: 0.5 ATR would sit inside the spread
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": {"stop_mode": "atr", "sl_atr": 0.5, "tp_atr": 0.5}})
    quote = rig.stack.broker.quote("BTCUSD")
    rig.step()
    [trade] = rig.open_trades()
    assert 0.5 * trade.meta["atr"] < 2 * (quote.ask - quote.bid)
    assert trade.entry - trade.sl == pytest.approx(2 * (quote.ask - quote.bid), abs=0.02)
    assert trade.tp - trade.entry == pytest.approx(2 * (quote.ask - quote.bid), abs=0.02)


@pytest.mark.parametrize("case, gate", [
    ("no_flow_object", "flow_missing"),
    ("never_traded", "flow_missing"),
    ("stale", "flow_stale"),
    ("gap", "flow_gap"),
    ("incomplete", "flow_incomplete"),
])
def test_entries_fail_closed_on_missing_or_unfit_flow(tmp_path, case, gate):
    rig = Rig(tmp_path, tape_second=12 if case == "incomplete" else 230, with_flow=case != "no_flow_object",
              feed=case != "never_traded")
    if case == "stale":
        rig.replay.paused = True  # the stream stops delivering
        rig.stack.clock.advance(11)  # limit: max_flow_age_seconds 10
    if case == "gap":
        rig.flow.mark_discontinuity(BINANCE)  # trades were lost and could not be backfilled
    rig.step()
    assert rig.decision() == gate
    assert rig.open_trades() == [] and rig.stack.broker.positions() == []
    assert rig.monitor.why_not._failed["BTCUSD"][gate] == 1
    assert rig.signals.calls == []  # fail closed before any signal is even computed


@pytest.mark.parametrize("changes, signals, gate", [
    ({"enabled": False}, None, "disabled"),
    ({"overrides": {"BTCUSD": {"enabled": False}}}, None, "disabled"),
    ({"defaults": {"sessions_utc": [[0, 6], [13, 20]]}}, None, "session"),  # the clock is 12:00 UTC
    ({}, stub_signals("buy", strength=0.9), "classifier"),  # 0.675 < 0.75
    ({"defaults": {"pattern_threshold": 0.8}}, None, "classifier"),
    ({}, stub_signals("buy", names=("delta_divergence", "liquidity_sweep", "cvd_divergence", "vwap_deviation")),
     "classifier"),  # everything but absorption: 0.70
    ({"defaults": {"require_entry_delta_agreement": True}}, stub_signals("sell"), "delta_disagrees"),
])
def test_each_entry_gate_blocks(tmp_path, changes, signals, gate):
    rig = Rig(tmp_path, tape_second=230, signals=signals, changes=changes)
    rig.step()
    assert rig.decision() == gate, rig.monitor.last_decisions
    assert rig.open_trades() == []


def test_session_wrapping_midnight_lets_noon_trade(tmp_path):
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": {"sessions_utc": [[22, 13]]}})
    rig.step()
    assert rig.decision() is None and len(rig.open_trades()) == 1


def test_conflicting_signals_do_not_trade(tmp_path):
    def both(inputs, params):
        return stub_signals("buy")(inputs, params) + stub_signals("sell")(inputs, params)
    rig = Rig(tmp_path, tape_second=230, signals=both)
    rig.step()
    assert rig.decision() == "classifier" and "no side" in rig.monitor.last_decisions["BTCUSD"]["detail"]


def test_a_config_reload_reaches_the_next_step(tmp_path):
    """The monitor derives per-symbol parameters once per config object: a reload is a new one."""
    rig = Rig(tmp_path, tape_second=230, signals=stub_signals("buy", names=("absorption",)))
    rig.step()
    assert rig.decision() == "classifier" and "0.30 < 0.75" in rig.monitor.last_decisions["BTCUSD"]["detail"]
    set_order_flow(rig.stack, {"overrides": {"BTCUSD": {"pattern_threshold": 0.3}}})
    rig.step(5)
    assert rig.decision() is None and len(rig.open_trades()) == 1


def test_open_position_then_cooldown_then_a_new_entry(tmp_path):
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": {**WIDE_STOPS, "cooldown_seconds": 15}})
    rig.step()
    assert len(rig.open_trades()) == 1
    rig.step(5)
    assert rig.decision() == "position_open"
    for _ in range(6):  # 240 .. 265: the flip at 265 closes it
        rig.step(5)
    assert rig.open_trades() == []
    for _ in range(2):
        rig.step(5)
        assert rig.decision() == "cooldown"  # 5 and 10 s after the close, cooldown 15 s
    rig.step(5)
    assert rig.decision() is None  # 15 s after the close (tape second 280): a new buy
    [trade] = rig.open_trades()
    # the 30 s delta is -4.85 there: a buy on negative delta, so its flip exit is not armed
    assert trade.meta["entry_delta"] == pytest.approx(-4.851, abs=1e-3) and trade.meta["flip_armed"] is False


# ------------------------------------------------------------------------------------------
# the flip exit

def test_flip_exit_closes_a_buy_when_the_delta_flips_and_not_before(tmp_path):
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": WIDE_STOPS})
    rig.step()
    [trade] = rig.open_trades()
    entry_delta = trade.meta["entry_delta"]
    trigger = -0.8 * entry_delta
    seen = []
    for _ in range(12):
        rig.stack.clock.advance(5)
        rig.replay.feed_until(rig.now_ms())
        delta = rig.delta(30)
        rig.monitor.step(rig.stack.clock.now())
        still_open = rig.stack.registry.get(trade.ticket) is not None
        seen.append((round(delta, 3), still_open))
        assert still_open == (delta > trigger), seen
        if not still_open:
            break
    assert seen == [(13.677, True), (12.514, True), (11.896, True), (4.21, True), (2.246, True), (-2.855, True),
                    (-11.557, False)]
    [closed] = rig.stack.registry.closed_trades("order_flow")
    assert closed.close_reason == ("order_flow_flip: 30 s delta -11.5566 crossed -6.54752 "
                                   "(-0.8 x entry delta +8.1844, 241 %)")
    assert rig.stack.broker.position(trade.ticket) is None
    assert rig.monitor.counters["flip_closed"] == 1


def test_flip_exit_mirrors_for_a_sell(tmp_path):
    rig = Rig(tmp_path, tape_second=425, signals=stub_signals("sell"), changes={"defaults": WIDE_STOPS})
    rig.step()
    [trade] = rig.open_trades()
    assert trade.side == "sell" and trade.meta["entry_delta"] == pytest.approx(-5.753, abs=1e-3)
    rig.step(5)  # tape second 430: delta +7.425 >= +0.8 x 5.753
    assert rig.stack.registry.get(trade.ticket) is None
    [closed] = rig.stack.registry.closed_trades("order_flow")
    assert closed.close_reason.startswith("order_flow_flip: 30 s delta +7.42475 crossed +4.60265")


def test_flip_threshold_is_configurable(tmp_path):
    # with threshold 3.0 the trigger is -24.6: the -11.6 and -12.5 at tape seconds 265-270 do not flip
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": WIDE_STOPS, "flip_exit": {"threshold": 3.0}})
    rig.step()
    [trade] = rig.open_trades()
    for _ in range(8):
        rig.step(5)
    assert rig.stack.registry.get(trade.ticket) is not None


def test_flip_exit_fails_open_on_stale_flow(tmp_path, caplog):
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": WIDE_STOPS})
    rig.step()
    [trade] = rig.open_trades()
    rig.replay.paused = True  # the stream goes quiet; the real tape flips at tape second 265
    caplog.set_level(logging.INFO, logger="monitors.order_flow")
    for _ in range(8):
        rig.step(5)
    assert rig.stack.registry.get(trade.ticket) is not None  # left to its broker stop
    assert rig.stack.broker.position(trade.ticket).sl == trade.sl
    assert rig.monitor.counters["flip_hold_flow_stale"] >= 5
    stale_logs = [r for r in caplog.records if "flip exit inactive" in r.getMessage() and "flow_stale" in r.getMessage()]
    assert len([r for r in stale_logs if r.levelno == logging.INFO]) == 1  # loud once, then debug
    rig.replay.paused = False  # the stream is back: tape second 270, delta -12.5: the flip acts now
    rig.step(0)
    assert rig.stack.registry.get(trade.ticket) is None


def test_flip_exit_fails_open_on_missing_flow(tmp_path):
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": WIDE_STOPS})
    rig.step()
    [trade] = rig.open_trades()
    empty = SharedOrderFlow(OrderFlowEngine(), {"BTCUSD": BINANCE})  # e.g. a restarted stream, no trades yet
    monitor = rig.make_monitor(flow=empty)
    rig.step(30, monitor=monitor)
    assert rig.stack.registry.get(trade.ticket) is not None
    assert monitor.counters["flip_hold_flow_missing"] == 1


def test_entry_delta_survives_a_restart_and_the_flip_still_acts(tmp_path):
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": WIDE_STOPS})
    rig.step()
    [trade] = rig.open_trades()
    # restart: registry, risk and executor rebuilt from the same store; a new, empty flow
    # engine whose stream resumes at tape second 240
    s = rig.stack
    registry = TradeRegistry(s.store)
    risk = RiskManager(lambda: s.holder.current.bot.risk, registry, s.store)
    executor = Executor(s.broker, registry, risk, s.journal, lambda: s.holder.current, s.clock, sleep=s.clock.advance)
    flow = SharedOrderFlow(OrderFlowEngine.from_config(rig.cfg.flow), rig.cfg.binance.symbols)
    rig.flow, rig.replay.flow = flow, flow
    resume_ms = rig.now_ms() + 10_000
    while int(rig.tape.time_ms[rig.replay.next]) + rig.offset_ms < resume_ms:
        rig.replay.next += 1
    monitor = rig.make_monitor(registry=registry, executor=executor, flow=flow)
    assert registry.get(trade.ticket).meta["entry_delta"] == trade.meta["entry_delta"]
    rig.step(5, monitor=monitor)  # 235: no trades yet in the new engine: missing, fails open
    assert monitor.counters["flip_hold_flow_missing"] == 1
    for _ in range(6):  # 240 .. 265: less than 30 s of tape: incomplete, fails open (at 265 the
        rig.step(5, monitor=monitor)  # full tape's delta would have flipped)
    assert registry.get(trade.ticket) is not None
    assert monitor.counters["flip_hold_flow_incomplete"] >= 1
    rig.step(5, monitor=monitor)  # 270: a complete window, delta -12.5 <= -6.5
    assert registry.get(trade.ticket) is None
    assert registry.closed_trades("order_flow")[-1].close_reason.startswith("order_flow_flip")


def test_broker_side_closes_are_recorded(tmp_path):
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": {"stop_mode": "atr", "sl_atr": 1.0, "tp_atr": 1.0},
                                                  "flip_exit": {"enabled": False}})
    rig.step()
    [trade] = rig.open_trades()
    for _ in range(120):
        rig.step(5)
        if rig.stack.registry.get(trade.ticket) is None:
            break
    [closed] = rig.stack.registry.closed_trades("order_flow")
    assert closed.close_reason in ("broker:sl", "broker:tp") and closed.exit_price is not None


def test_flip_exit_ignores_trades_without_an_entry_delta(tmp_path):
    rig = Rig(tmp_path, tape_second=230, changes={"defaults": WIDE_STOPS})
    rig.step()
    [trade] = rig.open_trades()
    rig.stack.registry.update(trade.ticket, meta={"entry_delta": None})
    for _ in range(6):
        rig.step(5)
    assert rig.stack.registry.get(trade.ticket) is not None
    assert rig.monitor.counters["flip_hold_no_entry_delta"] == 6


# ------------------------------------------------------------------------------------------
# the real detectors

def test_real_detectors_on_the_real_tape_trade_their_signal(tmp_path):
    """No stub: the five detectors on the sim's M1 bars and the real tape. With the classifier
    weighted on VWAP deviation alone, the first trade's side is the side VWAP deviation gave."""
    from monitors.order_flow_rules import default_signals
    seen: list = []

    def recording(inputs, params):
        found = default_signals(inputs, params)
        seen.append(found)
        return found

    rig = Rig(tmp_path, tape_second=60, signals=recording, changes={"defaults": {
        **WIDE_STOPS, "pattern_weights": {"vwap_deviation": 1.0}, "pattern_threshold": 0.5,
        "vwap_min_sigma": 0.5}})
    for _ in range(100):
        rig.step(5)
        if rig.open_trades():
            break
    [trade] = rig.open_trades()
    vwap = [s for s in seen[-1] if s.name == "vwap_deviation"]
    assert vwap and trade.side == vwap[0].side and vwap[0].strength >= 0.5
    assert trade.meta["pattern_type"] == "vwap_deviation"
    assert all(0 <= s.strength <= 1 for found in seen for s in found)
    assert "error" not in rig.monitor.why_not._failed.get("BTCUSD", {})
