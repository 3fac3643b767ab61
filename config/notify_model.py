"""The ``notifications`` section of bot.json: Discord webhooks (URLs come from .env only).

Only behaviour lives here (switches, queue, timing, retry policy). The webhook URLs are secrets
and are read from the environment by ``config.secrets``; they never appear in a JSON file.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from config.base import StrictModel

Priority = Literal["low", "normal", "high", "critical"]
HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# "@here", "@everyone", a user "<@123>" / "<@!123>" or a role "<@&123>" (ids are not secrets).
MENTION = re.compile(r"^(@here|@everyone|<@!?\d{5,25}>|<@&\d{5,25}>)$")

# Every event kind the notifier sends (notify/events.py builds them); operators may mute these.
EVENT_KINDS = (
    "bot_started", "bot_stopped", "trade_opened", "trade_closed", "order_rejected",
    "trading_state_changed", "circuit_breaker_opened", "circuit_breaker_closed",
    "broker_disconnected", "broker_restored", "config_reloaded", "config_rejected",
    "monitor_faulted", "monitor_restarted", "range_signal", "daily_summary", "test_message",
    "dropped_notice",
)


class NotifyConfig(StrictModel):
    """How the notifier behaves. ``queue_size`` needs a restart; the rest applies on reload."""

    enabled: bool = True
    queue_size: int = Field(500, ge=10, le=100000)
    username: str = Field("Scalping bot", min_length=1, max_length=80,
                          description="name shown on the Discord messages")
    min_priority: Priority = Field(
        "low", description="events below this priority are not sent (low < normal < high < critical)")
    muted_events: list[str] = Field(
        default_factory=list, description="event kinds never sent, e.g. [\"trade_opened\"]")
    critical_mention: str = Field(
        "", description="mention added to critical events: @here, @everyone, <@user_id> or <@&role_id>")
    daily_summary_enabled: bool = True
    daily_summary_utc: str = Field("21:00", description="HH:MM in UTC")
    burst_window_seconds: float = Field(
        60.0, ge=0, le=3600, description="repeats of one event kind and key within this window collapse")
    request_timeout_seconds: float = Field(10.0, gt=0, le=120)
    max_attempts: int = Field(4, ge=1, le=20, description="tries for 5xx, timeouts and connection errors")
    max_rate_limit_retries: int = Field(10, ge=1, le=100, description="429 answers tolerated per message")
    backoff_initial_seconds: float = Field(1.0, gt=0, le=60)
    backoff_max_seconds: float = Field(30.0, gt=0, le=600)
    max_retry_after_seconds: float = Field(
        300.0, ge=1, le=3600, description="cap on a server-requested wait (absurd values are clamped)")

    @field_validator("daily_summary_utc")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError("expected a UTC time as HH:MM (00:00 to 23:59), e.g. \"21:00\"")
        return value

    @field_validator("muted_events")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = [kind for kind in value if kind not in EVENT_KINDS]
        if unknown:
            raise ValueError(f"unknown event kinds {', '.join(unknown)} (known: {', '.join(EVENT_KINDS)})")
        return value

    @field_validator("critical_mention")
    @classmethod
    def _mention(cls, value: str) -> str:
        value = value.strip()
        if value and not MENTION.match(value):
            raise ValueError("expected @here, @everyone, <@user_id> or <@&role_id> (or empty for none)")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> "NotifyConfig":
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must be at least backoff_initial_seconds")
        return self
