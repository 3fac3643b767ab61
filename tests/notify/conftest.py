from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import pytest

from config.notify_model import NotifyConfig
from config.secrets import Secrets
from monitors.clock import SystemClock
from notify import events
from notify.notifier import Notifier
from tests.notify.fake_discord import FakeDiscord

AT = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)

# Real-time tests keep every wait short: backoff 50 ms, timeouts 0.5 s.
FAST = dict(backoff_initial_seconds=0.05, backoff_max_seconds=0.2, request_timeout_seconds=0.5,
            burst_window_seconds=0.0)


def fast_config(**overrides: Any) -> NotifyConfig:
    return NotifyConfig(**{**FAST, **overrides})


def trade(ticket: int, category: str = "default", symbol: str = "XAUUSD") -> events.NotifyEvent:
    """A numbered, never-collapsed event; its ticket identifies it on the server."""
    return events.trade_opened(AT, symbol=symbol, side="buy", volume=0.01, entry=2000.0, sl=1995.0,
                               tp=2010.0, strategy="micro_scalp", reason="test", category=category,
                               ticket=ticket)


def tickets(received: list) -> list[int]:
    return [int(r.field("Ticket")) for r in received]


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    server = FakeDiscord()
    yield server
    server.close()


@pytest.fixture
def secrets_for(discord: FakeDiscord) -> Callable[..., Secrets]:
    def make(*categories: str, default: bool = True) -> Secrets:
        return Secrets(discord_default=discord.url("default") if default else None,
                       discord_by_category={c: discord.url(c) for c in categories})
    return make


@pytest.fixture
def make_notifier(secrets_for: Callable[..., Secrets]) -> Iterator[Callable[..., Notifier]]:
    made: list[Notifier] = []

    def make(*categories: str, config: NotifyConfig | None = None, start: bool = True,
             secrets: Secrets | None = None, **kwargs: Any) -> Notifier:
        notifier = Notifier(secrets or secrets_for(*categories), config or fast_config(),
                            kwargs.pop("clock", None) or SystemClock(), **kwargs)
        made.append(notifier)
        if start:
            notifier.start()
        return notifier

    yield make
    for notifier in made:
        notifier.stop(0.2)


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true (the sender updates its counters just after the server
    has answered, so a test that saw the answer may be a moment early)."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
