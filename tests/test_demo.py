"""The demo a newcomer sees: ``python bot.py`` on the bundled data opens and closes trades."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def test_the_default_paper_sim_bot_trades_within_a_bounded_run(config_dir: Path, tmp_path: Path) -> None:
    bot = json.loads((config_dir / "bot.json").read_text())
    bot["sim"]["start"] = "2026-01-05T12:00:00Z"  # a Monday: fixed market data, independent of today's date
    (config_dir / "bot.json").write_text(json.dumps(bot))
    runtime = tmp_path / "rt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "MT5_"))}
    result = subprocess.run([sys.executable, str(PROJECT / "bot.py"), "run", "--config-dir", str(config_dir),
                             "--runtime-dir", str(runtime), "--duration", "25", "--no-notify"],
                            capture_output=True, text=True, timeout=120, env=env, cwd=PROJECT)
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in (runtime / "journal.jsonl").read_text().splitlines()]
    opened = [e for e in events if e["event"] == "opened"]
    assert opened, "no trade opened in 25 s of demo"
    for event in opened:
        assert event["client_id"] and event["ticket"] and event["strategy"] in ("micro_scalp", "range_scalp", "order_flow")
    intents = {e["client_id"] for e in events if e["event"] == "intent"}
    assert {e["client_id"] for e in opened} <= intents  # every fill was journaled as an intent first
    health = json.loads((runtime / "health.json").read_text())
    assert {"micro-scalp", "range-scalp", "order-flow"} <= set(health["threads"])
    assert all(health["threads"][name]["errors"] == 0 for name in ("micro-scalp", "range-scalp", "order-flow"))
