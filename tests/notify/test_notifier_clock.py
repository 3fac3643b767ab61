"""Rate-limit gates, backoff and burst windows on a FakeClock: long waits without sleeping.

A scripted session stands in for HTTP and records the (fake) monotonic time of each request,
so "no request before retry_after has passed" is checked exactly, for waits of minutes.
"""
from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from config.notify_model import NotifyConfig
from config.secrets import Secrets
from monitors.clock import FakeClock
from notify import events
from notify.notifier import Notifier
from tests.notify.conftest import AT, eventually, trade

URL = "https://discord.com/api/webhooks/1/SECRETtoken"
TIMEOUT = object()


class ScriptedSession:
    """``post`` answers from a script and records when (on the fake clock) it was called."""

    def __init__(self, clock: FakeClock, *replies: Any) -> None:
        self.clock = clock
        self.replies = deque(replies)
        self.calls: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def post(self, url: str, json: dict[str, Any] | None = None, timeout: float | None = None):
        with self._lock:
            self.calls.append((self.clock.monotonic(), json or {}))
            reply = self.replies.popleft() if self.replies else (204, None, {})
        if reply is TIMEOUT:
            raise requests.ReadTimeout("HTTPSConnectionPool: read timed out")
        status, body, headers = reply
        return response(status, body, headers)

    def close(self) -> None:
        pass

    def gaps(self) -> list[float]:
        times = [t for t, _ in self.calls]
        return [round(b - a, 6) for a, b in zip(times, times[1:])]


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
    result = requests.Response()
    result.status_code = status
    result._content = json.dumps(body).encode() if body is not None else b""
    result.headers = CaseInsensitiveDict(headers or {})
    return result


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def run(clock):
    made = []

    def start(session: ScriptedSession, **config: Any) -> Notifier:
        notifier = Notifier(Secrets(discord_default=URL), NotifyConfig(**config), clock, session=session)
        notifier.start()
        made.append(notifier)
        return notifier

    yield start
    for notifier in made:
        notifier.stop(0.5)


def test_a_long_retry_after_is_waited_on_the_clock_not_slept(clock, run):
    session = ScriptedSession(clock, (429, {"retry_after": 30.0, "global": False}, {"Retry-After": "12"}))
    notifier = run(session)
    notifier.notify(trade(1))
    assert eventually(lambda: notifier.stats()["sent"] == 1)
    assert len(session.calls) == 2
    assert session.gaps()[0] >= 30.0
    assert 30.0 in clock.waits


@pytest.mark.parametrize("retry_after, expected", [
    (5000, 5.0),          # an hour or more: it was milliseconds
    (2_000_000, 300.0),   # 2000 s after the ms fix: capped at max_retry_after_seconds
    (-3, 1.0),            # nonsense: the default wait for a 429 that names none
])
def test_absurd_retry_after_values_are_clamped(clock, run, retry_after, expected):
    session = ScriptedSession(clock, (429, {"retry_after": retry_after}, {}))
    notifier = run(session)
    notifier.notify(trade(1))
    assert eventually(lambda: notifier.stats()["sent"] == 1)
    assert session.gaps()[0] == pytest.approx(expected)


def test_a_pre_emptive_wait_when_the_bucket_is_empty(clock, run):
    session = ScriptedSession(clock, (204, None, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "2.5"}))
    notifier = run(session)
    notifier.notify(trade(1))
    notifier.notify(trade(2))
    assert eventually(lambda: notifier.stats()["sent"] == 2)
    assert session.gaps() == [pytest.approx(2.5)]


def test_backoff_doubles_up_to_its_maximum(clock, run):
    session = ScriptedSession(clock, (500, None, {}), TIMEOUT, (503, None, {}), (500, None, {}),
                              (204, None, {}))
    notifier = run(session, backoff_initial_seconds=1, backoff_max_seconds=5, max_attempts=5)
    notifier.notify(trade(1))
    assert eventually(lambda: notifier.stats()["sent"] == 1)
    assert session.gaps() == [pytest.approx(1), pytest.approx(2), pytest.approx(4), pytest.approx(5)]
    assert notifier.stats()["retried"] == 4


def test_too_many_429s_give_up_on_the_message(clock, run):
    session = ScriptedSession(clock, *[(429, {"retry_after": 1}, {})] * 3)
    notifier = run(session, max_rate_limit_retries=3)
    notifier.notify(trade(1))
    notifier.notify(trade(2))
    assert eventually(lambda: notifier.stats()["sent"] == 1)
    assert notifier.stats()["failed"] == 1
    assert [int(body["embeds"][0]["fields"][-1]["value"]) for _, body in session.calls] == [1, 1, 1, 2]


def test_burst_windows_follow_the_clock(clock, run):
    session = ScriptedSession(clock)
    notifier = run(session, burst_window_seconds=60)

    def reject():
        return events.order_rejected(AT, symbol="XAUUSD", side="buy", strategy="micro_scalp",
                                     reason="no money", retcode=10019)

    notifier.notify(reject())
    assert eventually(lambda: notifier.stats()["sent"] == 1)
    for _ in range(19):
        clock.advance(1)
        assert notifier.notify(reject())
    assert len(session.calls) == 1        # repeats wait for the window to close
    clock.advance(45)                      # 64 s after the first: the window is over
    notifier.wake()
    assert eventually(lambda: notifier.stats()["sent"] == 2)
    title = session.calls[1][1]["embeds"][0]["title"]
    assert title == "Order rejected: BUY XAUUSD (x19)"
    assert session.calls[1][1]["embeds"][0]["fields"][0]["value"].startswith("19 times within 18s")
    for _ in range(5):                     # a storm that goes on: one message per window
        assert notifier.notify(reject())
    clock.advance(61)
    notifier.wake()
    assert eventually(lambda: notifier.stats()["sent"] == 3)
    assert session.calls[2][1]["embeds"][0]["title"].endswith("(x5)")
    clock.advance(200)                     # quiet long enough: the next one goes out at once
    notifier.wake()
    notifier.notify(reject())
    assert eventually(lambda: notifier.stats()["sent"] == 4)
    assert session.calls[3][1]["embeds"][0]["title"] == "Order rejected: BUY XAUUSD"
