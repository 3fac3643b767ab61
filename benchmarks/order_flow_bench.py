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


def run() -> dict[str, float]:
    return {
        "aggtrade_frames_per_s": round(bench_frames(), 0),
        "flow_metrics_ms": round(bench_metrics(), 4),
        "flow_ring_24h_5sym_mb": round(bench_ring_memory(), 2),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
