"""A faster ``__init__`` for frozen dataclasses built many times per bar.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``
(about 0.3 µs a field), and some of these objects (bar and tick series, quotes, decisions,
regime scores) are built several times per bar: in a backtest, hundreds of thousands of times.
``direct_init`` swaps in an ``__init__`` with the same signature, defaults and default
factories that writes the fields straight into the instance dict. Everything else stays the
dataclass's own: equality, hash, repr, ``dataclasses.replace``, and the refusal to assign.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


class _Factory:
    """The default of a parameter whose field has a ``default_factory``."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def direct_init(cls: type[T]) -> type[T]:
    """Give frozen dataclass ``cls`` an ``__init__`` writing its fields into ``__dict__``.

    Refused (TypeError) for what it does not reproduce: ``__post_init__``, ``__slots__``,
    init-less or keyword-only fields."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__ \
            or any(not f.init or f.kw_only for f in fields):
        raise TypeError(f"direct_init cannot reproduce the generated __init__ of {cls.__name__}")
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    params, lines = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            lines.append(f"    d[{f.name!r}] = {f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            lines.append(f"    d[{f.name!r}] = _factory_{f.name}() if {f.name} is _FACTORY else {f.name}")
        else:
            params.append(f.name)
            lines.append(f"    d[{f.name!r}] = {f.name}")
    source = f"def __init__(self, {', '.join(params)}):\n    d = self.__dict__\n" + "\n".join(lines or ["    pass"])
    exec(source, namespace)  # noqa: S102 - generated from the field names only, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[misc]
    return cls
