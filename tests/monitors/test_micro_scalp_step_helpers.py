"""The cheap per-step helpers of the micro-scalp monitor give the answers of their plain versions:
bars needed back to the VWAP anchor, entry counts for the caps, the spread refusal, the news
file read once in a replay."""
from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config.micro_scalp_model import MicroScalpParams
from engines.micro_scalp_reasons import failure_reason
from engines.spread import SpreadTracker
from monitors.micro_scalp import bars_needed
from monitors.micro_scalp_state import SymbolState
from monitors.news_file import NewsFile

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc)


def plain_bars_needed(params: MicroScalpParams, now: datetime) -> int:
    anchor = now.replace(hour=params.vwap_anchor_hour_utc, minute=0, second=0, microsecond=0)
    if anchor > now:
        anchor -= timedelta(days=1)
    minutes = int((now - anchor).total_seconds() // 60)
    return min(params.max_bars, max(params.min_bars, minutes + 1))


@pytest.mark.parametrize("anchor", [0, 7, 22, 23])
def test_bars_needed_is_the_minutes_since_the_anchor_hour(anchor: int) -> None:
    params = MicroScalpParams(vwap_anchor_hour_utc=anchor, min_bars=60, max_bars=1500)
    for step in range(0, 2 * 24 * 3600, 557):  # every hour and minute, odd seconds, with microseconds
        now = T0 + timedelta(seconds=step, microseconds=(step * 7919) % 1_000_000)
        assert bars_needed(params, now) == plain_bars_needed(params, now), now
    exact = T0.replace(hour=anchor)
    assert bars_needed(params, exact) == plain_bars_needed(params, exact) == 60


def test_entry_counts_match_a_plain_count() -> None:
    state = SymbolState(spread=SpreadTracker())
    times = [T0 + timedelta(minutes=m) for m in (5, 30, 31, 90, 200, 600, 1400)]
    for when in times:
        state.add_entry(when)
    for probe in [T0 - timedelta(days=1)] + times + [t + timedelta(seconds=1) for t in times]:
        assert state.count_entries_since(probe) == sum(1 for t in times if t >= probe)
    state.add_entry(T0)  # a clock that stepped back: still sorted, the newest stays last
    assert list(state.entries or ()) == sorted(times + [T0]) and state.last_entry() == times[-1]


def test_pruning_keeps_the_last_hour_and_today() -> None:
    state = SymbolState(spread=SpreadTracker())
    for when in [T0 - timedelta(hours=h) for h in (30, 5, 2, 0.75)] + [T0 + timedelta(minutes=10)]:
        state.add_entry(when)
    state.prune_entries(T0 - timedelta(hours=4))  # horizon: that day's midnight (before the last hour)
    assert state.entry_count() == 4
    state.prune_entries(T0 + timedelta(minutes=30))  # horizon: an hour back (before midnight)
    assert list(state.entries or ()) == [T0 + timedelta(minutes=10)]
    state.prune_entries(T0 + timedelta(minutes=50))
    assert state.entry_count() == 1


@pytest.mark.parametrize("reasons,failed", [
    (("L2.location: far",), "L2.location"),  # quiet mode: the failing reason alone (the shortcut)
    (("L1.data: ok", "L2.location: far", "L3.primary: none"), "L2.location"),  # not last: the scan
    (("L2.location: near", "L2.location: far", "L3: x"), "L2.location"),  # the scan takes the last match
    (("L1.data: ok", "L3: x"), "L2.location"), ((), "engine"), (("L2.locationx: y",), "L2.location")])
def test_failing_reason_is_the_backwards_scan(reasons: tuple[str, ...], failed: str) -> None:
    plain = next((r for r in reversed(reasons) if r.startswith(f"{failed}:")), reasons[-1] if reasons else "")
    assert failure_reason(reasons, failed) == plain  # the rule the monitor shows a no-trade decision by


@pytest.mark.parametrize("bid,ask", [(100.0, 100.01), (100.0, 100.05), (100.0, 100.0), (math.nan, 1.0),
                                     (100.0, 100.012), (100.0, 100.03)])
def test_rejection_is_the_refusal_of_is_acceptable(bid: float, ask: float) -> None:
    for samples in (0, 5, 30):
        tracker = SpreadTracker(window=50)
        for _ in range(samples):
            tracker.add_quote(100.0, 100.01)
        for ratio in (None, 2.5):
            verdict = tracker.is_acceptable(bid, ask, 0.04, ratio, 20)
            refusal = tracker.rejection(bid, ask, 0.04, ratio, 20)
            assert (refusal is None) == verdict.ok
            assert refusal == (None if verdict.ok else verdict.reason)


def test_a_news_file_not_watched_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "news.json"
    path.write_text(json.dumps({"schema_version": 1, "events": [
        {"time": "2026-01-05T12:10:00Z", "title": "US CPI", "impact": "high", "currencies": ["USD"]}]}))
    news = NewsFile(path, watch=False)
    assert news.refresh() is True and news.loads == 1
    path.unlink()
    assert news.refresh() is False and news.status == "ok"  # never looked at again
    now = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    assert news.blackout("XAUUSD", now).blocked
    clear = news.blackout("XAUUSD", now - timedelta(hours=3))
    assert not clear.blocked and clear.reason == "no blackout for XAUUSD"
    assert news.blackout("XAUUSD", now - timedelta(hours=3)) is clear  # the same immutable verdict


def test_spread_stats_follow_the_window_as_a_plain_sort_would() -> None:
    import random

    rng = random.Random(7)
    for window in (1, 2, 5, 100):
        tracker = SpreadTracker(window=window)
        for _ in range(400):
            bid = 2000.0 + rng.random()
            tracker.add_quote(bid, bid + rng.choice([0.1, 0.12, 0.16, rng.random() * 0.5, -0.1]))
            samples = list(tracker._samples)
            if not samples:
                continue
            ordered, count = sorted(samples), len(samples)
            median = ordered[count // 2] if count % 2 else (ordered[count // 2 - 1] + ordered[count // 2]) / 2.0
            stats = tracker.stats()
            assert stats is not None
            assert (stats.current, stats.median, stats.mean, stats.samples) == (samples[-1], median,
                                                                                sum(ordered) / count, count)


@pytest.mark.parametrize("sessions", [[(0, 24)], [(7, 21)], [(22, 3)], [(13, 14), (20, 2)], [(23, 1), (9, 12)]])
def test_a_symbol_plan_answers_the_session_gate_per_hour_as_in_sessions(sessions: list[tuple[int, int]]) -> None:
    from config.micro_scalp_model import MicroScalpConfig
    from monitors.micro_scalp import SymbolPlan, in_sessions

    config = MicroScalpConfig(enabled=True, symbols=["XAUUSD"],
                              defaults=MicroScalpParams(trading_sessions_utc=sessions))
    plan = SymbolPlan.build(config, "XAUUSD")
    assert plan.in_session == tuple(in_sessions(hour, sessions) for hour in range(24))
    assert plan.windows == ", ".join(f"{a:02d}-{b:02d}" for a, b in sessions)
    assert plan.switched_off is None and plan.params is config.for_symbol("XAUUSD")


def test_a_symbol_plan_carries_the_enabled_gate_refusal() -> None:
    from config.micro_scalp_model import MicroScalpConfig
    from monitors.micro_scalp import SymbolPlan

    on = MicroScalpConfig(enabled=True, symbols=["XAUUSD"])
    assert SymbolPlan.build(on, "XAUUSD").switched_off is None
    assert SymbolPlan.build(on, "EURUSD").switched_off == "EURUSD is switched off in micro_scalp.json"
    off_symbol = MicroScalpConfig(enabled=True, symbols=["XAUUSD"], overrides={"XAUUSD": MicroScalpParams(enabled=False)})
    assert SymbolPlan.build(off_symbol, "XAUUSD").switched_off == "XAUUSD is switched off in micro_scalp.json"
    off = MicroScalpConfig(enabled=False, symbols=["XAUUSD"])
    assert SymbolPlan.build(off, "XAUUSD").switched_off == "micro_scalp.json enabled is false"


def test_entry_gates_pass_only_forward_with_the_same_entries_params_and_failure_cooldown() -> None:
    params, other = MicroScalpParams(), MicroScalpParams()
    state = SymbolState(spread=SpreadTracker())
    state.add_entry(T0)
    assert not state.entry_gates_pass(params, T0)  # never passed yet
    passed_at = T0 + timedelta(minutes=5)
    state.entry_gates_passed(params, passed_at)
    assert state.entry_gates_pass(params, passed_at)
    assert state.entry_gates_pass(params, passed_at + timedelta(hours=30))
    assert not state.entry_gates_pass(params, passed_at - timedelta(microseconds=1))  # the clock went back
    assert not state.entry_gates_pass(other, passed_at)  # another config snapshot
    plus_two = timezone(timedelta(hours=2))
    assert not state.entry_gates_pass(params, passed_at.astimezone(plus_two))  # another zone: another midnight
    state.add_entry(passed_at)  # an entry: the cooldown and the caps must look again
    assert not state.entry_gates_pass(params, passed_at)
    state.entry_gates_passed(params, passed_at)
    assert state.entry_gates_pass(params, passed_at)
    state.failure_until = passed_at + timedelta(seconds=60)  # a failed order
    assert not state.entry_gates_pass(params, passed_at + timedelta(seconds=1))
    state.entry_gates_passed(params, passed_at + timedelta(seconds=61))
    assert state.entry_gates_pass(params, passed_at + timedelta(seconds=61))
    assert state.entries is not None
    state.entries.extend([passed_at + timedelta(seconds=62)])  # entries changed behind its back: counted again
    assert not state.entry_gates_pass(params, passed_at + timedelta(seconds=70))


def test_an_entry_added_and_another_pruned_forget_the_entry_gates_pass() -> None:
    """The review's case: one new entry and one old entry pruned leave the count as it was, yet
    the cooldown must refuse (the new entry is 40 s old): the memo must not say "pass"."""
    params = MicroScalpParams()
    state = SymbolState(spread=SpreadTracker())
    before_midnight = datetime(2026, 1, 5, 23, 20, 30, tzinfo=timezone.utc)
    state.add_entry(before_midnight)
    passed_at = datetime(2026, 1, 6, 0, 20, 0, tzinfo=timezone.utc)
    state.entry_gates_passed(params, passed_at)  # count 1
    state.add_entry(passed_at)  # count 2: the gates run and refuse (cooldown), the pass at count 1 stays
    state.prune_entries(passed_at + timedelta(seconds=35))  # 23:20:30 is more than an hour back: count 1
    assert state.entry_count() == 1 and state.last_entry() == passed_at
    assert not state.entry_gates_pass(params, passed_at + timedelta(seconds=40))
    state.entry_gates_passed(params, passed_at + timedelta(seconds=40))
    state.prune_entries(passed_at + timedelta(seconds=45))  # nothing to prune: the pass holds
    assert state.entry_gates_pass(params, passed_at + timedelta(seconds=45))


def test_the_last_detail_reads_a_lazy_detail_formatted_without_writing_the_state() -> None:
    """The status thread reads ``last_detail`` while the monitor writes ``detail``: reading formats
    the LazyText (kept in it) and never writes the state back."""
    from engines.micro_scalp_reasons import LazyText
    state = SymbolState(spread=SpreadTracker(window=10))
    assert state.last_detail == ""
    lazy = LazyText(lambda: "L3.primary: FAIL none")
    state.detail = lazy
    assert state.last_detail == "L3.primary: FAIL none" and state.detail is lazy
    state.detail = "spread 0.5% > cap 0.1%"
    assert state.last_detail == "spread 0.5% > cap 0.1%"
