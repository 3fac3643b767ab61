"""The Binance aggTrade client against a local websocket server and REST fake on 127.0.0.1,
replaying the real tapes in data/trades as combined-stream aggTrade frames."""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from backtest.flow_bars import flow_bars
from engines.order_flow import OrderFlowEngine
from feeds.binance import STATE_DOCUMENT, THREAD_NAME, BinanceAggTradeStream, StreamSettings
from feeds.binance_flow import SharedOrderFlow
from feeds.binance_frames import agg_trade_frame
from feeds.trade_readers import read_trades
from monitors.clock import FakeClock
from state.store import StateStore
from tests.order_flow.conftest import wait_until
from tests.order_flow.rest_fake import RestFake
from tests.order_flow.ws_server import OP_PONG, LocalWebSocketServer

SPOT = "BTCUSDT"
USDM = "BTCUSDT_260327"  # the quarterly contract the USD-M file comes from


def _tape(path, symbol):
    t = read_trades(path)
    return [dict(symbol=symbol, a=a, p=p, q=q, T=ts, m=m) for a, p, q, ts, m in
            zip(t.ids.tolist(), t.price.tolist(), t.qty.tolist(), t.time_ms.tolist(),
                t.is_buyer_maker.tolist())]


def _rest_items(tape):
    return [{"a": x["a"], "p": repr(x["p"]), "q": repr(x["q"]), "f": x["a"], "l": x["a"], "T": x["T"],
             "m": x["m"], "M": True} for x in tape]


def _frame(x):
    return agg_trade_frame(x["symbol"], x["a"], x["p"], x["q"], x["T"], x["m"], event_ms=x["T"] + 3)


def _interleave(*tapes):
    """Merge tapes as a combined stream would: each keeps its order, frames alternate by position."""
    keyed = [((i + 1) / len(tape), k, x) for k, tape in enumerate(tapes) for i, x in enumerate(tape)]
    return [x for _, _, x in sorted(keyed, key=lambda e: (e[0], e[1]))]


def _settings(server_url, rest_url, symbols, **kw):
    base = StreamSettings(ws_url=server_url, rest_url=rest_url, market="spot", symbols=tuple(symbols),
                          connect_timeout_s=2.0, reconnect_initial_s=0.01, reconnect_max_s=0.05,
                          stable_connection_s=3600, recv_poll_s=0.02, backfill_max_pages=5,
                          backfill_page_limit=1000, backfill_min_interval_s=0.01,
                          rest_timeout_s=2.0, state_save_interval_s=0.05)
    return replace(base, **kw)


class Collector:
    def __init__(self, flow: SharedOrderFlow | None = None) -> None:
        self.trades = []
        self.flow = flow
        self.lock = threading.Lock()

    def __call__(self, trade) -> None:
        with self.lock:
            self.trades.append(trade)
        if self.flow is not None:
            self.flow.on_trade(trade)

    def ids(self, symbol):
        with self.lock:
            return [t.id for t in self.trades if t.symbol == symbol]


@pytest.fixture
def tapes(spot_trades_path, usdm_trades_path):
    return {SPOT: _tape(spot_trades_path, SPOT), USDM: _tape(usdm_trades_path, USDM)}


