"""The backtest's why-no-trade totals: every decision of the run, across the live summary windows."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

from backtest.why_totals import WhyNoTradeTotals

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)


def test_totals_add_up_every_window_in_first_seen_order() -> None:
    why = WhyNoTradeTotals("micro_scalp", summary_minutes=15)
    why.maybe_summarize(T0)
    decisions = [("XAUUSD", "session"), ("XAUUSD", "spread"), ("EURUSD", None), ("XAUUSD", "L3.primary"),
                 ("XAUUSD", "spread"), ("XAUUSD", None), ("EURUSD", "caps"), ("XAUUSD", "session"),
                 ("BTCUSD", "news"), ("XAUUSD", "L2.location"), ("XAUUSD", "L3.primary"), ("EURUSD", "caps")]
    plain_checks: Counter[str] = Counter()
    plain_failed: dict[str, Counter[str]] = {}
    for i, (symbol, failed) in enumerate(decisions):
        why.record(symbol, failed)
        plain_checks[symbol] += 1
        if failed is not None:
            plain_failed.setdefault(symbol, Counter())[failed] += 1
        why.maybe_summarize(T0 + timedelta(minutes=7 * (i + 1)))  # a window closes every other decision
    expected = {symbol: {"checks": plain_checks[symbol],
                         "trades": plain_checks[symbol] - sum(plain_failed.get(symbol, Counter()).values()),
                         "waiting_for": dict(plain_failed.get(symbol, Counter()).most_common())}
                for symbol in sorted(plain_checks)}
    totals = why.totals()
    assert json.dumps(totals) == json.dumps(expected)  # ties keep the order of first occurrence
    assert totals["XAUUSD"] == {"checks": 8, "trades": 1,
                                "waiting_for": {"session": 2, "spread": 2, "L3.primary": 2, "L2.location": 1}}
