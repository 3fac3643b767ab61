"""Error severity and the auto-disable of range-scalp ENTRIES: critical errors within an hour
disable entries (notified, persisted), exits keep running, a config edit re-enables them."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engines.range_scalp import evaluate_entry
from monitors.range_scalp_errors import ERROR_SEVERITY, ErrorLedger, Severity, severity_of
from tests.range_scalp.test_monitor_rig import EUR_SETUP_AT, EUR_SETUP_START, UTC, Rig

AUTO = {"defaults": {"execution": {"auto_execute": True, "auto_execute_min_score": 55}}}
T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)


def test_severity_catalogue() -> None:
    assert severity_of("broker_fatal") is Severity.CRITICAL
    assert severity_of("state_corruption") is Severity.CRITICAL
    assert severity_of("engine_failure") is Severity.CRITICAL
    assert severity_of("exit_order_fails") is Severity.HIGH
    assert severity_of("orphaned_trades") is Severity.HIGH
    # a lost connection or missing data is transient: it must not switch entries off
    assert severity_of("data_unavailable") is Severity.WARNING
    assert severity_of("something_new") is Severity.WARNING and Severity.WARNING.value == "warning"
    assert all(isinstance(s, Severity) for s in ERROR_SEVERITY.values())


def test_ledger_counts_critical_errors_in_a_rolling_hour() -> None:
    ledger = ErrorLedger()
    assert ledger.record("broker_fatal", "a", T0, 3) [1] is False
    assert ledger.record("data_unavailable", "transient", T0, 3)[1] is False  # not critical: not counted
    assert ledger.record("engine_failure", "b", T0 + timedelta(minutes=30), 3)[1] is False
    # the first one is more than an hour old by now: still 2 in the window
    assert ledger.record("state_corruption", "c", T0 + timedelta(minutes=61), 3)[1] is False
    assert ledger.record("broker_fatal", "d", T0 + timedelta(minutes=62), 3)[1] is True
    assert ledger.counts == {"critical": 4, "high": 0, "warning": 1, "info": 0}


def test_ledger_fires_above_ten_critical_errors() -> None:
    ledger = ErrorLedger()  # the original kept only 10 and could never reach a higher limit
    fired = [ledger.record("broker_fatal", str(i), T0 + timedelta(seconds=i), 12)[1] for i in range(12)]
    assert fired == [False] * 11 + [True]


def failing_engine(rig: Rig, broken: str):
    """The real engine, except on ``broken`` where it raises as a broken engine would."""

    def evaluate(*args, **kwargs):
        symbol = args[4]
        rig.evaluations.append((symbol, None))
        if symbol == broken:
            raise ValueError("bars_m5: 'time' must be epoch seconds or datetimes, got dtype object")
        return evaluate_entry(*args, **kwargs)

    return evaluate


def test_auto_disable_stops_entries_and_never_stops_exits(tmp_path) -> None:
    rig = Rig(tmp_path, symbols=("EURUSD", "XAUUSD"), changes={**AUTO, "engine_failures_critical": 1})
    rig.monitor = rig.make_monitor(evaluate=failing_engine(rig, "EURUSD"))
    rig.monitor.recover(rig.clock.now())
    rig.run_until(EUR_SETUP_AT)  # EURUSD bars 03:25, 03:30, 03:35: three critical engine failures
    [disabled] = rig.notes_of("range_entries_disabled")
    assert "3 critical errors within an hour" in disabled["reason"] and "engine_failure" in disabled["reason"]
    assert len(disabled["errors"]) == 3
    assert rig.events("range_entries_disabled")
    assert rig.monitor.book.entries_disabled is not None
    assert rig.monitor.health()["entries"] == "DISABLED"
    # the 03:35 XAUUSD bar came after the disable in the same step: not evaluated
    assert [s for s, _ in rig.evaluations].count("EURUSD") == 3
    assert rig.monitor.last_decisions["XAUUSD"]["failed"] == "entries_disabled"
    # exits keep running: a trade that must close is closed by the next pass
    trade = rig.open_range_trade("XAUUSD", "buy", sl_distance=20.0, tp_distance=20.0, range_low=1990.0,
                                 range_high=2030.0, range_atr=1.0, opened_minutes_ago=61)
    evaluated = len(rig.evaluations)
    rig.run_until(EUR_SETUP_AT + timedelta(minutes=10))
    assert len(rig.evaluations) == evaluated  # no entry evaluation while disabled
    assert rig.stack.broker.position(trade.ticket) is None
    assert [e["reason"] for e in rig.events("range_exit")] == ["stagnation_energy_loss"]
    assert rig.monitor.last_decisions["EURUSD"]["failed"] == "entries_disabled"
    assert len(rig.notes_of("range_entries_disabled")) == 1
    # a restart does not silently re-enable entries
    restarted = rig.make_monitor(evaluate=failing_engine(rig, "EURUSD"))
    restarted.recover(rig.clock.now())
    assert restarted.book.entries_disabled is not None
    rig.monitor = restarted
    rig.step(300)
    assert len(rig.evaluations) == evaluated
    # any edit of range_scalp.json re-enables them (here the dedicated counter)
    rig.set_config(changes={"reenable_entries": 1})
    rig.step(300)
    [enabled] = rig.notes_of("range_entries_enabled")
    assert enabled["reason"] == "range_scalp.json changed"
    assert rig.monitor.book.entries_disabled is None and rig.events("range_entries_enabled")
    assert [s for s, _ in rig.evaluations[evaluated:]] == ["EURUSD", "XAUUSD"]  # evaluated again
    assert rig.monitor.errors.critical_in_window(rig.clock.now()) == 1  # counting starts afresh


def test_a_broker_refusing_to_trade_is_critical(tmp_path) -> None:
    rig = Rig(tmp_path, changes={**AUTO, "max_critical_errors_per_hour": 1})
    rig.stack.terminal.faults.schedule("autotrading_off")
    rig.run_until(EUR_SETUP_AT)
    assert rig.monitor.last_decisions["EURUSD"]["failed"] == "executor.blocked"
    [error] = [e for e in rig.events("range_error") if e["error_type"] == "broker_fatal"]
    assert error["severity"] == "critical"
    [disabled] = rig.notes_of("range_entries_disabled")
    assert "broker_fatal" in disabled["reason"]
    assert rig.stack.broker.positions() == []


def test_a_state_file_that_cannot_be_written_is_critical(tmp_path) -> None:
    rig = Rig(tmp_path, changes={"max_critical_errors_per_hour": 2})

    def failing_save(name, document):
        raise OSError(28, "No space left on device")

    rig.monitor = rig.make_monitor(save=failing_save)
    rig.monitor.recover(rig.clock.now())
    rig.run_until(EUR_SETUP_START + timedelta(minutes=5))  # two bars' "last evaluated" could not be saved
    assert rig.monitor.book.save_errors >= 2
    assert [e["error_type"] for e in rig.events("range_error")][:2] == ["state_save_failed"] * 2
    assert rig.notes_of("range_entries_disabled")
    assert len(rig.notes_of("range_error")) == 1  # one notification per error type per 15 min
    assert "No space left on device" in rig.monitor.health()["state"]["last_save_error"]


@pytest.mark.parametrize("severity, notified", [("data_unavailable", False), ("modify_failed", True)])
def test_only_high_and_critical_errors_are_journaled_and_notified(tmp_path, severity, notified) -> None:
    rig = Rig(tmp_path)
    rig.monitor._error(severity, "test message")
    assert bool(rig.events("range_error")) is notified
    assert bool(rig.notes_of("range_error")) is notified