def test_every_trade_delivered_once_in_order_through_drops_gaps_and_shutdown(tapes, spot_trades_path,
                                                                              usdm_trades_path):
    frames = _interleave(tapes[SPOT], tapes[USDM])
    n = len(frames)
    texts = [_frame(x) for x in frames]
    malformed = ["this is not json",
                 json.dumps({"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "s": SPOT, "a": "12",
                                                                    "p": "1", "q": "1", "T": 1, "m": True}}),
                 agg_trade_frame(SPOT, 10**12, "-5.0", "1.0", 1_700_000_000_000, False)]
    seen = {}

    def handler(conn, index):
        if index == 0:
            conn.send_many(texts[:3000])
            conn.send_many(malformed)
            conn.ping(b"hb-0")
            seen["pong"] = conn.wait_for(OP_PONG, 5.0)
            conn.send_many(texts[3000:6000])
            time.sleep(0.05)
            conn.drop()  # network failure: no close frame
        elif index == 1:
            conn.send_many(texts[5500:8000])  # 500 frames again: duplicates
            conn.send_many(texts[9500:12000])  # 8000..9499 never sent: a gap for both symbols
            conn.send_text(json.dumps({"e": "serverShutdown", "E": 1}))
            seen["client_closed_after_shutdown"] = conn.eof.wait(5.0)
        elif index == 2:
            conn.send_many(texts[12500:])  # another gap: 12000..12499

    with RestFake({SPOT: _rest_items(tapes[SPOT]), USDM: _rest_items(tapes[USDM])}) as rest, \
            LocalWebSocketServer(handler) as server:
        flow = SharedOrderFlow(OrderFlowEngine())
        got = Collector(flow)
        stream = BinanceAggTradeStream(_settings(server.url, rest.url, [SPOT, USDM]), got, clock=FakeClock(),
                                       rng=random.Random(7))
        stream.start()
        try:
            assert wait_until(lambda: len(got.trades) >= n, 20.0), stream.health()
            time.sleep(0.05)  # anything extra (a duplicate delivery) would arrive now
        finally:
            assert stream.stop(2.0)
        health = stream.health()

    for symbol in (SPOT, USDM):
        expected = [x["a"] for x in tapes[symbol]]
        assert got.ids(symbol) == expected, f"{symbol}: not exactly once in id order"
    by_id = {(t.symbol, t.id): t for t in got.trades}
    for x in frames[::97]:
        t = by_id[(x["symbol"], x["a"])]
        assert (t.price, t.qty, t.time_ms, t.is_buyer_maker) == (x["p"], x["q"], x["T"], x["m"])
    assert len(got.trades) == n
    assert seen["pong"] == b"hb-0"
    assert seen["client_closed_after_shutdown"] is True
    assert server.paths[0] == f"/stream?streams={SPOT.lower()}@aggTrade/{USDM.lower()}@aggTrade"
    assert len(server.connections) == 3
    assert health["malformed"] == 3 and health["server_shutdowns"] == 1 and health["pings"] >= 1
    assert health["connects"] == 3
    for symbol in (SPOT, USDM):
        sym = health["symbols"][symbol]
        assert sym["gaps_filled"] >= 2 and sym["gaps_unfilled"] == 0 and sym["duplicates"] > 0
    assert health["backfill_trades"] > 0
    assert all(r["path"] == "/api/v3/aggTrades" and r["limit"] == "1000" for r in rest.requests)
    assert {r["symbol"] for r in rest.requests} == {SPOT, USDM}
    # the engine fed by the stream holds the same bars as a replay of the file
    for symbol, path in ((SPOT, spot_trades_path), (USDM, usdm_trades_path)):
        live = flow.bars(symbol, 60)
        replay = flow_bars(path, "1m")
        assert len(live) == len(replay)
        assert np.allclose([b.delta for b in live], replay["delta"], atol=1e-9)
        assert [b.trades for b in live] == replay["trades"].tolist()
        assert not any(b.discontinuous for b in live)
        assert flow.stats(symbol)["gaps"] == 0


