"""The one reason a no-trade micro-scalp decision carries in quiet mode (``explain=False``).

A no-trade decision is read for ONE reason (the failing check's, for why-no-trade and the
monitor's health), yet an explained evaluation formats some eighty numbers into reasons. In quiet
mode the checks keep only the failing gate's reason (``Trace(explain=False)``) and nothing else is
formatted; ``failure_reason`` is the rule that picks that reason from a full list, so the quiet
decision carries exactly the text the explained one would show.
"""
from __future__ import annotations

from typing import Sequence


def failure_reason(reasons: Sequence[str], failed: str | None) -> str:
    """The reason a reader of a failed decision shows: the last one of the failing check
    (``"<failed>:"``), else the last reason; "" when there is none. A single reason (a quiet
    decision's) is the answer either way: it is returned without the prefix search."""
    if len(reasons) == 1:
        return reasons[0]
    if failed is not None:
        key = f"{failed}:"
        for reason in reversed(reasons):
            if reason.startswith(key):
                return reason
    return reasons[-1] if reasons else ""
