"""Reading and validating the config folder into one immutable snapshot.

Every problem becomes one line naming the file, the key path and what was expected, so the
same text serves ``check-config``, a refused start and a rejected hot reload.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from config.micro_scalp_model import MicroScalpConfig
from config.models import BotConfig
from config.order_flow_model import OrderFlowConfig
from config.range_scalp_model import RangeScalpConfig

MAX_CONFIG_BYTES = 1_000_000
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent

# file name -> (snapshot attribute, model)
CONFIG_FILES: dict[str, tuple[str, type[BaseModel]]] = {
    "bot.json": ("bot", BotConfig),
    "micro_scalp.json": ("micro_scalp", MicroScalpConfig),
    "range_scalp.json": ("range_scalp", RangeScalpConfig),
    "order_flow.json": ("order_flow", OrderFlowConfig),
}
STRATEGY_FILES = ("micro_scalp.json", "range_scalp.json", "order_flow.json")

# Keys that cannot change safely while running: "file:key.path" glob patterns.
RESTART_KEYS = (
    "bot.json:mode",
    "bot.json:broker",
    "bot.json:symbols.*.broker_symbol",
    "bot.json:sim.*",
    "bot.json:mt5.*",
    "bot.json:execution.magic_base",
    "bot.json:notifications.queue_size",
    "bot.json:logging.file_*",
    "bot.json:logging.console",
    "order_flow.json:binance.*",
    "order_flow.json:flow.*",
)


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    key: str
    message: str

    def __str__(self) -> str:
        key = self.key or "(file)"
        return f"{self.file}: {key}: {self.message}"


class ConfigError(Exception):
    """One or more config files are invalid; ``problems`` has one entry per problem."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class ConfigSnapshot:
    """Every config file, validated, at one instant. Never mutated: a reload makes a new one."""

    bot: BotConfig
    micro_scalp: MicroScalpConfig
    range_scalp: RangeScalpConfig
    order_flow: OrderFlowConfig
    raw: dict[str, dict[str, Any]]
    digests: dict[str, str]
    version: int = 1
    loaded_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def strategy(self, name: str) -> Any:
        return getattr(self, name)


def _format_value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def problems_from_validation(file: str, exc: ValidationError) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see README for the keys this file takes)"
        elif err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], dict):
            message = f"{message} (got {_format_value(err['input'])})"
        problems.append(ConfigProblem(file, key, message))
    return problems


def read_json_file(path: Path) -> tuple[dict[str, Any] | None, str, list[ConfigProblem]]:
    """Read one config file: (data, sha256 of bytes, problems). Never raises for bad content."""
    name = path.name
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None, "", [ConfigProblem(name, "", f"file not found in {path.parent}")]
    except OSError as exc:
        return None, "", [ConfigProblem(name, "", f"cannot read the file: {exc.strerror or exc}")]
    digest = hashlib.sha256(blob).hexdigest()
    if len(blob) > MAX_CONFIG_BYTES:
        return None, digest, [ConfigProblem(
            name, "", f"file is {len(blob) / 1e6:.1f} MB; a config file may be at most "
                      f"{MAX_CONFIG_BYTES / 1e6:.0f} MB")]
    try:
        text = blob.decode("utf-8-sig")  # Windows Notepad may write a BOM: accept it
    except UnicodeDecodeError as exc:
        return None, digest, [ConfigProblem(name, "", f"not UTF-8 text (bad byte at offset {exc.start})")]
    if not text.strip():
        return None, digest, [ConfigProblem(name, "", "file is empty; expected a JSON object")]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, digest, [ConfigProblem(
            name, "", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]
    if not isinstance(data, dict):
        return None, digest, [ConfigProblem(name, "", f"expected a JSON object, found {type(data).__name__}")]
    return data, digest, []


def validate_raw(raw: dict[str, dict[str, Any]]) -> tuple[dict[str, BaseModel], list[ConfigProblem]]:
    """Validate already-parsed files, including the rules that span files."""
    models: dict[str, BaseModel] = {}
    problems: list[ConfigProblem] = []
    for name, (_, model) in CONFIG_FILES.items():
        if name not in raw:
            continue
        try:
            models[name] = model.model_validate(raw[name])
        except ValidationError as exc:
            problems.extend(problems_from_validation(name, exc))
    bot = models.get("bot.json")
    if isinstance(bot, BotConfig):
        for name in STRATEGY_FILES:
            strategy = models.get(name)
            if strategy is None:
                continue
            for index, symbol in enumerate(strategy.symbols):  # type: ignore[attr-defined]
                if symbol not in bot.symbols:
                    problems.append(ConfigProblem(
                        name, f"symbols.{index}",
                        f"'{symbol}' is not configured in bot.json 'symbols' "
                        f"(known: {', '.join(sorted(bot.symbols))})"))
    return models, problems


def load_config(config_dir: Path = DEFAULT_CONFIG_DIR, version: int = 1) -> ConfigSnapshot:
    """Read and validate every config file; raise ConfigError listing every problem."""
    config_dir = Path(config_dir)
    raw: dict[str, dict[str, Any]] = {}
    digests: dict[str, str] = {}
    problems: list[ConfigProblem] = []
    for name in CONFIG_FILES:
        data, digest, file_problems = read_json_file(config_dir / name)
        problems.extend(file_problems)
        digests[name] = digest
        if data is not None:
            raw[name] = data
    models, validation_problems = validate_raw(raw)
    problems.extend(validation_problems)
    if problems:
        raise ConfigError(problems)
    return build_snapshot(raw, models, digests, version)


def build_snapshot(raw: dict[str, dict[str, Any]], models: dict[str, BaseModel],
                   digests: dict[str, str], version: int) -> ConfigSnapshot:
    kwargs = {attr: models[name] for name, (attr, _) in CONFIG_FILES.items()}
    return ConfigSnapshot(raw=copy.deepcopy(raw), digests=dict(digests), version=version, **kwargs)


# ----------------------------------------------------------------------------------- diffs

_MISSING = object()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are leaves (they are compared whole)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


@dataclass(frozen=True)
class Change:
    file: str
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        old = "(unset)" if self.old is _MISSING else _format_value(self.old)
        new = "(unset)" if self.new is _MISSING else _format_value(self.new)
        return f"{self.file}: {self.key}: {old} -> {new}"

    @property
    def needs_restart(self) -> bool:
        target = f"{self.file}:{self.key}"
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in RESTART_KEYS)


def diff_raw(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[Change]:
    changes: list[Change] = []
    for name in CONFIG_FILES:
        before, after = flatten(old.get(name, {})), flatten(new.get(name, {}))
        for key in sorted(set(before) | set(after)):
            a, b = before.get(key, _MISSING), after.get(key, _MISSING)
            if a != b:
                changes.append(Change(name, key, a, b))
    return changes


def revert_keys(new: dict[str, dict[str, Any]], old: dict[str, dict[str, Any]],
                changes: list[Change]) -> dict[str, dict[str, Any]]:
    """Return ``new`` with the given changed keys put back to their ``old`` values."""
    result = copy.deepcopy(new)
    for change in changes:
        parts = change.key.split(".")
        target = result.setdefault(change.file, {})
        for part in parts[:-1]:
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                target[part] = nxt
            target = nxt
        if change.old is _MISSING:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = copy.deepcopy(change.old)
    return result
