"""Transport faults: lost replies, IPC errors, disconnects. A lost order_send reply is never
taken as "not placed", and the adapter never resends after one."""
from __future__ import annotations

import threading
import time

import pytest

from execution.errors import BrokerError, BrokerUnavailable, OrderNotPlaced, OrderOutcomeUnknown
from execution.broker import Deal, Position
from execution.simterminal import SimTerminal
from tests.execution.conftest import SIM_PASSWORD


def _deals_with_comment(terminal, comment):
    return [d for d in terminal.history_deals_get(0, 4_000_000_000) if d.comment == comment]


def test_none_result_becomes_an_error_with_last_error(broker, sim):
    sim.symbol_select("XAUUSD", False)   # a symbol outside Market Watch has no tick: None, (-4, ...)
    with pytest.raises(BrokerError) as info:
        broker.quote("XAUUSD")
    assert info.value.code == -4 and not isinstance(info.value, BrokerUnavailable)
    assert str(info.value) == "MT5 symbol_info_tick('XAUUSD') failed: -4 Terminal: Not found"
    assert broker.connection_state()["last_error"]["code"] == -4


def test_a_first_attempt_that_answers_clears_the_failure_count(broker, sim):
    """The first attempt's success path notes the success only when there is something to note:
    after a failed call it does (the count goes back to 0), and False from a function that does
    not answer a bool is a result, not a failure."""
    sim.symbol_select("XAUUSD", False)
    with pytest.raises(BrokerError):
        broker.quote("XAUUSD")
    assert broker.connection_state()["consecutive_failures"] == 1
    sim.symbol_select("XAUUSD", True)
    broker.quote("XAUUSD")
    assert broker.connection_state()["consecutive_failures"] == 0
    sim.orders_total = lambda: False  # not a bool function: False is its answer
    assert broker._call("orders_total") is False
    assert broker.connection_state()["consecutive_failures"] == 0


def test_ipc_error_reconnects_and_the_call_succeeds(broker, sim, clock):
    opened = broker.market_order("EURUSD", "buy", 0.01, None, None, magic=2, client_id="t-ipc")
    sim.faults.schedule("ipc_error", function="positions_get")
    waits_before = len(clock.waits)
    [position] = broker.positions()
    assert position.ticket == opened.position
    state = broker.connection_state()
    assert state["connected"] is True and state["reconnects"] == 1
    assert state["last_error"]["code"] == -10004
    assert clock.waits[waits_before:] == [0.5]   # one backoff, slept on the injected clock


def test_persistent_ipc_errors_are_bounded(broker, sim, clock):
    sim.faults.schedule("ipc_error", count=100)
    start = clock.monotonic()
    with pytest.raises(BrokerUnavailable, match="3 reconnect attempts failed"):
        broker.account()
    assert clock.monotonic() - start == pytest.approx(0.5 + 1.0 + 2.0)  # exponential backoff, bounded
    assert broker.connection_state()["connected"] is False
    sim.faults.clear()
    assert broker.account().login == 5000001   # the next call reconnects
    assert broker.connection_state()["connected"] is True


def test_thirty_second_disconnect_reconnects_and_entries_resume(broker, sim, clock):
    sim.faults.schedule("disconnect", seconds=30)
    with pytest.raises(BrokerUnavailable):
        broker.positions()
    with pytest.raises(BrokerUnavailable):
        broker.market_order("EURUSD", "buy", 0.01, None, None, magic=2, client_id="t-disc-1")
    assert broker.connection_state()["connected"] is False
    assert sim.positions_get() is None and sim.last_error()[0] == -10004   # the terminal is unreachable
    clock.advance(30)
    # the IPC link is back but the terminal needs initialize() to reach its trade server again
    result = broker.market_order("EURUSD", "buy", 0.01, None, None, magic=2, client_id="t-disc-2")
    assert result.ok and [p.comment for p in sim.positions_get()] == ["t-disc-2"]
    state = broker.connection_state()
    assert state["connected"] is True and state["trade_server_connected"] is True and state["reconnects"] >= 1


def test_timeout_where_the_order_was_placed_gives_exactly_one_position(broker, sim, clock):
    sim.faults.schedule("timeout_placed")
    result = broker.market_order("XAUUSD", "buy", 0.02, None, None, magic=6, client_id="t-lost-1")
    assert result.ok and result.recovered and result.volume == 0.02
    assert [f.kind for f in sim.faults.injected] == ["timeout_placed"]
    [position] = sim.positions_get()
    assert position.comment == "t-lost-1" and result.position == position.ticket
    assert len(_deals_with_comment(sim, "t-lost-1")) == 1   # no resend
    assert isinstance(broker.find_by_client_id("t-lost-1", clock.now()), Position)


