"""Event payloads: content, colours, and Discord's limits enforced for any input."""
from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.notify_model import EVENT_KINDS
from notify import events
from notify.daily import SummarySlot, summarize_trades
from notify.events import (AMBER, BLUE, GREEN, RED, NotifyEvent, Repeat, build_payload,
                           enforce_limits, validate_payload)

AT = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
SLOT = SummarySlot(date(2026, 1, 5), datetime(2026, 1, 4, 21, tzinfo=timezone.utc),
                   datetime(2026, 1, 5, 21, tzinfo=timezone.utc))


def summary(trades=()):
    return summarize_trades(list(trades), SLOT, strategies=["micro_scalp", "range_scalp"])


def every_event(s: str = "x", n: float = 1.5, names: tuple[str, ...] = ("XAUUSD",)) -> list[NotifyEvent]:
    """One of each event kind, with ``s`` in every text and ``n`` in every number."""
    finite = n if isinstance(n, (int, float)) and math.isfinite(n) else 1.0
    trades = [{"strategy": s.strip() or "s", "pnl": finite, "r": finite, "symbol": s},
              {"strategy": "order_flow", "pnl": -2.0}]
    return [
        events.bot_started(AT, mode="live", broker=s, symbols=list(names), version=s, recovered_positions=2),
        events.bot_stopped(AT, mode="paper", broker=s, symbols=list(names), version=s, reason=s, open_positions=1),
        events.trade_opened(AT, symbol=s, side="buy", volume=n, entry=n, sl=n, tp=n, strategy=s, reason=s,
                            category="gold", ticket=7),
        events.trade_closed(AT, symbol=s, side="sell", volume=n, entry=n, exit_price=n, pnl=n, r_multiple=n,
                            strategy=s, reason=s, hold_seconds=n, sl=n, tp=n, category="crypto", ticket=7),
        events.order_rejected(AT, symbol=s, side="buy", strategy=s, reason=s, retcode=10016, volume=n),
        events.trading_state_changed(AT, old=s, new="paused", reason=s),
        events.circuit_breaker_opened(AT, name=s, reason=s, failures=3, retry_in_seconds=n),
        events.circuit_breaker_closed(AT, name=s, open_seconds=n),
        events.broker_disconnected(AT, broker=s, detail=s, failures=3),
        events.broker_restored(AT, broker=s, downtime_seconds=n),
        events.config_reloaded(AT, files=list(names), changes=[s] * 50, needs_restart=[s], version=3),
        events.config_rejected(AT, error=s, files=list(names)),
        events.monitor_faulted(AT, monitor=s, error=s, consecutive_errors=5, restart_in_seconds=n),
        events.monitor_restarted(AT, monitor=s, attempt=2),
        events.range_signal(AT, symbol=s, side="sell", entry=n, sl=n, tp=n, range_high=n, range_low=n,
                            reasons=[s, s], category="forex"),
        events.daily_summary(AT, summary(trades)),
        events.webhook_test(AT, category="alerts", version=s),
        events.dropped_notice(AT, count=12, queue_size=500),
    ]


def test_there_is_a_builder_for_every_event_kind():
    assert sorted({e.kind for e in every_event()}) == sorted(EVENT_KINDS)


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.kind)
def test_every_event_payload_is_valid(event):
    payload = build_payload(event, username="Scalping bot")
    assert validate_payload(payload) == []
    embed = payload["embeds"][0]
    assert embed["timestamp"] == "2026-01-05T12:00:00+00:00"
    assert payload["allowed_mentions"] == {"parse": []}


def test_trade_closed_shows_the_numbers_and_the_outcome_colour():
    def closed(pnl):
        return events.trade_closed(AT, symbol="XAUUSD", side="buy", volume=0.02, entry=2345.5,
                                   exit_price=2351.25, pnl=pnl, r_multiple=1.15, strategy="micro_scalp",
                                   reason="take profit", hold_seconds=185, category="gold", ticket=42)
    win = build_payload(closed(11.5))["embeds"][0]
    fields = {f["name"]: f["value"] for f in win["fields"]}
    assert win["title"] == "BUY XAUUSD closed +11.50 USD (+1.15R)"
    assert win["color"] == GREEN
    assert fields == {"Side": "BUY", "Volume": "0.02", "Entry": "2,345.50", "Exit": "2,351.25",
                      "P&L": "+11.50 USD", "R": "+1.15R", "Hold time": "3m 05s", "Strategy": "micro_scalp",
                      "Ticket": "42"}
    assert all(f["inline"] for f in win["fields"])
    assert win["description"] == "Exit reason: take profit"
    assert build_payload(closed(-3.0))["embeds"][0]["color"] == RED
    assert build_payload(closed(0.0))["embeds"][0]["color"] == BLUE
    assert closed(1).category == "gold" and closed(1).priority == "normal" and closed(1).burst_key is None


