"""Risk sizing worked examples and limits that hold under concurrent attempts."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config.models import RiskConfig
from execution.broker import AccountInfo, SymbolSpec
from execution.risk import RiskManager, size_position
from state.registry import Trade, TradeRegistry
from state.store import StateStore

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def spec(name: str, digits: int, point: float, tick_size: float, tick_value: float, contract: float,
         vmin: float = 0.01, vmax: float = 100.0, step: float = 0.01) -> SymbolSpec:
    return SymbolSpec(name=name, broker_name=name, digits=digits, point=point, tick_size=tick_size,
                      tick_value=tick_value, contract_size=contract, volume_min=vmin, volume_max=vmax,
                      volume_step=step, stops_level_points=0, freeze_level_points=0, filling_modes=2,
                      order_filling=1, trade_mode=4, currency_profit="USD")


# Typical USD-account contract specs.
XAUUSD = spec("XAUUSD", 2, 0.01, 0.01, 1.0, 100)          # 1 lot = 100 oz: $1 per 0.01 move
EURUSD = spec("EURUSD", 5, 0.00001, 0.00001, 1.0, 100000)  # 1 lot = 100k EUR: $1 per point
BTCUSD = spec("BTCUSD", 2, 0.01, 0.01, 0.01, 1)            # 1 lot = 1 BTC: $0.01 per 0.01 move


def account(equity: float = 10_000.0) -> AccountInfo:
    return AccountInfo(login=1, currency="USD", balance=equity, equity=equity, margin=0.0, margin_free=equity,
                       margin_level=0.0, leverage=100, trade_allowed=True, hedging=True)


@pytest.mark.parametrize("symbol,entry,sl,expected_volume,expected_risk", [
    # $50 risk (0.5% of 10,000); gold SL $5.00 away = 500 ticks x $1 = $500 per lot -> 0.10 lots
    (XAUUSD, 2350.00, 2345.00, 0.10, 50.0),
    # EURUSD SL 10 pips = 100 points x $1 = $100 per lot -> 0.50 lots
    (EURUSD, 1.08500, 1.08400, 0.50, 50.0),
    # BTCUSD SL $300 = 30,000 ticks x $0.01 = $300 per lot -> 0.1666.. rounded DOWN to 0.16
    (BTCUSD, 65000.00, 64700.00, 0.16, 48.0),
])
def test_risk_percent_sizing_worked_examples(symbol, entry, sl, expected_volume, expected_risk) -> None:
    sizing = size_position(RiskConfig(risk_percent=0.5), symbol, 10_000.0, entry, sl)
    assert sizing.ok
    assert sizing.volume == pytest.approx(expected_volume)
    assert sizing.risk_money == pytest.approx(expected_risk)


def test_sizing_below_the_minimum_volume_is_skipped_with_a_reason() -> None:
    # $5 risk on a $500-per-lot stop is 0.01 lot... with $500 equity it is 0.005: below the minimum
    sizing = size_position(RiskConfig(risk_percent=0.5), XAUUSD, 500.0, 2350.0, 2345.0)
    assert not sizing.ok and sizing.volume == 0
    assert "below the minimum 0.01 for XAUUSD" in sizing.reason


def test_fixed_lots_and_volume_max() -> None:
    assert size_position(RiskConfig(sizing="fixed", fixed_lots=0.37), XAUUSD, 1e4, 2350, 2349).volume == 0.37
    big = spec("XAUUSD", 2, 0.01, 0.01, 1.0, 100, vmax=0.5)
    assert size_position(RiskConfig(risk_percent=5), big, 1e6, 2350, 2349).volume == 0.5


def test_zero_stop_distance_is_refused() -> None:
    assert "not positive" in size_position(RiskConfig(), XAUUSD, 1e4, 2350, 2350).reason


def make_risk(tmp_path: Path, **limits) -> tuple[RiskManager, TradeRegistry]:
    store = StateStore(tmp_path)
    registry = TradeRegistry(store)
    config = RiskConfig(**limits)
    return RiskManager(lambda: config, registry, store), registry


def trade(ticket: int, strategy: str = "micro_scalp", symbol: str = "XAUUSD") -> Trade:
    return Trade(ticket=ticket, client_id=f"c{ticket}", strategy=strategy, symbol=symbol, side="buy", volume=0.1,
                 entry=2350, sl=2345, tp=2360, initial_sl=2345, magic=1, opened_at=NOW.isoformat())


def test_limits_count_open_trades_and_pending_reservations(tmp_path: Path) -> None:
    risk, registry = make_risk(tmp_path, max_open_total=3, max_open_per_symbol=2, max_open_per_strategy=3)
    registry.add(trade(1))
    first = risk.check_and_reserve("micro_scalp", "XAUUSD", XAUUSD, account(), 2350, 2345, NOW)
    assert first.approved
    second = risk.check_and_reserve("micro_scalp", "XAUUSD", XAUUSD, account(), 2350, 2345, NOW)
    assert not second.approved and "XAUUSD has 2 open, limit 2" in second.reasons[0]
    risk.release(first.reservation)
    assert risk.check_and_reserve("micro_scalp", "XAUUSD", XAUUSD, account(), 2350, 2345, NOW).approved


def test_hourly_and_daily_caps_per_strategy_survive_a_restart(tmp_path: Path) -> None:
    risk, _ = make_risk(tmp_path, max_trades_per_hour=2, max_trades_per_day=3, max_open_total=50,
                        max_open_per_symbol=50, max_open_per_strategy=50)
    for minutes in (0, 10):
        decision = risk.check_and_reserve("range_scalp", "EURUSD", EURUSD, account(), 1.085, 1.084,
                                          NOW + timedelta(minutes=minutes))
        risk.confirm(decision.reservation, NOW + timedelta(minutes=minutes))
    blocked = risk.check_and_reserve("range_scalp", "EURUSD", EURUSD, account(), 1.085, 1.084,
                                     NOW + timedelta(minutes=20))
    assert not blocked.approved and "2 trades in the last hour" in blocked.reasons[0]
    assert risk.check_and_reserve("micro_scalp", "EURUSD", EURUSD, account(), 1.085, 1.084,
                                  NOW + timedelta(minutes=20)).approved  # other strategy unaffected
    restarted, _ = make_risk(tmp_path, max_trades_per_hour=2, max_trades_per_day=3, max_open_total=50,
                             max_open_per_symbol=50, max_open_per_strategy=50)
    later = NOW + timedelta(minutes=65)
    third = restarted.check_and_reserve("range_scalp", "EURUSD", EURUSD, account(), 1.085, 1.084, later)
    assert third.approved
    restarted.confirm(third.reservation, later)
    fourth = restarted.check_and_reserve("range_scalp", "EURUSD", EURUSD, account(), 1.085, 1.084,
                                         later + timedelta(minutes=61))
    assert not fourth.approved and "3 trades today" in fourth.reasons[0]


def test_a_thousand_concurrent_attempts_never_exceed_any_limit(tmp_path: Path) -> None:
    limits = dict(max_open_total=7, max_open_per_symbol=3, max_open_per_strategy=4, max_trades_per_hour=1000,
                  max_trades_per_day=10000)
    risk, registry = make_risk(tmp_path, **limits)
    symbols = [("XAUUSD", XAUUSD, 2350.0, 2345.0), ("EURUSD", EURUSD, 1.085, 1.084), ("BTCUSD", BTCUSD, 65000.0, 64700.0)]
    strategies = ["micro_scalp", "range_scalp", "order_flow"]
    violations: list[str] = []
    approved = []
    lock = threading.Lock()
    start = threading.Barrier(8)
    next_ticket = iter(range(1, 100000))

    def check_limits() -> None:
        with risk._lock:  # an exact instant: confirm() moves a slot from pending to the registry atomically
            open_now = [(t.symbol, t.strategy) for t in registry.open_trades()]
            open_now += [(r.symbol, r.strategy) for r in risk._pending.values()]
        if len(open_now) > 7:
            violations.append(f"total {len(open_now)}")
        for s in ("XAUUSD", "EURUSD", "BTCUSD"):
            if sum(1 for sym, _ in open_now if sym == s) > 3:
                violations.append(f"symbol {s}")
        for st in strategies:
            if sum(1 for _, strat in open_now if strat == st) > 4:
                violations.append(f"strategy {st}")

    def worker(n: int) -> None:
        start.wait()
        for i in range(125):
            name, sp, entry, sl = symbols[(n + i) % 3]
            strategy = strategies[(n * 7 + i) % 3]
            decision = risk.check_and_reserve(strategy, name, sp, account(), entry, sl, NOW)
            with lock:
                check_limits()
            if not decision.approved:
                continue
            approved.append(decision)
            if i % 3 == 0:
                risk.release(decision.reservation)  # the order failed
            else:
                with lock:
                    ticket = next(next_ticket)
                risk.confirm(decision.reservation, NOW, trade(ticket, strategy, name))
                if i % 2 == 0:  # some trades close again, freeing slots
                    registry.close(ticket, entry, NOW, 0.0, "test")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_limits()
    assert violations == []
    assert len(approved) > 7  # slots were reused as trades closed, so the test exercised contention
    assert len(registry.open_trades()) <= 7 and risk.pending() == []


def plain_add_entry(entries: list[tuple[datetime, str]], at: datetime,
                    client_id: str) -> list[tuple[datetime, str]] | None:
    """The ledger's rule written plainly: no client id twice, two days back from the newest entry,
    sorted by time (a stable sort: a new entry after those of its time). None: not added."""
    if client_id and any(known == client_id for _, known in entries):
        return None
    cutoff = max([at] + [t for t, _ in entries]) - timedelta(days=2)
    if at < cutoff:
        return None
    kept = sorted(entries + [(at, client_id)], key=lambda entry: entry[0])
    return [entry for entry in kept if entry[0] >= cutoff]


def test_ledger_entries_follow_the_plain_rule(tmp_path: Path) -> None:
    import random

    rng = random.Random(11)
    risk, _ = make_risk(tmp_path)
    plain: list[tuple[datetime, str]] = []
    for n in range(300):  # mostly forward in time, some late, equal and repeated entries
        # (7 and 14 minutes back: the time of an earlier entry again, so equal times meet)
        at = NOW + timedelta(minutes=7 * n - rng.choice([0, 0, 7, 14, 30, 600, 3500]))
        client_id = rng.choice([f"c{n}", f"c{n - 3}", ""])
        expected = plain_add_entry(plain, at, client_id)
        with risk._lock:
            assert risk._add_entry("micro_scalp", at, client_id) == (expected is not None)
        plain = plain if expected is None else expected
        assert risk._entries["micro_scalp"] == plain


def test_the_ledger_prints_each_entry_time_as_its_own_isoformat(tmp_path: Path) -> None:
    """Printed entries are remembered by object: equal instants in other zones keep their own
    text, and a write after more fills holds every entry as printed directly."""
    risk, _ = make_risk(tmp_path)
    plus_two = timezone(timedelta(hours=2))
    times = [NOW, NOW.astimezone(plus_two), NOW + timedelta(minutes=5, microseconds=7)]
    for n, when in enumerate(times):
        assert risk.record_entry("micro_scalp", when, f"c{n}")
        written = StateStore(tmp_path).load("risk_ledger", {})["entries"]["micro_scalp"]
        assert sorted(written) == sorted([t.isoformat(), f"c{i}"] for i, t in enumerate(times[:n + 1]))


def test_entries_without_a_client_id_at_one_instant_in_two_zones_keep_their_own_text(tmp_path: Path) -> None:
    """Two entries without a client id at the same instant, told in two zones, are equal as
    entries: each is still written with its own ``isoformat``."""
    risk, _ = make_risk(tmp_path)
    plus_two = timezone(timedelta(hours=2))
    assert risk.record_entry("micro_scalp", NOW, "")
    assert risk.record_entry("micro_scalp", NOW.astimezone(plus_two), "")
    written = StateStore(tmp_path).load("risk_ledger", {})["entries"]["micro_scalp"]
    assert written == [[NOW.isoformat(), ""], [NOW.astimezone(plus_two).isoformat(), ""]]
