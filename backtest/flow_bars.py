"""Order-flow bars from a recorded trades file, through the same delta engine the bot runs live.

    python -m backtest.flow_bars --trades FILE [--timeframe 1m] [--out FILE.csv]

One row per bar that has trades: time (UTC bar start), open, high, low, close, buy_volume,
sell_volume, delta, cvd (running CVD at the bar's last trade, from the file's first trade), trades.
Bars with no trades are not emitted, as on an exchange chart.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from engines.order_flow import OrderFlowEngine
from feeds.trade_readers import TradeFileError, read_trades
from state.store import atomic_write_bytes

BAR_COLUMNS = ["time", "open", "high", "low", "close", "buy_volume", "sell_volume", "delta", "cvd", "trades"]
_TIMEFRAME = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def timeframe_seconds(timeframe: str) -> int:
    """'1m' -> 60. Accepts <n>s, <n>m, <n>h, 1d; the length must divide a day evenly."""
    match = _TIMEFRAME.match(timeframe.strip().lower())
    if not match:
        raise ValueError(f"timeframe {timeframe!r}: expected <number><s|m|h|d>, e.g. 1m, 5m, 1h")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 1 or 86400 % seconds:
        raise ValueError(f"timeframe {timeframe!r}: the bar length must divide one day evenly")
    return seconds


def flow_bars(trades_path: str | Path, timeframe: str = "1m") -> pd.DataFrame:
    """Replay ``trades_path`` through ``OrderFlowEngine`` and return one row per bar."""
    seconds = timeframe_seconds(timeframe)
    tape = read_trades(trades_path)
    engine = OrderFlowEngine(windows_seconds=(seconds,), bar_seconds=(seconds,), bar_history=None)
    symbol = "replay"
    result = engine.add_trades(symbol, tape.ids, tape.price, tape.qty, tape.time_ms, tape.is_buyer_maker)
    if result.accepted == 0:
        raise TradeFileError(f"{trades_path}: no usable trades")
    bars = engine.bars(symbol, seconds, include_forming=True)
    frame = pd.DataFrame({
        "time": pd.to_datetime([b.start_ms for b in bars], unit="ms", utc=True),
        "open": [b.open for b in bars],
        "high": [b.high for b in bars],
        "low": [b.low for b in bars],
        "close": [b.close for b in bars],
        "buy_volume": [b.buy_volume for b in bars],
        "sell_volume": [b.sell_volume for b in bars],
        "delta": [b.delta for b in bars],
        "cvd": [b.cvd for b in bars],
        "trades": [b.trades for b in bars],
    }, columns=BAR_COLUMNS)
    frame.attrs["stats"] = engine.stats(symbol)  # duplicates, gaps... for the caller to report
    return frame


def bars_to_csv(frame: pd.DataFrame) -> str:
    out = frame.copy()
    out["time"] = out["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out.to_csv(index=False, float_format="%.10g", lineterminator="\n")


def write_flow_bars(trades_path: str | Path, timeframe: str, out_path: str | Path) -> pd.DataFrame:
    """Compute the bars and write them as CSV (atomically: a crash never leaves half a file)."""
    frame = flow_bars(trades_path, timeframe)
    atomic_write_bytes(Path(out_path), bars_to_csv(frame).encode("utf-8"), keep_backup=False)
    return frame


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: ``bot.py flow-bars`` passes its remaining arguments here. Returns an exit code."""
    parser = argparse.ArgumentParser(prog="flow-bars", description="order-flow bars from a trades file")
    parser.add_argument("--trades", required=True, help="Binance aggTrades dump or the @trade capture CSV")
    parser.add_argument("--timeframe", default="1m", help="bar length: 1m (default), 5m, 30s, 1h ...")
    parser.add_argument("--out", help="CSV file to write; default: print to stdout")
    args = parser.parse_args(argv)
    try:
        if args.out:
            frame = write_flow_bars(args.trades, args.timeframe, args.out)
            stats = frame.attrs.get("stats", {})
            print(f"wrote {len(frame)} bars to {args.out} ({stats.get('accepted', 0)} trades, "
                  f"{stats.get('gaps', 0)} id gaps, {stats.get('duplicates', 0)} duplicates)")
        else:
            sys.stdout.write(bars_to_csv(flow_bars(args.trades, args.timeframe)))
    except (TradeFileError, ValueError, OSError) as exc:
        print(f"flow-bars: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
