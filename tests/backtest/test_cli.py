"""``bot.py backtest`` arguments, exit codes and messages (backtest.cli.main)."""
from __future__ import annotations

import json

import pytest

from backtest.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main, parse_date
from tests.backtest.conftest import XAU_M1, XAU_M5, real_file, slice_lines

WINDOW = ["--from", "2023-04-18T06:00", "--to", "2023-04-18T07:00"]


def test_a_run_prints_the_summary_and_a_plain_progress_when_not_a_terminal(tmp_path, capsys):
    report = tmp_path / "report"
    code = main(["--data", str(real_file(XAU_M1)), *WINDOW, "--strategies", "micro", "--report", str(report),
                 "--no-charts"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert "micro_scalp" in out and "overall" in out and "60 bars in" in out
    assert f"report: {report}" in out
    assert "100.0%" in err and "\r" not in err  # stderr is not a terminal here: one line per 10 %
    assert "note:" not in err  # the whole recording replays: nothing to warn about
    assert json.loads((report / "report.json").read_text())["overall"]["bars_processed"] == 60
    assert (report / "backtest.log").is_file()


def test_a_bad_data_file_is_named_with_its_line(tmp_path, capsys):
    path = slice_lines(XAU_M1, tmp_path / "XAUUSD_M1.csv", 2, 300, header=True)
    lines = path.read_text().splitlines()
    parts = lines[41].split(",")
    parts[2], parts[3] = parts[3], parts[2]  # high below low on line 42
    lines[41] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n")
    code = main(["--data", str(path), "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"bad data file: {path}, line 42: high below low" in err


@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent.csv"], "no such file or folder"),
    (["--strategies", "micro,scalp"], "unknown strategy 'scalp'"),
    (["--from", "2023-04-19", "--to", "2023-04-18"], "--to must be after --from"),
    (["--from", "yesterday"], "'yesterday' is not a date"),
    (["--balance", "-5"], "--balance must be positive"),
    (["--from", "2030-01-01"], "no data to replay between --from and --to"),
])
def test_usage_errors_exit_2(tmp_path, capsys, args, message):
    base = ["--data", str(real_file(XAU_M1)), "--report", str(tmp_path / "r")]
    code = main(base + args if args[0] != "--data" else args + ["--report", str(tmp_path / "r")])
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_missing_data_argument_and_a_used_report_folder(tmp_path, capsys):
    assert main([]) == EXIT_USAGE
    assert "--data" in capsys.readouterr().err
    used = tmp_path / "used"
    used.mkdir()
    (used / "report.json").write_text("{}")
    assert main(["--data", str(real_file(XAU_M1)), "--report", str(used)]) == EXIT_USAGE
    assert "exists and is not empty" in capsys.readouterr().err


def test_a_bad_config_exits_2_naming_the_key(tmp_path, capsys, config_dir):
    bot = json.loads((config_dir / "bot.json").read_text())
    bot["risk"]["max_open_total"] = 0
    (config_dir / "bot.json").write_text(json.dumps(bot))
    code = main(["--data", str(real_file(XAU_M1)), *WINDOW, "--config-dir", str(config_dir),
                 "--report", str(tmp_path / "r")])
    assert code == EXIT_USAGE
    assert "bot.json: risk.max_open_total" in capsys.readouterr().err


def test_a_monitor_failing_every_step_exits_1(tmp_path, capsys, monkeypatch):
    from monitors.micro_scalp import MicroScalpMonitor

    def broken(self, now):
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(MicroScalpMonitor, "step", broken)
    code = main(["--data", str(real_file(XAU_M1)), *WINDOW, "--strategies", "micro", "--no-progress",
                 "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == EXIT_FAILURE
    assert "micro_scalp monitor failed 5 steps in a row" in err and "engine exploded" in err
    assert "engine exploded" in (tmp_path / "r" / "backtest.log").read_text()


def test_parse_date():
    assert parse_date("2023-04-18").isoformat() == "2023-04-18T00:00:00+00:00"
    assert parse_date("2023-04-18", end_of_day=True).isoformat() == "2023-04-19T00:00:00+00:00"
    assert parse_date("2023-04-18T10:30+02:00").isoformat() == "2023-04-18T08:30:00+00:00"


def test_notes_about_the_data_go_to_stderr(tmp_path, capsys):
    code = main(["--data", str(real_file(XAU_M5)), "--from", "2026-05-05T06:00", "--to", "2026-05-05T07:00",
                 "--strategies", "range", "--report", str(tmp_path / "report"), "--no-charts"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert "note: XAUUSD: 5-minute bars: micro_scalp and order_flow read M1 bars" in err
