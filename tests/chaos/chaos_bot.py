"""``bot.py`` with randomized terminal faults (and optionally a crash hook), for the SIGKILL chaos.

    python tests/chaos/chaos_bot.py run --config-dir ... --runtime-dir ... --no-notify

The simulated terminal's faults are in memory, so they are armed inside the bot's process: the
terminal ``bot.py`` builds (``execution.simterminal.factory.build_from_config``) is handed to a
thread that, once the app runs (``BotApp.run`` entered: a broker that fails the start-up makes
bot.py refuse to start, exit code 1, which is not what this chaos is about), arms a random fault
(``tests/chaos/faults.FaultSchedule``) every ``CHAOS_FAULT_PERIOD`` wall seconds (default 0.25)
with probability ``CHAOS_FAULT_PROBABILITY`` (default 0.5), from ``CHAOS_BOT_SEED``. Each armed fault is appended to
``$BOT_HOOK_DIR/faults_armed.jsonl`` and the faults the terminal fired are rewritten to
``$BOT_HOOK_DIR/faults_fired.json`` (tmp file + rename) as they happen, so a SIGKILL leaves the
record behind. The crash hooks of ``tests/recovery/crashing_bot.py`` are installed too when
``BOT_CRASH_AT`` is set.
"""
from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))


def _write_fired(terminal: Any, path: Path) -> None:
    from tests.chaos.faults import count_fired
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(count_fired(terminal))), encoding="utf-8")
    os.replace(tmp, path)


RUNNING = threading.Event()  # set when BotApp.run is entered


def run_faults(terminal: Any, seed: int, period: float, probability: float, hook_dir: Path | None) -> None:
    """Arm random faults on ``terminal`` for the life of the process (a daemon thread)."""
    from tests.chaos.faults import FaultSchedule

    RUNNING.wait()
    schedule = FaultSchedule(random.Random(seed), probability=probability)
    armed_log = open(hook_dir / "faults_armed.jsonl", "a", encoding="utf-8") if hook_dir else None
    fired_seen = -1
    while True:
        time.sleep(period)
        kind = schedule.maybe_inject(terminal)
        cleared = schedule.maybe_clear_autotrading(terminal, probability=0.3)
        if armed_log is not None and (kind or cleared):
            armed_log.write(json.dumps({"at": time.time(), "kind": kind, "autotrading_cleared": cleared}) + "\n")
            armed_log.flush()
        if hook_dir is not None and len(terminal.faults.injected) != fired_seen:
            fired_seen = len(terminal.faults.injected)
            _write_fired(terminal, hook_dir / "faults_fired.json")


def install_faults(seed: int, period: float, probability: float, hook_dir: Path | None) -> None:
    import execution.simterminal.factory as factory

    original = factory.build_from_config

    def build_from_config(*args: Any, **kwargs: Any) -> Any:
        terminal = original(*args, **kwargs)
        threading.Thread(target=run_faults, args=(terminal, seed, period, probability, hook_dir),
                         name="chaos-faults", daemon=True).start()
        return terminal

    factory.build_from_config = build_from_config


def install_running_flag() -> None:
    import bot

    original = bot.BotApp.run

    def run(app: Any, duration: float | None = None) -> int:
        RUNNING.set()
        return original(app, duration)

    bot.BotApp.run = run  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    import bot
    from tests.recovery.crashing_bot import install_from_env

    env = os.environ
    hook_dir = Path(env["BOT_HOOK_DIR"]) if env.get("BOT_HOOK_DIR") else None
    install_faults(int(env.get("CHAOS_BOT_SEED", "1")), float(env.get("CHAOS_FAULT_PERIOD", "0.25")),
                   float(env.get("CHAOS_FAULT_PROBABILITY", "0.5")), hook_dir)
    install_running_flag()
    install_from_env()
    return bot.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
