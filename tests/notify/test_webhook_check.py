"""``notify-test``: one message per configured webhook, results per category, no URLs."""
from __future__ import annotations

import logging

from config.secrets import Secrets, load_secrets
from notify.events import validate_payload
from notify.webhook_check import all_ok, configured_webhooks, format_results, send_test_messages
from tests.notify.fake_discord import FakeDiscord, Reply


def test_results_for_ok_not_found_and_unreachable(discord, caplog):
    caplog.set_level(logging.DEBUG)
    discord.script("crypto", Reply(404, {"message": "Unknown Webhook", "code": 10015}))
    closed = FakeDiscord()
    unreachable = closed.url("gold")
    closed.close()
    secrets = Secrets(discord_default=discord.url("default"),
                      discord_by_category={"crypto": discord.url("crypto"), "gold": unreachable})
    results = send_test_messages(secrets, timeout=2, version="1.2.3")
    assert [(r.category, r.ok, r.status) for r in results] == [
        ("default", True, 204), ("crypto", False, 404), ("gold", False, None)]
    assert results[1].error == "HTTP 404: Unknown Webhook (code 10015)"
    assert results[2].error.startswith("ConnectionError")
    sent = discord.received()
    assert [r.path for r in sent] == [FakeDiscord.path("default"), FakeDiscord.path("crypto")]
    assert sent[0].title == "Test message"
    assert sent[0].field("Category") == "default" and sent[0].field("Version") == "1.2.3"
    assert all(validate_payload(r.body) == [] for r in sent)
    text = format_results(results)
    lines = text.splitlines()
    assert lines[0].startswith("default  ok (HTTP 204, ")
    assert lines[1] == "crypto   FAILED: HTTP 404: Unknown Webhook (code 10015) - webhook not found (deleted or wrong URL)"
    assert lines[2].startswith("gold     FAILED: no answer (ConnectionError: ")
    assert lines[3] == "2 of 3 webhooks failed"
    assert not all_ok(results)
    for blob in (text, caplog.text, repr(results)):
        assert "SECRETtoken" not in blob and "webhooks/1000" not in blob


def test_a_short_rate_limit_is_waited_once(discord):
    discord.script("default", Reply(429, {"retry_after": 0.25, "global": False}))
    slept = []
    results = send_test_messages(Secrets(discord_default=discord.url("default")), sleep=slept.append)
    assert slept == [0.25]
    assert [(r.ok, r.status) for r in results] == [(True, 204)]
    assert all_ok(results) and format_results(results).endswith("all webhooks ok")


def test_no_webhook_configured():
    assert send_test_messages(Secrets()) == []
    assert format_results([]).startswith("No Discord webhook is configured: set DISCORD_WEBHOOK_URL")
    assert not all_ok([])


def test_configured_webhooks_come_from_the_environment_names():
    secrets = load_secrets(environ={"DISCORD_WEBHOOK_URL": "https://d/1/a", "DISCORD_WEBHOOK_URL_GOLD": "https://d/2/b",
                                    "DISCORD_WEBHOOK_URL_ALERTS": "https://d/3/c"})
    assert configured_webhooks(secrets) == [("default", "https://d/1/a"), ("gold", "https://d/2/b"),
                                            ("alerts", "https://d/3/c")]
