"""One POST to a Discord webhook, and what its answer means for the next one.

Kept apart from the queue so the rate-limit rules (anchors-and-apis.md section 8) can be read
and tested on their own: ``retry_after`` from the 429 body and the ``Retry-After`` and
``X-RateLimit-Reset-After`` headers (the larger wins), the ``global`` flag, and a bucket
announced empty by ``X-RateLimit-Remaining: 0``. Wait values are clamped: one user saw
``retry_after`` in milliseconds, so a value above an hour is read as milliseconds, and any
wait is capped.

Webhook URLs are secrets (the token is in the path): every error text produced here has them
removed, and callers name a webhook by its category only.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import requests

MS_THRESHOLD_S = 3600.0          # a wait above this is taken to be in milliseconds
DEFAULT_429_WAIT_S = 1.0         # a 429 that names no wait at all
BODY_PREVIEW_CHARS = 200
_WEBHOOK_PATH = re.compile(r"webhooks/[^\s'\"()<>,]+", re.IGNORECASE)


def redact(message: str, url: str | None = None) -> str:
    """``message`` without the webhook URL, its path or any ``webhooks/<id>/<token>`` part."""
    if url:
        message = message.replace(url, "<webhook>")
        path = url.split("://", 1)[-1]
        path = path[path.find("/"):] if "/" in path else ""
        if len(path) > 1:
            message = message.replace(path, "<webhook-path>")
    return _WEBHOOK_PATH.sub("webhooks/<redacted>", message)


class RedactWebhookPaths(logging.Filter):
    """Rewrites records that mention a webhook path (urllib3 logs "POST /api/webhooks/<id>/<token>"
    at DEBUG), so the token cannot reach a log file whatever the log level."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        if "webhooks/" in message.lower():
            record.msg = redact(message)
            record.args = ()
        return True


# Loggers of the HTTP stack that print request lines (filters on a logger apply to its own
# records only, so each is named).
HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "urllib3",
                "requests")


def install_log_redaction() -> None:
    """Attach ``RedactWebhookPaths`` to the HTTP stack's loggers (idempotent)."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactWebhookPaths) for f in logger.filters):
            logger.addFilter(RedactWebhookPaths())


def normalise_wait(value: Any, cap_s: float) -> float | None:
    """A server-requested wait in seconds, or None when absent or unreadable.

    Above an hour it is read as milliseconds; the result is capped at ``cap_s``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    if seconds > MS_THRESHOLD_S:
        seconds /= 1000.0
    return min(seconds, cap_s)


@dataclass(frozen=True)
class Answer:
    """What one attempt produced. ``status`` None: no HTTP answer (timeout, refused, DNS)."""

    status: int | None
    error: str = ""
    retry_after_s: float | None = None    # 429: wait at least this long before the next send
    is_global: bool = False               # 429 applies to every webhook
    bucket_empty_for_s: float | None = None  # X-RateLimit-Remaining 0: pre-emptive wait
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def rate_limited(self) -> bool:
        return self.status == 429

    @property
    def retryable(self) -> bool:
        """Worth another try later: no answer, or a server error."""
        return self.status is None or self.status >= 500

    @property
    def webhook_gone(self) -> bool:
        """The webhook itself is unusable (deleted or bad token); more requests only count
        towards Discord's invalid-request ban."""
        return self.status in (401, 403, 404)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value.strip() if isinstance(value, str) else None


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def interpret(response: requests.Response, cap_s: float, url: str | None = None) -> Answer:
    """Turn a Discord HTTP response into an ``Answer`` (rate-limit waits included)."""
    headers = response.headers
    bucket_empty_for = None
    remaining = _header(headers, "X-RateLimit-Remaining")
    if remaining is not None:
        try:
            if float(remaining) <= 0:
                bucket_empty_for = normalise_wait(_header(headers, "X-RateLimit-Reset-After"), cap_s)
        except ValueError:
            pass
    status = response.status_code
    if 200 <= status < 300:
        return Answer(status, bucket_empty_for_s=bucket_empty_for)
    body = _body(response)
    if status == 429:
        waits = [normalise_wait(body.get("retry_after"), cap_s),
                 normalise_wait(_header(headers, "Retry-After"), cap_s),
                 normalise_wait(_header(headers, "X-RateLimit-Reset-After"), cap_s)]
        known = [w for w in waits if w is not None]
        is_global = (body.get("global") is True
                     or (_header(headers, "X-RateLimit-Global") or "").lower() == "true"
                     or (_header(headers, "X-RateLimit-Scope") or "").lower() == "global")
        return Answer(status, error="rate limited", retry_after_s=max(known) if known else DEFAULT_429_WAIT_S,
                      is_global=is_global, bucket_empty_for_s=bucket_empty_for)
    detail = body.get("message") if isinstance(body.get("message"), str) else response.text
    code = body.get("code")
    text = f"HTTP {status}: {str(detail)[:BODY_PREVIEW_CHARS]}".rstrip(": ")
    if code is not None:
        text += f" (code {code})"
    return Answer(status, error=redact(text, url), bucket_empty_for_s=bucket_empty_for)


def post(session: requests.Session, url: str, payload: Mapping[str, Any], timeout_s: float,
         cap_s: float) -> Answer:
    """POST ``payload``; never raises for network trouble (it becomes an ``Answer``)."""
    try:
        response = session.post(url, json=payload, timeout=timeout_s)
    except requests.Timeout:
        return Answer(None, error=f"no answer within {timeout_s:g} s", timed_out=True)
    except requests.RequestException as exc:
        return Answer(None, error=redact(f"{type(exc).__name__}: {exc}", url))
    try:
        return interpret(response, cap_s, url)
    finally:
        try:
            response.close()
        except Exception:  # noqa: BLE001 - closing must not turn an answer into a failure
            pass
