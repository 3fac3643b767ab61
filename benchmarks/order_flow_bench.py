"""Order-flow benchmarks: frame throughput, metrics latency, ring memory.

    python benchmarks/order_flow_bench.py

- ``aggtrade_frames_per_s``: raw combined-stream aggTrade JSON frames through
  ``parse_stream_message`` and ``OrderFlowEngine.add_trade`` on one core (target >= 100,000).
  The frames are the real BTCUSDT spot tape in data/trades (replayed several times with shifted
  ids and times so the run is long enough), formatted as Binance formats them.
- ``flow_metrics_ms``: one ``get_metrics`` call for a 300 s window over a tape of 50 trades/s
  (target < 1 ms).
- ``flow_ring_24h_5sym_mb``: memory traced (tracemalloc) for 5 symbols whose rings hold 24 h of
  one-second buckets, filled, with their M1/M5 bars (target < 50 MB).
- ``tick_proxy_ticks_per_s``: the real EURUSD ticks in data/ticks through the tick proxy
  (``TickFlowProxy.add_frame``: tick rule + delta engine) in batches of 50, as 5 s polls deliver them.
- ``decision_ms``: one entry decision's computation: 200 real M1 bars aligned with the real tape's
  flow bars, the five detectors and the classifier (``signal_inputs`` + ``default_signals`` +
  ``classify``), i.e. the monitor's per-symbol CPU cost apart from broker calls.
"""
from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engines.order_flow import OrderFlowEngine  # noqa: E402
from feeds.binance_frames import parse_stream_message  # noqa: E402
from feeds.trade_readers import read_trades  # noqa: E402

TRADES_FILE_NAME = "binance_spot_BTCUSDT_trades_2024-08-08T2354_0005.csv"
TRADE_DIRS = (ROOT / "data" / "trades", ROOT.parent / "shared" / "data" / "trades")


def _trades_path() -> Path:
    for folder in TRADE_DIRS:
        path = folder / TRADES_FILE_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"{TRADES_FILE_NAME} not found in {[str(d) for d in TRADE_DIRS]}")


def _frames(rounds: int) -> list[str]:
    """Combined-stream frames exactly as Binance spot formats them (8-decimal strings)."""
    tape = read_trades(_trades_path())
    ids, prices, qtys = tape.ids.tolist(), tape.price.tolist(), tape.qty.tolist()
    times, makers = tape.time_ms.tolist(), tape.is_buyer_maker.tolist()
    id_span = ids[-1] - ids[0] + 1
    time_span = times[-1] - times[0] + 1000
    frames = []
    for r in range(rounds):
        for a, p, q, t, m in zip(ids, prices, qtys, times, makers):
            a += r * id_span
            t += r * time_span
            frames.append(
                '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":%d,"s":"BTCUSDT","a":%d,'
                '"p":"%.8f","q":"%.8f","f":%d,"l":%d,"T":%d,"m":%s,"M":true}}'
                % (t + 1, a, p, q, a, a, t, "true" if m else "false"))
    return frames


def bench_frames(rounds: int = 10) -> float:
    frames = _frames(rounds)
    engine = OrderFlowEngine()
    add = engine.add_trade
    parse = parse_stream_message
    gc.collect()
    start = time.perf_counter()
    for text in frames:
        t = parse(text)
        add(t.symbol, t.id, t.price, t.qty, t.time_ms, t.is_buyer_maker)
    elapsed = time.perf_counter() - start
    stats = engine.stats("BTCUSDT")
    assert stats["accepted"] == len(frames), stats  # every frame really went through
    return len(frames) / elapsed


