"""Deterministic client ids for backtests.

Live, ``execution.executor.new_client_id`` ends every client id with 3 random bytes, so two
processes (or a restart within the same millisecond) never reuse an id. A backtest must give
byte-identical output for the same inputs, so for the duration of a run the executor module's
``new_client_id`` is replaced by one whose suffix is a per-run counter instead:

    ms-<time in ms, base 36>-<counter, 6 hex digits>

Same format and length, still unique within the run (the counter), and the live function is
restored when the run ends, even on an exception. This is a module-level patch: do not run two
backtests in one process at the same time, nor a backtest next to a live executor. (The clean
alternative is an ``id_factory`` argument of ``Executor``; see the report for the lead.)
"""
from __future__ import annotations

import contextlib
import itertools
import threading
from datetime import datetime
from typing import Callable, Iterator

import execution.executor as executor_module
from execution.broker import validate_client_id

_patch_lock = threading.Lock()


def counter_client_ids() -> Callable[[str, datetime], str]:
    """A ``new_client_id(strategy, now)`` replacement with a counter as the unique suffix."""
    counter = itertools.count(1)

    def new_client_id(strategy: str, now: datetime) -> str:
        stamp = executor_module._base36(int(now.timestamp() * 1000))
        code = executor_module.STRATEGY_CODES[strategy]
        return validate_client_id(f"{code}-{stamp}-{next(counter) % 0x1000000:06x}")

    return new_client_id


@contextlib.contextmanager
def deterministic_client_ids() -> Iterator[None]:
    """Within the block the executor draws client ids from a fresh counter (see module doc)."""
    if not _patch_lock.acquire(blocking=False):
        raise RuntimeError("a backtest is already running in this process (client ids are patched)")
    original = executor_module.new_client_id
    executor_module.new_client_id = counter_client_ids()
    try:
        yield
    finally:
        executor_module.new_client_id = original
        _patch_lock.release()
