"""What engines hand to the shell: small immutable decisions that carry their reasons."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Side = Literal["buy", "sell"]


@dataclass(frozen=True)
class TradeIdea:
    """A proposed market entry. ``entry`` is the price the engine assumed (ask for a buy, bid
    for a sell); the executor re-validates it against a fresh quote before sending."""

    symbol: str
    side: Side
    entry: float
    sl: float
    tp: float
    strategy: str
    reasons: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', not {self.side!r}")
        if self.side == "buy" and not (self.sl < self.entry < self.tp):
            raise ValueError(f"buy idea needs sl < entry < tp, got sl={self.sl} entry={self.entry} tp={self.tp}")
        if self.side == "sell" and not (self.tp < self.entry < self.sl):
            raise ValueError(f"sell idea needs tp < entry < sl, got sl={self.sl} entry={self.entry} tp={self.tp}")

    @property
    def risk_distance(self) -> float:
        return abs(self.entry - self.sl)


@dataclass(frozen=True)
class Decision:
    """An engine's answer for one symbol at one time: an idea or None, and always the reasons
    (which layer or gate passed or failed) so an operator can see why."""

    symbol: str
    idea: TradeIdea | None
    reasons: tuple[str, ...] = ()
    failed: str | None = None  # the first failing layer or gate, for "why no trade" summaries
    meta: dict[str, Any] = field(default_factory=dict)
