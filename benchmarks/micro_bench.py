"""Micro-scalp engine latency: one ``evaluate`` per symbol per step with 200 M1 bars.

    python benchmarks/micro_bench.py

- ``micro_engine_ms_p50`` / ``micro_engine_ms_p99``: wall time of one evaluation (target < 2 ms),
  over consecutive 200-bar windows of the real XAUUSD and EURUSD M1 bars in data/bars, with the
  shipped per-symbol config, the regime state threaded through as the monitor does, a quote
  derived from the last close, and spread statistics present (so every layer can run).
- ``micro_engine_cpu_ms_p99``: the same p99 in thread CPU time: on a loaded machine the wall-clock
  p99 mostly measures preemption by other processes, the CPU figure the engine itself.
"""
from __future__ import annotations

import gc
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config.micro_scalp_model import MicroScalpConfig  # noqa: E402
from engines.micro_scalp import RegimeState, evaluate  # noqa: E402
from engines.micro_scalp_features import Bars  # noqa: E402
from engines.spread import SpreadStats  # noqa: E402
from feeds.readers import read_bars  # noqa: E402

WINDOW = 200
FILES = {  # symbol: (file name, spread in price)
    "XAUUSD": ("XAUUSD_M1_2023-04-16_2023-05-01.csv", 0.20),
    "EURUSD": ("EURUSD_M1_2015-02-01_2015-02-13_EST_histdata.csv", 0.00010),
}
BAR_DIRS = (ROOT / "data" / "bars", ROOT.parent / "shared" / "data" / "bars")


def _path(name: str) -> Path:
    for folder in BAR_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} not found in {[str(d) for d in BAR_DIRS]}")


def bench_engine(steps_per_symbol: int = 3000) -> dict[str, float]:
    config = MicroScalpConfig.model_validate(json.loads((ROOT / "config" / "micro_scalp.json").read_text()))
    timings: list[float] = []
    cpu: list[float] = []
    per_symbol: dict[str, float] = {}
    ideas = 0
    for symbol, (name, spread) in FILES.items():
        params = config.for_symbol(symbol)
        bars = Bars.from_frame(read_bars(_path(name)))
        stats = SpreadStats(spread, spread, spread, 100)
        state = RegimeState()
        mine: list[float] = []
        last = min(len(bars), WINDOW + steps_per_symbol)
        windows = [Bars(*(a[end - WINDOW:end] for a in (bars.time_s, bars.open, bars.high, bars.low, bars.close,
                                                          bars.volume))) for end in range(WINDOW, last + 1)]
        gc.collect()
        for window in windows:
            close = float(window.close[-1])
            now = datetime.fromtimestamp(int(window.time_s[-1]) + 60, tz=timezone.utc)
            start, cpu_start = time.perf_counter(), time.thread_time()
            decision = evaluate(window, (close - spread / 2, close + spread / 2), stats, None, params, symbol,
                                now, state)
            mine.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - cpu_start)
            state = decision.regime_state
            ideas += decision.idea is not None
        per_symbol[f"micro_engine_ms_p50_{symbol}"] = float(np.percentile(mine, 50) * 1000)
        timings += mine
    assert ideas > 0  # the loop really exercised the full path
    ms = np.asarray(timings) * 1000
    cpu_ms = np.asarray(cpu) * 1000
    return {"micro_engine_ms_p50": float(np.percentile(ms, 50)), "micro_engine_ms_p99": float(np.percentile(ms, 99)),
            "micro_engine_cpu_ms_p99": float(np.percentile(cpu_ms, 99)),
            **per_symbol, "micro_engine_evaluations": float(len(ms))}


def run() -> dict[str, float]:
    return bench_engine()


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}")
