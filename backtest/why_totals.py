"""Why no trade was taken, counted over the whole backtest.

Live, ``WhyNoTrade`` logs a summary every ``summary_minutes`` and resets its counts. A backtest
report wants the totals of the run: this subclass keeps them too, per symbol and first failing
gate, and the driver hands one to each monitor (the live constructors accept it). Each window's
counts are added to the totals when the window closes, not decision by decision: ``record``
stays the live one, and a key's first window keeps it in the order of its first occurrence.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from monitors.why_not import WhyNoTrade


class WhyNoTradeTotals(WhyNoTrade):
    def __init__(self, strategy: str, summary_minutes: float = 15.0) -> None:
        super().__init__(strategy, summary_minutes)
        self._closed_checks: Counter[str] = Counter()  # of the windows already closed
        self._closed_failed: dict[str, Counter[str]] = {}

    def _close_window(self) -> None:
        self._closed_checks.update(self._checks)
        for symbol, failed in self._failed.items():
            self._closed_failed.setdefault(symbol, Counter()).update(failed)
        super()._close_window()

    def totals(self) -> dict[str, Any]:
        """Per symbol: decisions, trades taken and the first failing gates, most frequent first."""
        with self._lock:
            checks = self._closed_checks + Counter(self._checks)
            failed_by_symbol = {symbol: self._closed_failed.get(symbol, Counter()) + Counter(self._failed.get(symbol, {}))
                                for symbol in checks}
        out = {}
        for symbol in sorted(checks):
            failed = failed_by_symbol[symbol]
            out[symbol] = {"checks": checks[symbol],
                           "trades": checks[symbol] - sum(failed.values()),
                           "waiting_for": dict(failed.most_common())}
        return out