def test_restart_resumes_from_the_persisted_last_id(tmp_path, tapes):
    tape = tapes[SPOT]
    texts = [_frame(x) for x in tape]
    plan = {0: (0, 3000), 1: (5000, len(texts))}

    def handler(conn, index):
        start, end = plan[index]
        conn.send_many(texts[start:end])

    store = StateStore(tmp_path / "state")
    with RestFake({SPOT: _rest_items(tape)}) as rest, LocalWebSocketServer(handler) as server:
        first = Collector()
        stream = BinanceAggTradeStream(_settings(server.url, rest.url, [SPOT]), first, store=store,
                                       clock=FakeClock())
        stream.start()
        assert wait_until(lambda: len(first.trades) == 3000)
        started = time.monotonic()
        assert stream.stop(2.0)
        assert time.monotonic() - started < 2.0
        saved = store.load(STATE_DOCUMENT)
        assert saved["last_ids"] == {SPOT: tape[2999]["a"]} and saved["market"] == "spot"

        second = Collector()
        restarted = BinanceAggTradeStream(_settings(server.url, rest.url, [SPOT]), second, store=store,
                                          clock=FakeClock())
        assert restarted.last_ids() == {SPOT: tape[2999]["a"]}
        restarted.start()
        try:
            assert wait_until(lambda: len(second.trades) >= len(tape) - 3000)
            time.sleep(0.05)
        finally:
            restarted.stop(2.0)
    assert second.ids(SPOT) == [x["a"] for x in tape[3000:]]
    assert rest.requests[0]["fromId"] == str(tape[3000]["a"])
    assert store.load(STATE_DOCUMENT)["last_ids"] == {SPOT: tape[-1]["a"]}


def test_saved_ids_of_another_market_are_ignored(tmp_path):
    store = StateStore(tmp_path)
    store.save(STATE_DOCUMENT, {"market": "usdm", "last_ids": {SPOT: 123}})
    stream = BinanceAggTradeStream(_settings("ws://127.0.0.1:1", "http://127.0.0.1:1", [SPOT]),
                                   lambda t: None, store=store)
    assert stream.last_ids() == {SPOT: None}


def test_planned_reconnect_before_the_24h_cut_loses_nothing(tapes):
    tape = tapes[USDM]
    texts = [_frame(x) for x in tape]
    clock = FakeClock()
    proceed = threading.Event()

    def handler(conn, index):
        if index == 0:
            conn.send_many(texts[:1000])
            proceed.wait(5.0)
            conn.send_many(texts[1000:1200])  # sent while the client is leaving: may be lost
            conn.eof.wait(5.0)
        else:
            conn.send_many(texts[1100:])

    with RestFake({USDM: _rest_items(tape)}) as rest, LocalWebSocketServer(handler) as server:
        got = Collector()
        settings = _settings(server.url, rest.url, [USDM], planned_reconnect_s=23.5 * 3600,
                             stable_connection_s=60)
        stream = BinanceAggTradeStream(settings, got, clock=clock)
        stream.start()
        try:
            assert wait_until(lambda: len(got.trades) >= 1000)
            clock.advance(23.5 * 3600 + 1)
            proceed.set()
            assert wait_until(lambda: len(got.trades) >= len(tape))
            time.sleep(0.05)
        finally:
            stream.stop(2.0)
    assert got.ids(USDM) == [x["a"] for x in tape]
    health = stream.health()
    assert health["planned_reconnects"] == 1 and health["connects"] == 2
    assert stream.last_backoff_s is None  # a planned rotation does not back off


def test_backoff_is_jittered_exponential_capped_and_forever():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens: every connect is refused at once
    clock = FakeClock()
    settings = _settings(f"ws://127.0.0.1:{port}", "http://127.0.0.1:1", [SPOT], reconnect_initial_s=1.0,
                         reconnect_max_s=8.0)
    stream = BinanceAggTradeStream(settings, lambda t: None, clock=clock, rng=random.Random(3))
    stream.start()
    try:
        assert wait_until(lambda: len(clock.waits) >= 12)
    finally:
        assert stream.stop(2.0)
    waits = clock.waits[:12]
    for attempt, delay in enumerate(waits, start=1):
        cap = min(8.0, 1.0 * 2 ** (attempt - 1))
        assert cap * 0.5 <= delay <= cap, (attempt, delay)
    assert len(set(waits[4:])) > 1  # jitter: capped delays are not all equal
    assert stream.health()["connect_failures"] >= 12 and stream.health()["connected"] is False


