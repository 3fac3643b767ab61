"""A backtest over a slice of the bundled real data: report files, consistent numbers, determinism,
--from/--to, the history the monitors see, and the end-of-data close."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backtest.runner import BacktestOptions, run_backtest
from tests.backtest.conftest import PROJECT_DIR, XAU_M1, real_file

FROM = datetime(2023, 4, 18, 6, 0, tzinfo=timezone.utc)
TO = datetime(2023, 4, 18, 12, 0, tzinfo=timezone.utc)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _options(report_dir: Path, **changes) -> BacktestOptions:
    values = dict(data=[str(real_file(XAU_M1))], report_dir=report_dir, date_from=FROM, date_to=TO,
                  config_dir=PROJECT_DIR / "config")
    values.update(changes)
    return BacktestOptions(**values)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("bt") / "report"
    outcome = run_backtest(_options(report_dir), show_progress=False)
    return report_dir, outcome


def _csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_every_report_file_is_written(first_run):
    report_dir, outcome = first_run
    for name in ("report.json", "trades.csv", "journal.jsonl", "sim_symbols.json", "config/bot.json"):
        assert (report_dir / name).is_file(), name
    for name in ("equity.png", "r_distribution.png"):
        blob = (report_dir / name).read_bytes()
        assert blob.startswith(PNG_SIGNATURE) and len(blob) > 5000, name
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["per_strategy"]) == {"micro_scalp", "range_scalp", "order_flow"}
    for key in ("trades", "win_rate", "profit_factor", "expectancy", "expectancy_r", "avg_r", "net_pnl",
                "max_drawdown", "longest_losing_streak", "exposure_pct", "fees", "bars_processed", "bars_per_s"):
        assert key in report["overall"], key
        assert key in report["per_strategy"]["micro_scalp"], key
    assert "range_scalp.json: execution.auto_execute = true (signals are executed)" in report["config_overrides"]


def test_report_numbers_agree_with_trades_csv_and_the_equity_curve(first_run):
    report_dir, outcome = first_run
    rows = _csv_rows(report_dir / "trades.csv")
    report = json.loads((report_dir / "report.json").read_text())
    assert len(rows) >= 3  # the window is a busy gold morning: the strategies do trade
    assert report["overall"]["trades"] == len(rows)
    total = round(sum(float(r["pnl"]) for r in rows), 2)
    assert report["overall"]["net_pnl"] == pytest.approx(total, abs=0.005)
    for name, stats in report["per_strategy"].items():
        mine = [r for r in rows if r["strategy"] == name]
        assert stats["trades"] == len(mine)
        assert stats["net_pnl"] == pytest.approx(round(sum(float(r["pnl"]) for r in mine), 2), abs=0.005)
        assert stats["fees"] == pytest.approx(round(sum(float(r["fees"]) for r in mine), 2), abs=0.005)
    wins = sum(1 for r in rows if float(r["pnl"]) > 0)
    assert report["overall"]["win_rate"] == pytest.approx(wins / len(rows) * 100, abs=0.01)
    account = report["account"]
    assert account["open_at_end"] == []
    assert account["final_balance"] == pytest.approx(account["starting_balance"] + total, abs=0.01)
    result = outcome.results[-1]
    assert result.equity[-1] == pytest.approx(account["final_balance"], abs=0.005)  # the curve ends there
    assert result.balance[-1] == pytest.approx(account["final_balance"], abs=0.005)
    assert result.equity[0] == pytest.approx(account["starting_balance"])
    # R and P&L agree in sign for every trade (commission aside, a loss in price is a loss in money)
    for r in rows:
        if float(r["r"]) < -0.05:
            assert float(r["pnl"]) < 0, r


def test_from_to_bound_the_replay(first_run):
    report_dir, outcome = first_run
    report = json.loads((report_dir / "report.json").read_text())
    segment = report["segments"][0]
    assert segment["start"] == FROM.isoformat()
    assert segment["end"] == "2023-04-18T11:59:59+00:00"  # inside the last bar before --to
    assert segment["bars"] == {"XAUUSD": 360}  # 06:00..12:00, one M1 bar a minute in this stretch
    assert report["overall"]["bars_processed"] == 360
    for row in _csv_rows(report_dir / "trades.csv"):
        assert FROM <= datetime.fromisoformat(row["entry_time"]) < TO
        assert datetime.fromisoformat(row["exit_time"]) < TO
    journal = [json.loads(line) for line in (report_dir / "journal.jsonl").read_text().splitlines()]
    assert min(datetime.fromisoformat(e["ts"]) for e in journal) >= FROM


def test_same_inputs_give_byte_identical_trades(first_run, tmp_path):
    report_dir, _ = first_run
    second = tmp_path / "again"
    run_backtest(_options(second), show_progress=False)
    first_csv = (report_dir / "trades.csv").read_bytes()
    assert first_csv.count(b"\n") >= 4
    assert (second / "trades.csv").read_bytes() == first_csv
    assert (second / "journal.jsonl").read_bytes() == (report_dir / "journal.jsonl").read_bytes()


def test_client_ids_are_a_counter_within_the_run(first_run):
    report_dir, _ = first_run
    rows = _csv_rows(report_dir / "trades.csv")
    suffixes = sorted(int(r["client_id"].rsplit("-", 1)[1], 16) for r in rows)
    assert suffixes == sorted(set(suffixes)) and suffixes[0] >= 1
    import execution.executor as executor_module
    assert executor_module.new_client_id.__module__ == "execution.executor"  # live function restored


def test_strategies_option_runs_only_those(tmp_path):
    outcome = run_backtest(_options(tmp_path / "micro", strategies=["micro_scalp"],
                                    date_to=datetime(2023, 4, 18, 8, 0, tzinfo=timezone.utc), charts=False),
                           show_progress=False)
    assert set(outcome.report["per_strategy"]) == {"micro_scalp"}
    assert {r["strategy"] for r in outcome.rows} <= {"micro_scalp"}
    config = json.loads((tmp_path / "micro" / "config" / "range_scalp.json").read_text())
    assert config["enabled"] is False
    assert not (tmp_path / "micro" / "equity.png").exists()


def test_recordings_of_different_periods_run_one_after_the_other_on_one_account(tmp_path):
    from tests.backtest.conftest import EUR_M1, slice_lines

    folder = tmp_path / "data"
    slice_lines(EUR_M1, folder / EUR_M1.name, 600, 1079, header=False)  # 2015-02-02, real lines
    slice_lines(XAU_M1, folder / XAU_M1.name, 2001, 2480, header=True)  # 2023-04-18, real lines
    outcome = run_backtest(BacktestOptions(data=[str(folder)], report_dir=tmp_path / "report",
                                           strategies=["micro_scalp"], config_dir=PROJECT_DIR / "config"),
                           show_progress=False)
    first, second = outcome.results
    assert (first.symbols, second.symbols) == (["EURUSD"], ["XAUUSD"])  # in time order
    assert first.start.year == 2015 and second.start.year == 2023
    assert second.starting_balance == first.final_balance  # one account across the segments
    report = outcome.report
    assert report["account"]["final_balance"] == pytest.approx(second.final_balance)
    assert report["overall"]["net_pnl"] == pytest.approx(second.final_balance - first.starting_balance, abs=0.01)
    assert [s["number"] for s in report["segments"]] == [1, 2]
    for n, symbol in ((1, "EURUSD"), (2, "XAUUSD")):
        bot = json.loads((tmp_path / "report" / "config" / f"segment-{n}" / "bot.json").read_text())
        assert list(bot["symbols"]) == [symbol]
    assert (tmp_path / "report" / "equity.png").read_bytes().startswith(PNG_SIGNATURE)


def test_the_trading_guard_halts_entries_as_live_and_can_be_left_out(tmp_path, config_dir):
    bot = json.loads((config_dir / "bot.json").read_text())
    bot.setdefault("reliability", {})["daily_loss_limit_percent"] = 0.2  # one losing trade halts the day
    (config_dir / "bot.json").write_text(json.dumps(bot))
    common = dict(strategies=["micro_scalp"], config_dir=config_dir, charts=False)
    guarded = run_backtest(_options(tmp_path / "guarded", **common), show_progress=False)
    free = run_backtest(_options(tmp_path / "free", guard=False, **common), show_progress=False)
    assert len(free.rows) > len(guarded.rows) >= 1
    history = guarded.report["segments"][0]["counters"]["trading_guard"]["history"]
    assert any(h.get("lock") == "daily_loss" for h in history), history
    refused = guarded.report["why_no_trade"]["micro_scalp"]["XAUUSD"]["waiting_for"]
    assert refused.get("trading_state", 0) + refused.get("executor.halted", 0) > 0, refused  # entries refused
    assert guarded.report["trading_guard"] is True and free.report["trading_guard"] is False
    assert "trading_guard" not in free.report["segments"][0]["counters"]
