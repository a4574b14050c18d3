"""taskplan.dataclass against the standard decorator: the same classes, defined both ways,
must compare, hash, print, copy and pickle alike."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from taskplan import dataclass as ours
from taskplan.model import JobSpec, TaskSpec
from taskplan.store.claims import Claim

# A module-level alias: the standard decorator recognises InitVar under string annotations
# by looking names up in the class's module.
Alias = dataclasses.InitVar

Decorator = Callable[..., Any]


def _define(decorate: Decorator) -> dict[str, Any]:
    """The same set of classes, made by `decorate`."""

    @decorate(frozen=True)
    class Point:
        x: int
        y: int = 0
        note: str = dataclasses.field(default="", compare=False, repr=False)

    @decorate
    class Box:
        items: list[Any] = dataclasses.field(default_factory=list)
        label: str | None = None

    @decorate(frozen=True)
    class One:
        only: tuple[int, ...]

    @decorate(frozen=True)
    class Empty:
        pass

    @decorate(frozen=True)
    class OwnMethods:
        a: int

        def __eq__(self, other: object) -> bool:
            return isinstance(other, OwnMethods)

        def __repr__(self) -> str:
            return "mine"

    @decorate(frozen=True)
    class HashField:
        a: int
        b: int = dataclasses.field(default=0, hash=False)

    @decorate(repr=False, eq=False)
    class Bare:
        a: int

    @decorate
    class Late:
        a: int
        made: list[int] = dataclasses.field(default_factory=list, init=False)
        fixed: int = dataclasses.field(default=7, init=False)
        seen: list[int] = dataclasses.field(default_factory=list)

        def __post_init__(self) -> None:
            self.made.append(self.a)

    @decorate(frozen=True)
    class Frozen:
        a: int
        b: tuple[int, ...] = ()
        c: dict[str, int] = dataclasses.field(default_factory=dict)

    return {c.__name__: c for c in (Point, Box, One, Empty, OwnMethods, HashField, Bare, Late,
                                    Frozen)}


STD = _define(dataclasses.dataclass)
OURS = _define(ours.dataclass)


def _both(name: str) -> tuple[Any, Any]:
    return STD[name], OURS[name]


@pytest.mark.parametrize("args", [(1,), (1, 2), (3, 4)])
def test_equality_hash_and_repr_match_the_standard_decorator(args: tuple[int, ...]) -> None:
    std, mine = _both("Point")
    a, b = std(*args), mine(*args)
    assert (a == std(*args)) == (b == mine(*args)) is True
    assert (a == std(9)) == (b == mine(9)) is False
    assert hash(a) == hash(b)
    assert repr(a).replace(std.__qualname__, "X") == repr(b).replace(mine.__qualname__, "X")
    # Fields left out of comparison and repr stay out.
    assert mine(*args, note="n") == mine(*args)
    assert "note" not in repr(mine(*args, note="n"))


def test_instances_of_other_classes_are_never_equal() -> None:
    std, mine = _both("Point")
    assert mine(1) != std(1)
    assert mine(1).__eq__(std(1)) is NotImplemented
    assert mine(1) != (1, 0)


def test_mutable_classes_compare_but_are_unhashable() -> None:
    std, mine = _both("Box")
    assert mine([1], "a") == mine([1], "a") and mine([1]) != mine([2])
    assert std.__hash__ is None and mine.__hash__ is None
    with pytest.raises(TypeError):
        hash(mine())
    assert repr(mine([1], "a")).endswith("Box(items=[1], label='a')")


def test_one_field_and_no_field() -> None:
    for name, args in (("One", ((1, 2),)), ("Empty", ())):
        std, mine = _both(name)
        assert hash(std(*args)) == hash(mine(*args))
        assert mine(*args) == mine(*args)
        assert repr(mine(*args)).endswith(repr(std(*args)).split(".")[-1])


def test_a_class_keeps_the_methods_it_defines() -> None:
    std, mine = _both("OwnMethods")
    assert repr(mine(1)) == repr(std(1)) == "mine"
    assert mine(1) == mine(2) and std(1) == std(2)
    # Frozen with its own __eq__: hashed by its fields, as the standard decorator does.
    assert hash(mine(5)) == hash(std(5))


def test_hash_false_fields_are_left_out_of_the_hash_only() -> None:
    std, mine = _both("HashField")
    assert hash(mine(1, 2)) == hash(std(1, 2)) == hash(mine(1, 3))
    assert mine(1, 2) != mine(1, 3)


def test_without_repr_and_eq_the_object_defaults_remain() -> None:
    _, mine = _both("Bare")
    a = mine(1)
    assert a != mine(1) and a == a
    assert repr(a).startswith("<")


def test_frozen_replace_fields_and_pickle() -> None:
    _, mine = _both("Point")
    p = mine(1, 2, note="n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5
    assert dataclasses.replace(p, x=7) == mine(7, 2)
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "note"]
    assert dataclasses.asdict(p) == {"x": 1, "y": 2, "note": "n"}
    # Classes of taskplan's own, as the checked-file cache and the agents use them.
    claim = Claim(1, 2, 3, "t", "task", {"k": [1]}, 1, 3, None, None, None)
    assert pickle.loads(pickle.dumps(claim)) == claim
    spec = JobSpec(name="j", tasks=(TaskSpec(name="a", kind="shell", command="true"),))
    assert pickle.loads(pickle.dumps(spec)) == spec
    plain = Claim(1, 2, 3, "t", "task", "x", 1, 3, None, None, None)
    again = dataclasses.replace(plain)
    assert hash(plain) == hash(again) and {plain: 1}[again] == 1
    with pytest.raises(TypeError):  # a dict among the fields: as with the standard decorator
        hash(spec.tasks[0])


def test_a_repr_that_reaches_itself_stops() -> None:
    _, mine = _both("Box")
    box = mine()
    box.items.append(box)
    assert repr(box).endswith("Box(items=[...], label=None)")


def test_order_and_unsafe_hash_go_to_the_standard_decorator() -> None:
    @ours.dataclass(order=True)
    class Ranked:
        a: int

    @ours.dataclass(unsafe_hash=True)
    class Keyed:
        a: int

    assert Ranked(1) < Ranked(2)
    assert hash(Keyed(1)) == hash(Keyed(1))


def _outcome(make: Callable[[], Any]) -> tuple[str, Any]:
    """What a call gives: its value, or the type of the error it raises."""
    try:
        return "value", make()
    except Exception as exc:
        return "error", type(exc).__name__


@pytest.mark.parametrize("name", ["Point", "Box", "Late", "Frozen", "Empty"])
@pytest.mark.parametrize("args, kwargs", [
    ((), {}), ((1,), {}), ((1, 2), {}), ((1, 2, "n"), {}), ((1, 2, "n", 4), {}), ((), {"x": 1}),
    ((1,), {"y": 2}), ((1,), {"x": 2}), ((), {"a": 1}), ((1,), {"b": (2,)}),
    ((), {"a": 1, "seen": [3]}), ((), {"nope": 1}), ((1,), {"made": [1]}),
], ids=repr)
def test_init_takes_and_refuses_the_same_arguments(name: str, args: tuple[Any, ...],
                                                   kwargs: dict[str, Any]
                                                   ) -> None:
    std, mine = _both(name)
    kw = kwargs
    got_std, got_mine = _outcome(lambda: std(*args, **kw)), _outcome(lambda: mine(*args, **kw))
    assert got_std[0] == got_mine[0], (got_std, got_mine)
    if got_std[0] == "error":
        assert got_std[1] == got_mine[1]
    else:
        assert dataclasses.asdict(got_std[1]) == dataclasses.asdict(got_mine[1])


def test_defaults_factories_and_post_init_as_the_standard_decorator() -> None:
    std, mine = _both("Late")
    a, b = mine(1), mine(2)
    assert (a.made, a.fixed, a.seen) == ([1], 7, []) and b.made == [2]
    assert a.made is not b.made and a.seen is not b.seen  # one new list per instance
    assert "fixed" not in a.__dict__ and std(1).__dict__.keys() == a.__dict__.keys()
    shared = [5]
    assert mine(3, seen=shared).seen is shared
    # The real __init__ replaced the stand-in at the first instance: the same signature.
    import inspect

    assert str(inspect.signature(mine)) == str(inspect.signature(std))
    assert mine.__init__.__qualname__.endswith("Late.__init__")


def test_frozen_fields_cannot_be_set_or_deleted() -> None:
    std, mine = _both("Frozen")
    for cls in (std, mine):
        obj = cls(1)
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
            obj.a = 2
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'a'"):
            del obj.a
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.other = 1
        assert obj.a == 1 and obj.c == {} and obj.b == ()
    assert mine(1, (2,), {"k": 1}) == mine(a=1, b=(2,), c={"k": 1})
    assert dataclasses.fields(mine)[2].name == "c"
    assert mine.__dataclass_params__.frozen is True


def test_a_default_before_a_required_field_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        @ours.dataclass
        class Wrong:
            a: int = 0
            b: int  # type: ignore[misc]


def test_classes_beyond_plain_fields_go_to_the_standard_decorator() -> None:
    @ours.dataclass
    class WithInitVar:
        a: int
        scale: dataclasses.InitVar[int] = 1

        def __post_init__(self, scale: int) -> None:
            self.a *= scale

    @ours.dataclass(frozen=True)
    class WithClassVar:
        kind: ClassVar[str] = "k"
        a: int = 0

    @ours.dataclass(frozen=True)
    class Child(WithClassVar):
        b: int = 1

    assert WithInitVar(2, 3).a == 6
    assert WithClassVar(1) == WithClassVar(1) and WithClassVar.kind == "k"
    assert [f.name for f in dataclasses.fields(WithClassVar)] == ["a"]
    assert Child(1, 2).b == 2 and [f.name for f in dataclasses.fields(Child)] == ["a", "b"]


def test_hot_classes_have_their_init_before_any_instance() -> None:
    import inspect

    @ours.dataclass(frozen=True, hot=True)
    class Hot:
        a: int
        b: list[int] = dataclasses.field(default_factory=list)

    @ours.dataclass(frozen=True)
    class Cold:
        a: int
        b: list[int] = dataclasses.field(default_factory=list)

    # The hot one's signature is the real one already; the cold one's is its stand-in's.
    assert str(inspect.signature(Hot)) == "(a: 'int', b: 'list[int]' = <factory>) -> None"
    assert str(inspect.signature(Cold)).startswith("(*args: 'Any', **kwargs: 'Any')")
    assert Hot(1) == Hot(1, []) and Cold(1) == Cold(1, [])
    assert str(inspect.signature(Cold)) == str(inspect.signature(Hot))
    assert str(inspect.signature(Claim)).startswith("(task_run_id: 'int', run_id: 'int'")


def test_init_lives_in_the_class_module_and_takes_any_field_name() -> None:
    import typing
    from decimal import Decimal

    @ours.dataclass(frozen=True)
    class Named:
        self: int
        amount: Decimal

    item = Named(1, Decimal("2.5"))
    assert (item.self, item.amount) == (1, Decimal("2.5"))
    # Its annotations resolve in this module, as the standard decorator's do.
    assert typing.get_type_hints(Named.__init__, localns={"Decimal": Decimal}) == {
        "self": int, "amount": Decimal, "return": type(None)}
    assert Named.__init__.__module__ == __name__


def test_an_aliased_initvar_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="no InitVar or keyword-only field"):
        @ours.dataclass
        class Hidden:
            a: int
            b: Alias[int] = 1

    assert Alias is dataclasses.InitVar


def test_a_stand_in_held_elsewhere_compiles_once_and_guards_defer_to_bases() -> None:
    class Loud:
        seen: list[str] = []

        def __setattr__(self, name: str, value: Any) -> None:
            Loud.seen.append(name)
            object.__setattr__(self, name, value)

    @ours.dataclass(frozen=True)
    class Base:
        a: int

    held = Base.__init__

    class Copy(Base):
        __init__ = held

    class Mixed(Base, Loud):
        pass

    assert Copy(1).a == 1 and Copy(2).a == 2 and Base(3).a == 3
    assert Base.__init__ is not held  # the real one replaced the stand-in on the class
    mixed = Mixed(4)
    mixed.other = 5  # not a field: through Loud's __setattr__
    assert Loud.seen == ["other"] and mixed.other == 5  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        mixed.a = 6  # type: ignore[misc]
