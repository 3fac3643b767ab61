"""The five range strategies (spec A8) and their stop/target geometry (A9).

Each strategy looks at the market and the range and returns at most one ``Signal`` (side,
confidence 0..100, why). ``build_setup`` turns a signal into prices with the strategy's OWN
R:R row and stop multiple and the session's adjustment; the original looked both up by keys
that never matched, so every trade got 0.8 ATR / 1.2 R. Here:

    stop distance = ATRe * stop_atr_mult * stop_tightener(session)
    R:R           = min(target_rr * rr_multiplier(session), max_rr(session), max_rr(strategy))
    a setup whose R:R falls below the strategy's min_rr is skipped (and says so).

Entry is the ask for buys and the bid for sells; SL and TP are measured from that entry.
``RSI excess`` is 30 - RSI for a buy and RSI - 70 for a sell (the configured bands).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from config.range_scalp_model import RangeScalpParams, SessionAdjustment, StrategyRules
from engines.range_detection import RangeStructure
from engines.range_market import RangeMarket

NEUTRAL_SESSION = SessionAdjustment(enabled=True, rr_multiplier=1.0, stop_tightener=1.0, max_rr=50.0)


@dataclass(frozen=True)
class Signal:
    strategy: str
    side: str  # 'buy' | 'sell'
    confidence: int  # 0..100
    reason: str


@dataclass(frozen=True)
class Setup:
    """A priced signal: entry at ask/bid, stop and target from the strategy's R:R row."""

    signal: Signal
    entry: float
    sl: float
    tp: float
    rr: float
    risk: float  # |entry - sl| (1 R)

    @property
    def strategy(self) -> str:
        return self.signal.strategy

    @property
    def side(self) -> str:
        return self.signal.side


def _rsi_excess(market: RangeMarket, params: RangeScalpParams, side: str) -> float:
    conf = params.confluence
    return conf.rsi_oversold - market.rsi if side == "buy" else market.rsi - conf.rsi_overbought


def _oversold(market: RangeMarket, params: RangeScalpParams) -> bool:
    return math.isfinite(market.rsi) and market.rsi < params.confluence.rsi_oversold


def _overbought(market: RangeMarket, params: RangeScalpParams) -> bool:
    return math.isfinite(market.rsi) and market.rsi > params.confluence.rsi_overbought


def vwap_reversion(market: RangeMarket, range_: RangeStructure, params: RangeScalpParams) -> Signal | None:
    """Price stretched from VWAP (> 0.5 % or > 0.75 ATRe) with RSI at an extreme on the same
    side: fade back toward VWAP. conf = 30 + 20 * distance_ATRe + 0.5 * RSI excess."""
    rules = params.strategies.vwap_reversion
    price, vwap, atr = market.price, market.vwap, market.atr_eff
    if not (math.isfinite(vwap) and atr > 0):
        return None
    distance = abs(price - vwap)
    d_atr = distance / atr
    if not (distance / vwap * 100.0 > rules.deviation_pct or d_atr > rules.deviation_atr):
        return None
    if _oversold(market, params) and price < vwap:
        side = "buy"
    elif _overbought(market, params) and price > vwap:
        side = "sell"
    else:
        return None
    confidence = min(100, int(30 + 20 * d_atr + 0.5 * _rsi_excess(market, params, side)))
    return Signal("vwap_reversion", side, confidence,
                  f"price {d_atr:.2f} ATRe {'below' if side == 'buy' else 'above'} VWAP {vwap:.6g}, RSI {market.rsi:.1f}")


