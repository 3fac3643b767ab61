"""The reconciler over the simulated terminal: the four kinds of difference (adopt, closed while
away, external, SL/TP repair), unclear entries settled by client id, and no action at all on a
failed or untrustworthy query."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from execution.risk import LEDGER_DOCUMENT, RiskManager
from execution.trading_state import ACTIVE, REDUCING
from state import registry as registry_module
from state.registry import Trade
from tests.reliability.rig import Rig, build_rig, set_reliability


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = build_rig(tmp_path)
    assert rig.reconciler.run("startup").ok
    return rig


def intent_line(rig: Rig, client_id: str, sl: float, tp: float, **meta: Any) -> None:
    """What the executor persists before sending (the process then dies before registering)."""
    rig.journal.append("intent", durable=True, client_id=client_id, symbol="XAUUSD", strategy="range_scalp",
                       side="buy", volume=0.1, entry=0.0, sl=sl, tp=tp, magic=rig.magic("range_scalp"),
                       reason="range bounce; score 7", meta=meta or None)


# ---------------------------------------------------------------------------------------- adopt
def test_a_position_at_our_magic_missing_from_the_registry_is_adopted_from_its_intent(rig: Rig) -> None:
    quote = rig.stack.broker.quote("XAUUSD")
    intended_sl = round(quote.ask - 6.0, 2)
    intent_line(rig, "rs-crash-1", sl=intended_sl, tp=round(quote.ask + 5.0, 2), setup="bounce",
                range={"high": 2100.0, "low": 1950.0})
    ticket = rig.raw_order(magic=rig.magic("range_scalp"), comment="rs-crash-1", sl_distance=6.0, tp_distance=5.0)
    rig.raw_sltp(ticket, round(quote.ask - 4.0, 2), round(quote.ask + 5.0, 2))  # a breakeven-ish move made later
    report = rig.reconciler.run("periodic")
    assert report.adopted == [ticket] and report.found >= 1 and report.fixed >= 1
    trade = rig.registry.get(ticket)
    position = rig.stack.broker.position(ticket)
    assert trade.strategy == "range_scalp" and trade.client_id == "rs-crash-1"
    assert trade.initial_sl == pytest.approx(intended_sl)  # R is measured from the intended stop
    assert trade.sl == position.sl and trade.tp == position.tp and trade.volume == position.volume
    assert trade.entry == position.price_open
    assert trade.meta["setup"] == "bounce" and trade.meta["range"] == {"high": 2100.0, "low": 1950.0}
    assert trade.meta["adopted"]["from_intent"] is True
    [line] = rig.journal_events("adopted")
    assert line["ticket"] == ticket and line["client_id"] == "rs-crash-1" and line["strategy"] == "range_scalp"
    assert line["reason"] and rig.events_of("position_adopted")[0]["ticket"] == ticket
    again = rig.reconciler.run("periodic")
    assert again.adopted == [] and again.found == 0  # idempotent


def test_adoption_without_an_intent_line_rebuilds_from_the_position(rig: Rig) -> None:
    ticket = rig.raw_order(magic=rig.magic("order_flow"), comment="of-unknown-7", sl_distance=4.0)
    rig.reconciler.run("periodic")
    trade = rig.registry.get(ticket)
    assert trade.strategy == "order_flow" and trade.initial_sl == trade.sl
    assert "no intent line" in rig.journal_events("adopted")[0]["reason"]


def test_a_fill_being_registered_by_the_executor_is_never_adopted_twice(rig: Rig) -> None:
    original = rig.executor._register
    seen: dict[str, Any] = {}

    def register_after_a_reconciliation(*args: Any, **kwargs: Any):
        seen["report"] = rig.reconciler.run("fill")  # the reconciler runs between the fill and the registry
        return original(*args, **kwargs)

    rig.executor._register = register_after_a_reconciliation  # type: ignore[method-assign]
    outcome = rig.executor.open(rig.idea())
    assert outcome.opened and seen["report"].adopted == []
    assert [e["event"] for e in rig.journal_events()].count("opened") == 1
    assert not rig.journal_events("adopted")


# ---------------------------------------------------------------------------------------- closed while away
def test_a_stop_hit_while_not_looking_is_recorded_from_the_deals(rig: Rig) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=1.0, tp_distance=300.0)).trade
    for _ in range(600):
        rig.clock.advance(30)
        if not rig.terminal.positions_get(ticket=trade.ticket):
            break
    report = rig.reconciler.run("periodic")
    assert report.closed_while_away == [trade.ticket]
    closed = rig.registry.closed_trades()[-1]
    assert closed.ticket == trade.ticket and closed.close_reason == "broker:sl"
    assert closed.exit_price == pytest.approx(trade.sl, abs=0.5)
    assert closed.pnl < 0 and closed.r == pytest.approx(-1.0, abs=0.5)
    [line] = rig.journal_events("closed")
    assert line["ticket"] == trade.ticket and line["pnl"] == closed.pnl and line["reason"] == "broker:sl"


def test_a_manual_close_at_the_terminal_is_recorded(rig: Rig) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    rig.clock.advance(60)
    rig.raw_close(trade.ticket)
    report = rig.reconciler.run("periodic")
    assert report.closed_while_away == [trade.ticket]
    assert rig.registry.get(trade.ticket) is None
    assert rig.registry.closed_trades()[-1].close_reason.startswith("broker:")


def test_a_trade_opened_and_closed_while_away_is_recorded_from_the_history(rig: Rig) -> None:
    intent_line(rig, "rs-gone-1", sl=1990.0, tp=2030.0)
    ticket = rig.raw_order(magic=rig.magic("range_scalp"), comment="rs-gone-1", sl_distance=20, tp_distance=20)
    rig.clock.advance(120)
    rig.raw_close(ticket)
    report = rig.reconciler.run("periodic")
    assert report.history_recorded == [ticket] and report.adopted == []
    closed = rig.registry.closed_trades("range_scalp")[-1]
    assert closed.ticket == ticket and closed.client_id == "rs-gone-1" and closed.pnl is not None
    assert [e["event"] for e in rig.journal_events() if e.get("ticket") == ticket] == ["adopted", "closed"]
    assert rig.reconciler.run("periodic").history_recorded == []  # recorded once


def test_a_history_trade_the_registry_has_since_trimmed_is_not_recorded_again(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "CLOSED_KEPT", 2)
    intent_line(rig, "rs-gone-1", sl=1990.0, tp=2030.0)
    ticket = rig.raw_order(magic=rig.magic("range_scalp"), comment="rs-gone-1", sl_distance=20, tp_distance=20)
    rig.clock.advance(120)
    rig.raw_close(ticket)
    assert rig.reconciler.run("periodic").history_recorded == [ticket]
    for n in (1, 2):  # two later range trades push it out of the kept closed trades
        rig.clock.advance(60)
        later = Trade(ticket=900 + n, client_id=f"rs-later-{n}", strategy="range_scalp", symbol="XAUUSD", side="buy",
                      volume=0.1, entry=2000.0, sl=1990.0, tp=2010.0, initial_sl=1990.0,
                      magic=rig.magic("range_scalp"), opened_at=rig.clock.now().isoformat())
        rig.registry.add(later)
        rig.registry.close(later.ticket, 2005.0, rig.clock.now(), 5.0, "test")
    assert ticket not in {t.ticket for t in rig.registry.closed_trades("range_scalp")}
    assert not rig.registry.would_keep_closed("range_scalp", rig.clock.now() - timedelta(minutes=3))
    assert rig.reconciler.run("periodic").history_recorded == []  # the journal says it was recorded once
    assert ticket not in {t.ticket for t in rig.registry.closed_trades("range_scalp")}
    assert [e["event"] for e in rig.journal_events() if e.get("ticket") == ticket] == ["adopted", "closed"]


# ---------------------------------------------------------------------------------------- external
def test_an_external_position_is_reported_once_and_never_touched(rig: Rig) -> None:
    ticket = rig.raw_order(magic=0, comment="manual trade", sl_distance=3.0)
    before = rig.terminal.positions_get(ticket=ticket)[0]
    first = rig.reconciler.run("periodic")
    second = rig.reconciler.run("periodic")
    assert first.external == [ticket] and first.external_new == [ticket]
    assert second.external == [ticket] and second.external_new == []
    assert rig.registry.get(ticket) is None
    after = rig.terminal.positions_get(ticket=ticket)[0]
    assert (after.sl, after.tp, after.volume) == (before.sl, before.tp, before.volume)
    assert len(rig.journal_events("external_position")) == 1 and len(rig.events_of("external_position")) == 1
    assert rig.reconciler.health()["external_positions"] == [ticket]


def test_external_positions_are_adopted_only_when_the_config_says_so(rig: Rig) -> None:
    ticket = rig.raw_order(magic=0, comment="manual trade")
    set_reliability(rig, adopt_external_into="micro_scalp")
    report = rig.reconciler.run("periodic")
    assert report.adopted == [ticket] and report.external == []
    trade = rig.registry.get(ticket)
    assert trade.strategy == "micro_scalp" and trade.magic == 0 and trade.meta["adopted"]["external"] is True


# ---------------------------------------------------------------------------------------- SL/TP and volume
def test_stops_changed_at_the_broker_are_set_back_to_the_registry(rig: Rig) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=10, tp_distance=10)).trade
    rig.raw_sltp(trade.ticket, round(trade.sl - 3.0, 2), round(trade.tp + 4.0, 2))
    report = rig.reconciler.run("periodic")
    assert report.sltp_differences == [trade.ticket] and report.sltp_repaired == [trade.ticket]
    position = rig.stack.broker.position(trade.ticket)
    assert position.sl == pytest.approx(trade.sl) and position.tp == pytest.approx(trade.tp)
    line = rig.journal_events("modified")[-1]
    assert line["ticket"] == trade.ticket and line["reason"].startswith("reconciler repair")
    assert rig.reconciler.run("periodic").sltp_differences == []


def test_report_mode_only_reports_a_stop_difference(rig: Rig) -> None:
    set_reliability(rig, sltp_repair="report")
    trade = rig.executor.open(rig.idea(sl_distance=10, tp_distance=10)).trade
    moved = round(trade.sl - 3.0, 2)
    rig.raw_sltp(trade.ticket, moved, trade.tp)
    report = rig.reconciler.run("periodic")
    assert report.sltp_differences == [trade.ticket] and report.sltp_repaired == []
    assert rig.stack.broker.position(trade.ticket).sl == pytest.approx(moved)
    assert rig.journal_events("sltp_difference")[0]["ticket"] == trade.ticket


def test_our_own_modify_that_reached_the_broker_before_a_crash_is_kept(rig: Rig) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=10, tp_distance=10)).trade
    new_sl = round(trade.sl + 4.0, 2)
    # the executor persisted the modify intent, the broker applied it, the process died before saving
    rig.registry.update(trade.ticket, meta={"pending_modify": {"sl": new_sl, "tp": trade.tp, "reason": "trail"}})
    rig.raw_sltp(trade.ticket, new_sl, trade.tp)
    report = rig.reconciler.run("periodic")
    assert report.sltp_accepted == [trade.ticket] and report.sltp_repaired == []
    updated = rig.registry.get(trade.ticket)
    assert updated.sl == pytest.approx(new_sl) and updated.meta["pending_modify"] is None
    assert updated.initial_sl == trade.initial_sl
    assert rig.stack.broker.position(trade.ticket).sl == pytest.approx(new_sl)


def test_a_partial_close_at_the_terminal_updates_the_volume(rig: Rig) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=10, tp_distance=10)).trade
    t = rig.terminal
    half = round(trade.volume / 2, 2)
    tick = t.symbol_info_tick("XAUUSD")
    result = t.order_send({"action": t.TRADE_ACTION_DEAL, "symbol": "XAUUSD", "volume": half,
                           "type": t.ORDER_TYPE_SELL, "position": trade.ticket, "price": tick.bid, "deviation": 50,
                           "magic": trade.magic, "comment": "manual part", "type_filling": t.ORDER_FILLING_IOC})
    assert result.retcode == t.TRADE_RETCODE_DONE
    report = rig.reconciler.run("periodic")
    assert report.volume_updated == [trade.ticket]
    assert rig.registry.get(trade.ticket).volume == pytest.approx(trade.volume - half)


# ---------------------------------------------------------------------------------------- never on bad data
def test_a_failed_positions_query_changes_nothing(rig: Rig) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    rig.raw_close(trade.ticket)  # it IS gone, but the bot cannot see that right now
    rig.terminal.faults.schedule("ipc_error", count=1000, function="positions_get")
    report = rig.reconciler.run("periodic")
    assert not report.ok and "positions query failed" in report.skipped
    assert rig.registry.get(trade.ticket) is not None and report.found == 0
    rig.terminal.faults.clear("ipc_error")
    assert rig.reconciler.run("periodic").closed_while_away == [trade.ticket]


class BlindBroker:
    """The terminal answers "no positions" and an empty history (a glitch), and may say it is
    disconnected: neither may be taken as "everything closed"."""

    def __init__(self, inner: Any, connected: bool) -> None:
        self._inner = inner
        self.connected = connected

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def positions(self, *args: Any, **kwargs: Any) -> list:
        return []

    def deals(self, *args: Any, **kwargs: Any) -> list:
        return []

    def connection_state(self) -> dict:
        return {**self._inner.connection_state(), "connected": self.connected}


@pytest.mark.parametrize("connected", [False, True])
def test_an_empty_answer_never_closes_trades(rig: Rig, connected: bool) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    blind = BlindBroker(rig.broker, connected)
    rig.reconciler.broker = blind
    rig.executor.broker = blind
    report = rig.reconciler.run("periodic")
    assert rig.registry.get(trade.ticket) is not None and report.closed_while_away == []
    if not connected:
        assert "reports itself disconnected" in report.skipped
    else:
        assert report.ok  # compared, but no closing deal is visible: nothing recorded


# ---------------------------------------------------------------------------------------- unclear entries
def unclear_open(rig: Rig, fault: str):
    rig.terminal.faults.schedule(fault)
    rig.terminal.faults.schedule("ipc_error", count=1000, function="positions_get")  # lookups fail too
    outcome = rig.executor.open(rig.idea())
    rig.terminal.faults.clear("ipc_error")
    assert outcome.status == "unknown" and len(rig.stack.risk.pending()) == 1
    return outcome


def test_an_unclear_entry_that_filled_is_adopted_with_its_reservation(rig: Rig) -> None:
    outcome = unclear_open(rig, "timeout_placed")
    report = rig.reconciler.run("periodic")
    assert report.unknown_adopted == [outcome.client_id]
    [trade] = rig.registry.open_trades()
    assert trade.client_id == outcome.client_id and rig.stack.risk.pending() == []
    assert len(rig.terminal.positions_get()) == 1
    opened = rig.journal_events("opened")[-1]
    assert opened["client_id"] == outcome.client_id and "client id" in opened["reason"]


def test_an_unclear_entry_that_never_filled_is_released(rig: Rig) -> None:
    outcome = unclear_open(rig, "timeout_not_placed")
    report = rig.reconciler.run("periodic")
    assert report.unknown_released == [outcome.client_id]
    assert rig.stack.risk.pending() == [] and rig.registry.open_trades() == []
    assert rig.journal_events("unknown_released")[0]["client_id"] == outcome.client_id


# ---------------------------------------------------------------------------------------- scheduling and health
def test_a_failed_start_up_comparison_keeps_entries_closed_until_one_succeeds(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    rig.terminal.faults.schedule("ipc_error", count=1000, function="positions_get")
    report = rig.reconciler.run("startup")
    assert not report.ok
    assert rig.guard.state == REDUCING and "could not compare with the broker at start" in rig.guard.reason
    rig.terminal.faults.clear("ipc_error")
    refused = rig.executor.open(rig.idea())
    assert refused.status == "halted"
    assert rig.reconciler.run("periodic").ok
    assert rig.guard.state == ACTIVE and rig.executor.open(rig.idea()).opened


def test_the_monitor_runs_on_its_interval_on_request_and_after_a_reconnect(rig: Rig) -> None:
    step = lambda: rig.reconciler.step(rig.clock.now())  # noqa: E731
    runs = rig.reconciler.runs
    step()
    assert rig.reconciler.runs == runs  # the start-up pass was just done
    rig.reconciler.request("fill")
    step()
    assert rig.reconciler.runs == runs + 1 and rig.reconciler.last_report.reason == "fill"
    rig.clock.advance(9)
    step()
    assert rig.reconciler.runs == runs + 1
    rig.clock.advance(1)
    step()
    assert rig.reconciler.runs == runs + 2 and rig.reconciler.last_report.reason == "periodic"
    rig.terminal.faults.schedule("disconnect", seconds=2)
    reconnects = rig.stack.broker.connection_state()["reconnects"]
    rig.stack.broker.account()  # fails, and the adapter reconnects once the link is back
    assert rig.stack.broker.connection_state()["reconnects"] == reconnects + 1
    step()
    assert rig.reconciler.runs == runs + 3 and rig.reconciler.last_report.reason == "reconnect"
    assert rig.reconciler.interval_seconds == 1.0


def test_every_fill_asks_for_a_prompt_pass(rig: Rig) -> None:
    runs = rig.reconciler.runs
    trade = rig.executor.open(rig.idea(sl_distance=20, tp_distance=20)).trade
    rig.reconciler.step(rig.clock.now())
    assert rig.reconciler.runs == runs + 1 and rig.reconciler.last_report.reason == "fill"
    rig.executor.close(trade, "done")
    rig.reconciler.step(rig.clock.now())
    assert rig.reconciler.runs == runs + 2 and rig.reconciler.last_report.reason == "close"


def test_health_reports_the_last_run_and_the_counts(rig: Rig) -> None:
    ticket = rig.raw_order(comment="ms-lost-2")
    rig.raw_order(magic=0, comment="manual")
    rig.reconciler.run("periodic")
    health = rig.reconciler.health()
    assert health["last_ok"] is True and health["last_found"] == 2 and health["last_fixed"] == 1
    assert health["totals"]["adopted"] == 1 and health["totals"]["external_new"] == 1
    assert health["runs"] == 2 and health["last_duration_ms"] >= 0
    assert "1 adopted" in health["summary"] and rig.registry.get(ticket) is not None
    summary_line = rig.journal_events("reconciliation")[-1]
    assert summary_line["found"] == 2 and summary_line["fixed"] == 1


def test_repeated_failures_raise_one_alert(rig: Rig) -> None:
    set_reliability(rig, reconcile_alert_after_failures=3, breaker_failure_threshold=50)
    rig.terminal.faults.schedule("ipc_error", count=10_000, function="positions_get")
    for _ in range(5):
        rig.reconciler.run("periodic")
        rig.clock.advance(timedelta(seconds=10).total_seconds())
    assert len(rig.events_of("reconcile_failed")) == 1 and rig.events_of("reconcile_failed")[0]["failures"] == 3


def test_a_stop_is_never_removed_by_a_repair(rig: Rig) -> None:
    trade = rig.executor.open(rig.idea(sl_distance=10, tp_distance=10)).trade
    rig.registry.update(trade.ticket, sl=0.0)  # a registry record that lost its stop
    report = rig.reconciler.run("periodic")
    assert report.sltp_accepted == [trade.ticket] and report.sltp_repaired == []
    assert rig.stack.broker.position(trade.ticket).sl == pytest.approx(trade.sl)
    assert rig.registry.get(trade.ticket).sl == pytest.approx(trade.sl)


# ---------------------------------------------------------------------------------------- risk ledger
def test_an_adopted_entry_counts_against_the_trade_caps_once(tmp_path: Path) -> None:
    """The bot died between a fill and its registration: the reconciler adopts the position, and
    the hourly cap must count that entry (it did not before: the ledger only heard of confirmed
    fills). A second adoption report of the same client id, or a restart, does not count it again."""
    rig = build_rig(tmp_path, bot_changes={"risk": {"max_trades_per_hour": 2, "max_trades_per_day": 50}})
    assert rig.reconciler.run("startup").ok
    assert rig.executor.open(rig.idea()).opened  # one entry confirmed by the executor
    ticket = rig.raw_order(magic=rig.magic("micro_scalp"), comment="ms-crash-1", sl_distance=6.0)
    assert rig.reconciler.run("periodic").adopted == [ticket]
    assert rig.stack.risk._entries_since("micro_scalp", rig.clock.now() - timedelta(hours=1)) == 2
    refused = rig.executor.open(rig.idea(symbol="EURUSD", sl_distance=0.002, tp_distance=0.002))
    assert not refused.opened and "2 trades in the last hour, limit 2" in refused.reason
    assert rig.stack.risk.record_entry("micro_scalp", rig.clock.now(), "ms-crash-1") is False

    restarted = RiskManager(lambda: rig.stack.holder.current.bot.risk, rig.stack.registry, rig.stack.store)
    assert restarted._entries_since("micro_scalp", rig.clock.now() - timedelta(hours=1)) == 2


def test_a_registered_trade_missing_from_the_ledger_is_counted_at_start(tmp_path: Path) -> None:
    """A stop between the registry's write and the ledger's: the registry knows the trade, the
    ledger does not. The next start counts it from the registry."""
    rig = build_rig(tmp_path)
    assert rig.reconciler.run("startup").ok
    trade = rig.executor.open(rig.idea()).trade
    rig.stack.store.save(LEDGER_DOCUMENT, {"entries": {}})  # the ledger line never made it to disk
    restarted = RiskManager(lambda: rig.stack.holder.current.bot.risk, rig.stack.registry, rig.stack.store)
    assert restarted._entries_since("micro_scalp", rig.clock.now() - timedelta(hours=1)) == 1
    saved = rig.stack.store.load(LEDGER_DOCUMENT)
    assert saved["entries"]["micro_scalp"] == [[trade.opened_at, trade.client_id]]


def test_a_ledger_in_the_older_format_still_loads(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    now = rig.clock.now()
    rig.stack.store.save(LEDGER_DOCUMENT, {"entries": {"range_scalp": [now.isoformat()]}})
    risk = RiskManager(lambda: rig.stack.holder.current.bot.risk, rig.stack.registry, rig.stack.store)
    assert risk._entries_since("range_scalp", now - timedelta(minutes=1)) == 1


def test_an_unreadable_ledger_entry_is_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    rig = build_rig(tmp_path)
    now = rig.clock.now()
    rig.stack.store.save(LEDGER_DOCUMENT, {"entries": {"micro_scalp": [[now.isoformat(), "ms-1"], "yesterday",
                                                                       [None], [now.isoformat(), "ms-2"]]}})
    risk = RiskManager(lambda: rig.stack.holder.current.bot.risk, rig.stack.registry, rig.stack.store)
    assert risk._entries_since("micro_scalp", now - timedelta(minutes=1)) == 2
    assert "risk_ledger.json: entries.micro_scalp: unreadable entry 'yesterday' skipped" in caplog.text
    assert "unreadable entry [None] skipped" in caplog.text
