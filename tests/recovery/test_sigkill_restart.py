"""Kill and restart, for real: ``bot.py`` runs as a process on a runtime folder, is killed with
SIGKILL (no signal handler, no shutdown, no flush), and is started again on the same files.

What must hold (issue 6 "Kill and restart"; issue 8 item 4 for the random-instant loop):
- every open trade is recovered and managed again by its monitor;
- a close that happened while the bot was down (the broker hit its stop) is journaled exactly
  once, with the deal's reason;
- nothing is duplicated: no client id or ticket opened twice, no order filled twice;
- the registry's files and the simulated broker's book agree, and every state file loads.

Only files are inspected: health.json, journal.jsonl, runtime/state/*.json and the simulated
terminal's book (tests/recovery/botproc.py). The random-instant loop kills ``KILL_LOOPS`` times
(environment variable ``RECOVERY_KILL_LOOPS``, default 5).
"""
from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from state.store import StateStore
from tests.recovery import botproc as bp
from tests.recovery.seed import DownTimeMarket, RangeSeed, fill_then_kill, seed_range_trades, settle_in_process

pytestmark = pytest.mark.skipif(sys.platform == "win32",
                                reason="SIGKILL does not exist on Windows (Popen.kill is TerminateProcess there)")

# a Monday, with fresh quotes on all three symbols: XAUUSD ~2009, EURUSD ~1.1328, BTCUSD ~42700
SEED_AT = datetime(2026, 1, 5, 12, 1, tzinfo=timezone.utc)
KILL_LOOPS = int(os.environ.get("RECOVERY_KILL_LOOPS", "5"))

# Range trades sit in wide constructed ranges: only candles outside the range may invalidate
# them (the other invalidation signals off), so the exit manager holds them for the test's
# minutes of market time and every pass is a "hold" we can count.
CALM_RANGE = {"defaults": {"invalidation": {"signals_required": 1, "vwap_momentum_atr": 1.0,
                                            "bb_width_expansion_pct": 1000, "require_m15_bos": False}}}
SEEDS = [
    RangeSeed("XAUUSD", "buy", sl_distance=25.0, tp_distance=25.0, low=1950.0, high=2100.0, atr=1.5),
    RangeSeed("EURUSD", "buy", sl_distance=0.0100, tp_distance=0.0100, low=1.1000, high=1.1600, atr=0.0004),
    RangeSeed("BTCUSD", "sell", sl_distance=1500.0, tp_distance=1500.0, low=40000.0, high=45000.0, atr=60.0),
]


def start(bots: list, config_dir: Path, runtime_dir: Path, duration: float | None = None) -> bp.BotProcess:
    bot = bp.BotProcess(config_dir, runtime_dir, duration, label=f"run{len(bots) + 1}")
    bots.append(bot)
    return bot


def range_recovered(runtime_dir: Path) -> list[dict]:
    """The bot's own recovery lines (a journal line per start)."""
    return bp.journal(runtime_dir, "range_recovered")


