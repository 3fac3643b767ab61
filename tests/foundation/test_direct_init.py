"""engines.frozen.direct_init: the same object as the generated frozen __init__ builds."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from engines.frozen import direct_init


@dataclass(frozen=True)
class Plain:
    name: str
    size: float = 1.5
    tags: dict = field(default_factory=dict)


@direct_init
@dataclass(frozen=True)
class Direct:
    name: str
    size: float = 1.5
    tags: dict = field(default_factory=dict)


@pytest.mark.parametrize("args, kwargs", [(("a",), {}), (("a", 2.0), {}), (("a",), {"tags": {"k": 1}}),
                                          ((), {"name": "b", "size": 0.0})])
def test_fields_defaults_and_factories_match_the_generated_init(args, kwargs):
    plain, direct = Plain(*args, **kwargs), Direct(*args, **kwargs)
    assert dataclasses.asdict(plain) == dataclasses.asdict(direct)
    assert repr(direct) == repr(plain).replace("Plain", "Direct")


def test_each_instance_gets_its_own_factory_default_and_stays_frozen():
    first, second = Direct("a"), Direct("a")
    assert first.tags == {} and first.tags is not second.tags
    assert first == second
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.size = 3.0  # type: ignore[misc]
    assert dataclasses.replace(first, size=3.0) == Direct("a", 3.0)


def test_wrong_arguments_fail_as_they_would_with_the_generated_init():
    with pytest.raises(TypeError):
        Direct()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Direct("a", colour="red")  # type: ignore[call-arg]


def test_classes_it_cannot_reproduce_are_refused():
    @dataclass(frozen=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="Checked"):
        direct_init(Checked)
    with pytest.raises(TypeError, match="not a dataclass"):
        direct_init(int)


def test_the_instance_dict_holds_the_fields_in_order_as_the_generated_init_leaves_it():
    plain, direct = Plain("a", 2.0), Direct("a", 2.0)
    assert list(vars(direct).items()) == list(vars(plain).items()) == [("name", "a"), ("size", 2.0), ("tags", {})]


def test_any_field_name_but_the_generated_code_s_own_is_taken():
    @direct_init
    @dataclass(frozen=True)
    class Short:
        d: int      # (the writes into ``d = self.__dict__`` of the first version shadowed this one)
        cls: str = "x"

    assert vars(Short(1)) == {"d": 1, "cls": "x"} and Short(1) == Short(1, "x")
    for reserved in ("self", "_set", "_FACTORY"):
        with pytest.raises(TypeError, match="Reserved"):
            direct_init(dataclass(frozen=True)(type("Reserved", (), {"__annotations__": {reserved: int}})))
