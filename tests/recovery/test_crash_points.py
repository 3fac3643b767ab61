"""SIGKILL at chosen points of the trade path, then a restart (issue 8 item 4).

The bot runs as a real process through ``tests/recovery/crashing_bot.py`` (bot.py plus
test-only hooks in its own process; no production module knows about them). The hooks send
deterministic ideas through the running app's own executor and kill the process with SIGKILL
at the chosen point:

- ``before_send``: the intent is journaled, nothing reached the broker;
- ``after_send``: the broker filled the order, the reply was never processed;
- ``after_confirm``: the position was confirmed by ticket, the registry was never saved;
- ``mid_state_write``: in the middle of the atomic write of the registry's file (the old file
  already renamed to ``.bak``, the new one still a temporary file);
- ``after_close_send`` (the exit path): the broker closed the position, the close was never
  recorded.

Each test has a second trade opened before the kill. After the restart (plain ``bot.py``, the
market resumed 90 s of market time later): the registry's files and the simulated broker's
book agree exactly, nothing was filled or registered twice (journal, audit and the broker's
deals), every state file loads, and every open trade is managed by its strategy's exits
again: micro-scalp's time exit closes it (``time_exit_minutes`` 1), the range exit manager
passes over it (health ``last_pass``), the order-flow flip exit examines it (health).
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from engines.range_detection import RangeStructure, critical_gaps
from state.audit import audit_journal
from state.store import StateStore
from tests.recovery import botproc as bp

pytestmark = pytest.mark.skipif(sys.platform == "win32",
                                reason="SIGKILL does not exist on Windows (Popen.kill is TerminateProcess there)")

START = datetime(2026, 1, 5, 12, 1, tzinfo=timezone.utc)  # XAUUSD ~2009, EURUSD ~1.1328, BTCUSD ~42700
DOWN_SECONDS = 90.0  # market time while the bot is down: past micro-scalp's 1-minute time exit

# Only the injected ideas open trades: every strategy's entries are off (their exits still run).
# Range trades sit in wide ranges with only out-of-range candles invalidating them, so the exit
# manager holds them and its passes can be counted.
CONFIG = {
    "bot.json": {"sim": {"speed": 30, "start": START.isoformat()}, "runtime": {"health_interval_seconds": 0.5}},
    "micro_scalp.json": {"enabled": False, "defaults": {"time_exit_minutes": 1}},
    "order_flow.json": {"enabled": False},
    "range_scalp.json": {"enabled": False, "defaults": {"invalidation": {
        "signals_required": 1, "vwap_momentum_atr": 1.0, "bb_width_expansion_pct": 1000, "require_m15_bos": False}}},
}


def range_meta(low: float, high: float, atr: float) -> dict[str, Any]:
    structure = RangeStructure("session", high, low, (high + low) / 2, atr, critical_gaps(high, low, 0.15), 2, 2,
                               True, detected_at=START.timestamp())
    return {"range": structure.to_dict(), "setup": "bb_fade", "score": 60.0, "rr": 1.0}


# wide stops: no stop or target is reached within the test's minutes of market time
RANGE_XAU = {"symbol": "XAUUSD", "side": "buy", "strategy": "range_scalp", "sl_distance": 25.0, "tp_distance": 25.0,
             "meta": range_meta(1950.0, 2100.0, 1.5)}
RANGE_BTC = {"symbol": "BTCUSD", "side": "sell", "strategy": "range_scalp", "sl_distance": 1500.0,
             "tp_distance": 1500.0, "meta": range_meta(40000.0, 45000.0, 60.0)}
MICRO_XAU = {"symbol": "XAUUSD", "side": "buy", "strategy": "micro_scalp", "sl_distance": 30.0, "tp_distance": 30.0,
             "meta": {"atr": 1.2}}
MICRO_EUR = {"symbol": "EURUSD", "side": "buy", "strategy": "micro_scalp", "sl_distance": 0.01,
             "tp_distance": 0.01, "meta": {"atr": 0.0003}}
MICRO_BTC = {"symbol": "BTCUSD", "side": "buy", "strategy": "micro_scalp", "sl_distance": 1500.0,
             "tp_distance": 1500.0, "meta": {"atr": 50.0}}
FLOW_BTC = {"symbol": "BTCUSD", "side": "sell", "strategy": "order_flow", "sl_distance": 1500.0, "tp_distance": 1500.0,
            "meta": {"entry_delta": -12.5, "flow_source": "tick_proxy"}}


def crash(tmp_path: Path, bots: list, point: str, strategy: str, ideas: list[dict],
          nth: int = 1) -> tuple[Path, Path, dict, list]:
    """Run the hooked bot until it SIGKILLs itself at ``point`` (on ``strategy``'s ``nth`` order).
    Returns the config folder, the runtime folder, the crash marker and the injected outcomes
    that returned before the kill."""
    config_dir, runtime = bp.prepare_folders(tmp_path, CONFIG)
    hook_dir = tmp_path / "hooks"
    hook_dir.mkdir()
    env = {"BOT_CRASH_AT": point, "BOT_CRASH_STRATEGY": strategy, "BOT_CRASH_NTH": str(nth),
           "BOT_INJECT_IDEAS": json.dumps(ideas), "BOT_HOOK_DIR": str(hook_dir)}
    bot = bp.HookedBotProcess(config_dir, runtime, env, label="crashed")
    bots.append(bot)
    bot.wait_killed(timeout=60)
    marker = json.loads((hook_dir / "crash_marker.json").read_text(encoding="utf-8"))
    assert marker["point"] == point and marker["strategy"] == strategy, marker
    injected_file = hook_dir / "injected.jsonl"
    injected = [json.loads(line) for line in injected_file.read_text().splitlines()] if injected_file.exists() else []
    return config_dir, runtime, marker, injected


def restart(bots: list, config_dir: Path, runtime: Path) -> tuple[bp.BotProcess, datetime]:
    resumed_at = bp.resume_market_after(config_dir, runtime, DOWN_SECONDS)
    bot = bp.BotProcess(config_dir, runtime, label="restarted")
    bots.append(bot)
    return bot, resumed_at


def started_reconciled(runtime: Path, pid: int) -> bool:
    h = bp.health(runtime)
    return bp.pid_running(runtime, pid) and (h.get("reconciler") or {}).get("last_reason") is not None


def closed_lines(runtime: Path, ticket: int) -> list[dict]:
    return [e for e in bp.journal(runtime, "closed") if e.get("ticket") == ticket]


def time_exited(runtime: Path, ticket: int) -> bool:
    return any(str(e.get("reason", "")).startswith("time exit") for e in closed_lines(runtime, ticket))


def range_managed(runtime: Path, ticket: int, resumed_at: datetime) -> bool:
    """The range exit manager of THIS run passed over the trade."""
    detail = bp.thread_detail(runtime, "range-scalp")
    last = detail.get("last_exit_pass")
    return (detail.get("recovered") is True and (detail.get("last_pass") or {}).get("trades", 0) >= 1
            and last is not None and datetime.fromisoformat(last) >= resumed_at
            and str(ticket) in {str(t) for t in (StateStore(runtime / "state").load("range_scalp").get("trades") or {})})


def flip_examined(runtime: Path, ticket: int) -> bool:
    """The order-flow flip exit of THIS run looked at the trade (held it, with its reason, or closed it)."""
    detail = bp.thread_detail(runtime, "order-flow")
    return (str(ticket) in (detail.get("flip_inactive") or {})
            or any(str(e.get("reason", "")).startswith("order_flow_flip") for e in closed_lines(runtime, ticket)))


def assert_agreement(runtime: Path) -> None:
    """Registry and broker agree, nothing duplicated, every file loads, the journal audits clean."""
    assert bp.load_every_state_file(runtime) == []
    assert bp.registry_vs_broker(runtime) == {"unknown_to_registry": [], "gone_unexplained": [],
                                              "closed_not_recorded": [], "never_filled": []}
    assert set(bp.registry_files(runtime).open) == set(bp.book_positions(runtime))
    assert bp.opened_twice(runtime) == {"client_ids": [], "tickets": [], "broker_fills": []}
    known_open = set(bp.registry_files(runtime).open) | set(bp.book_positions(runtime))
    report = audit_journal(runtime / "journal.jsonl", known_open)
    assert report.ok, report.problems()
    assert not report.duplicate_orders and not report.double_closes and not report.lost


def fills_of(runtime: Path, client_id: str) -> list:
    return [d for d in bp.sim_book(runtime).deals if d.entry == bp.DEAL_ENTRY_IN and d.comment == client_id]


# ================================================================================ the crash points
def test_killed_before_send_nothing_reaches_the_broker_and_nothing_is_resent(tmp_path, bots):
    config_dir, runtime, marker, injected = crash(tmp_path, bots, "before_send", "micro_scalp",
                                                  [RANGE_XAU, MICRO_EUR])
    [first] = injected
    assert first["status"] == "opened"
    client_id = marker["client_id"]
    # the intent is durable, the order never went out
    assert [e["client_id"] for e in bp.journal(runtime, "intent")][-1] == client_id
    assert fills_of(runtime, client_id) == []
    assert set(bp.book_positions(runtime)) == {first["ticket"]}

    bot, resumed_at = restart(bots, config_dir, runtime)
    bot.wait_for("the range exit manager's pass over the surviving trade",
                 lambda: started_reconciled(runtime, bot.pid) and range_managed(runtime, first["ticket"], resumed_at))
    assert bp.terminate(bot) == 0, bot.output()[-3000:]

    assert fills_of(runtime, client_id) == [], "the intent was resent after the restart"
    events_of_id = [e["event"] for e in bp.journal(runtime) if e.get("client_id") == client_id]
    assert events_of_id == ["intent"]  # no outcome, no adoption: nothing exists at the broker
    assert set(bp.book_positions(runtime)) == {first["ticket"]}
    # the risk slot of the killed entry is not held by the new process
    assert bp.health(runtime)["execution"]["risk"]["pending_reservations"] == 0
    assert_agreement(runtime)


def test_killed_after_send_the_fill_is_adopted_from_its_intent_and_time_exited(tmp_path, bots):
    config_dir, runtime, marker, injected = crash(tmp_path, bots, "after_send", "micro_scalp",
                                                  [FLOW_BTC, MICRO_XAU])
    [flow] = injected
    ticket, client_id = marker["ticket"], marker["client_id"]
    assert ticket and [p.comment for p in fills_of(runtime, client_id)] == [client_id]
    assert bp.registry_vs_broker(runtime)["unknown_to_registry"] == [ticket]  # the reply was never processed
    assert not [e for e in bp.journal(runtime) if e.get("client_id") == client_id and e["event"] != "intent"]

    bot, resumed_at = restart(bots, config_dir, runtime)
    bot.wait_for("the adopted trade's time exit and the flip exit's look at the order-flow trade",
                 lambda: time_exited(runtime, ticket) and flip_examined(runtime, flow["ticket"]))
    assert bp.terminate(bot) == 0, bot.output()[-3000:]

    [adopted] = [e for e in bp.journal(runtime, "adopted") if e["ticket"] == ticket]
    intent = [e for e in bp.journal(runtime, "intent") if e["client_id"] == client_id][-1]
    assert adopted["client_id"] == client_id and adopted["strategy"] == "micro_scalp"
    assert adopted["initial_sl"] == intent["sl"]  # rebuilt from the journaled intent
    [closed] = [t for t in bp.registry_files(runtime).closed if t["ticket"] == ticket]
    assert closed["meta"]["adopted"]["from_intent"] is True and closed["meta"]["atr"] == 1.2
    assert closed["close_reason"].startswith("time exit")
    assert len(fills_of(runtime, client_id)) == 1 and len(closed_lines(runtime, ticket)) == 1
    flow_closes = closed_lines(runtime, flow["ticket"])  # held by its flip exit, or closed by it
    assert flow["ticket"] in bp.registry_files(runtime).open or flow_closes[0]["reason"].startswith("order_flow_flip")
    assert_agreement(runtime)


def test_killed_after_confirm_before_the_registry_save_the_range_trade_is_adopted_and_managed(tmp_path, bots):
    config_dir, runtime, marker, injected = crash(tmp_path, bots, "after_confirm", "range_scalp",
                                                  [MICRO_EUR, RANGE_BTC])
    [micro] = injected
    ticket, client_id = marker["ticket"], marker["client_id"]
    assert bp.registry_vs_broker(runtime)["unknown_to_registry"] == [ticket]
    assert not bp.journal(runtime, "opened")[1:], "the killed entry was journaled opened"

    bot, resumed_at = restart(bots, config_dir, runtime)
    bot.wait_for("the range exit manager's pass over the adopted trade and the micro trade's time exit",
                 lambda: range_managed(runtime, ticket, resumed_at) and time_exited(runtime, micro["ticket"]))
    assert bp.terminate(bot) == 0, bot.output()[-3000:]

    [adopted] = [e for e in bp.journal(runtime, "adopted") if e["ticket"] == ticket]
    assert adopted["client_id"] == client_id and adopted["strategy"] == "range_scalp"
    # the range monitor's recovery rebuilt its book record from the range the intent carried
    [recovered] = bp.journal(runtime, "range_recovered")[-1:]
    assert ticket in recovered["rebuilt"] and ticket in recovered["resumed"] and recovered["orphans"] == []
    trade = bp.registry_files(runtime).open[ticket]
    assert trade["meta"]["range"]["low"] == 40000.0 and trade["meta"]["adopted"]["from_intent"] is True
    assert_agreement(runtime)


def test_killed_in_the_middle_of_the_registry_write_the_backup_is_loaded_and_the_fill_adopted(tmp_path, bots):
    config_dir, runtime, marker, injected = crash(tmp_path, bots, "mid_state_write", "micro_scalp",
                                                  [MICRO_XAU, MICRO_BTC], nth=2)
    # the first micro trade fills normally; the second is killed inside its registry write
    [first] = injected
    ticket = marker["ticket"]
    assert first["status"] == "opened" and ticket != first["ticket"]
    # the premise: the kill left the old document as .bak and the new one as a temporary file
    assert "trades_micro_scalp.json" not in marker["files"], marker
    assert "trades_micro_scalp.json.bak" in marker["files"]
    assert any(".tmp-" in name for name in marker["files"])
    state = runtime / "state"
    assert not (state / "trades_micro_scalp.json").exists()

    bot, resumed_at = restart(bots, config_dir, runtime)
    bot.wait_for("both micro trades time-exited after the restart",
                 lambda: time_exited(runtime, ticket) and time_exited(runtime, first["ticket"]))
    assert bp.terminate(bot) == 0, bot.output()[-3000:]

    assert "trades_micro_scalp.json restored from trades_micro_scalp.json.bak" in bot.output()
    [adopted] = [e for e in bp.journal(runtime, "adopted") if e["ticket"] == ticket]
    assert adopted["client_id"] == marker["client_id"]
    # the first trade came back from the backup, not from an adoption
    assert not [e for e in bp.journal(runtime, "adopted") if e["ticket"] == first["ticket"]]
    closed = {t["ticket"]: t for t in bp.registry_files(runtime).closed}
    assert {ticket, first["ticket"]} <= set(closed)
    assert_agreement(runtime)


def test_killed_after_the_close_was_sent_the_close_is_recorded_once_at_restart(tmp_path, bots):
    config_dir, runtime, marker, injected = crash(tmp_path, bots, "after_close_send", "micro_scalp",
                                                  [RANGE_XAU, MICRO_XAU])
    by_strategy = {o["strategy"]: o for o in injected}
    ticket = marker["ticket"]
    assert ticket == by_strategy["micro_scalp"]["ticket"]  # micro-scalp's own time exit sent the close
    assert ticket not in bp.book_positions(runtime) and ticket in bp.closing_deals(runtime)
    assert bp.registry_vs_broker(runtime)["closed_not_recorded"] == [ticket]
    assert closed_lines(runtime, ticket) == []

    bot, resumed_at = restart(bots, config_dir, runtime)
    bot.wait_for("the close recorded and the range trade managed",
                 lambda: closed_lines(runtime, ticket)
                 and range_managed(runtime, by_strategy["range_scalp"]["ticket"], resumed_at))
    assert bp.terminate(bot) == 0, bot.output()[-3000:]

    [line] = closed_lines(runtime, ticket)
    deal = bp.closing_deals(runtime)[ticket]
    [sent] = [e for e in bp.journal(runtime, "close_sent") if e["ticket"] == ticket]
    assert line["exit"] == deal.price and deal.comment == sent["close_id"]
    assert line["reason"] == sent["reason"] and not line["reason"].startswith("broker:")  # the real exit reason
    [record] = [t for t in bp.registry_files(runtime).closed if t["ticket"] == ticket]
    assert record["exit_price"] == deal.price and record["pnl"] is not None
    assert_agreement(runtime)
