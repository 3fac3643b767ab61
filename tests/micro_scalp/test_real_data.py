"""The engine walked over real M1 bars (XAUUSD 2023-04, EURUSD 2015-02) with the shipped config.

Each step evaluates a 200-bar window ending at bar ``end`` and threads the regime state through,
as the backtest does. To stay near 10 s, the walk samples every 4th bar (the regime hysteresis
then counts sampled bars); the quote is the last close with a constant, realistic spread.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from config.micro_scalp_model import MicroScalpConfig
from engines.micro_scalp import RegimeState, evaluate
from engines.micro_scalp_features import Bars
from tests.micro_scalp.real_bars import EUR_FILE, XAU_FILE, read_real_bars

REPO = Path(__file__).resolve().parents[2]
WINDOW = 200
STEP = 4
REGIMES = ("vwap_reversion", "range_scalp", "balanced_zone")
CASES = {  # symbol: (file, spread in price, broker stops level in price = 10 points)
    "XAUUSD": (XAU_FILE, 0.20, 0.10),
    "EURUSD": (EUR_FILE, 0.00010, 0.00010),
}


def walk(frame: pd.DataFrame, symbol: str, spread: float, stops_level: float):
    config = MicroScalpConfig.model_validate(json.loads((REPO / "config" / "micro_scalp.json").read_text()))
    params = config.for_symbol(symbol)
    bars = Bars.from_frame(frame)
    state = RegimeState()
    regimes: Counter[str] = Counter()
    failed: Counter[str | None] = Counter()
    ideas = []
    for end in range(WINDOW, len(bars) + 1, STEP):
        window = Bars(*(a[end - WINDOW:end] for a in (bars.time_s, bars.open, bars.high, bars.low,
                                                        bars.close, bars.volume)))
        close = float(window.close[-1])
        now = datetime.fromtimestamp(int(window.time_s[-1]) + 60, tz=timezone.utc)
        decision = evaluate(window, (close - spread / 2, close + spread / 2), None, None, params, symbol, now,
                            state, stops_level=stops_level)
        state = decision.regime_state
        regimes[decision.regime] += 1
        failed[decision.failed] += 1
        if decision.idea is not None:
            ideas.append(decision.idea)
    return regimes, failed, ideas


@pytest.fixture(scope="module", params=sorted(CASES))
def walked(request):
    symbol = request.param
    file, spread, stops_level = CASES[symbol]
    frame = read_real_bars(file)
    assert len(frame) > 14000
    return symbol, spread, stops_level, walk(frame, symbol, spread, stops_level)


def test_engine_produces_ideas_with_stops_on_the_right_side_outside_stops_level(walked):
    symbol, spread, stops_level, (_, failed, ideas) = walked
    assert len(ideas) >= 50, f"{symbol}: only {len(ideas)} ideas; failures {failed.most_common()}"
    strategies = Counter(idea.strategy for idea in ideas)
    assert len(strategies) >= 2, f"{symbol}: ideas only from {strategies}"
    for idea in ideas:
        if idea.side == "buy":
            assert idea.sl < idea.entry < idea.tp
        else:
            assert idea.tp < idea.entry < idea.sl
        assert abs(idea.entry - idea.sl) >= stops_level and abs(idea.tp - idea.entry) >= stops_level
        assert abs(idea.entry - idea.sl) > spread  # a stop inside the spread would fill at once
        assert idea.meta["score"] >= 6.0


def test_no_regime_is_stuck(walked):
    symbol, _, _, (regimes, _, _) = walked
    total = sum(regimes.values())
    for name in REGIMES:
        assert regimes[name] > 0, f"{symbol}: regime {name} never occurred: {regimes}"
    for name, count in regimes.items():
        assert count / total <= 0.95, f"{symbol}: {name} held {count / total:.1%} of bars"


def test_every_layer_gets_to_say_no(walked):
    symbol, _, _, (_, failed, _) = walked
    seen = {name.split(".")[0] for name in failed if name}
    assert {"L1", "L2", "L3", "L4"} <= seen, f"{symbol}: {failed}"
