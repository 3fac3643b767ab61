"""The Binance aggTrade client under a randomized fault schedule (issue 8 item 5).

The real tapes (data/trades: BTCUSDT spot and the USD-M quarterly contract) are replayed by the
local websocket server (tests/order_flow/ws_server.py) as a combined stream, and the REST
backfill is served by tests/order_flow/rest_fake.py. Each connection draws its faults from the
seed: a reconnect gap (trades the market made while the client was away), an overlap
(duplicates), a gap inside the stream, malformed frames, a slow sender; it ends by an abrupt
drop, a close frame, a ``serverShutdown`` event or silence (the client's idle reconnect must
notice). Before a connection the REST fake may answer 429 (Retry-After), 418 or 5xx, or stall.
The last connection is healthy and sends the rest of the tape.

What must hold (the delivery contract of feeds/binance.py): per symbol, every id delivered at
most once and in increasing order; every id never delivered lies in a gap the client reported
unfilled (``gaps_unfilled``) and is marked in the order-flow engine (its ``gaps``), so no delta
is computed across a silent hole; with no REST fault armed, every trade is delivered; and the
client catches up with the tape's last trade.

CI: 8 faulty connections (a few seconds). Soak: 40.
"""
from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

from engines.order_flow import OrderFlowEngine
from feeds.binance import BinanceAggTradeStream
from feeds.binance_flow import SharedOrderFlow
from monitors.clock import SystemClock
from tests.chaos.report import ChaosReport
from tests.order_flow.conftest import wait_until
from tests.order_flow.rest_fake import RestFake
from tests.order_flow.test_binance_stream import (SPOT, USDM, Collector, _frame, _interleave, _rest_items,
                                                  _settings, _tape)
from tests.order_flow.ws_server import LocalWebSocketServer

ENDINGS = ("drop", "close", "shutdown", "silence")
REST_FAULTS = ("429", "418", "500", "503", "stall")


