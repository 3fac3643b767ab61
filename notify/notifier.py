"""The notifier: a bounded queue in front of one sender thread that talks to Discord.

Why it is shaped like this (anchors-and-apis.md section 8, DESIGN.md "notifier"):

- ``notify()`` runs on trading threads. It only appends to an in-memory queue under a short
  lock: it never blocks on the network, never waits for room, never raises.
- When the queue is full the least important message goes first (low < normal < high <
  critical; the oldest of that priority); if the new message is the least important, it is the
  one dropped. The number dropped is sent later as its own message once the queue has room.
- Repeats of one event kind and key within ``burst_window_seconds`` collapse: while the first
  message still waits in the queue the repeats merge into it (one message "x20"); once it has
  gone, the repeats are counted and one follow-up message with the count closes the window.
- One queue per webhook URL, served oldest-first across webhooks: order is kept per webhook
  and a webhook that is rate limited or failing does not hold up the others.
- Discord's answers are honoured: 429 ``retry_after`` (body and headers, the larger),
  ``global`` 429 pauses every webhook, ``X-RateLimit-Remaining: 0`` waits for the reset,
  5xx and network errors retry with exponential backoff a bounded number of times, other 4xx
  are logged and not retried, and a webhook answering 401/403/404 is disabled (repeated
  invalid requests get the IP banned by Discord). No request leaves before its gate time.
- Failures are logged to the ``notify`` logger and never sent to Discord (a Discord log handler
  that reports its own 429s loops forever); ``is_notifier_record`` lets such a handler skip
  them, and ``notify()`` called from the sender thread itself is refused. Webhook URLs are
  never logged: a webhook is named by its category.

Time: gates and burst windows use the injected clock's ``monotonic()`` and waits go through
``clock.wait`` so tests run on a FakeClock without sleeping. Discord's limits are in real
seconds, so the bot must give the notifier a real-time clock (SystemClock), not the sim's
ScaledClock. ``stop(timeout)`` is bounded in real time.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import requests

from config.notify_model import NotifyConfig
from config.secrets import Secrets
from monitors.clock import Clock
from notify import events
from notify.discord_http import Answer, install_log_redaction, post
from notify.events import CATEGORIES, PRIORITY_RANK, NotifyEvent, Repeat

log = logging.getLogger(__name__)

LOGGER_PREFIX = "notify"
THREAD_NAME = "notifier"
IDLE_WAIT_S = 1.0          # real seconds the idle sender sleeps before re-checking timers
USER_AGENT = "scalping-bot-notifier (requests)"

_QUEUED, _TAKEN, _DROPPED = 0, 1, 2


def is_notifier_record(record: logging.LogRecord) -> bool:
    """True for log records of the notifier itself: a Discord log handler must skip these."""
    return record.name == LOGGER_PREFIX or record.name.startswith(LOGGER_PREFIX + ".")


@dataclass(eq=False, slots=True)
class _Entry:
    """One queued message (it may stand for several collapsed events)."""

    seq: int
    event: NotifyEvent
    url: str
    rank: int
    first_mono: float
    last_mono: float
    count: int = 1
    state: int = _QUEUED
    attempts: int = 0          # failed tries (5xx, timeouts, connection errors)
    rate_limits: int = 0       # 429 answers
    dropped_count: int = 0     # for a dropped-messages notice: how many it reports


@dataclass(slots=True)
class _Window:
    """A burst window of one (kind, key)."""

    opened: float
    leading: _Entry | None
    suppressed: int = 0
    first_suppressed: float = 0.0
    last_suppressed: float = 0.0
    latest: NotifyEvent | None = None


@dataclass
class _Counters:
    enqueued: int = 0
    sent: int = 0
    dropped: int = 0
    failed: int = 0
    retried: int = 0
    rate_limited: int = 0
    collapsed: int = 0
    filtered: int = 0
    unrouted: int = 0
    rejected_calls: int = 0
    last_error: str = ""
    last_sent_at: datetime | None = None
    dead: set[str] = field(default_factory=set)


class Notifier:
    """Bounded, prioritised, rate-limit-aware Discord sender (see the module docstring)."""

    def __init__(self, secrets: Secrets, config: NotifyConfig, clock: Clock,
                 session: requests.Session | None = None, enabled: bool = True,
                 on_failed: Callable[[NotifyEvent, str], None] | None = None) -> None:
        self._clock = clock
        self._capacity = config.queue_size
        self._routes: dict[str, str | None] = {c: secrets.webhook_for(c) for c in CATEGORIES}
        self._url_category = self._categories_by_url(secrets)
        install_log_redaction()
        self._own_session = session is None
        self._session = session or requests.Session()
        if self._own_session:
            self._session.headers["User-Agent"] = USER_AGENT
        self._switch_on = enabled  # --no-notify: off for the whole run
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._by_url: dict[str, deque[_Entry]] = {}
        self._by_rank: list[deque[_Entry]] = [deque() for _ in PRIORITY_RANK]
        self._windows: dict[tuple[str, str], _Window] = {}
        self._live = 0
        self._seq = 0
        self._unreported_drops = 0
        self._url_gate: dict[str, float] = {}
        self._global_gate = 0.0
        self._counters = _Counters()
        self._thread: threading.Thread | None = None
        self._sender_ident: int | None = None
        self._draining = False
        self._drain_deadline = 0.0
        self._stopped = False
        self._config = config
        self._muted: frozenset[str] = frozenset()
        self._min_rank = 0
        self._accepting = False
        self.apply_config(config)

    # ------------------------------------------------------------------------ lifecycle

    @property
    def enabled(self) -> bool:
        """Whether ``notify`` accepts messages (switch, config and at least one webhook)."""
        return self._accepting

    @staticmethod
    def _categories_by_url(secrets: Secrets) -> dict[str, str]:
        """How logs name each webhook: the category (or categories) whose own URL it is."""
        names: dict[str, str] = {}
        own = [("default", secrets.discord_default), *secrets.discord_by_category.items()]
        for category, url in own:
            if url:
                names[url] = f"{names[url]}+{category}" if url in names else category
        return names

    def apply_config(self, config: NotifyConfig) -> None:
        """Swap in a reloaded config (``queue_size`` keeps its start-up value)."""
        if config.queue_size != self._capacity:
            log.warning("notifications.queue_size changes need a restart (keeping %d)", self._capacity)
        self._muted = frozenset(config.muted_events)
        self._min_rank = PRIORITY_RANK[config.min_priority]
        self._config = config
        self._accepting = (self._switch_on and config.enabled and bool(self._url_category)
                           and not self._stopped)

    def start(self) -> None:
        """Start the sender thread. Without webhooks or with --no-notify there is none; with
        ``notifications.enabled`` false it idles, so a reload can switch notifications on."""
        if (self._thread is not None and self._thread.is_alive()) or self._stopped:
            return
        if not self._accepting:
            log.info("Discord notifications are off (%s)", self._off_reason())
        if not (self._switch_on and self._url_category):
            return
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    name = THREAD_NAME

    def is_alive(self) -> bool:
        """For the supervisor: True while the sender runs, or when no sender is needed (no
        webhook, --no-notify) or it was stopped on purpose; False only when it died."""
        if self._stopped or not (self._switch_on and self._url_category):
            return True
        return self._thread is not None and self._thread.is_alive()

    def _off_reason(self) -> str:
        if not self._switch_on:
            return "--no-notify"
        if not self._config.enabled:
            return "notifications.enabled is false"
        return "no DISCORD_WEBHOOK_URL configured"

    def wake(self) -> None:
        """Make the sender re-check its timers now (after a FakeClock jump, for instance)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop accepting, send what can be sent within ``timeout`` real seconds, then stop.

        Never hangs: a request still in flight is abandoned to the daemon thread. Returns True
        when everything queued was delivered or accounted for by the sender."""
        with self._lock:
            self._accepting = False
            self._stopped = True
            self._draining = True
            self._drain_deadline = time.monotonic() + max(0.0, timeout)
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, self._drain_deadline - time.monotonic()))
        self._halt.set()
        self._wake.set()
        with self._lock:
            leftover = 0
            for queue in self._by_url.values():
                for entry in queue:
                    if entry.state == _QUEUED:
                        entry.state = _DROPPED
                        leftover += entry.count
                queue.clear()
            for queue in self._by_rank:
                queue.clear()
            self._live = 0
            self._counters.dropped += leftover
        if leftover:
            log.warning("notifier stopped with %d notification(s) unsent", leftover)
        alive = thread is not None and thread.is_alive()
        if self._own_session and not alive:
            self._session.close()
        return leftover == 0 and not alive

    # -------------------------------------------------------------------------- enqueue

    def notify(self, event: NotifyEvent) -> bool:
        """Queue ``event`` for Discord. Never blocks, never raises.

        True: the event will be sent (alone or collapsed into a repeat count). False: it was
        dropped, filtered, has no webhook, or notifications are off."""
        try:
            if not self._accepting:
                return False
            if threading.get_ident() == self._sender_ident:
                return False  # the sender reporting on itself would loop
            rank = PRIORITY_RANK[event.priority]
            if rank < self._min_rank or event.kind in self._muted:
                with self._lock:
                    self._counters.filtered += 1
                return False
            url = self._routes.get(event.category) or self._routes["default"]
            if not url:
                with self._lock:
                    self._counters.unrouted += 1
                return False
            now = self._clock.monotonic()
            window_s = self._config.burst_window_seconds
            with self._lock:
                if not self._accepting:
                    return False
                if event.burst_key is not None and window_s > 0:
                    if self._collapse(event, now, window_s):
                        return True
                    entry = self._enqueue(event, url, rank, now)
                    if entry is not None:
                        self._windows[(event.kind, event.burst_key)] = _Window(now, entry)
                else:
                    entry = self._enqueue(event, url, rank, now)
            if entry is None:
                return False
            self._wake.set()
            return True
        except Exception:  # noqa: BLE001 - a notification must never break a trading thread
            try:
                with self._lock:
                    self._counters.rejected_calls += 1
            except Exception:  # noqa: BLE001
                pass
            return False

    def _collapse(self, event: NotifyEvent, now: float, window_s: float) -> bool:
        """Merge ``event`` into its open burst window; False when no window is open."""
        key = (event.kind, event.burst_key or "")
        window = self._windows.get(key)
        if window is None:
            return False
        if now - window.opened >= window_s:
            self._close_window(key, window, now)
            window = self._windows.get(key)
            if window is None:
                return False
        leading = window.leading
        if leading is not None and leading.state == _QUEUED:
            leading.count += 1
            leading.event = event
            leading.last_mono = now
        else:
            if window.suppressed == 0:
                window.first_suppressed = now
            window.suppressed += 1
            window.last_suppressed = now
            window.latest = event
        self._counters.collapsed += 1
        return True

    def _close_window(self, key: tuple[str, str], window: _Window, now: float,
                      final: bool = False) -> None:
        """End an expired window: its uncounted repeats become one message, and a new window
        starts on that message so a steady storm yields one message per window."""
        del self._windows[key]
        if window.suppressed == 0 or window.latest is None:
            return
        latest = window.latest
        url = self._routes.get(latest.category) or self._routes["default"]
        if not url:
            return
        entry = self._enqueue(latest, url, PRIORITY_RANK[latest.priority], window.first_suppressed)
        if entry is None:
            return
        entry.count = window.suppressed
        entry.last_mono = window.last_suppressed
        if not final:
            self._windows[key] = _Window(now, entry)

    def _enqueue(self, event: NotifyEvent, url: str, rank: int, now: float) -> _Entry | None:
        """Append under the lock, making room by dropping the least important message."""
        if self._live >= self._capacity and not self._make_room(rank, event):
            return None
        self._seq += 1
        entry = _Entry(self._seq, event, url, rank, now, now)
        queue = self._by_url.get(url)
        if queue is None:
            queue = self._by_url[url] = deque()
        queue.append(entry)
        rank_queue = self._by_rank[rank]
        rank_queue.append(entry)
        self._live += 1
        self._counters.enqueued += 1
        if len(queue) > 2 * self._capacity + 16:
            self._by_url[url] = deque(e for e in queue if e.state == _QUEUED)
        if len(rank_queue) > 2 * self._capacity + 16:
            self._by_rank[rank] = deque(e for e in rank_queue if e.state == _QUEUED)
        return entry

    def _make_room(self, rank: int, event: NotifyEvent) -> bool:
        """Drop the oldest message of the lowest queued priority if it ranks at most ``rank``;
        otherwise the new event is the one dropped (returns False)."""
        for victim_rank, queue in enumerate(self._by_rank):
            while queue and queue[0].state != _QUEUED:
                queue.popleft()
            if not queue:
                continue
            if victim_rank > rank:
                break
            victim = queue.popleft()
            victim.state = _DROPPED
            self._live -= 1
            if victim.dropped_count:  # a dropped-messages notice: report its count again later
                self._unreported_drops += victim.dropped_count
            else:
                self._record_drop(victim.count, victim.event)
            return True
        self._record_drop(1, event)
        return False

    def _record_drop(self, count: int, event: NotifyEvent) -> None:
        self._counters.dropped += count
        first = self._unreported_drops == 0
        self._unreported_drops += count
        if event.priority == "critical":
            log.error("notification queue full: dropped a critical %s message", event.kind)
        elif first:
            log.warning("notification queue full (%d): dropping the least important messages",
                        self._capacity)

    # ---------------------------------------------------------------------------- sender

    def _run(self) -> None:
        self._sender_ident = threading.get_ident()
        while not self._halt.is_set():
            try:
                if not self._cycle():
                    break
            except Exception:  # noqa: BLE001 - a bug here must not silence the notifier
                log.exception("notifier: unexpected error (continuing)")
                self._halt.wait(0.5)

    def _drain_left(self) -> float:
        return self._drain_deadline - time.monotonic()

    def _cycle(self) -> bool:
        """One step of the sender: send one message, or wait. False: the sender is done."""
        self._wake.clear()
        now = self._clock.monotonic()
        with self._lock:
            draining = self._draining
            self._flush_windows(now, final=draining)
            self._queue_drop_notice()
            entry, wait_s = self._take_ready(now)
        if entry is not None:
            try:
                self._deliver(entry)
            except Exception as exc:  # noqa: BLE001 - account for the message, keep running
                log.exception("notifier: unexpected error while sending a %s message", entry.event.kind)
                self._give_up(entry, self._url_category.get(entry.url, "?"),
                              f"internal error {type(exc).__name__}", log_it=False)
            return True
        if draining:
            if wait_s is None or wait_s > self._drain_left():
                return False  # drained, or the next gate opens after the deadline
            self._clock.wait(self._wake, wait_s)
            return not self._halt.is_set()
        if wait_s is None:
            self._wake.wait(self._idle_wait())
        else:
            self._clock.wait(self._wake, wait_s)
        return True

    def _idle_wait(self) -> float:
        """Real seconds to idle: until the next burst window with repeats ends, at most 1 s."""
        with self._lock:
            window_s = self._config.burst_window_seconds
            pending = [w.opened + window_s for w in self._windows.values() if w.suppressed]
        if not pending:
            return IDLE_WAIT_S
        return min(IDLE_WAIT_S, max(0.01, min(pending) - self._clock.monotonic()))

    def _flush_windows(self, now: float, final: bool) -> None:
        window_s = self._config.burst_window_seconds
        for key, window in list(self._windows.items()):
            if final or now - window.opened >= window_s:
                self._close_window(key, window, now, final=final)

    def _queue_drop_notice(self) -> None:
        """Once the queue has room again, report how many messages were dropped."""
        if not self._unreported_drops or self._live > self._capacity // 2:
            return
        url = self._routes.get("alerts") or self._routes["default"]
        if not url:
            return
        count = self._unreported_drops
        self._unreported_drops = 0
        notice = events.dropped_notice(self._clock.now(), count=count, queue_size=self._capacity)
        entry = self._enqueue(notice, url, PRIORITY_RANK[notice.priority], self._clock.monotonic())
        if entry is not None:
            entry.dropped_count = count

    def _gate(self, url: str) -> float:
        return max(self._global_gate, self._url_gate.get(url, 0.0))

    def _take_ready(self, now: float) -> tuple[_Entry | None, float | None]:
        """The oldest message whose webhook may send now, or how long until one may."""
        best: _Entry | None = None
        soonest: float | None = None
        for queue in self._by_url.values():
            while queue and queue[0].state != _QUEUED:
                queue.popleft()
            if not queue:
                continue
            wait = self._gate(queue[0].url) - now
            if wait > 0:
                soonest = wait if soonest is None else min(soonest, wait)
            elif best is None or queue[0].seq < best.seq:
                best = queue[0]
        if best is None:
            return None, soonest
        self._by_url[best.url].popleft()
        best.state = _TAKEN
        self._live -= 1
        rank_queue = self._by_rank[best.rank]
        while rank_queue and rank_queue[0].state != _QUEUED:
            rank_queue.popleft()
        return best, None

    def _requeue(self, entry: _Entry) -> None:
        """Put a message back at the head of its webhook's queue (order kept) to retry later."""
        with self._lock:
            if self._halt.is_set():  # stop() gave up waiting: account for it, do not requeue
                self._counters.dropped += entry.count
                return
            entry.state = _QUEUED
            self._by_url.setdefault(entry.url, deque()).appendleft(entry)
            self._by_rank[entry.rank].appendleft(entry)
            self._live += 1

    def _deliver(self, entry: _Entry) -> None:
        """One attempt at sending ``entry``; on a retryable answer it goes back in the queue."""
        config = self._config
        category = self._url_category.get(entry.url, "?")
        with self._lock:
            dead = entry.url in self._counters.dead
        if dead:
            self._give_up(entry, category, "webhook disabled after an earlier 401/403/404", log_it=False)
            return
        repeat = None
        if entry.count > 1:
            repeat = Repeat(entry.count, entry.last_mono - entry.first_mono)
        payload = events.build_payload(entry.event, repeat, config.username, config.critical_mention)
        timeout = config.request_timeout_seconds
        if self._draining:
            timeout = max(0.1, min(timeout, self._drain_left()))
        answer = post(self._session, entry.url, payload, timeout, config.max_retry_after_seconds)
        now = self._clock.monotonic()
        with self._lock:
            if answer.bucket_empty_for_s:
                self._url_gate[entry.url] = max(self._url_gate.get(entry.url, 0.0),
                                                now + answer.bucket_empty_for_s)
            if answer.ok:
                self._counters.sent += 1
                self._counters.last_sent_at = self._clock.now()
                return
            self._counters.last_error = f"{category}: {answer.error}"
        if answer.rate_limited:
            self._on_rate_limited(entry, answer, category, now)
        elif answer.retryable:
            self._on_retryable(entry, answer, category, now)
        else:
            if answer.webhook_gone:
                with self._lock:
                    self._counters.dead.add(entry.url)
                log.error("Discord webhook for %s refused the message (%s); disabling that webhook "
                          "until restart: check its URL in .env", category, answer.error)
                self._give_up(entry, category, answer.error, log_it=False)
            else:
                self._give_up(entry, category, answer.error)

    def _on_rate_limited(self, entry: _Entry, answer: Answer, category: str, now: float) -> None:
        wait = answer.retry_after_s or 0.0
        with self._lock:
            self._counters.rate_limited += 1
            if answer.is_global:
                self._global_gate = max(self._global_gate, now + wait)
            else:
                self._url_gate[entry.url] = max(self._url_gate.get(entry.url, 0.0), now + wait)
        entry.rate_limits += 1
        log.warning("Discord rate limit on the %s webhook (%s): waiting %.2f s",
                    category, "global" if answer.is_global else "webhook", wait)
        if entry.rate_limits >= self._config.max_rate_limit_retries:
            self._give_up(entry, category, f"still rate limited after {entry.rate_limits} tries")
            return
        with self._lock:
            self._counters.retried += 1
        self._requeue(entry)

    def _on_retryable(self, entry: _Entry, answer: Answer, category: str, now: float) -> None:
        config = self._config
        entry.attempts += 1
        if entry.attempts >= config.max_attempts:
            self._give_up(entry, category, f"{answer.error} (after {entry.attempts} attempts)")
            return
        delay = min(config.backoff_initial_seconds * 2 ** (entry.attempts - 1), config.backoff_max_seconds)
        with self._lock:
            self._counters.retried += 1
            self._url_gate[entry.url] = max(self._url_gate.get(entry.url, 0.0), now + delay)
        log.info("Discord %s webhook: %s; retry %d in %.2f s", category, answer.error,
                 entry.attempts, delay)
        self._requeue(entry)

    def _give_up(self, entry: _Entry, category: str, reason: str, log_it: bool = True) -> None:
        with self._lock:
            self._counters.failed += 1
            self._counters.last_error = f"{category}: {reason}"
        if log_it:
            log.warning("Discord %s webhook: %s message not sent: %s", category, entry.event.kind, reason)
        if self._on_failed is not None:
            try:
                self._on_failed(entry.event, f"{category}: {reason}")
            except Exception:  # noqa: BLE001
                log.exception("notifier: the on_failed hook raised")

    # ----------------------------------------------------------------------------- stats

    def stats(self) -> dict[str, Any]:
        """Counters for health.json and ``status`` (no URLs: webhooks are named by category).

        ``sent`` and ``failed`` count messages (one may stand for several collapsed events);
        ``dropped`` counts events, as the dropped-messages notice reports them."""
        with self._lock:
            c = self._counters
            return {
                "enabled": self._accepting,
                "running": self._thread is not None and self._thread.is_alive(),
                "queue_depth": self._live,
                "queue_size": self._capacity,
                "enqueued": c.enqueued,
                "sent": c.sent,
                "dropped": c.dropped,
                "failed": c.failed,
                "retried": c.retried,
                "rate_limited": c.rate_limited,
                "collapsed": c.collapsed,
                "filtered": c.filtered,
                "unrouted": c.unrouted,
                "rejected_calls": c.rejected_calls,
                "disabled_webhooks": sorted(self._url_category.get(u, "?") for u in c.dead),
                "last_error": c.last_error,
                "last_sent_at": c.last_sent_at.isoformat() if c.last_sent_at else None,
            }
