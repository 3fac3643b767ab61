"""Fixtures for the micro-scalp tests: the real bar files (see real_bars.py)."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.micro_scalp.real_bars import EUR_FILE, XAU_FILE, read_real_bars


@pytest.fixture(scope="session")
def xau_bars() -> pd.DataFrame:
    return read_real_bars(XAU_FILE)


@pytest.fixture(scope="session")
def eur_bars() -> pd.DataFrame:
    return read_real_bars(EUR_FILE)

