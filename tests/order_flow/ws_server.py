"""A small RFC 6455 websocket server on 127.0.0.1 for tests (standard library only).

Enough of the protocol to stand in for Binance: the opening handshake, unmasked server frames
(text, ping, close), masked client frames (pong, close), abrupt drops. Each accepted connection
runs ``handler(conn, index)`` in its own thread; ``index`` counts connections from 0.
"""
from __future__ import annotations

import base64
import hashlib
import queue
import socket
import struct
import threading
from typing import Callable

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def encode_frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


class WSConnection:
    """One accepted client. Frames the client sends are collected by a reader thread."""

    def __init__(self, sock: socket.socket, path: str, index: int) -> None:
        self.sock = sock
        self.path = path
        self.index = index
        self.received: "queue.Queue[tuple[int, bytes]]" = queue.Queue()
        self.closed_by_client = threading.Event()
        self.eof = threading.Event()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name=f"ws-test-read-{index}")
        self._reader.start()

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("eof")
            data += chunk
        return data

    def _read_loop(self) -> None:
        try:
            while True:
                b1, b2 = self._recv_exact(2)
                opcode = b1 & 0x0F
                n = b2 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._recv_exact(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._recv_exact(8))[0]
                mask = self._recv_exact(4) if b2 & 0x80 else b"\0\0\0\0"
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._recv_exact(n)))
                self.received.put((opcode, payload))
                if opcode == OP_CLOSE:
                    self.closed_by_client.set()
        except (OSError, ConnectionError):
            pass
        finally:
            self.eof.set()

    def send(self, opcode: int, payload: bytes) -> bool:
        try:
            with self._send_lock:
                self.sock.sendall(encode_frame(opcode, payload))
            return True
        except OSError:
            return False

    def send_text(self, text: str) -> bool:
        return self.send(OP_TEXT, text.encode("utf-8"))

    def send_many(self, texts: list[str]) -> bool:
        """Send several text frames in one write (fast replay)."""
        blob = b"".join(encode_frame(OP_TEXT, t.encode("utf-8")) for t in texts)
        try:
            with self._send_lock:
                self.sock.sendall(blob)
            return True
        except OSError:
            return False

    def ping(self, payload: bytes) -> bool:
        return self.send(OP_PING, payload)

    def wait_for(self, opcode: int, timeout: float) -> bytes | None:
        """The payload of the next client frame with ``opcode`` (others are skipped)."""
        try:
            while True:
                got, payload = self.received.get(timeout=timeout)
                if got == opcode:
                    return payload
        except queue.Empty:
            return None

    def close(self, code: int = 1000) -> None:
        self.send(OP_CLOSE, struct.pack("!H", code))
        self.drop()

    def drop(self) -> None:
        """Abrupt disconnect, as when a network path dies."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class LocalWebSocketServer:
    def __init__(self, handler: Callable[[WSConnection, int], None]) -> None:
        self.handler = handler
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections: list[WSConnection] = []
        self.paths: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="ws-test-accept")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> "LocalWebSocketServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        try:
            self.listener.close()
        except OSError:
            pass
        for conn in self.connections:
            conn.drop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True, name="ws-test-conn").start()

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                return
            request += chunk
        lines = request.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest())
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        conn = WSConnection(sock, path, len(self.connections))
        self.connections.append(conn)
        self.paths.append(path)
        try:
            self.handler(conn, conn.index)
        except Exception:  # noqa: BLE001 - a test handler failing shows up as missing data
            import traceback
            traceback.print_exc()
