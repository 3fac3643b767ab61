"""``BreakerBroker``: its counted wrappers are made once per method name and kept, yet always call
what a fresh lookup on the wrapped broker finds, and count every outcome."""
from __future__ import annotations

import pytest

from config.reliability_model import ReliabilityConfig
from execution.breaker import CLOSED, OPEN, BreakerBroker, CircuitBreaker
from execution.errors import BrokerError, BrokerUnavailable, OrderRejected
from monitors.clock import FakeClock


class _Inner:
    label = "inner"

    def positions(self) -> list:
        return ["a"]


def _wrapped(threshold: int = 2) -> tuple[BreakerBroker, _Inner]:
    settings = ReliabilityConfig(breaker_failure_threshold=threshold)
    inner = _Inner()
    return BreakerBroker(inner, CircuitBreaker("broker", FakeClock(), lambda: settings)), inner


def test_a_kept_wrapper_calls_the_current_method_and_counts_it() -> None:
    broker, inner = _wrapped()
    first = broker.positions
    assert first() == ["a"] and broker.positions is first  # made once, then found directly
    assert broker.label == "inner"  # not counted: handed through as it is

    def failing() -> list:
        raise BrokerUnavailable(-10004, "no IPC")

    inner.positions = failing  # replaced after the first call: the kept wrapper calls the new one
    for _ in range(2):
        with pytest.raises(BrokerUnavailable):
            broker.positions()
    assert broker.breaker.state == OPEN


def test_a_settled_breaker_stays_settled_and_a_refusal_is_a_success() -> None:
    broker, inner = _wrapped()
    broker.positions()
    assert broker.breaker.settled()

    def refused() -> list:
        raise OrderRejected(10019, "no money")

    inner.positions = refused
    with pytest.raises(BrokerError):
        broker.positions()
    assert broker.breaker.settled() and broker.breaker.state == CLOSED
