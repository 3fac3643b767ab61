"""Orders through the MT5 adapter over the simulated terminal: filling modes, rounding, stops,
retcode classes, partial fills, closes and SL/TP changes."""
from __future__ import annotations

import json
import threading

import pytest

from execution.errors import OrderRejected, TradingDisabled
from execution.mt5 import filling_preference
from execution.retcodes import ALGO_TRADING_INSTRUCTION
from execution.simterminal import DEFAULT_SPEC_PATH, SimTerminal
from tests.execution.conftest import bot_config_for


def _one_position(terminal: SimTerminal):
    positions = terminal.positions_get()
    assert len(positions) == 1, positions
    return positions[0]


# ------------------------------------------------------------------ filling modes

def test_filling_preference_from_the_bitmask(sim):
    m = sim
    market, instant = m.SYMBOL_TRADE_EXECUTION_MARKET, m.SYMBOL_TRADE_EXECUTION_INSTANT
    fok, ioc, ret = m.ORDER_FILLING_FOK, m.ORDER_FILLING_IOC, m.ORDER_FILLING_RETURN
    assert filling_preference(1, market, m) == (fok, ioc, ret)     # FOK only
    assert filling_preference(2, market, m) == (ioc, fok, ret)     # IOC only: never the bitmask value 2 (RETURN)
    assert filling_preference(3, market, m) == (fok, ioc, ret)     # both: all-or-nothing first
    assert filling_preference(0, instant, m) == (ret, ioc, fok)    # RETURN allowed off market execution
    assert filling_preference(2, instant, m) == (ioc, ret, fok)


@pytest.mark.parametrize("symbol,mode", [("XAUUSD", "ORDER_FILLING_IOC"), ("EURUSD", "ORDER_FILLING_FOK"),
                                         ("BTCUSD", "ORDER_FILLING_FOK")])
def test_each_symbol_fills_first_time_with_its_derived_mode(broker, sim, symbol, mode):
    result = broker.market_order(symbol, "buy", 0.01, None, None, magic=1, client_id=f"t-fill-{symbol}")
    assert result.ok and result.attempts == 1
    assert result.filling == getattr(sim, mode)
    assert broker.symbol_spec(symbol).order_filling == getattr(sim, mode)
    assert _one_position(sim).volume == 0.01


def test_10030_retries_once_with_the_other_mode_and_caches_it(broker, sim):
    sim.faults.schedule("reject", retcode=10030)
    result = broker.market_order("EURUSD", "sell", 0.02, None, None, magic=1, client_id="t-10030-a")
    assert result.ok and result.attempts == 2
    assert result.filling == sim.ORDER_FILLING_IOC
    assert any("FOK refused (10030); retrying with IOC" in note for note in result.adjustments)
    assert broker.connection_state()["filling"]["EURUSD"] == "IOC"
    # closes and later opens use the mode that worked, first time
    close = broker.close_position(result.position, client_id="t-10030-c")
    assert close.ok and close.attempts == 1 and close.filling == sim.ORDER_FILLING_IOC
    again = broker.market_order("EURUSD", "buy", 0.01, None, None, magic=1, client_id="t-10030-b")
    assert again.attempts == 1 and again.filling == sim.ORDER_FILLING_IOC


def test_10030_gives_up_when_no_other_mode_is_accepted(broker, sim):
    sim.faults.schedule("reject", retcode=10030)   # XAUUSD accepts IOC only: FOK and RETURN fail too
    with pytest.raises(OrderRejected) as info:
        broker.market_order("XAUUSD", "buy", 0.01, None, None, magic=1, client_id="t-10030-x")
    assert info.value.retcode == 10030 and "INVALID_FILL" in info.value.reason
    assert sim.positions_get() == ()
    assert broker.connection_state()["filling"]["XAUUSD"] == "IOC"  # the cache keeps the mode that works


# ------------------------------------------------------------------ volume, prices, stops

