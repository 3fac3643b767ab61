"""From the closed trades and equity samples of a run to ``trades.csv`` rows and statistics.

Pure functions: no I/O except the CSV writer, no clock. Definitions used in ``report.json``:

- ``net_pnl``: sum of the trades' P&L as the registry records it (closing deals' profit plus
  every commission and fee of the position, entry included), account currency.
- ``fees``: commissions and fees paid (positive), already inside ``net_pnl``.
- ``win_rate``: trades with P&L > 0 over all trades, percent.
- ``profit_factor``: gross profit / gross loss (null without a losing trade).
- ``expectancy``: net P&L per trade; ``avg_r`` (= expectancy in R): mean price-based R
  (the move in the trade's favour in units of its initial stop distance).
- ``max_drawdown``: the deepest fall from a running peak, in money and percent of the peak.
  Overall it is measured on the account equity sampled at every step (open positions marked
  to market); per strategy on its realised equity (starting balance plus its closed trades).
- ``longest_losing_streak``: most consecutive losing trades (by exit time).
- ``exposure_pct``: share of the replayed market time with at least one position open.
- ``bars_per_s``: bars replayed (per symbol, summed over symbols) per second of wall time spent
  stepping (overall), or spent in that strategy's monitor steps (per strategy).
"""
from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from state.registry import Trade
from state.store import atomic_write_bytes

TRADE_COLUMNS = ("ticket", "strategy", "symbol", "side", "setup", "volume", "entry_time", "entry", "sl", "tp",
                 "exit_time", "exit", "final_sl", "r", "pnl", "fees", "exit_reason", "entry_reason", "client_id",
                 "segment")


def _setup(trade: Trade) -> str:
    meta = trade.meta or {}
    return str(meta.get("setup") or meta.get("checker") or meta.get("pattern_type") or "")


def trade_row(trade: Trade, segment: int, fees: float, volume: float | None) -> dict[str, Any]:
    """One ``trades.csv`` row: entry, exit, initial SL, TP, R, P&L, reasons, times (UTC ISO)."""
    return {
        "ticket": trade.ticket, "strategy": trade.strategy, "symbol": trade.symbol, "side": trade.side,
        "setup": _setup(trade), "volume": volume if volume is not None else trade.volume,
        "entry_time": trade.opened_at, "entry": trade.entry, "sl": trade.initial_sl, "tp": trade.tp,
        "exit_time": trade.closed_at or "", "exit": trade.exit_price, "final_sl": trade.sl, "r": trade.r,
        "pnl": trade.pnl, "fees": fees, "exit_reason": trade.close_reason or "",
        "entry_reason": trade.reasons[0] if trade.reasons else "", "client_id": trade.client_id,
        "segment": segment,
    }


def sort_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["segment"], r["exit_time"], r["ticket"]))


def trades_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The CSV text (``\\n`` line ends, floats in Python's shortest round-trip form)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TRADE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in TRADE_COLUMNS})
    return out.getvalue()


def write_trades_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    atomic_write_bytes(Path(path), trades_csv(rows).encode("utf-8"), keep_backup=False)


# --------------------------------------------------------------------------------------------
# statistics

def max_drawdown(values: Sequence[float]) -> tuple[float, float]:
    """(deepest fall from a running peak in money, the same in percent of that peak); both >= 0."""
    peak = -math.inf
    worst, worst_pct = 0.0, 0.0
    for value in values:
        if value > peak:
            peak = value
        fall = peak - value
        if fall > worst:
            worst = fall
            worst_pct = fall / peak * 100.0 if peak > 0 else 0.0
    return round(worst, 2), round(worst_pct, 3)


def longest_losing_streak(pnls: Iterable[float]) -> int:
    longest = current = 0
    for pnl in pnls:
        current = current + 1 if pnl < 0 else 0
        longest = max(longest, current)
    return longest


def exposure_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length of the union of [start, end] intervals (seconds)."""
    total = 0.0
    cur_start = cur_end = None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def trade_stats(rows: Sequence[dict[str, Any]], starting_balance: float, replay_seconds: float) -> dict[str, Any]:
    """Statistics of a set of closed trades (module docstring); rows in exit order."""
    pnls = [float(r["pnl"] or 0.0) for r in rows]
    rs = [float(r["r"]) for r in rows if r["r"] is not None]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_profit, gross_loss = sum(wins), -sum(losses)
    net = round(sum(pnls), 2)
    equity = [starting_balance]
    for pnl in pnls:
        equity.append(equity[-1] + pnl)
    dd, dd_pct = max_drawdown(equity)
    intervals = [(_ts(r["entry_time"]), _ts(r["exit_time"])) for r in rows if r["exit_time"]]
    exposure = exposure_seconds(intervals)
    win_rs = [float(r["r"]) for r in rows if r["r"] is not None and float(r["pnl"] or 0) > 0]
    loss_rs = [float(r["r"]) for r in rows if r["r"] is not None and float(r["pnl"] or 0) < 0]
    reasons: dict[str, int] = {}
    for r in rows:
        key = _reason_kind(str(r["exit_reason"]))
        reasons[key] = reasons.get(key, 0) + 1
    symbols: dict[str, dict[str, Any]] = {}
    for r, pnl in zip(rows, pnls):
        entry = symbols.setdefault(r["symbol"], {"trades": 0, "net_pnl": 0.0})
        entry["trades"] += 1
        entry["net_pnl"] = round(entry["net_pnl"] + pnl, 2)
    n = len(rows)
    return {
        "trades": n,
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": round(len(wins) / n * 100.0, 2) if n else None,
        "gross_profit": round(gross_profit, 2),
        "gross_loss": round(gross_loss, 2),
        "profit_factor": round(gross_profit / gross_loss, 3) if gross_loss > 0 else None,
        "net_pnl": net,
        "expectancy": round(net / n, 2) if n else None,
        "expectancy_r": round(sum(rs) / len(rs), 4) if rs else None,
        "avg_r": round(sum(rs) / len(rs), 4) if rs else None,
        "avg_win_r": round(sum(win_rs) / len(win_rs), 4) if win_rs else None,
        "avg_loss_r": round(sum(loss_rs) / len(loss_rs), 4) if loss_rs else None,
        "fees": round(sum(float(r["fees"] or 0.0) for r in rows), 2),
        "max_drawdown": dd,
        "max_drawdown_pct": dd_pct,
        "drawdown_basis": "realised (closed trades)",
        "longest_losing_streak": longest_losing_streak(pnls),
        "exposure_pct": round(exposure / replay_seconds * 100.0, 3) if replay_seconds > 0 else None,
        "exit_reasons": dict(sorted(reasons.items())),
        "by_symbol": dict(sorted(symbols.items())),
    }


def _reason_kind(reason: str) -> str:
    """``broker:sl`` stays whole; otherwise the text before the first colon (``time exit``...)."""
    if reason.startswith("broker:"):
        return reason
    return reason.split(":", 1)[0].strip() or "unknown"
