"""The MetaTrader5 package's result structures, numpy dtypes and error texts, as the real one has them.

The real structures are C struct sequences: tuples with named fields and ``_asdict()``.
``collections.namedtuple`` behaves the same for every use the bot makes of them (attribute and
index access, ``_asdict()``, equality with tuples). Field names and their ORDER come from the
real package: the field-name string table of ``_core.pyd`` (checked by the contract test) and
recorded ``repr`` outputs of real terminals.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

TerminalInfo = namedtuple("TerminalInfo", [
    "community_account", "community_connection", "connected", "dlls_allowed", "trade_allowed",
    "tradeapi_disabled", "email_enabled", "ftp_enabled", "notifications_enabled", "mqid", "build",
    "maxbars", "codepage", "ping_last", "community_balance", "retransmission", "company", "name",
    "language", "path", "data_path", "commondata_path"])

AccountInfo = namedtuple("AccountInfo", [
    "login", "trade_mode", "leverage", "limit_orders", "margin_so_mode", "trade_allowed",
    "trade_expert", "margin_mode", "currency_digits", "fifo_close", "balance", "credit", "profit",
    "equity", "margin", "margin_free", "margin_level", "margin_so_call", "margin_so_so",
    "margin_initial", "margin_maintenance", "assets", "liabilities", "commission_blocked", "name",
    "server", "currency", "company"])

SymbolInfo = namedtuple("SymbolInfo", [
    "custom", "chart_mode", "select", "visible", "session_deals", "session_buy_orders",
    "session_sell_orders", "volume", "volumehigh", "volumelow", "time", "digits", "spread",
    "spread_float", "ticks_bookdepth", "trade_calc_mode", "trade_mode", "start_time",
    "expiration_time", "trade_stops_level", "trade_freeze_level", "trade_exemode", "swap_mode",
    "swap_rollover3days", "margin_hedged_use_leg", "expiration_mode", "filling_mode", "order_mode",
    "order_gtc_mode", "option_mode", "option_right", "bid", "bidhigh", "bidlow", "ask", "askhigh",
    "asklow", "last", "lasthigh", "lastlow", "volume_real", "volumehigh_real", "volumelow_real",
    "option_strike", "point", "trade_tick_value", "trade_tick_value_profit", "trade_tick_value_loss",
    "trade_tick_size", "trade_contract_size", "trade_accrued_interest", "trade_face_value",
    "trade_liquidity_rate", "volume_min", "volume_max", "volume_step", "volume_limit", "swap_long",
    "swap_short", "margin_initial", "margin_maintenance", "session_volume", "session_turnover",
    "session_interest", "session_buy_orders_volume", "session_sell_orders_volume", "session_open",
    "session_close", "session_aw", "session_price_settlement", "session_price_limit_min",
    "session_price_limit_max", "margin_hedged", "price_change", "price_volatility",
    "price_theoretical", "price_greeks_delta", "price_greeks_theta", "price_greeks_gamma",
    "price_greeks_vega", "price_greeks_rho", "price_greeks_omega", "price_sensitivity", "basis",
    "category", "currency_base", "currency_profit", "currency_margin", "bank", "description",
    "exchange", "formula", "isin", "name", "page", "path"])

Tick = namedtuple("Tick", ["time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real"])

TradePosition = namedtuple("TradePosition", [
    "ticket", "time", "time_msc", "time_update", "time_update_msc", "type", "magic", "identifier",
    "reason", "volume", "price_open", "sl", "tp", "price_current", "swap", "profit", "symbol",
    "comment", "external_id"])

TradeOrder = namedtuple("TradeOrder", [
    "ticket", "time_setup", "time_setup_msc", "time_done", "time_done_msc", "time_expiration",
    "type", "type_time", "type_filling", "state", "magic", "position_id", "position_by_id",
    "reason", "volume_initial", "volume_current", "price_open", "sl", "tp", "price_current",
    "price_stoplimit", "symbol", "comment", "external_id"])

TradeDeal = namedtuple("TradeDeal", [
    "ticket", "order", "time", "time_msc", "type", "entry", "magic", "position_id", "reason",
    "volume", "price", "commission", "swap", "profit", "fee", "symbol", "comment", "external_id"])

TradeRequest = namedtuple("TradeRequest", [
    "action", "magic", "order", "symbol", "volume", "price", "stoplimit", "sl", "tp", "deviation",
    "type", "type_filling", "type_time", "expiration", "comment", "position", "position_by"])

OrderSendResult = namedtuple("OrderSendResult", [
    "retcode", "deal", "order", "volume", "price", "bid", "ask", "comment", "request_id",
    "retcode_external", "request"])

OrderCheckResult = namedtuple("OrderCheckResult", [
    "retcode", "balance", "equity", "profit", "margin", "margin_free", "margin_level", "comment",
    "request"])

BookInfo = namedtuple("BookInfo", ["type", "price", "volume", "volume_dbl"])

# The order in which the real _core.pyd lists these structures' field names (used by the
# contract test to check field order against the binary's string table).
STRUCTURES_IN_BINARY_ORDER = (TradePosition, TradeOrder, TradeDeal, TradeRequest, OrderSendResult,
                              OrderCheckResult, Tick, TerminalInfo, SymbolInfo, AccountInfo, BookInfo)

RATES_DTYPE = np.dtype([("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"),
                        ("close", "<f8"), ("tick_volume", "<u8"), ("spread", "<i4"),
                        ("real_volume", "<u8")])
TICKS_DTYPE = np.dtype([("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"),
                        ("volume", "<u8"), ("time_msc", "<i8"), ("flags", "<u4"),
                        ("volume_real", "<f8")])

# last_error() texts: the strings compiled into the real _core.pyd.
RES_TEXT: dict[int, str] = {
    1: "Success",
    -1: "Terminal: Call failed",
    -2: "Terminal: Invalid params",
    -3: "Terminal: Out of memory",
    -4: "Terminal: Not found",
    -5: "Terminal: Incompatible versions, please install the latest version of Terminal and Python module",
    -6: "Terminal: Authorization failed",
    -7: "Terminal: Unsupported function",
    -8: "Auto-Trading using Python API disabled in Terminal",
    -10000: "IPC call failed",
    -10001: "IPC send failed",
    -10002: "IPC recv failed",
    -10003: "IPC initialize failed, %s",
    -10004: "No IPC connection",
    -10005: "IPC timeout",
}

# Trade server texts for OrderSendResult.comment / OrderCheckResult.comment.
RETCODE_COMMENT: dict[int, str] = {
    0: "Done",
    10004: "Requote",
    10006: "Request rejected",
    10007: "Request canceled by trader",
    10008: "Order placed",
    10009: "Request executed",
    10010: "Request executed partially",
    10011: "Request processing error",
    10012: "Request canceled by timeout",
    10013: "Invalid request",
    10014: "Invalid volume",
    10015: "Invalid price",
    10016: "Invalid stops",
    10017: "Trade disabled",
    10018: "Market closed",
    10019: "No money",
    10020: "Prices changed",
    10021: "No prices",
    10022: "Invalid expiration",
    10023: "Order state changed",
    10024: "Too many requests",
    10025: "No changes",
    10026: "AutoTrading disabled by server",
    10027: "AutoTrading disabled by client",
    10028: "Request locked for processing",
    10029: "Order or position frozen",
    10030: "Unsupported filling mode",
    10031: "No connection with the trade server",
    10032: "Operation is allowed only for live accounts",
    10033: "The number of pending orders has reached the limit",
    10034: "The volume of orders and positions has reached the limit",
    10035: "Incorrect or prohibited order type",
    10036: "Position already closed",
    10038: "Close volume exceeds the current position volume",
    10039: "A close order already exists for this position",
    10040: "The number of open positions has reached the limit",
    10041: "The pending order activation request is rejected, the order is canceled",
    10042: "Only long positions are allowed",
    10043: "Only short positions are allowed",
    10044: "Only position closing is allowed",
    10045: "Position closing is allowed only by FIFO rule",
    10046: "Opposite positions on a single symbol are disabled",
}
