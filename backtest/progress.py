"""A dependency-free progress bar on stderr.

On a terminal it redraws one line (``\\r``) at most every 0.2 s; when stderr is not a terminal
(a log file, CI, a pipe) it writes a plain line at every 10 % instead, so logs stay readable.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, label: str = "bar closes",
                 enabled: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(1, int(total))
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = enabled
        self._clock = clock
        self.done = 0
        self._started = clock()
        self._last_draw = -1e9
        self._last_decile = -1
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())

    def advance(self, count: int) -> None:
        self.done = min(self.total, self.done + int(count))
        if not self.enabled:
            return
        now = self._clock()
        if self.tty:
            if now - self._last_draw >= 0.2 or self.done == self.total:
                self._last_draw = now
                self.stream.write("\r" + self.line(now))
                self.stream.flush()
        else:
            decile = self.done * 10 // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def line(self, now: float | None = None) -> str:
        now = self._clock() if now is None else now
        elapsed = max(1e-9, now - self._started)
        fraction = self.done / self.total
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(WIDTH * fraction)
        bar = "#" * filled + "." * (WIDTH - filled)
        return (f"[{bar}] {fraction * 100:5.1f}%  {self.done:,}/{self.total:,} {self.label}  "
                f"{rate:,.0f}/s  elapsed {_duration(elapsed)}  eta {_duration(eta)}")

    def finish(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
