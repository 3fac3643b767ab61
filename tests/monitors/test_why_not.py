from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from monitors.why_not import WhyNoTrade

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)


def test_summary_lists_the_gates_each_symbol_waits_for(caplog) -> None:
    why = WhyNoTrade("micro_scalp", summary_minutes=15)
    assert not why.maybe_summarize(T0)  # starts the window
    for _ in range(5):
        why.record("XAUUSD", "L3.primary")
    why.record("XAUUSD", "spread")
    why.record("XAUUSD", None)
    why.record("EURUSD", "session")
    assert not why.maybe_summarize(T0 + timedelta(minutes=14))
    with caplog.at_level(logging.INFO):
        assert why.maybe_summarize(T0 + timedelta(minutes=15))
    assert "micro_scalp XAUUSD: 7 checks, 1 trades in the last 15 min; waiting for: L3.primary 5, spread 1" in caplog.text
    assert "micro_scalp EURUSD: 1 checks, 0 trades in the last 15 min; waiting for: session 1" in caplog.text
    assert why.last_summary["XAUUSD"]["waiting_for"] == {"L3.primary": 5, "spread": 1}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        why.maybe_summarize(T0 + timedelta(minutes=30))
    assert caplog.text == ""  # counts were reset: nothing new to say


def test_each_decision_is_one_debug_line(caplog) -> None:
    why = WhyNoTrade("range_scalp")
    with caplog.at_level(logging.DEBUG):
        why.record("EURUSD", "adx_gate", "H1 ADX 31.2 > 25")
        why.record("EURUSD", None, "buy 1.0850")
    assert "range_scalp EURUSD: no trade (adx_gate) - H1 ADX 31.2 > 25" in caplog.text
    assert "range_scalp EURUSD: TRADE - buy 1.0850" in caplog.text


def test_summary_orders_gates_by_count_then_first_occurrence() -> None:
    why = WhyNoTrade("micro_scalp", summary_minutes=15)
    why.maybe_summarize(T0)
    for gate in ("spread", "session", "news", "session", "spread", "caps"):
        why.record("XAUUSD", gate)
    assert why.maybe_summarize(T0 + timedelta(minutes=15))
    assert list(why.last_summary["XAUUSD"]["waiting_for"].items()) == [("spread", 2), ("session", 2), ("news", 1),
                                                                       ("caps", 1)]
    assert why.last_summary["XAUUSD"]["trades"] == 0


@pytest.mark.parametrize("wrap", ["LazyText", "function"])
def test_a_lazy_detail_is_formatted_only_for_the_debug_line(caplog, wrap: str) -> None:
    """Micro-scalp hands its failure text over as a ``LazyText``, order flow as a function: each
    is formatted for the DEBUG line only, never written as its repr."""
    from engines.micro_scalp_reasons import LazyText
    calls: list[str] = []

    def fmt() -> str:
        calls.append("x")
        return "L2.location: FAIL tags none"

    detail = LazyText(fmt) if wrap == "LazyText" else fmt
    why = WhyNoTrade("micro_scalp")
    with caplog.at_level(logging.INFO):
        why.record("XAUUSD", "L2.location", detail)
    assert calls == [] and caplog.text == ""  # DEBUG off: never formatted
    with caplog.at_level(logging.DEBUG):
        why.record("XAUUSD", "L2.location", detail)
    assert calls == ["x"] and "micro_scalp XAUUSD: no trade (L2.location) - L2.location: FAIL tags none" in caplog.text
    assert "function" not in caplog.text and "LazyText" not in caplog.text
