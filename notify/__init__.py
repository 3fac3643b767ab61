"""Discord notifications: events and payloads (events), the queue and sender thread
(notifier), HTTP and rate-limit rules (discord_http), the daily summary (daily) and the
``notify-test`` command (webhook_check)."""
