"""The supervisor: starts, stops and restarts the bot's threads from the main thread.

Each supervised job is either a periodic ``Monitor`` (run by a ``MonitorLoop``) or a
``Service`` with its own thread (state writer, notifier, stream). Every ``check`` compares what
should run (from the config in force: a strategy switched off stops, switched on starts again)
with what does, and restarts a faulted, crashed or dead job after an exponential backoff.
A restart or a fault is logged and reported through ``on_event`` (the notifier), so no thread
ever dies silently.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from config.loader import ConfigSnapshot
from monitors.base import Monitor, MonitorLoop
from monitors.clock import Clock

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...

    def is_alive(self) -> bool: ...


@dataclass
class JobSpec:
    """What to run: ``make_monitor`` for a periodic job or ``service`` for a self-threaded one."""

    name: str
    make_monitor: Callable[[], Monitor] | None = None
    service: Service | None = None
    enabled: Callable[[ConfigSnapshot], bool] = lambda snapshot: True
    health: Callable[[], dict[str, Any]] | None = None
    market_time: bool = False  # strategy monitors step on market time; infrastructure on wall time


@dataclass
class JobState:
    spec: JobSpec
    loop: MonitorLoop | None = None
    running: bool = False
    restarts: int = 0
    failures_in_a_row: int = 0
    next_start_at: float = 0.0
    started_at: float | None = None
    status: str = "new"  # new, running, disabled, backoff, stopped
    last_problem: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Supervisor:
    def __init__(self, clock: Clock, config: Callable[[], ConfigSnapshot],
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 loop_clock: Clock | None = None) -> None:
        """``clock`` times the backoff and the infrastructure loops (wall time); ``loop_clock``
        drives the strategy monitors' cadence (market time: the same as ``clock`` live, scaled
        in a sim replay), for jobs whose spec says ``market_time``."""
        self.clock = clock
        self.loop_clock = loop_clock or clock
        self._config = config
        self._on_event = on_event or (lambda kind, data: None)
        self.jobs: dict[str, JobState] = {}

    def add(self, spec: JobSpec) -> None:
        if spec.name in self.jobs:
            raise ValueError(f"job {spec.name!r} is already supervised")
        if (spec.make_monitor is None) == (spec.service is None):
            raise ValueError(f"job {spec.name!r} needs exactly one of make_monitor or service")
        self.jobs[spec.name] = JobState(spec)

    # ------------------------------------------------------------------ policy
    def _backoff(self, failures: int) -> float:
        runtime = self._config().bot.runtime
        return min(runtime.restart_backoff_max_seconds,
                   runtime.restart_backoff_seconds * (2 ** max(0, failures - 1)))

    def _start(self, job: JobState) -> None:
        spec = job.spec
        runtime = self._config().bot.runtime
        if spec.make_monitor is not None:
            clock = self.loop_clock if spec.market_time else self.clock
            job.loop = MonitorLoop(spec.make_monitor(), clock, runtime.monitor_error_budget)
            job.loop.start()
        else:
            assert spec.service is not None
            spec.service.start()
        job.running = True
        job.status = "running"
        job.started_at = self.clock.monotonic()

    def _is_alive(self, job: JobState) -> bool:
        if job.loop is not None:
            return job.loop.is_alive()
        return job.spec.service is not None and job.spec.service.is_alive()

    def _stop_job(self, job: JobState, timeout: float) -> None:
        if job.loop is not None:
            job.loop.stop()
            job.loop.join(timeout)
        elif job.spec.service is not None and job.running:
            job.spec.service.stop(timeout)
        job.running = False

    def check(self) -> None:
        """One supervision pass (the main thread calls this every few seconds)."""
        snapshot = self._config()
        now = self.clock.monotonic()
        for job in self.jobs.values():
            wanted = job.spec.enabled(snapshot)
            if not wanted:
                if job.running:
                    log.info("%s switched off by config; stopping it", job.spec.name)
                    self._stop_job(job, 5.0)
                    self._on_event("monitor_disabled", {"name": job.spec.name})
                job.status = "disabled"
                job.failures_in_a_row = 0
                job.next_start_at = 0.0
                continue
            if job.running and self._is_alive(job):
                healthy_for = now - (job.started_at or now)
                if job.failures_in_a_row and healthy_for > 4 * self._backoff(job.failures_in_a_row):
                    job.failures_in_a_row = 0  # it has run well for a while: forgive old faults
                continue
            if job.running:  # it should run but its thread ended: faulted, crashed or died
                job.running = False
                job.failures_in_a_row += 1
                job.last_problem = self._describe_death(job)
                delay = self._backoff(job.failures_in_a_row)
                job.next_start_at = now + delay
                job.status = "backoff"
                log.error("%s stopped unexpectedly (%s); restarting in %.0f s", job.spec.name,
                          job.last_problem, delay)
                self._on_event("monitor_faulted", {"name": job.spec.name, "error": job.last_problem,
                                                   "restart_in_s": delay})
                continue
            if now >= job.next_start_at:
                first = job.status in ("new", "disabled")
                try:
                    self._start(job)
                except Exception as exc:
                    job.failures_in_a_row += 1
                    job.last_problem = f"could not start: {type(exc).__name__}: {exc}"
                    job.next_start_at = now + self._backoff(job.failures_in_a_row)
                    job.status = "backoff"
                    log.error("%s %s", job.spec.name, job.last_problem, exc_info=True)
                    continue
                if first:
                    log.info("%s started", job.spec.name)
                else:
                    job.restarts += 1
                    log.warning("%s restarted (restart #%d)", job.spec.name, job.restarts)
                    self._on_event("monitor_restarted", {"name": job.spec.name, "restarts": job.restarts})

    def _describe_death(self, job: JobState) -> str:
        if job.loop is not None:
            stats = job.loop.stats
            return f"{stats.state}: {stats.last_error or 'thread ended'}"
        return "service thread ended"

    def stop_all(self, timeout: float) -> None:
        """Signal every job to stop, then join them within ``timeout`` seconds in total."""
        for job in self.jobs.values():
            if job.loop is not None:
                job.loop.stop()
        deadline = self.clock.monotonic() + timeout
        for job in reversed(list(self.jobs.values())):
            remaining = max(0.1, deadline - self.clock.monotonic())
            if job.running:
                self._stop_job(job, remaining)
            job.status = "stopped"

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, job in self.jobs.items():
            entry: dict[str, Any] = {"status": job.status, "restarts": job.restarts,
                                     "last_problem": job.last_problem}
            if job.loop is not None:
                entry.update(job.loop.health())
            elif job.spec.service is not None:
                entry["alive"] = job.spec.service.is_alive()
            if job.spec.health is not None:
                try:
                    entry["detail"] = job.spec.health()  # the job's own figures, apart from the loop's
                except Exception as exc:
                    entry["health_error"] = str(exc)
            out[name] = entry
        return out
