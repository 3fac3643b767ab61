"""Shared fixtures: the project root on sys.path, and a copy of the default config folder."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped config files, safe to edit."""
    target = tmp_path / "config"
    target.mkdir()
    for path in (PROJECT_DIR / "config").glob("*.json"):
        shutil.copy(path, target / path.name)
    return target


@pytest.fixture
def bots():
    """Every ``bot.py`` process a test starts (``tests.recovery.botproc``); none survives the test."""
    started: list = []
    yield started
    for bot in started:
        bot.stop()
