"""The driver's own rules: no history from before the recording, the end-of-data close, cadence."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from backtest.data import plan_segments, resolve_feeds, write_specs
from backtest.driver import END_REASON, SegmentRunner
from backtest.run_config import prepare_config
from engines.types import TradeIdea
from tests.backtest.conftest import PROJECT_DIR, XAU_M1, slice_lines


def _runner(tmp_path, strategies, lines=(2, 901)):
    path = slice_lines(XAU_M1, tmp_path / "XAUUSD_M1.csv", *lines, header=True)
    feeds, _ = resolve_feeds([str(path)])
    segment = plan_segments(feeds)[0]
    snapshot, _ = prepare_config(PROJECT_DIR / "config", tmp_path / "config", ["XAUUSD"], strategies or ["micro_scalp"])
    specs = write_specs(feeds, tmp_path / "sim_symbols.json")
    return SegmentRunner(segment, snapshot, tmp_path / "config", tmp_path, specs, strategies, 10000.0), feeds[0]


def test_monitors_never_see_bars_from_before_the_recording(tmp_path):
    runner, feed = _runner(tmp_path, [])
    runner.clock.set(feed.first + timedelta(minutes=30))
    raw = runner.broker.bars("XAUUSD", "M1", 500).to_frame()
    assert raw.index[0] < pd.Timestamp(feed.first)  # the endless replay wraps the recording's end in
    seen = runner.market.bars("XAUUSD", "M1", 500).to_frame()
    assert seen.index[0] == pd.Timestamp(feed.first) and len(seen) == 30
    assert seen.equals(raw[raw.index >= pd.Timestamp(feed.first)])
    raw_ticks = runner.broker.ticks("XAUUSD", feed.first - timedelta(hours=1), runner.clock.now()).to_frame()
    ticks = runner.market.ticks("XAUUSD", feed.first - timedelta(hours=1), runner.clock.now()).to_frame()
    assert ticks.index[0] >= pd.Timestamp(feed.first)
    assert ticks.equals(raw_ticks[raw_ticks.index >= pd.Timestamp(feed.first)])
    assert runner.market.quote("XAUUSD").bid > 0  # everything else is the adapter's


def test_a_position_open_at_the_end_is_closed_in_the_last_bar(tmp_path):
    runner, feed = _runner(tmp_path, [])
    runner.clock.set(feed.first + timedelta(minutes=5))
    quote = runner.broker.quote("XAUUSD")
    idea = TradeIdea(symbol="XAUUSD", side="buy", entry=quote.ask, sl=round(quote.bid - 30, 2),
                     tp=round(quote.ask + 30, 2), strategy="micro_scalp", reasons=("test position",), meta={})
    outcome = runner.executor.open(idea)
    assert outcome.opened
    result = runner.run()
    assert len(result.trades) == 1
    trade = result.trades[0]
    assert trade.close_reason == END_REASON
    assert datetime.fromisoformat(trade.closed_at) == datetime.fromtimestamp(runner.segment.liquidate_s, timezone.utc)
    assert result.final_balance == pytest.approx(10000.0 + trade.pnl, abs=0.005)
    assert result.equity[-1] == pytest.approx(result.final_balance)
    commission = runner.terminal.symbol_info("XAUUSD")  # spec: 3.5 per lot per side
    assert result.fees[trade.ticket] == pytest.approx(round(2 * 3.5 * result.volumes[trade.ticket], 2), abs=0.011)
    assert commission is not None and result.open_at_end == []


def test_cadence_micro_and_flow_every_bar_range_every_five_minutes(tmp_path):
    runner, feed = _runner(tmp_path, ["micro_scalp", "range_scalp", "order_flow"], lines=(2, 121))
    seen: dict[str, list[datetime]] = {"micro_scalp": [], "order_flow": [], "range_scalp": []}
    for name, monitor in runner.monitors.items():
        monitor.step = (lambda n: (lambda now: seen[n].append(now)))(name)
    result = runner.run()
    steps = [datetime.fromtimestamp(t, timezone.utc) for t in runner.segment.steps.tolist()]
    assert seen["micro_scalp"] == steps == seen["order_flow"]
    assert all(b - a == timedelta(minutes=1) for a, b in zip(steps, steps[1:]))
    # the first step of every 5-minute bucket: the start, then each M5 close
    assert seen["range_scalp"] == steps[:1] + [t for t in steps[1:] if t.minute % 5 == 0]
    assert result.timings["range_scalp"].steps == len(seen["range_scalp"])


def _runner_holding_a_position(tmp_path):
    """A micro-scalp run with a position opened five minutes in, closed by its stop or target."""
    runner, feed = _runner(tmp_path, ["micro_scalp"])
    runner.clock.set(feed.first + timedelta(minutes=5))
    quote = runner.broker.quote("XAUUSD")
    idea = TradeIdea(symbol="XAUUSD", side="buy", entry=quote.ask, sl=round(quote.bid - 1, 2),
                     tp=round(quote.ask + 1, 2), strategy="micro_scalp", reasons=("test position",), meta={})
    assert runner.executor.open(idea).opened
    return runner


def test_the_equity_curve_is_the_terminals_at_every_step(tmp_path):
    """Flat bars reuse the last figures without asking the terminal: they must still be its figures."""
    runner = _runner_holding_a_position(tmp_path)
    seen = []
    sample = runner._sample

    def checked(times, equity, balance):
        sample(times, equity, balance)
        account = runner.terminal.account_info()
        seen.append((equity[-1], balance[-1], float(account.equity), float(account.balance),
                     runner.terminal.positions_total()))

    runner._sample = checked
    result = runner.run()
    assert [(e, b) for e, b, *_ in seen] == [(e, b) for _, _, e, b, _ in seen]
    assert any(n for *_, n in seen) and not seen[-1][-1]  # held positions, and flat bars after
    assert len(result.trades) >= 1 and len(seen) == len(result.equity)


def test_the_guard_reads_the_brokers_account_at_every_step(tmp_path):
    """While flat the guard gets the account read while flat again: it must be the broker's answer."""
    runner = _runner_holding_a_position(tmp_path)
    seen = []
    given = runner.guard._account
    asked = []
    inner = runner._broker_account

    def counted():
        asked.append(1)
        return inner()

    def checked():
        account = given()
        seen.append((account, runner.broker.account(), runner.terminal.positions_total()))
        return account

    runner._broker_account = counted
    runner.guard._account = checked
    runner.run()
    assert [a for a, *_ in seen] == [b for _, b, _ in seen]
    assert any(n for *_, n in seen) and not seen[-1][-1]  # held a position, then flat steps
    assert len(asked) < len(seen)  # the flat steps were answered without asking
