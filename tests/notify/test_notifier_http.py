"""The notifier against a local server that behaves like Discord (real HTTP on 127.0.0.1)."""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time

import pytest

from config.secrets import Secrets
from notify import events
from notify.events import validate_payload
from tests.notify.conftest import AT, eventually, fast_config, tickets, trade
from tests.notify.fake_discord import FakeDiscord, Reply


def rejected(symbol: str = "XAUUSD") -> events.NotifyEvent:
    return events.order_rejected(AT, symbol=symbol, side="sell", strategy="micro_scalp",
                                 reason="invalid stops", retcode=10016)


def repeat_count(received) -> int:
    match = re.search(r"\(x(\d+)\)$", received.title)
    return int(match.group(1)) if match else 1


# ----------------------------------------------------------------------- delivery and order

def test_every_message_arrives_in_order_on_its_own_webhook(discord, make_notifier):
    notifier = make_notifier("crypto", "gold")
    plan = {}
    for ticket in range(60):
        category = ("crypto", "gold", "forex", "alerts")[ticket % 4]
        plan[ticket] = category
        assert notifier.notify(trade(ticket, category))
    got = discord.wait_for(60, answered=True)
    assert len(got) == 60
    # forex and alerts have no webhook of their own: they fall back to the default one
    assert tickets(discord.received("crypto")) == [t for t in range(60) if plan[t] == "crypto"]
    assert tickets(discord.received("gold")) == [t for t in range(60) if plan[t] == "gold"]
    assert tickets(discord.received("default")) == [t for t in range(60) if plan[t] in ("forex", "alerts")]
    assert all(validate_payload(r.body) == [] for r in got)
    assert eventually(lambda: notifier.stats()["sent"] == 60)
    stats = notifier.stats()
    assert (stats["sent"], stats["dropped"], stats["failed"], stats["queue_depth"]) == (60, 0, 0, 0)


def test_no_message_is_lost_within_the_queue_bound_while_discord_stalls(discord, make_notifier):
    notifier = make_notifier(config=fast_config(queue_size=50))
    hold = discord.stall("default")
    assert notifier.notify(trade(0))
    discord.wait_for(1)
    accepted = [notifier.notify(trade(t)) for t in range(1, 51)]  # exactly the queue's bound
    assert all(accepted)
    assert notifier.stats()["queue_depth"] == 50
    hold.set()
    got = discord.wait_for(51, answered=True)
    assert tickets(got) == list(range(51))
    assert notifier.stats()["dropped"] == 0


def test_a_trading_loop_never_waits_for_a_slow_discord(discord, make_notifier):
    """Counted, not timed: while the server holds the first request, a 'trading thread' runs
    all of its steps, each enqueueing one message; none of them waited for Discord."""
    steps = 300
    # the held request must stay in flight however slow the machine: with the fast 0.5 s timeout a
    # loaded machine let it time out and be queued again mid-loop (queue depth 301)
    notifier = make_notifier(config=fast_config(queue_size=1000, request_timeout_seconds=30.0))
    hold = discord.stall("default")
    assert notifier.notify(trade(0))
    discord.wait_for(1)
    done = []

    def trading_loop():
        for step in range(1, steps + 1):
            notifier.notify(trade(step))
            done.append(step)

    worker = threading.Thread(target=trading_loop, name="trading")
    worker.start()
    worker.join(10)
    # Discord is still stalled on the very first request, yet every step has completed.
    assert not hold.is_set()
    assert len(discord.received()) == 1
    assert len(done) == steps
    assert notifier.stats()["queue_depth"] == steps
    hold.set()
    got = discord.wait_for(steps + 1, answered=True)
    assert tickets(got) == list(range(steps + 1))


# ------------------------------------------------------------------------------- 429s

@pytest.mark.parametrize("body_wait, headers, expected", [
    (0.35, {"Retry-After": "0.1", "X-RateLimit-Reset-After": "0.1"}, 0.35),   # body is larger
    (0.05, {"Retry-After": "0.4", "X-RateLimit-Reset-After": "0.05"}, 0.4),   # Retry-After larger
    (0.05, {"Retry-After": "0.05", "X-RateLimit-Reset-After": "0.3"}, 0.3),   # Reset-After larger
])
def test_no_request_before_retry_after_has_passed(discord, make_notifier, body_wait, headers, expected):
    discord.script("default", Reply(429, {"message": "You are being rate limited.", "retry_after": body_wait,
                                          "global": False}, headers))
    notifier = make_notifier()
    for ticket in range(3):
        notifier.notify(trade(ticket))
    got = discord.wait_for(4, answered=True)
    assert tickets(got) == [0, 0, 1, 2]  # the limited message is retried first: order kept
    assert got[1].arrived - got[0].answered >= expected
    assert eventually(lambda: notifier.stats()["sent"] == 3)
    stats = notifier.stats()
    assert (stats["sent"], stats["rate_limited"], stats["retried"], stats["failed"]) == (3, 1, 1, 0)


