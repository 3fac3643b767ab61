"""Config validation: every rule, and malformed files, each named by file and key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.loader import ConfigError, load_config
from config.secrets import load_secrets


def edit(config_dir: Path, name: str, mutate) -> None:
    path = config_dir / name
    data = json.loads(path.read_text(encoding="utf-8"))
    mutate(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def problems_of(config_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(config_dir)
    return [str(p) for p in info.value.problems]


def test_shipped_defaults_are_valid(config_dir: Path) -> None:
    snapshot = load_config(config_dir)
    assert snapshot.bot.mode == "paper" and snapshot.bot.broker == "sim"
    assert set(snapshot.bot.symbols) == {"XAUUSD", "EURUSD", "BTCUSD"}
    assert snapshot.micro_scalp.interval_seconds == 5
    assert snapshot.range_scalp.exit_interval_seconds == 300


def test_invalid_json_names_file_line_and_column(config_dir: Path) -> None:
    (config_dir / "bot.json").write_text('{"mode": "paper",\n  "broker": }', encoding="utf-8")
    problems = problems_of(config_dir)
    assert len(problems) == 1
    assert problems[0].startswith("bot.json: (file): invalid JSON at line 2 column")


def test_empty_file(config_dir: Path) -> None:
    (config_dir / "micro_scalp.json").write_text("  \n", encoding="utf-8")
    assert problems_of(config_dir) == ["micro_scalp.json: (file): file is empty; expected a JSON object"]


def test_utf8_bom_is_accepted_because_notepad_writes_it(config_dir: Path) -> None:
    path = config_dir / "order_flow.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_config(config_dir).order_flow.enabled is True


def test_utf8_bom_with_bad_content_reports_the_content_not_the_bom(config_dir: Path) -> None:
    (config_dir / "order_flow.json").write_bytes(b"\xef\xbb\xbf{\"enabled\": \"maybe\"}")
    problems = problems_of(config_dir)
    assert problems == ['order_flow.json: enabled: Input should be a valid boolean, unable to interpret input (got "maybe")']


def test_not_utf8(config_dir: Path) -> None:
    (config_dir / "bot.json").write_bytes(b'{"mode": "\xff"}')
    assert problems_of(config_dir) == ["bot.json: (file): not UTF-8 text (bad byte at offset 10)"]


def test_top_level_must_be_an_object(config_dir: Path) -> None:
    (config_dir / "range_scalp.json").write_text("[1, 2]", encoding="utf-8")
    assert problems_of(config_dir) == ["range_scalp.json: (file): expected a JSON object, found list"]


def test_wrong_type_names_the_key_path(config_dir: Path) -> None:
    edit(config_dir, "bot.json", lambda d: d["risk"].__setitem__("max_open_total", "six"))
    problems = problems_of(config_dir)
    assert problems == ['bot.json: risk.max_open_total: Input should be a valid integer, unable to parse string as an integer (got "six")']


def test_unknown_key_is_refused(config_dir: Path) -> None:
    edit(config_dir, "bot.json", lambda d: d["risk"].__setitem__("max_open_totl", 3))
    problems = problems_of(config_dir)
    assert len(problems) == 1 and problems[0].startswith("bot.json: risk.max_open_totl: unknown key")


def test_out_of_range_value(config_dir: Path) -> None:
    edit(config_dir, "bot.json", lambda d: d["risk"].__setitem__("risk_percent", 50))
    assert problems_of(config_dir) == ["bot.json: risk.risk_percent: Input should be less than or equal to 5 (got 50)"]


def test_ten_megabyte_file_is_refused_without_parsing(config_dir: Path) -> None:
    (config_dir / "bot.json").write_text('{"x": "' + "a" * 10_000_000 + '"}', encoding="utf-8")
    problems = problems_of(config_dir)
    assert problems == ["bot.json: (file): file is 10.0 MB; a config file may be at most 1 MB"]


def test_missing_file(config_dir: Path) -> None:
    (config_dir / "range_scalp.json").unlink()
    problems = problems_of(config_dir)
    assert len(problems) == 1 and problems[0].startswith("range_scalp.json: (file): file not found")


def test_cross_field_risk_limits(config_dir: Path) -> None:
    edit(config_dir, "bot.json", lambda d: d["risk"].update(max_open_total=2, max_open_per_symbol=3))
    problems = problems_of(config_dir)
    assert problems == ["bot.json: risk: max_open_per_symbol cannot exceed max_open_total"]


def test_live_mode_needs_the_mt5_broker(config_dir: Path) -> None:
    edit(config_dir, "bot.json", lambda d: d.update(mode="live"))
    problems = problems_of(config_dir)
    assert len(problems) == 1 and "mode 'live' needs broker 'mt5'" in problems[0]


def test_strategy_symbol_must_exist_in_bot_json(config_dir: Path) -> None:
    edit(config_dir, "micro_scalp.json", lambda d: d["symbols"].append("GBPUSD"))
    problems = problems_of(config_dir)
    assert problems == ["micro_scalp.json: symbols.3: 'GBPUSD' is not configured in bot.json 'symbols' "
                        "(known: BTCUSD, EURUSD, XAUUSD)"]


def test_per_symbol_overrides_merge_onto_defaults(config_dir: Path) -> None:
    edit(config_dir, "range_scalp.json", lambda d: d["overrides"].update(EURUSD={"enabled": False}))
    snapshot = load_config(config_dir)
    assert snapshot.range_scalp.for_symbol("EURUSD").enabled is False
    assert snapshot.range_scalp.for_symbol("XAUUSD").enabled is True
    assert snapshot.range_scalp.active_symbols() == ["XAUUSD", "BTCUSD"]


def test_override_of_an_unlisted_symbol_is_refused(config_dir: Path) -> None:
    edit(config_dir, "range_scalp.json", lambda d: d.update(symbols=["XAUUSD"], overrides={"EURUSD": {}}))
    problems = problems_of(config_dir)
    assert len(problems) == 1
    assert problems[0].startswith("range_scalp.json: (file): overrides for symbols not listed")
    assert "EURUSD" in problems[0]


def test_unknown_key_inside_an_override(config_dir: Path) -> None:
    edit(config_dir, "micro_scalp.json", lambda d: d["overrides"].update(XAUUSD={"enabeld": False}))
    problems = problems_of(config_dir)
    assert len(problems) == 1 and problems[0].startswith("micro_scalp.json: overrides.XAUUSD.enabeld: unknown key")


def test_every_problem_is_listed_not_just_the_first(config_dir: Path) -> None:
    edit(config_dir, "bot.json", lambda d: d["risk"].update(risk_percent=-1, fixed_lots="x"))
    (config_dir / "order_flow.json").write_text("{", encoding="utf-8")
    problems = problems_of(config_dir)
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {"bot.json", "order_flow.json"}


def test_secrets_come_from_environment_and_are_hidden_in_repr() -> None:
    secrets = load_secrets(environ={"MT5_LOGIN": "123456", "MT5_PASSWORD": "hunter2-secret",
                                    "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/abc",
                                    "DISCORD_WEBHOOK_URL_GOLD": "https://discord.com/api/webhooks/2/gold"})
    assert secrets.mt5_login == 123456
    assert secrets.webhook_for("gold").endswith("/2/gold")
    assert secrets.webhook_for("crypto").endswith("/1/abc")  # falls back to the default
    text = repr(secrets)
    assert "hunter2" not in text and "webhooks" not in text
    assert "hunter2-secret" in secrets.values()


def test_secrets_from_a_dotenv_file_under_the_environment(tmp_path: Path, monkeypatch) -> None:
    env = tmp_path / ".env"
    env.write_text("MT5_SERVER=Demo-Server\nMT5_PASSWORD=from-file\n", encoding="utf-8")
    monkeypatch.setenv("MT5_PASSWORD", "from-env")
    monkeypatch.delenv("MT5_SERVER", raising=False)
    secrets = load_secrets([env])
    assert secrets.mt5_server == "Demo-Server"
    assert secrets.mt5_password == "from-env"


def test_bad_login_in_env_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="MT5_LOGIN must be the account number"):
        load_secrets(environ={"MT5_LOGIN": "abc"})
