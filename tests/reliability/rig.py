"""The reliability stack over the simulated terminal: breaker-wrapped broker, trading guard,
executor and reconciler wired as bot.py wires them (tests/execution/harness.build_stack below).

Only the clock is fake. Helpers place orders straight at the terminal (as a crash, a human or
another EA would) so the reconciler has real differences to find.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.types import TradeIdea
from execution.breaker import BreakerBroker, CircuitBreaker
from execution.executor import Executor, magic_for
from execution.reconciler import Reconciler
from execution.trading_state import TradingGuard
from monitors.clock import FakeClock
from state.journal import read_journal
from tests.execution.harness import Stack, build_stack


@dataclass
class Rig:
    stack: Stack
    breaker: CircuitBreaker
    broker: BreakerBroker
    guard: TradingGuard
    executor: Executor
    reconciler: Reconciler
    events: list
    bar_times: dict  # what the guard reads as the bar feeds' newest bars (none unless a test adds them)

    @property
    def clock(self) -> FakeClock:
        return self.stack.clock

    @property
    def terminal(self) -> Any:
        return self.stack.terminal

    @property
    def registry(self):
        return self.stack.registry

    @property
    def journal(self):
        return self.stack.journal

    def reliability(self):
        return self.stack.holder.current.bot.reliability

    def journal_events(self, event: str | None = None) -> list[dict]:
        return [e for e in read_journal(self.stack.runtime / "journal.jsonl") if event is None or e["event"] == event]

    def event_kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def events_of(self, kind: str) -> list[dict]:
        return [data for k, data in self.events if k == kind]

    def magic(self, strategy: str = "micro_scalp") -> int:
        return magic_for(self.stack.holder.current, strategy)

    def idea(self, symbol: str = "XAUUSD", side: str = "buy", sl_distance: float = 3.0, tp_distance: float = 3.0,
             strategy: str = "micro_scalp", **meta: Any) -> TradeIdea:
        quote = self.stack.broker.quote(symbol)
        entry = quote.ask if side == "buy" else quote.bid
        sign = 1 if side == "buy" else -1
        return TradeIdea(symbol, side, entry, entry - sign * sl_distance, entry + sign * tp_distance, strategy,
                         ("test idea",), dict(meta))

    def raw_order(self, symbol: str = "XAUUSD", side: str = "buy", volume: float = 0.1, sl_distance: float = 5.0,
                  tp_distance: float = 5.0, magic: int | None = None, comment: str = "") -> int:
        """An order sent straight to the terminal (not through the bot): returns the position ticket."""
        t = self.terminal
        tick = t.symbol_info_tick(symbol)
        buy = side == "buy"
        price = tick.ask if buy else tick.bid
        sign = 1 if buy else -1
        result = t.order_send({
            "action": t.TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume,
            "type": t.ORDER_TYPE_BUY if buy else t.ORDER_TYPE_SELL, "price": price,
            "sl": round(price - sign * sl_distance, 2), "tp": round(price + sign * tp_distance, 2),
            "deviation": 50, "magic": self.magic() if magic is None else magic, "comment": comment,
            "type_filling": t.ORDER_FILLING_IOC, "type_time": t.ORDER_TIME_GTC})
        assert result is not None and result.retcode == t.TRADE_RETCODE_DONE, result
        return int(result.order)  # MT5: the position ticket is its opening order's ticket

    def raw_close(self, ticket: int) -> None:
        t = self.terminal
        [position] = t.positions_get(ticket=ticket)
        buy = position.type == t.POSITION_TYPE_BUY
        tick = t.symbol_info_tick(position.symbol)
        result = t.order_send({
            "action": t.TRADE_ACTION_DEAL, "symbol": position.symbol, "volume": position.volume,
            "type": t.ORDER_TYPE_SELL if buy else t.ORDER_TYPE_BUY, "position": ticket,
            "price": tick.bid if buy else tick.ask, "deviation": 50, "magic": position.magic, "comment": "manual",
            "type_filling": t.ORDER_FILLING_IOC, "type_time": t.ORDER_TIME_GTC})
        assert result is not None and result.retcode == t.TRADE_RETCODE_DONE, result

    def raw_sltp(self, ticket: int, sl: float, tp: float) -> None:
        t = self.terminal
        [position] = t.positions_get(ticket=ticket)
        result = t.order_send({"action": t.TRADE_ACTION_SLTP, "position": ticket, "symbol": position.symbol,
                               "sl": sl, "tp": tp})
        assert result is not None and result.retcode == t.TRADE_RETCODE_DONE, result


def build_rig(tmp_path: Path, reliability: dict | None = None, bot_changes: dict | None = None,
              clock: FakeClock | None = None) -> Rig:
    changes = dict(bot_changes or {})
    changes["reliability"] = {**changes.get("reliability", {}), **(reliability or {})}
    stack = build_stack(tmp_path, clock=clock, bot_changes=changes)
    events: list = []
    sink = lambda kind, data: events.append((kind, data))  # noqa: E731
    config = lambda: stack.holder.current.bot.reliability  # noqa: E731
    breaker = CircuitBreaker("broker", stack.clock, config, events=sink, journal=stack.journal)
    broker = BreakerBroker(stack.broker, breaker)
    bar_times: dict = {}
    guard = TradingGuard(stack.store, config, stack.clock, journal=stack.journal, events=sink,
                         account=broker.account, closed_trades=stack.registry.closed_trades,
                         bar_times=lambda: bar_times, breaker=breaker)
    executor = Executor(broker, stack.registry, stack.risk, stack.journal, lambda: stack.holder.current, stack.clock,
                        events=sink, sleep=stack.clock.advance, trading_state=guard)
    reconciler = Reconciler(broker, stack.registry, stack.journal, lambda: stack.holder.current, stack.clock,
                            executor=executor, events=sink, trading_state=guard)
    breaker.subscribe(reconciler.on_breaker_change)
    executor.on_fill = reconciler.request
    return Rig(stack, breaker, broker, guard, executor, reconciler, events, bar_times)


def set_reliability(rig: Rig, **changes: Any) -> None:
    """A hot reload of the ``reliability`` section (validated like a file edit)."""
    from dataclasses import replace

    from config.reliability_model import ReliabilityConfig
    snapshot = rig.stack.holder.current
    reliability = ReliabilityConfig.model_validate({**snapshot.bot.reliability.model_dump(), **changes})
    bot = snapshot.bot.model_copy(update={"reliability": reliability})
    rig.stack.holder.swap(replace(snapshot, bot=bot, version=snapshot.version + 1), [])


def account(equity: float, balance: float | None = None) -> Any:
    """An AccountInfo with the given equity (for guard tests that script the equity curve)."""
    from execution.broker import AccountInfo
    balance = equity if balance is None else balance
    return AccountInfo(login=1, currency="USD", balance=balance, equity=equity, margin=0.0, margin_free=equity,
                       margin_level=0.0, leverage=100, trade_allowed=True, hedging=True)
