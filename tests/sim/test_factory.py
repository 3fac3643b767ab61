"""Building the terminal from bot.json's ``sim`` section, and resuming the replay clock."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from config.sim_model import SimConfig
from execution.simterminal import build_from_config, replay_start
from monitors.clock import FakeClock
from tests.sim.conftest import MONDAY_NOON

PROJECT = Path(__file__).resolve().parents[2]


def test_the_shipped_sim_section_is_valid() -> None:
    raw = json.loads((PROJECT / "config" / "bot.json").read_text(encoding="utf-8"))["sim"]
    config = SimConfig.model_validate(raw)
    assert (PROJECT / config.symbols_file).exists() and (PROJECT / config.data_dir).is_dir()


def test_build_from_config_and_resume_the_market_clock(tmp_path: Path) -> None:
    config = SimConfig(server_utc_offset_hours=2, symbol_suffix="c", slippage_points=5)
    start = replay_start(config, tmp_path, wall_now=MONDAY_NOON)
    assert start == MONDAY_NOON  # no book yet: now
    clock = FakeClock(start)
    mt5 = build_from_config(config, clock, PROJECT, tmp_path, symbols=("XAUUSD", "EURUSD", "BTCUSD"))
    assert mt5.initialize(login=config.login, server=config.server)
    assert [s.name for s in mt5.symbols_get()] == ["XAUUSDc", "EURUSDc", "BTCUSDc"]
    tick = mt5.symbol_info_tick("EURUSDc")
    assert 0 <= int(MONDAY_NOON.timestamp()) + 7200 - tick.time < 60
    clock.advance(1800)
    mt5.account_info()
    mt5.shutdown()
    assert replay_start(config, tmp_path, wall_now=MONDAY_NOON + timedelta(days=9)) == MONDAY_NOON + timedelta(minutes=30)
    fixed = SimConfig(start=MONDAY_NOON + timedelta(days=1))
    assert replay_start(fixed, tmp_path) == MONDAY_NOON + timedelta(days=1)
