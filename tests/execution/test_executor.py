"""The executor over the MT5 adapter over the simulated terminal: the whole trade path."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engines.types import TradeIdea
from state.registry import TradeRegistry
from tests.execution.harness import Stack, build_stack


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tmp_path)


def market_idea(stack: Stack, symbol: str = "XAUUSD", side: str = "buy", sl_distance: float = 3.0,
                tp_distance: float = 3.0, strategy: str = "micro_scalp", **meta) -> TradeIdea:
    quote = stack.broker.quote(symbol)
    entry = quote.ask if side == "buy" else quote.bid
    if side == "buy":
        sl, tp = entry - sl_distance, entry + tp_distance
    else:
        sl, tp = entry + sl_distance, entry - tp_distance
    return TradeIdea(symbol, side, entry, sl, tp, strategy, ("test idea",), dict(meta))


def events_of(stack: Stack) -> list[str]:
    return [e["event"] for e in stack.journal_events()]


def run_until_closed(stack: Stack, ticket: int, max_minutes: int = 6000) -> None:
    for _ in range(max_minutes):
        stack.clock.advance(60)
        if stack.executor.sync_closed():
            return
    pytest.fail(f"ticket {ticket} never closed")


def test_open_registers_persists_and_journals_intent_before_the_fill(stack: Stack) -> None:
    outcome = stack.executor.open(market_idea(stack))
    assert outcome.opened, outcome.reason
    trade = outcome.trade
    positions = stack.terminal.positions_get(ticket=trade.ticket)
    assert len(positions) == 1
    assert positions[0].magic == stack.holder.current.bot.execution.magic_base + 1
    assert positions[0].comment == trade.client_id and len(trade.client_id) <= 31
    assert events_of(stack) == ["intent", "opened"]
    intent, opened = stack.journal_events()
    assert intent["client_id"] == opened["client_id"] == trade.client_id and opened["ticket"] == trade.ticket
    reloaded = TradeRegistry(stack.store)  # what a restart would see
    assert reloaded.get(trade.ticket) == trade
    assert stack.events[-1][0] == "trade_opened"
    assert trade.volume > 0 and trade.sl < trade.entry < trade.tp


def test_stop_loss_hit_is_detected_and_scored(stack: Stack) -> None:
    outcome = stack.executor.open(market_idea(stack, sl_distance=1.0, tp_distance=200.0))
    assert outcome.opened
    run_until_closed(stack, outcome.trade.ticket)
    closed = stack.registry.closed_trades("micro_scalp")[-1]
    assert closed.close_reason == "broker:sl"
    assert closed.exit_price == pytest.approx(outcome.trade.sl, abs=0.5)
    assert closed.pnl < 0 and closed.r == pytest.approx(-1.0, abs=0.5)
    assert stack.registry.open_trades() == []
    assert events_of(stack)[-1] == "closed"


def test_take_profit_hit_is_detected_and_scored(stack: Stack) -> None:
    outcome = stack.executor.open(market_idea(stack, side="sell", sl_distance=30.0, tp_distance=1.0))
    assert outcome.opened
    run_until_closed(stack, outcome.trade.ticket)
    closed = stack.registry.closed_trades("micro_scalp")[-1]
    assert closed.close_reason == "broker:tp"
    assert closed.pnl > 0 and closed.r > 0


def test_partial_then_full_close(stack: Stack) -> None:
    idea = market_idea(stack, sl_distance=20.0, tp_distance=20.0)
    outcome = stack.executor.open(idea)
    assert outcome.opened
    trade = outcome.trade
    half = round(trade.volume / 2, 2)
    partial = stack.executor.close(trade, "scale out", volume=half)
    assert partial.status == "partial"
    assert stack.registry.get(trade.ticket).volume == pytest.approx(trade.volume - half)
    assert stack.terminal.positions_get(ticket=trade.ticket)[0].volume == pytest.approx(trade.volume - half)
    final = stack.executor.close(stack.registry.get(trade.ticket), "time exit")
    assert final.status == "closed" and final.trade.close_reason == "time exit"
    assert stack.terminal.positions_get(ticket=trade.ticket) == ()
    assert "partial_close" in events_of(stack) and events_of(stack)[-1] == "closed"


def test_modify_moves_the_stop_at_the_broker_and_in_the_registry(stack: Stack) -> None:
    outcome = stack.executor.open(market_idea(stack, sl_distance=10.0, tp_distance=10.0))
    trade = outcome.trade
    new_sl = round(trade.entry - 5.0, 2)
    updated = stack.executor.modify(trade, new_sl, trade.tp, "trail")
    assert updated.sl == pytest.approx(new_sl)
    assert stack.terminal.positions_get(ticket=trade.ticket)[0].sl == pytest.approx(new_sl)
    assert updated.initial_sl == trade.initial_sl  # R stays measured from the original stop
    assert events_of(stack)[-1] == "modified"


def test_requote_then_fill(stack: Stack) -> None:
    stack.terminal.faults.schedule("requote", count=1)
    outcome = stack.executor.open(market_idea(stack))
    assert outcome.opened
    assert len(stack.terminal.positions_get()) == 1


def test_a_timeout_where_the_order_was_placed_gives_exactly_one_position(stack: Stack) -> None:
    stack.terminal.faults.schedule("timeout_placed", count=1)
    outcome = stack.executor.open(market_idea(stack))
    assert outcome.opened, outcome.reason
    assert len(stack.terminal.positions_get()) == 1
    assert len(stack.registry.open_trades()) == 1
    intents = [e for e in stack.journal_events() if e["event"] == "intent"]
    assert len(intents) == 1  # no second order was ever attempted


def test_a_timeout_where_nothing_was_placed_leaves_no_position(stack: Stack) -> None:
    stack.terminal.faults.schedule("timeout_not_placed", count=1)
    outcome = stack.executor.open(market_idea(stack))
    assert not outcome.opened
    assert stack.terminal.positions_get() == ()
    assert stack.registry.open_trades() == []


def test_invalid_stops_are_fixed_once_then_refused(stack: Stack) -> None:
    stack.terminal.faults.schedule("reject", retcode=10016, count=5)
    outcome = stack.executor.open(market_idea(stack))
    assert outcome.status == "rejected"
    assert "10016" in stack.journal_events()[-1]["reason"]
    assert stack.terminal.positions_get() == () and stack.risk.pending() == []
    assert stack.events[-1][0] == "order_rejected"


def test_no_money_is_rejected_without_retry(stack: Stack) -> None:
    stack.terminal.faults.schedule("reject", retcode=10019, count=5)
    outcome = stack.executor.open(market_idea(stack))
    assert outcome.status == "rejected"
    assert len([f for f in stack.terminal.faults.injected if "reject" in str(f)]) == 1


def test_unsupported_filling_mode_then_the_other_mode(stack: Stack) -> None:
    # EURUSD's bitmask allows FOK and IOC: the adapter prefers one, is refused, and uses the other
    stack.terminal.faults.schedule("reject", retcode=10030, count=1)
    outcome = stack.executor.open(market_idea(stack, "EURUSD", sl_distance=0.0015, tp_distance=0.0015))
    assert outcome.opened, outcome.reason
    assert len(stack.terminal.positions_get()) == 1
    assert stack.broker.connection_state()["filling"]["EURUSD"] in ("FOK", "IOC")


def test_autotrading_off_blocks_entries_with_the_operator_message_and_resumes(stack: Stack) -> None:
    stack.terminal.faults.schedule("autotrading_off")
    outcome = stack.executor.open(market_idea(stack))
    assert outcome.status == "blocked"
    assert "Algo Trading" in outcome.reason
    assert stack.events[-1][0] == "trading_blocked"
    assert stack.executor.health()["entries_blocked"]
    assert stack.terminal.positions_get() == ()
    stack.terminal.faults.clear()
    again = stack.executor.open(market_idea(stack))
    assert again.opened, again.reason


def test_a_30_second_disconnect_reconnects_and_entries_resume(stack: Stack) -> None:
    idea = market_idea(stack, sl_distance=5, tp_distance=5)
    stack.terminal.faults.schedule("disconnect", seconds=30)
    first = stack.executor.open(idea)
    # either the adapter waited the outage out (its backoff advances the clock) or it gave up cleanly
    assert first.status in ("opened", "skipped", "rejected", "unknown")
    stack.clock.advance(31)
    second = stack.executor.open(market_idea(stack, sl_distance=5, tp_distance=5))
    assert second.opened, second.reason
    assert stack.broker.connection_state()["connected"] is True
    tickets = {p.ticket for p in stack.terminal.positions_get()}
    assert {t.ticket for t in stack.registry.open_trades()} == tickets


def test_entry_validation_refuses_before_anything_is_sent(stack: Stack) -> None:
    idea = market_idea(stack)
    drifted = TradeIdea(idea.symbol, "buy", idea.entry - 50, idea.sl - 50, idea.tp - 50, "micro_scalp")
    outcome = stack.executor.open(drifted)
    assert outcome.status == "skipped" and "price moved" in outcome.reason
    assert "intent" not in events_of(stack)
    assert stack.terminal.positions_get() == ()


def test_stale_quotes_are_refused(stack: Stack) -> None:
    stack.terminal.faults.schedule("stale_quotes", seconds=600)
    stack.clock.advance(120)
    outcome = stack.executor.open(market_idea(stack))
    assert outcome.status == "skipped" and "stale quote" in outcome.reason


def test_limits_from_config_stop_the_second_trade(tmp_path: Path) -> None:
    stack = build_stack(tmp_path, bot_changes={"risk": {"max_open_per_symbol": 1}})
    assert stack.executor.open(market_idea(stack, sl_distance=20, tp_distance=20)).opened
    second = stack.executor.open(market_idea(stack, sl_distance=20, tp_distance=20))
    assert second.status == "rejected" and "XAUUSD has 1 open, limit 1" in second.reason


def test_an_unknown_outcome_is_resolved_by_client_id_without_a_resend(stack: Stack) -> None:
    # The reply is lost AND the terminal stays unreachable for the adapter's own lookups: the
    # executor keeps looking the client id up (never resending) until the entry would expire.
    stack.terminal.faults.schedule("timeout_placed", count=1)
    stack.terminal.faults.schedule("ipc_error", count=10, function="positions_get")
    outcome = stack.executor.open(market_idea(stack))
    assert outcome.opened, outcome.reason
    assert stack.executor.counters.get("resolved_by_lookup") == 1  # the adapter could not tell; we did
    assert len(stack.terminal.positions_get()) == 1
    assert [e["event"] for e in stack.journal_events()].count("intent") == 1
    assert stack.registry.open_trades()[0].client_id == outcome.client_id


def test_an_outcome_still_unknown_at_expiry_keeps_the_slot_and_says_so(stack: Stack) -> None:
    stack.terminal.faults.schedule("timeout_placed", count=1)
    stack.terminal.faults.schedule("ipc_error", count=500, function="positions_get")
    outcome = stack.executor.open(market_idea(stack))
    assert outcome.status == "unknown"
    assert stack.journal_events()[-1]["event"] == "unknown"
    assert len(stack.risk.pending()) == 1  # the slot stays taken until reconciliation settles it
    assert stack.events[-1][0] == "order_unknown"


def test_a_thousand_concurrent_executor_opens_never_exceed_the_limits(tmp_path: Path) -> None:
    import threading
    stack = build_stack(tmp_path, bot_changes={"risk": {"max_open_total": 5, "max_open_per_symbol": 2,
                                                        "max_open_per_strategy": 3, "max_trades_per_hour": 1000,
                                                        "max_trades_per_day": 10000}})
    ideas = {
        ("XAUUSD", "micro_scalp"): market_idea(stack, "XAUUSD", strategy="micro_scalp", sl_distance=20, tp_distance=20),
        ("EURUSD", "range_scalp"): market_idea(stack, "EURUSD", strategy="range_scalp", sl_distance=0.002, tp_distance=0.002),
        ("BTCUSD", "order_flow"): market_idea(stack, "BTCUSD", strategy="order_flow", sl_distance=300, tp_distance=300),
        ("XAUUSD", "order_flow"): market_idea(stack, "XAUUSD", strategy="order_flow", sl_distance=20, tp_distance=20),
    }
    keys = list(ideas)
    barrier = threading.Barrier(8)
    outcomes = []

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(125):
            outcomes.append(stack.executor.open(ideas[keys[(n + i) % len(keys)]]))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 1000
    positions = stack.terminal.positions_get()
    assert sum(o.opened for o in outcomes) == len(positions) == len(stack.registry.open_trades()) == 5
    by_symbol: dict = {}
    for p in positions:
        by_symbol[p.symbol] = by_symbol.get(p.symbol, 0) + 1
    assert max(by_symbol.values()) <= 2
    by_strategy: dict = {}
    for t in stack.registry.open_trades():
        by_strategy[t.strategy] = by_strategy.get(t.strategy, 0) + 1
    assert max(by_strategy.values()) <= 3
    assert stack.risk.pending() == []
