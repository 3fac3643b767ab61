"""Monitor loop cadence and error budget on a fake clock; supervisor restarts and switches."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from config.loader import load_config
from config.watcher import ConfigHolder, ConfigWatcher
from monitors.base import MonitorLoop
from monitors.clock import FakeClock, SystemClock
from monitors.supervisor import JobSpec, Supervisor


class ScriptedMonitor:
    """Records when each step ran; each step 'works' for ``durations[i]`` seconds of fake time."""

    name = "scripted"

    def __init__(self, clock: FakeClock, durations: list[float], interval: float = 5.0,
                 fail_on: set[int] | None = None, steps: int = 10) -> None:
        self.clock = clock
        self.durations = durations
        self.interval = interval
        self.fail_on = fail_on or set()
        self.max_steps = steps
        self.started: list[float] = []
        self.loop: MonitorLoop | None = None

    @property
    def interval_seconds(self) -> float:
        return self.interval

    def step(self, now: datetime) -> None:
        index = len(self.started)
        self.started.append(self.clock.monotonic())
        self.clock.advance(self.durations[index] if index < len(self.durations) else 0.1)
        if len(self.started) >= self.max_steps and self.loop is not None:
            self.loop.stop()
        if index in self.fail_on:
            raise RuntimeError(f"boom {index}")


def run_inline(monitor: ScriptedMonitor, clock: FakeClock, budget: int = 5) -> MonitorLoop:
    loop = MonitorLoop(monitor, clock, error_budget=budget)
    monitor.loop = loop
    loop.run()
    return loop


def test_cadence_does_not_drift_when_steps_take_time() -> None:
    clock = FakeClock()
    t0 = clock.monotonic()
    monitor = ScriptedMonitor(clock, durations=[0.3, 1.7, 0.01, 4.9, 0.2, 0.2], steps=6)
    loop = run_inline(monitor, clock)
    assert [round(t - t0, 6) for t in monitor.started] == [0, 5, 10, 15, 20, 25]
    assert loop.stats.overruns == 0 and loop.stats.state == "stopped"


def test_an_overrunning_step_skips_missed_ticks_and_counts_them() -> None:
    clock = FakeClock()
    t0 = clock.monotonic()
    monitor = ScriptedMonitor(clock, durations=[0.1, 12.0, 0.1, 0.1], steps=4)
    loop = run_inline(monitor, clock)
    # step 2 ran from 5 to 17: ticks at 10 and 15 are skipped, the next step runs at 20
    assert [round(t - t0, 6) for t in monitor.started] == [0, 5, 20, 25]
    assert loop.stats.overruns == 2


def test_exceptions_are_counted_and_a_success_resets_the_run() -> None:
    clock = FakeClock()
    monitor = ScriptedMonitor(clock, durations=[], fail_on={1, 2, 4}, steps=6)
    loop = run_inline(monitor, clock, budget=3)
    assert loop.stats.errors == 3 and loop.stats.consecutive_errors == 0
    assert loop.stats.state == "stopped" and loop.stats.steps == 6
    assert loop.stats.last_error == "RuntimeError: boom 4"


def test_consecutive_failures_beyond_the_budget_mark_the_loop_faulted() -> None:
    clock = FakeClock()
    monitor = ScriptedMonitor(clock, durations=[], fail_on=set(range(100)), steps=100)
    loop = run_inline(monitor, clock, budget=5)
    assert loop.stats.state == "faulted" and loop.stats.errors == 5 and len(monitor.started) == 5


def test_heartbeat_age_follows_the_clock() -> None:
    clock = FakeClock()
    monitor = ScriptedMonitor(clock, durations=[0.5], steps=1)
    loop = run_inline(monitor, clock)
    clock.advance(3)
    assert loop.heartbeat_age() == pytest.approx(3.0)


# ------------------------------------------------------------------------ supervisor
class RealTimeMonitor:
    """Runs on the system clock with a short interval; can be told to fail."""

    def __init__(self, name: str = "worker", fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.steps = 0

    @property
    def interval_seconds(self) -> float:
        return 0.01

    def step(self, now: datetime) -> None:
        self.steps += 1
        if self.fail:
            raise ValueError("broken data")


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.fixture
def holder(config_dir: Path) -> ConfigHolder:
    return ConfigHolder(load_config(config_dir))


def test_supervisor_restarts_a_faulted_monitor_with_exponential_backoff(holder: ConfigHolder) -> None:
    clock = FakeClock()
    events = []
    made = []

    def make():
        made.append(RealTimeMonitor(fail=True))
        return made[-1]

    sup = Supervisor(clock, lambda: holder.current, lambda kind, data: events.append((kind, data)),
                     loop_clock=SystemClock())
    sup.add(JobSpec("worker", make_monitor=make, market_time=True))
    sup.check()
    job = sup.jobs["worker"]
    wait_until(lambda: not job.loop.is_alive())
    sup.check()  # notices the fault, schedules a restart in 2 s
    assert job.status == "backoff" and events[-1][0] == "monitor_faulted"
    assert "faulted: ValueError: broken data" in job.last_problem
    clock.advance(1.9)
    sup.check()
    assert len(made) == 1  # still backing off
    clock.advance(0.2)
    sup.check()
    assert len(made) == 2 and job.restarts == 1 and events[-1][0] == "monitor_restarted"
    wait_until(lambda: not job.loop.is_alive())
    sup.check()
    assert job.next_start_at - clock.monotonic() == pytest.approx(4.0)  # doubled
    clock.advance(4.0)
    sup.check()
    assert len(made) == 3 and job.restarts == 2
    sup.stop_all(2.0)


def test_supervisor_restarts_a_service_whose_thread_died(holder: ConfigHolder) -> None:
    class Service:
        name = "svc"

        def __init__(self) -> None:
            self.starts = 0
            self.thread: threading.Thread | None = None

        def start(self) -> None:
            self.starts += 1
            self.thread = threading.Thread(target=lambda: None)
            self.thread.start()

        def stop(self, timeout: float = 1.0) -> None:
            pass

        def is_alive(self) -> bool:
            return self.thread is not None and self.thread.is_alive()

    clock = FakeClock()
    svc = Service()
    sup = Supervisor(clock, lambda: holder.current)
    sup.add(JobSpec("svc", service=svc))
    sup.check()
    svc.thread.join()
    sup.check()
    assert sup.jobs["svc"].last_problem == "service thread ended"
    clock.advance(2.0)
    sup.check()
    assert svc.starts == 2


def test_a_monitor_switched_off_by_config_stops_and_starts_again_when_switched_on(config_dir: Path) -> None:
    holder = ConfigHolder(load_config(config_dir))
    watcher = ConfigWatcher(config_dir, holder, FakeClock(), settle_seconds=0)
    monitors = []

    def make():
        monitors.append(RealTimeMonitor("micro"))
        return monitors[-1]

    sup = Supervisor(FakeClock(), lambda: holder.current, loop_clock=SystemClock())
    sup.add(JobSpec("micro", make_monitor=make, enabled=lambda s: s.micro_scalp.enabled, market_time=True))
    sup.check()
    job = sup.jobs["micro"]
    wait_until(lambda: monitors[0].steps > 2)
    path = config_dir / "micro_scalp.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "enabled": False}))
    watcher.poll()
    sup.check()
    assert job.status == "disabled" and not job.loop.is_alive()
    path.write_text(json.dumps({**data, "enabled": True}))
    watcher.poll()
    sup.check()
    assert job.status == "running" and len(monitors) == 2
    wait_until(lambda: monitors[1].steps > 2)
    assert job.restarts == 0  # re-enabling is not a fault restart
    sup.stop_all(2.0)
    assert not job.loop.is_alive() and job.status == "stopped"


def test_stop_all_is_prompt_even_with_long_intervals(holder: ConfigHolder) -> None:
    class Slow(RealTimeMonitor):
        @property
        def interval_seconds(self) -> float:
            return 3600.0

    sup = Supervisor(SystemClock(), lambda: holder.current)
    for i in range(3):
        sup.add(JobSpec(f"slow{i}", make_monitor=lambda i=i: Slow(f"slow{i}")))
    sup.check()
    wait_until(lambda: all(j.loop.stats.steps == 1 for j in sup.jobs.values()))
    started = time.monotonic()
    sup.stop_all(5.0)
    assert time.monotonic() - started < 2.0
    assert all(not j.loop.is_alive() for j in sup.jobs.values())
