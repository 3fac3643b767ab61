"""``bot.py notify-test`` and the notifications a running bot sends, against a local fake Discord."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.notify.fake_discord import FakeDiscord, Reply

PROJECT = Path(__file__).resolve().parents[2]


def bot(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "MT5_"))}
    return subprocess.run([sys.executable, str(PROJECT / "bot.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=PROJECT)


def test_notify_test_reports_each_webhook(config_dir: Path) -> None:
    discord = FakeDiscord()
    try:
        discord.script("gold", Reply(404, {"message": "Unknown Webhook", "code": 10015}))
        (config_dir / ".env").write_text(
            f"DISCORD_WEBHOOK_URL={discord.url('default')}\nDISCORD_WEBHOOK_URL_GOLD={discord.url('gold')}\n",
            encoding="utf-8")
        result = bot("notify-test", "--config-dir", str(config_dir))
        assert result.returncode == 1, result.stdout + result.stderr  # one webhook failed
        out = result.stdout
        assert "default" in out and "gold" in out and "404" in out
        assert discord.url("default") not in out and "/api/webhooks/" not in out  # URLs are secrets
        assert len(discord.received("default")) == 1
        payload = discord.received("default")[0]
        assert "test" in payload.title.lower()
    finally:
        discord.close()


def test_notify_test_without_webhooks_says_how_to_configure(config_dir: Path) -> None:
    result = bot("notify-test", "--config-dir", str(config_dir))
    assert result.returncode == 1 and "DISCORD_WEBHOOK_URL" in result.stdout


def test_a_running_bot_announces_start_config_reject_and_stop(config_dir: Path, tmp_path: Path) -> None:
    discord = FakeDiscord()
    try:
        (config_dir / ".env").write_text(f"DISCORD_WEBHOOK_URL={discord.url('default')}\n", encoding="utf-8")
        bot_json = json.loads((config_dir / "bot.json").read_text())
        bot_json["runtime"]["config_poll_seconds"] = 0.5
        (config_dir / "bot.json").write_text(json.dumps(bot_json))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "MT5_"))}
        proc = subprocess.Popen([sys.executable, str(PROJECT / "bot.py"), "run", "--config-dir", str(config_dir),
                                 "--runtime-dir", str(tmp_path / "rt"), "--duration", "8"], env=env, cwd=PROJECT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        discord.wait_for(1, timeout=20, name="default")
        (config_dir / "range_scalp.json").write_text('{"enabled": "yes please"}')
        assert proc.wait(timeout=40) == 0
        titles = [r.title for r in discord.received("default")]
        assert titles[0].startswith("Bot started")
        assert any(t.startswith("Config change rejected") for t in titles)
        assert titles[-1].startswith("Bot stopped")
    finally:
        discord.close()
