"""A simulated, MetaTrader5-compatible terminal that replays real recorded market data.

Use an INSTANCE of ``SimTerminal`` wherever the ``MetaTrader5`` module would be passed::

    from execution.simterminal import SimTerminal, make_test_terminal
    mt5 = SimTerminal(clock, book_path=runtime / "sim_book.json")
    mt5.initialize()
    mt5.order_send({"action": mt5.TRADE_ACTION_DEAL, ...})

The module-level names mirror the real package's constants (``execution.simterminal.ORDER_FILLING_IOC``),
structures and dtypes. ``terminal.faults`` injects IPC errors, timeouts, requotes, rejects,
disconnects, stale quotes and AutoTrading off (see ``faults.py``).

The filling-mode BITS of ``symbol_info().filling_mode`` (FOK = 1, IOC = 2) are not constants of
the real package and therefore not exported here; they live in ``execution.simterminal.symbols``.
"""
from execution.simterminal.constants import *  # noqa: F401,F403  (the real package's constants)
from execution.simterminal.constants import MT5_CONSTANTS, PACKAGE_VERSION, Mt5Constants
from execution.simterminal.factory import build_from_config, make_test_terminal, replay_start
from execution.simterminal.faults import FAULT_KINDS, FaultInjector, InjectedFault
from execution.simterminal.symbols import SymbolSpec, load_symbol_specs
from execution.simterminal.terminal import DEFAULT_DATA_DIR, DEFAULT_SPEC_PATH, DEFAULT_SYMBOLS, SimTerminal
from execution.simterminal.types import (RATES_DTYPE, TICKS_DTYPE, AccountInfo, BookInfo, OrderCheckResult,
                                         OrderSendResult, SymbolInfo, TerminalInfo, Tick, TradeDeal,
                                         TradeOrder, TradePosition, TradeRequest)

__all__ = [
    "SimTerminal", "make_test_terminal", "build_from_config", "replay_start", "FaultInjector", "InjectedFault",
    "FAULT_KINDS", "MT5_CONSTANTS", "PACKAGE_VERSION", "Mt5Constants", "SymbolSpec", "load_symbol_specs",
    "DEFAULT_DATA_DIR", "DEFAULT_SPEC_PATH", "DEFAULT_SYMBOLS",
    "RATES_DTYPE", "TICKS_DTYPE", "AccountInfo", "BookInfo", "OrderCheckResult", "OrderSendResult",
    "SymbolInfo", "TerminalInfo", "Tick", "TradeDeal", "TradeOrder", "TradePosition", "TradeRequest",
    *MT5_CONSTANTS,
]
