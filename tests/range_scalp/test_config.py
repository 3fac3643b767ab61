"""range_scalp.json and its model: shipped defaults, per-symbol deep merge, cross-field rules."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.range_scalp_model import RangeScalpConfig, RangeScalpParams
from tests.range_scalp.helpers import REPO


def shipped() -> dict:
    return json.loads((REPO / "config" / "range_scalp.json").read_text(encoding="utf-8"))


def test_shipped_file_loads_and_its_defaults_equal_the_model_defaults() -> None:
    config = RangeScalpConfig.model_validate(shipped())  # the loader's model for this file
    assert config.exit_interval_seconds == 300
    assert config.symbols == ["XAUUSD", "EURUSD", "BTCUSD"]
    # the file spells out every default, so an operator sees each value; they match the model
    assert config.defaults == RangeScalpParams()


def test_symbol_overrides_are_merged_deeply() -> None:
    config = RangeScalpConfig.model_validate(shipped())
    btc, eur, xau = (config.for_symbol(s) for s in ("BTCUSD", "EURUSD", "XAUUSD"))
    assert btc.invalidation.candles_outside_range == 3
    assert eur.invalidation.candles_outside_range == 2
    assert btc.data.always_open is True and eur.data.always_open is False
    assert btc.indicators.bb_width_multiplier == 0.6
    # keys the override does not name keep the defaults of their section
    assert btc.invalidation.signals_required == 2
    assert eur.strategies.liquidity_sweep.break_pct == 0.06
    assert eur.strategies.liquidity_sweep.target_rr == 2.5
    assert xau.detection.touch_tolerance_pct == 0.05 and xau.detection.min_width_pct == 0.1


def test_partial_row_override_keeps_the_rest_of_the_row() -> None:
    data = shipped()
    data["overrides"]["XAUUSD"] = {"sessions": {"adjustments": {"asian": {"max_rr": 1.5}}},
                                   "strategies": {"pdh_pdl_rejection": {"target_rr": 2.0}}}
    params = RangeScalpConfig.model_validate(data).for_symbol("XAUUSD")
    assert params.sessions.adjustments.asian.max_rr == 1.5
    assert params.sessions.adjustments.asian.rr_multiplier == 0.9
    assert params.sessions.adjustments.asian.stop_tightener == 0.85
    assert (params.strategies.pdh_pdl_rejection.min_rr, params.strategies.pdh_pdl_rejection.max_rr) == (1.5, 2.5)


@pytest.mark.parametrize("section, values, message", [
    ("strategies", {"bb_fade": {"min_rr": 1.6}}, "min_rr < target_rr < max_rr"),
    ("scoring", {"weights_normal": {"vwap_reversion": 0.5, "bb_fade": 0.2, "pdh_pdl_rejection": 0.2,
                                    "rsi_bounce": 0.2, "liquidity_sweep": 0.2}}, "sum to 1.0"),
    ("scoring", {"adx_low": 30}, "adx_low must be below adx_trending"),
    ("confluence", {"structure_weight": 50}, "must be 100"),
    ("confluence", {"price_edge_threshold_atr": 0.05}, "greater than or equal to 0.1"),
    ("detection", {"min_width_pct": 3.0}, "min_width_pct must be below max_width_pct"),
    ("detection", {"session_starts_utc": [8, 0]}, "strictly increasing"),
    ("sessions", {"session_map": [{"key": "asian", "start_hour": 0, "end_hour": 8},
                                  {"key": "london", "start_hour": 9, "end_hour": 24}]}, "hour 8 is missing"),
    ("sessions", {"blocked_windows": [{"name": "x", "start": "25:00", "end": "26:00"}]}, "HH:MM"),
    ("invalidation", {"candles_outside_range": 0}, "greater than or equal to 1"),
    ("strategies", {"rsi_bounce": {"stoch_oversold": 85}}, "stoch_oversold must be below"),
])
def test_bad_values_are_refused_with_the_key_and_the_rule(section: str, values: dict, message: str) -> None:
    data = shipped()
    data["defaults"].setdefault(section, {}).update(values)
    with pytest.raises(ValidationError) as info:
        RangeScalpConfig.model_validate(data)
    assert message in str(info.value)
    assert section in str(info.value)


def test_unknown_key_in_a_section_is_an_error() -> None:
    data = shipped()
    data["overrides"]["EURUSD"]["invalidation"]["candles_outside"] = 3
    with pytest.raises(ValidationError, match="candles_outside"):
        RangeScalpConfig.model_validate(data)


def test_override_that_breaks_a_cross_field_rule_names_the_symbol() -> None:
    data = shipped()
    data["overrides"]["BTCUSD"]["detection"]["min_width_pct"] = 4.5  # above its own max_width_pct 4.0
    with pytest.raises(ValidationError, match="BTCUSD"):
        RangeScalpConfig.model_validate(data)


def test_config_file_is_plain_json_without_comments() -> None:
    text = Path(REPO / "config" / "range_scalp.json").read_text(encoding="utf-8")
    assert "//" not in text and "#" not in text