def test_timeout_where_nothing_was_placed_is_verified_then_reported(broker, sim, clock):
    sim.faults.schedule("timeout_not_placed")
    start = clock.monotonic()
    with pytest.raises(OrderNotPlaced) as info:
        broker.market_order("XAUUSD", "buy", 0.02, None, None, magic=6, client_id="t-lost-2")
    assert info.value.client_id == "t-lost-2" and info.value.code == -10005
    assert "looked up twice" in str(info.value)
    assert clock.monotonic() - start >= 1.0   # the second look came after the re-check delay
    assert sim.positions_get() == () and _deals_with_comment(sim, "t-lost-2") == []


def test_lost_reply_and_unreachable_terminal_is_outcome_unknown(broker, sim, clock):
    sim.faults.schedule("timeout_placed")
    sim.faults.schedule("ipc_error", function="positions_get", count=100)
    with pytest.raises(OrderOutcomeUnknown) as info:
        broker.market_order("EURUSD", "sell", 0.01, None, None, magic=6, client_id="t-lost-3")
    assert info.value.client_id == "t-lost-3" and "do not resend" in str(info.value)
    sim.faults.clear()
    # the executor resolves it later by client id: the order had executed, once
    found = broker.find_by_client_id("t-lost-3", clock.now())
    assert isinstance(found, Position) and found.side == "sell"
    assert len(sim.positions_get()) == 1


def test_lost_close_reply_is_resolved_by_reading_the_position_back(broker, sim, clock):
    opened = broker.market_order("EURUSD", "buy", 0.03, None, None, magic=6, client_id="t-lost-c0")
    sim.faults.schedule("timeout_placed")
    closed = broker.close_position(opened.position, volume=0.01, client_id="t-lost-c1")
    assert closed.ok and closed.recovered and closed.volume == 0.01
    assert broker.position(opened.position).volume == 0.02
    assert isinstance(broker.find_by_client_id("t-lost-c1", clock.now()), Deal)


def test_lost_modify_reply_is_checked_by_reading_sltp_back(broker, sim):
    opened = broker.market_order("EURUSD", "buy", 0.01, None, None, magic=6, client_id="t-lost-m")
    quote = broker.quote("EURUSD")
    sim.faults.schedule("timeout_placed")
    result = broker.modify_sltp(opened.position, sl=quote.bid - 0.0020, tp=quote.bid + 0.0030)
    assert result.ok and result.recovered
    position = broker.position(opened.position)
    assert (position.sl, position.tp) == (round(quote.bid - 0.0020, 5), round(quote.bid + 0.0030, 5))


def test_close_after_a_disconnect_reattaches_on_10031(broker, sim, clock):
    opened = broker.market_order("XAUUSD", "buy", 0.01, None, None, magic=2, client_id="t-10031-o")
    sim.faults.schedule("disconnect", seconds=5)
    clock.advance(6)   # the IPC link is back, the trade server link is not: order_check answers 10031
    closed = broker.close_position(opened.position, client_id="t-10031-c")
    assert closed.ok and closed.attempts == 2
    assert any("10031 CONNECTION" in note for note in closed.adjustments)
    assert broker.position(opened.position) is None


class ConcurrencyProbe(SimTerminal):
    """Counts how many threads are inside a terminal call at once (before the terminal's own lock)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inside = self.max_inside = 0

    def _probe(self, call, *args, **kwargs):
        self.inside += 1
        self.max_inside = max(self.max_inside, self.inside)
        time.sleep(0.0005)   # widen the window an unserialised caller would hit
        try:
            return call(*args, **kwargs)
        finally:
            self.inside -= 1

    def symbol_info_tick(self, symbol):
        return self._probe(super().symbol_info_tick, symbol)

    def positions_get(self, **kwargs):
        return self._probe(super().positions_get, **kwargs)


def test_every_module_call_is_serialised_by_one_lock(make_broker, clock, tmp_path):
    terminal = ConcurrencyProbe(clock, tmp_path / "book.json", password=SIM_PASSWORD, server_utc_offset_hours=2)
    broker = make_broker(terminal)

    def worker() -> None:
        for _ in range(40):
            broker.quote("EURUSD")
            broker.positions()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert terminal.max_inside == 1
