"""Binance aggTrade stream: one websocket for all configured symbols, exactly-once delivery.

Why a manual ``websocket.create_connection`` loop rather than ``WebSocketApp``: the loop owns
every decision the tape needs in one place and in one thread (when to reconnect and how long to
wait, the planned reconnect before Binance's 24 h cut, holding live trades while a gap is
backfilled, saving the last ids), and a short socket timeout lets it notice ``stop()``, a
finished backfill or a due state save within a fraction of a second. Pings are answered by
websocket-client itself: ``recv_data_frame`` replies to every PING with a PONG carrying the same
payload (the test server checks the echo); with ``control_frame=True`` we still see the ping,
which counts as liveness.

Delivery rules, per symbol, by aggregate id ``a``:
- ``a == last + 1``: delivered to ``on_trade``.
- ``a <= last``: a duplicate (reconnect overlap, backfill overlap): dropped and counted.
- ``a > last + 1``: a gap. If it fits the REST page bound, the backfill thread fetches the
  missing ids while live trades of that symbol are held in memory; the backfilled trades are
  delivered first, then the held ones, so ``on_trade`` sees every id once and in order. A gap
  that is too large, or a backfill that fails, is passed through: the next trade is delivered
  after the hole and the delta engine marks the tape discontinuous.
The last delivered id per symbol is saved to the state document ``binance_stream`` every few
seconds and at stop; at start it is loaded, so the first live trade after a restart opens a gap
that is backfilled from where the previous run stopped.

Threads: "binance-stream" (socket, parsing, delivery: ``on_trade`` runs here) and
"binance-backfill" (REST requests only; results are handed back through a queue so delivery
stays single-threaded).
"""
from __future__ import annotations

import logging
import queue
import random
import threading
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, Callable

import requests
import websocket
from websocket import ABNF

from feeds.binance_backfill import AggTradeBackfill, BackfillResult
from feeds.binance_frames import AggTrade, MalformedFrame, ServerEvent, parse_stream_message
from monitors.clock import Clock, SystemClock

log = logging.getLogger(__name__)

STATE_DOCUMENT = "binance_stream"
THREAD_NAME = "binance-stream"
BACKFILL_THREAD_NAME = "binance-backfill"


@dataclass(frozen=True)
class StreamSettings:
    """Everything the client needs, as plain values (tests build these with tiny delays)."""

    ws_url: str
    rest_url: str
    market: str
    symbols: tuple[str, ...]
    connect_timeout_s: float = 10.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 60.0
    stable_connection_s: float = 60.0
    planned_reconnect_s: float = 23.5 * 3600
    idle_reconnect_s: float = 120.0
    recv_poll_s: float = 0.2
    backfill_max_pages: int = 20
    backfill_page_limit: int = 1000
    backfill_min_interval_s: float = 0.25
    rest_timeout_s: float = 10.0
    max_buffered_frames: int = 100_000
    state_save_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("StreamSettings: at least one symbol is needed")
        if self.market not in ("spot", "usdm"):
            raise ValueError(f"StreamSettings: market must be 'spot' or 'usdm', got {self.market!r}")

    @classmethod
    def from_config(cls, cfg: Any) -> "StreamSettings":
        """From ``config.order_flow_model.BinanceStreamConfig``."""
        return cls(
            ws_url=cfg.ws_url, rest_url=cfg.rest_url, market=cfg.market,
            symbols=tuple(dict.fromkeys(cfg.symbols.values())),
            connect_timeout_s=cfg.connect_timeout_seconds,
            reconnect_initial_s=cfg.reconnect_initial_seconds, reconnect_max_s=cfg.reconnect_max_seconds,
            stable_connection_s=cfg.stable_connection_seconds,
            planned_reconnect_s=cfg.planned_reconnect_hours * 3600,
            idle_reconnect_s=cfg.idle_reconnect_seconds, backfill_max_pages=cfg.backfill_max_pages,
            backfill_page_limit=cfg.backfill_page_limit,
            backfill_min_interval_s=cfg.backfill_min_interval_seconds,
            rest_timeout_s=cfg.rest_timeout_seconds, max_buffered_frames=cfg.max_buffered_frames,
            state_save_interval_s=cfg.state_save_seconds)

    @property
    def stream_url(self) -> str:
        streams = "/".join(f"{s.lower()}@aggTrade" for s in self.symbols)
        return f"{self.ws_url.rstrip('/')}/stream?streams={streams}"


