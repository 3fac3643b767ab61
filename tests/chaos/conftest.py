"""Chaos suite options.

- ``--chaos-soak`` (or the environment variable ``CHAOS_SOAK=1``): the long soak instead of the
  bounded CI run. The option is registered here, so pass the folder on the command line:
  ``python -m pytest tests/chaos --chaos-soak -s`` (``CHAOS_SOAK=1 python -m pytest -q`` works
  from anywhere).
- ``CHAOS_SEED=<int>``: replay one run exactly (every test prints the seed it used).
- ``-s`` shows each test's summary table of faults injected and survived; it is also written to
  the test's tmp folder (``chaos_report.txt``/``.json``).
"""
from __future__ import annotations

import os
import time

import pytest

from tests.notify.conftest import discord, make_notifier, secrets_for  # noqa: F401 (fixtures: the Discord fake)
from tests.order_flow.conftest import spot_trades_path, usdm_trades_path  # noqa: F401 (fixtures: the real tapes)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-soak", action="store_true", default=False,
                     help="run the chaos suite's long soak (also: CHAOS_SOAK=1)")


@pytest.fixture
def chaos_soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--chaos-soak", default=False)) or os.environ.get("CHAOS_SOAK") == "1"


@pytest.fixture
def chaos_seed() -> int:
    """CHAOS_SEED, else a fresh seed (printed by each test, so a failure can be replayed)."""
    value = os.environ.get("CHAOS_SEED")
    return int(value) if value else time.time_ns() % 1_000_000
