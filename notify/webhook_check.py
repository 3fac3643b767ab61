"""``python bot.py notify-test``: one test message to each configured webhook, synchronously.

The operator runs it after editing ``.env`` to see at once which webhooks work. Results name
the category and the HTTP status or the error, never the URL (it is a secret).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import requests

from config.secrets import WEBHOOK_CATEGORIES, Secrets
from notify import events
from notify.discord_http import install_log_redaction, post

MAX_429_WAIT_S = 5.0  # one polite retry after a short rate limit; longer ones are reported


@dataclass(frozen=True)
class WebhookResult:
    category: str
    ok: bool
    status: int | None       # HTTP status; None when no answer came back
    error: str = ""          # what went wrong, without the URL
    elapsed_ms: float = 0.0


def configured_webhooks(secrets: Secrets) -> list[tuple[str, str]]:
    """(category, url) for the default webhook and each category with its own URL."""
    hooks = []
    if secrets.discord_default:
        hooks.append(("default", secrets.discord_default))
    for category in WEBHOOK_CATEGORIES:
        url = secrets.discord_by_category.get(category)
        if url:
            hooks.append((category, url))
    return hooks


def send_test_messages(secrets: Secrets, session: requests.Session | None = None, timeout: float = 10,
                       version: str | None = None, now: datetime | None = None,
                       sleep: Callable[[float], None] = time.sleep) -> list[WebhookResult]:
    """Send the test message to every configured webhook; one result per webhook."""
    install_log_redaction()
    own = session is None
    session = session or requests.Session()
    at = now or datetime.now(timezone.utc)
    results = []
    try:
        for category, url in configured_webhooks(secrets):
            payload = events.build_payload(events.webhook_test(at, category=category, version=version),
                                           username="Scalping bot")
            started = time.perf_counter()
            answer = post(session, url, payload, timeout, cap_s=MAX_429_WAIT_S)
            if answer.rate_limited and (answer.retry_after_s or 0) <= MAX_429_WAIT_S:
                sleep(answer.retry_after_s or 0)
                answer = post(session, url, payload, timeout, cap_s=MAX_429_WAIT_S)
            elapsed = (time.perf_counter() - started) * 1000
            results.append(WebhookResult(category, answer.ok, answer.status,
                                         "" if answer.ok else answer.error, round(elapsed, 1)))
    finally:
        if own:
            session.close()
    return results


def _explain(result: WebhookResult) -> str:
    if result.ok:
        return f"ok (HTTP {result.status}, {result.elapsed_ms:.0f} ms)"
    hint = {401: "bad token", 403: "forbidden", 404: "webhook not found (deleted or wrong URL)",
            429: "rate limited, try again shortly"}.get(result.status or 0, "")
    if result.status is None:
        return f"FAILED: no answer ({result.error})"
    detail = result.error or f"HTTP {result.status}"
    return f"FAILED: {detail}" + (f" - {hint}" if hint else "")


def format_results(results: list[WebhookResult]) -> str:
    """A few lines for the terminal: one per webhook, then a verdict."""
    if not results:
        return ("No Discord webhook is configured: set DISCORD_WEBHOOK_URL (and optionally "
                "DISCORD_WEBHOOK_URL_CRYPTO/_GOLD/_FOREX/_ALERTS) in .env")
    width = max(len(r.category) for r in results)
    lines = [f"{r.category:<{width}}  {_explain(r)}" for r in results]
    failed = sum(1 for r in results if not r.ok)
    lines.append("all webhooks ok" if not failed else f"{failed} of {len(results)} webhooks failed")
    return "\n".join(lines)


def all_ok(results: list[WebhookResult]) -> bool:
    """For the exit code of ``notify-test``: at least one webhook and every one answered ok."""
    return bool(results) and all(r.ok for r in results)
