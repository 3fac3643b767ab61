"""The ``sim`` section of bot.json: the simulated, MT5-compatible terminal."""
from __future__ import annotations

from pydantic import Field

from config.base import StrictModel


class SimConfig(StrictModel):
    """How the simulated terminal replays recorded data and fills orders."""

    speed: float = Field(60.0, gt=0, le=100000, description="replay speed, times real time")
    data_dir: str = Field("data", description="folder with the recorded data, relative to the project")
    starting_balance: float = Field(10000.0, gt=0)
    currency: str = "USD"
    leverage: int = Field(100, ge=1, le=3000)
