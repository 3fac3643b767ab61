"""Filling an aggTrade id gap from the REST ``aggTrades?fromId=`` endpoint.

Bounded (at most ``max_pages`` requests per gap; the caller refuses gaps that need more),
rate-limited (at least ``min_interval_s`` between requests, and a 429/418 answer's
``Retry-After`` is honoured by failing fast until it has passed), and honest: the result says
whether the whole gap was fetched, so the stream can mark the tape discontinuous when not.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

import requests

from feeds.binance_frames import AggTrade, MalformedFrame, parse_rest_agg_trades
from monitors.clock import Clock, SystemClock

log = logging.getLogger(__name__)

REST_PATHS = {"spot": "/api/v3/aggTrades", "usdm": "/fapi/v1/aggTrades"}
MAX_RATE_LIMIT_WAIT_S = 5.0  # a longer Retry-After fails the backfill instead of stalling the stream


@dataclass
class BackfillResult:
    symbol: str
    from_id: int
    to_id: int
    trades: list[AggTrade] = field(default_factory=list)
    complete: bool = False
    pages: int = 0
    error: str | None = None


class AggTradeBackfill:
    """Fetches ids ``from_id..to_id`` of one symbol, page by page."""

    def __init__(self, rest_url: str, market: str, *, page_limit: int = 1000, max_pages: int = 20,
                 min_interval_s: float = 0.25, timeout_s: float = 10.0,
                 session: requests.Session | None = None, clock: Clock | None = None,
                 stop_event: threading.Event | None = None) -> None:
        if market not in REST_PATHS:
            raise ValueError(f"market must be one of {sorted(REST_PATHS)}, got {market!r}")
        self.url = rest_url.rstrip("/") + REST_PATHS[market]
        self.page_limit = page_limit
        self.max_pages = max_pages
        self.min_interval_s = min_interval_s
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.clock = clock or SystemClock()
        self.stop_event = stop_event or threading.Event()
        self._last_request_mono: float | None = None
        self._blocked_until_mono = 0.0
        self.requests = 0
        self.errors = 0

    def pages_needed(self, from_id: int, to_id: int) -> int:
        missing = to_id - from_id + 1
        return -(-missing // self.page_limit)

    def fillable(self, from_id: int, to_id: int) -> bool:
        """Whether the gap fits in the page bound (never start what cannot finish)."""
        return 0 < self.pages_needed(from_id, to_id) <= self.max_pages

    def fetch(self, symbol: str, from_id: int, to_id: int,
              cancelled: Callable[[], bool] = lambda: False) -> BackfillResult:
        result = BackfillResult(symbol, from_id, to_id)
        next_id = from_id
        while next_id <= to_id:
            if result.pages >= self.max_pages:
                result.error = f"page bound {self.max_pages} reached"
                break
            if self.stop_event.is_set() or cancelled():
                result.error = "cancelled"
                break
            if not self._wait_turn():
                result.error = "rate limited by the server (Retry-After)"
                break
            page, error = self._get_page(symbol, next_id)
            result.pages += 1
            if error is not None:
                result.error = error
                break
            if not page:
                result.error = f"server returned no trades from id {next_id}"
                break
            for trade in page:
                if trade.id < next_id:
                    continue
                if trade.id > to_id:
                    break
                result.trades.append(trade)
            last = page[-1].id
            if last < next_id:
                result.error = f"server answered fromId={next_id} with older ids"
                break
            next_id = last + 1
        result.complete = next_id > to_id
        return result

    def _wait_turn(self) -> bool:
        """Space requests ``min_interval_s`` apart; False if a Retry-After is still running long."""
        now = self.clock.monotonic()
        if self._blocked_until_mono - now > MAX_RATE_LIMIT_WAIT_S:
            return False
        wait = self._blocked_until_mono - now
        if self._last_request_mono is not None:
            wait = max(wait, self._last_request_mono + self.min_interval_s - now)
        if wait > 0 and self.clock.wait(self.stop_event, wait):
            return False
        self._last_request_mono = self.clock.monotonic()
        return True

    def _get_page(self, symbol: str, from_id: int) -> tuple[list[AggTrade], str | None]:
        self.requests += 1
        params = {"symbol": symbol, "fromId": from_id, "limit": self.page_limit}
        try:
            response = self.session.get(self.url, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            self.errors += 1
            return [], f"request failed: {type(exc).__name__}"
        if response.status_code in (418, 429):
            self.errors += 1
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            self._blocked_until_mono = self.clock.monotonic() + retry_after
            return [], f"HTTP {response.status_code}, retry after {retry_after:g} s"
        if response.status_code != 200:
            self.errors += 1
            return [], f"HTTP {response.status_code}: {response.text[:200]}"
        try:
            return parse_rest_agg_trades(symbol, response.json()), None
        except (ValueError, MalformedFrame) as exc:
            self.errors += 1
            return [], f"bad aggTrades response: {exc}"


def _retry_after_seconds(value: str | None) -> float:
    try:
        return max(1.0, float(value)) if value is not None else 60.0
    except ValueError:
        return 60.0
