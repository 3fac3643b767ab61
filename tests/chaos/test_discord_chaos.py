"""The Discord notifier under a randomized fault schedule (issue 8 item 5).

A trading thread notifies numbered trade messages on three webhooks of the local Discord fake
(tests/notify/fake_discord.py, real HTTP on 127.0.0.1) whose answers are scripted from the
seed: 429s (per webhook or global, with ``retry_after``), 5xx, slow answers, answers slower
than the client's timeout, and stalls that hold a request while the trading thread goes on.

What must hold: ``notify()`` never waits for Discord (counted: every call of the trading thread
returns while a stall holds the webhook); every accepted message ends sent or counted failed,
none silently lost (sent + failed == accepted, queue empty); on each webhook the messages
first arrive in the order they were notified; no request reaches a webhook before a 429's
``retry_after`` has passed (global 429s: no webhook); a message is delivered twice only where a
timeout hid Discord's answer (at most one duplicate per timeout injected).

CI: 120 messages (a few seconds). Soak: 600.
"""
from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path

from tests.chaos.report import ChaosReport
from tests.notify.conftest import eventually, fast_config, tickets, trade
from tests.notify.fake_discord import FakeDiscord, Reply

WEBHOOKS = ("default", "crypto", "gold")
TIMEOUT_S = 0.25
SLACK_S = 0.01  # the fake stamps "answered" just before writing; the client sees it a moment later


def random_reply(rng: random.Random, hold: threading.Event) -> tuple[str, Reply]:
    roll = rng.random()
    if roll < 0.55:
        return "ok", Reply(204)
    if roll < 0.70:
        wait = round(rng.uniform(0.03, 0.15), 3)
        return "429", Reply(429, {"message": "You are being rate limited.", "retry_after": wait, "global": False},
                            {"Retry-After": str(wait)})
    if roll < 0.74:
        wait = round(rng.uniform(0.03, 0.1), 3)
        return "429 global", Reply(429, {"message": "global", "retry_after": wait, "global": True},
                                   {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"})
    if roll < 0.86:
        return "5xx", Reply(rng.choice((500, 502, 503)), {"message": "oops"})
    if roll < 0.95:
        return "slow answer", Reply(204, delay=round(rng.uniform(0.02, 0.12), 3))
    if roll < 0.98:
        return "timeout", Reply(204, delay=TIMEOUT_S + 0.15)
    return "stall", Reply(204, hold=hold)


def test_notifier_under_randomized_429s_5xx_slow_answers_and_stalls(tmp_path: Path, make_notifier,
                                                                     discord: FakeDiscord, chaos_soak: bool,
                                                                     chaos_seed: int) -> None:
    rng = random.Random(chaos_seed)
    messages = 600 if chaos_soak else 120
    injected: Counter = Counter()
    scripted: dict[str, list[tuple[str, Reply]]] = {}
    holds: list[threading.Event] = []
    for name in WEBHOOKS:
        replies = []
        for _ in range(messages):  # more replies than requests of that webhook will need
            hold = threading.Event()
            kind, reply = random_reply(rng, hold)
            if kind == "stall":
                holds.append(hold)
            replies.append((kind, reply))
        scripted[name] = replies
        discord.script(name, *(reply for _, reply in replies))
    notifier = make_notifier("crypto", "gold", config=fast_config(
        queue_size=messages * 2, request_timeout_seconds=TIMEOUT_S, max_attempts=4, max_rate_limit_retries=20,
        backoff_initial_seconds=0.02, backoff_max_seconds=0.1))
    plan = {t: rng.choice(WEBHOOKS) for t in range(messages)}
    report = ChaosReport("Discord notifier (webhook fake)" + (" (soak)" if chaos_soak else ""), chaos_seed)
    survived = False
    try:
        accepted = []
        returned = []

        def trading_loop() -> None:
            for ticket in range(messages):
                if notifier.notify(trade(ticket, plan[ticket] if plan[ticket] != "default" else "forex")):
                    accepted.append(ticket)
                returned.append(ticket)

        worker = threading.Thread(target=trading_loop, name="trading")
        worker.start()
        worker.join(timeout=10)
        # the trading thread finished every call whatever Discord was doing (stalls still held)
        assert not worker.is_alive() and returned == list(range(messages))
        assert accepted == list(range(messages)), "a message was refused with an ample queue"
        for hold in holds:  # let the stalled requests answer
            hold.set()
        done = eventually(lambda: (lambda s: s["sent"] + s["failed"] == messages and s["queue_depth"] == 0)(
            notifier.stats()), timeout=60.0)
        stats = notifier.stats()
        assert done, stats
        received = discord.received()
        used = Counter(r.path for r in received)
        for name in WEBHOOKS:  # what each webhook actually answered (its script, in order)
            for kind, _ in scripted[name][:used[FakeDiscord.path(name)]]:
                if kind != "ok":
                    injected[kind] += 1

        # the k-th request to a webhook got the k-th scripted answer of that webhook
        answer = {}
        for name in WEBHOOKS:
            for record, (kind, reply) in zip(discord.received(name), scripted[name]):
                answer[id(record)] = (kind, reply)
        limits = [(r, float(answer[id(r)][1].body["retry_after"]), bool(answer[id(r)][1].body["global"]))
                  for r in received if answer[id(r)][0].startswith("429") and r.answered is not None]
        for name in WEBHOOKS:
            got = discord.received(name)
            first_seen = list(dict.fromkeys(tickets(got)))
            expected = [t for t in range(messages) if plan[t] == name]
            assert first_seen == expected, f"{name}: a message never arrived or the order was not kept"
            # the notifier has one sender: nothing may reach this webhook before a 429 of its own,
            # or a global one of any webhook, has had its retry_after
            for limited, wait, is_global in limits:
                if limited.path == FakeDiscord.path(name) or is_global:
                    early = [r for r in got if limited.answered < r.arrived < limited.answered + wait - SLACK_S]
                    assert not early, (f"{name}: a request {early[0].arrived - limited.answered:.3f} s after a "
                                       f"{'global ' if is_global else ''}429 asking for {wait} s")
        delivered = Counter(int(r.field("Ticket")) for r in received if r.status is not None and r.status < 300)
        assert stats["sent"] <= len(delivered) <= stats["sent"] + injected["timeout"], (len(delivered), stats)
        duplicates = sum(n - 1 for n in delivered.values() if n > 1)
        assert duplicates <= injected["timeout"], f"{duplicates} duplicate deliveries, {injected['timeout']} timeouts"
        survived = True
        report.figures.update({"messages": messages, "sent": stats["sent"], "failed after retries": stats["failed"],
                               "rate limited": stats["rate_limited"], "retried": stats["retried"],
                               "duplicate deliveries (hidden by timeouts)": duplicates,
                               "requests": len(received)})
    finally:
        for hold in holds:
            hold.set()
        report.record("discord", injected, survived=survived)
        report.publish(tmp_path)

