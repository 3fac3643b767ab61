"""A local HTTP server on 127.0.0.1 that answers like a Discord webhook, from a script.

Each request is recorded with its arrival time and the time its answer was written
(``time.monotonic``), so a test can check that no request came before a ``retry_after`` had
passed. Replies are scripted per webhook path; unscripted requests get 204 No Content.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 204
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                      # answer this much later (slow Discord, timeouts)
    hold: threading.Event | None = None     # answer only once this is set (a stall)


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    arrived: float
    answered: float | None = None
    status: int | None = None

    @property
    def title(self) -> str:
        return self.body["embeds"][0]["title"]

    def field(self, name: str) -> str | None:
        for item in self.body["embeds"][0].get("fields", []):
            if item["name"] == name:
                return item["value"]
        return None


class FakeDiscord:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._cond = threading.Condition()
        self._holds: list[threading.Event] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsable": raw.decode("utf-8", "replace")}
                record = Received(self.path, body, arrived)
                with fake._cond:
                    fake.requests.append(record)
                    queue = fake._scripts.get(self.path)
                    reply = queue.popleft() if queue else Reply()
                    fake._cond.notify_all()
                if reply.hold is not None:
                    reply.hold.wait(30)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = b""
                if reply.body is not None:
                    payload = (json.dumps(reply.body) if isinstance(reply.body, dict) else reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if payload:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    # recorded before the headers leave: a client that has read the answer finds it
                    # recorded (after, a busy machine let the notifier count a delivery first)
                    record.answered = time.monotonic()
                    record.status = reply.status
                    self.end_headers()
                    if payload:
                        self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout test)
                with fake._cond:
                    fake._cond.notify_all()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name="fake-discord", daemon=True)
        self._thread.start()

    @staticmethod
    def path(name: str) -> str:
        return f"/api/webhooks/1000{len(name)}/tok-{name}-SECRETtoken"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.path(name)}"

    def script(self, name: str, *replies: Reply) -> None:
        with self._cond:
            self._scripts.setdefault(self.path(name), deque()).extend(replies)

    def stall(self, name: str) -> threading.Event:
        """The next request to ``name`` hangs until the returned event is set."""
        hold = threading.Event()
        self._holds.append(hold)
        self.script(name, Reply(hold=hold))
        return hold

    def received(self, name: str | None = None) -> list[Received]:
        with self._cond:
            return [r for r in self.requests if name is None or r.path == self.path(name)]

    def wait_for(self, count: int, timeout: float = 10.0, name: str | None = None,
                 answered: bool = False) -> list[Received]:
        """Wait until ``count`` requests (to ``name``) arrived (and were answered)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.requests if name is None or r.path == self.path(name)]
                if answered:
                    got = [r for r in got if r.answered is not None]
                if len(got) >= count or time.monotonic() >= deadline:
                    return got
                self._cond.wait(0.05)

    def close(self) -> None:
        for hold in self._holds:
            hold.set()
        self._server.shutdown()
        self._server.server_close()
