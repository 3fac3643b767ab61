"""Notification events and their Discord payloads.

An event is a small immutable record built on the calling thread (cheap: no formatting of
JSON, no I/O); the notifier's sender thread turns it into a Discord payload with
``build_payload``, which always returns something Discord accepts: every text is truncated to
Discord's limits with an ellipsis, never rejected (anchors-and-apis.md section 8).

Each builder takes the event time ``at`` (the bot's clock) so a message read late on a phone
still says when it happened. ``category`` picks the webhook (crypto, gold, forex, alerts,
default); for a symbol the caller maps its bot.json category with ``category_for``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple, Sequence

from config.notify_model import EVENT_KINDS
from config.secrets import WEBHOOK_CATEGORIES

if TYPE_CHECKING:
    from notify.daily import DailySummary, StrategySummary

CATEGORIES = (*WEBHOOK_CATEGORIES, "default")
PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "critical": 3}

# Embed colours by outcome (integer RGB, as Discord expects).
GREEN = 0x2ECC71   # win, recovered, started
RED = 0xE74C3C     # loss, fault, disconnected
AMBER = 0xF39C12   # warning: rejected, paused, breaker, live-mode banner
BLUE = 0x3498DB    # information

# Discord limits (characters).
CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
EMBED_TOTAL_MAX = 6000
USERNAME_MAX = 80
ELLIPSIS = "\u2026"
NOT_AVAILABLE = "n/a"
CODE_BLOCK_MAX = 3500  # error texts are cut before wrapping in ``` so the block stays closed


class EmbedField(NamedTuple):
    name: str
    value: str
    inline: bool = True


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """One thing the operator should hear about.

    ``burst_key``: repeats of the same ``kind`` and key within the burst window collapse into
    one message with a count (None: every event is its own message, e.g. each trade).
    """

    kind: str
    title: str
    at: datetime
    description: str = ""
    fields: tuple[EmbedField, ...] = ()
    colour: int = BLUE
    category: str = "default"
    priority: str = "normal"
    burst_key: str | None = None
    footer: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        if self.priority not in PRIORITY_RANK:
            raise ValueError(f"priority must be one of {', '.join(PRIORITY_RANK)}, not {self.priority!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, not {self.category!r}")


@dataclass(frozen=True, slots=True)
class Repeat:
    """How many events one message stands for (burst collapse) and over how long."""

    count: int
    seconds: float


def category_for(symbol_category: str | None) -> str:
    """Webhook category for a bot.json symbol category (index/other go to the default hook)."""
    return symbol_category if symbol_category in ("crypto", "gold", "forex") else "default"


# ------------------------------------------------------------------------------ formatting

def _utc(at: datetime) -> datetime:
    """Aware UTC; a naive time is taken as UTC (the bot's convention) rather than rejected."""
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def text(value: Any) -> str:
    """Display text of any value: None and non-finite numbers become "n/a"."""
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, float) and not math.isfinite(value):
        return NOT_AVAILABLE
    shown = str(value).strip()
    return shown or NOT_AVAILABLE


def fmt_price(value: Any, digits: int | None = None) -> str:
    """A price with sensible decimals for its size (2345.67, 151.234, 1.08345)."""
    number = _finite(value)
    if number is None:
        return NOT_AVAILABLE
    if digits is None:
        size = abs(number)
        digits = 2 if size >= 1000 else 3 if size >= 10 else 5
    return f"{number:,.{max(0, min(digits, 10))}f}"


def fmt_volume(value: Any) -> str:
    number = _finite(value)
    if number is None:
        return NOT_AVAILABLE
    return f"{number:.8f}".rstrip("0").rstrip(".") or "0"


def fmt_money(value: Any, currency: str = "") -> str:
    number = _finite(value)
    if number is None:
        return NOT_AVAILABLE
    return f"{number:+,.2f} {currency}".rstrip()


def fmt_r(value: Any) -> str:
    number = _finite(value)
    return NOT_AVAILABLE if number is None else f"{number:+.2f}R"


def fmt_percent(fraction: Any) -> str:
    number = _finite(fraction)
    return NOT_AVAILABLE if number is None else f"{number * 100:.1f}%"


def fmt_duration(seconds: Any) -> str:
    """``45s``, ``3m 05s``, ``2h 03m``, ``1d 02h``."""
    number = _finite(seconds)
    if number is None or number < 0:
        return NOT_AVAILABLE
    total = int(round(number))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _lines(items: Iterable[Any]) -> str:
    return "\n".join(f"- {text(item)}" for item in items)


