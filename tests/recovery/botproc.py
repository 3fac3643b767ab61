"""Running ``bot.py`` as a real process for the kill-and-restart tests, and reading what it left.

Only files are inspected (health.json, journal.jsonl, runtime/state/*.json, the simulated
terminal's book): the same things an operator would look at after a crash. Nothing here is
POSIX-only except the SIGKILL itself (``BotProcess.kill`` uses ``Popen.kill``, which is
TerminateProcess on Windows; the tests that need SIGKILL semantics skip there).
"""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from execution.simterminal.book import Book, load_book
from state.journal import read_journal
from state.store import StateStore

PROJECT = Path(__file__).resolve().parents[2]
STRATEGIES = ("micro_scalp", "range_scalp", "order_flow")
MAGIC_BASE = 7310000  # config/bot.json execution.magic_base (checked by prepare_folders)
OUR_MAGICS = {MAGIC_BASE + i for i in (1, 2, 3)}
RANGE_MAGIC = MAGIC_BASE + 2
DEAL_ENTRY_IN = 0  # MetaTrader5.DEAL_ENTRY_IN
DEAL_ENTRIES_OUT = (1, 2, 3)  # DEAL_ENTRY_OUT, DEAL_ENTRY_INOUT, DEAL_ENTRY_OUT_BY
DEAL_REASONS = {3: "expert", 4: "sl", 5: "tp", 6: "so"}  # MetaTrader5.DEAL_REASON_*


