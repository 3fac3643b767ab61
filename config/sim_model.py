"""The ``sim`` section of bot.json: the simulated, MT5-compatible terminal."""
from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from config.base import StrictModel


class SimConfig(StrictModel):
    """How the simulated terminal replays recorded data and fills orders.

    Paths are relative to the project folder (``data_dir``, ``symbols_file``) or to the runtime
    folder (``book_file``). The simulated account's login and server are not secrets (it is a
    simulation); a real account's credentials stay in ``.env``.
    """

    speed: float = Field(60.0, gt=0, le=100000, description="replay speed, times real time")
    data_dir: str = Field("data", description="folder with the recorded data, relative to the project")
    symbols_file: str = Field("data/sim_symbols.json", description="contract specs and feed file per symbol")
    book_file: str = Field("sim_book.json", description="the simulated broker's book, under the runtime folder")
    start: datetime | None = Field(
        None, description="market time the replay starts at (UTC); null = resume the book's market "
                          "time, or now for a new book")
    starting_balance: float = Field(10000.0, gt=0)
    currency: str = "USD"
    leverage: int = Field(100, ge=1, le=3000)
    server_utc_offset_hours: float = Field(
        2.0, ge=-12, le=14, description="the simulated broker's server time minus UTC (bar and tick times)")
    slippage_points: int = Field(0, ge=0, le=100000, description="adverse slippage of market fills and stop losses")
    login: int = Field(5000001, ge=1)
    server: str = Field("SimTerminal-Demo", min_length=1, max_length=64)
    symbol_suffix: str = Field("", max_length=8, description="appended to every simulated symbol name (e.g. 'c')")

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("start must carry a timezone (e.g. 2026-01-05T08:00:00Z)")
        return value

    @field_validator("server_utc_offset_hours")
    @classmethod
    def _whole_minutes(cls, value: float) -> float:
        if abs(value * 60 - round(value * 60)) > 1e-9:
            raise ValueError("server_utc_offset_hours must be a whole number of minutes")
        return value
