"""News blackout windows per impact, crypto windows, currency/category matching, parsing errors."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engines.news import (NewsCalendarError, blackout_status, parse_news_calendar, profile_symbol, upcoming)

T = datetime(2024, 6, 12, 12, 30, tzinfo=timezone.utc)
REPO = Path(__file__).resolve().parents[2]


def calendar(*events: dict, **extra) -> str:
    return json.dumps({"schema_version": 1, "events": list(events), **extra})


def ev(impact: str = "high", currencies=("USD",), category=None, time: datetime = T, title="US CPI") -> dict:
    item = {"time": time.isoformat().replace("+00:00", "Z"), "title": title, "impact": impact}
    if currencies:
        item["currencies"] = list(currencies)
    if category:
        item["category"] = category
    return item


def blocked(text: str, symbol: str, minutes: float) -> bool:
    return blackout_status(parse_news_calendar(text), symbol, T + timedelta(minutes=minutes)).blocked


@pytest.mark.parametrize("impact,before,after", [("high", 30, 30), ("ultra", 60, 90)])
def test_default_window_edges_per_impact(impact, before, after):
    text = calendar(ev(impact))
    assert blocked(text, "EURUSD", -before)             # window start is inclusive
    assert not blocked(text, "EURUSD", -before - 0.02)
    assert blocked(text, "EURUSD", after)
    assert not blocked(text, "EURUSD", after + 0.02)


@pytest.mark.parametrize("impact", ["low", "medium"])
def test_low_and_medium_never_block_by_default(impact):
    assert not blocked(calendar(ev(impact)), "EURUSD", 0)


def test_crypto_category_uses_crypto_window():
    text = calendar(ev("high", currencies=(), category="crypto", title="ETF decision"))
    assert blocked(text, "BTCUSD", -15) and not blocked(text, "BTCUSD", -16)
    assert blocked(text, "BTCUSD", 30) and not blocked(text, "BTCUSD", 31)
    assert not blocked(text, "XAUUSD", 0)  # a crypto event does not block gold


def test_currency_matching_per_symbol():
    text = calendar(ev("high", currencies=("EUR",), title="ECB"))
    assert blocked(text, "EURUSD", 0)
    assert not blocked(text, "XAUUSD", 0)
    assert not blocked(text, "BTCUSD", 0)
    usd = calendar(ev("high", currencies=("USD",)))
    assert all(blocked(usd, s, 0) for s in ("EURUSD", "XAUUSD", "BTCUSD", "XAUUSDc"))
    everything = calendar(ev("ultra", currencies=("ALL",), title="War"))
    assert blocked(everything, "AUDJPY", 0)


def test_verdict_names_event_and_window_and_latest_end_wins():
    text = calendar(ev("high", title="US CPI"), ev("ultra", title="FOMC", time=T + timedelta(minutes=20)))
    verdict = blackout_status(parse_news_calendar(text), "XAUUSD", T)
    assert verdict.blocked and verdict.event.title == "FOMC"
    assert verdict.end == T + timedelta(minutes=110)
    assert "FOMC (ultra) at 2024-06-12 12:50Z" in verdict.reason and "11:50-14:20Z" in verdict.reason


def test_configurable_windows_and_removal():
    text = calendar(ev("medium"), windows={"medium": {"before_minutes": 5, "after_minutes": 10},
                                           "high": None})
    assert blocked(text, "EURUSD", -5) and not blocked(text, "EURUSD", -6)
    assert not blocked(calendar(ev("high"), windows={"high": None}), "EURUSD", 0)


def test_symbol_profiles_and_overrides():
    assert profile_symbol("XAUUSDc").categories == {"metals"}
    assert profile_symbol("BTCUSD").currencies == {"BTC", "USD"}
    assert profile_symbol("EURUSD").categories == {"fx"}
    text = calendar(ev("high", currencies=("XAU",), title="Gold auction"),
                    symbols={"GOLD": {"currencies": ["XAU"], "categories": ["metals"]}})
    assert blocked(text, "GOLD", 0)


def test_upcoming_lists_events_whose_window_starts_soon():
    cal = parse_news_calendar(calendar(ev("high")))
    assert [e.title for e in upcoming(cal, "EURUSD", T - timedelta(minutes=45), timedelta(minutes=20))] == ["US CPI"]
    assert upcoming(cal, "EURUSD", T - timedelta(minutes=90), timedelta(minutes=20)) == []


@pytest.mark.parametrize("text,message", [
    ("{not json", "not valid JSON"),
    (calendar({"time": "2024-06-12T12:30:00", "title": "X", "impact": "high", "currencies": ["USD"]}),
     "has no time zone"),
    (calendar({"time": "2024-06-12T12:30:00Z", "title": "X", "impact": "huge", "currencies": ["USD"]}),
     r"events\[0\] \(X\).impact: expected one of low, medium, high, ultra"),
    (calendar({"time": "2024-06-12T12:30:00Z", "title": "X", "impact": "high"}), "needs currencies"),
    (calendar({"time": "noon", "title": "X", "impact": "high", "currencies": ["USD"]}), "not an ISO-8601 time"),
    (calendar(ev(), windows={"high": {"before_minutes": -1, "after_minutes": 3}}), "windows.high.before_minutes"),
    (json.dumps({"events": [], "extra": 1}), "unknown keys: extra"),
])
def test_bad_calendar_errors_name_the_problem(text, message):
    with pytest.raises(NewsCalendarError, match=message):
        parse_news_calendar(text, source="config/news.json")


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware UTC"):
        blackout_status(parse_news_calendar(calendar()), "EURUSD", datetime(2024, 1, 1))


def test_shipped_calendar_parses_and_blocks_nothing_today():
    cal = parse_news_calendar((REPO / "config" / "news.json").read_text(encoding="utf-8"), "config/news.json")
    assert len(cal.events) >= 2
    assert all(e.time < datetime(2025, 1, 1, tzinfo=timezone.utc) for e in cal.events)
    now = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)
    assert not any(blackout_status(cal, s, now).blocked for s in ("XAUUSD", "EURUSD", "BTCUSD"))
    fomc = next(e for e in cal.events if e.impact == "ultra")
    assert blackout_status(cal, "XAUUSD", fomc.time + timedelta(minutes=89)).blocked
