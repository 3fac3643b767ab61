"""End to end: bot.py as a subprocess, as an operator would run it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
BOT = PROJECT / "bot.py"


def run_bot(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BOT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=PROJECT)


def test_version() -> None:
    result = run_bot("--version")
    assert result.returncode == 0 and result.stdout.startswith("bot.py ")


def test_check_config_on_the_shipped_files(config_dir: Path) -> None:
    result = run_bot("check-config", "--config-dir", str(config_dir))
    assert result.returncode == 0, result.stderr
    assert "config OK: mode=paper broker=sim" in result.stdout


def test_check_config_on_broken_copies_exits_2_with_one_line_per_problem(config_dir: Path) -> None:
    bot = json.loads((config_dir / "bot.json").read_text())
    bot["risk"]["max_open_total"] = 0
    bot["extra"] = True
    (config_dir / "bot.json").write_text(json.dumps(bot))
    (config_dir / "order_flow.json").write_text("{not json")
    result = run_bot("check-config", "--config-dir", str(config_dir))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("config in") and "3 problem(s)" in lines[0]
    assert "bot.json: risk.max_open_total: Input should be greater than or equal to 1 (got 0)" in lines
    assert any(line.startswith("bot.json: extra: unknown key") for line in lines)
    assert any(line.startswith("order_flow.json: (file): invalid JSON at line 1") for line in lines)


def test_run_refuses_to_start_on_a_broken_config(config_dir: Path, tmp_path: Path) -> None:
    (config_dir / "micro_scalp.json").write_text("")
    result = run_bot("run", "--config-dir", str(config_dir), "--runtime-dir", str(tmp_path / "rt"), "--duration", "5")
    assert result.returncode == 2
    assert "micro_scalp.json: (file): file is empty" in result.stderr
    assert "refusing to start" in result.stderr
    assert not (tmp_path / "rt" / "health.json").exists()


def test_usage_error_exits_2() -> None:
    result = run_bot("run", "--duration", "-3")
    assert result.returncode == 2 and "must be greater than 0" in result.stderr


def test_run_for_a_duration_then_status(config_dir: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    started = time.monotonic()
    result = run_bot("run", "--config-dir", str(config_dir), "--runtime-dir", str(runtime), "--duration", "5",
                     "--no-notify")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert elapsed < 5 + 10 + 5  # duration, orderly shutdown (10 s), interpreter start
    health = json.loads((runtime / "health.json").read_text())
    assert health["status"] == "stopped"
    assert health["threads"]["config-watcher"]["steps"] >= 2
    log_text = (runtime / "logs" / "bot.log").read_text(encoding="utf-8")
    assert "starting: mode=paper broker=sim" in log_text
    assert "[MainThread]" in log_text and "stopped cleanly" in log_text
    journal = [json.loads(line) for line in (runtime / "journal.jsonl").read_text().splitlines()]
    assert [r["event"] for r in journal][0] == "start" and journal[-1]["event"] == "stop"

    status = run_bot("status", "--runtime-dir", str(runtime), "--json")
    assert status.returncode == 0
    doc = json.loads(status.stdout)
    assert doc["found"] is True and doc["running"] is False
    assert doc["health"]["mode"] == {"mode": "paper", "broker": "sim"}
    text = run_bot("status", "--runtime-dir", str(runtime))
    assert "STOPPED" in text.stdout and "config-watcher" in text.stdout


def test_status_without_runtime_files_says_so(tmp_path: Path) -> None:
    result = run_bot("status", "--runtime-dir", str(tmp_path / "none"))
    assert result.returncode == 1 and "has not run with this runtime folder" in result.stdout


@pytest.mark.skipif(os.name == "nt", reason="POSIX signal delivery; Windows uses CTRL_BREAK (same handler)")
def test_sigterm_gives_an_orderly_shutdown_and_hot_reload_works_while_running(config_dir: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    bot = json.loads((config_dir / "bot.json").read_text())
    bot["runtime"]["config_poll_seconds"] = 0.5
    bot["runtime"]["health_interval_seconds"] = 0.5
    (config_dir / "bot.json").write_text(json.dumps(bot))
    proc = subprocess.Popen([sys.executable, str(BOT), "run", "--config-dir", str(config_dir),
                             "--runtime-dir", str(runtime), "--no-notify"], cwd=PROJECT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        health_path = runtime / "health.json"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if health_path.exists() and json.loads(health_path.read_text()).get("status") == "running":
                break
            time.sleep(0.1)
        else:
            pytest.fail("the bot never reported running")
        # while it runs: status sees it running, and a second instance is refused
        status = json.loads(run_bot("status", "--runtime-dir", str(runtime), "--json").stdout)
        assert status["running"] is True
        second = run_bot("run", "--config-dir", str(config_dir), "--runtime-dir", str(runtime), "--duration", "1")
        assert second.returncode == 2 and "already running" in second.stderr
        # a config edit is applied, a broken one rejected with the old config kept
        micro = json.loads((config_dir / "micro_scalp.json").read_text())
        (config_dir / "micro_scalp.json").write_text(json.dumps({**micro, "interval_seconds": 7}))
        log_path = runtime / "logs" / "bot.log"
        deadline = time.monotonic() + 10
        while "interval_seconds: 5 -> 7" not in log_path.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, "the edit was never applied"
            time.sleep(0.1)
        (config_dir / "micro_scalp.json").write_text(json.dumps({**micro, "interval_seconds": "x"}))
        deadline = time.monotonic() + 10
        while "config change rejected" not in log_path.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, "the broken edit was never reported"
            time.sleep(0.1)
        assert proc.poll() is None  # still running
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)
    assert "signal SIGTERM received" in (runtime / "logs" / "bot.log").read_text(encoding="utf-8")
    assert json.loads((runtime / "health.json").read_text())["status"] == "stopped"
