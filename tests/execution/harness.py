"""The real trade path over the simulated terminal, for integration tests.

Everything is the production code: the MT5 adapter over ``SimTerminal`` (the stand-in for the
MetaTrader5 module), the risk manager, the registry, the journal and the executor. Only the
clock is fake, so tests move the market by advancing it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.loader import ConfigSnapshot, load_config
from config.secrets import Secrets
from config.watcher import ConfigHolder
from execution.executor import Executor
from execution.mt5 import Mt5Broker, Mt5Settings
from execution.risk import RiskManager
from execution.simterminal import make_test_terminal
from monitors.clock import FakeClock
from state.journal import Journal, read_journal
from state.registry import TradeRegistry
from state.store import StateStore

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    clock: FakeClock
    terminal: Any
    broker: Mt5Broker
    store: StateStore
    registry: TradeRegistry
    risk: RiskManager
    journal: Journal
    executor: Executor
    holder: ConfigHolder
    events: list
    runtime: Path

    def journal_events(self) -> list[dict]:
        return list(read_journal(self.runtime / "journal.jsonl"))


def load_test_config(tmp_path: Path, bot_changes: dict | None = None) -> ConfigSnapshot:
    config_dir = tmp_path / "config"
    config_dir.mkdir(exist_ok=True)
    for path in (PROJECT / "config").glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if path.name == "bot.json" and bot_changes:
            for section, values in bot_changes.items():
                if isinstance(values, dict):
                    data.setdefault(section, {}).update(values)
                else:
                    data[section] = values
        (config_dir / path.name).write_text(json.dumps(data), encoding="utf-8")
    return load_config(config_dir)


def build_stack(tmp_path: Path, clock: FakeClock | None = None, bot_changes: dict | None = None,
                terminal: Any = None) -> Stack:
    clock = clock or FakeClock()
    runtime = tmp_path / "runtime"
    snapshot = load_test_config(tmp_path, bot_changes)
    holder = ConfigHolder(snapshot)
    terminal = terminal or make_test_terminal(tmp_path, clock)
    broker = Mt5Broker(terminal, Secrets(), snapshot.bot, clock, sleep=clock.advance,
                       settings=Mt5Settings(recheck_delay_s=0.5))
    broker.connect()
    store = StateStore(runtime / "state")
    registry = TradeRegistry(store)
    risk = RiskManager(lambda: holder.current.bot.risk, registry, store)
    journal = Journal(runtime / "journal.jsonl", now=clock.now)
    events: list = []
    executor = Executor(broker, registry, risk, journal, lambda: holder.current, clock,
                        events=lambda kind, data: events.append((kind, data)), sleep=clock.advance)
    return Stack(clock, terminal, broker, store, registry, risk, journal, executor, holder, events, runtime)