def plan_connection(rng: random.Random, average: int) -> dict:
    """The faults of one connection (sizes in frames of the interleaved two-symbol stream;
    ``average`` frames per connection, so the tape lasts through every planned connection)."""
    start = rng.choice(("continue", "continue", "gap", "overlap"))
    return {
        "length": rng.randint(average // 2, average * 3 // 2),
        "reconnect_gap": rng.randint(1, min(1200, average // 2)) if start == "gap" else 0,
        "overlap": rng.randint(1, 400) if start == "overlap" else 0,
        "inner_gap": rng.choice((None, None, (rng.random(), rng.randint(1, min(900, average // 3))))),
        "malformed": rng.random() < 0.3,
        "slow": rng.random() < 0.3,
        "ending": rng.choice(ENDINGS),
        "rest_fault": rng.choice((None, None, None) + REST_FAULTS),
    }


def missing_runs(expected: list[int], delivered: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs (first id, last id) of ``expected`` ids absent from ``delivered``,
    between the first and the last id delivered (a fresh client with no saved position starts
    wherever the stream is: what came before its first trade is no gap)."""
    got = set(delivered)
    first, last = (delivered[0], delivered[-1]) if delivered else (0, -1)
    runs: list[tuple[int, int]] = []
    start = None
    previous = None
    for trade_id in expected:
        if trade_id < first:
            continue
        if trade_id > last:
            break
        if trade_id in got:
            if start is not None:
                runs.append((start, previous))
                start = None
        elif start is None:
            start = trade_id
        previous = trade_id
    if start is not None:
        runs.append((start, previous))
    return runs


def test_binance_stream_under_randomized_gaps_disconnects_and_rest_faults(
        tmp_path: Path, spot_trades_path, usdm_trades_path, chaos_soak: bool, chaos_seed: int) -> None:
    rng = random.Random(chaos_seed)
    tapes = {SPOT: _tape(spot_trades_path, SPOT), USDM: _tape(usdm_trades_path, USDM)}
    frames = _interleave(tapes[SPOT], tapes[USDM])
    texts = [_frame(x) for x in frames]
    n = len(texts)
    faulty = 40 if chaos_soak else 8
    plans = [plan_connection(rng, n * 2 // (faulty * 3)) for _ in range(faulty)]
    report = ChaosReport("Binance aggTrade stream (ws + REST fakes)" + (" (soak)" if chaos_soak else ""), chaos_seed)
    injected: list[str] = []
    cursor = {"pos": 0, "served": 0}
    lock = threading.Lock()
    rest_holder: dict = {}

    def note(kind: str) -> None:
        with lock:
            injected.append(kind)

    def send(conn, chunk: list[str], slow: bool) -> bool:
        for i in range(0, len(chunk), 250):
            if not conn.send_many(chunk[i:i + 250]):
                return False
            if slow:
                time.sleep(0.01)
        return True

    def arm_rest(kind: str | None) -> None:
        rest = rest_holder["rest"]
        if kind is None or rest.fail_next or not rest.gate.is_set():
            return  # one REST fault at a time: the next backfill meets it, later ones may succeed
        note(f"rest {kind}")
        if kind == "429":
            rest.fail_next.append((429, {"Retry-After": "1"}))
        elif kind == "418":
            rest.fail_next.append((418, {"Retry-After": "1"}))
        elif kind in ("500", "503"):
            rest.fail_next.append((int(kind), {}))
        elif kind == "stall":  # slower than the client's 2 s REST timeout
            rest.gate.clear()
            threading.Timer(2.5, rest.gate.set).start()

    def handler(conn, index: int) -> None:
        with lock:
            cursor["served"] += 1
        if index >= faulty:  # healthy from now on: the rest of the tape, then stay open
            with lock:
                start = cursor["pos"]
                cursor["pos"] = n
            send(conn, texts[start:], slow=False)
            conn.eof.wait(30)
            return
        plan = plans[index]
        arm_rest(plan["rest_fault"])
        with lock:
            start = cursor["pos"] + plan["reconnect_gap"]
            if plan["reconnect_gap"]:
                injected.append("ws reconnect gap")
            if plan["overlap"]:
                start = max(0, start - plan["overlap"])
                injected.append("ws duplicates")
            end = min(n, start + plan["length"])
            cursor["pos"] = max(cursor["pos"], end)
        chunk = texts[start:end]
        if plan["inner_gap"] and len(chunk) > 10:
            where, size = plan["inner_gap"]
            cut = int(where * len(chunk))
            chunk = chunk[:cut] + chunk[cut + size:]
            note("ws gap in the stream")
        if plan["malformed"]:
            chunk = chunk[: len(chunk) // 2] + ["{not json", json.dumps({"stream": "x", "data": {"e": "aggTrade"}})] \
                + chunk[len(chunk) // 2:]
            note("ws malformed frames")
        if plan["slow"]:
            note("ws slow sender")
        send(conn, chunk, plan["slow"])
        ending = plan["ending"]
        note(f"ws end: {ending}")
        if ending == "drop":
            time.sleep(0.02)
            conn.drop()
        elif ending == "close":
            conn.close()
        elif ending == "shutdown":
            conn.send_text(json.dumps({"e": "serverShutdown", "E": 1}))
            conn.eof.wait(5.0)
            conn.drop()
        else:  # silence: the client must notice the idle stream and reconnect
            conn.eof.wait(5.0)
            conn.drop()

    survived = False
    try:
        with RestFake({SPOT: _rest_items(tapes[SPOT]), USDM: _rest_items(tapes[USDM])}) as rest, \
                LocalWebSocketServer(handler) as server:
            rest_holder["rest"] = rest
            flow = SharedOrderFlow(OrderFlowEngine())
            got = Collector(flow)
            settings = _settings(server.url, rest.url, [SPOT, USDM], idle_reconnect_s=0.4)
            # real time: the idle-stream reconnect is measured on the client's clock
            stream = BinanceAggTradeStream(settings, got, clock=SystemClock(), rng=random.Random(chaos_seed))
            stream.start()
            last = {s: tapes[s][-1]["a"] for s in (SPOT, USDM)}
            try:
                caught_up = wait_until(lambda: cursor["served"] > faulty and all(
                    (stream.health()["symbols"][s]["last_id"] or 0) >= last[s] for s in (SPOT, USDM)), 60.0)
                time.sleep(0.1)  # a late duplicate would arrive now
            finally:
                assert stream.stop(3.0)
            health = stream.health()
        assert caught_up, health
        rest_armed = any(k.startswith("rest ") for k in injected)
        details = {}
        for symbol in (SPOT, USDM):
            ids = got.ids(symbol)
            expected = [x["a"] for x in tapes[symbol]]
            assert all(b > a for a, b in zip(ids, ids[1:])), f"{symbol}: an id delivered twice or out of order"
            assert set(ids) <= set(expected)
            runs = missing_runs(expected, ids)
            sym = health["symbols"][symbol]
            assert len(runs) <= sym["gaps_unfilled"], (symbol, runs, sym)
            assert flow.stats(symbol)["gaps"] >= len(runs), "a hole in the tape is not marked in the engine"
            if not rest_armed:
                assert runs == [] and ids == [i for i in expected if i >= ids[0]], \
                    f"{symbol}: trades lost with a healthy REST backfill"
            details[symbol] = {"delivered": len(ids), "of": len(expected), "holes": len(runs),
                               "gaps": sym["gaps"], "gaps_filled": sym["gaps_filled"],
                               "gaps_unfilled": sym["gaps_unfilled"], "duplicates_dropped": sym["duplicates"]}
        assert health["connects"] >= faulty + 1
        survived = True
        report.figures.update({"connections": health["connects"], "malformed": health["malformed"],
                               "server_shutdowns": health["server_shutdowns"],
                               "backfill requests": health["backfill_requests"],
                               "backfilled trades": health["backfill_trades"], **details})
    finally:
        from collections import Counter
        report.record("binance", Counter(injected), survived=survived)
        report.publish(tmp_path)
