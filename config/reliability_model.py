"""The ``reliability`` section of bot.json: reconciliation, trading state, circuit breaker, exits.

Every key applies on a hot reload (the reconciler, the trading guard and the breaker read the
section in force at each use). Limits set to ``null`` are switched off. The operator halts the
bot with ``force_state`` and resumes it by changing ``resume_token`` to any new text (see the
README "Safety" section).
"""
from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from config.base import StrictModel

StrategyName = Literal["micro_scalp", "range_scalp", "order_flow"]


class ReliabilityConfig(StrictModel):
    """Protections that keep the bot's book equal to the broker's and stop a bad day early."""

    # --- reconciliation (execution/reconciler.py)
    reconcile_interval_seconds: float = Field(10.0, ge=1, le=600, description="full comparison with the broker")
    reconcile_lookback_hours: float = Field(
        24.0, ge=1, le=720, description="deal history read to find trades opened and closed while away")
    sltp_repair: Literal["registry", "report"] = Field(
        "registry", description="'registry': a broker SL/TP that differs is set back to the bot's; "
                                "'report': only reported")
    adopt_external_into: StrategyName | None = Field(
        None, description="null: positions without our magic are reported, never touched; a strategy "
                          "name: they are adopted and managed by that strategy")
    reconcile_alert_after_failures: int = Field(5, ge=1, le=1000,
                                                description="consecutive failed passes before an alert")

    # --- trading state (execution/trading_state.py)
    guard_interval_seconds: float = Field(5.0, ge=0.5, le=300)
    day_timezone: str = Field("UTC", description="IANA zone whose midnight starts the trading day")
    daily_loss_limit_percent: float | None = Field(
        3.0, gt=0, le=100, description="HALTED until the next day when equity is this far below the day's start")
    max_drawdown_percent: float | None = Field(
        10.0, gt=0, le=100, description="HALTED until resumed when equity is this far below its peak")
    loss_streak_count: int | None = Field(
        4, ge=2, le=100, description="REDUCING after this many losing trades in a row (closed within the window)")
    loss_streak_window_minutes: float = Field(120.0, gt=0, le=10080, description="the losing streak's window")
    loss_streak_cooldown_minutes: float = Field(30.0, gt=0, le=10080, description="how long the streak lock lasts")
    order_failure_burst_count: int | None = Field(
        5, ge=2, le=1000, description="REDUCING after this many failed orders within the window")
    order_failure_window_seconds: float = Field(60.0, gt=0, le=3600, description="the failure burst's window")
    order_failure_cooldown_minutes: float = Field(5.0, gt=0, le=1440, description="how long the burst lock lasts")
    max_orders_per_minute: int | None = Field(
        30, ge=1, le=10000, description="orders (entries, closes, modifies) of all strategies together")
    order_rate_cooldown_minutes: float = Field(5.0, gt=0, le=1440)
    stale_data_seconds: float | None = Field(
        180.0, gt=0, le=86400, description="REDUCING while every bar feed is this far behind its timeframe")

    # --- broker circuit breaker (execution/breaker.py)
    breaker_failure_threshold: int = Field(5, ge=1, le=100, description="consecutive failed broker calls")
    breaker_recovery_seconds: float = Field(60.0, gt=0, le=3600, description="open this long before a probe")
    breaker_close_after_successes: int = Field(2, ge=1, le=100)

    # --- exits that keep failing (execution/executor.py)
    exit_retry_base_seconds: float = Field(5.0, ge=0, le=600, description="first wait before a failed exit is retried")
    exit_retry_max_seconds: float = Field(60.0, ge=0, le=3600, description="the wait doubles up to this")
    exit_escalate_after_failures: int = Field(3, ge=1, le=100, description="failed close calls before an alert")

    # --- the operator
    force_state: Literal["REDUCING", "HALTED"] | None = Field(
        None, description="hold the bot in this state until set back to null")
    resume_token: str = Field(
        "", max_length=100, description="change to any new text to clear every protection lock once")

    @field_validator("day_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as \"UTC\" or "
                             "\"Europe/London\" (on Windows the tzdata package provides them)") from None
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> "ReliabilityConfig":
        if self.exit_retry_max_seconds < self.exit_retry_base_seconds:
            raise ValueError("exit_retry_max_seconds must be at least exit_retry_base_seconds")
        return self
