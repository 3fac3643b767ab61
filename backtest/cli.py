"""``python bot.py backtest``: replay recorded data through the live strategies, write a report.

    python bot.py backtest --data FILE_OR_DIR [FILE_OR_DIR ...] [--symbols XAUUSD,EURUSD]
        [--from DATE] [--to DATE] [--strategies micro,range,flow] [--config-dir DIR]
        [--report DIR] [--balance AMOUNT] [--format FMT] [--utc-offset HOURS] [--specs FILE]
        [--cadence bar|live] [--no-guard] [--log-level LEVEL] [--no-progress] [--no-charts]

Dates are UTC: ``2023-04-20`` or ``2023-04-20T13:30`` (an offset such as ``+02:00`` is
honoured). A date without a time in ``--to`` means the end of that day. See
``backtest/data.py`` for how files become symbols and how their timezones are read.

Exit codes: 0 done; 1 the run failed (a monitor kept failing, an unexpected error: see the
log in the report folder); 2 usage, config or data error (a bad data file is named with its
line).
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
PROJECT_DIR = Path(__file__).resolve().parent.parent
LOG_FILE = "backtest.log"


class _Parser(argparse.ArgumentParser):
    """argparse that returns (via an exception) instead of exiting the process on bad usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def parse_date(text: str, end_of_day: bool = False) -> datetime:
    """``YYYY-MM-DD`` or an ISO date-time; naive means UTC. A bare date in ``--to`` is the end
    of that day (the next midnight)."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    parsed = parsed.astimezone(timezone.utc)
    if end_of_day and len(value) == 10:
        parsed += timedelta(days=1)
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bot.py backtest",
                     description="Replay recorded market data through the live monitors, executor and risk "
                                 "manager on a simulated clock, and write a report.")
    parser.add_argument("--data", nargs="+", required=True, metavar="FILE_OR_DIR",
                        help="bar or tick files (SYMBOL=FILE to name one), folders of them, or a folder with "
                             "sim_symbols.json such as data/")
    parser.add_argument("--symbols", default=None, help="comma-separated symbols of the data to backtest (default all)")
    parser.add_argument("--from", dest="date_from", default=None, metavar="DATE", help="start (UTC)")
    parser.add_argument("--to", dest="date_to", default=None, metavar="DATE", help="end (UTC; a date: end of that day)")
    parser.add_argument("--strategies", default="micro,range,flow", help="micro,range,flow (default all three)")
    parser.add_argument("--config-dir", type=Path, default=PROJECT_DIR / "config")
    parser.add_argument("--report", type=Path, default=None, metavar="DIR",
                        help="report folder (default runtime/backtests/<UTC time>); must be new or empty")
    parser.add_argument("--balance", type=float, default=None, help="starting balance (default bot.json sim)")
    parser.add_argument("--format", dest="data_format", default=None,
                        help="reader format for the files given (ohlc, mt5, mt5_utc, histdata_nt, histdata_ticks, "
                             "mt5_ticks, binance_book); default: detected")
    parser.add_argument("--utc-offset", type=float, default=None, metavar="HOURS",
                        help="file time = UTC + HOURS for the files given (MT5 exports are server time)")
    parser.add_argument("--specs", type=Path, default=None, metavar="FILE",
                        help="contract specs in the format of data/sim_symbols.json (default: that file)")
    parser.add_argument("--cadence", choices=("bar", "live"), default="bar",
                        help="bar: micro-scalp and order flow step at every bar close (default, fast); live: at "
                             "their interval_seconds (5 s) as the live loop, about ten times slower")
    parser.add_argument("--no-guard", action="store_true",
                        help="leave out the trading guard (daily loss, drawdown and loss-streak locks): the "
                             "strategies unprotected")
    parser.add_argument("--bars", choices=("direct", "refresh"), default="direct",
                        help="how the bar feed is read (default direct; see backtest/driver.py)")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help=f"level of {LOG_FILE} in the report folder (default WARNING)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--no-charts", action="store_true", help="skip equity.png and r_distribution.png")
    return parser


def _options(args: argparse.Namespace):
    from backtest.run_config import parse_strategies
    from backtest.runner import BacktestOptions

    try:
        strategies = parse_strategies(args.strategies)
    except ValueError as exc:
        raise _UsageError(f"--strategies: {exc}") from None
    try:
        date_from = parse_date(args.date_from) if args.date_from else None
        date_to = parse_date(args.date_to, end_of_day=True) if args.date_to else None
    except argparse.ArgumentTypeError as exc:
        raise _UsageError(f"--from/--to: {exc}") from None
    if date_from and date_to and date_to <= date_from:
        raise _UsageError("--to must be after --from")
    if args.balance is not None and not args.balance > 0:
        raise _UsageError("--balance must be positive")
    report = args.report or PROJECT_DIR / "runtime" / "backtests" / datetime.now(timezone.utc).strftime(
        "backtest-%Y%m%d-%H%M%S")
    if report.exists() and (not report.is_dir() or any(report.iterdir())):
        raise _UsageError(f"--report {report}: the folder exists and is not empty; choose a new one")
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    return BacktestOptions(data=args.data, report_dir=report, strategies=strategies, symbols=symbols,
                           date_from=date_from, date_to=date_to, config_dir=args.config_dir, specs=args.specs,
                           data_format=args.data_format, utc_offset_hours=args.utc_offset,
                           starting_balance=args.balance, bars=args.bars, charts=not args.no_charts,
                           cadence=args.cadence, guard=not args.no_guard)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``bot.py backtest`` passes the arguments after ``backtest``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        options = _options(args)
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)

    from backtest.data import BacktestDataError
    from backtest.driver import BacktestError
    from backtest.report import summary_table
    from backtest.runner import run_backtest
    from config.loader import ConfigError
    from execution.simterminal.market import FeedError
    from feeds.readers import DataFileError
    from feeds.trade_readers import TradeFileError

    report_dir = Path(options.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(report_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(getattr(logging, args.log_level))
    try:
        outcome = run_backtest(options, sys.stderr, show_progress=not args.no_progress)
    except (DataFileError, TradeFileError, FeedError) as exc:
        print(f"backtest: bad data file: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BacktestDataError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"backtest: the config in {options.config_dir} is invalid ({len(exc.problems)} problem(s)):",
              file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except BacktestError as exc:
        print(f"backtest failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a bug: keep the traceback in the log, say where it is
        logging.getLogger("backtest").critical("backtest failed", exc_info=True)
        print(f"backtest failed: {type(exc).__name__}: {exc} (traceback in {report_dir / LOG_FILE})",
              file=sys.stderr)
        traceback.print_exc(file=sys.stderr) if args.log_level == "DEBUG" else None
        return EXIT_FAILURE
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    for note in outcome.notes:
        print(f"note: {note}", file=sys.stderr)
    print(summary_table(outcome.report))
    print(f"report: {report_dir} (report.json, trades.csv"
          + (", equity.png, r_distribution.png" if options.charts else "") + ")")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