def _field(name: str, value: Any, inline: bool = True) -> EmbedField:
    return EmbedField(name, text(value), inline)


def _side(side: Any) -> str:
    return text(side).upper()


# --------------------------------------------------------------------------- event builders

def bot_started(at: datetime, *, mode: str, broker: str, symbols: Sequence[str], version: str,
                recovered_positions: int | None = None) -> NotifyEvent:
    live = mode == "live"
    fields = [_field("Mode", mode.upper() if live else mode), _field("Broker", broker),
              _field("Version", version)]
    if recovered_positions is not None:
        fields.append(_field("Recovered positions", recovered_positions))
    fields.append(_field("Symbols", ", ".join(symbols) or NOT_AVAILABLE, inline=False))
    return NotifyEvent(
        kind="bot_started", at=at, title=f"Bot started ({'LIVE TRADING' if live else mode})",
        description="Real orders will be sent to the account." if live else "",
        fields=tuple(fields), colour=AMBER if live else GREEN, category="alerts",
        priority="critical" if live else "high")


def bot_stopped(at: datetime, *, mode: str, broker: str, symbols: Sequence[str], version: str,
                reason: str = "", open_positions: int | None = None) -> NotifyEvent:
    fields = [_field("Mode", mode), _field("Broker", broker), _field("Version", version)]
    if open_positions is not None:
        fields.append(_field("Open positions (kept, with SL/TP)", open_positions))
    fields.append(_field("Symbols", ", ".join(symbols) or NOT_AVAILABLE, inline=False))
    return NotifyEvent(kind="bot_stopped", at=at, title="Bot stopped", description=reason,
                       fields=tuple(fields), colour=AMBER, category="alerts", priority="high")


def trade_opened(at: datetime, *, symbol: str, side: str, volume: float, entry: float, sl: float,
                 tp: float, strategy: str, reason: str = "", category: str = "default",
                 ticket: int | None = None, digits: int | None = None) -> NotifyEvent:
    fields = [_field("Side", _side(side)), _field("Volume", fmt_volume(volume)),
              _field("Entry", fmt_price(entry, digits)), _field("Stop loss", fmt_price(sl, digits)),
              _field("Take profit", fmt_price(tp, digits)), _field("Strategy", strategy)]
    if ticket is not None:
        fields.append(_field("Ticket", ticket))
    return NotifyEvent(
        kind="trade_opened", at=at, title=f"{_side(side)} {symbol} opened",
        description=f"Reason: {text(reason)}" if reason else "", fields=tuple(fields), colour=BLUE,
        category=category, priority="normal", footer=f"{strategy} | trade_opened")


def trade_closed(at: datetime, *, symbol: str, side: str, volume: float, entry: float,
                 exit_price: float, pnl: float, r_multiple: float | None, strategy: str,
                 reason: str = "", hold_seconds: float | None = None, sl: float | None = None,
                 tp: float | None = None, category: str = "default", ticket: int | None = None,
                 currency: str = "USD", digits: int | None = None) -> NotifyEvent:
    outcome = _finite(pnl)
    colour = BLUE if outcome is None or outcome == 0 else GREEN if outcome > 0 else RED
    fields = [_field("Side", _side(side)), _field("Volume", fmt_volume(volume)),
              _field("Entry", fmt_price(entry, digits)), _field("Exit", fmt_price(exit_price, digits)),
              _field("P&L", fmt_money(pnl, currency)), _field("R", fmt_r(r_multiple)),
              _field("Hold time", fmt_duration(hold_seconds)), _field("Strategy", strategy)]
    if sl is not None:
        fields.append(_field("Stop loss", fmt_price(sl, digits)))
    if tp is not None:
        fields.append(_field("Take profit", fmt_price(tp, digits)))
    if ticket is not None:
        fields.append(_field("Ticket", ticket))
    return NotifyEvent(
        kind="trade_closed", at=at,
        title=f"{_side(side)} {symbol} closed {fmt_money(pnl, currency)} ({fmt_r(r_multiple)})",
        description=f"Exit reason: {text(reason)}" if reason else "", fields=tuple(fields),
        colour=colour, category=category, priority="normal", footer=f"{strategy} | trade_closed")


