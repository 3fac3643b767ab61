"""bot.json: mode, broker, symbols, risk, notifications, logging and runtime settings."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from config.base import StrictModel
from config.notify_model import NotifyConfig
from config.reliability_model import ReliabilityConfig
from config.sim_model import SimConfig

Category = Literal["crypto", "gold", "forex", "index", "other"]
SYMBOL_NAME = re.compile(r"^[A-Za-z0-9._#-]{2,32}$")


class SymbolConfig(StrictModel):
    """One instrument: its name at the broker (suffixes such as ``XAUUSDc``) and its category."""

    broker_symbol: str | None = Field(None, description="name at the broker; defaults to the config name")
    category: Category = "other"
    enabled: bool = True

    @field_validator("broker_symbol")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None and not SYMBOL_NAME.match(value):
            raise ValueError("a broker symbol is 2-32 letters, digits or . _ # -")
        return value


class RiskConfig(StrictModel):
    """Position sizing and exposure limits shared by all strategies."""

    sizing: Literal["fixed", "risk_percent"] = "risk_percent"
    fixed_lots: float = Field(0.01, gt=0, le=100)
    risk_percent: float = Field(0.5, gt=0, le=5, description="percent of equity risked per trade")
    max_open_total: int = Field(6, ge=1, le=200)
    max_open_per_symbol: int = Field(2, ge=1, le=50)
    max_open_per_strategy: int = Field(3, ge=1, le=100)
    max_trades_per_hour: int = Field(10, ge=1, le=1000, description="per strategy")
    max_trades_per_day: int = Field(40, ge=1, le=10000, description="per strategy")

    @model_validator(mode="after")
    def _limits_consistent(self) -> "RiskConfig":
        if self.max_open_per_symbol > self.max_open_total:
            raise ValueError("max_open_per_symbol cannot exceed max_open_total")
        if self.max_open_per_strategy > self.max_open_total:
            raise ValueError("max_open_per_strategy cannot exceed max_open_total")
        if self.max_trades_per_hour > self.max_trades_per_day:
            raise ValueError("max_trades_per_hour cannot exceed max_trades_per_day")
        return self


class ExecutionConfig(StrictModel):
    """How orders are sent: magic numbers, slippage, entry validation against a fresh quote."""

    magic_base: int = Field(7_310_000, ge=1, le=2_000_000_000,
                            description="strategy magic = base + 1 (micro), 2 (range), 3 (flow)")
    deviation_points: int = Field(20, ge=0, le=10000)
    max_quote_age_seconds: float = Field(30.0, gt=0, le=3600, description="older quotes are stale")
    entry_expiry_seconds: float = Field(5.0, gt=0, le=120, description="no late entries after an unclear send")
    max_spread_points: float | None = Field(None, gt=0, description="refuse entries above this spread")
    max_entry_drift_atr: float = Field(0.25, gt=0, le=5, description="fresh price may differ this many ATRs")
    max_entry_drift_r: float = Field(0.3, gt=0, le=5, description="used when the idea carries no ATR")
    close_retries: int = Field(3, ge=1, le=20)
    close_retry_delay_seconds: float = Field(2.0, ge=0, le=60)


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file_max_mb: float = Field(10.0, gt=0.01, le=1000)
    file_backups: int = Field(5, ge=0, le=100)
    console: bool = True


class RuntimeConfig(StrictModel):
    """Cadences of the infrastructure threads and the supervisor's restart policy."""

    health_interval_seconds: float = Field(5.0, ge=0.5, le=300)
    config_poll_seconds: float = Field(2.0, ge=0.2, le=60)
    config_settle_seconds: float = Field(0.3, ge=0.0, le=10)
    monitor_error_budget: int = Field(5, ge=1, le=1000, description="consecutive failures before faulted")
    restart_backoff_seconds: float = Field(2.0, ge=0.1, le=600)
    restart_backoff_max_seconds: float = Field(300.0, ge=1, le=3600)
    shutdown_timeout_seconds: float = Field(8.0, ge=1, le=60)

    @model_validator(mode="after")
    def _backoff_order(self) -> "RuntimeConfig":
        if self.restart_backoff_max_seconds < self.restart_backoff_seconds:
            raise ValueError("restart_backoff_max_seconds must be at least restart_backoff_seconds")
        return self


class Mt5Config(StrictModel):
    """MT5 terminal connection settings that are not secrets (credentials live in .env)."""

    timeout_ms: int = Field(60000, ge=1000, le=600000)
    server_utc_offset_hours: float | None = Field(
        None, ge=-14, le=14, description="broker server time minus UTC; measured at start when null")


class BotConfig(StrictModel):
    mode: Literal["paper", "live"] = "paper"
    broker: Literal["sim", "mt5"] = "sim"
    symbols: dict[str, SymbolConfig] = Field(default_factory=dict)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    sim: SimConfig = Field(default_factory=SimConfig)
    mt5: Mt5Config = Field(default_factory=Mt5Config)
    notifications: NotifyConfig = Field(default_factory=NotifyConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)

    @field_validator("symbols")
    @classmethod
    def _symbol_names(cls, value: dict[str, SymbolConfig]) -> dict[str, SymbolConfig]:
        if not value:
            raise ValueError("at least one symbol must be configured")
        bad = [name for name in value if not SYMBOL_NAME.match(name)]
        if bad:
            raise ValueError(f"invalid symbol names: {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _live_needs_mt5(self) -> "BotConfig":
        if self.mode == "live" and self.broker != "mt5":
            raise ValueError("mode 'live' needs broker 'mt5' (the simulated terminal cannot trade real money)")
        return self

    def broker_symbol(self, name: str) -> str:
        symbol = self.symbols[name]
        return symbol.broker_symbol or name
