"""Paper mode with the MT5 broker: ``PaperTerminal`` over a "real" terminal.

The real MetaTrader5 module is played by a ``SimTerminal`` (a faithful stand-in replaying real
recorded quotes, with its own book that must stay untouched). The paper terminal wraps it, the
MT5 adapter and the executor run over the paper terminal: every fill must come from the
underlying terminal's quotes and no order may reach it.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from engines.types import TradeIdea
from execution.paper_terminal import ALL_AT_MS, MARKS_KEY, PaperBookError, PaperTerminal, _after_mark
from execution.simterminal import SimTerminal, make_test_terminal
from monitors.clock import FakeClock
from tests.execution.harness import Stack, build_stack

PROJECT = Path(__file__).resolve().parents[2]
OFFSET_HOURS = 2          # the "real" broker's server clock is UTC+2: every conversion is exercised
PAPER_BALANCE = 5000.0    # differs from the underlying account's 10000 on purpose
FAR_PAST = datetime(2020, 1, 1, tzinfo=timezone.utc)
FAR_FUTURE = datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc))


def make_real(folder: Path, clock: FakeClock, **options: Any) -> SimTerminal:
    folder.mkdir(parents=True, exist_ok=True)
    options.setdefault("server_utc_offset_hours", OFFSET_HOURS)
    return make_test_terminal(folder, clock, **options)


@pytest.fixture
def real(tmp_path: Path, clock: FakeClock) -> SimTerminal:
    return make_real(tmp_path / "real", clock)


def paper_stack(tmp_path: Path, real: Any, clock: FakeClock, bot_changes: dict | None = None,
                **options: Any) -> Stack:
    """The adapter and executor over a PaperTerminal over ``real``, as bot.py wires paper + mt5."""
    options.setdefault("starting_balance", PAPER_BALANCE)
    paper = PaperTerminal(real, clock, tmp_path / "paper_book.json", **options)
    brokers: list = []
    paper.follow_server_offset(lambda: brokers[0].server_utc_offset() if brokers else timedelta(0))
    stack = build_stack(tmp_path, clock=clock, bot_changes=bot_changes, terminal=paper)
    brokers.append(stack.broker)
    return stack


@pytest.fixture
def stack(tmp_path: Path, real: SimTerminal, clock: FakeClock) -> Stack:
    return paper_stack(tmp_path, real, clock)


def idea(stack: Stack, side: str = "buy", sl_distance: float = 3.0, tp_distance: float = 3.0,
         symbol: str = "XAUUSD") -> TradeIdea:
    quote = stack.broker.quote(symbol)
    entry = quote.ask if side == "buy" else quote.bid
    sign = 1 if side == "buy" else -1
    return TradeIdea(symbol, side, entry, entry - sign * sl_distance, entry + sign * tp_distance,
                     "micro_scalp", ("paper test",), {})


def assert_real_untouched(real: SimTerminal) -> None:
    assert real.positions_get() == ()
    assert real.positions_total() == 0
    assert real.history_orders_get(FAR_PAST, FAR_FUTURE) == ()
    deals = real.history_deals_get(FAR_PAST, FAR_FUTURE)
    assert [d.comment for d in deals] == ["Initial deposit"]
    assert real.account_info().balance == 10000.0


def first_crossing(real: SimTerminal, symbol: str, after_msc: int, until: datetime, side: str,
                   level: float, stop_loss: bool) -> tuple[int, float]:
    """(server msc, price) of the first underlying tick after ``after_msc`` reaching ``level``:
    longs watch the bid, shorts the ask."""
    ticks = real.copy_ticks_range(symbol, after_msc // 1000, until.timestamp() + OFFSET_HOURS * 3600,
                                  real.COPY_TICKS_INFO)
    ticks = ticks[ticks["time_msc"] > after_msc]
    prices = ticks["bid"] if side == "buy" else ticks["ask"]
    below = (side == "buy") == stop_loss
    hits = np.flatnonzero(prices <= level if below else prices >= level)
    assert len(hits), "the recorded data never reaches the level in this window"
    k = int(hits[0])
    return int(ticks["time_msc"][k]), float(prices[k])


def run_until_closed(stack: Stack, max_minutes: int = 3000) -> list:
    for _ in range(max_minutes):
        stack.clock.advance(60)
        closed = stack.executor.sync_closed()
        if closed:
            return closed
    pytest.fail("the paper position never closed")


# ------------------------------------------------------------------------------------------
# fills

@pytest.mark.parametrize("side", ["buy", "sell"])
def test_order_fills_at_the_real_quote_and_never_reaches_the_real_terminal(stack: Stack, real: SimTerminal,
                                                                           side: str) -> None:
    tick = real.symbol_info_tick("XAUUSD")
    outcome = stack.executor.open(idea(stack, side))
    assert outcome.opened, outcome.reason
    expected = tick.ask if side == "buy" else tick.bid
    assert outcome.trade.entry == expected
    paper = stack.terminal
    (position,) = paper.positions_get()
    assert position.price_open == expected and position.comment == outcome.trade.client_id
    assert position.ticket == outcome.trade.ticket
    (deal,) = [d for d in paper.history_deals_get(position=position.ticket)]
    assert deal.price == expected and deal.reason == real.DEAL_REASON_EXPERT
    assert deal.time_msc == tick.time_msc  # the fill is stamped in the broker's server time
    assert_real_untouched(real)


def test_account_money_is_the_paper_books_and_identity_the_real_accounts(stack: Stack, real: SimTerminal) -> None:
    outcome = stack.executor.open(idea(stack, "buy"))
    stack.clock.advance(90)
    stack.executor.close(outcome.trade, "test exit")
    paper = stack.terminal
    deals = paper.history_deals_get(position=outcome.trade.ticket)
    assert [d.entry for d in deals] == [real.DEAL_ENTRY_IN, real.DEAL_ENTRY_OUT]
    assert deals[1].reason == real.DEAL_REASON_EXPERT
    pnl = sum(d.profit + d.commission for d in deals)
    assert pnl != 0
    # the profit is the real terminal's own calculation for that price move
    assert deals[1].profit == real.order_calc_profit(real.ORDER_TYPE_BUY, "XAUUSD", deals[0].volume,
                                                     deals[0].price, deals[1].price)
    account = paper.account_info()
    assert account.balance == pytest.approx(PAPER_BALANCE + pnl)
    assert account.equity == account.balance and account.margin == 0
    underlying = real.account_info()
    assert (account.login, account.currency, account.leverage, account.server, account.company) == \
        (underlying.login, underlying.currency, underlying.leverage, underlying.server, underlying.company)
    assert stack.broker.account().balance == pytest.approx(PAPER_BALANCE + pnl)
    assert_real_untouched(real)


# ------------------------------------------------------------------------------------------
# stops from the underlying quotes

def test_stop_loss_triggers_at_the_first_real_tick_beyond_it(stack: Stack, real: SimTerminal) -> None:
    outcome = stack.executor.open(idea(stack, "buy", sl_distance=1.0, tp_distance=300.0))
    trade = outcome.trade
    (closed,) = run_until_closed(stack)
    assert closed.close_reason == "broker:sl"
    opened_msc = stack.terminal.history_deals_get(position=trade.ticket)[0].time_msc
    when, price = first_crossing(real, "XAUUSD", opened_msc, stack.clock.now(), "buy", trade.sl, stop_loss=True)
    out = stack.terminal.history_deals_get(position=trade.ticket)[-1]
    assert out.reason == real.DEAL_REASON_SL and out.comment == f"[sl {trade.sl:.2f}]"
    assert (out.time_msc, out.price) == (when, price)
    assert price <= trade.sl
    assert closed.exit_price == price and closed.pnl < 0
    assert_real_untouched(real)


def test_take_profit_triggers_at_the_first_real_tick_reaching_it(stack: Stack, real: SimTerminal) -> None:
    outcome = stack.executor.open(idea(stack, "sell", sl_distance=20.0, tp_distance=1.0))
    assert outcome.opened, outcome.reason
    trade = outcome.trade
    (closed,) = run_until_closed(stack)
    assert closed.close_reason == "broker:tp" and closed.pnl > 0
    deals = stack.terminal.history_deals_get(position=trade.ticket)
    when, price = first_crossing(real, "XAUUSD", deals[0].time_msc, stack.clock.now(), "sell", trade.tp,
                                 stop_loss=False)
    assert deals[-1].reason == real.DEAL_REASON_TP
    assert (deals[-1].time_msc, deals[-1].price) == (when, price)
    assert price <= trade.tp  # a take profit fills at or better than its level
    assert_real_untouched(real)


def test_a_stop_touched_between_two_calls_fills_at_that_tick_not_at_the_next_call(stack: Stack,
                                                                                   real: SimTerminal) -> None:
    outcome = stack.executor.open(idea(stack, "buy", sl_distance=1.0, tp_distance=300.0))
    trade = outcome.trade
    opened_msc = stack.terminal.history_deals_get(position=trade.ticket)[0].time_msc
    stack.clock.advance(6 * 3600)  # no call to the terminal for six hours
    when, price = first_crossing(real, "XAUUSD", opened_msc, stack.clock.now(), "buy", trade.sl, stop_loss=True)
    assert stack.broker.positions() == []
    out = stack.terminal.history_deals_get(position=trade.ticket)[-1]
    assert (out.time_msc, out.price, out.reason) == (when, price, real.DEAL_REASON_SL)
    now_server_msc = int(stack.clock.now().timestamp() * 1000) + OFFSET_HOURS * 3_600_000
    assert out.time_msc < now_server_msc - 3_600_000  # the tick's time, hours before this call
    (closed,) = stack.executor.sync_closed()
    expected_utc = datetime.fromtimestamp(when / 1000 - OFFSET_HOURS * 3600, timezone.utc)
    assert datetime.fromisoformat(closed.closed_at) == expected_utc  # adapter and paper agree on the offset


def test_stops_set_later_answer_only_to_ticks_after_they_were_set(tmp_path: Path, real: SimTerminal,
                                                                  clock: FakeClock) -> None:
    real.initialize()
    paper = PaperTerminal(real, clock, tmp_path / "paper_book.json", server_utc_offset_hours=OFFSET_HOURS)
    assert paper.initialize()
    opened = paper.order_send({"action": real.TRADE_ACTION_DEAL, "symbol": "XAUUSD", "volume": 0.1,
                               "type": real.ORDER_TYPE_BUY, "type_filling": real.ORDER_FILLING_IOC})
    assert opened.retcode == real.TRADE_RETCODE_DONE  # no SL/TP yet: nothing to scan for
    opened_msc = paper.history_deals_get(position=opened.order)[0].time_msc
    clock.advance(5 * 60)  # the recorded bid dips about 1.0 below where it ends
    tick = real.symbol_info_tick("XAUUSD")
    ticks = real.copy_ticks_range("XAUUSD", opened_msc // 1000, tick.time_msc / 1000, real.COPY_TICKS_INFO)
    assert float(ticks["bid"][ticks["time_msc"] > opened_msc].min()) < tick.bid - 0.8
    new_sl = round(tick.bid - 0.5, 2)  # a level the market went through BEFORE it was set
    result = paper.order_send({"action": real.TRADE_ACTION_SLTP, "symbol": "XAUUSD", "position": opened.order,
                               "sl": new_sl, "tp": 0.0})
    assert result.retcode == real.TRADE_RETCODE_DONE
    clock.advance(1)
    later = real.copy_ticks_range("XAUUSD", tick.time_msc // 1000, tick.time_msc / 1000 + 2, real.COPY_TICKS_INFO)
    assert not (later["bid"][later["time_msc"] > tick.time_msc] <= new_sl).any()
    (position,) = paper.positions_get()
    assert position.sl == new_sl  # not stopped by the earlier dip


def test_ticks_sharing_the_marks_millisecond_are_checked_once() -> None:
    times = np.array([4, 5, 5, 5, 6], dtype=np.int64)
    assert _after_mark(times, (5, 2)).tolist() == [False, False, False, True, True]
    assert _after_mark(times, (5, ALL_AT_MS)).tolist() == [False, False, False, False, True]
    assert _after_mark(times, (3, 0)).all()


def test_commission_is_charged_per_side_as_configured(tmp_path: Path, real: SimTerminal, clock: FakeClock) -> None:
    stack = paper_stack(tmp_path, real, clock, commission_per_lot_per_side={"XAUUSD": 3.5})
    trade = stack.executor.open(idea(stack, "buy")).trade
    stack.executor.close(trade, "test exit")
    deals = stack.terminal.history_deals_get(position=trade.ticket)
    assert [d.commission for d in deals] == [round(-3.5 * trade.volume, 2)] * 2
    assert stack.terminal.account_info().balance == pytest.approx(
        PAPER_BALANCE + deals[1].profit + 2 * deals[0].commission)


class NoTickHistory:
    """A terminal whose tick history cannot be read (copy_ticks_* fail); all else delegated."""

    def __init__(self, inner: SimTerminal) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def copy_ticks_from(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_without_tick_history_the_latest_tick_still_triggers_the_stop(tmp_path: Path, real: SimTerminal,
                                                                       clock: FakeClock) -> None:
    stack = paper_stack(tmp_path, NoTickHistory(real), clock)
    trade = stack.executor.open(idea(stack, "buy", sl_distance=1.0, tp_distance=300.0)).trade
    for _ in range(3000):
        clock.advance(60)
        tick = real.symbol_info_tick("XAUUSD")
        if not stack.terminal.positions_get():
            break
    else:
        pytest.fail("never closed")
    out = stack.terminal.history_deals_get(position=trade.ticket)[-1]
    assert out.reason == real.DEAL_REASON_SL
    assert (out.time_msc, out.price) == (tick.time_msc, tick.bid)  # the latest tick at that call
    assert tick.bid <= trade.sl


# ------------------------------------------------------------------------------------------
# the book file

def test_the_paper_book_survives_a_new_paper_terminal_on_the_same_file(tmp_path: Path, stack: Stack,
                                                                      real: SimTerminal, clock: FakeClock) -> None:
    trade = stack.executor.open(idea(stack, "buy", sl_distance=1.0, tp_distance=300.0)).trade
    stored = json.loads((tmp_path / "paper_book.json").read_text(encoding="utf-8"))
    assert [p["ticket"] for p in stored["positions"]] == [trade.ticket]
    assert str(trade.ticket) in stored["extra"][MARKS_KEY]  # where its tick scan resumes
    before = stack.terminal.positions_get()

    again = PaperTerminal(real, clock, tmp_path / "paper_book.json", server_utc_offset_hours=OFFSET_HOURS)
    assert again.positions_get() is None  # not initialized yet, as the module
    assert again.last_error()[0] == -10004
    assert again.initialize()
    assert again.positions_get() == before
    assert again.account_info().balance == PAPER_BALANCE
    for _ in range(3000):  # the restarted paper terminal closes it from the real quotes
        clock.advance(60)
        if not again.positions_get():
            break
    out = again.history_deals_get(position=trade.ticket)[-1]
    assert out.reason == real.DEAL_REASON_SL
    opened_msc = again.history_deals_get(position=trade.ticket)[0].time_msc
    assert (out.time_msc, out.price) == first_crossing(real, "XAUUSD", opened_msc, clock.now(), "buy",
                                                       trade.sl, stop_loss=True)
    again.shutdown()
    third = PaperTerminal(real, clock, tmp_path / "paper_book.json", server_utc_offset_hours=OFFSET_HOURS)
    assert third.initialize()
    assert third.positions_get() == ()
    assert third.account_info().balance == pytest.approx(PAPER_BALANCE + out.profit + out.commission)
    assert_real_untouched(real)


def test_the_paper_book_belongs_to_one_account(tmp_path: Path, stack: Stack, clock: FakeClock) -> None:
    other = make_real(tmp_path / "other", clock, login=7777777)
    paper = PaperTerminal(other, clock, tmp_path / "paper_book.json")
    with pytest.raises(PaperBookError, match=r"belongs to MT5 account 5000001.*logged in to 7777777"):
        paper.initialize()


# ------------------------------------------------------------------------------------------
# checks against the real symbol spec and quotes

def test_requests_are_checked_against_the_real_symbol_spec(tmp_path: Path, clock: FakeClock) -> None:
    specs = json.loads((PROJECT / "data" / "sim_symbols.json").read_text(encoding="utf-8"))
    gold = specs["symbols"]["XAUUSD"]
    gold.update(volume_min=0.05, volume_step=0.05, trade_stops_level=300)
    for name in ("XAUUSD",):
        specs["symbols"][name]["feed"]["file"] = str(PROJECT / "data" / specs["symbols"][name]["feed"]["file"])
    spec_file = tmp_path / "specs.json"
    spec_file.write_text(json.dumps(specs), encoding="utf-8")
    real = make_real(tmp_path / "real", clock, symbols=("XAUUSD",), symbols_spec_path=spec_file)
    real.initialize()
    paper = PaperTerminal(real, clock, tmp_path / "paper_book.json", server_utc_offset_hours=OFFSET_HOURS)
    assert paper.initialize()
    tick = real.symbol_info_tick("XAUUSD")

    def check(**changes: Any) -> int:
        request = {"action": real.TRADE_ACTION_DEAL, "symbol": "XAUUSD", "volume": 0.05,
                   "type": real.ORDER_TYPE_BUY, "price": tick.ask, "sl": round(tick.bid - 5.0, 2),
                   "type_filling": real.ORDER_FILLING_IOC}
        request.update(changes)
        return paper.order_check(request).retcode

    assert check() == 0
    assert check(volume=0.01) == real.TRADE_RETCODE_INVALID_VOLUME        # under the real minimum
    assert check(volume=0.07) == real.TRADE_RETCODE_INVALID_VOLUME        # off the real step
    assert check(sl=round(tick.bid - 1.0, 2)) == real.TRADE_RETCODE_INVALID_STOPS  # inside 300 points
    assert check(type_filling=real.ORDER_FILLING_FOK) == real.TRADE_RETCODE_INVALID_FILL  # IOC only
    result = paper.order_send({"action": real.TRADE_ACTION_DEAL, "symbol": "XAUUSD", "volume": 0.05,
                               "type": real.ORDER_TYPE_BUY, "type_filling": real.ORDER_FILLING_IOC})
    assert result.retcode == real.TRADE_RETCODE_DONE and result.price == tick.ask
    assert (result.bid, result.ask) == (tick.bid, tick.ask)
    assert_real_untouched(real)


def test_orders_are_refused_while_the_real_quotes_are_stale(tmp_path: Path, real: SimTerminal,
                                                            clock: FakeClock) -> None:
    # a configured offset: the adapter's live correction would misread Friday's last tick,
    # first seen on Saturday after the clock jump, as a live tick at UTC-13
    stack = paper_stack(tmp_path, real, clock, bot_changes={"mt5": {"server_utc_offset_hours": OFFSET_HOURS}})
    stack.clock.set(datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc))  # Saturday: the last tick is Friday's
    tick = real.symbol_info_tick("XAUUSD")
    assert tick.bid > 0
    result = stack.terminal.order_check({
        "action": real.TRADE_ACTION_DEAL, "symbol": "XAUUSD", "volume": 0.01, "type": real.ORDER_TYPE_BUY,
        "price": tick.ask, "type_filling": real.ORDER_FILLING_IOC})
    assert result.retcode == real.TRADE_RETCODE_MARKET_CLOSED
    outcome = stack.executor.open(TradeIdea("XAUUSD", "buy", tick.ask, tick.ask - 3, tick.ask + 3,
                                            "micro_scalp", ("weekend",), {}))
    assert not outcome.opened
    assert stack.terminal.positions_get() == ()
    assert_real_untouched(real)


def test_a_quote_that_stops_changing_closes_the_market_even_with_a_wrong_offset(
        tmp_path: Path, real: SimTerminal, clock: FakeClock) -> None:
    real.initialize()
    clock.set(datetime(2026, 1, 9, 21, 30, tzinfo=timezone.utc))  # Friday, gold closed half an hour ago
    # offset 0 for a UTC+2 server (follow_server_offset forgotten): the last tick looks 1.5 h in the future
    paper = PaperTerminal(real, clock, tmp_path / "paper_book.json", server_utc_offset_hours=0)
    assert paper.initialize()
    tick = real.symbol_info_tick("XAUUSD")
    request = {"action": real.TRADE_ACTION_DEAL, "symbol": "XAUUSD", "volume": 0.01, "type": real.ORDER_TYPE_BUY,
               "price": tick.ask, "type_filling": real.ORDER_FILLING_IOC}
    assert paper.order_check(request).retcode == 0  # first sight: only the (misread) time stamp can tell
    clock.advance(121)
    assert real.symbol_info_tick("XAUUSD") == tick
    assert paper.order_check(request).retcode == real.TRADE_RETCODE_MARKET_CLOSED


# ------------------------------------------------------------------------------------------
# the module surface

def test_market_data_constants_and_structures_come_from_the_real_module(stack: Stack, real: SimTerminal) -> None:
    paper = stack.terminal
    assert paper.ORDER_FILLING_IOC == real.ORDER_FILLING_IOC and paper.TIMEFRAME_M5 == real.TIMEFRAME_M5
    assert paper.TradePosition is real.TradePosition and paper.AccountInfo is real.AccountInfo
    assert paper.__version__ == real.__version__
    assert paper.symbol_info_tick("EURUSD") == real.symbol_info_tick("EURUSD")
    assert paper.symbol_info("EURUSD") == real.symbol_info("EURUSD")
    assert np.array_equal(paper.copy_rates_from_pos("XAUUSD", paper.TIMEFRAME_M1, 0, 50),
                          real.copy_rates_from_pos("XAUUSD", real.TIMEFRAME_M1, 0, 50))
    assert paper.version() == real.version()
    assert paper.symbol_info("NOPE") is None
    assert paper.last_error() == real.last_error() == (-4, "Terminal: Not found")
    assert paper.order_send({"action": "deal"}) is None  # refused by the paper book
    assert paper.last_error() == (-2, 'Invalid "action" argument')
    assert paper.terminal_info().trade_allowed  # paper trades need no AutoTrading
    real.faults.schedule("autotrading_off")
    assert not real.terminal_info().trade_allowed and paper.terminal_info().trade_allowed


def test_a_symbol_with_paper_positions_stays_selected(stack: Stack, real: SimTerminal) -> None:
    stack.executor.open(idea(stack, "buy"))
    assert stack.terminal.symbol_select("XAUUSD", False) is False
    assert stack.terminal.last_error() == (-1, "Terminal: Call failed")
    assert real.symbol_info("XAUUSD").select
    assert stack.terminal.symbol_select("EURUSD", False) is True


def test_a_module_with_other_trading_constants_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    odd = SimpleNamespace(TRADE_ACTION_DEAL=1, ORDER_FILLING_IOC=7)
    with pytest.raises(ValueError, match=r"ORDER_FILLING_IOC \(module 7, simulator 1\)"):
        PaperTerminal(odd, clock, tmp_path / "paper_book.json")


@pytest.mark.parametrize("options, message", [
    ({"starting_balance": 0}, "starting_balance"),
    ({"slippage_points": -1}, "slippage_points"),
    ({"max_quote_age_s": 0}, "max_quote_age_s"),
    ({"commission_per_lot_per_side": {"XAUUSD": -3}}, "commission_per_lot_per_side"),
])
def test_bad_options_are_refused_by_name(tmp_path: Path, real: SimTerminal, clock: FakeClock,
                                         options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PaperTerminal(real, clock, tmp_path / "paper_book.json", **options)