def order_rejected(at: datetime, *, symbol: str, side: str, strategy: str, reason: str,
                   retcode: int | None = None, volume: float | None = None,
                   category: str = "alerts") -> NotifyEvent:
    fields = [_field("Symbol", symbol), _field("Side", _side(side)), _field("Strategy", strategy)]
    if retcode is not None:
        fields.append(_field("Retcode", retcode))
    if volume is not None:
        fields.append(_field("Volume", fmt_volume(volume)))
    return NotifyEvent(
        kind="order_rejected", at=at, title=f"Order rejected: {_side(side)} {symbol}",
        description=text(reason), fields=tuple(fields), colour=AMBER, category=category,
        priority="high", burst_key=f"{strategy}|{symbol}")


def trading_state_changed(at: datetime, *, old: str, new: str, reason: str) -> NotifyEvent:
    resumed = new.lower() in ("active", "running", "trading", "enabled")
    return NotifyEvent(
        kind="trading_state_changed", at=at, title=f"Trading state: {text(old)} -> {text(new)}",
        description=text(reason), fields=(_field("From", old), _field("To", new)),
        colour=GREEN if resumed else AMBER, category="alerts", priority="high")


def circuit_breaker_opened(at: datetime, *, name: str, reason: str, failures: int | None = None,
                           retry_in_seconds: float | None = None) -> NotifyEvent:
    fields = [_field("Breaker", name)]
    if failures is not None:
        fields.append(_field("Failures", failures))
    if retry_in_seconds is not None:
        fields.append(_field("Next probe in", fmt_duration(retry_in_seconds)))
    return NotifyEvent(
        kind="circuit_breaker_opened", at=at, title=f"Circuit breaker OPEN: {name}",
        description=f"New entries paused. {text(reason)}", fields=tuple(fields), colour=RED,
        category="alerts", priority="critical", burst_key=name)


def circuit_breaker_closed(at: datetime, *, name: str, open_seconds: float | None = None) -> NotifyEvent:
    fields = [_field("Breaker", name)]
    if open_seconds is not None:
        fields.append(_field("Was open for", fmt_duration(open_seconds)))
    return NotifyEvent(
        kind="circuit_breaker_closed", at=at, title=f"Circuit breaker closed: {name}",
        description="Entries allowed again after reconciliation.", fields=tuple(fields),
        colour=GREEN, category="alerts", priority="high")


def broker_disconnected(at: datetime, *, broker: str, detail: str,
                        failures: int | None = None) -> NotifyEvent:
    fields = [_field("Broker", broker)]
    if failures is not None:
        fields.append(_field("Failed checks", failures))
    return NotifyEvent(
        kind="broker_disconnected", at=at, title=f"Broker disconnected: {broker}",
        description=text(detail), fields=tuple(fields), colour=RED, category="alerts",
        priority="critical", burst_key=broker)


def broker_restored(at: datetime, *, broker: str, downtime_seconds: float | None = None) -> NotifyEvent:
    fields = [_field("Broker", broker)]
    if downtime_seconds is not None:
        fields.append(_field("Down for", fmt_duration(downtime_seconds)))
    return NotifyEvent(kind="broker_restored", at=at, title=f"Broker connection restored: {broker}",
                       fields=tuple(fields), colour=GREEN, category="alerts", priority="high")


def config_reloaded(at: datetime, *, files: Sequence[str], changes: Sequence[str],
                    needs_restart: Sequence[str] = (), version: int | None = None) -> NotifyEvent:
    fields = [_field("Files", ", ".join(files) or NOT_AVAILABLE, inline=False)]
    if version is not None:
        fields.append(_field("Config version", version))
    if needs_restart:
        fields.append(_field("Not applied (needs a restart)", _lines(needs_restart), inline=False))
    return NotifyEvent(
        kind="config_reloaded", at=at, title="Config reloaded",
        description=_lines(changes) if changes else "No effective change.", fields=tuple(fields),
        colour=AMBER if needs_restart else BLUE, category="alerts",
        priority="normal" if needs_restart else "low")


def config_rejected(at: datetime, *, error: str, files: Sequence[str] = ()) -> NotifyEvent:
    return NotifyEvent(
        kind="config_rejected", at=at, title="Config change rejected (previous config kept)",
        description=f"```\n{truncate(text(error), CODE_BLOCK_MAX)}\n```",
        fields=(_field("Files", ", ".join(files) or NOT_AVAILABLE, inline=False),),
        colour=RED, category="alerts", priority="high", burst_key=",".join(sorted(files)) or "config")


