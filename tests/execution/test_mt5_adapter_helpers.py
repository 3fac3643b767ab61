"""Pure helpers of the broker boundary: volume/price rounding, client ids, symbol suggestions."""
from __future__ import annotations

import pytest

from execution.broker import normalize_price, normalize_volume, validate_client_id
from execution.mt5 import close_symbol_matches


@pytest.mark.parametrize("volume,expected", [
    (0.037, 0.03),    # rounded DOWN to the step: never more risk than asked
    (0.3, 0.3),       # 0.3 / 0.01 = 29.999... must not become 0.29
    (0.004, 0.01),    # below the minimum: raised to it (the risk manager skips such trades first)
    (250.0, 100.0),   # clamped to the maximum
    (1.999999, 1.99),
])
def test_normalize_volume_forex_like(volume, expected):
    assert normalize_volume(volume, 0.01, 100.0, 0.01) == expected


def test_normalize_volume_coarse_step():
    assert normalize_volume(1.7, 0.5, 50.0, 0.5) == 1.5
    assert normalize_volume(7.0, 1.0, 1000.0, 1.0) == 7.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_normalize_volume_refuses_nonsense(bad):
    with pytest.raises(ValueError, match="volume"):
        normalize_volume(bad, 0.01, 100.0, 0.01)


def test_normalize_price_digits_and_tick_size():
    assert normalize_price(2034.56789, 2) == 2034.57
    assert normalize_price(1.0876549, 5) == 1.08765
    assert normalize_price(18002.13, 2, 0.25) == 18002.25  # an index quoted in quarter points


def test_client_id_rules():
    assert validate_client_id("ms-XAUUSD-260105-0001") == "ms-XAUUSD-260105-0001"
    assert validate_client_id("x" * 31) == "x" * 31
    with pytest.raises(ValueError, match="32 characters.*at most 31"):
        validate_client_id("x" * 32)
    with pytest.raises(ValueError, match="printable ASCII"):
        validate_client_id("ordre-é")
    with pytest.raises(ValueError, match="printable ASCII"):
        validate_client_id("a\nb")
    with pytest.raises(ValueError, match="non-empty"):
        validate_client_id("")


def test_close_symbol_matches_finds_suffixed_names():
    available = ["XAUUSDc", "XAUUSD.r", "XAGUSDc", "EURUSDc", "BTCUSDc", "US30"]
    matches = close_symbol_matches("XAUUSD", available)
    assert matches[:2] == ["XAUUSDc", "XAUUSD.r"]
    assert "US30" not in matches
    assert close_symbol_matches("NOPE99", available) == []
