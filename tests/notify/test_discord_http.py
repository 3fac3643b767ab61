"""Reading Discord's answers: waits, global flag, empty bucket, redaction."""
from __future__ import annotations

import json
import logging

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from notify.discord_http import RedactWebhookPaths, interpret, normalise_wait, redact

URL = "https://discord.com/api/webhooks/123456/abcDEF-token"


def answer(status, body=None, **headers):
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode() if body is not None else b""
    response.headers = CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()})
    return interpret(response, cap_s=300, url=URL)


@pytest.mark.parametrize("value, expected", [
    (0.25, 0.25), ("1.5", 1.5), (120, 120), (3600, 300), (5000, 5.0), (1e9, 300),
    (None, None), ("soon", None), (-1, None), (float("nan"), None), (True, None)])
def test_normalise_wait(value, expected):
    assert normalise_wait(value, cap_s=300) == expected


def test_429_takes_the_largest_wait_and_reads_the_global_flag():
    limited = answer(429, {"message": "You are being rate limited.", "retry_after": 0.8, "global": False},
                     Retry_After="2", X_RateLimit_Reset_After="1.2", X_RateLimit_Scope="user")
    assert (limited.rate_limited, limited.retry_after_s, limited.is_global) == (True, 2.0, False)
    assert answer(429, {"retry_after": 1, "global": True}).is_global
    assert answer(429, {"retry_after": 1}, X_RateLimit_Global="true").is_global
    assert answer(429, {"retry_after": 1}, X_RateLimit_Scope="global").is_global
    assert answer(429, "not json").retry_after_s == 1.0


def test_an_empty_bucket_is_reported_on_any_answer():
    assert answer(204, X_RateLimit_Remaining="0", X_RateLimit_Reset_After="0.75").bucket_empty_for_s == 0.75
    assert answer(204, X_RateLimit_Remaining="3", X_RateLimit_Reset_After="0.75").bucket_empty_for_s is None


def test_answers_are_classified():
    assert answer(204).ok and answer(200, {"id": "1"}).ok
    assert answer(502).retryable and not answer(502).ok
    bad = answer(400, {"message": "Invalid Form Body", "code": 50035})
    assert (bad.retryable, bad.webhook_gone, bad.error) == (False, False, "HTTP 400: Invalid Form Body (code 50035)")
    assert answer(404).webhook_gone and answer(401).webhook_gone


def test_redact_removes_urls_paths_and_tokens():
    text = (f"HTTPSConnectionPool(host='discord.com', port=443): Max retries exceeded with url: "
            f"/api/webhooks/123456/abcDEF-token (Caused by ...) {URL}")
    cleaned = redact(text, URL)
    assert "abcDEF" not in cleaned and "123456" not in cleaned
    assert "discord.com" in cleaned
    assert redact("see webhooks/999/zzz-top for details") == "see webhooks/<redacted> for details"


def test_the_log_filter_rewrites_request_lines():
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1,
                               '%s://%s:%s "%s %s %s" %s %s',
                               ("https", "discord.com", 443, "POST", "/api/webhooks/1/tok", "HTTP/1.1", 204, 0),
                               None)
    assert RedactWebhookPaths().filter(record)
    assert record.getMessage() == 'https://discord.com:443 "POST /api/webhooks/<redacted> HTTP/1.1" 204 0'