def test_volume_rounded_down_to_the_step_and_clamped(broker, sim):
    down = broker.market_order("EURUSD", "buy", 0.037, None, None, magic=1, client_id="t-vol-1")
    assert down.volume == 0.03 and down.requested_volume == 0.03
    assert any("volume 0.037 normalised to 0.03" in note for note in down.adjustments)
    up = broker.market_order("EURUSD", "buy", 0.004, None, None, magic=1, client_id="t-vol-2")
    assert up.volume == 0.01
    assert sorted(p.volume for p in sim.positions_get()) == [0.01, 0.03]
    assert broker.normalize_volume("BTCUSD", 75.0) == 50.0
    assert broker.normalize_price("EURUSD", 1.1328449) == 1.13284


def test_stops_inside_the_stops_level_are_pushed_out_and_recorded(broker, sim):
    spec = broker.symbol_spec("XAUUSD")
    assert spec.stops_level_points == 10
    quote = broker.quote("XAUUSD")
    result = broker.market_order("XAUUSD", "buy", 0.01, sl=quote.bid - 0.03, tp=quote.bid + 0.05,
                                 magic=1, client_id="t-stops-1")
    position = _one_position(sim)
    assert position.sl == pytest.approx(quote.bid - 0.10) and position.tp == pytest.approx(quote.bid + 0.10)
    assert result.sl == position.sl and result.tp == position.tp
    assert any(note.startswith(f"SL moved from {round(quote.bid - 0.03, 2)} to {position.sl}")
               for note in result.adjustments)


def test_stop_on_the_wrong_side_is_refused_not_flipped(broker, sim):
    quote = broker.quote("XAUUSD")
    with pytest.raises(OrderRejected, match=r"buy SL .* must be below the current bid"):
        broker.market_order("XAUUSD", "buy", 0.01, sl=quote.bid + 1.0, tp=None, magic=1, client_id="t-stops-2")
    with pytest.raises(OrderRejected, match=r"sell TP .* must be below the current ask"):
        broker.market_order("XAUUSD", "sell", 0.01, sl=None, tp=quote.ask + 1.0, magic=1, client_id="t-stops-3")
    assert sim.positions_get() == ()


def test_comment_length_is_validated_before_anything_is_sent(broker, sim):
    with pytest.raises(ValueError, match="at most 31"):
        broker.market_order("EURUSD", "buy", 0.01, None, None, magic=1, client_id="c" * 32)
    assert sim.positions_get() == ()
    ok = broker.market_order("EURUSD", "buy", 0.01, None, None, magic=1, client_id="c" * 31)
    assert _one_position(sim).comment == "c" * 31 and ok.client_id == "c" * 31


# ------------------------------------------------------------------ retcode classes

def test_requote_then_fill(broker, sim):
    sim.faults.schedule("requote")
    result = broker.market_order("XAUUSD", "sell", 0.01, None, None, magic=3, client_id="t-requote")
    assert result.ok and result.attempts == 2
    assert any("10004 REQUOTE" in note for note in result.adjustments)
    assert _one_position(sim).comment == "t-requote"


def test_transient_retries_are_bounded(broker, sim):
    sim.faults.schedule("requote", count=10)
    with pytest.raises(OrderRejected) as info:
        broker.market_order("XAUUSD", "sell", 0.01, None, None, magic=3, client_id="t-requote-x")
    assert info.value.transient is True and info.value.attempts == 4
    assert "gave up after 4 attempts" in info.value.reason
    assert sim.positions_get() == ()


def test_invalid_stops_fixed_once_by_widening(broker, sim):
    sim.faults.schedule("reject", retcode=10016)
    quote = broker.quote("EURUSD")   # EURUSD has stops level 0: the widening uses the spread + 1 point
    result = broker.market_order("EURUSD", "buy", 0.01, sl=quote.bid - 0.00001, tp=quote.bid + 0.00001,
                                 magic=1, client_id="t-10016")
    assert result.ok and result.attempts == 2
    position = _one_position(sim)
    spread = quote.spread_points
    assert position.sl == pytest.approx(quote.bid - (spread + 1) * 0.00001)
    assert position.tp == pytest.approx(quote.bid + (spread + 1) * 0.00001)
    assert any("stops refused (10016)" in note for note in result.adjustments)