def monitor_faulted(at: datetime, *, monitor: str, error: str, consecutive_errors: int | None = None,
                    restart_in_seconds: float | None = None) -> NotifyEvent:
    fields = [_field("Monitor", monitor)]
    if consecutive_errors is not None:
        fields.append(_field("Consecutive errors", consecutive_errors))
    if restart_in_seconds is not None:
        fields.append(_field("Restart in", fmt_duration(restart_in_seconds)))
    return NotifyEvent(
        kind="monitor_faulted", at=at, title=f"Monitor faulted: {monitor}",
        description=f"```\n{truncate(text(error), CODE_BLOCK_MAX)}\n```", fields=tuple(fields), colour=RED,
        category="alerts", priority="critical", burst_key=monitor)


def monitor_restarted(at: datetime, *, monitor: str, attempt: int | None = None) -> NotifyEvent:
    fields = [_field("Monitor", monitor)]
    if attempt is not None:
        fields.append(_field("Restart attempt", attempt))
    return NotifyEvent(kind="monitor_restarted", at=at, title=f"Monitor restarted: {monitor}",
                       fields=tuple(fields), colour=GREEN, category="alerts", priority="high",
                       burst_key=monitor)


def range_signal(at: datetime, *, symbol: str, side: str, entry: float, sl: float, tp: float,
                 range_high: float | None = None, range_low: float | None = None,
                 reasons: Sequence[str] = (), strategy: str = "range_scalp",
                 category: str = "default", digits: int | None = None) -> NotifyEvent:
    """A range-scalp setup reported for a human to act on (auto-execution is off)."""
    fields = [_field("Side", _side(side)), _field("Entry", fmt_price(entry, digits)),
              _field("Stop loss", fmt_price(sl, digits)), _field("Take profit", fmt_price(tp, digits))]
    if range_high is not None or range_low is not None:
        fields.append(_field("Range", f"{fmt_price(range_low, digits)} - {fmt_price(range_high, digits)}"))
    return NotifyEvent(
        kind="range_signal", at=at, title=f"Range signal: {_side(side)} {symbol} (not executed)",
        description=_lines(reasons) if reasons else "", fields=tuple(fields), colour=BLUE,
        category=category, priority="normal", footer=f"{strategy} | signal only")


def _strategy_value(summary: "StrategySummary", currency: str) -> str:
    if summary.trades == 0:
        return "No trades."
    best = summary.best
    worst = summary.worst
    return "\n".join((
        f"Trades {summary.trades} (W {summary.wins} / L {summary.losses} / BE {summary.breakeven})"
        f" | Win rate {fmt_percent(summary.win_rate)}",
        f"P&L {fmt_money(summary.pnl, currency)} | Avg R {fmt_r(summary.avg_r)}",
        f"Best {fmt_money(best.pnl if best else None, currency)} {text(best.symbol if best else None)}"
        f" | Worst {fmt_money(worst.pnl if worst else None, currency)} {text(worst.symbol if worst else None)}",
    ))


def daily_summary(at: datetime, summary: "DailySummary") -> NotifyEvent:
    total = summary.total
    colour = BLUE if total.trades == 0 or total.pnl == 0 else GREEN if total.pnl > 0 else RED
    fields = [EmbedField(s.strategy or NOT_AVAILABLE, _strategy_value(s, summary.currency), False)
              for s in summary.strategies]
    fields.append(EmbedField("Total", _strategy_value(total, summary.currency), False))
    period = f"{_utc(summary.start):%Y-%m-%d %H:%M} to {_utc(summary.end):%Y-%m-%d %H:%M} UTC"
    return NotifyEvent(
        kind="daily_summary", at=at, title=f"Daily summary {summary.day.isoformat()}",
        description=period, fields=tuple(fields), colour=colour, category="default", priority="high")


def webhook_test(at: datetime, *, category: str, version: str | None = None) -> NotifyEvent:
    """The ``notify-test`` message (kind ``test_message``; not named test_* so pytest ignores it)."""
    fields = [_field("Category", category)]
    if version:
        fields.append(_field("Version", version))
    return NotifyEvent(
        kind="test_message", at=at, title="Test message",
        description=f"Notifications for category '{category}' reach this channel.",
        fields=tuple(fields), colour=BLUE, category=category, priority="normal")


def dropped_notice(at: datetime, *, count: int, queue_size: int) -> NotifyEvent:
    return NotifyEvent(
        kind="dropped_notice", at=at, title=f"{count} notification(s) dropped",
        description=(f"The notification queue (size {queue_size}) was full, so the least important "
                     "messages were dropped. See the bot's log for details."),
        fields=(_field("Dropped", count),), colour=AMBER, category="alerts", priority="critical")


