"""The monitor keys of micro_scalp.json: shipped values, ranges and cross-field rules, and the
error a bad edit produces through the config loader (file, key path, what was expected)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.loader import ConfigError, load_config
from config.micro_scalp_model import MicroScalpConfig, MicroScalpParams

REPO = Path(__file__).resolve().parents[2]


def test_shipped_monitor_keys() -> None:
    config = MicroScalpConfig.model_validate(json.loads((REPO / "config" / "micro_scalp.json").read_text()))
    assert (config.breaker_failures, config.breaker_pause_seconds, config.summary_minutes) == (3, 300, 15)
    xau, eur, btc = (config.for_symbol(s) for s in ("XAUUSD", "EURUSD", "BTCUSD"))
    assert xau.trading_sessions_utc == [(1, 21)] and eur.trading_sessions_utc == [(6, 20)]
    assert btc.trading_sessions_utc == [(0, 24)]
    assert (xau.trail_start_r, xau.trail_atr) == (0.5, 0.3) and xau.trail_enabled
    assert xau.max_positions_per_symbol == 1 and xau.max_trades_per_hour <= xau.max_trades_per_day


@pytest.mark.parametrize("values, message", [
    ({"trading_sessions_utc": [[9, 9]]}, r"trading_sessions_utc entry \[9, 9\]"),
    ({"trading_sessions_utc": [[8, 25]]}, "trading_sessions_utc entry"),
    ({"trading_sessions_utc": []}, "trading_sessions_utc must list at least one"),
    ({"min_bars": 200, "max_bars": 100}, r"max_bars \(100\) must be >= min_bars \(200\)"),
    ({"cooldown_after_trade_seconds": -1}, "cooldown_after_trade_seconds"),
    ({"max_trades_per_hour": 0}, "max_trades_per_hour"),
    ({"trail_atr": 0}, "trail_atr"),
    ({"time_exit_minutes": 0}, "time_exit_minutes"),
])
def test_bad_monitor_params_are_refused_with_the_key(values, message) -> None:
    with pytest.raises(ValidationError, match=message):
        MicroScalpParams(**values)


def test_a_bad_edit_names_the_file_and_key(config_dir: Path) -> None:
    path = config_dir / "micro_scalp.json"
    data = json.loads(path.read_text())
    data["breaker_failures"] = 0
    data["overrides"]["XAUUSD"]["max_positions_per_symbol"] = "two"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        load_config(config_dir)
    text = str(caught.value)
    assert "micro_scalp.json: breaker_failures:" in text
    assert "micro_scalp.json: overrides.XAUUSD.max_positions_per_symbol:" in text
