"""Turns what happens inside the bot into Discord events.

The executor, the supervisor and the config watcher report plain ``(kind, data)`` events; this
bridge picks the notification for each, routes it by the symbol's category, and watches the
things nobody reports (the broker connection going down and coming back, the daily summary
time). It never raises into its caller: a notification problem must not stop trading.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable

from config.loader import Change, ConfigProblem, ConfigSnapshot
from notify import events
from notify.daily import DailySummarySchedule, summarize_trades, trades_in_window
from notify.notifier import Notifier

log = logging.getLogger(__name__)


class NotifyBridge:
    def __init__(self, notifier: Notifier, config: Callable[[], ConfigSnapshot], wall_now: Callable[[], datetime],
                 schedule: DailySummarySchedule | None = None,
                 closed_trades: Callable[[], list[dict[str, Any]]] | None = None,
                 currency: Callable[[], str] | None = None) -> None:
        self.notifier = notifier
        self._config = config
        self._now = wall_now
        self.schedule = schedule
        self._closed_trades = closed_trades or (lambda: [])
        self._currency = currency or (lambda: "USD")
        self._broker_down_since: datetime | None = None
        self._broker_failures = 0

    def _send(self, build: Callable[[], events.NotifyEvent]) -> None:
        try:
            self.notifier.notify(build())
        except Exception:  # the notifier never raises; building an event might on odd data
            log.warning("could not build a notification", exc_info=True)

    def _category(self, symbol: str | None) -> str:
        symbols = self._config().bot.symbols
        if symbol and symbol in symbols:
            return events.category_for(symbols[symbol].category)
        return "default"

    # ------------------------------------------------------------------ trade path events
    def on_trade_event(self, kind: str, data: dict[str, Any]) -> None:
        now = self._now()
        symbol = data.get("symbol")
        if kind == "trade_opened":
            self._send(lambda: events.trade_opened(
                now, symbol=symbol, side=data["side"], volume=data["volume"], entry=data["entry"], sl=data["sl"],
                tp=data["tp"], strategy=data["strategy"], reason="; ".join(data.get("reasons", ())),
                category=self._category(symbol), ticket=data.get("ticket")))
        elif kind == "trade_closed":
            hold = None
            if data.get("opened_at") and data.get("closed_at"):
                hold = (datetime.fromisoformat(data["closed_at"]) - datetime.fromisoformat(data["opened_at"])).total_seconds()
            self._send(lambda: events.trade_closed(
                now, symbol=symbol, side=data["side"], volume=data["volume"], entry=data["entry"],
                exit_price=data.get("exit_price") or 0.0, pnl=data.get("pnl") or 0.0, r_multiple=data.get("r"),
                strategy=data["strategy"], reason=data.get("close_reason") or "", hold_seconds=hold,
                sl=data.get("sl"), tp=data.get("tp"), category=self._category(symbol), ticket=data.get("ticket"),
                currency=self._currency()))
        elif kind == "order_rejected":
            self._send(lambda: events.order_rejected(
                now, symbol=symbol, side=data.get("side", "?"), strategy=data.get("strategy", "?"),
                reason=data.get("reason", ""), retcode=data.get("retcode")))
        elif kind == "trading_blocked":
            self._send(lambda: events.trading_state_changed(
                now, old="ACTIVE", new="ENTRIES BLOCKED", reason=data.get("instruction", "")))
        elif kind == "close_failed" and data.get("strategy") == "range_scalp" and "attempts" not in data:
            return  # the range exit manager retries and escalates once itself
        elif kind in ("order_unknown", "close_failed"):
            reason = (f"outcome of {data.get('client_id')} unknown: not resent, settled by client id"
                      if kind == "order_unknown" else f"could not close ticket {data.get('ticket')}: {data.get('error')}")
            self._send(lambda: events.order_rejected(
                now, symbol=symbol or "?", side=data.get("side", "?"), strategy=data.get("strategy", "?"),
                reason=reason))
        elif kind == "trading_state_changed":
            self._send(lambda: events.trading_state_changed(now, old=str(data.get("old")), new=str(data.get("new")),
                                                            reason=str(data.get("reason", ""))))
        elif kind == "circuit_breaker_opened":
            self._send(lambda: events.circuit_breaker_opened(
                now, name=str(data.get("name", "broker")), reason=str(data.get("reason", "")),
                failures=data.get("failures"), retry_in_seconds=data.get("retry_in_seconds")))
        elif kind == "circuit_breaker_closed":
            self._send(lambda: events.circuit_breaker_closed(now, name=str(data.get("name", "broker")),
                                                             open_seconds=data.get("open_seconds")))
        elif kind in ("exit_escalated", "reconcile_failed", "position_adopted", "external_position",
                      "sltp_repaired", "sltp_repair_failed", "sltp_difference"):
            self._send(lambda: events.order_rejected(
                now, symbol=str(symbol or "-"), side=str(data.get("side", "-")),
                strategy=str(data.get("strategy", "reconciler")), reason=self._describe(kind, data)))
        elif kind == "symbol_paused":
            self._send(lambda: events.circuit_breaker_opened(
                now, name=f"{data.get('strategy', 'micro_scalp')} {symbol}", reason=str(data.get("error", "")),
                failures=data.get("failures"), retry_in_seconds=data.get("pause_seconds")))
        elif kind == "symbol_resumed":
            self._send(lambda: events.circuit_breaker_closed(
                now, name=f"{data.get('strategy', 'micro_scalp')} {symbol}", open_seconds=data.get("paused_seconds")))
        elif kind in ("range_entries_disabled", "range_entries_enabled"):
            disabled = kind == "range_entries_disabled"
            self._send(lambda: events.trading_state_changed(
                now, old="ACTIVE" if disabled else "ENTRIES DISABLED", new="ENTRIES DISABLED" if disabled else "ACTIVE",
                reason="range_scalp: " + str(data.get("reason", "edit range_scalp.json to re-enable" if disabled
                                                       else "re-enabled by a config edit"))))
        elif kind == "range_signal":
            self._send(lambda: events.range_signal(
                now, symbol=symbol, side=data["side"], entry=data["entry"], sl=data["sl"], tp=data["tp"],
                range_high=data.get("range_high"), range_low=data.get("range_low"),
                reasons=data.get("reasons", ()), category=self._category(symbol)))

    @staticmethod
    def _describe(kind: str, data: dict[str, Any]) -> str:
        ticket = data.get("ticket")
        texts = {
            "exit_escalated": f"MANUAL CLOSE REQUIRED: ticket {ticket} could not be closed after "
                              f"{data.get('failures')} attempts ({data.get('reason')}): {data.get('error')}",
            "reconcile_failed": f"reconciliation failed {data.get('failures')} times: {data.get('error')}",
            "position_adopted": f"position {ticket} found at the broker and adopted: {data.get('reason', '')}",
            "external_position": f"external position {ticket} (magic {data.get('magic')}, "
                                 f"{data.get('volume')} lots) left alone",
            "sltp_repaired": f"SL/TP of {ticket} set back to the bot's: {data.get('detail', '')}",
            "sltp_repair_failed": f"SL/TP of {ticket} could not be repaired: {data.get('detail', '')}",
            "sltp_difference": f"SL/TP of {ticket} differs at the broker: {data.get('detail', '')}",
        }
        return texts[kind]

    # ------------------------------------------------------------------ supervisor and config
    def on_supervisor_event(self, kind: str, data: dict[str, Any]) -> None:
        now = self._now()
        if kind == "monitor_faulted":
            self._send(lambda: events.monitor_faulted(now, monitor=data["name"], error=data.get("error", ""),
                                                      restart_in_seconds=data.get("restart_in_s")))
        elif kind == "monitor_restarted":
            self._send(lambda: events.monitor_restarted(now, monitor=data["name"], attempt=data.get("restarts")))

    def on_config_change(self, old: ConfigSnapshot, new: ConfigSnapshot, changes: list[Change]) -> None:
        self.notifier.apply_config(new.bot.notifications)
        if self.schedule is not None:
            self.schedule.set_time(new.bot.notifications.daily_summary_utc)
        files = sorted({c.file for c in changes})
        self._send(lambda: events.config_reloaded(self._now(), files=files, changes=[str(c) for c in changes],
                                                  version=new.version))

    def on_config_reject(self, problems: list[ConfigProblem]) -> None:
        files = sorted({p.file for p in problems})
        self._send(lambda: events.config_rejected(self._now(), error="\n".join(str(p) for p in problems),
                                                  files=files))

    # ------------------------------------------------------------------ polled from the main loop
    def watch_broker(self, state: dict[str, Any], broker_name: str) -> None:
        """Announce a lost connection once, and its return with the downtime."""
        now = self._now()
        connected = bool(state.get("connected"))
        if not connected and self._broker_down_since is None:
            self._broker_down_since = now
            error = state.get("last_error") or {}
            detail = f"{error.get('code', '')} {error.get('message', 'connection lost')}".strip()
            self._send(lambda: events.broker_disconnected(now, broker=broker_name, detail=detail,
                                                          failures=state.get("consecutive_failures")))
        elif connected and self._broker_down_since is not None:
            down = (now - self._broker_down_since).total_seconds()
            self._broker_down_since = None
            self._send(lambda: events.broker_restored(now, broker=broker_name, downtime_seconds=down))

    def daily_summary_if_due(self) -> bool:
        config = self._config().bot.notifications
        if self.schedule is None or not config.daily_summary_enabled:
            return False
        now = self._now()
        slot = self.schedule.due(now)
        if slot is None:
            return False
        trades = trades_in_window(self._closed_trades(), slot.start, slot.end)
        summary = summarize_trades(trades, slot, ("micro_scalp", "range_scalp", "order_flow"), self._currency())
        self._send(lambda: events.daily_summary(now, summary))
        self.schedule.mark_sent(slot)
        return True

    def started(self, snapshot: ConfigSnapshot, version: str, recovered: int) -> None:
        bot = snapshot.bot
        self._send(lambda: events.bot_started(self._now(), mode=bot.mode, broker=bot.broker,
                                              symbols=list(bot.symbols), version=version,
                                              recovered_positions=recovered))

    def stopped(self, snapshot: ConfigSnapshot, version: str, reason: str, open_positions: int) -> None:
        bot = snapshot.bot
        self._send(lambda: events.bot_stopped(self._now(), mode=bot.mode, broker=bot.broker,
                                              symbols=list(bot.symbols), version=version, reason=reason,
                                              open_positions=open_positions))