def test_a_global_429_pauses_every_webhook(discord, make_notifier):
    discord.script("crypto", Reply(429, {"message": "global", "retry_after": 0.4, "global": True},
                                   {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}))
    notifier = make_notifier("crypto", "gold")
    notifier.notify(trade(1, "crypto"))
    notifier.notify(trade(2, "gold"))
    discord.wait_for(3, answered=True)
    limited = discord.received("crypto")[0]
    gold = discord.received("gold")[0]
    assert gold.arrived - limited.answered >= 0.4
    assert discord.received("crypto")[1].arrived - limited.answered >= 0.4


def test_a_webhook_429_does_not_hold_up_other_webhooks(discord, make_notifier):
    discord.script("crypto", Reply(429, {"message": "slow down", "retry_after": 1.0, "global": False}))
    notifier = make_notifier("crypto", "gold")
    notifier.notify(trade(1, "crypto"))
    notifier.notify(trade(2, "gold"))
    discord.wait_for(3, answered=True)
    order = [(r.path, r.status) for r in discord.received()]
    # gold went out while crypto waited its second; crypto's retry came only after it
    assert order == [(FakeDiscord.path("crypto"), 429), (FakeDiscord.path("gold"), 204),
                     (FakeDiscord.path("crypto"), 204)]
    retry = discord.received("crypto")[1]
    assert retry.arrived - discord.received("crypto")[0].answered >= 1.0