def test_trade_opened_fields_and_prices_scale_with_the_instrument():
    opened = events.trade_opened(AT, symbol="EURUSD", side="sell", volume=0.1, entry=1.08345, sl=1.0846,
                                 tp=1.0815, strategy="order_flow", reason="delta flip", category="forex")
    fields = {f.name: f.value for f in opened.fields}
    assert (fields["Entry"], fields["Stop loss"], fields["Take profit"]) == ("1.08345", "1.08460", "1.08150")
    assert opened.title == "SELL EURUSD opened" and opened.colour == BLUE


def test_warning_and_failure_events_use_amber_and_red_and_go_to_alerts():
    rejected = events.order_rejected(AT, symbol="XAUUSD", side="buy", strategy="micro_scalp",
                                     reason="Invalid stops", retcode=10016)
    assert (rejected.colour, rejected.category, rejected.priority) == (AMBER, "alerts", "high")
    assert rejected.burst_key == "micro_scalp|XAUUSD"
    faulted = events.monitor_faulted(AT, monitor="micro-scalp", error="ZeroDivisionError")
    assert (faulted.colour, faulted.priority) == (RED, "critical")
    rejected_config = events.config_rejected(AT, error="bot.json: risk.risk_percent: must be <= 5",
                                             files=["bot.json"])
    assert "bot.json: risk.risk_percent: must be <= 5" in rejected_config.description


