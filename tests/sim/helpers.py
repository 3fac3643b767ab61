"""Request builders shared by the simulated-terminal tests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from execution.simterminal import SimTerminal

DATA = Path(__file__).resolve().parents[2] / "data"
FILLING = {"XAUUSD": 1, "EURUSD": 0, "BTCUSD": 0}  # an ORDER_FILLING_* each symbol supports


def market_order(mt5: SimTerminal, symbol: str, side: str, volume: Any, sl: float = 0.0,
                 tp: float = 0.0, **extra: Any) -> dict[str, Any]:
    """A market order request at the current quote, as the adapter would build it."""
    tick = mt5.symbol_info_tick(symbol)
    request = {"action": mt5.TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume,
               "type": mt5.ORDER_TYPE_BUY if side == "buy" else mt5.ORDER_TYPE_SELL,
               "price": tick.ask if side == "buy" else tick.bid, "sl": sl, "tp": tp, "deviation": 20,
               "magic": 7001, "comment": "cid-0001", "type_time": mt5.ORDER_TIME_GTC,
               "type_filling": FILLING[symbol]}
    request.update(extra)
    return request


def close_request(mt5: SimTerminal, position: Any, volume: float | None = None, **extra: Any) -> dict[str, Any]:
    """Close ``volume`` (default all) of ``position`` by its ticket (hedging account)."""
    side = "sell" if position.type == mt5.POSITION_TYPE_BUY else "buy"
    request = market_order(mt5, position.symbol, side, volume or position.volume, position=position.ticket,
                           comment="close")
    request.pop("sl"), request.pop("tp")
    request.update(extra)
    return request


def open_position(mt5: SimTerminal, symbol: str, side: str, volume: float, **kwargs: Any) -> Any:
    result = mt5.order_send(market_order(mt5, symbol, side, volume, **kwargs))
    assert result is not None and result.retcode == mt5.TRADE_RETCODE_DONE, (result, mt5.last_error())
    return mt5.positions_get(ticket=result.order)[0]


def spec_file(tmp_path: Path, symbol: str, **changes: Any) -> Path:
    """A copy of data/sim_symbols.json with ``changes`` applied to ``symbol``."""
    spec = json.loads((DATA / "sim_symbols.json").read_text(encoding="utf-8"))
    spec["symbols"][symbol].update(changes)
    path = tmp_path / "symbols.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path