# --------------------------------------------------------------------------------- payloads

def truncate(value: str, limit: int) -> str:
    """``value`` cut to at most ``limit`` characters, ending with an ellipsis when cut."""
    if len(value) <= limit:
        return value
    if limit <= 1:
        return ELLIPSIS[:max(limit, 0)]
    return value[:limit - 1] + ELLIPSIS


def _mentions(mention: str) -> dict[str, Any]:
    """allowed_mentions: nothing but the configured mention may ping anyone (error texts or
    symbol names containing "@everyone" must not)."""
    if mention in ("@here", "@everyone"):
        return {"parse": ["everyone"]}
    digits = "".join(ch for ch in mention if ch.isdigit())
    if mention.startswith("<@&"):
        return {"parse": [], "roles": [digits]}
    if mention.startswith("<@"):
        return {"parse": [], "users": [digits]}
    return {"parse": []}


def render(event: NotifyEvent, repeat: Repeat | None = None, username: str | None = None,
           mention: str = "") -> dict[str, Any]:
    """The raw Discord JSON body of an event (not yet limited; see ``build_payload``)."""
    title = event.title
    fields = [{"name": f.name, "value": f.value, "inline": f.inline} for f in event.fields]
    if repeat is not None and repeat.count > 1:
        title = f"{title} (x{repeat.count})"
        fields.insert(0, {"name": "Repeated",
                          "value": f"{repeat.count} times within {fmt_duration(repeat.seconds)} "
                                   "(details of the latest)", "inline": False})
    embed: dict[str, Any] = {
        "title": title,
        "color": int(event.colour) & 0xFFFFFF,
        "timestamp": _utc(event.at).isoformat(),
        "footer": {"text": event.footer or f"{event.kind} | {event.category}"},
    }
    if event.description:
        embed["description"] = event.description
    if fields:
        embed["fields"] = fields
    payload: dict[str, Any] = {"embeds": [embed]}
    if username:
        payload["username"] = username
    if mention and event.priority == "critical":
        payload["content"] = mention
        payload["allowed_mentions"] = _mentions(mention)
    else:
        payload["allowed_mentions"] = {"parse": []}
    return payload


