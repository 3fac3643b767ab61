"""Parsing aggTrade frames: what Binance sends is accepted, anything else is malformed."""
from __future__ import annotations

import json

import pytest

from feeds.binance_frames import (AggTrade, MalformedFrame, ServerEvent, agg_trade_frame,
                                  parse_rest_agg_trades, parse_stream_message)

PAYLOAD = {"e": "aggTrade", "E": 1723161255343, "s": "BTCUSDT", "a": 3735683259, "p": "61837.63000000",
           "q": "0.02000000", "f": 100, "l": 105, "T": 1723161255342, "m": True, "M": True}


def test_combined_and_raw_frames():
    expected = AggTrade("BTCUSDT", 3735683259, 61837.63, 0.02, 1723161255342, True, 1723161255343)
    assert parse_stream_message(json.dumps({"stream": "btcusdt@aggTrade", "data": PAYLOAD})) == expected
    assert parse_stream_message(json.dumps(PAYLOAD).encode()) == expected
    assert parse_stream_message(agg_trade_frame("BTCUSDT", 3735683259, "61837.63000000", "0.02000000",
                                                1723161255342, True, 1723161255343)) == expected


def test_control_messages():
    assert parse_stream_message('{"e":"serverShutdown","E":1}') == ServerEvent("serverShutdown", 1)
    wrapped = '{"stream":"btcusdt@aggTrade","data":{"e":"serverShutdown","E":5}}'
    assert parse_stream_message(wrapped) == ServerEvent("serverShutdown", 5)
    assert parse_stream_message('{"result":null,"id":1}') is None


@pytest.mark.parametrize("change, message", [
    ({"a": "1"}, "id"), ({"a": -1}, "id"), ({"a": True}, "id"), ({"T": 0}, "time"),
    ({"m": "true"}, "'m'"), ({"m": 1}, "'m'"), ({"p": 61837.63}, "decimal strings"),
    ({"p": "abc"}, "not a number"), ({"p": "-1"}, "positive"), ({"q": "0"}, "positive"),
    ({"q": "nan"}, "positive"), ({"p": "inf"}, "positive"), ({"s": None}, "symbol"),
])
def test_bad_fields_are_malformed(change, message):
    with pytest.raises(MalformedFrame, match=message):
        parse_stream_message(json.dumps({**PAYLOAD, **change}))


@pytest.mark.parametrize("text", ["", "not json", "[1,2]", '{"stream":"x","data":[1]}', '{"e":"trade"}',
                                  json.dumps({k: v for k, v in PAYLOAD.items() if k != "q"})])
def test_broken_messages_are_malformed(text):
    with pytest.raises(MalformedFrame):
        parse_stream_message(text)


def test_rest_items():
    items = [{"a": 26129, "p": "0.01633102", "q": "4.70443515", "f": 27781, "l": 27781, "T": 1498793709153,
              "m": True, "M": True}]
    assert parse_rest_agg_trades("LTCBTC", items) == [
        AggTrade("LTCBTC", 26129, 0.01633102, 4.70443515, 1498793709153, True, 1498793709153)]
    with pytest.raises(MalformedFrame, match="not a list"):
        parse_rest_agg_trades("LTCBTC", {"code": -1121, "msg": "Invalid symbol."})
