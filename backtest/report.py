"""``report.json`` and the summary table, from the segment results of a run."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from backtest.data import FeedPlan, Segment
from backtest.driver import SegmentResult
from backtest.results import max_drawdown, trade_stats

REPORT_SCHEMA = 1
STRATEGY_ORDER = ("micro_scalp", "range_scalp", "order_flow")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()


def build_report(*, feeds: Sequence[FeedPlan], segments: Sequence[Segment], results: Sequence[SegmentResult],
                 rows: Sequence[dict[str, Any]], strategies: Sequence[str], overrides: Sequence[str],
                 notes: Sequence[str], starting_balance: float, currency: str, date_from: datetime | None,
                 date_to: datetime | None, bar_mode: str, files: dict[str, str],
                 cadence: str = "bar") -> dict[str, Any]:
    replay_seconds = float(sum(s.duration_s for s in segments))
    bars = sum(sum(r.bars.values()) for r in results)
    wall = sum(r.wall_seconds for r in results)
    final = results[-1] if results else None
    overall = trade_stats(rows, starting_balance, replay_seconds)
    equity = [v for r in results for v in r.equity]
    dd, dd_pct = max_drawdown(equity) if equity else (0.0, 0.0)
    overall.update(max_drawdown=dd, max_drawdown_pct=dd_pct, drawdown_basis="equity (marked to market each step)")
    realised = trade_stats(rows, starting_balance, replay_seconds)
    overall["max_drawdown_realised"] = realised["max_drawdown"]
    overall["max_drawdown_realised_pct"] = realised["max_drawdown_pct"]
    overall.update(bars_processed=bars, wall_seconds=round(wall, 3),
                   bars_per_s=round(bars / wall, 1) if wall > 0 else None)
    per_strategy: dict[str, Any] = {}
    for name in STRATEGY_ORDER:
        if name not in strategies:
            continue  # (the trading guard's step time is in segments[].counters and the monitor timings)
        mine = [r for r in rows if r["strategy"] == name]
        stats = trade_stats(mine, starting_balance, replay_seconds)
        steps = sum(r.timings[name].steps for r in results if name in r.timings)
        seconds = sum(r.timings[name].seconds for r in results if name in r.timings)
        errors = sum(r.timings[name].errors for r in results if name in r.timings)
        stats.update(bars_processed=bars, monitor_steps=steps, step_seconds=round(seconds, 3),
                     ms_per_step=round(seconds / steps * 1000.0, 3) if steps else None,
                     bars_per_s=round(bars / seconds, 1) if seconds > 0 else None, step_errors=errors)
        per_strategy[name] = stats
    open_at_end = [dict(item, segment=r.number) for r in results for item in r.open_at_end]
    why = why_no_trade_totals(results)
    notes = list(notes) + stale_flow_notes(why, cadence)
    return {
        "schema_version": REPORT_SCHEMA,
        "strategies": list(strategies),
        "period": {"from": date_from.isoformat() if date_from else None,
                   "to": date_to.isoformat() if date_to else None},
        "data": [{"symbol": f.symbol, "file": str(f.path), "kind": f.kind, "format": f.format,
                  "utc_offset_hours": f.utc_offset_hours, "bar_seconds": f.bar_seconds, "first": f.first.isoformat(),
                  "end": f.end.isoformat(), "replayed_until": _iso(f.replay_end_s),
                  "bars_not_replayed": f.bars_not_replayed} for f in feeds],
        "account": {"currency": currency, "starting_balance": round(starting_balance, 2),
                    "final_balance": round(final.final_balance, 2) if final else round(starting_balance, 2),
                    "final_equity": round(final.final_equity, 2) if final else round(starting_balance, 2),
                    "open_at_end": open_at_end},
        "overall": overall,
        "per_strategy": per_strategy,
        "segments": [{"number": r.number, "symbols": r.symbols, "start": r.start.isoformat(), "end": r.end.isoformat(),
                      "bars": r.bars, "steps": r.steps, "wall_seconds": round(r.wall_seconds, 3),
                      "bars_per_s": round(sum(r.bars.values()) / r.wall_seconds, 1) if r.wall_seconds > 0 else None,
                      "starting_balance": round(r.starting_balance, 2), "final_balance": round(r.final_balance, 2),
                      "final_equity": round(r.final_equity, 2), "trades": len(r.trades),
                      "counters": r.counters} for r in results],
        "why_no_trade": why,
        "replayed_seconds": replay_seconds,
        "cadence": cadence,
        "bar_reading": bar_mode,
        "config_overrides": list(overrides),
        "notes": list(notes),
        "files": dict(files),
        "definitions": "see backtest/results.py (statistics) and backtest/driver.py (cadence, end of data)",
    }


def why_no_trade_totals(results: Sequence[SegmentResult]) -> dict[str, dict[str, Any]]:
    """Per strategy and symbol over all segments: decisions, trades and first failing gates."""
    out: dict[str, dict[str, Any]] = {}
    for result in results:
        for strategy, symbols in result.why_no_trade.items():
            for symbol, info in symbols.items():
                entry = out.setdefault(strategy, {}).setdefault(symbol, {"checks": 0, "trades": 0, "waiting_for": {}})
                entry["checks"] += info["checks"]
                entry["trades"] += info["trades"]
                for gate, count in info["waiting_for"].items():
                    entry["waiting_for"][gate] = entry["waiting_for"].get(gate, 0) + count
    for symbols in out.values():
        for entry in symbols.values():
            entry["waiting_for"] = dict(sorted(entry["waiting_for"].items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def stale_flow_notes(why: dict[str, dict[str, Any]], cadence: str) -> list[str]:
    """Say so when order flow read its ticks as stale at most bar-close steps (driver docstring)."""
    notes = []
    for symbol, info in why.get("order_flow", {}).items():
        stale = info["waiting_for"].get("flow_stale", 0)
        if cadence == "bar" and info["checks"] and stale / info["checks"] > 0.5:
            notes.append(f"order_flow {symbol}: the flow was stale at {stale / info['checks']:.0%} of the bar-close "
                         "steps (over bar recordings the newest simulated tick can be 15 s old at a close; "
                         "max_flow_age_seconds is lower): run with --cadence live for the live 5 s cadence")
    return notes


def _fmt(value: Any, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def summary_table(report: dict[str, Any]) -> str:
    """The table printed at the end of a run."""
    lines = []
    segments = report["segments"]
    span = "; ".join(f"{', '.join(s['symbols'])} {s['start'][:16].replace('T', ' ')} to "
                     f"{s['end'][:16].replace('T', ' ')}" for s in segments)
    overall = report["overall"]
    lines.append(f"backtest: {span} UTC")
    lines.append(f"{overall['bars_processed']:,} bars in {overall['wall_seconds']:.1f} s "
                 f"({_fmt(overall['bars_per_s'], ',.0f')} bars/s)")
    header = (f"{'strategy':<12} {'trades':>6} {'win%':>6} {'PF':>6} {'exp R':>7} {'net P&L':>11} {'max DD':>10} "
              f"{'streak':>6} {'expo%':>6} {'fees':>9} {'bars/s':>8}")
    lines.append(header)
    lines.append("-" * len(header))

    def row(name: str, s: dict[str, Any]) -> str:
        return (f"{name:<12} {s['trades']:>6} {_fmt(s['win_rate'], '.1f'):>6} {_fmt(s['profit_factor'], '.2f'):>6} "
                f"{_fmt(s['expectancy_r'], '+.3f'):>7} {s['net_pnl']:>11,.2f} {s['max_drawdown']:>10,.2f} "
                f"{s['longest_losing_streak']:>6} {_fmt(s['exposure_pct'], '.1f'):>6} {s['fees']:>9,.2f} "
                f"{_fmt(s.get('bars_per_s'), ',.0f'):>8}")

    for name, stats in report["per_strategy"].items():
        lines.append(row(name, stats))
    lines.append(row("overall", overall))
    account = report["account"]
    lines.append(f"balance {account['starting_balance']:,.2f} -> {account['final_balance']:,.2f} {account['currency']}"
                 f" (equity {account['final_equity']:,.2f}); max DD overall is on equity marked to market")
    if account["open_at_end"]:
        lines.append(f"{len(account['open_at_end'])} position(s) could not be closed at the end (market closed): "
                     "see report.json account.open_at_end")
    return "\n".join(lines)
