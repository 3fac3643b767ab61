"""The backtest's copy of the config: the changes a replay needs, listed, and nothing else."""
from __future__ import annotations

import json

import pytest

from backtest.run_config import apply_backtest_changes, parse_strategies, prepare_config
from config.loader import CONFIG_FILES, ConfigError


def _raw(config_dir):
    return {name: json.loads((config_dir / name).read_text()) for name in CONFIG_FILES}


def test_parse_strategies():
    assert parse_strategies("flow, micro") == ["micro_scalp", "order_flow"]
    assert parse_strategies("range_scalp") == ["range_scalp"]
    with pytest.raises(ValueError, match="unknown strategy 'scalp'"):
        parse_strategies("micro,scalp")
    with pytest.raises(ValueError, match="no strategy selected"):
        parse_strategies(" , ")


def test_changes_for_a_replay(config_dir):
    raw = _raw(config_dir)
    raw["micro_scalp.json"]["enabled"] = False
    changed, overrides = apply_backtest_changes(raw, ["XAUUSD"], ["micro_scalp", "range_scalp"], 5000.0)
    assert changed["micro_scalp.json"]["enabled"] is True and changed["order_flow.json"]["enabled"] is False
    for name in ("micro_scalp.json", "range_scalp.json", "order_flow.json"):
        assert changed[name]["symbols"] == ["XAUUSD"]
        assert set(changed[name].get("overrides", {})) <= {"XAUUSD"}
    assert changed["range_scalp.json"]["defaults"]["execution"]["auto_execute"] is True
    assert changed["order_flow.json"]["binance"]["enabled"] is False
    assert changed["order_flow.json"]["binance"]["symbols"] == {}
    bot = changed["bot.json"]
    assert bot["symbols"] == {"XAUUSD": {"broker_symbol": "XAUUSD", "category": "gold"}}
    assert bot["mt5"]["server_utc_offset_hours"] == bot["sim"]["server_utc_offset_hours"]
    assert bot["sim"]["starting_balance"] == 5000.0
    assert "micro_scalp.json: enabled = true" in overrides
    assert "range_scalp.json: execution.auto_execute = true (signals are executed)" in overrides
    assert raw["micro_scalp.json"]["enabled"] is False  # the input is not modified
    # everything else is the operator's
    assert changed["bot.json"]["risk"] == raw["bot.json"]["risk"]
    assert changed["micro_scalp.json"]["defaults"] == raw["micro_scalp.json"]["defaults"]


def test_prepare_config_writes_a_valid_copy_and_reports_bad_files(config_dir, tmp_path):
    snapshot, _ = prepare_config(config_dir, tmp_path / "run", ["EURUSD"], ["order_flow"])
    assert snapshot.order_flow.enabled and not snapshot.micro_scalp.enabled
    assert (tmp_path / "run" / "news.json").is_file()
    bot = json.loads((config_dir / "bot.json").read_text())
    bot["risk"]["risk_percent"] = 99
    (config_dir / "bot.json").write_text(json.dumps(bot))
    with pytest.raises(ConfigError) as info:
        prepare_config(config_dir, tmp_path / "run2", ["EURUSD"], ["order_flow"])
    assert any(p.file == "bot.json" and p.key == "risk.risk_percent" for p in info.value.problems)
