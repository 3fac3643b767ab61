"""Shared building blocks of the typed config: strict models and per-symbol overrides."""
from __future__ import annotations

import weakref
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


_merged_params: dict[int, dict[str, Any]] = {}  # id(strategy config) -> symbol -> merged parameters


def merged_params(config: BaseModel, symbol: str, build: Callable[[], Any]) -> Any:
    """``build()``'s result for ``(config, symbol)``, built once per config object.

    Merging and re-validating a symbol's overrides costs about 50 µs and monitors ask at every
    step; a config snapshot is immutable (a reload makes new objects), so the result can be kept
    as long as the config object lives. Keyed by ``id``: the entry is dropped when the object dies,
    before its id can be reused. A private attribute would do, but pydantic compares and copies
    those with the model (``model_copy`` would share the cache, ``==`` would see it)."""
    key = id(config)
    cache = _merged_params.get(key)
    if cache is None:
        cache = _merged_params[key] = {}
        weakref.finalize(config, _merged_params.pop, key, None)
    params = cache.get(symbol)
    if params is None:
        params = cache[symbol] = build()
    return params


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must never silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SymbolParams(StrictModel):
    """Per-symbol parameters of a strategy. Strategies subclass this with their own keys."""

    enabled: bool = True


class StrategyConfig(StrictModel):
    """One strategy file: switches, cadence, symbols, default parameters and per-symbol overrides.

    ``overrides`` hold only the keys that differ for a symbol; ``for_symbol`` merges them onto
    ``defaults`` and the merged result is validated too, so cross-field rules hold per symbol.
    Subclasses narrow ``defaults`` and ``overrides`` to their own ``SymbolParams`` subclass.
    """

    params_model: ClassVar[type[SymbolParams]] = SymbolParams

    enabled: bool = False
    interval_seconds: float = Field(5.0, ge=0.5, le=3600)
    symbols: list[str] = Field(default_factory=list)
    defaults: SymbolParams = Field(default_factory=SymbolParams)
    overrides: dict[str, SymbolParams] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _overrides_name_configured_symbols(self) -> "StrategyConfig":
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols: each symbol may appear only once")
        unknown = sorted(set(self.overrides) - set(self.symbols))
        if unknown:
            raise ValueError(f"overrides for symbols not listed in 'symbols': {', '.join(unknown)}")
        for symbol in self.overrides:
            try:
                self.for_symbol(symbol)  # merged parameters must satisfy the model's own rules
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
                    for err in exc.errors())
                raise ValueError(f"overrides.{symbol} merged with defaults is invalid: {problems}") from None
        return self

    def for_symbol(self, symbol: str) -> Any:
        """The parameters in force for ``symbol``: defaults with that symbol's overrides on top."""
        override = self.overrides.get(symbol)
        if override is None:
            return self.defaults
        return merged_params(self, symbol, lambda: self._merge(override))

    def _merge(self, override: SymbolParams) -> Any:
        merged = self.defaults.model_dump()
        merged.update({key: getattr(override, key) for key in override.model_fields_set})
        return type(self.defaults).model_validate(merged)

    def active_symbols(self) -> list[str]:
        """Symbols this strategy should trade now (strategy on, symbol listed and enabled)."""
        if not self.enabled:
            return []
        return [s for s in self.symbols if self.for_symbol(s).enabled]