def bb_fade(market: RangeMarket, range_: RangeStructure, params: RangeScalpParams) -> Signal | None:
    """Price at a Bollinger band (within 0.1 %) with RSI at the matching extreme.
    conf = 40 + 0.4 * RSI excess (+20 when volume is drying up: last bar < 0.9 x 1 h mean)."""
    rules = params.strategies.bb_fade
    price = market.price
    if not all(math.isfinite(v) for v in (market.bb_lower, market.bb_middle, market.bb_upper)):
        return None
    tolerance = rules.band_touch_pct / 100.0
    if abs(price - market.bb_lower) / market.bb_lower <= tolerance and _oversold(market, params):
        side, band = "buy", "lower"
    elif abs(price - market.bb_upper) / market.bb_upper <= tolerance and _overbought(market, params):
        side, band = "sell", "upper"
    else:
        return None
    decreasing = market.volume_avg > 0 and market.volume_current < rules.volume_decreasing_ratio * market.volume_avg
    confidence = min(100, int(40 + 0.4 * _rsi_excess(market, params, side) + (20 if decreasing else 0)))
    return Signal("bb_fade", side, confidence,
                  f"at the {band} band, RSI {market.rsi:.1f}{', volume decreasing' if decreasing else ''}")


def _wicks(o: float, h: float, l: float, c: float) -> tuple[float, float, float]:
    """(upper wick, lower wick, body)."""
    return h - max(o, c), min(o, c) - l, abs(c - o)


def pdh_pdl_rejection(market: RangeMarket, range_: RangeStructure, params: RangeScalpParams) -> Signal | None:
    """The previous M5 bar pierced the previous day's high (low) by 0.1 %, the last bar closed
    back below (above) it with a long rejection wick. A buy is checked after a sell and wins.
    conf = 50 + 10 * min(wick/body, 3) + 20 (70 for a body-less bar)."""
    rules = params.strategies.pdh_pdl_rejection
    day = market.previous_day
    m5 = market.m5
    if day is None or len(m5) < 2:
        return None
    p_high, p_low = float(m5.high[-2]), float(m5.low[-2])
    o, h, l, c = (float(a[-1]) for a in (m5.open, m5.high, m5.low, m5.close))
    upper, lower, body = _wicks(o, h, l, c)
    found: Signal | None = None
    brk = rules.break_pct / 100.0
    if p_high > day.high * (1 + brk) and c < day.high and upper > rules.wick_body_ratio * body and c <= range_.high:
        found = Signal("pdh_pdl_rejection", "sell", _rejection_confidence(upper, body),
                       f"PDH {day.high:.6g} pierced to {p_high:.6g} and rejected (close {c:.6g})")
    if p_low < day.low * (1 - brk) and c > day.low and lower > rules.wick_body_ratio * body and c >= range_.low:
        found = Signal("pdh_pdl_rejection", "buy", _rejection_confidence(lower, body),
                       f"PDL {day.low:.6g} pierced to {p_low:.6g} and rejected (close {c:.6g})")
    return found


def _rejection_confidence(wick: float, body: float) -> int:
    if body <= 0:
        return 70
    return min(100, int(50 + 10 * min(wick / body, 3.0) + 20))


def rsi_bounce(market: RangeMarket, range_: RangeStructure, params: RangeScalpParams) -> Signal | None:
    """RSI and both stochastic lines at the same extreme (RSI < 30, %K and %D < 20 for a buy).
    conf = 60 + 0.8 * RSI excess + 0.4 * stochastic excess."""
    rules = params.strategies.rsi_bounce
    k, d = market.stoch_k, market.stoch_d
    if not (math.isfinite(k) and math.isfinite(d)):
        return None
    if _oversold(market, params) and k < rules.stoch_oversold and d < rules.stoch_oversold:
        side, stoch_excess = "buy", rules.stoch_oversold - min(k, d)
    elif _overbought(market, params) and k > rules.stoch_overbought and d > rules.stoch_overbought:
        side, stoch_excess = "sell", min(k, d) - rules.stoch_overbought
    else:
        return None
    confidence = min(100, int(60 + 0.8 * _rsi_excess(market, params, side) + 0.4 * stoch_excess))
    return Signal("rsi_bounce", side, confidence, f"RSI {market.rsi:.1f}, stochastic {k:.0f}/{d:.0f}")


