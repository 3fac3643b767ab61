"""One backtest run, end to end: data -> config -> segments replayed -> report files.

``run_backtest(options)`` is what the CLI calls; tests and the benchmark call it too. It writes
into ``options.report_dir``: ``report.json``, ``trades.csv``, ``equity.png``,
``r_distribution.png``, plus the run's ``config/`` copy (``config/segment-N/`` when the data
falls into several segments), ``sim_symbols.json``,
``journal.jsonl`` and the state files (``state/segment-N/``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence, TextIO

from backtest.charts import equity_chart, r_distribution_chart
from backtest.data import FeedPlan, Segment, plan_segments, resolve_feeds, write_specs
from backtest.driver import SegmentResult, SegmentRunner
from backtest.ids import counter_client_ids
from backtest.progress import Progress
from backtest.report import build_report
from backtest.results import sort_rows, trade_row, write_trades_csv
from backtest.run_config import prepare_config
from state.store import atomic_write_json

PROJECT_DIR = Path(__file__).resolve().parent.parent
REPORT_FILES = {"report": "report.json", "trades": "trades.csv", "equity_chart": "equity.png",
                "r_chart": "r_distribution.png", "journal": "journal.jsonl", "config": "config/"}


@dataclass
class BacktestOptions:
    data: Sequence[str]
    report_dir: Path
    strategies: Sequence[str] = ("micro_scalp", "range_scalp", "order_flow")
    symbols: Sequence[str] | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    config_dir: Path = PROJECT_DIR / "config"
    specs: Path | None = None
    data_format: str | None = None
    utc_offset_hours: float | None = None
    starting_balance: float | None = None
    bars: str = "direct"
    charts: bool = True
    durable_state: bool = False  # live StateStore/Journal with fsync per write (benchmark comparison)
    cadence: str = "bar"  # "bar": micro/flow at every bar close; "live": at their interval_seconds
    guard: bool = True  # the trading guard (daily loss, drawdown, loss streak...) as in bot.py


@dataclass
class BacktestOutcome:
    report: dict[str, Any]
    rows: list[dict[str, Any]]
    results: list[SegmentResult]
    feeds: list[FeedPlan]
    segments: list[Segment]
    notes: list[str] = field(default_factory=list)


def run_backtest(options: BacktestOptions, progress_stream: TextIO | None = None,
                 show_progress: bool = True) -> BacktestOutcome:
    """Run it. Raises ``BacktestDataError``/``DataFileError``/``TradeFileError`` (bad input),
    ``ConfigError`` (bad config) and ``BacktestError`` (the run could not complete)."""
    report_dir = Path(options.report_dir)
    feeds, notes = resolve_feeds(options.data, options.symbols, fmt=options.data_format,
                                 utc_offset_hours=options.utc_offset_hours, specs_path=options.specs)
    segments = plan_segments(feeds, options.date_from, options.date_to)
    replayed = {symbol for segment in segments for symbol in segment.symbols}
    notes = notes + [n for f in feeds if f.symbol in replayed for n in f.notes]
    report_dir.mkdir(parents=True, exist_ok=True)
    # One config copy per segment (each names only the symbols its terminal replays), checked
    # before anything runs: config/ for a single segment, config/segment-N/ otherwise.
    configs = []
    overrides: list[str] = []
    for segment in segments:
        folder = report_dir / "config" / (f"segment-{segment.number}" if len(segments) > 1 else "")
        snapshot, changes = prepare_config(options.config_dir, folder, segment.symbols, options.strategies,
                                           options.starting_balance)
        configs.append((folder, snapshot))
        overrides += [c for c in changes if c not in overrides]
    specs_path = write_specs(feeds, report_dir / "sim_symbols.json")
    snapshot = configs[0][1]
    if options.cadence == "live":  # the grid of the live loop: the shortest interval of micro/flow
        intervals = [snapshot.strategy(n).interval_seconds for n in ("micro_scalp", "order_flow")
                     if n in options.strategies]
        if intervals:
            segments = plan_segments(feeds, options.date_from, options.date_to, max(1, int(min(intervals))))
    starting_balance = float(snapshot.bot.sim.starting_balance)
    progress = Progress(sum(len(s.steps) for s in segments), stream=progress_stream, enabled=show_progress)
    results: list[SegmentResult] = []
    balance = starting_balance
    client_ids = counter_client_ids()  # one counter for the whole run: ids never repeat across segments
    for segment, (folder, segment_snapshot) in zip(segments, configs):
        runner = SegmentRunner(segment, segment_snapshot, folder, report_dir, specs_path,
                               list(options.strategies), balance, bars=options.bars, progress=progress.advance,
                               durable_state=options.durable_state, cadence=options.cadence,
                               guard=options.guard, id_factory=client_ids)
        result = runner.run()
        results.append(result)
        balance = result.final_balance
    progress.finish()
    rows = sort_rows(trade_row(t, r.number, r.fees.get(t.ticket, 0.0), r.volumes.get(t.ticket))
                     for r in results for t in r.trades)
    write_trades_csv(rows, report_dir / REPORT_FILES["trades"])
    if options.charts:
        currency = snapshot.bot.sim.currency
        equity_chart([{"time": r.equity_time, "equity": r.equity, "balance": r.balance,
                       "label": f"{', '.join(r.symbols)} {r.start:%Y-%m-%d}"} for r in results],
                     report_dir / REPORT_FILES["equity_chart"], currency)
        r_distribution_chart(rows, report_dir / REPORT_FILES["r_chart"])
    files = {k: v for k, v in REPORT_FILES.items() if options.charts or k not in ("equity_chart", "r_chart")}
    report = build_report(feeds=feeds, segments=segments, results=results, rows=rows,
                          strategies=list(options.strategies), overrides=overrides, notes=notes,
                          starting_balance=starting_balance, currency=snapshot.bot.sim.currency,
                          date_from=options.date_from, date_to=options.date_to, bar_mode=options.bars, files=files,
                          cadence=options.cadence)
    report["trading_guard"] = options.guard
    notes = report["notes"]
    json.dumps(report)  # everything in it must be JSON (fails here, not half-written)
    atomic_write_json(report_dir / REPORT_FILES["report"], report, keep_backup=False)
    return BacktestOutcome(report, rows, results, feeds, segments, notes)
