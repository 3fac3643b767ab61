"""Why no trade was taken, counted over the whole backtest.

Live, ``WhyNoTrade`` logs a summary every ``summary_minutes`` and resets its counts. A backtest
report wants the totals of the run: this subclass keeps them too, per symbol and first failing
gate, and the driver hands one to each monitor (the live constructors accept it).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from monitors.why_not import WhyNoTrade


class WhyNoTradeTotals(WhyNoTrade):
    def __init__(self, strategy: str, summary_minutes: float = 15.0) -> None:
        super().__init__(strategy, summary_minutes)
        self.total_checks: Counter[str] = Counter()
        self.total_failed: dict[str, Counter[str]] = {}

    def record(self, symbol: str, failed: str | None, detail: str = "") -> None:
        self.total_checks[symbol] += 1
        if failed is not None:
            self.total_failed.setdefault(symbol, Counter())[failed] += 1
        super().record(symbol, failed, detail)

    def totals(self) -> dict[str, Any]:
        """Per symbol: decisions, trades taken and the first failing gates, most frequent first."""
        out = {}
        for symbol in sorted(self.total_checks):
            failed = self.total_failed.get(symbol, Counter())
            out[symbol] = {"checks": self.total_checks[symbol],
                           "trades": self.total_checks[symbol] - sum(failed.values()),
                           "waiting_for": dict(failed.most_common())}
        return out
