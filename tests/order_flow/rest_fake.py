"""A Binance REST fake on 127.0.0.1 serving ``aggTrades?symbol=&fromId=&limit=`` from real tapes."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class RestFake:
    """``tapes``: symbol -> list of aggTrade REST items ({a,p,q,f,l,T,m,M}) sorted by id.

    ``fail_next`` holds (status, headers) answers returned before normal service resumes.
    """

    def __init__(self, tapes: dict[str, list[dict]], path: str = "/api/v3/aggTrades") -> None:
        self.tapes = tapes
        self.path = path
        self.requests: list[dict[str, str]] = []
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self.gate = threading.Event()  # cleared by a test to hold answers (a slow server)
        self.gate.set()
        self._index = {s: {item["a"]: i for i, item in enumerate(items)} for s, items in tapes.items()}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append({"path": url.path, **query})
                fake.gate.wait(10.0)
                if fake.fail_next:
                    status, headers = fake.fail_next.pop(0)
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(b'{"code":-1003,"msg":"Too many requests"}')
                    return
                if url.path != fake.path or "symbol" not in query or "fromId" not in query:
                    self.send_response(400)
                    self.end_headers()
                    return
                symbol, from_id = query["symbol"], int(query["fromId"])
                limit = min(int(query.get("limit", 500)), 1000)
                items = fake.tapes.get(symbol, [])
                index = fake._index.get(symbol, {})
                start = index.get(from_id)
                if start is None:  # first id at or after from_id
                    start = next((i for i, it in enumerate(items) if it["a"] >= from_id), len(items))
                body = json.dumps(items[start:start + limit]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="rest-fake")

    def __enter__(self) -> "RestFake":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
