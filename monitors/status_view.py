"""``bot.py status``: reads the runtime files (never the live objects) and shows them.

It works while the bot runs and after it stopped, from another process, because everything it
reads was written atomically.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from monitors.health import HEALTH_FILE
from state.instance_lock import InstanceLock
from state.store import load_json_with_fallback


def collect_status(runtime_dir: Path) -> dict[str, Any]:
    runtime_dir = Path(runtime_dir)
    health_path = runtime_dir / HEALTH_FILE
    if not health_path.exists():
        return {"found": False, "runtime_dir": str(runtime_dir),
                "message": f"no {HEALTH_FILE} in {runtime_dir}: the bot has not run with this runtime folder"}
    health = load_json_with_fallback(health_path, {}).data or {}
    running = InstanceLock(runtime_dir).is_held_elsewhere()
    written = health.get("written_at_epoch")
    age = None if written is None else round(time.time() - float(written), 1)
    state_dir = runtime_dir / "state"
    state = {}
    if state_dir.is_dir():
        for path in sorted(state_dir.glob("*.json")):
            state[path.stem] = load_json_with_fallback(path, {}).data
    return {"found": True, "runtime_dir": str(runtime_dir), "running": running,
            "health_age_s": age, "health": health, "state": state}


def _fmt_age(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value):.1f}s"


def render_status(status: dict[str, Any]) -> str:
    if not status.get("found"):
        return status.get("message", "no status")
    health = status["health"]
    lines = []
    running = "RUNNING" if status["running"] else "STOPPED"
    lines.append(f"bot {health.get('version', '?')}  {running}  (pid {health.get('pid')}, "
                 f"health written {_fmt_age(status.get('health_age_s'))} ago, status {health.get('status')})")
    mode = health.get("mode", {})
    lines.append(f"mode {mode.get('mode', '?')}  broker {mode.get('broker', '?')}  "
                 f"config version {health.get('config', {}).get('config_version', '?')}")
    config = health.get("config", {})
    if config.get("last_error"):
        lines.append(f"config: last edit REJECTED: {config['last_error']}")
    lines.append("")
    lines.append(f"{'thread':<20}{'status':<10}{'heartbeat':>10}{'steps':>8}{'errors':>8}{'restarts':>9}  last problem")
    for name, thread in sorted(health.get("threads", {}).items()):
        lines.append(f"{name:<20}{thread.get('status', '?'):<10}{_fmt_age(thread.get('heartbeat_age_s')):>10}"
                     f"{thread.get('steps', '-')!s:>8}{thread.get('errors', '-')!s:>8}"
                     f"{thread.get('restarts', 0)!s:>9}  {thread.get('last_problem') or thread.get('last_error') or ''}")
    broker = health.get("broker", {})
    if broker:
        link = "connected" if broker.get("connected") else "DISCONNECTED"
        last = broker.get("last_error") or {}
        lines.insert(2, f"broker: {link} (login {broker.get('login')} on {broker.get('server')}, "
                        f"reconnects {broker.get('reconnects', 0)}"
                        + (f", last error {last.get('code')} {last.get('message')}" if last else "") + ")")
    trading = health.get("trading", {})
    if trading:
        state = trading.get("state", "?")
        reason = f" - {trading['reason']}" if trading.get("reason") else ""
        recon = trading.get("reconciliation") or "not run yet"
        lines.insert(3, f"trading: {state}{reason}   last reconciliation: {recon}")
    account = health.get("account", {})
    if account and "balance" in account:
        lines.insert(4, f"account {account.get('login')}: balance {account['balance']:.2f} equity "
                        f"{account['equity']:.2f} {account.get('currency', '')}, free margin "
                        f"{account.get('margin_free', 0):.2f}")
    positions = (health.get("positions") or {}).get("broker") or []
    lines.append("")
    if positions:
        lines.append(f"{'open position':<14}{'ticket':>10} {'side':<5}{'volume':>8}{'entry':>12}{'sl':>12}{'tp':>12}{'P&L':>10}")
        for p in positions:
            lines.append(f"{p['symbol']:<14}{p['ticket']:>10} {p['side']:<5}{p['volume']:>8g}{p['price_open']:>12g}"
                         f"{p['sl']:>12g}{p['tp']:>12g}{p['profit']:>10.2f}")
    else:
        lines.append("no open positions")
    today = health.get("results_today") or {}
    lines.append("")
    if today:
        lines.append(f"{'today (UTC)':<14}{'trades':>7}{'wins':>6}{'P&L':>10}{'avg R':>7}")
        for name, row in sorted(today.items()):
            avg = "-" if row.get("avg_r") is None else f"{row['avg_r']:.2f}"
            lines.append(f"{name:<14}{row['trades']:>7}{row['wins']:>6}{row['pnl']:>10.2f}{avg:>7}")
    else:
        lines.append("no trades closed today (UTC)")
    perf = ((health.get("threads", {}).get("micro-scalp") or {}).get("detail") or {}).get("performance")
    if perf and perf.get("trades"):
        pf = perf.get("profit_factor")
        win = perf.get("win_rate")
        lat = (perf.get("latency_ms") or {}).get("pipeline") or {}
        lines.append("")
        lines.append(f"micro_scalp all-time: {perf['trades']} trades, win rate "
                     f"{'-' if win is None else f'{win * 100:.0f}%'}, profit factor {'-' if pf is None else f'{pf:.2f}'}, "
                     f"avg R {perf.get('avg_r', 0):.2f}, streak {perf.get('current_streak', 0)}, "
                     f"order latency mean {lat.get('mean_ms', '-')} ms p95 {lat.get('p95_ms', '-')} ms")
    strategies = health.get("strategies", {})
    if strategies:
        lines.append("")
        lines.append(f"{'strategy':<14}{'enabled':<9}symbols / note")
        for name, info in strategies.items():
            note = ",".join(info.get("symbols", [])) or "-"
            if not info.get("available", True):
                note += f"  ({info.get('note')})"
            lines.append(f"{name:<14}{'yes' if info.get('enabled') else 'no':<9}{note}")
    return "\n".join(lines)