def test_invalid_stops_twice_gives_up_with_the_reason(broker, sim):
    sim.faults.schedule("reject", retcode=10016, count=2)
    with pytest.raises(OrderRejected) as info:
        broker.market_order("EURUSD", "buy", 0.01, None, None, magic=1, client_id="t-10016-x")
    assert info.value.retcode == 10016 and "INVALID_STOPS" in info.value.reason
    assert sim.positions_get() == ()


def test_no_money_is_rejected_with_the_reason(broker, sim):
    with pytest.raises(OrderRejected) as info:   # 50 lots of gold needs ~100k margin on a 10k account
        broker.market_order("XAUUSD", "buy", 50, None, None, magic=1, client_id="t-10019")
    assert info.value.retcode == 10019
    assert info.value.reason.startswith("order_check: 10019 NO_MONEY: There is not enough money")
    assert info.value.transient is False and sim.positions_get() == ()


def test_autotrading_disabled_by_client_is_fatal_with_the_operator_message(broker, sim):
    sim.faults.schedule("reject", retcode=10027)
    with pytest.raises(TradingDisabled) as info:
        broker.market_order("BTCUSD", "buy", 0.01, None, None, magic=1, client_id="t-10027")
    assert info.value.code == 10027 and info.value.instruction == ALGO_TRADING_INSTRUCTION
    assert "CLIENT_DISABLES_AT" in str(info.value)
    state = broker.connection_state()
    assert state["last_fatal"]["code"] == 10027 and state["entries_blocked"] == [ALGO_TRADING_INSTRUCTION]
    assert sim.positions_get() == ()
    # the terminal says AutoTrading is on again: the next entry re-checks it and goes through
    assert broker.market_order("BTCUSD", "buy", 0.01, None, None, magic=1, client_id="t-10027-b").ok


def test_symbol_level_fatal_codes_carry_their_instruction(broker, sim):
    sim.faults.schedule("reject", retcode=10044)
    with pytest.raises(TradingDisabled, match="only closing positions on this symbol"):
        broker.market_order("EURUSD", "buy", 0.01, None, None, magic=1, client_id="t-10044")


class PartialFillTerminal(SimTerminal):
    """The simulated terminal fills completely; this one fills only part of the next order, to
    exercise the 10010 path (the rest is cancelled, as IOC does at a real broker)."""

    partial_fraction: float | None = None

    def order_send(self, request):
        if self.partial_fraction is None:
            return super().order_send(request)
        fraction, self.partial_fraction = self.partial_fraction, None
        step = 0.01
        reduced = dict(request, volume=round(int(request["volume"] * fraction / step) * step, 2))
        result = super().order_send(reduced)
        return result._replace(retcode=self.TRADE_RETCODE_DONE_PARTIAL)


def test_partial_fill_reports_the_filled_volume(make_broker, clock, tmp_path):
    terminal = PartialFillTerminal(clock, tmp_path / "book.json", password="sim-Pa55word", server_utc_offset_hours=2)
    broker = make_broker(terminal)
    terminal.partial_fraction = 0.5
    result = broker.market_order("EURUSD", "buy", 0.10, None, None, magic=4, client_id="t-partial")
    assert result.ok and result.retcode == 10010 and result.partial
    assert result.volume == 0.05 and result.requested_volume == 0.10
    assert broker.position(result.position).volume == 0.05


# ------------------------------------------------------------------ close and modify

def test_partial_then_full_close(broker, sim, clock):
    opened = broker.market_order("EURUSD", "buy", 0.05, None, None, magic=21, client_id="t-close-o")
    part = broker.close_position(opened.position, volume=0.02, client_id="t-close-p")
    assert part.ok and part.volume == 0.02 and part.position == opened.position and part.side == "sell"
    assert broker.position(opened.position).volume == 0.03
    rest = broker.close_position(opened.position, client_id="t-close-f")
    assert rest.ok and rest.volume == 0.03 and broker.position(opened.position) is None
    deals = broker.deals(clock.now().replace(hour=0), clock.now(), position=opened.position)
    assert [(d.entry, d.volume, d.comment, d.reason, d.magic) for d in deals] == [
        ("in", 0.05, "t-close-o", "expert", 21), ("out", 0.02, "t-close-p", "expert", 21),
        ("out", 0.03, "t-close-f", "expert", 21)]
    with pytest.raises(OrderRejected, match="is not open"):
        broker.close_position(opened.position, client_id="t-close-again")


