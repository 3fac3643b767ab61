"""Deterministic client ids for backtests.

Live, ``execution.executor.new_client_id`` ends every client id with 3 random bytes, so two
processes (or a restart within the same millisecond) never reuse an id. A backtest must give
byte-identical output for the same inputs, so it gives the executor (its ``id_factory``
argument) ids whose suffix is a per-run counter instead:

    ms-<time in ms, base 36>-<counter, 6 hex digits>

Same format and length, unique within the run.
"""
from __future__ import annotations

import itertools
from datetime import datetime
from typing import Callable

import execution.executor as executor_module
from execution.broker import validate_client_id

def counter_client_ids() -> Callable[[str, datetime], str]:
    """A ``new_client_id(strategy, now)`` replacement with a counter as the unique suffix."""
    counter = itertools.count(1)

    def new_client_id(strategy: str, now: datetime) -> str:
        stamp = executor_module._base36(int(now.timestamp() * 1000))
        code = executor_module.STRATEGY_CODES[strategy]
        return validate_client_id(f"{code}-{stamp}-{next(counter) % 0x1000000:06x}")

    return new_client_id
