"""Faults injected into the simulated terminal on demand, for tests and chaos runs.

API (other code depends on it; keep it stable)::

    terminal.faults.schedule(kind, *, count=1, function=None, seconds=None, retcode=None)
    terminal.faults.clear()            # everything; clear(kind) clears one kind
    terminal.faults.injected           # list of InjectedFault, what actually fired

Kinds:

- ``ipc_error``: the next ``count`` calls (of ``function`` only, if given) return None with
  ``last_error() == (-10004, 'No IPC connection')`` (``initialize`` returns False).
- ``timeout_placed``: the next ``count`` ``order_send`` calls EXECUTE the order but return None
  with ``(-10005, 'IPC timeout')``: the caller must look the order up before resending.
- ``timeout_not_placed``: ``order_send`` returns None with ``(-10005, 'IPC timeout')`` and
  nothing is executed.
- ``requote``: ``order_send`` returns retcode 10004 with a fresh bid/ask; nothing executed.
- ``reject``: ``order_send`` returns ``retcode`` (e.g. 10016, 10030, 10019, 10018, 10017);
  nothing executed.
- ``disconnect``: for ``seconds`` of clock time every call returns None with -10004
  (``initialize`` returns False); afterwards the IPC link is back but the terminal stays
  disconnected from the trade server until ``initialize()`` is called again:
  ``terminal_info().connected`` is False and ``order_send``/``order_check`` answer retcode
  10031 (no connection).
- ``stale_quotes``: for ``seconds`` the terminal's view of the market freezes (tick time,
  prices, bars); the trade server keeps running, so fills and stops use the real market.
- ``autotrading_off``: ``terminal_info().trade_allowed`` is False and ``order_send`` returns
  10027 ("AutoTrading disabled by client") until cleared.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitors.clock import Clock

FAULT_KINDS = ("ipc_error", "timeout_placed", "timeout_not_placed", "requote", "reject",
               "disconnect", "stale_quotes", "autotrading_off")
ORDER_FAULTS = ("timeout_placed", "timeout_not_placed", "requote", "reject")
WINDOW_FAULTS = ("disconnect", "stale_quotes")


@dataclass(frozen=True)
class InjectedFault:
    """One fault that fired: when (clock time), which kind, on which call, and details."""

    kind: str
    function: str
    at: datetime
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "function": self.function, "at": self.at.isoformat(),
                "detail": self.detail}


@dataclass
class _Scheduled:
    kind: str
    remaining: int
    function: str | None
    retcode: int | None
    starts: datetime | None = None
    ends: datetime | None = None


class FaultInjector:
    """Holds scheduled faults; the terminal asks it at each call (under the terminal's lock)."""

    def __init__(self, clock: Clock, valid_retcodes: frozenset[int]) -> None:
        self._clock = clock
        self._valid_retcodes = valid_retcodes
        self._lock = threading.Lock()
        self._scheduled: list[_Scheduled] = []
        self._autotrading_off = False
        self._stale_until: datetime | None = None
        self._stale_since: datetime | None = None
        self.injected: list[InjectedFault] = []
        # Nothing armed and no frozen view: every question below would answer "no fault", so the
        # terminal may skip asking. A plain attribute (the terminal reads it on every call), kept
        # by ``_settle`` after each change; schedule() from another thread simply happens before
        # or after a call.
        self.idle = True

    # --- the public API ---------------------------------------------------------------
    def schedule(self, kind: str, *, count: int = 1, function: str | None = None,
                 seconds: float | None = None, retcode: int | None = None) -> None:
        """Arm a fault (see the module docstring for what each kind does)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if kind in WINDOW_FAULTS and (seconds is None or seconds <= 0):
            raise ValueError(f"fault {kind!r} needs seconds > 0")
        if kind == "reject":
            if retcode is None or retcode not in self._valid_retcodes:
                raise ValueError(f"fault 'reject' needs a TRADE_RETCODE_* value, got {retcode!r}")
        if kind in ORDER_FAULTS and function not in (None, "order_send"):
            raise ValueError(f"fault {kind!r} applies to order_send only")
        now = self._clock.now()
        with self._lock:
            if kind == "autotrading_off":
                self._autotrading_off = True
                self._record(kind, "-", now, "AutoTrading button off")
                return
            entry = _Scheduled(kind, count, function, retcode)
            if kind in WINDOW_FAULTS:
                entry.starts, entry.ends = now, now + timedelta(seconds=seconds)
                if kind == "stale_quotes":
                    self._stale_since, self._stale_until = now, entry.ends
                    self._record(kind, "-", now, f"quotes frozen for {seconds:g} s")
                else:
                    self._record(kind, "-", now, f"no IPC connection for {seconds:g} s")
            self._scheduled.append(entry)
            self._settle()

    def clear(self, kind: str | None = None) -> None:
        """Disarm every fault (or only ``kind``); ``injected`` is kept for reports."""
        with self._lock:
            if kind is None or kind == "autotrading_off":
                self._autotrading_off = False
            if kind is None or kind == "stale_quotes":
                self._stale_since = self._stale_until = None
            self._scheduled = [s for s in self._scheduled if kind is not None and s.kind != kind]
            self._settle()

    # --- what the terminal asks ----------------------------------------------------------
    @property
    def autotrading_off(self) -> bool:
        return self._autotrading_off

    def disconnect_window(self, now: datetime) -> tuple[bool, bool]:
        """(inside a disconnect window now, a window has ended since the last question)."""
        inside = ended = False
        with self._lock:
            for entry in list(self._scheduled):
                if entry.kind != "disconnect":
                    continue
                if now < entry.ends:
                    inside = True
                else:
                    ended = True
                    self._scheduled.remove(entry)
            self._settle()
        return inside, ended

    def stale_since(self, now: datetime) -> datetime | None:
        """The instant the market view froze, while a stale-quotes window lasts."""
        with self._lock:
            if self._stale_until is not None and now >= self._stale_until:
                self._stale_since = self._stale_until = None
                self._scheduled = [s for s in self._scheduled if s.kind != "stale_quotes"]
                self._settle()
            return self._stale_since

    def take_ipc_error(self, function: str, now: datetime) -> bool:
        with self._lock:
            for entry in self._scheduled:
                if entry.kind == "ipc_error" and entry.function in (None, function):
                    self._consume(entry)
                    self._record("ipc_error", function, now, "(-10004, 'No IPC connection')")
                    return True
        return False

    def take_order_fault(self, now: datetime) -> _Scheduled | None:
        """The next armed order_send fault, consumed (at most one per call)."""
        with self._lock:
            for entry in self._scheduled:
                if entry.kind in ORDER_FAULTS:
                    self._consume(entry)
                    detail = f"retcode {entry.retcode}" if entry.kind == "reject" else ""
                    self._record(entry.kind, "order_send", now, detail)
                    return entry
        return None

    # --- internals -------------------------------------------------------------------------
    def _consume(self, entry: _Scheduled) -> None:
        entry.remaining -= 1
        if entry.remaining <= 0:
            self._scheduled.remove(entry)
            self._settle()

    def _settle(self) -> None:
        """Set ``idle`` from the armed faults (under the lock, after each change to them)."""
        self.idle = not self._scheduled and self._stale_until is None

    def _record(self, kind: str, function: str, now: datetime, detail: str) -> None:
        self.injected.append(InjectedFault(kind, function, now, detail))
