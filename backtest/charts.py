"""``equity.png`` (equity and drawdown) and ``r_distribution.png`` (R per trade), with matplotlib.

The Agg backend is selected before pyplot is imported: no display is needed, on any OS. Several
segments (recordings of different periods) are drawn side by side on one axis of replayed
market time, each labelled with its symbols and dates, so years between them take no room.
"""
from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from state.store import atomic_write_bytes  # noqa: E402

MAX_POINTS = 5000
STRATEGY_COLOURS = {"micro_scalp": "#1f77b4", "range_scalp": "#2ca02c", "order_flow": "#d62728"}


def _save(fig: Any, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue(), keep_backup=False)


def _thin(n: int) -> np.ndarray:
    """Indices of at most MAX_POINTS samples, the first and last always kept."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.r_[np.linspace(0, n - 1, MAX_POINTS).astype(int), n - 1])


def equity_chart(segments: Sequence[dict[str, Any]], path: Path, currency: str = "USD") -> None:
    """``segments``: dicts with ``time`` (epoch s), ``equity``, ``balance`` arrays and ``label``."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    single = len(segments) == 1
    offset_days = 0.0
    peak = -np.inf
    for number, seg in enumerate(segments):
        t = np.asarray(seg["time"], dtype=float)
        equity = np.asarray(seg["equity"], dtype=float)
        balance = np.asarray(seg["balance"], dtype=float)
        if not len(t):
            continue
        running = np.maximum.accumulate(np.r_[peak, equity])[1:]
        peak = running[-1]
        drawdown = np.where(running > 0, (equity - running) / running * 100.0, 0.0)
        keep = _thin(len(t))
        if single:
            x = [datetime.fromtimestamp(v, tz=timezone.utc) for v in t[keep]]
        else:
            x = offset_days + (t[keep] - t[0]) / 86400.0
        top.plot(x, equity[keep], color="#1f77b4", linewidth=1.0, label="equity" if number == 0 else None)
        top.plot(x, balance[keep], color="#7f7f7f", linewidth=0.8, linestyle="--",
                 label="balance" if number == 0 else None)
        bottom.fill_between(x, drawdown[keep], 0, color="#d62728", alpha=0.35, linewidth=0)
        if not single:
            top.axvline(offset_days, color="black", linewidth=0.6, linestyle=":")
            top.text(offset_days, 1.01, seg["label"], transform=top.get_xaxis_transform(), fontsize=7,
                     va="bottom", ha="left")
            offset_days += (t[-1] - t[0]) / 86400.0
    top.set_ylabel(f"equity ({currency})")
    top.legend(loc="best", fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_ylabel("drawdown (%)")
    bottom.grid(alpha=0.3)
    bottom.set_xlabel("time (UTC)" if single else "replayed market time (days; segments side by side)")
    if single:
        fig.autofmt_xdate()
    else:
        fig.subplots_adjust(top=0.9)
    top.set_title("Equity and drawdown" + ("" if single else "\n"), fontsize=10)
    _save(fig, path)


def r_distribution_chart(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Histogram of R per closed trade, stacked by strategy, with the mean of each."""
    fig, ax = plt.subplots(figsize=(9, 5))
    by_strategy: dict[str, list[float]] = {}
    for row in rows:
        if row["r"] is not None:
            by_strategy.setdefault(row["strategy"], []).append(float(row["r"]))
    values = [v for vs in by_strategy.values() for v in vs]
    if not values:
        ax.text(0.5, 0.5, "no closed trades", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        lo, hi = np.floor(min(values + [-1.0]) * 4) / 4, np.ceil(max(values + [1.0]) * 4) / 4
        width = max(0.25, np.ceil((hi - lo) / 60 * 4) / 4)  # quarter-R bins, at most about 60 of them
        bins = np.arange(lo, hi + width, width)
        names = sorted(by_strategy)
        ax.hist([by_strategy[n] for n in names], bins=bins, stacked=True,
                color=[STRATEGY_COLOURS.get(n, "#9467bd") for n in names],
                label=[f"{n} ({len(by_strategy[n])}, mean {np.mean(by_strategy[n]):+.2f} R)" for n in names])
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.axvline(float(np.mean(values)), color="#ff7f0e", linewidth=1.2, linestyle="--",
                   label=f"all: mean {np.mean(values):+.2f} R")
        ax.set_xlabel("R per trade (move in the trade's favour / initial stop distance)")
        ax.set_ylabel("trades")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax.set_title("R distribution", fontsize=10)
    _save(fig, path)