def liquidity_sweep(market: RangeMarket, range_: RangeStructure, params: RangeScalpParams) -> Signal | None:
    """A stop run through the previous day's high (low) by 0.2 % that closed back inside with a
    bearish (bullish) bar or a long wick. conf = 80, 100 when the order flow confirms."""
    rules = params.strategies.liquidity_sweep
    day = market.previous_day
    m5 = market.m5
    if day is None or len(m5) < 3:
        return None
    p_high, p_low = float(m5.high[-2]), float(m5.low[-2])
    o, h, l, c = (float(a[-1]) for a in (m5.open, m5.high, m5.low, m5.close))
    upper, lower, body = _wicks(o, h, l, c)
    brk = rules.break_pct / 100.0
    side = None
    if p_high > day.high * (1 + brk) and c < day.high and (c < o or upper > rules.wick_body_ratio * body):
        side, level = "sell", day.high
    if p_low < day.low * (1 - brk) and c > day.low and (c > o or lower > rules.wick_body_ratio * body):
        side, level = "buy", day.low
    if side is None:
        return None
    confirmed = market.flow is not None and market.flow.confirms(side)
    return Signal("liquidity_sweep", side, 100 if confirmed else 80,
                  f"swept {'PDH' if side == 'sell' else 'PDL'} {level:.6g} and reclaimed"
                  f"{', order flow confirms' if confirmed else ''}")


STRATEGIES: dict[str, Callable[[RangeMarket, RangeStructure, RangeScalpParams], Signal | None]] = {
    "vwap_reversion": vwap_reversion,
    "bb_fade": bb_fade,
    "pdh_pdl_rejection": pdh_pdl_rejection,
    "rsi_bounce": rsi_bounce,
    "liquidity_sweep": liquidity_sweep,
}


def strategy_rules(params: RangeScalpParams, name: str) -> StrategyRules:
    return getattr(params.strategies, name)


def find_signals(market: RangeMarket, range_: RangeStructure, params: RangeScalpParams) -> list[Signal]:
    """Every enabled strategy's signal, in the fixed strategy order."""
    signals = []
    for name, detector in STRATEGIES.items():
        if strategy_rules(params, name).enabled:
            signal = detector(market, range_, params)
            if signal is not None:
                signals.append(signal)
    return signals


def session_adjustment(params: RangeScalpParams, session_key: str, rules: StrategyRules) -> SessionAdjustment:
    if not rules.session_adjusted:
        return NEUTRAL_SESSION
    return getattr(params.sessions.adjustments, session_key)


def build_setup(signal: Signal, market: RangeMarket, params: RangeScalpParams) -> Setup | str:
    """Price a signal (see the module doc). Returns the reason instead when it cannot be
    traded: session disabled, no ATR, or R:R below the strategy minimum."""
    rules = strategy_rules(params, signal.strategy)
    adj = session_adjustment(params, market.session_key, rules)
    if not adj.enabled:
        return f"{signal.strategy}: session '{market.session_key}' is disabled"
    if not (market.atr_eff > 0 and math.isfinite(market.atr_eff)):
        return f"{signal.strategy}: no usable ATR"
    risk = market.atr_eff * rules.stop_atr_mult * adj.stop_tightener
    rr = min(rules.target_rr * adj.rr_multiplier, adj.max_rr, rules.max_rr)
    if rr < rules.min_rr - 1e-9:
        return (f"{signal.strategy}: R:R {rr:.2f} in session '{market.session_key}' is below the "
                f"strategy minimum {rules.min_rr:g}")
    if signal.side == "buy":
        entry = market.quote.ask
        return Setup(signal, entry, entry - risk, entry + risk * rr, rr, risk)
    entry = market.quote.bid
    return Setup(signal, entry, entry + risk, entry - risk * rr, rr, risk)
