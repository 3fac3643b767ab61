"""Shared fixtures for execution tests: the MT5 adapter over the simulated terminal on a FakeClock.

Generic on purpose (the executor's tests reuse them):

- ``clock``: a FakeClock at Monday 2026-01-05 12:00 UTC (all three bundled markets open);
- ``make_sim(**options)``: a fresh ``SimTerminal`` (own book file) with the test password and a
  broker server clock at UTC+2 unless told otherwise; options go to ``make_test_terminal``;
- ``make_bot_config(symbols=..., **mt5)``: a validated ``BotConfig``;
- ``make_broker(terminal=None, secrets=None, config=None, connect=True, settings=None)``;
- ``sim`` and ``broker``: one connected pair, ready to trade.
"""
from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import Any, Callable

import pytest

from config.models import BotConfig
from config.secrets import Secrets
from execution.mt5 import Mt5Broker, Mt5Settings
from execution.simterminal import SimTerminal, make_test_terminal
from monitors.clock import FakeClock

SIM_LOGIN = 5000001          # the simulated account (SimTerminal's default login)
SIM_PASSWORD = "sim-Pa55word"
SIM_SERVER = "SimTerminal-Demo"
SIM_OFFSET_HOURS = 2         # broker server clock = UTC+2, so every time conversion is exercised
MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
DEFAULT_SYMBOLS = ("XAUUSD", "EURUSD", "BTCUSD")


CATEGORIES = {"XAUUSD": "gold", "EURUSD": "forex", "BTCUSD": "crypto"}


def bot_config_for(symbols: dict[str, str | None] | None = None, **mt5: Any) -> BotConfig:
    """A BotConfig with ``symbols`` as {config name: broker name or None}."""
    symbols = symbols if symbols is not None else {name: None for name in DEFAULT_SYMBOLS}

    def entry(name: str, broker: str | None) -> dict[str, Any]:
        value: dict[str, Any] = {"category": CATEGORIES.get(name, "other")}
        if broker:
            value["broker_symbol"] = broker
        return value

    return BotConfig.model_validate({
        "symbols": {name: entry(name, broker) for name, broker in symbols.items()},
        "mt5": mt5,
    })


def sim_secrets(**overrides: Any) -> Secrets:
    values = {"mt5_login": SIM_LOGIN, "mt5_password": SIM_PASSWORD, "mt5_server": SIM_SERVER}
    values.update(overrides)
    return Secrets(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_NOON)


@pytest.fixture
def make_sim(tmp_path, clock) -> Callable[..., SimTerminal]:
    counter = itertools.count()

    def make(symbols=DEFAULT_SYMBOLS, **options: Any) -> SimTerminal:
        options.setdefault("password", SIM_PASSWORD)
        options.setdefault("server_utc_offset_hours", SIM_OFFSET_HOURS)
        folder = tmp_path / f"sim{next(counter)}"
        folder.mkdir()
        return make_test_terminal(folder, clock, symbols=tuple(symbols), **options)

    return make


@pytest.fixture
def make_bot_config() -> Callable[..., BotConfig]:
    return bot_config_for


@pytest.fixture
def make_broker(make_sim, clock) -> Callable[..., Mt5Broker]:
    def make(terminal: SimTerminal | None = None, secrets: Secrets | None = None, config: BotConfig | None = None,
             connect: bool = True, settings: Mt5Settings | None = None) -> Mt5Broker:
        broker = Mt5Broker(terminal if terminal is not None else make_sim(), secrets or sim_secrets(),
                           config or bot_config_for(), clock, settings=settings)
        if connect:
            broker.connect()
        return broker

    return make


@pytest.fixture
def sim(make_sim) -> SimTerminal:
    return make_sim()


@pytest.fixture
def broker(make_broker, sim) -> Mt5Broker:
    return make_broker(sim)
