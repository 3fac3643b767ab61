"""Hot reload: applied with a diff, rejected keeping the old config, never half-written."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from config.loader import load_config
from config.watcher import ConfigHolder, ConfigWatcher
from monitors.clock import FakeClock


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def make(config_dir: Path, settle: float = 0.3, clock: FakeClock | None = None):
    holder = ConfigHolder(load_config(config_dir))
    watcher = ConfigWatcher(config_dir, holder, clock or FakeClock(), settle_seconds=settle)
    return holder, watcher


def test_unchanged_files_do_nothing(config_dir: Path) -> None:
    holder, watcher = make(config_dir)
    outcome = watcher.poll()
    assert not outcome.applied and not outcome.rejected and holder.current.version == 1


def test_valid_edit_is_applied_with_a_diff_and_listeners_see_it(config_dir: Path, caplog) -> None:
    holder, watcher = make(config_dir)
    seen = []
    holder.on_change(lambda old, new, changes: seen.append((old.version, new.version, [str(c) for c in changes])))
    data = json.loads((config_dir / "micro_scalp.json").read_text())
    data["interval_seconds"] = 10
    write_json(config_dir / "micro_scalp.json", data)
    with caplog.at_level(logging.INFO):
        outcome = watcher.poll()
    assert outcome.applied
    assert holder.current.micro_scalp.interval_seconds == 10
    assert holder.current.version == 2
    assert seen == [(1, 2, ["micro_scalp.json: interval_seconds: 5 -> 10"])]
    assert "micro_scalp.json: interval_seconds: 5 -> 10" in caplog.text


def test_invalid_edit_is_rejected_with_the_check_config_message(config_dir: Path, caplog) -> None:
    holder, watcher = make(config_dir)
    rejected = []
    holder.on_reject(lambda problems: rejected.append([str(p) for p in problems]))
    data = json.loads((config_dir / "bot.json").read_text())
    data["risk"]["risk_percent"] = 99
    write_json(config_dir / "bot.json", data)
    with caplog.at_level(logging.ERROR):
        outcome = watcher.poll()
    expected = "bot.json: risk.risk_percent: Input should be less than or equal to 5 (got 99)"
    assert [str(p) for p in outcome.rejected] == [expected]
    assert rejected == [[expected]]
    assert expected in caplog.text
    assert holder.current.bot.risk.risk_percent == 0.5 and holder.current.version == 1
    # The same broken content is reported once, not on every poll.
    assert watcher.poll().rejected == []
    assert watcher.rejections == 1


def test_a_file_written_in_two_halves_is_not_applied_half_written(config_dir: Path) -> None:
    holder, watcher = make(config_dir)
    path = config_dir / "range_scalp.json"
    data = json.loads(path.read_text())
    data["exit_interval_seconds"] = 120
    text = json.dumps(data)
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    outcome = watcher.poll()
    assert not outcome.applied
    assert holder.current.range_scalp.exit_interval_seconds == 300
    path.write_text(text, encoding="utf-8")
    outcome = watcher.poll()
    assert outcome.applied and holder.current.range_scalp.exit_interval_seconds == 120


class EditingClock(FakeClock):
    """A clock whose waits let an 'editor' write the next version while the watcher settles."""

    def __init__(self, edits: list) -> None:
        super().__init__()
        self.edits = edits

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if self.edits:
            self.edits.pop(0)()
        return super().wait(event, timeout)


def test_a_file_still_changing_is_not_applied_until_it_settles_and_rapid_edits_settle_on_the_last(config_dir: Path) -> None:
    path = config_dir / "order_flow.json"
    base = json.loads(path.read_text())

    def version(n: float):
        return lambda: write_json(path, {**base, "interval_seconds": n})

    clock = EditingClock([version(7), version(8)])
    holder, watcher = make(config_dir, clock=clock)
    version(6)()
    first = watcher.poll()  # sees 6, settles, but the editor wrote 7 meanwhile
    assert first.waiting and holder.current.order_flow.interval_seconds == 5
    second = watcher.poll()  # sees 7, settles, editor wrote 8
    assert second.waiting and holder.current.order_flow.interval_seconds == 5
    third = watcher.poll()  # sees 8, stable
    assert third.applied and holder.current.order_flow.interval_seconds == 8
    assert holder.current.version == 2  # one swap for the whole burst of edits


def test_keys_that_need_a_restart_are_reported_and_not_applied(config_dir: Path, caplog) -> None:
    holder, watcher = make(config_dir)
    data = json.loads((config_dir / "bot.json").read_text())
    data["broker"] = "mt5"
    data["logging"]["level"] = "DEBUG"
    write_json(config_dir / "bot.json", data)
    with caplog.at_level(logging.WARNING):
        outcome = watcher.poll()
    assert outcome.applied
    assert [str(c) for c in outcome.needs_restart] == ['bot.json: broker: "sim" -> "mt5"']
    assert holder.current.bot.broker == "sim"  # kept
    assert holder.current.bot.logging.level == "DEBUG"  # applied
    assert "needs a restart" in caplog.text


def test_switching_a_strategy_off_and_on_again(config_dir: Path) -> None:
    holder, watcher = make(config_dir)
    path = config_dir / "micro_scalp.json"
    data = json.loads(path.read_text())
    write_json(path, {**data, "enabled": False})
    assert watcher.poll().applied and holder.current.micro_scalp.active_symbols() == []
    write_json(path, {**data, "enabled": True})
    assert watcher.poll().applied and holder.current.micro_scalp.active_symbols() == ["XAUUSD", "EURUSD", "BTCUSD"]


def test_a_snapshot_never_changes_under_a_reader(config_dir: Path) -> None:
    holder, watcher = make(config_dir)
    taken = holder.current
    write_json(config_dir / "micro_scalp.json", {**json.loads((config_dir / "micro_scalp.json").read_text()),
                                                  "interval_seconds": 9})
    watcher.poll()
    assert taken.micro_scalp.interval_seconds == 5 and holder.current.micro_scalp.interval_seconds == 9