@dataclass
class _SymbolState:
    last_id: int | None = None
    last_trade_ms: int | None = None
    delivered: int = 0
    duplicates: int = 0
    gaps: int = 0
    gaps_filled: int = 0
    gaps_unfilled: int = 0
    backfilling: bool = False
    gap_to: int = -1
    job: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    buffer: list[AggTrade] = field(default_factory=list)


class BinanceAggTradeStream:
    """The aggTrade client. ``on_trade(trade)`` is called from the stream thread, in id order."""

    def __init__(self, settings: StreamSettings, on_trade: Callable[[AggTrade], None], *,
                 store: Any = None, clock: Clock | None = None, rng: random.Random | None = None,
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self._on_trade = on_trade
        self._store = store
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._states = {s: _SymbolState() for s in settings.symbols}
        self._backfill = AggTradeBackfill(
            settings.rest_url, settings.market, page_limit=settings.backfill_page_limit,
            max_pages=settings.backfill_max_pages, min_interval_s=settings.backfill_min_interval_s,
            timeout_s=settings.rest_timeout_s, session=session, clock=self._clock,
            stop_event=self._stop)
        self._jobs: queue.Queue[tuple[str, int, int, int, threading.Event] | None] = queue.Queue()
        self._results: queue.Queue[tuple[int, BackfillResult]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._backfill_thread: threading.Thread | None = None
        self._ws: websocket.WebSocket | None = None
        self._ws_lock = threading.Lock()
        self._dirty = False
        self._last_save_mono: float | None = None
        # health
        self.connected = False
        self.connected_since_mono: float | None = None
        self.last_message_mono: float | None = None
        self.last_lag_ms: float | None = None
        self.max_lag_ms: float = 0.0
        self.counters = dict.fromkeys(
            ("connects", "connect_failures", "disconnects", "planned_reconnects", "idle_reconnects",
             "server_shutdowns", "frames", "pings", "malformed", "unexpected_symbol",
             "callback_errors", "internal_errors", "backfill_requests", "backfill_trades", "buffer_overflows",
             "state_saves"), 0)
        self.last_error: str | None = None
        self.last_malformed: str | None = None
        self.last_backoff_s: float | None = None
        self._failures = 0
        self._load_state()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the stream was already started")
        self._backfill_thread = threading.Thread(target=self._backfill_worker, name=BACKFILL_THREAD_NAME,
                                                 daemon=True)
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._backfill_thread.start()
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop both threads and save the last ids; True if they ended within ``timeout``."""
        self._stop.set()
        self._jobs.put(None)
        with self._ws_lock:
            ws = self._ws
        if ws is not None:
            try:
                ws.abort()  # wakes a recv blocked in the stream thread
            except Exception:  # noqa: BLE001 - best effort on an already broken socket
                pass
        ended = True
        for thread, share in ((self._thread, 0.8), (self._backfill_thread, 0.2)):
            if thread is not None:
                thread.join(timeout * share)
                ended = ended and not thread.is_alive()
        if self._thread is None:
            self._save_state(force=True)
        return ended

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ main loop
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if self._cycle():
                        continue  # a healthy connection being rotated: reconnect at once
                except Exception:  # noqa: BLE001 - a bug in one cycle must not end the tape forever
                    self.counters["internal_errors"] += 1
                    self.last_error = "internal error in the stream loop (see log)"
                    log.exception("binance stream: internal error; reconnecting")
                if not self._stop.is_set():
                    self._backoff()
        finally:
            self.connected = False
            self._save_state(force=True)

    def _cycle(self) -> bool:
        """Connect, read until a reason to leave, close. True: reconnect without backoff."""
        self._service_backfills()
        ws = self._connect()
        if ws is None:
            return False
        started = self._clock.monotonic()
        try:
            reason = self._read(ws, started)
        finally:
            self._close(ws)
        if self._stop.is_set():
            return True
        lived = self._clock.monotonic() - started
        log.info("binance stream: reconnecting after %s (connection lived %.0f s)", reason, lived)
        if lived >= self.settings.stable_connection_s:
            self._failures = 0
            return reason in ("planned", "serverShutdown")
        return False

    def _connect(self) -> websocket.WebSocket | None:
        url = self.settings.stream_url
        ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
        with self._ws_lock:
            if self._stop.is_set():
                return None
            self._ws = ws
        try:
            ws.connect(url, timeout=self.settings.connect_timeout_s)
            ws.settimeout(self.settings.recv_poll_s)
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            self.counters["connect_failures"] += 1
            self.last_error = f"connect failed: {type(exc).__name__}: {exc}"[:300]
            log.warning("binance stream: %s", self.last_error)
            self._close(ws)
            return None
        self.counters["connects"] += 1
        self.connected = True
        self.connected_since_mono = self._clock.monotonic()
        log.info("binance stream connected: %s", url)
        return ws

    def _close(self, ws: websocket.WebSocket) -> None:
        self.connected = False
        with self._ws_lock:
            if self._ws is ws:
                self._ws = None
        try:
            ws.close(timeout=0.2)
        except Exception:  # noqa: BLE001 - closing a dead socket may fail in many ways
            try:
                ws.abort()
            except Exception:  # noqa: BLE001
                pass

    def _backoff(self) -> None:
        """Jittered exponential backoff, capped; reconnects are retried forever."""
        self._failures += 1
        base = min(self.settings.reconnect_max_s,
                   self.settings.reconnect_initial_s * 2 ** min(self._failures - 1, 30))
        delay = base * (0.5 + 0.5 * self._rng.random())
        self.last_backoff_s = delay
        self._clock.wait(self._stop, delay)

    def _read(self, ws: websocket.WebSocket, started: float) -> str:
        """Receive until a reason to reconnect; returns that reason."""
        settings = self.settings
        self.last_message_mono = last_message = started
        while not self._stop.is_set():
            now = self._clock.monotonic()
            if now - started >= settings.planned_reconnect_s:
                self.counters["planned_reconnects"] += 1
                return "planned"
            if now - last_message >= settings.idle_reconnect_s:
                self.counters["idle_reconnects"] += 1
                return "idle"
            if not self._results.empty():
                self._service_backfills()
            if self._dirty:
                self._save_state()
            try:
                opcode, frame = ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                continue
            except websocket.WebSocketConnectionClosedException:
                self.counters["disconnects"] += 1
                return "connection closed"
            except (websocket.WebSocketException, OSError, ValueError) as exc:
                self.counters["disconnects"] += 1
                self.last_error = f"receive failed: {type(exc).__name__}: {exc}"[:300]
                return "receive error"
            self.last_message_mono = last_message = self._clock.monotonic()
            if opcode == ABNF.OPCODE_TEXT:
                if self._on_text(frame.data):
                    return "serverShutdown"
            elif opcode == ABNF.OPCODE_PING:
                self.counters["pings"] += 1  # websocket-client already sent the PONG
            elif opcode == ABNF.OPCODE_CLOSE:
                self.counters["disconnects"] += 1
                return "closed by server"
            elif opcode == ABNF.OPCODE_BINARY:
                self.counters["malformed"] += 1
        return "stopped"

    def _on_text(self, data: bytes | str) -> bool:
        """Handle one text frame; True when the server announced a shutdown."""
        self.counters["frames"] += 1
        try:
            event = parse_stream_message(data)
        except MalformedFrame as exc:
            self.counters["malformed"] += 1
            self.last_malformed = str(exc)[:200]
            return False
        if event is None:
            return False
        if type(event) is ServerEvent:
            self.counters["server_shutdowns"] += 1
            log.info("binance stream: server announced %s", event.kind)
            return True
        if event.symbol not in self._states:
            self.counters["unexpected_symbol"] += 1
            return False
        lag = self._clock.now().timestamp() * 1000.0 - event.event_ms
        self.last_lag_ms = lag
        if lag > self.max_lag_ms:
            self.max_lag_ms = lag
        self._process(event)
        return False

    # ------------------------------------------------------------------ exactly-once delivery
    def _process(self, trade: AggTrade, allow_gap: bool = False) -> None:
        state = self._states[trade.symbol]
        if state.backfilling:
            if len(state.buffer) < self.settings.max_buffered_frames:
                state.buffer.append(trade)
                return
            self.counters["buffer_overflows"] += 1
            log.warning("binance stream: %s backfill abandoned, %d live trades waiting", trade.symbol,
                        len(state.buffer))
            self._release(trade.symbol, state, filled=False)
            self._process(trade)
            return
        last = state.last_id
        if last is None or trade.id == last + 1 or (allow_gap and trade.id > last):
            self._deliver(state, trade)
        elif trade.id <= last:
            state.duplicates += 1
        else:
            self._gap(state, trade, last + 1, trade.id - 1)

    def _gap(self, state: _SymbolState, trade: AggTrade, from_id: int, to_id: int) -> None:
        state.gaps += 1
        if self._backfill.fillable(from_id, to_id):
            state.backfilling = True
            state.gap_to = to_id
            state.job += 1
            state.cancel = threading.Event()
            state.buffer.append(trade)
            self.counters["backfill_requests"] += 1
            self._jobs.put((trade.symbol, state.job, from_id, to_id, state.cancel))
            log.info("binance stream: %s ids %d..%d missing, backfilling", trade.symbol, from_id, to_id)
            return
        state.gaps_unfilled += 1
        log.warning("binance stream: %s ids %d..%d missing (%d pages > bound %d): tape discontinuous",
                    trade.symbol, from_id, to_id, self._backfill.pages_needed(from_id, to_id),
                    self._backfill.max_pages)
        self._deliver(state, trade)

    def _deliver(self, state: _SymbolState, trade: AggTrade) -> None:
        state.last_id = trade.id
        state.last_trade_ms = trade.time_ms
        state.delivered += 1
        self._dirty = True
        try:
            self._on_trade(trade)
        except Exception:  # noqa: BLE001 - a consumer bug must not stop the tape
            self.counters["callback_errors"] += 1
            if self.counters["callback_errors"] <= 5:
                log.exception("binance stream: on_trade failed for %s id %d", trade.symbol, trade.id)

    def _release(self, symbol: str, state: _SymbolState, filled: bool) -> None:
        """End a backfill: deliver the held live trades (through the normal rules)."""
        state.cancel.set()
        state.backfilling = False
        if filled:
            state.gaps_filled += 1
        else:
            state.gaps_unfilled += 1
        held, state.buffer = state.buffer, []
        for i, trade in enumerate(held):
            self._process(trade, allow_gap=(i == 0 and not filled))

    def _service_backfills(self) -> None:
        while True:
            try:
                job, result = self._results.get_nowait()
            except queue.Empty:
                return
            state = self._states[result.symbol]
            if not state.backfilling or job != state.job:
                continue  # abandoned meanwhile; its trades are older than what was delivered
            for trade in result.trades:
                if trade.id > state.gap_to:
                    break
                if state.last_id is None or trade.id > state.last_id:
                    self._deliver(state, trade)
                    self.counters["backfill_trades"] += 1
            if not result.complete:
                self.last_error = f"backfill {result.symbol} {result.from_id}..{result.to_id}: {result.error}"
                log.warning("binance stream: %s", self.last_error)
            self._release(result.symbol, state, filled=result.complete)

    def _backfill_worker(self) -> None:
        while not self._stop.is_set():
            job = self._jobs.get()
            if job is None:
                return
            symbol, job_id, from_id, to_id, cancel = job
            try:
                result = self._backfill.fetch(symbol, from_id, to_id, cancelled=cancel.is_set)
            except Exception as exc:  # noqa: BLE001 - report as a failed backfill, keep serving
                log.exception("binance backfill crashed")
                result = BackfillResult(symbol, from_id, to_id, error=f"crashed: {type(exc).__name__}")
            self._results.put((job_id, result))

    # ------------------------------------------------------------------ persistence
    def _load_state(self) -> None:
        if self._store is None:
            return
        document = self._store.load(STATE_DOCUMENT, {})
        if document.get("market") != self.settings.market:
            if document:
                log.warning("binance stream: saved ids are for market %r, not %r; starting fresh",
                            document.get("market"), self.settings.market)
            return
        for symbol, last_id in (document.get("last_ids") or {}).items():
            if symbol in self._states and type(last_id) is int and last_id >= 0:
                self._states[symbol].last_id = last_id

    def _save_state(self, force: bool = False) -> None:
        if self._store is None or not (self._dirty or force):
            return
        now = self._clock.monotonic()
        if (not force and self._last_save_mono is not None
                and now - self._last_save_mono < self.settings.state_save_interval_s):
            return
        document = {
            "market": self.settings.market,
            "last_ids": {s: st.last_id for s, st in self._states.items() if st.last_id is not None},
            "last_trade_ms": {s: st.last_trade_ms for s, st in self._states.items()
                              if st.last_trade_ms is not None},
            "saved_at": self._clock.now().astimezone(timezone.utc).isoformat(),
        }
        try:
            self._store.save(STATE_DOCUMENT, document)
        except OSError as exc:
            self.last_error = f"saving {STATE_DOCUMENT} failed: {exc}"[:300]
            log.error("binance stream: %s", self.last_error)
            return
        self._dirty = False
        self._last_save_mono = now
        self.counters["state_saves"] += 1

    # ------------------------------------------------------------------ health
    def last_ids(self) -> dict[str, int | None]:
        return {s: st.last_id for s, st in self._states.items()}

    def health(self) -> dict[str, Any]:
        """For health.json: connection, stream age and lag, counters, per-symbol positions."""
        now = self._clock.monotonic()
        since = self.connected_since_mono
        last_msg = self.last_message_mono
        return {
            "url": self.settings.stream_url,
            "alive": self.is_alive(),
            "connected": self.connected,
            "connection_age_s": round(now - since, 3) if self.connected and since is not None else None,
            "stream_age_s": round(now - last_msg, 3) if last_msg is not None else None,
            "lag_ms": round(self.last_lag_ms, 1) if self.last_lag_ms is not None else None,
            "max_lag_ms": round(self.max_lag_ms, 1),
            "last_backoff_s": self.last_backoff_s,
            "last_error": self.last_error,
            "last_malformed": self.last_malformed,
            **self.counters,
            "symbols": {
                s: {"last_id": st.last_id, "last_trade_ms": st.last_trade_ms, "delivered": st.delivered,
                    "duplicates": st.duplicates, "gaps": st.gaps, "gaps_filled": st.gaps_filled,
                    "gaps_unfilled": st.gaps_unfilled, "backfilling": st.backfilling,
                    "held": len(st.buffer)}
                for s, st in list(self._states.items())},
            "checked_at": self._clock.now().astimezone(timezone.utc).isoformat(),
        }
