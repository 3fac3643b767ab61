"""Building simulated terminals: for tests (``make_test_terminal``) and from bot.json (``build_from_config``)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from config.sim_model import SimConfig
from execution.simterminal.terminal import DEFAULT_SYMBOLS, SimTerminal
from monitors.clock import Clock

TEST_BOOK_NAME = "sim_book.json"


def make_test_terminal(tmp_path: Path, clock: Clock, symbols: Sequence[str] = DEFAULT_SYMBOLS,
                       **options: Any) -> SimTerminal:
    """A terminal on the bundled ``data/`` with its book at ``tmp_path / 'sim_book.json'``.

    Like the real module it starts NOT initialized: call ``initialize()`` (or let the adapter).
    ``options`` are passed to ``SimTerminal`` (e.g. ``server_utc_offset_hours=2``,
    ``password="secret"``, ``slippage_points=3``, ``symbols_spec_path=...``).
    This signature is stable: other engineers' tests use it.
    """
    return SimTerminal(clock, Path(tmp_path) / TEST_BOOK_NAME, symbols=tuple(symbols), **options)


def replay_start(config: SimConfig, runtime_dir: Path, wall_now: datetime | None = None) -> datetime:
    """Where the market clock should start: ``config.start``, else the stored book's market
    time (so a restart resumes where the simulated market stood), else now."""
    if config.start is not None:
        return config.start.astimezone(timezone.utc)
    stored = SimTerminal.book_market_time(Path(runtime_dir) / config.book_file)
    if stored is not None:
        return stored
    return wall_now or datetime.now(timezone.utc)


def build_from_config(config: SimConfig, clock: Clock, project_dir: Path, runtime_dir: Path,
                      symbols: Sequence[str], password: str | None = None) -> SimTerminal:
    """The terminal bot.py runs in paper/sim mode. ``symbols`` are the simulator's names (the
    config names; ``symbol_suffix`` is appended). Start ``clock`` at ``replay_start(...)``."""
    project_dir = Path(project_dir)
    return SimTerminal(
        clock, Path(runtime_dir) / config.book_file,
        symbols_spec_path=project_dir / config.symbols_file, data_dir=project_dir / config.data_dir,
        symbols=tuple(symbols), server_utc_offset_hours=config.server_utc_offset_hours,
        starting_balance=config.starting_balance, leverage=config.leverage, currency=config.currency,
        login=config.login, password=password, server=config.server,
        slippage_points=config.slippage_points, symbol_suffix=config.symbol_suffix)