# ================================================================================ seeded range trades
def test_sigkill_with_open_range_trades_then_restart_recovers_them_and_journals_the_close_while_down(tmp_path, bots):
    config_dir, runtime = bp.prepare_folders(tmp_path, {
        "bot.json": {"sim": {"speed": 30, "start": None}, "runtime": {"health_interval_seconds": 0.5}},
        "micro_scalp.json": {"enabled": False},
        "order_flow.json": {"enabled": False},
        "range_scalp.json": CALM_RANGE,
    })
    xau, eur, btc = seed_range_trades(config_dir, runtime, SEED_AT, SEEDS)
    seeded = {xau.ticket, eur.ticket, btc.ticket}
    assert len(seeded) == 3 and bp.book_positions(runtime).keys() == seeded

    # ---- first run: the bot adopts the three trades, its exit manager passes over them; then SIGKILL
    first = start(bots, config_dir, runtime)
    first.wait_for("the range monitor's first exit pass over the 3 trades", lambda: (
        bp.pid_running(runtime, first.pid)
        and (bp.thread_detail(runtime, "range-scalp").get("last_pass") or {}).get("trades") == 3))
    first.kill()
    [recovered_1] = range_recovered(runtime)[1:]  # [0] is the seeding process's (empty) recovery
    assert set(recovered_1["resumed"]) == seeded and recovered_1["closed_while_down"] == []
    assert not bp.journal(runtime, "range_exit"), "the exit manager closed a seeded trade: the test premise broke"
    assert bp.load_every_state_file(runtime) == []

    # ---- while the bot is down: the EURUSD stop is moved next to the price and the market runs into it
    market = DownTimeMarket(config_dir, runtime)
    killed_at = market.clock.now()
    new_sl = market.tighten_stop(eur.ticket, min_gap=0.0002)
    resumed_at = market.run_until_closed(eur.ticket)
    assert market.position(xau.ticket) is not None and market.position(btc.ticket) is not None
    market.close()
    # within minutes: the surviving trades stay far from the 60-minute stagnation exit
    assert timedelta(0) < resumed_at - killed_at < timedelta(minutes=20)
    [eur_exit] = [d for d in bp.sim_book(runtime).deals if d.position_id == eur.ticket and d.entry == 1]
    assert bp.DEAL_REASONS[eur_exit.reason] == "sl" and eur_exit.price <= new_sl

    # ---- second run, bounded: recovery before any monitor may trade, then a clean stop
    second = start(bots, config_dir, runtime, duration=6)
    assert second.wait(timeout=60) == 0, second.output()[-3000:]

    # every open trade recovered and managed again
    [recovered_2] = range_recovered(runtime)[2:]
    assert set(recovered_2["resumed"]) == {xau.ticket, btc.ticket}
    assert recovered_2["closed_while_down"] == [eur.ticket]
    assert recovered_2["orphans"] == [] and recovered_2["pending"] == [] and recovered_2["unmanaged"] == []
    detail = bp.thread_detail(runtime, "range-scalp")
    assert detail["recovered"] is True and detail["open_trades"] == 2
    assert detail["last_pass"]["trades"] == 2 and detail["last_pass"]["closed"] == []
    assert datetime.fromisoformat(detail["last_exit_pass"]) >= resumed_at  # a pass of THIS run
    assert "1 closed while down" in second.output()  # the recovery's log line

    # the close while down: journaled once by the executor and once by the range monitor, with the deal's reason
    closes = [e for e in bp.journal(runtime, "closed") if e["ticket"] == eur.ticket]
    assert [c["reason"] for c in closes] == ["broker:sl"]
    assert closes[0]["exit"] == eur_exit.price and closes[0]["pnl"] < 0
    exits = [e for e in bp.journal(runtime, "range_exit") if e["ticket"] == eur.ticket]
    assert len(exits) == 1 and exits[0]["reason"] == "broker:sl" and exits[0]["while_down"] is True
    assert len(bp.journal(runtime, "closed")) == 1 and len(bp.journal(runtime, "range_exit")) == 1

    # nothing duplicated: the three seeded trades are the only ones ever opened
    assert bp.opened_twice(runtime) == {"client_ids": [], "tickets": [], "broker_fills": []}
    assert sorted(e["ticket"] for e in bp.journal(runtime, "opened")) == sorted(seeded)
    assert Counter(e["event"] for e in bp.journal(runtime))["range_registered"] == 3

    # registry, range book and broker agree
    registry = bp.registry_files(runtime)
    assert set(registry.open) == {xau.ticket, btc.ticket} == set(bp.book_positions(runtime))
    [closed] = registry.closed
    assert closed["ticket"] == eur.ticket and closed["close_reason"] == "broker:sl"
    assert closed["exit_price"] == eur_exit.price
    range_book = StateStore(runtime / "state").load("range_scalp")
    assert {int(t) for t in range_book["trades"]} == {xau.ticket, btc.ticket}
    assert range_book["symbols"]["EURUSD"]["last_exit"]["reason"] == "broker:sl"  # re-entry memory survived
    assert bp.registry_vs_broker(runtime) == {"unknown_to_registry": [], "gone_unexplained": [],
                                              "closed_not_recorded": [], "never_filled": []}
    assert bp.load_every_state_file(runtime) == []


