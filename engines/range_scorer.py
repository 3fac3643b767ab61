"""Scoring, dynamic weights and conflict resolution of range setups (spec A10).

total (0..100) = entry (confidence x 0.4, capped 40)
               + multi-timeframe (M5/M15/H1 directions agreeing with the side: 3 -> 20,
                 2 -> 12, 1 -> 6)
               + order flow (aligned signal 12, neutral or absent 6, plus 8 when the
                 pressure side agrees; capped 20)
               + session (per session key and strategy, 0..20).
weighted = total x the strategy's weight in the ADX regime's table (low_adx below ADX 15,
normal otherwise); every strategy has an explicit weight (the original gave liquidity_sweep
none, so it silently weighed 1.0 and dominated).

Conflicts: when buy and sell setups both exist, the best of each side is compared on the
TOTAL score. The weighted scores sum-normalised to <= 35 could almost never differ by the
original's 20 points, so the gap is measured where 20 points means something: a gap above
``conflict_min_gap`` keeps the stronger side, otherwise the market is ambiguous and no setup
is proposed (an automatic bot cannot ask a human to choose).
"""
from __future__ import annotations

from dataclasses import dataclass

from config.range_scalp_model import RangeScalpParams
from engines.range_market import RangeMarket
from engines.range_strategies import Setup

_SIDE_SIGN = {"buy": 1, "sell": -1}


@dataclass(frozen=True)
class ScoredSetup:
    setup: Setup
    entry_points: float
    mtf_points: float
    flow_points: float
    session_points: float
    weight: float

    @property
    def total(self) -> float:
        return self.entry_points + self.mtf_points + self.flow_points + self.session_points

    @property
    def weighted(self) -> float:
        return self.total * self.weight

    @property
    def strategy(self) -> str:
        return self.setup.strategy

    @property
    def side(self) -> str:
        return self.setup.side

    def describe(self) -> str:
        return (f"{self.strategy} {self.side}: total {self.total:g} (entry {self.entry_points:g}, "
                f"mtf {self.mtf_points:g}, flow {self.flow_points:g}, session {self.session_points:g}), "
                f"weighted {self.weighted:.2f}")


def mtf_points(side: str, directions: dict[str, int], params: RangeScalpParams) -> float:
    sc = params.scoring
    agree = sum(1 for d in directions.values() if d == _SIDE_SIGN[side])
    return {3: sc.mtf_points_3, 2: sc.mtf_points_2, 1: sc.mtf_points_1}.get(agree, 0.0)


def flow_points(side: str, market: RangeMarket, params: RangeScalpParams) -> float:
    sc = params.scoring
    flow = market.flow
    if flow is None:
        return min(sc.flow_cap, sc.flow_neutral_points)
    if flow.confirms(side):
        points = sc.flow_aligned_points
    elif not flow.is_directional():
        points = sc.flow_neutral_points
    else:
        points = 0.0
    if flow.pressure_with(side):
        points += sc.flow_pressure_points
    return min(sc.flow_cap, points)


def score_setup(setup: Setup, market: RangeMarket, params: RangeScalpParams, regime: str) -> ScoredSetup:
    sc = params.scoring
    table = sc.weights_low_adx if regime == "low_adx" else sc.weights_normal
    session_row = getattr(params.sessions.scores, market.session_key)
    return ScoredSetup(
        setup=setup,
        entry_points=min(sc.entry_cap, float(int(setup.signal.confidence * sc.entry_confidence_factor))),
        mtf_points=mtf_points(setup.side, market.directions, params),
        flow_points=flow_points(setup.side, market, params),
        session_points=float(getattr(session_row, setup.strategy)),
        weight=float(getattr(table, setup.strategy)),
    )


def _rank_key(scored: ScoredSetup) -> tuple[float, float]:
    return (scored.weighted, scored.total)  # stable sort keeps strategy order on full ties


def resolve_conflicts(scored: list[ScoredSetup], params: RangeScalpParams) -> tuple[list[ScoredSetup], str]:
    """Keep the setups that may trade, best first, and say what was decided. An empty list
    with a reason means the buy and sell sides cancelled out."""
    ranked = sorted(scored, key=_rank_key, reverse=True)
    buys = [s for s in ranked if s.side == "buy"]
    sells = [s for s in ranked if s.side == "sell"]
    if not buys or not sells:
        return ranked, "one direction only"
    best_buy, best_sell = buys[0], sells[0]
    gap = abs(best_buy.total - best_sell.total)
    if gap > params.scoring.conflict_min_gap:
        winner = buys if best_buy.total > best_sell.total else sells
        return winner, (f"buy {best_buy.total:g} vs sell {best_sell.total:g}: gap {gap:g} > "
                        f"{params.scoring.conflict_min_gap:g}, {winner[0].side} kept")
    return [], (f"conflict: best buy {best_buy.strategy} {best_buy.total:g} vs best sell "
                f"{best_sell.strategy} {best_sell.total:g}, gap {gap:g} <= {params.scoring.conflict_min_gap:g}")
