"""Fixtures of the simulated-terminal tests: a fake clock on a Monday and a terminal on bundled data."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from execution.simterminal import SimTerminal, make_test_terminal
from monitors.clock import FakeClock

MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_NOON)


@pytest.fixture
def mt5(tmp_path: Path, clock: FakeClock) -> SimTerminal:
    """An initialized terminal with the three default symbols, server time = UTC."""
    terminal = make_test_terminal(tmp_path, clock)
    assert terminal.initialize() is True
    return terminal
