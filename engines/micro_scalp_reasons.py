"""Reasons formatted only when read: the micro-scalp engine's quiet mode (``explain=False``).

A no-trade decision is read for ONE reason (the failing check's, for why-no-trade and the
monitor's health), yet an evaluation formats some eighty numbers into reasons. In quiet mode a
check's reason is kept as a ``Deferred`` (its known leading text, a module-level formatter and
the argument VALUES taken when the check ran) and only the reason the caller will read is
formatted, with exactly the text the eager mode would have produced. Deferred reasons never
leave ``evaluate``: a decision carries plain strings.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence


class Deferred:
    """One reason, formatted on demand: ``fn(*args)``, which starts with ``head``."""

    __slots__ = ("head", "fn", "args")

    def __init__(self, head: str, fn: Callable[..., str], args: tuple[Any, ...]) -> None:
        self.head = head
        self.fn = fn
        self.args = args

    def text(self) -> str:
        return self.fn(*self.args)


Reason = str | Deferred


def text_of(reason: Reason) -> str:
    return reason if isinstance(reason, str) else reason.text()


def texts(reasons: Sequence[Reason]) -> tuple[str, ...]:
    """Every reason as text (what the eager mode would have built)."""
    return tuple(text_of(r) for r in reasons)


def _starts_with(reason: Reason, key: str) -> bool:
    if isinstance(reason, str):
        return reason.startswith(key)
    if len(key) <= len(reason.head):  # decided by the known leading text: nothing formatted
        return reason.head.startswith(key)
    return reason.text().startswith(key)


def failure_reason(reasons: Sequence[Reason], failed: str | None) -> str:
    """The reason a reader of a failed decision shows: the last one of the failing check
    (``"<failed>:"``), else the last reason; "" when there is none."""
    if failed is not None:
        key = f"{failed}:"
        for reason in reversed(reasons):
            if _starts_with(reason, key):
                return text_of(reason)
    return text_of(reasons[-1]) if reasons else ""