def test_an_empty_bucket_is_waited_for_before_the_next_request(discord, make_notifier):
    discord.script("default", Reply(204, headers={"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                                                  "X-RateLimit-Reset-After": "0.3"}))
    notifier = make_notifier()
    notifier.notify(trade(1))
    notifier.notify(trade(2))
    got = discord.wait_for(2, answered=True)
    assert tickets(got) == [1, 2]
    assert got[1].arrived - got[0].answered >= 0.3
    assert notifier.stats()["rate_limited"] == 0


# ------------------------------------------------------------------------ 5xx, 4xx, timeouts

def test_server_errors_are_retried_with_backoff(discord, make_notifier):
    discord.script("default", Reply(500), Reply(502, "bad gateway"))
    notifier = make_notifier()
    notifier.notify(trade(1))
    notifier.notify(trade(2))
    got = discord.wait_for(4, answered=True)
    assert tickets(got) == [1, 1, 1, 2]
    assert [r.status for r in got] == [500, 502, 204, 204]
    assert got[1].arrived - got[0].answered >= 0.05  # backoff_initial_seconds
    assert got[2].arrived - got[1].answered >= 0.1   # doubled
    assert eventually(lambda: notifier.stats()["sent"] == 2)
    stats = notifier.stats()
    assert (stats["sent"], stats["retried"], stats["failed"]) == (2, 2, 0)


def test_persistent_server_errors_give_up_after_max_attempts(discord, make_notifier):
    discord.script("default", Reply(500), Reply(500), Reply(503))
    failed = []
    notifier = make_notifier(config=fast_config(max_attempts=3),
                             on_failed=lambda event, why: failed.append((event.kind, why)))
    notifier.notify(trade(1))
    notifier.notify(trade(2))
    got = discord.wait_for(4, answered=True)
    assert tickets(got) == [1, 1, 1, 2]
    assert eventually(lambda: notifier.stats()["sent"] == 1)
    assert notifier.stats()["failed"] == 1
    assert failed == [("trade_opened", "default: HTTP 503 (after 3 attempts)")]


def test_client_errors_are_logged_and_not_retried(discord, make_notifier, caplog):
    caplog.set_level(logging.DEBUG)
    discord.script("default", Reply(400, {"message": "Invalid Form Body", "code": 50035}))
    notifier = make_notifier()
    notifier.notify(trade(1))
    notifier.notify(trade(2))
    got = discord.wait_for(2, answered=True)
    time.sleep(0.2)  # a wrongful retry would arrive now
    assert tickets(discord.received()) == [1, 2]
    assert [r.status for r in got] == [400, 204]
    assert eventually(lambda: notifier.stats()["sent"] == 1)
    stats = notifier.stats()
    assert (stats["failed"], stats["retried"], stats["sent"]) == (1, 0, 1)
    assert "Discord default webhook: trade_opened message not sent: HTTP 400: Invalid Form Body (code 50035)" in caplog.text


def test_a_deleted_webhook_is_disabled_instead_of_hammered(discord, make_notifier):
    discord.script("crypto", Reply(404, {"message": "Unknown Webhook", "code": 10015}))
    notifier = make_notifier("crypto")
    for ticket in range(3):
        notifier.notify(trade(ticket, "crypto"))
    notifier.notify(trade(9, "gold"))
    discord.wait_for(2, answered=True)
    time.sleep(0.2)
    assert len(discord.received("crypto")) == 1
    assert tickets(discord.received("default")) == [9]
    assert eventually(lambda: notifier.stats()["failed"] == 3)
    stats = notifier.stats()
    assert stats["disabled_webhooks"] == ["crypto"]
    assert stats["failed"] == 3


def test_a_timeout_is_retried(discord, make_notifier):
    discord.script("default", Reply(204, delay=1.0))  # slower than the 0.3 s request timeout
    notifier = make_notifier(config=fast_config(request_timeout_seconds=0.3))
    notifier.notify(trade(1))
    notifier.notify(trade(2))
    got = discord.wait_for(3, answered=True)
    assert tickets(discord.received()) == [1, 1, 2]
    assert eventually(lambda: notifier.stats()["sent"] == 2)
    stats = notifier.stats()
    assert stats["sent"] == 2 and stats["retried"] == 1 and "no answer within 0.3 s" in stats["last_error"]
    assert got  # (answers recorded)


# ----------------------------------------------------------------- overflow and bursts

def test_full_queue_drops_the_least_important_first_and_reports_the_count(discord, make_notifier):
    notifier = make_notifier(config=fast_config(queue_size=10))
    hold = discord.stall("default")
    assert notifier.notify(trade(0))
    discord.wait_for(1)
    low = [dataclasses.replace(trade(t), priority="low") for t in (100, 101)]
    normal = [trade(t) for t in range(1, 11)]
    critical = [dataclasses.replace(trade(t), priority="critical") for t in (201, 202, 203)]
    assert all(notifier.notify(e) for e in normal)        # fills the queue
    assert all(notifier.notify(e) for e in critical)      # each pushes out the oldest normal
    assert not any(notifier.notify(e) for e in low)       # less important than anything queued
    assert notifier.stats()["queue_depth"] == 10 and notifier.stats()["dropped"] == 5
    hold.set()
    got = discord.wait_for(12, answered=True)
    assert tickets(got[:11]) == [0, *range(4, 11), 201, 202, 203]
    notice = got[11]
    assert notice.title == "5 notification(s) dropped"
    assert notice.field("Dropped") == "5"


def test_a_burst_of_rejects_becomes_one_message_with_a_count(discord, make_notifier):
    notifier = make_notifier(config=fast_config(burst_window_seconds=30))
    hold = discord.stall("default")
    notifier.notify(trade(0))
    discord.wait_for(1)
    assert all(notifier.notify(rejected()) for _ in range(20))
    assert notifier.notify(rejected("EURUSD"))  # another key: its own message
    hold.set()
    got = discord.wait_for(3, answered=True)
    time.sleep(0.2)
    assert len(discord.received()) == 3
    burst = got[1]
    assert burst.title == "Order rejected: SELL XAUUSD (x20)"
    assert burst.field("Repeated").startswith("20 times within")
    assert got[2].title == "Order rejected: SELL EURUSD"
    assert notifier.stats()["collapsed"] == 19


def test_repeats_after_the_first_message_left_are_counted_in_one_follow_up(discord, make_notifier):
    # The window is wide enough that the first message's round trip on a loaded machine cannot
    # outlast it (at 0.5 s it did once: the 19 repeats then opened a second window, 3 messages).
    notifier = make_notifier(config=fast_config(burst_window_seconds=2.0))
    window_opened = time.monotonic()
    notifier.notify(rejected())
    discord.wait_for(1, answered=True)  # the first one went out at once
    for _ in range(19):
        notifier.notify(rejected())
    got = discord.wait_for(2, answered=True, timeout=5)
    time.sleep(0.3)
    assert len(discord.received()) == 2
    assert [repeat_count(r) for r in got] == [1, 19]  # 20 events, two messages
    assert got[1].arrived - window_opened >= 2.0      # the follow-up closes the window


def test_trades_are_never_collapsed(discord, make_notifier):
    notifier = make_notifier(config=fast_config(burst_window_seconds=60))
    for ticket in range(5):
        notifier.notify(trade(ticket))
    assert tickets(discord.wait_for(5, answered=True)) == list(range(5))


# ------------------------------------------------------------------------------ lifecycle

def test_stop_drains_the_queue(discord, make_notifier):
    notifier = make_notifier()
    for ticket in range(5):
        notifier.notify(trade(ticket))
    assert notifier.stop(5.0) is True
    assert tickets(discord.received()) == list(range(5))
    assert notifier.notify(trade(99)) is False
    assert notifier.stats()["running"] is False


def test_stop_never_hangs_on_a_stalled_discord(discord, make_notifier):
    notifier = make_notifier(config=fast_config(request_timeout_seconds=5))
    discord.stall("default")
    for ticket in range(3):
        notifier.notify(trade(ticket))
    discord.wait_for(1)
    started = time.monotonic()
    assert notifier.stop(0.5) is False
    assert time.monotonic() - started < 3.0
    assert notifier.stats()["dropped"] == 2  # the two never sent; the third is in flight


def test_burst_repeats_are_sent_at_stop(discord, make_notifier):
    notifier = make_notifier(config=fast_config(burst_window_seconds=60))
    notifier.notify(rejected())
    discord.wait_for(1, answered=True)
    for _ in range(4):
        notifier.notify(rejected())
    notifier.stop(5.0)
    assert [repeat_count(r) for r in discord.received()] == [1, 4]


def test_off_switches(discord, make_notifier):
    off = make_notifier(enabled=False)  # --no-notify
    assert off.notify(trade(1)) is False and off.stats()["running"] is False
    by_config = make_notifier(config=fast_config(enabled=False))
    assert by_config.notify(trade(2)) is False
    no_hooks = make_notifier(secrets=Secrets())
    assert no_hooks.notify(trade(3)) is False
    by_config.apply_config(fast_config(enabled=True))  # hot reload switches it on
    assert by_config.notify(trade(4)) is True
    assert tickets(discord.wait_for(1, answered=True)) == [4]


def test_muted_kinds_and_minimum_priority_are_filtered(discord, make_notifier):
    notifier = make_notifier(config=fast_config(muted_events=["trade_opened"], min_priority="high"))
    assert notifier.notify(trade(1)) is False
    assert notifier.notify(events.bot_stopped(AT, mode="paper", broker="sim", symbols=[], version="1")) is True
    assert notifier.notify(dataclasses.replace(rejected(), priority="normal")) is False
    assert discord.wait_for(1, answered=True)[0].title == "Bot stopped"
    assert notifier.stats()["filtered"] == 2


def test_notify_never_raises_into_the_caller(make_notifier):
    notifier = make_notifier()
    assert notifier.notify(None) is False  # type: ignore[arg-type]
    assert notifier.notify("text") is False  # type: ignore[arg-type]
    assert notifier.stats()["rejected_calls"] == 2


def test_the_sender_thread_cannot_notify_itself(discord, make_notifier):
    answers = []
    holder = {}

    def report_failure(event, why):  # e.g. a log handler that forwards errors to Discord
        answers.append(holder["n"].notify(events.monitor_faulted(AT, monitor="notifier", error=why)))

    discord.script("default", Reply(400, {"message": "bad"}))
    holder["n"] = make_notifier(on_failed=report_failure)
    holder["n"].notify(trade(1))
    discord.wait_for(1, answered=True)
    time.sleep(0.2)
    assert answers == [False]
    assert len(discord.received()) == 1


# ------------------------------------------------------------------------------- secrecy

def test_webhook_urls_never_reach_the_logs(discord, make_notifier, caplog):
    caplog.set_level(logging.DEBUG)
    discord.script("default", Reply(500), Reply(400, {"message": "bad"}),
                   Reply(429, {"retry_after": 0.05, "global": False}))
    discord.script("crypto", Reply(404, {"message": "Unknown Webhook"}))
    closed = FakeDiscord()
    unreachable = closed.url("gold")
    closed.close()  # nothing listens there any more: connection refused
    secrets = Secrets(discord_default=discord.url("default"),
                      discord_by_category={"crypto": discord.url("crypto"), "gold": unreachable})
    notifier = make_notifier(secrets=secrets, config=fast_config(max_attempts=2))
    for ticket in range(4):
        notifier.notify(trade(ticket))
    notifier.notify(trade(10, "crypto"))
    notifier.notify(trade(20, "gold"))
    notifier.stop(5.0)
    assert "SECRETtoken" not in caplog.text
    assert "webhooks/1000" not in caplog.text
    assert "SECRETtoken" not in str(notifier.stats())
    assert "gold" in caplog.text and "crypto" in caplog.text  # webhooks are named by category
    assert notifier.stats()["failed"] >= 2
