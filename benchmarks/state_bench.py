"""State write latency (100-trade document, with fsync) and config-edit-to-snapshot latency."""
from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import percentile
from config.loader import load_config
from config.watcher import ConfigHolder, ConfigWatcher
from monitors.base import MonitorLoop
from monitors.clock import SystemClock
from state.store import StateStore

PROJECT = Path(__file__).resolve().parent.parent


def bench_state_write(writes: int = 300) -> dict[str, float]:
    trades = {str(100000 + i): {"ticket": 100000 + i, "symbol": "XAUUSD", "side": "buy", "volume": 0.05,
                                "entry": 2350.12 + i, "sl": 2345.0, "tp": 2360.0, "strategy": "micro_scalp",
                                "client_id": f"ms-{i:08d}", "opened_at": "2026-11-21T10:00:00+00:00",
                                "meta": {"entry_delta": 12.5, "regime": "vwap_reversion"}} for i in range(100)}
    with tempfile.TemporaryDirectory() as folder:
        store = StateStore(Path(folder))
        samples = []
        for n in range(writes):
            started = time.perf_counter()
            store.save("trades", {"n": n, "open": trades})
            samples.append((time.perf_counter() - started) * 1000)
    return {"state_write_ms_p50": round(statistics.median(samples), 3),
            "state_write_ms_p99": round(percentile(samples, 99), 3)}


def bench_config_reload(edits: int = 4) -> dict[str, float]:
    """Edit a config file at a random phase of the 2 s poll and time until the new snapshot is in force."""
    with tempfile.TemporaryDirectory() as folder:
        config_dir = Path(folder)
        for path in (PROJECT / "config").glob("*.json"):
            shutil.copy(path, config_dir / path.name)
        holder = ConfigHolder(load_config(config_dir))
        swapped = threading.Event()
        holder.on_change(lambda old, new, changes: swapped.set())
        watcher = ConfigWatcher(config_dir, holder, SystemClock(), settle_seconds=0.3)
        loop = MonitorLoop(watcher, SystemClock())
        loop.start()
        samples = []
        base = json.loads((config_dir / "micro_scalp.json").read_text())
        try:
            for n in range(edits):
                time.sleep(0.37 * (n + 1) % 2.0)
                swapped.clear()
                started = time.perf_counter()
                (config_dir / "micro_scalp.json").write_text(json.dumps({**base, "interval_seconds": 6 + n}))
                if not swapped.wait(10):
                    raise RuntimeError("config edit was not applied within 10 s")
                samples.append(time.perf_counter() - started)
        finally:
            loop.stop()
            loop.join(5)
    return {"config_reload_s_mean": round(statistics.mean(samples), 3),
            "config_reload_s_max": round(max(samples), 3)}


def run() -> dict[str, float]:
    return {**bench_state_write(), **bench_config_reload()}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:28} {value}")
