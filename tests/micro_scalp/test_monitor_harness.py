"""Shared set-up of the micro-scalp monitor tests (no tests here): the real stack over the
simulated terminal (tests/execution/harness.build_stack), a bar feed, the news file and a
monitor, plus helpers to edit micro_scalp.json through the ConfigWatcher and to step the clock."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from config.watcher import ConfigWatcher
from engines.types import TradeIdea
from feeds.bar_feed import BarFeed
from monitors.micro_scalp import MicroScalpMonitor
from monitors.micro_scalp_state import MicroScalpState, SymbolState
from monitors.news_file import NewsFile
from state.registry import Trade
from tests.execution.harness import Stack, build_stack


@dataclass
class MonitorStack:
    stack: Stack
    feed: BarFeed
    news: NewsFile
    watcher: ConfigWatcher
    state: MicroScalpState
    monitor: MicroScalpMonitor
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        return self.stack.runtime.parent / "config"

    @property
    def clock(self):
        return self.stack.clock

    def new_monitor(self, state: MicroScalpState | None = None) -> MicroScalpMonitor:
        """What the supervisor does after a switch-off/on: a fresh instance (same kept state)."""
        s = self.stack
        self.monitor = MicroScalpMonitor(s.holder, self.feed, s.broker, s.executor, s.registry, news=self.news,
                                         notify=lambda kind, data: self.notes.append((kind, data)),
                                         state=state if state is not None else self.state)
        return self.monitor

    def edit_micro(self, change: Callable[[dict], None]) -> None:
        """Edit micro_scalp.json on disk and let the watcher apply it (as the operator would)."""
        path = self.config_dir / "micro_scalp.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        outcome = self.watcher.poll()
        assert outcome.applied, f"config edit not applied: {[str(p) for p in outcome.rejected]}"

    def set_params(self, symbol: str | None = None, **values: Any) -> None:
        """Per-symbol (override) or default monitor/engine keys."""
        def change(data: dict) -> None:
            target = data["defaults"] if symbol is None else data["overrides"].setdefault(symbol, {})
            target.update(values)
        self.edit_micro(change)

    def only(self, *symbols: str) -> None:
        def change(data: dict) -> None:
            data["symbols"] = list(symbols)
            data["overrides"] = {s: v for s, v in data["overrides"].items() if s in symbols}
        self.edit_micro(change)

    def step(self, seconds: float = 5.0) -> None:
        self.clock.advance(seconds)
        self.monitor.step(self.clock.now())

    def sym(self, symbol: str) -> SymbolState:
        return self.state.symbols[symbol]

    def gate(self, symbol: str) -> str | None:
        return self.state.symbols[symbol].last_gate

    def step_until(self, predicate: Callable[[], bool], max_steps: int, seconds: float = 5.0) -> int:
        for i in range(max_steps):
            self.step(seconds)
            if predicate():
                return i + 1
        gates = {s: (st.last_gate, st.last_detail) for s, st in self.state.symbols.items()}
        raise AssertionError(f"condition not reached in {max_steps} steps of {seconds:g} s; last gates: {gates}")

    def micro_trades(self) -> list[Trade]:
        return self.stack.registry.open_trades("micro_scalp")

    def market_idea(self, symbol: str, side: str, sl_distance: float, tp_distance: float,
                    **meta: Any) -> TradeIdea:
        quote = self.stack.broker.quote(symbol)
        entry = quote.ask if side == "buy" else quote.bid
        sign = 1 if side == "buy" else -1
        return TradeIdea(symbol, side, entry, entry - sign * sl_distance, entry + sign * tp_distance,
                         "micro_scalp", ("test idea",), dict(meta))

    def open_trade(self, symbol: str, side: str, sl_distance: float, tp_distance: float, **meta: Any) -> Trade:
        outcome = self.stack.executor.open(self.market_idea(symbol, side, sl_distance, tp_distance, **meta))
        assert outcome.opened, outcome.reason
        assert outcome.trade is not None
        return outcome.trade


def make_monitor_stack(tmp_path: Path, bot_changes: dict | None = None) -> MonitorStack:
    stack = build_stack(tmp_path, bot_changes=bot_changes)
    config_dir = tmp_path / "config"
    feed = BarFeed(stack.broker, stack.clock, lambda: [], depth=1500)
    news = NewsFile(config_dir / "news.json")
    watcher = ConfigWatcher(config_dir, stack.holder, stack.clock, settle_seconds=0)
    state = MicroScalpState()
    ms = MonitorStack(stack, feed, news, watcher, state, None)  # type: ignore[arg-type]
    ms.new_monitor()
    return ms


def no_news(ms: MonitorStack) -> None:
    """An empty calendar, so the shipped example events never interfere."""
    (ms.config_dir / "news.json").write_text(json.dumps({"schema_version": 1, "events": []}), encoding="utf-8")