def test_daily_summary_lists_each_strategy():
    trades = [{"strategy": "micro_scalp", "pnl": 10.0, "r": 1.0, "symbol": "XAUUSD"},
              {"strategy": "micro_scalp", "pnl": -4.0, "r": -0.5, "symbol": "EURUSD"}]
    embed = build_payload(events.daily_summary(AT, summary(trades)))["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "Daily summary 2026-01-05"
    assert embed["color"] == GREEN
    assert fields["micro_scalp"] == ("Trades 2 (W 1 / L 1 / BE 0) | Win rate 50.0%\n"
                                     "P&L +6.00 USD | Avg R +0.25R\n"
                                     "Best +10.00 USD XAUUSD | Worst -4.00 USD EURUSD")
    assert fields["range_scalp"] == "No trades."
    assert embed["description"] == "2026-01-04 21:00 to 2026-01-05 21:00 UTC"


def test_a_repeat_count_shows_in_title_and_fields():
    rejected = events.order_rejected(AT, symbol="XAUUSD", side="buy", strategy="m", reason="r")
    embed = build_payload(rejected, Repeat(20, 42.0))["embeds"][0]
    assert embed["title"] == "Order rejected: BUY XAUUSD (x20)"
    assert embed["fields"][0] == {"name": "Repeated", "value": "20 times within 42s (details of the latest)",
                                  "inline": False}


def test_a_critical_mention_pings_only_who_is_configured():
    faulted = events.monitor_faulted(AT, monitor="m", error="@everyone boom")
    payload = build_payload(faulted, mention="<@123456789>")
    assert payload["content"] == "<@123456789>"
    assert payload["allowed_mentions"] == {"parse": [], "users": ["123456789"]}
    assert build_payload(faulted, mention="@here")["allowed_mentions"] == {"parse": ["everyone"]}
    normal = events.trade_opened(AT, symbol="X", side="buy", volume=1, entry=2, sl=1, tp=3, strategy="s")
    assert "content" not in build_payload(normal, mention="@here")


def test_missing_and_non_finite_numbers_show_as_not_available():
    closed = events.trade_closed(AT, symbol="X", side="buy", volume=None, entry=math.nan, exit_price=math.inf,
                                 pnl=None, r_multiple=None, strategy="", reason="", hold_seconds=-1)
    fields = {f.name: f.value for f in closed.fields}
    assert fields["Entry"] == fields["Exit"] == fields["P&L"] == fields["R"] == fields["Hold time"] == "n/a"
    assert fields["Strategy"] == "n/a"
    assert validate_payload(build_payload(closed)) == []


def test_a_naive_time_is_taken_as_utc():
    event = events.broker_restored(datetime(2026, 1, 5, 8, 30), broker="mt5")
    assert build_payload(event)["embeds"][0]["timestamp"] == "2026-01-05T08:30:00+00:00"


def test_bad_event_arguments_are_named():
    with pytest.raises(ValueError, match="priority"):
        NotifyEvent(kind="trade_opened", title="t", at=AT, priority="urgent")
    with pytest.raises(ValueError, match="category"):
        NotifyEvent(kind="trade_opened", title="t", at=AT, category="stocks")
    with pytest.raises(ValueError, match="kind"):
        NotifyEvent(kind="trade_exploded", title="t", at=AT)


@pytest.mark.parametrize("symbol_category, webhook", [
    ("gold", "gold"), ("crypto", "crypto"), ("forex", "forex"), ("index", "default"), ("other", "default"),
    (None, "default")])
def test_symbol_categories_map_to_webhook_categories(symbol_category, webhook):
    assert events.category_for(symbol_category) == webhook


# ---------------------------------------------------------------------------- the limits

def test_each_limit_is_enforced_with_an_ellipsis():
    raw = {
        "content": "c" * 2500, "username": "u" * 100,
        "embeds": [{"title": "t" * 300, "description": "d" * 5000, "footer": {"text": "f" * 3000},
                    "author": {"name": "a" * 300},
                    "fields": [{"name": "n" * 300, "value": "v" * 2000}] + [{"name": "", "value": ""}] * 29}]
        + [{"title": "more"}] * 12,
    }
    assert len(validate_payload(raw)) >= 8
    limited = enforce_limits(raw)
    assert validate_payload(limited) == []
    assert len(limited["content"]) == 2000 and limited["content"].endswith("\u2026")
    assert len(limited["username"]) == 80
    assert len(limited["embeds"]) == 10
    first = limited["embeds"][0]
    assert len(first["fields"]) == 25
    assert first["fields"][-1]["value"] == "6 more fields not shown"
    assert first["fields"][1] == {"name": "-", "value": "n/a", "inline": False}
    assert events.embed_text_length(limited["embeds"]) <= 6000
    assert first["title"].endswith("\u2026")


def test_a_payload_within_limits_is_left_alone():
    raw = build_payload(events.broker_restored(AT, broker="mt5", downtime_seconds=65))
    assert enforce_limits(raw) == raw
    assert raw["embeds"][0]["fields"][1] == {"name": "Down for", "value": "1m 05s", "inline": True}


def test_validate_payload_reports_each_problem():
    assert validate_payload({}) == ["payload needs content or embeds"]
    problems = validate_payload({"embeds": [{"title": "", "color": -1, "timestamp": "yesterday",
                                             "fields": [{"name": "a", "value": ""}]}]})
    assert problems == ["embeds[0].title is empty", "embeds[0].color is not an RGB integer",
                        "embeds[0].timestamp is not ISO 8601", "embeds[0].fields[0].value is empty"]


long_text = st.one_of(st.text(max_size=50), st.text(min_size=3000, max_size=9000),
                      st.just("a" * 20000), st.just("\u00e9\U0001F600" * 3000), st.just("   "), st.just(""))
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12), st.none())


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=long_text, n=numbers, names=st.lists(st.text(min_size=0, max_size=400), max_size=40).map(tuple))
def test_any_input_gives_a_valid_payload(s, n, names):
    for event in every_event(s, n, names):
        payload = build_payload(event, Repeat(3, 5.0), username=s or "bot", mention="@here")
        assert validate_payload(payload) == [], event.kind


@settings(max_examples=60, deadline=None, database=None)
@given(raw=st.fixed_dictionaries({}, optional={
    "content": st.text(max_size=3000),
    "embeds": st.lists(st.fixed_dictionaries({}, optional={
        "title": st.text(max_size=400), "description": st.text(max_size=6000),
        "footer": st.fixed_dictionaries({"text": st.text(max_size=2500)}),
        "author": st.fixed_dictionaries({"name": st.text(max_size=400)}),
        "fields": st.lists(st.fixed_dictionaries({"name": st.text(max_size=300), "value": st.text(max_size=1500)}),
                           max_size=30)}), max_size=12)}))
def test_enforce_limits_makes_any_payload_valid(raw):
    assert validate_payload(enforce_limits(raw)) == []


def test_daily_summary_with_many_strategies_stays_valid():
    trades = [{"strategy": f"strategy_{i:02d}_" + "x" * 200, "pnl": i - 15, "r": 0.1 * i, "symbol": "S" * 300}
              for i in range(40)]
    payload = build_payload(events.daily_summary(AT + timedelta(hours=9), summary(trades)))
    assert validate_payload(payload) == []
    assert len(payload["embeds"][0]["fields"]) == 25
