"""The trade registry: persisted on every change, integer tickets, batches for bulk rebuilds."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from state.registry import Trade, TradeRegistry
from state.store import StateStore

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def trade(ticket: int, strategy: str = "micro_scalp") -> Trade:
    return Trade(ticket=ticket, client_id=f"c{ticket}", strategy=strategy, symbol="XAUUSD", side="buy", volume=0.1,
                 entry=2350.0, sl=2345.0, tp=2360.0, initial_sl=2345.0, magic=7310001, opened_at=NOW.isoformat(),
                 meta={"entry_delta": 12.5})


def test_every_change_is_on_disk_before_the_call_returns(tmp_path: Path) -> None:
    registry = TradeRegistry(StateStore(tmp_path))
    registry.add(trade(101))
    registry.update(101, sl=2348.0, meta={"trail": True})
    reloaded = TradeRegistry(StateStore(tmp_path))
    got = reloaded.get(101)
    assert got is not None and got.sl == 2348.0 and got.meta == {"entry_delta": 12.5, "trail": True}
    assert isinstance(next(iter(t.ticket for t in reloaded.open_trades())), int)
    registry.close(101, 2355.0, NOW, 50.0, "tp")
    closed = TradeRegistry(StateStore(tmp_path)).closed_trades("micro_scalp")[-1]
    assert closed.r == pytest.approx(1.0) and closed.close_reason == "tp"


def test_a_duplicate_ticket_is_refused(tmp_path: Path) -> None:
    registry = TradeRegistry(StateStore(tmp_path))
    registry.add(trade(1))
    with pytest.raises(ValueError, match="already registered"):
        registry.add(trade(1, "range_scalp"))


def test_a_batch_writes_each_document_once_at_the_end(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    registry = TradeRegistry(store)
    with registry.batch():
        for ticket in range(1, 51):
            registry.add(trade(ticket))
            registry.close(ticket, 2355.0, NOW, 50.0, "recorded")
        assert store.writes == 0
        assert len(registry.closed_trades("micro_scalp")) == 50  # in memory at once
    assert store.writes == 1
    assert len(TradeRegistry(StateStore(tmp_path)).closed_trades("micro_scalp")) == 50


def test_other_threads_keep_writing_during_a_batch(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    registry = TradeRegistry(store)
    with registry.batch():
        registry.add(trade(1))
        other = threading.Thread(target=registry.add, args=(trade(2, "order_flow"),))
        other.start()
        other.join()
        assert store.writes == 1  # the other thread's trade is on disk already
        assert TradeRegistry(StateStore(tmp_path)).get(2) is not None
    assert TradeRegistry(StateStore(tmp_path)).get(1) is not None


def test_recent_closed_is_the_tail_of_all_closed_trades_and_follows_new_closes(tmp_path: Path) -> None:
    from datetime import timedelta

    registry = TradeRegistry(StateStore(tmp_path))
    strategies = ["micro_scalp", "range_scalp", "order_flow"]
    for i in range(60):
        registry.add(trade(i + 1, strategies[i % 3]))
    for i in range(40):  # closes interleaved across strategies, two per minute (equal times too)
        registry.close(i + 1, 2351.0, NOW + timedelta(minutes=i // 2), -10.0 if i % 4 else 5.0, "time")
    for limit in (1, 5, 12, 100):
        assert registry.recent_closed(limit) == registry.closed_trades()[-limit:]
    first = registry.recent_closed(5)
    first.clear()  # the caller's copy: the cache is not touched
    assert len(registry.recent_closed(5)) == 5
    registry.close(55, 2352.0, NOW + timedelta(hours=2), 1.0, "tp")
    assert registry.recent_closed(5)[-1].ticket == 55
    assert registry.recent_closed(5) == registry.closed_trades()[-5:]


def test_to_json_is_asdict_with_lists_and_a_deep_copy() -> None:
    from collections import OrderedDict, namedtuple
    from dataclasses import asdict, dataclass, replace

    Pair = namedtuple("Pair", "a b")

    @dataclass
    class Box:
        items: list

    meta = {"atr": 0.35, "secondary": ["FOLLOW_THROUGH"], "nested": {"t": (1, [2, 3])}, "pair": Pair(1, [2]),
            "box": Box([1]), "ordered": OrderedDict(a=1), "none": None}
    original = replace(trade(7), reasons=("a", "b"), meta=meta, partial_closes=({"volume": 0.05},))
    expected = asdict(original)
    expected["reasons"], expected["partial_closes"] = list(original.reasons), list(original.partial_closes)
    got = original.to_json()
    assert got == expected and list(got) == list(expected) and repr(got) == repr(expected)
    assert got["meta"]["secondary"] is not meta["secondary"] and got["meta"]["nested"]["t"][1] is not meta["nested"]["t"][1]
    assert type(got["meta"]["box"]) is dict and type(got["meta"]["pair"]) is Pair


def test_to_json_copies_what_is_not_a_plain_value_at_any_level() -> None:
    """The shortcut for strings, numbers and None takes exact types only: subclasses and
    container keys still go the ``asdict`` way."""
    from dataclasses import asdict, replace

    class Lots(float):
        pass

    class Label(str):
        pass

    meta = {("pair", 1): [1, 2], Label("tag"): Label("x"), "flag": True, "n": 3}
    original = replace(trade(8), volume=Lots(0.1), meta=meta)
    expected = asdict(original)
    expected["reasons"], expected["partial_closes"] = list(original.reasons), list(original.partial_closes)
    got = original.to_json()
    assert got == expected and list(got) == list(expected) and repr(got) == repr(expected)
    assert [type(k) for k in got["meta"]] == [type(k) for k in expected["meta"]]
    assert type(got["volume"]) is type(expected["volume"]) and got["meta"][("pair", 1)] is not meta[("pair", 1)]