def build_payload(event: NotifyEvent, repeat: Repeat | None = None, username: str | None = None,
                  mention: str = "") -> dict[str, Any]:
    """The Discord body of an event, guaranteed within Discord's limits."""
    return enforce_limits(render(event, repeat, username, mention))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _limit_embed(embed: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(embed)
    for key, limit in (("title", TITLE_MAX), ("description", DESCRIPTION_MAX)):
        if key in out:
            value = truncate(_as_text(out[key]), limit)
            if value.strip():
                out[key] = value
            else:
                del out[key]  # Discord refuses blank texts; an absent key is fine
    for key, limit in (("footer", FOOTER_MAX), ("author", AUTHOR_MAX)):
        part = out.get(key)
        if isinstance(part, Mapping):
            sub_key = "text" if key == "footer" else "name"
            value = truncate(_as_text(part.get(sub_key)), limit)
            if value.strip():
                out[key] = {**part, sub_key: value}
            else:
                del out[key]
    raw_fields = list(out.get("fields") or [])
    if len(raw_fields) > FIELDS_MAX:
        hidden = len(raw_fields) - (FIELDS_MAX - 1)
        raw_fields = raw_fields[:FIELDS_MAX - 1] + [
            {"name": ELLIPSIS, "value": f"{hidden} more fields not shown", "inline": False}]
    fields = []
    for field in raw_fields:
        field = field if isinstance(field, Mapping) else {"name": "value", "value": _as_text(field)}
        name = truncate(_as_text(field.get("name")).strip(), FIELD_NAME_MAX) or "-"
        value = truncate(_as_text(field.get("value")).strip(), FIELD_VALUE_MAX) or NOT_AVAILABLE
        fields.append({"name": name, "value": value, "inline": bool(field.get("inline", False))})
    if fields:
        out["fields"] = fields
    else:
        out.pop("fields", None)
    return out


def _text_slots(embeds: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """Every (container, key) whose text counts towards the 6000-character embed total."""
    slots: list[tuple[dict[str, Any], str]] = []
    for embed in embeds:
        for key in ("title", "description"):
            if key in embed:
                slots.append((embed, key))
        if "footer" in embed:
            slots.append((embed["footer"], "text"))
        if "author" in embed:
            slots.append((embed["author"], "name"))
        for field in embed.get("fields", []):
            slots.append((field, "name"))
            slots.append((field, "value"))
    return slots


def embed_text_length(embeds: Sequence[Mapping[str, Any]]) -> int:
    total = 0
    for embed in embeds:
        total += len(_as_text(embed.get("title", ""))) + len(_as_text(embed.get("description", "")))
        total += len(_as_text((embed.get("footer") or {}).get("text", "")))
        total += len(_as_text((embed.get("author") or {}).get("name", "")))
        for field in embed.get("fields") or []:
            total += len(_as_text(field.get("name", ""))) + len(_as_text(field.get("value", "")))
    return total


def _shrink_to_total(embeds: list[dict[str, Any]]) -> None:
    """Cut the longest texts first until the embeds fit the 6000-character total."""
    for _ in range(10_000):  # each pass fixes the excess or shortens the longest text
        excess = embed_text_length(embeds) - EMBED_TOTAL_MAX
        if excess <= 0:
            return
        container, key = max(_text_slots(embeds), key=lambda slot: len(slot[0][slot[1]]))
        current = container[key]
        container[key] = truncate(current, max(1, len(current) - excess))


def enforce_limits(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``payload`` that satisfies Discord's limits; texts are cut with an ellipsis."""
    out = dict(payload)
    if "content" in out:
        content = truncate(_as_text(out["content"]), CONTENT_MAX)
        if content.strip():
            out["content"] = content
        else:
            del out["content"]
    if "username" in out:
        username = truncate(_as_text(out["username"]).strip(), USERNAME_MAX)
        if username:
            out["username"] = username
        else:
            del out["username"]
    embeds = [_limit_embed(e) for e in list(out.get("embeds") or [])[:EMBEDS_MAX] if isinstance(e, Mapping)]
    _shrink_to_total(embeds)
    if embeds:
        out["embeds"] = embeds
    else:
        out.pop("embeds", None)
    if "content" not in out and "embeds" not in out:
        out["content"] = "(empty notification)"
    return out


def validate_payload(payload: Mapping[str, Any]) -> list[str]:
    """Every way ``payload`` breaks Discord's webhook limits (empty list: valid)."""
    problems: list[str] = []

    def check(label: str, value: Any, limit: int, required: bool = False) -> None:
        if not isinstance(value, str):
            problems.append(f"{label} is not text")
            return
        if required and not value.strip():
            problems.append(f"{label} is empty")
        if len(value) > limit:
            problems.append(f"{label} has {len(value)} characters (max {limit})")

    content = payload.get("content")
    embeds = payload.get("embeds") or []
    if content is None and not embeds:
        problems.append("payload needs content or embeds")
    if content is not None:
        check("content", content, CONTENT_MAX, required=True)
    if "username" in payload:
        check("username", payload["username"], USERNAME_MAX, required=True)
    if len(embeds) > EMBEDS_MAX:
        problems.append(f"{len(embeds)} embeds (max {EMBEDS_MAX})")
    for i, embed in enumerate(embeds):
        where = f"embeds[{i}]"
        if "title" in embed:
            check(f"{where}.title", embed["title"], TITLE_MAX, required=True)
        if "description" in embed:
            check(f"{where}.description", embed["description"], DESCRIPTION_MAX, required=True)
        if "footer" in embed:
            check(f"{where}.footer.text", (embed["footer"] or {}).get("text"), FOOTER_MAX, required=True)
        if "author" in embed:
            check(f"{where}.author.name", (embed["author"] or {}).get("name"), AUTHOR_MAX, required=True)
        if "color" in embed and not (isinstance(embed["color"], int) and 0 <= embed["color"] <= 0xFFFFFF):
            problems.append(f"{where}.color is not an RGB integer")
        if "timestamp" in embed:
            try:
                datetime.fromisoformat(embed["timestamp"])
            except (TypeError, ValueError):
                problems.append(f"{where}.timestamp is not ISO 8601")
        fields = embed.get("fields") or []
        if len(fields) > FIELDS_MAX:
            problems.append(f"{where} has {len(fields)} fields (max {FIELDS_MAX})")
        for j, field in enumerate(fields):
            check(f"{where}.fields[{j}].name", field.get("name"), FIELD_NAME_MAX, required=True)
            check(f"{where}.fields[{j}].value", field.get("value"), FIELD_VALUE_MAX, required=True)
    if embeds:
        total = embed_text_length(embeds)
        if total > EMBED_TOTAL_MAX:
            problems.append(f"embeds hold {total} characters in total (max {EMBED_TOTAL_MAX})")
    return problems