def bench_metrics(trades_per_s: int = 50, seconds: int = 900, calls: int = 2000) -> float:
    engine = OrderFlowEngine(windows_seconds=(30, 60, 300, 900))
    t0 = 1_723_161_255_000
    trade_id = 0
    for s in range(seconds):
        for k in range(trades_per_s):
            trade_id += 1
            engine.add_trade("BTCUSDT", trade_id, 60_000.0 + (k % 7), 0.01 + k * 1e-4,
                             t0 + s * 1000 + k * (1000 // trades_per_s), k % 3 == 0)
    now = t0 + seconds * 1000 - 1
    start = time.perf_counter()
    for _ in range(calls):
        m = engine.get_metrics("BTCUSDT", 300, now)
    elapsed = time.perf_counter() - start
    assert m is not None and m.trades == 300 * trades_per_s
    return elapsed / calls * 1000.0


def bench_ring_memory(symbols: int = 5, seconds: int = 86_400) -> float:
    gc.collect()
    tracemalloc.start()
    engine = OrderFlowEngine(windows_seconds=(30, 60, 300, 900, seconds), bar_seconds=(60, 300),
                             bar_history=1440)
    t0 = 1_723_161_255_000
    for i in range(symbols):
        symbol = f"SYM{i}USDT"
        book = engine.book(symbol)
        for s in range(seconds + 1):  # one trade per second fills every bucket of the ring
            book.add(s + 1, 100.0 + (s % 10), 1.0, t0 + s * 1000, s % 2 == 0)
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current / 1e6


def _data_file(kind: str, name: str) -> Path:
    for folder in (ROOT / "data" / kind, ROOT.parent / "shared" / "data" / kind):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} not found under data/{kind}")


def bench_tick_proxy(batch: int = 50, rounds: int = 5) -> float:
    from engines.tick_proxy import TickFlowProxy, frame_columns
    from feeds.readers import read_ticks
    ticks = read_ticks(_data_file("ticks", "EURUSD_ticks_2020-01-01_EST_histdata.csv"))
    cols = frame_columns(ticks)
    span = int(cols["time_ms"][-1] - cols["time_ms"][0]) + 1000
    best = 0.0
    for r in range(rounds):
        proxy = TickFlowProxy()
        n = len(ticks)
        start = time.perf_counter()
        for i in range(0, n, batch):
            proxy.add_ticks("EURUSD", cols["time_ms"][i:i + batch] + r * span, cols["bid"][i:i + batch],
                            cols["ask"][i:i + batch])
        elapsed = time.perf_counter() - start
        assert proxy.counters("EURUSD").ticks == n
        best = max(best, n / elapsed)
    return best


def bench_decision(calls: int = 200) -> float:
    from engines.bars import BarSeries
    from engines.order_flow_signals import SignalParams, classify
    from feeds.readers import read_bars
    from monitors.order_flow_rules import default_signals, signal_inputs
    tape = read_trades(_trades_path())
    frame = read_bars(_data_file("bars", "BTCPERP_M1_2022-01-16_2022-01-29.csv")).iloc[:200]
    bars = BarSeries.from_frame(frame)  # what the bar feed hands the monitor
    # put the tape's ~11 minutes on the last bars so alignment and every detector do real work
    offset = int(bars.time_s[-12]) * 1000 - int(tape.time_ms[0]) // 60_000 * 60_000
    engine = OrderFlowEngine()
    engine.add_trades("BTCUSDT", tape.ids, tape.price, tape.qty, tape.time_ms + offset, tape.is_buyer_maker)
    now_ms = int(tape.time_ms[-1]) + offset
    params = SignalParams()
    flow_bars = engine.bars("BTCUSDT", 60, include_forming=False)
    window = engine.get_metrics("BTCUSDT", params.absorption_window_seconds, now_ms)
    price = float(bars.close[-1])
    start = time.perf_counter()
    for _ in range(calls):
        inputs = signal_inputs(bars, flow_bars, window, price, params)
        verdict = classify(default_signals(inputs, params), params.weights, params.threshold)
    elapsed = time.perf_counter() - start
    assert len(bars) == 200 and 0.0 <= verdict.probability <= 1.0
    return elapsed / calls * 1000.0


def run() -> dict[str, float]:
    return {
        "aggtrade_frames_per_s": round(bench_frames(), 0),
        "flow_metrics_ms": round(bench_metrics(), 4),
        "flow_ring_24h_5sym_mb": round(bench_ring_memory(), 2),
        "tick_proxy_ticks_per_s": round(bench_tick_proxy(), 0),
        "decision_ms": round(bench_decision(), 3),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