def test_unfillable_gap_is_passed_through_and_flags_the_engine(tapes):
    tape = tapes[USDM]
    texts = [_frame(x) for x in tape]

    def handler(conn, index):
        conn.send_many(texts[:500] + texts[1700:])  # 1200 ids missing: 2 pages > bound of 1

    with RestFake({USDM: _rest_items(tape)}) as rest, LocalWebSocketServer(handler) as server:
        flow = SharedOrderFlow(OrderFlowEngine())
        got = Collector(flow)
        stream = BinanceAggTradeStream(_settings(server.url, rest.url, [USDM], backfill_max_pages=1), got,
                                       clock=FakeClock())
        stream.start()
        try:
            assert wait_until(lambda: len(got.trades) >= len(tape) - 1200)
        finally:
            stream.stop(2.0)
    assert got.ids(USDM) == [x["a"] for x in tape[:500] + tape[1700:]]
    assert rest.requests == []  # never started what could not finish
    assert stream.health()["symbols"][USDM]["gaps_unfilled"] == 1
    stats = flow.stats(USDM)
    assert stats["gaps"] == 1 and stats["missing_ids"] == 1200
    gap_bar = [b for b in flow.bars(USDM, 60) if b.discontinuous]
    assert len(gap_bar) == 1 and gap_bar[0].start_ms <= tape[1700]["T"] < gap_bar[0].end_ms


def test_rate_limited_backfill_fails_fast_and_marks_the_gap(tapes):
    tape = tapes[USDM]
    texts = [_frame(x) for x in tape]

    def handler(conn, index):
        conn.send_many(texts[:100] + texts[150:400])

    with RestFake({USDM: _rest_items(tape)}) as rest, LocalWebSocketServer(handler) as server:
        rest.fail_next.append((429, {"Retry-After": "30"}))
        got = Collector()
        stream = BinanceAggTradeStream(_settings(server.url, rest.url, [USDM]), got, clock=FakeClock())
        stream.start()
        try:
            assert wait_until(lambda: len(got.trades) >= 350)
        finally:
            stream.stop(2.0)
    assert got.ids(USDM) == [x["a"] for x in tape[:100] + tape[150:400]]
    assert len(rest.requests) == 1
    health = stream.health()
    assert health["symbols"][USDM]["gaps_unfilled"] == 1
    assert "HTTP 429" in health["last_error"]


def test_backfill_overlap_with_live_trades_is_not_delivered_twice(tapes):
    """REST pages run past the gap into ids the live stream also sends: each id still once."""
    tape = tapes[SPOT][:4000]
    texts = [_frame(x) for x in tape]

    def handler(conn, index):
        conn.send_many(texts[:10])
        conn.send_many(texts[1500:])  # backfill fromId=tape[10] returns 1000 + 1000 items past it

    with RestFake({SPOT: _rest_items(tape)}) as rest, LocalWebSocketServer(handler) as server:
        got = Collector()
        stream = BinanceAggTradeStream(_settings(server.url, rest.url, [SPOT]), got, clock=FakeClock())
        stream.start()
        try:
            assert wait_until(lambda: len(got.trades) >= len(tape))
            time.sleep(0.05)
        finally:
            stream.stop(2.0)
    assert got.ids(SPOT) == [x["a"] for x in tape]
    assert [int(r["fromId"]) for r in rest.requests] == [tape[10]["a"], tape[1010]["a"]]


def test_stop_is_prompt_while_connected_and_the_thread_is_named(tapes):
    texts = [_frame(x) for x in tapes[USDM][:10]]

    def handler(conn, index):
        conn.send_many(texts)
        conn.eof.wait(5.0)

    with RestFake({}) as rest, LocalWebSocketServer(handler) as server:
        got = Collector()
        stream = BinanceAggTradeStream(_settings(server.url, rest.url, [USDM], recv_poll_s=5.0), got)
        stream.start()
        assert wait_until(lambda: len(got.trades) == 10)
        assert THREAD_NAME in [t.name for t in threading.enumerate()]
        health = stream.health()
        assert health["connected"] is True and health["stream_age_s"] is not None
        assert health["lag_ms"] is not None
        started = time.monotonic()
        assert stream.stop(2.0)  # recv blocks for up to 5 s: stop must abort it
        assert time.monotonic() - started < 2.0
    assert not stream.is_alive()