def test_partial_close_leaving_less_than_the_minimum_is_refused(make_sim, make_broker, tmp_path):
    # A broker whose EURUSD minimum (0.10) is coarser than its step (0.01), as many are.
    specs = json.loads(DEFAULT_SPEC_PATH.read_text(encoding="utf-8"))
    specs["symbols"]["EURUSD"]["volume_min"] = 0.1
    spec_file = tmp_path / "symbols.json"
    spec_file.write_text(json.dumps(specs), encoding="utf-8")
    broker = make_broker(make_sim(symbols=("EURUSD",), symbols_spec_path=spec_file),
                         config=bot_config_for({"EURUSD": None}))
    opened = broker.market_order("EURUSD", "buy", 0.15, None, None, magic=21, client_id="t-close-m")
    with pytest.raises(OrderRejected, match=r"closing 0.1 of 0.15 lots .* would leave 0.05, below the minimum "
                                            r"volume 0.1 of EURUSD"):
        broker.close_position(opened.position, volume=0.1, client_id="t-close-m2")
    assert broker.position(opened.position).volume == 0.15
    with pytest.raises(OrderRejected, match=r"cannot close 0.05 lots .* below the minimum volume 0.1"):
        broker.close_position(opened.position, volume=0.05, client_id="t-close-m3")
    assert broker.close_position(opened.position, volume=0.15, client_id="t-close-m4").volume == 0.15
    assert broker.position(opened.position) is None


def test_modify_sltp_sets_checks_and_skips_no_change(broker, sim):
    opened = broker.market_order("XAUUSD", "sell", 0.01, None, None, magic=5, client_id="t-mod")
    quote = broker.quote("XAUUSD")
    result = broker.modify_sltp(opened.position, sl=quote.ask + 2.0, tp=quote.ask - 3.0)
    assert result.ok and result.retcode == 10009
    position = broker.position(opened.position)
    assert (position.sl, position.tp) == (round(quote.ask + 2.0, 2), round(quote.ask - 3.0, 2))
    same = broker.modify_sltp(opened.position, sl=position.sl, tp=position.tp)
    assert same.retcode == 10025 and same.ok and "no changes" in same.comment
    tight = broker.modify_sltp(opened.position, sl=quote.ask + 0.02, tp=position.tp)  # inside 10 points
    assert broker.position(opened.position).sl == pytest.approx(quote.ask + 0.10)
    assert any(note.startswith("SL moved") for note in tight.adjustments)
    with pytest.raises(OrderRejected, match="sell SL .* must be above the current ask"):
        broker.modify_sltp(opened.position, sl=quote.ask - 1.0, tp=None)


def test_broker_side_stop_shows_as_an_sl_or_tp_deal(broker, sim, clock):
    quote = broker.quote("XAUUSD")
    opened = broker.market_order("XAUUSD", "buy", 0.01, sl=quote.bid - 0.30, tp=quote.bid + 0.30,
                                 magic=9, client_id="t-stop-hit")
    start = clock.now()
    for _ in range(120):   # let the recorded market move (one minute per step) until a stop triggers
        clock.advance(60)
        if broker.position(opened.position) is None:
            break
    assert broker.position(opened.position) is None
    [entry, exit_] = broker.deals(start, clock.now(), symbol="XAUUSD", magic=9)
    assert entry.entry == "in" and exit_.entry == "out" and exit_.reason in ("sl", "tp")
    level = opened.sl if exit_.reason == "sl" else opened.tp
    assert exit_.comment == f"[{exit_.reason} {level:.2f}]" and exit_.position_id == opened.position


def test_concurrent_orders_from_several_threads(broker, sim):
    results, errors = [], []

    def worker(n: int) -> None:
        for i in range(5):
            try:
                results.append(broker.market_order("EURUSD", "buy" if i % 2 else "sell", 0.01, None, None,
                                                   magic=100 + n, client_id=f"t-thr-{n}-{i}"))
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == 20 and len({r.position for r in results}) == 20
    assert sorted(p.comment for p in sim.positions_get()) == sorted(r.client_id for r in results)
    assert len(broker.positions(magic=102)) == 5