# ================================================================================ killed inside the fill window
def test_a_fill_the_registry_never_saw_is_adopted_or_reported_at_restart(tmp_path, bots):
    config_dir, runtime = bp.prepare_folders(tmp_path, {
        "bot.json": {"sim": {"speed": 30, "start": None}, "runtime": {"health_interval_seconds": 0.5}},
        "micro_scalp.json": {"enabled": False}, "order_flow.json": {"enabled": False},
        "range_scalp.json": {"enabled": False}})
    # the executor journals the intent, the broker fills it, then the process dies before the
    # registry saves the trade (wide stops: the position stays open for the whole run)
    client_id = fill_then_kill(config_dir, runtime, SEED_AT, "XAUUSD", "buy", "micro_scalp",
                               sl_distance=30.0, tp_distance=30.0)
    [position] = bp.book_positions(runtime).values()
    assert position.comment == client_id and position.magic == bp.MAGIC_BASE + 1
    assert bp.registry_vs_broker(runtime)["unknown_to_registry"] == [position.ticket]

    bot = start(bots, config_dir, runtime, duration=3)
    assert bot.wait(timeout=60) == 0, bot.output()[-3000:]
    registry = bp.registry_files(runtime)  # adopted, then perhaps managed and closed by its monitor
    adopted = position.ticket in registry.open or any(t["ticket"] == position.ticket for t in registry.closed)
    flagged = [e for e in bp.journal(runtime) if e.get("ticket") == position.ticket
               and e["event"] in ("reconciled", "orphan", "adopted")]
    assert adopted or flagged, "the position is managed by nobody and reported nowhere"


# ================================================================================ killed at random instants
def fill_window(runtime_dir: Path, tickets: list[int]) -> list[int]:
    """Of ``tickets`` (positions unknown to the registry), those killed inside the executor's
    fill window: the intent is journaled and the broker filled it, but no "opened" line exists
    (see test_a_fill_the_registry_never_saw_is_adopted_or_reported_at_restart)."""
    positions = bp.book_positions(runtime_dir)
    intents = {e["client_id"] for e in bp.journal(runtime_dir, "intent")}
    opened = {e["client_id"] for e in bp.journal(runtime_dir, "opened")}
    return [t for t in tickets if positions[t].comment in intents and positions[t].comment not in opened]