def test_stream_url_and_settings_from_config():
    from config.order_flow_model import OrderFlowConfig
    cfg = OrderFlowConfig(symbols=["BTCUSD", "ETHUSD"],
                          binance={"market": "usdm", "symbols": {"BTCUSD": "BTCUSDT", "ETHUSD": "ETHUSDT"}})
    settings = StreamSettings.from_config(cfg.binance)
    assert settings.stream_url == "wss://fstream.binance.com/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    assert settings.rest_url == "https://fapi.binance.com" and settings.planned_reconnect_s == 23.5 * 3600
    with pytest.raises(ValueError, match="at least one symbol"):
        StreamSettings("ws://x", "http://x", "spot", ())


def test_live_trades_held_during_a_backfill_keep_the_rules(tapes):
    """While REST is slow, the live tape brings duplicates and a second gap: both handled in order."""
    tape = tapes[SPOT][:600]
    texts = [_frame(x) for x in tape]
    sent = threading.Event()

    def handler(conn, index):
        conn.send_many(texts[:100])
        conn.send_many(texts[150:300])  # gap 100..149: backfill starts, REST is held
        conn.send_many(texts[250:260])  # duplicates, now held behind the backfill
        conn.send_many(texts[400:600])  # a second gap 300..399 inside the held trades
        sent.set()

    with RestFake({SPOT: _rest_items(tape)}) as rest, LocalWebSocketServer(handler) as server:
        rest.gate.clear()
        got = Collector()
        stream = BinanceAggTradeStream(_settings(server.url, rest.url, [SPOT]), got, clock=FakeClock())
        stream.start()
        try:
            assert sent.wait(5.0)
            assert wait_until(lambda: stream.health()["symbols"][SPOT]["held"] == 360)
            assert got.ids(SPOT) == [x["a"] for x in tape[:100]]  # nothing past the gap yet
            rest.gate.set()
            assert wait_until(lambda: len(got.trades) >= len(tape))
            time.sleep(0.05)
        finally:
            stream.stop(2.0)
    assert got.ids(SPOT) == [x["a"] for x in tape]
    sym = stream.health()["symbols"][SPOT]
    assert sym["gaps_filled"] == 2 and sym["duplicates"] == 10 and sym["held"] == 0
    assert [int(r["fromId"]) for r in rest.requests] == [tape[100]["a"], tape[300]["a"]]


def test_silent_connection_is_replaced_and_consumer_errors_do_not_stop_the_tape(tapes):
    tape = tapes[USDM][:300]
    texts = [_frame(x) for x in tape]
    clock = FakeClock()

    def handler(conn, index):
        if index == 0:
            conn.send_many(texts[:100])
            conn.eof.wait(5.0)  # then silence: no trades, no pings
        else:
            conn.send_many(texts[100:])

    calls = []

    def flaky_consumer(trade):
        calls.append(trade.id)
        if trade.id == tape[50]["a"]:
            raise RuntimeError("consumer bug")

    with RestFake({USDM: _rest_items(tape)}) as rest, LocalWebSocketServer(handler) as server:
        stream = BinanceAggTradeStream(_settings(server.url, rest.url, [USDM], idle_reconnect_s=120), flaky_consumer,
                                       clock=clock)
        stream.start()
        try:
            assert wait_until(lambda: len(calls) == 100)
            clock.advance(121)
            assert wait_until(lambda: len(calls) == 300)
        finally:
            stream.stop(2.0)
    assert calls == [x["a"] for x in tape]
    health = stream.health()
    assert health["idle_reconnects"] == 1 and health["callback_errors"] == 1 and health["connects"] == 2
