"""order_flow.json: the binance and flow sections."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from config.loader import load_config
from config.order_flow_model import OrderFlowConfig


def test_shipped_file_is_valid_and_maps_btc(config_dir):
    cfg = load_config(config_dir).order_flow
    assert cfg.symbols == ["BTCUSD", "XAUUSD", "EURUSD"]
    assert cfg.binance.binance_symbol("BTCUSD") == "BTCUSDT" and cfg.binance.binance_symbol("XAUUSD") is None
    assert cfg.flow.ring_seconds == max(cfg.flow.windows_seconds) == 900


def test_market_defaults():
    spot = OrderFlowConfig().binance
    assert (spot.ws_url, spot.rest_url) == ("wss://stream.binance.com:9443", "https://api.binance.com")
    usdm = OrderFlowConfig(binance={"market": "usdm"}).binance
    assert (usdm.ws_url, usdm.rest_url) == ("wss://fstream.binance.com", "https://fapi.binance.com")
    local = OrderFlowConfig(binance={"ws_url": "ws://127.0.0.1:9000/", "rest_url": "http://127.0.0.1:9001"})
    assert local.binance.ws_url == "ws://127.0.0.1:9000"


@pytest.mark.parametrize("section, message", [
    ({"binance": {"ws_url": "http://x"}}, "ws:// or wss://"),
    ({"binance": {"rest_url": "ftp://x"}}, "http:// or https://"),
    ({"binance": {"market": "coinm"}}, "spot"),
    ({"binance": {"symbols": {"BTCUSD": "btcusdt"}}}, "upper-case"),
    ({"binance": {"symbols": {"SOLUSD": "SOLUSDT"}}}, "not listed in 'symbols'"),
    ({"binance": {"reconnect_initial_seconds": 10, "reconnect_max_seconds": 5}}, "reconnect_max_seconds"),
    ({"binance": {"planned_reconnect_hours": 24}}, "less than 24"),
    ({"binance": {"reconnect_initial_seconds": 0.01}}, "greater than or equal to 0.5"),
    ({"binance": {"unknown": 1}}, "Extra inputs"),
    ({"flow": {"windows_seconds": []}}, "at least one window"),
    ({"flow": {"windows_seconds": [30, 90000]}}, "1..86400"),
    ({"flow": {"windows_seconds": [30, 30]}}, "unique"),
    ({"flow": {"bar_seconds": [7]}}, "divide one day"),
])
def test_bad_values_are_refused(section, message):
    with pytest.raises(ValidationError, match=message):
        OrderFlowConfig(symbols=["BTCUSD"], **section)


def test_ring_is_sized_for_the_longest_window():
    cfg = OrderFlowConfig(flow={"windows_seconds": [3600, 30, 300]})
    assert cfg.flow.windows_seconds == [30, 300, 3600] and cfg.flow.ring_seconds == 3600


def test_invalid_file_names_the_key(config_dir):
    from config.loader import ConfigError
    path = config_dir / "order_flow.json"
    data = json.loads(path.read_text())
    data["binance"]["backfill_max_pages"] = -1
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="order_flow.json: binance.backfill_max_pages"):
        load_config(config_dir)


@pytest.mark.parametrize("defaults, message", [
    ({"pattern_weights": {"whales": 1.0}}, "unknown signals whales"),
    ({"pattern_weights": {"absorption": 0.0}}, "positive sum"),
    ({"pattern_threshold": 0}, "greater than 0"),
    ({"vwap_min_sigma": 2.5, "vwap_full_sigma": 2.0}, "vwap_full_sigma"),
    ({"absorption_imbalance": 1.5}, "less than or equal to 1"),
])
def test_bad_signal_parameters_are_refused(defaults, message):
    with pytest.raises(ValidationError, match=message):
        OrderFlowConfig(symbols=["BTCUSD"], defaults=defaults)


def test_per_symbol_signal_overrides_reach_the_engine_params():
    from engines.order_flow_signals import SignalParams
    cfg = OrderFlowConfig(symbols=["BTCUSD", "XAUUSD"], overrides={"XAUUSD": {"absorption_imbalance": 0.4,
                                                                             "pattern_threshold": 0.8}})
    gold = SignalParams.from_params(cfg.for_symbol("XAUUSD"))
    btc = SignalParams.from_params(cfg.for_symbol("BTCUSD"))
    assert (gold.absorption_imbalance, gold.threshold, btc.absorption_imbalance) == (0.4, 0.8, 0.3)
    assert gold.weights["absorption"] == 0.30
