"""The trading state: ACTIVE, REDUCING (exits only) or HALTED (no new trades; exits managed).

The state is the most severe of the active LOCKS. A lock is one protection that fired, with
its level, reason, since-when and (for timed ones) until-when. Locks, the day's starting
equity, the equity peak and the operator's last resume token are persisted in the state
document ``trading_state``, so a restart never resets a halt or the day's loss allowance.

| lock            | level    | set when                                                  | cleared when                   |
|-----------------|----------|-----------------------------------------------------------|--------------------------------|
| daily_loss      | HALTED   | equity <= day start x (1 - daily_loss_limit_percent)      | the next day (day_timezone)    |
| drawdown        | HALTED   | equity <= peak x (1 - max_drawdown_percent)               | operator resume                |
| loss_streak     | REDUCING | loss_streak_count losing trades in a row within the window | after the cool-down            |
| order_failures  | REDUCING | order_failure_burst_count failed orders within the window  | after the cool-down            |
| order_rate      | REDUCING | max_orders_per_minute reached (a runaway strategy)         | after the cool-down            |
| broker_breaker  | REDUCING | the broker circuit breaker is not CLOSED                   | the breaker closes             |
| stale_data      | REDUCING | every bar feed is stale_data_seconds behind                | any feed is fresh again        |
| not_reconciled  | REDUCING | the reconciler could not compare with the broker at start  | its first successful pass      |
| operator        | as set   | ``reliability.force_state`` is REDUCING or HALTED          | force_state back to null       |

Operator resume: a changed ``reliability.resume_token`` clears every lock whose condition is
not still measured (breaker, stale data, reconciliation and force_state stay truthful), and
rebases the day's starting equity and the peak on the current equity, so the halt does not
fire again at once: resuming is an explicit "I accept the loss so far".

Both REDUCING and HALTED refuse new entries; closes and SL/TP modifies are always allowed.
REDUCING is what clears by itself, HALTED needs the next day or the operator.

Every lock set or cleared is logged and journaled (``trading_state``); a change of the state
itself is also sent to ``events`` as ``trading_state_changed`` (old, new, reason).
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

from config.reliability_model import ReliabilityConfig
from execution.broker import AccountInfo
from execution.errors import BrokerError
from monitors.clock import Clock
from state.store import StateStore

log = logging.getLogger(__name__)

ACTIVE, REDUCING, HALTED = "ACTIVE", "REDUCING", "HALTED"
LEVELS = {ACTIVE: 0, REDUCING: 1, HALTED: 2}
DOCUMENT = "trading_state"
SCHEMA_VERSION = 1
TIMEFRAME_SECONDS = {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400, "D1": 86400}
# Locks whose condition is measured continuously: a resume does not clear them.
CONDITION_LOCKS = frozenset({"broker_breaker", "stale_data", "not_reconciled", "operator"})
PEAK_SAVE_SECONDS = 60.0


@dataclass(frozen=True)
class Lock:
    name: str
    level: str
    reason: str
    since: datetime
    until: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "reason": self.reason, "since": self.since.isoformat(),
                "until": self.until.isoformat() if self.until else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Lock":
        until = data.get("until")
        return cls(str(data["name"]), str(data["level"]), str(data.get("reason", "")),
                   datetime.fromisoformat(data["since"]), datetime.fromisoformat(until) if until else None)


def day_of(now: datetime, zone: str) -> tuple[str, datetime]:
    """The trading day containing ``now`` in ``zone``: its date (ISO) and its END as UTC."""
    return _day(now.astimezone(_zone(zone)).date(), zone)


@lru_cache(maxsize=32)
def _zone(zone: str) -> ZoneInfo:
    return ZoneInfo(zone)


@lru_cache(maxsize=32)
def _day(local_date: date, zone: str) -> tuple[str, datetime]:
    """``day_of`` from the local date: the guard asks at every step, the answer changes once a day."""
    next_midnight = datetime.combine(local_date + timedelta(days=1), datetime.min.time(), tzinfo=_zone(zone))
    return local_date.isoformat(), next_midnight.astimezone(timezone.utc)


def feed_detail(freshest: tuple[float, str] | None, limit_seconds: float) -> str:
    """The stale-data detail for ``freshest`` (as ``_freshest_bar`` gives it): only needed when the
    stale-data lock changes, so made apart."""
    if freshest is None:
        return "no feed data yet"
    lag, key = freshest
    if lag > limit_seconds:
        return f"every bar feed is stale: the freshest ({key}) is {lag:.0f} s behind (limit {limit_seconds:g} s)"
    return f"freshest feed {key} {max(0.0, lag):.0f} s behind"


STREAK_TRADES = 100  # the most trades a losing streak can need (reliability.loss_streak_count <= 100)


class TradingGuard:
    """The trading state machine. ``step(now)`` (run as a monitor) measures the conditions;
    the executor asks ``entry_block()`` before every entry and reports orders and failures."""

    name = "trading-guard"

    def __init__(self, store: StateStore, config: Callable[[], ReliabilityConfig], clock: Clock,
                 journal: Any = None, events: Callable[[str, dict[str, Any]], None] | None = None,
                 account: Callable[[], AccountInfo] | None = None,
                 closed_trades: Callable[[], Iterable[Any]] | None = None,
                 bar_times: Callable[[], dict[tuple[str, str], int | None]] | None = None,
                 breaker: Any = None) -> None:
        """``account``: equity for the daily loss and drawdown (``broker.account``);
        ``closed_trades``: the newest closed trades, oldest first (loss streak): at least
        ``STREAK_TRADES`` of them, e.g. ``registry.recent_closed(STREAK_TRADES)``;
        ``bar_times``: ``bar_feed.last_bar_times`` (stale data: the newest bar's open time per
        feed, no health document to parse at every step); ``breaker``: subscribed to."""
        self.store = store
        self._config = config
        self.clock = clock
        self._journal = journal
        self._events = events or (lambda kind, data: None)
        self._account = account
        self._closed_trades = closed_trades
        self._bar_times = bar_times
        self._bar_opens: dict[tuple[str, str], tuple[int, datetime, int, str]] = {}  # (epoch s, open, tf s, name)
        self._day_span: tuple[str, datetime, str, datetime] | None = None  # see _trading_day
        self._streak_seen: tuple[tuple[Any, ...], datetime] | None = None  # see _streak_unchanged
        self._lock = threading.RLock()
        self._pending_events: list[tuple[str, dict[str, Any]]] = []
        self._dirty = False
        self._orders: deque[datetime] = deque()
        self._failures: deque[tuple[datetime, str]] = deque()
        self._last_peak_save = -1e18
        self.last_step_at: datetime | None = None
        self._figures: tuple[float, float, str, float, float, float, float] | None = None  # see last_figures
        doc = store.load(DOCUMENT, {})
        self._locks: dict[str, Lock] = {}
        for item in doc.get("locks", []):
            try:
                lock = Lock.from_json(item)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("trading_state: a stored lock is unreadable (%s): %r", exc, item)
                continue
            self._locks[lock.name] = lock
        self._day: dict[str, Any] = dict(doc.get("day") or {})
        self._peak: float | None = doc.get("peak_equity")
        self._streak_ack: str | None = doc.get("streak_ack")
        self._resume_token: str | None = doc.get("resume_token")
        self._state_since = datetime.fromisoformat(doc["state_since"]) if doc.get("state_since") else clock.now()
        self._history: list[dict[str, Any]] = list(doc.get("history", []))[-50:]
        if self._resume_token is None:  # first run: the token in force is not a "change"
            self._resume_token = config().resume_token
        if breaker is not None and breaker.state == "CLOSED" and "broker_breaker" in self._locks:
            # A lock measured live: the breaker of this new process is closed, so it no longer holds.
            del self._locks["broker_breaker"]
            self._dirty = True
        self._state = self._compute()[0]
        if breaker is not None:
            breaker.subscribe(self.on_breaker_change)
        if self._locks:
            log.warning("trading state restored: %s (%s)", self._state, self.reason)

    # ------------------------------------------------------------------ reading
    @property
    def interval_seconds(self) -> float:
        return self._config().guard_interval_seconds

    def _compute(self) -> tuple[str, Lock | None]:
        top: Lock | None = None
        for lock in self._locks.values():
            if top is None or (LEVELS[lock.level], -lock.since.timestamp()) > (LEVELS[top.level], -top.since.timestamp()):
                top = lock
        return (top.level if top else ACTIVE), top

    @property
    def last_figures(self) -> dict[str, Any]:
        """The last step's equity figures (for health): built when asked, not at every step."""
        if self._figures is None:
            return {}
        equity, balance, day, start, day_loss_pct, peak, drawdown_pct = self._figures
        return {"equity": equity, "day": day, "day_start_equity": start, "day_loss_percent": round(day_loss_pct, 3),
                "peak_equity": peak, "drawdown_percent": round(drawdown_pct, 3),
                "unrealised": round(equity - balance, 2)}

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    @property
    def reason(self) -> str:
        with self._lock:
            top = self._compute()[1]
            return top.reason if top else ""

    def locks(self) -> list[Lock]:
        with self._lock:
            return list(self._locks.values())

    def entry_block(self, now: datetime | None = None) -> str | None:
        """Why an entry must not be sent now (None: it may). Also enforces the global order
        rate: reaching the cap sets the ``order_rate`` lock and refuses this entry."""
        now = now or self.clock.now()
        config = self._config()
        with self._lock:
            self._expire(now)
            if not self._locks and config.max_orders_per_minute is not None:
                self._trim_orders(now)
                if len(self._orders) >= config.max_orders_per_minute:
                    self._set_lock("order_rate", REDUCING,
                                   f"{len(self._orders)} orders in the last minute reached the cap of "
                                   f"{config.max_orders_per_minute} (runaway strategy?)", now,
                                   now + timedelta(minutes=config.order_rate_cooldown_minutes))
            state, top = self._compute()
        self._flush()
        if top is None:
            return None
        return f"trading state {state}: {top.reason}"

    # ------------------------------------------------------------------ what the executor reports
    def note_order(self, kind: str, now: datetime | None = None) -> None:
        """An order (entry, close or modify) is about to be sent: counts toward the rate cap."""
        now = now or self.clock.now()
        with self._lock:
            self._orders.append(now)
            self._trim_orders(now)

    def _trim_orders(self, now: datetime) -> None:
        cutoff = now - timedelta(seconds=60)
        while self._orders and self._orders[0] <= cutoff:
            self._orders.popleft()

    def note_order_failure(self, kind: str, detail: str, now: datetime | None = None) -> None:
        """A failed order (rejected, not placed, unknown, close or modify failed)."""
        now = now or self.clock.now()
        config = self._config()
        with self._lock:
            self._failures.append((now, f"{kind}: {detail}"))
            cutoff = now - timedelta(seconds=config.order_failure_window_seconds)
            while self._failures and self._failures[0][0] < cutoff:
                self._failures.popleft()
            if config.order_failure_burst_count is not None and len(self._failures) >= config.order_failure_burst_count:
                count, last = len(self._failures), self._failures[-1][1]
                self._failures.clear()  # acknowledged: the next burst is counted afresh
                self._set_lock("order_failures", REDUCING,
                               f"{count} failed orders within {config.order_failure_window_seconds:g} s; last: {last}",
                               now, now + timedelta(minutes=config.order_failure_cooldown_minutes))
        self._flush()

    def on_breaker_change(self, old: str, new: str, info: dict[str, Any]) -> None:
        now = self.clock.now()
        with self._lock:
            if new == "CLOSED":
                self._clear_lock("broker_breaker", "the broker circuit breaker closed", now)
            elif "broker_breaker" not in self._locks:
                self._set_lock("broker_breaker", REDUCING, f"broker circuit breaker {new}: {info.get('reason', '')}",
                               now)
        self._flush()

    def set_condition(self, name: str, active: bool, reason: str, level: str = REDUCING,
                      now: datetime | None = None) -> None:
        """Set or clear a lock held by an outside condition (the reconciler's ``not_reconciled``)."""
        now = now or self.clock.now()
        with self._lock:
            if active and name not in self._locks:
                self._set_lock(name, level, reason, now)
            elif not active and name in self._locks:
                self._clear_lock(name, reason, now)
        self._flush()

    # ------------------------------------------------------------------ the periodic evaluation
    def step(self, now: datetime | None = None) -> None:
        """One evaluation. Times are read from the guard's own clock (market time), whatever
        clock runs the loop, so bot.py may schedule it on wall time in a sped-up sim replay."""
        now = self.clock.now()
        config = self._config()
        account = None
        if self._account is not None:
            try:
                account = self._account()
            except BrokerError as exc:  # no equity, no verdict: never lock or unlock on missing data
                log.debug("trading guard: no account figures this step: %s", exc)
        times = None  # the newest bar per feed
        if self._bar_times is not None and config.stale_data_seconds is not None:
            try:
                times = self._bar_times()
            except Exception as exc:
                log.warning("trading guard: feed health unavailable: %s", exc)
        closed = list(self._closed_trades()) if self._closed_trades is not None else None
        with self._lock:
            self.last_step_at = now
            self._expire(now)
            self._operator(config, now, account)
            if account is not None:
                self._equity_checks(config, now, account)
            if closed is not None:
                self._loss_streak(config, now, closed)
            if config.stale_data_seconds is None:
                if "stale_data" in self._locks:
                    self._clear_lock("stale_data", "stale-data check switched off", now)
            elif times is not None:
                limit = config.stale_data_seconds
                freshest = self._freshest_bar(times, now)
                stale = freshest is not None and freshest[0] > limit
                if stale and "stale_data" not in self._locks:
                    self._set_lock("stale_data", REDUCING, feed_detail(freshest, limit), now)
                elif not stale and "stale_data" in self._locks:
                    self._clear_lock("stale_data", f"data fresh again ({feed_detail(freshest, limit)})", now)
        self._flush()

    def _freshest_bar(self, times: dict[tuple[str, str], int | None], now: datetime) -> tuple[float, str] | None:
        """(lag in seconds beyond its timeframe, "SYMBOL:TF") of the freshest feed, None without
        bars. The open datetimes are kept per feed and made again only when its newest bar
        changes."""
        opens = self._bar_opens
        lags = []
        for key, opened in times.items():
            if opened is None:
                continue
            known = opens.get(key)
            if known is None or known[0] != opened:
                known = opens[key] = (opened, datetime.fromtimestamp(opened, tz=timezone.utc),
                                      TIMEFRAME_SECONDS.get(key[1], 60), f"{key[0]}:{key[1]}")
            lags.append(((now - known[1]).total_seconds() - known[2], known[3]))
        return min(lags) if lags else None

    def _operator(self, config: ReliabilityConfig, now: datetime, account: AccountInfo | None) -> None:
        if config.resume_token != self._resume_token:
            self._resume_token = config.resume_token
            cleared = [name for name in self._locks if name not in CONDITION_LOCKS]
            for name in cleared:
                self._clear_lock(name, "operator resume (reliability.resume_token changed)", now)
            self._failures.clear()
            self._orders.clear()
            self._streak_ack = now.isoformat()
            if account is not None:
                day, _ = day_of(now, config.day_timezone)
                self._day = {"date": day, "start_equity": account.equity}
                self._peak = account.equity
            self._dirty = True
            log.warning("operator resume: cleared %s; day start and peak rebased on equity %s",
                        ", ".join(cleared) or "nothing", None if account is None else account.equity)
            self._journal_line("trading_state", action="resume", reason="reliability.resume_token changed",
                               cleared=cleared)
        forced = config.force_state
        current = self._locks.get("operator")
        if forced is None and current is not None:
            self._clear_lock("operator", "reliability.force_state set back to null", now)
        elif forced is not None and (current is None or current.level != forced):
            self._set_lock("operator", forced, f"forced by the operator (reliability.force_state = {forced})", now)

    def _equity_checks(self, config: ReliabilityConfig, now: datetime, account: AccountInfo) -> None:
        equity = account.equity
        day, day_end = self._trading_day(now, config.day_timezone)
        if self._day.get("date") != day:
            self._day = {"date": day, "start_equity": equity}
            self._dirty = True
        start = float(self._day["start_equity"])
        if self._peak is None or equity > self._peak:
            self._peak = equity
            if self.clock.monotonic() - self._last_peak_save >= PEAK_SAVE_SECONDS:
                self._dirty = True
        day_loss_pct = (start - equity) / start * 100.0 if start > 0 else 0.0
        drawdown_pct = (self._peak - equity) / self._peak * 100.0 if self._peak and self._peak > 0 else 0.0
        self._figures = (equity, account.balance, day, start, day_loss_pct, self._peak, drawdown_pct)
        limit = config.daily_loss_limit_percent
        if limit is not None and day_loss_pct >= limit and "daily_loss" not in self._locks:
            self._set_lock("daily_loss", HALTED,
                           f"daily loss {day_loss_pct:.2f}% of the day's starting equity {start:.2f} (realised + "
                           f"unrealised) reached the limit of {limit:g}%; trading resumes on {day_end.isoformat()}",
                           now, day_end)
        limit = config.max_drawdown_percent
        if limit is not None and drawdown_pct >= limit and "drawdown" not in self._locks:
            self._set_lock("drawdown", HALTED,
                           f"equity {equity:.2f} is {drawdown_pct:.2f}% below its peak {self._peak:.2f} (limit "
                           f"{limit:g}%); resume by changing reliability.resume_token", now)

    def _trading_day(self, now: datetime, zone: str) -> tuple[str, datetime]:
        """``day_of`` kept from the last call: from an instant of a local day until that day's end
        (its next local midnight, the first instant of the next date) the answer cannot change."""
        span = self._day_span
        if span is not None and span[0] == zone and span[1] <= now < span[3]:
            return span[2], span[3]
        day, day_end = day_of(now, zone)
        self._day_span = (zone, now, day, day_end)
        return day, day_end

    def _loss_streak(self, config: ReliabilityConfig, now: datetime, closed: list[Any]) -> None:
        if config.loss_streak_count is None or "loss_streak" in self._locks:
            return
        seen = (closed, self._streak_ack, config.loss_streak_count, config.loss_streak_window_minutes)
        if self._streak_unchanged(seen, now):
            return
        window_start = now - timedelta(minutes=config.loss_streak_window_minutes)
        streak: list[Any] = []
        for trade in reversed(closed):  # newest first
            closed_at = getattr(trade, "closed_at", None)
            if not closed_at:
                continue
            when = datetime.fromisoformat(closed_at)
            if when < window_start or (self._streak_ack and when <= datetime.fromisoformat(self._streak_ack)):
                break
            if trade.pnl is None or trade.pnl >= 0:
                break
            streak.append(trade)
        if len(streak) < config.loss_streak_count:
            self._streak_seen = (seen, now)
            return
        self._streak_ack = streak[0].closed_at
        symbols = ", ".join(sorted({f"{t.strategy} {t.symbol}" for t in streak}))
        self._set_lock("loss_streak", REDUCING,
                       f"{len(streak)} losing trades in a row within {config.loss_streak_window_minutes:g} min "
                       f"({symbols}); cool-down {config.loss_streak_cooldown_minutes:g} min", now,
                       now + timedelta(minutes=config.loss_streak_cooldown_minutes))

    def _streak_unchanged(self, seen: tuple[Any, ...], now: datetime) -> bool:
        """True when the last count found no streak over the same closed trades, acknowledgement
        and settings at an earlier ``now``: the window only moves forward and drops trades, so the
        streak can only be shorter now and still does not reach the count."""
        memo = self._streak_seen
        return memo is not None and now >= memo[1] and memo[0] == seen

    # ------------------------------------------------------------------ locks (caller holds _lock)
    def _expire(self, now: datetime) -> None:
        for lock in list(self._locks.values()):
            if lock.until is not None and now >= lock.until:
                self._clear_lock(lock.name, f"{lock.name} expired at {lock.until.isoformat()}", now)

    def _set_lock(self, name: str, level: str, reason: str, now: datetime, until: datetime | None = None) -> None:
        self._locks[name] = Lock(name, level, reason, now, until)
        log.warning("trading lock %s (%s) set: %s", name, level, reason)
        self._transition(name, "set", reason, now)

    def _clear_lock(self, name: str, reason: str, now: datetime) -> None:
        if self._locks.pop(name, None) is None:
            return
        log.warning("trading lock %s cleared: %s", name, reason)
        self._transition(name, "cleared", reason, now)

    def _transition(self, lock: str, action: str, reason: str, now: datetime) -> None:
        old = self._state
        new, top = self._compute()
        self._state = new
        if new != old:
            self._state_since = now
        entry = {"at": now.isoformat(), "lock": lock, "action": action, "old": old, "new": new, "reason": reason}
        self._history = (self._history + [entry])[-50:]
        self._journal_line("trading_state", lock=lock, action=action, old=old, new=new, reason=reason)
        if new != old:
            log.log(logging.INFO if new == ACTIVE else logging.ERROR, "TRADING STATE %s -> %s: %s", old, new,
                    top.reason if top else reason)
            self._pending_events.append(("trading_state_changed",
                                         {"old": old, "new": new, "reason": top.reason if top else reason,
                                          "lock": lock, "since": now.isoformat()}))
        self._dirty = True

    def _journal_line(self, event: str, **fields: Any) -> None:
        if self._journal is None:
            return
        try:
            self._journal.append(event, **fields)
        except Exception:
            log.exception("journal write failed for %s", event)

    def _flush(self) -> None:
        """Persist (if anything changed) and send events, outside the lock where possible."""
        if not self._dirty and not self._pending_events:
            return  # the usual step: nothing changed (what another thread changes, it flushes itself)
        with self._lock:
            events, self._pending_events = self._pending_events, []
            save = self._dirty
            self._dirty = False
            doc = self._document() if save else None
        if doc is not None:
            self.store.save(DOCUMENT, doc)
            self._last_peak_save = self.clock.monotonic()
        for kind, data in events:
            try:
                self._events(kind, data)
            except Exception:
                log.exception("event sink failed for %s", kind)

    def _document(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "state": self._state, "state_since": self._state_since.isoformat(),
                "locks": [lock.to_json() for lock in self._locks.values()], "day": self._day,
                "peak_equity": self._peak, "streak_ack": self._streak_ack, "resume_token": self._resume_token,
                "history": self._history}

    def health(self) -> dict[str, Any]:
        with self._lock:
            state, top = self._compute()
            return {"state": state, "reason": top.reason if top else "", "since": self._state_since.isoformat(),
                    "locks": [lock.to_json() for lock in self._locks.values()],
                    "figures": dict(self.last_figures),
                    "orders_last_minute": len(self._orders), "recent_failures": len(self._failures),
                    "last_step_at": self.last_step_at.isoformat() if self.last_step_at else None,
                    "history": self._history[-5:]}
