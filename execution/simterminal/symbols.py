"""Contract specifications of the simulated symbols (``data/sim_symbols.json``), validated.

Values mirror what a typical MT5 ECN broker publishes in ``symbol_info``. ``filling_mode`` is the
SYMBOL_FILLING_* bitmask (FOK = 1, IOC = 2); a market order's ``type_filling`` is the different
ORDER_FILLING_* enum (FOK = 0, IOC = 1, RETURN = 2): passing one for the other is the classic
10030 trap, which the terminal reproduces.

Simplifications, stated so nobody relies on them: the profit currency must be the account
currency (tick value is then constant), swaps are published but never charged, and margin is
computed per position at its open price, without hedged-margin relief.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from config.base import StrictModel

# Bits of symbol_info().filling_mode. NOT exported by the MetaTrader5 package (see constants.py).
SYMBOL_FILLING_FOK = 1
SYMBOL_FILLING_IOC = 2

CALC_MODES = {0: "FOREX", 2: "CFD", 4: "CFDLEVERAGE"}


class SpecFileError(ValueError):
    """The symbol specification file is missing or invalid."""


class FeedSpec(StrictModel):
    """Which recorded file drives the symbol's prices."""

    kind: Literal["bars", "ticks"] = "bars"
    file: str = Field(..., description="path relative to the data folder")
    format: str | None = Field(None, description="feeds.readers format; detected when null")
    utc_offset_hours: float | None = Field(
        None, ge=-14, le=14, description="file time = UTC + offset; null = the format's default")
    replay: Literal["loop", "once"] = Field(
        "loop", description="loop: the recording's span rounded to the NEAREST whole week repeats forever "
                            "(the demo; a few days at the end may be dropped); once: the span rounded UP, "
                            "so every recorded bar plays (backtests); the rest of the last week is closed")


class SymbolSpec(StrictModel):
    description: str
    path: str
    digits: int = Field(..., ge=0, le=8)
    point: float = Field(..., gt=0)
    trade_tick_size: float = Field(..., gt=0)
    trade_tick_value: float = Field(..., gt=0, description="account currency per tick per lot")
    trade_contract_size: float = Field(..., gt=0)
    volume_min: float = Field(..., gt=0)
    volume_max: float = Field(..., gt=0)
    volume_step: float = Field(..., gt=0)
    volume_limit: float = Field(0.0, ge=0)
    trade_stops_level: int = Field(0, ge=0, description="points")
    trade_freeze_level: int = Field(0, ge=0, description="points")
    filling_mode: int = Field(..., ge=0, le=3, description="bitmask: SYMBOL_FILLING_FOK=1 | IOC=2")
    trade_exemode: int = Field(2, ge=0, le=3, description="SYMBOL_TRADE_EXECUTION_*; 2 = market")
    trade_mode: int = Field(4, ge=0, le=4, description="SYMBOL_TRADE_MODE_*; 4 = full")
    trade_calc_mode: int = Field(0, description="SYMBOL_CALC_MODE_*: 0 forex, 2 CFD, 4 CFD leverage")
    margin_rate: float = Field(1.0, gt=0, description="initial margin rate multiplier")
    spread_points: int = Field(..., ge=0, description="spread when the data has no spread column")
    spread_float: bool = True
    commission_per_lot_per_side: float = Field(0.0, ge=0, description="account currency")
    swap_long: float = 0.0
    swap_short: float = 0.0
    swap_mode: int = 1
    currency_base: str
    currency_profit: str
    currency_margin: str
    expiration_mode: int = 15
    order_mode: int = 127
    order_gtc_mode: int = 0
    market_gap_seconds: float = Field(
        600.0, gt=0, le=86400, description="inside a data gap longer than this the market is closed")
    feed: FeedSpec

    @model_validator(mode="after")
    def _consistent(self) -> "SymbolSpec":
        if not math.isclose(self.point, 10.0 ** -self.digits, rel_tol=1e-9):
            raise ValueError(f"point {self.point} does not match digits {self.digits}")
        ratio = self.trade_tick_size / self.point
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError("trade_tick_size must be a whole number of points")
        if self.volume_min > self.volume_max:
            raise ValueError("volume_min exceeds volume_max")
        steps = self.volume_min / self.volume_step
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError("volume_min must be a whole number of volume_step")
        if self.trade_calc_mode not in CALC_MODES:
            raise ValueError(f"trade_calc_mode must be one of {sorted(CALC_MODES)} ({', '.join(CALC_MODES.values())})")
        return self


class SymbolsFile(StrictModel):
    schema_version: int = Field(1, ge=1, le=1)
    note: str = ""
    symbols: dict[str, SymbolSpec]


def load_symbol_specs(path: Path | str) -> dict[str, SymbolSpec]:
    """Read and validate the spec file; the error names the file and the key path."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise SpecFileError(f"{path}: symbol specification file not found") from None
    except ValueError as exc:
        raise SpecFileError(f"{path}: not valid JSON ({exc})") from None
    try:
        return SymbolsFile.model_validate(raw).symbols
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise SpecFileError(f"{path}: {problems}") from None
