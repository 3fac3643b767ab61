"""The config a backtest runs with: the operator's files plus the few changes a replay needs.

The run gets its own copy of the config folder (``<report>/config/``), so a report always says
exactly which settings produced it. Changes made to the copy, each listed in ``report.json``
under ``config_overrides``:

- ``bot.json``: ``symbols`` are the backtest's symbols (category kept where the operator's file
  has one); ``mt5.server_utc_offset_hours`` is the simulated server's offset (the adapter then
  converts exactly instead of measuring from ticks); ``sim.symbol_suffix`` is empty; with
  ``--balance``, ``sim.starting_balance``.
- each strategy file: ``enabled`` is true for the strategies asked for (``--strategies``) and
  false for the others; ``symbols`` are the backtest's symbols (their per-symbol overrides kept,
  those of other symbols left out: the loader refuses overrides of unlisted symbols).
- ``range_scalp.json``: ``execution.auto_execute`` is true (defaults and every override): with it
  off the live bot only sends signals, and a backtest shows what the signals would have done.
- ``order_flow.json``: ``binance.enabled`` is false (a replay has no exchange tape; order flow
  comes from the simulated terminal's ticks through the tick proxy, as in the live sim).

Everything else (risk, execution, every strategy parameter) is the operator's.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from config.loader import CONFIG_FILES, ConfigError, ConfigSnapshot, load_config, read_json_file

STRATEGY_NAMES = {"micro": "micro_scalp", "range": "range_scalp", "flow": "order_flow"}
EXTRA_FILES = ("news.json",)


def parse_strategies(text: str) -> list[str]:
    """``micro,range,flow`` (short or full names) -> full names, in the canonical order."""
    wanted = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        name = STRATEGY_NAMES.get(part, part)
        if name not in STRATEGY_NAMES.values():
            raise ValueError(f"unknown strategy {part!r}; expected micro, range, flow (or their full names)")
        wanted.add(name)
    if not wanted:
        raise ValueError("no strategy selected; expected e.g. micro,range,flow")
    return [name for name in STRATEGY_NAMES.values() if name in wanted]


def prepare_config(source_dir: Path, target_dir: Path, symbols: Sequence[str], strategies: Sequence[str],
                   starting_balance: float | None = None) -> tuple[ConfigSnapshot, list[str]]:
    """Copy ``source_dir`` to ``target_dir`` with the backtest's changes; validate it.

    Returns the snapshot and the list of changes made. Raises ``ConfigError`` (file, key,
    problem) when the operator's files, or the changed copy, do not validate."""
    raw: dict[str, dict[str, Any]] = {}
    problems = []
    for name in CONFIG_FILES:
        data, _, file_problems = read_json_file(Path(source_dir) / name)
        problems.extend(file_problems)
        if data is not None:
            raw[name] = data
    if problems:
        raise ConfigError(problems)
    changed, overrides = apply_backtest_changes(raw, symbols, strategies, starting_balance)
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    for name, data in changed.items():
        (target_dir / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for name in EXTRA_FILES:
        if (Path(source_dir) / name).is_file():
            shutil.copyfile(Path(source_dir) / name, target_dir / name)
    return load_config(target_dir), overrides


def apply_backtest_changes(raw: dict[str, dict[str, Any]], symbols: Sequence[str], strategies: Sequence[str],
                           starting_balance: float | None = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The changes of the module docstring, on parsed files (pure; returns new dicts)."""
    out = copy.deepcopy(raw)
    overrides: list[str] = []
    bot = out["bot.json"]
    old_symbols = bot.get("symbols") or {}
    bot["symbols"] = {s: {"broker_symbol": s, "category": (old_symbols.get(s) or {}).get("category", "other")}
                      for s in symbols}
    overrides.append(f"bot.json: symbols = {', '.join(symbols)}")
    sim = bot.setdefault("sim", {})
    offset = sim.get("server_utc_offset_hours", 2.0)
    bot.setdefault("mt5", {})["server_utc_offset_hours"] = offset
    overrides.append(f"bot.json: mt5.server_utc_offset_hours = {offset:g} (the simulated server's)")
    if sim.get("symbol_suffix"):
        overrides.append("bot.json: sim.symbol_suffix = '' (was %r)" % sim["symbol_suffix"])
    sim["symbol_suffix"] = ""
    if starting_balance is not None:
        sim["starting_balance"] = starting_balance
        overrides.append(f"bot.json: sim.starting_balance = {starting_balance:g}")
    for name in STRATEGY_NAMES.values():
        data = out[f"{name}.json"]
        on = name in strategies
        if bool(data.get("enabled", True)) != on:
            overrides.append(f"{name}.json: enabled = {str(on).lower()}")
        data["enabled"] = on
        data["symbols"] = list(symbols)
        overrides.append(f"{name}.json: symbols = {', '.join(symbols)}")
        others = sorted(s for s in (data.get("overrides") or {}) if s not in symbols)
        for symbol in others:
            del data["overrides"][symbol]
        if others:
            overrides.append(f"{name}.json: overrides of {', '.join(others)} left out (not backtested)")
    range_cfg = out["range_scalp.json"]
    if "range_scalp" in strategies:
        turned_on = False
        defaults = range_cfg.setdefault("defaults", {})
        if not defaults.setdefault("execution", {}).get("auto_execute", False):
            turned_on = True
        defaults["execution"]["auto_execute"] = True
        for symbol, override in (range_cfg.get("overrides") or {}).items():
            execution = override.get("execution") if isinstance(override, dict) else None
            if isinstance(execution, dict) and execution.get("auto_execute") is False:
                execution["auto_execute"] = True
                turned_on = True
        if turned_on:
            overrides.append("range_scalp.json: execution.auto_execute = true (signals are executed)")
    flow_cfg = out["order_flow.json"]
    binance = flow_cfg.get("binance")
    if isinstance(binance, dict):
        if binance.get("enabled", False):
            binance["enabled"] = False
            overrides.append("order_flow.json: binance.enabled = false (flow from the replayed ticks)")
        mapped = binance.get("symbols")
        if isinstance(mapped, dict):
            dropped = sorted(s for s in mapped if s not in symbols)
            for symbol in dropped:
                del mapped[symbol]
            if dropped:
                overrides.append(f"order_flow.json: binance.symbols of {', '.join(dropped)} left out (not backtested)")
    return out, overrides


__all__ = ["prepare_config", "apply_backtest_changes", "parse_strategies", "STRATEGY_NAMES", "ConfigError"]