def wait_for_position(runtime_dir: Path, timeout: float) -> bool:
    """Until the broker's book holds a position at our magics (False after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bp.book_positions(runtime_dir):
            return True
        time.sleep(0.05)
    return False


def resume_market_later(config_dir: Path, runtime_dir: Path, down_seconds: float) -> datetime:
    """The next start's market time: ``down_seconds`` of market time after the latest the
    killed bot saw (health.json) or the book reached. The simulated book saves its market time
    only every few wall seconds, so resuming from the book alone would replay the last minutes
    again; a real market never goes back, and moves on while the bot is down (stops get hit)."""
    seen = [bp.sim_book_time(runtime_dir)]
    market_time = (bp.health(runtime_dir).get("market") or {}).get("market_time")
    if market_time:
        seen.append(datetime.fromisoformat(market_time))
    resume = max(seen) + timedelta(seconds=down_seconds)
    bp.edit_config(config_dir, "bot.json", {"sim": {"start": resume.isoformat()}})
    return resume


def test_killed_at_random_instants_while_trading_every_restart_finds_registry_and_broker_in_agreement(tmp_path, bots):
    """KILL_LOOPS kills (RECOVERY_KILL_LOOPS, default 5): odd ones at a random instant of the
    start-up (imports, broker connection, recovery), even ones once every monitor has stepped,
    at a random instant shortly after a position appears (opening, trailing, closing), or after
    5 s without one. Each restart resumes the market up to 10 minutes after the killed bot left
    it, so stops are hit while it is down. After each kill: every state file loads, nothing was
    opened twice, no registry trade is unexplained. After each restart: what the broker closed
    while the bot was down is journaled closed exactly once. At the end the registry and the
    broker's book agree exactly (but for fills killed inside the fill window: the xfail test)."""
    config_dir, runtime = bp.prepare_folders(tmp_path, {
        "bot.json": {"sim": {"speed": 240, "start": "2026-01-05T12:00:00Z"},
                     "runtime": {"health_interval_seconds": 0.5}}})
    seed = int(os.environ.get("RECOVERY_KILL_SEED", str(time.time_ns() % 10**6)))
    rng = random.Random(seed)
    window_lost: set[int] = set()  # positions filled by a bot killed before its registry saved them
    carried: list[int] = []  # closed by the broker, not yet recorded when the bot was killed
    open_at_kill: list[int] = []
    for loop in range(KILL_LOOPS):
        when = f"kill {loop + 1} (RECOVERY_KILL_SEED={seed})"
        if loop:
            resume_market_later(config_dir, runtime, rng.uniform(0.0, 600.0))
        bot = start(bots, config_dir, runtime)
        if loop % 2:
            time.sleep(rng.uniform(0.2, 1.6))  # somewhere in the start-up
        else:
            bot.wait_for("every monitor to step after the restart", lambda: bp.monitors_stepped(runtime, bot.pid))
            settled = {e["ticket"] for e in bp.journal(runtime, "closed")}
            missing = [t for t in carried if t not in settled]
            assert not missing, f"{when}: closed while the bot was down, never journaled after the restart: {missing}"
            carried = []
            wait_for_position(runtime, timeout=5.0)  # kill near trading activity: open, trail, close
            time.sleep(rng.uniform(0.0, 0.6))
        bot.kill()
        diff = bp.crash_checks(runtime, when)
        open_at_kill.append(len(bp.book_positions(runtime)))
        carried = sorted(set(carried) | set(diff["closed_not_recorded"]))
        lost = diff["unknown_to_registry"]
        in_window = fill_window(runtime, lost)
        assert sorted(lost) == sorted(in_window), (f"{when}: positions unknown to the registry that were not "
                                                   f"killed inside the fill window", diff)
        window_lost |= set(in_window)
    print(f"\nkill loop: seed {seed}, {KILL_LOOPS} kills, positions open at each kill {open_at_kill}, "
          f"{len(bp.journal(runtime, 'opened'))} trades opened, killed inside the fill window: {sorted(window_lost)}")

    closes = Counter(e["ticket"] for e in bp.journal(runtime, "closed"))
    assert not [t for t, n in closes.items() if n > 1], "a close was journaled twice"
    opened = bp.journal(runtime, "opened")
    assert opened, "no trade opened during the kill loop: the test exercised nothing"

    # the end: one bounded clean run, then the closes the broker made during its shutdown are settled
    resume_market_later(config_dir, runtime, 60.0)
    final = start(bots, config_dir, runtime, duration=3)
    assert final.wait(timeout=60) == 0, final.output()[-3000:]
    settle_in_process(config_dir, runtime)
    bp.crash_checks(runtime, "after the final run")
    diff = bp.registry_vs_broker(runtime)
    assert diff["closed_not_recorded"] == []
    # the registry holds exactly the broker's positions: fills killed inside the fill window
    # were adopted by the start-up reconciliation
    registry_open, positions = set(bp.registry_files(runtime).open), set(bp.book_positions(runtime))
    assert registry_open == positions, (diff, window_lost)
    closes = Counter(e["ticket"] for e in bp.journal(runtime, "closed"))
    assert not [t for t, n in closes.items() if n > 1], "a close was journaled twice"
    for ticket in carried:
        assert closes[ticket] == 1
