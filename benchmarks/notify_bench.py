"""Notifier: cost of ``notify()`` on a trading thread, and delivery rate to a fast local server.

- ``notify_enqueue_us_p50/p99``: one ``notify()`` call while the sender is busy on a stalled
  request (the trading thread's cost, with no GIL hand-off in the way). Target p99 < 50 us.
- ``notify_enqueue_busy_us_p99``: the same while the sender thread is actively delivering,
  so the figure includes waiting for the GIL that the sender holds now and then.
- ``notify_delivered_per_s``: messages per second delivered to a local HTTP server that
  answers 204 at once (the Python server on the same machine is part of the cost; Discord
  itself allows about 5 requests per 2 s per webhook, so this is headroom, not a target).

``python -m benchmarks --only notify`` or ``python benchmarks/notify_bench.py``.
"""
from __future__ import annotations

import logging
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import percentile  # noqa: E402
from config.notify_model import NotifyConfig  # noqa: E402
from config.secrets import Secrets  # noqa: E402
from monitors.clock import SystemClock  # noqa: E402
from notify import events  # noqa: E402
from notify.notifier import Notifier  # noqa: E402

AT = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


class _Server:
    """A webhook stand-in: 204 at once, or hold every request while ``stalled`` is clear."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.running.set()
        self.count = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.running.wait(30)
                server.count += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/webhooks/1/bench"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.running.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _event(i: int) -> events.NotifyEvent:
    return events.trade_opened(AT, symbol="XAUUSD", side="buy", volume=0.01, entry=2000.0 + i, sl=1990.0,
                               tp=2020.0, strategy="micro_scalp", reason="bench", category="gold", ticket=i)


def _time_enqueues(notifier: Notifier, prepared: list[events.NotifyEvent]) -> list[float]:
    samples = []
    clock = time.perf_counter_ns
    for event in prepared:
        started = clock()
        notifier.notify(event)
        samples.append((clock() - started) / 1000.0)
    return samples


def bench_enqueue(calls: int = 20000) -> dict[str, float]:
    server = _Server()
    server.running.clear()  # the first request hangs: the sender waits on the network
    notifier = Notifier(Secrets(discord_default=server.url), NotifyConfig(queue_size=calls + 10), SystemClock())
    notifier.start()
    try:
        notifier.notify(_event(-1))
        time.sleep(0.2)
        prepared = [_event(i) for i in range(calls)]
        samples = _time_enqueues(notifier, prepared)
    finally:
        notifier.stop(0.1)
        server.close()
    return {"notify_enqueue_us_p50": round(statistics.median(samples), 2),
            "notify_enqueue_us_p99": round(percentile(samples, 99), 2),
            "notify_enqueue_us_max": round(max(samples), 1)}


def bench_delivery(messages: int = 1500) -> dict[str, float]:
    server = _Server()
    notifier = Notifier(Secrets(discord_default=server.url), NotifyConfig(queue_size=messages + 10),
                        SystemClock())
    try:
        prepared = [_event(i) for i in range(messages)]
        notifier.start()
        started = time.perf_counter()
        busy_samples = _time_enqueues(notifier, prepared)  # the sender is delivering meanwhile
        deadline = started + 120
        while notifier.stats()["sent"] < messages and time.perf_counter() < deadline:
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        delivered = notifier.stats()["sent"]
    finally:
        notifier.stop(1.0)
        server.close()
    return {"notify_delivered_per_s": round(delivered / elapsed, 1),
            "notify_enqueue_busy_us_p99": round(percentile(busy_samples, 99), 2)}


def run() -> dict[str, float]:
    logging.getLogger("notify").setLevel(logging.ERROR)  # the stalled run ends with messages unsent
    figures = bench_enqueue()
    figures.update(bench_delivery())
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:32} {value}")
