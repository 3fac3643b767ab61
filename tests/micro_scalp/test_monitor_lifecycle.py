"""Switched off and on again by a config edit: the supervisor stops the monitor and later builds a
new instance, which carries on with the kept per-symbol state (breaker, regime, spread sample,
why-no-trade counts) and the persisted statistics."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import monitors.micro_scalp as micro_module
from monitors.clock import FakeClock
from monitors.supervisor import JobSpec, Supervisor
from tests.micro_scalp.test_monitor_harness import MonitorStack, make_monitor_stack, no_news


@pytest.fixture
def ms(tmp_path: Path) -> MonitorStack:
    ms = make_monitor_stack(tmp_path)
    no_news(ms)
    ms.only("XAUUSD")
    return ms


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_a_new_instance_after_switch_off_and_on_keeps_the_symbol_state(
        ms: MonitorStack, monkeypatch: pytest.MonkeyPatch) -> None:
    ms.set_params("XAUUSD", max_quote_age_seconds=600)
    ms.step()
    assert ms.sym("XAUUSD").regime is not None

    def broken(*args, **kwargs):
        raise RuntimeError("engine bug")

    monkeypatch.setattr(micro_module, "evaluate", broken)
    for _ in range(3):
        ms.step()
    assert [kind for kind, _ in ms.notes] == ["symbol_paused"]
    first = ms.monitor
    tracker = ms.sym("XAUUSD").spread
    samples = len(tracker)
    assert samples >= 2

    ms.edit_micro(lambda d: d.update(enabled=False))
    assert ms.stack.holder.current.micro_scalp.enabled is False  # the supervisor stops the job now
    ms.clock.advance(60)
    ms.edit_micro(lambda d: d.update(enabled=True))
    second = ms.new_monitor()  # what the supervisor's make_monitor does
    assert second is not first and second.state is first.state and second.stats is first.stats
    ms.step()
    assert ms.gate("XAUUSD") == "breaker"  # still paused: the pause survived the new instance
    assert ms.sym("XAUUSD").spread is tracker and len(tracker) == samples  # the spread sample carried on
    monkeypatch.undo()  # the engine is fixed
    ms.clock.advance(300)
    ms.step()
    assert [kind for kind, _ in ms.notes] == ["symbol_paused", "symbol_resumed"]
    assert ms.gate("XAUUSD") not in ("breaker", "engine.error")


def test_the_supervisor_stops_and_restarts_it_on_config_edits(ms: MonitorStack) -> None:
    instances = []

    def make():
        instances.append(ms.new_monitor())
        return instances[-1]

    holder = ms.stack.holder
    sup = Supervisor(FakeClock(), lambda: holder.current, loop_clock=ms.clock)
    sup.add(JobSpec("micro-scalp", make_monitor=make, enabled=lambda s: s.micro_scalp.enabled,
                    health=lambda: ms.monitor.health()))
    try:
        sup.check()
        job = sup.jobs["micro-scalp"]
        wait_until(lambda: job.loop.stats.steps >= 5)
        ms.edit_micro(lambda d: d.update(enabled=False))
        sup.check()
        assert job.status == "disabled" and not job.loop.is_alive()
        stopped_at = ms.state.last_step_at
        ms.clock.advance(60)  # time passes while it is off
        ms.edit_micro(lambda d: d.update(enabled=True))
        sup.check()
        assert job.status == "running" and len(instances) == 2
        wait_until(lambda: job.loop.stats.steps >= 5)
        assert job.restarts == 0  # switching on is not a fault restart
    finally:
        sup.stop_all(5.0)
    assert not job.loop.is_alive()
    assert instances[0].state is instances[1].state
    assert ms.state.last_step_at is not None
    assert ms.state.symbols["XAUUSD"].last_check_at == ms.state.last_step_at
    assert ms.state.last_step_at > stopped_at  # the new instance stepped, on the same state
    assert instances[1].health()["symbols"]["XAUUSD"]["last_gate"]