def deep_update(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def prepare_folders(tmp_path: Path, changes: dict[str, dict] | None = None) -> tuple[Path, Path]:
    """A private config folder (the shipped files with ``changes`` deep-merged, keyed by file
    name) and an empty runtime folder."""
    config_dir, runtime_dir = tmp_path / "config", tmp_path / "runtime"
    config_dir.mkdir(exist_ok=True)
    runtime_dir.mkdir(exist_ok=True)
    changes = changes or {}
    for path in (PROJECT / "config").glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if path.name in changes:
            data = deep_update(data, changes[path.name])
        (config_dir / path.name).write_text(json.dumps(data, indent=1), encoding="utf-8")
    bot = json.loads((config_dir / "bot.json").read_text(encoding="utf-8"))
    assert bot["execution"]["magic_base"] == MAGIC_BASE, "the tests assume the shipped magic_base"
    return config_dir, runtime_dir


def edit_config(config_dir: Path, name: str, changes: dict) -> None:
    path = Path(config_dir) / name
    data = deep_update(json.loads(path.read_text(encoding="utf-8")), changes)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def bot_env() -> dict[str, str]:
    """The test's environment without any Discord webhook or MT5 credential."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "MT5_"))}


class BotProcess:
    """One ``python bot.py run`` process; its console goes to a file (a pipe could fill and
    block the bot)."""

    def __init__(self, config_dir: Path, runtime_dir: Path, duration: float | None = None,
                 label: str = "run") -> None:
        self.runtime_dir = Path(runtime_dir)
        self.console = self.runtime_dir.parent / f"console-{label}.txt"
        args = [sys.executable, str(PROJECT / "bot.py"), "run", "--config-dir", str(config_dir),
                "--runtime-dir", str(runtime_dir), "--no-notify"]
        if duration is not None:
            args += ["--duration", str(duration)]
        self._out = open(self.console, "w", encoding="utf-8")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT, env=bot_env(), cwd=PROJECT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.console.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll ``condition`` (file reads) until true; fail with the console tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if not self.alive():
                raise AssertionError(f"the bot exited ({self.proc.returncode}) before {what}:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no signal handler, no shutdown, no flush."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._out.close()
        assert self.proc.returncode == -signal.SIGKILL, self.proc.returncode

    def wait(self, timeout: float = 60.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._out.close()
        return code

    def stop(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)
        if not self._out.closed:
            self._out.close()


class HookedBotProcess(BotProcess):
    """``python tests/recovery/crashing_bot.py run`` (or another wrapper ``script`` that patches
    the bot in its own process, then calls ``bot.main``) with ``env`` added to the environment:
    the test-only crash hooks and injected ideas of crashing_bot.py."""

    def __init__(self, config_dir: Path, runtime_dir: Path, env: dict[str, str], duration: float | None = None,
                 label: str = "run", script: Path | None = None) -> None:
        self.runtime_dir = Path(runtime_dir)
        self.console = self.runtime_dir.parent / f"console-{label}.txt"
        script = script or PROJECT / "tests" / "recovery" / "crashing_bot.py"
        args = [sys.executable, str(script), "run", "--config-dir", str(config_dir),
                "--runtime-dir", str(runtime_dir), "--no-notify"]
        if duration is not None:
            args += ["--duration", str(duration)]
        self._out = open(self.console, "w", encoding="utf-8")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT,
                                     env={**bot_env(), **env}, cwd=PROJECT)

    def wait_killed(self, timeout: float = 60.0) -> None:
        """Until the process killed itself with SIGKILL (its crash hook fired)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the crash hook never fired within {timeout:g} s:\n{self.output()[-3000:]}")
        if not self._out.closed:
            self._out.close()
        assert code == -signal.SIGKILL, f"exit code {code}, not SIGKILL:\n{self.output()[-3000:]}"


def terminate(bot: BotProcess, timeout: float = 30.0) -> int:
    """SIGTERM (the bot's clean shutdown) and the exit code."""
    if bot.alive():
        bot.proc.send_signal(signal.SIGTERM)
    return bot.wait(timeout=timeout)


def resume_market_after(config_dir: Path, runtime_dir: Path, down_seconds: float) -> datetime:
    """Make the next start's market begin ``down_seconds`` of market time after the latest the
    previous (killed) bot saw: its health.json market time or the book's, whichever is later
    (the book saves its market time only every few wall seconds). Returns that market time."""
    seen = [sim_book_time(runtime_dir)]
    market_time = (health(runtime_dir).get("market") or {}).get("market_time")
    if market_time:
        seen.append(datetime.fromisoformat(market_time))
    resume = max(seen) + timedelta(seconds=down_seconds)
    edit_config(config_dir, "bot.json", {"sim": {"start": resume.isoformat()}})
    return resume


# ------------------------------------------------------------------------------------ files
def health(runtime_dir: Path) -> dict[str, Any]:
    """health.json, or {} while it does not exist or is being replaced."""
    try:
        return json.loads((Path(runtime_dir) / "health.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def thread_detail(runtime_dir: Path, thread: str) -> dict[str, Any]:
    return (health(runtime_dir).get("threads", {}).get(thread) or {}).get("detail") or {}


def pid_running(runtime_dir: Path, pid: int) -> bool:
    """health.json written by process ``pid`` says it is running."""
    h = health(runtime_dir)
    return h.get("pid") == pid and h.get("status") == "running"


def journal(runtime_dir: Path, event: str | None = None) -> list[dict[str, Any]]:
    return [e for e in read_journal(Path(runtime_dir) / "journal.jsonl") if event is None or e["event"] == event]


def sim_book(runtime_dir: Path) -> Book:
    book = load_book(Path(runtime_dir) / "sim_book.json")
    assert book is not None, "no simulated terminal book"
    return book


def sim_book_time(runtime_dir: Path) -> datetime:
    """The market time the simulated broker's book reached."""
    return datetime.fromtimestamp(sim_book(runtime_dir).last_eval_ms / 1000, timezone.utc)


@dataclass(frozen=True)
class Registry:
    """The registry's files as they are on disk (open trades per ticket, closed trades)."""

    open: dict[int, dict[str, Any]]
    closed: list[dict[str, Any]]


def registry_files(runtime_dir: Path, strategies: tuple[str, ...] = STRATEGIES) -> Registry:
    store = StateStore(Path(runtime_dir) / "state")
    open_trades: dict[int, dict[str, Any]] = {}
    closed: list[dict[str, Any]] = []
    for strategy in strategies:
        data = store.load(f"trades_{strategy}", {"open": {}, "closed": []})
        open_trades.update({int(t): v for t, v in data.get("open", {}).items()})
        closed += data.get("closed", [])
    return Registry(open_trades, closed)


def load_every_state_file(runtime_dir: Path) -> list[str]:
    """Every document under runtime/state loads from its own file (not a backup, nothing set
    aside as corrupt). Returns the problems found (empty = all good)."""
    folder = Path(runtime_dir) / "state"
    problems = [f"{p.name} was set aside as corrupt" for p in folder.glob("*.corrupt-*")]
    for path in sorted(folder.glob("*.json")):
        try:
            text = path.read_text(encoding="utf-8-sig")
            data = json.loads(text)
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        if not isinstance(data, dict) or "schema_version" not in data:
            problems.append(f"{path.name}: not a versioned state document")
    try:
        sim_book(runtime_dir)
    except Exception as exc:  # a torn book is a failure of the sim's own crash safety
        problems.append(f"sim_book.json: {type(exc).__name__}: {exc}")
    return problems


def opened_twice(runtime_dir: Path) -> dict[str, list[Any]]:
    """Client ids and tickets the journal shows opened more than once, and client ids the
    broker filled more than once (entry deals carrying the same comment)."""
    opened = journal(runtime_dir, "opened")
    ids = Counter(e["client_id"] for e in opened)
    tickets = Counter(e["ticket"] for e in opened)
    fills = Counter(d.comment for d in sim_book(runtime_dir).deals
                    if d.entry == DEAL_ENTRY_IN and d.magic in OUR_MAGICS)
    return {"client_ids": sorted(k for k, n in ids.items() if n > 1),
            "tickets": sorted(k for k, n in tickets.items() if n > 1),
            "broker_fills": sorted(k for k, n in fills.items() if n > 1)}


def book_positions(runtime_dir: Path, magics: set[int] = OUR_MAGICS) -> dict[int, Any]:
    return {p.ticket: p for p in sim_book(runtime_dir).positions.values() if p.magic in magics}


def closing_deals(runtime_dir: Path) -> dict[int, Any]:
    """position ticket -> its (last) closing deal in the simulated broker's history."""
    out: dict[int, Any] = {}
    for deal in sim_book(runtime_dir).deals:
        if deal.entry in DEAL_ENTRIES_OUT and deal.position_id:
            out[deal.position_id] = deal
    return out


def registry_vs_broker(runtime_dir: Path) -> dict[str, list[int]]:
    """How the registry's files and the simulated broker's book differ.

    ``unknown_to_registry``: positions at our magics the registry does not hold open (lost or
    orphaned trades). ``gone_unexplained``: registry open trades that are neither open at the
    broker nor closed in its deal history (phantoms). ``closed_not_recorded``: registry open
    trades the broker closed, not yet settled (normal right after a kill, settled at the next
    start). ``never_filled``: registry open trades with no entry deal at the broker."""
    registry = registry_files(runtime_dir)
    positions = book_positions(runtime_dir)
    closing = closing_deals(runtime_dir)
    filled = {d.position_id for d in sim_book(runtime_dir).deals if d.entry == DEAL_ENTRY_IN}
    return {
        "unknown_to_registry": sorted(set(positions) - set(registry.open)),
        "gone_unexplained": sorted(t for t in registry.open if t not in positions and t not in closing),
        "closed_not_recorded": sorted(t for t in registry.open if t not in positions and t in closing),
        "never_filled": sorted(t for t in registry.open if t not in filled),
    }


# ------------------------------------------------------------------ shared by the kill tests

STEPPING_MONITORS = ("micro-scalp", "range-scalp", "order-flow")


def monitors_stepped(runtime_dir: Path, pid: int) -> bool:
    """Process ``pid`` runs, and each strategy monitor finished a step (so each has settled the
    broker-side closes of its strategy: sync_closed runs first in every step)."""
    h = health(runtime_dir)
    if h.get("pid") != pid or h.get("status") != "running":
        return False
    threads = h.get("threads", {})
    return all((threads.get(name) or {}).get("steps", 0) >= 1 for name in STEPPING_MONITORS)


def crash_checks(runtime_dir: Path, when: str) -> dict[str, list[int]]:
    """What must hold at ANY instant a kill may leave behind; returns the registry/broker diff."""
    assert load_every_state_file(runtime_dir) == [], when
    assert opened_twice(runtime_dir) == {"client_ids": [], "tickets": [], "broker_fills": []}, when
    diff = registry_vs_broker(runtime_dir)
    assert diff["gone_unexplained"] == [] and diff["never_filled"] == [], (when, diff)
    return diff
