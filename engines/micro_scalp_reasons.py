"""The one reason a no-trade micro-scalp decision carries in quiet mode (``explain=False``).

A no-trade decision is read for ONE reason (the failing check's, for why-no-trade and the
monitor's health), yet an explained evaluation formats some eighty numbers into reasons. In quiet
mode the checks keep only the failing gate's reason (``Trace(explain=False)``) and nothing else is
formatted; ``failure_reason`` is the rule that picks that reason from a full list, so the quiet
decision carries exactly the text the explained one would show.

Even that one reason is mostly never read: the monitor keeps it as the symbol's last detail (read
by ``health()``) and the why-no-trade DEBUG line (off in a backtest). So the quiet checks keep it
as a ``LazyText``: the formatter and its values, formatted on the first ``str()``, the same text.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence


class LazyText:
    """``fmt(*args)``, called on the first ``str()`` and kept. The values must not change after
    (they are a failed check's figures, or a gate's: none is mutated once the check returned).
    Safe to read from two threads: each would format the same text and keep it."""

    __slots__ = ("_fmt", "_args", "_text")

    def __init__(self, fmt: Callable[..., str], *args: Any) -> None:
        self._fmt = fmt
        self._args = args
        self._text: str | None = None

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = self._text = self._fmt(*self._args)
        return text

    def __repr__(self) -> str:
        return repr(str(self))


def text_of(detail: str | LazyText) -> str:
    """``detail`` as text (a str is returned as it is, without ``str()``'s call)."""
    return detail if detail.__class__ is str else str(detail)  # type: ignore[return-value]


def failure_reason(reasons: Sequence[str | LazyText], failed: str | None) -> str | LazyText:
    """The reason a reader of a failed decision shows: the last one of the failing check
    (``"<failed>:"``), else the last reason; "" when there is none. A single reason (a quiet
    decision's, maybe still a ``LazyText``) is the answer either way: it is returned as it is,
    without the prefix search."""
    if len(reasons) == 1:
        return reasons[0]
    if failed is not None:
        key = f"{failed}:"
        for reason in reversed(reasons):
            if reason.startswith(key):  # type: ignore[union-attr]  # several: an explained list of str
                return reason
    return reasons[-1] if reasons else ""
