"""`dataclass`: the standard library's decorator, with the same meaning, cheaper to apply.

`dataclasses.dataclass` writes the source of `__repr__`, `__eq__` and (when frozen)
`__hash__` for every class and compiles it with `exec`: about 0.5 ms a frozen class here. The
command line defines some 65 record classes before it can do anything, so that compiling was
30-40 % of the import time of `taskplan run` (15 ms of a 200 ms run of a checked 200-task
chain). This decorator lets the standard one write `__init__` and the frozen guards (which
need per-class code to be fast) and gives every class the same three methods written once
here, driven by a tuple of field names computed when the class is defined.

What they do is what the generated ones do (tests/unit/test_dataclass.py holds them side by
side): `__eq__` compares the fields with `compare=True` as a tuple, between instances of the
same class only (as Python 3.11 and 3.12 do; 3.13 compares field by field, which differs only
for a value unequal to itself, such as NaN, held by both); `__hash__` hashes that tuple
(frozen classes; others with `eq` are unhashable); `__repr__` shows the fields with
`repr=True`, guarded against recursion. A class that defines one of them itself keeps its
own; `order=True` and `unsafe_hash=True` go to the standard decorator unchanged. (A field's
`hash=` takes part as it does there.) The methods read the field names from the instance's
class, so a subclass's `super().__eq__` compares its own fields: no class here does that.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")

_Getter = Callable[[Any], tuple[Any, ...]]


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        values: _Getter = self.__class__.__taskplan_compared__
        return values(self) == values(other)
    return NotImplemented


def _hash(self: Any) -> int:
    values: _Getter = self.__class__.__taskplan_hashed__
    return hash(values(self))


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    cls = self.__class__
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in cls.__taskplan_shown__)
    return f"{cls.__qualname__}({shown})"


def _getter(names: tuple[str, ...]) -> _Getter:
    """The values of these attributes as a tuple, whatever their number."""
    if not names:
        return lambda obj: ()
    get = attrgetter(*names)
    if len(names) == 1:
        return lambda obj: (get(obj),)
    return get


@overload
def dataclass(cls: type[T], /) -> type[T]: ...


@overload
def dataclass(*, init: bool = True, repr: bool = True, eq: bool = True, order: bool = False,
              unsafe_hash: bool = False, frozen: bool = False
              ) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def dataclass(cls: type[T] | None = None, /, *, init: bool = True, repr: bool = True,
              eq: bool = True, order: bool = False, unsafe_hash: bool = False,
              frozen: bool = False) -> Any:
    """As `dataclasses.dataclass`, with the options taskplan uses."""

    def wrap(c: type[T]) -> type[T]:
        if order or unsafe_hash:
            return dataclasses.dataclass(c, init=init, repr=repr, eq=eq, order=order,
                                         unsafe_hash=unsafe_hash, frozen=frozen)
        own = c.__dict__
        # The standard decorator's test: Python itself sets `__hash__ = None` beside an
        # `__eq__` written in the class, which is not a hash of the class's own.
        class_hash = own.get("__hash__", dataclasses.MISSING)
        own_hash = not (class_hash is dataclasses.MISSING
                        or (class_hash is None and "__eq__" in own))
        made: Any = dataclasses.dataclass(c, init=init, repr=False, eq=False, frozen=frozen)
        fields = dataclasses.fields(made)
        if repr and "__repr__" not in own:
            made.__taskplan_shown__ = tuple(f.name for f in fields if f.repr)
            made.__repr__ = _repr
        if eq:
            compared = tuple(f.name for f in fields if f.compare)
            hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
            made.__taskplan_compared__ = staticmethod(_getter(compared))
            made.__taskplan_hashed__ = (made.__dict__["__taskplan_compared__"]
                                        if hashed == compared else staticmethod(_getter(hashed)))
            if "__eq__" not in own:
                made.__eq__ = _eq
            if not own_hash:
                # As the standard decorator: frozen and compared, hashed by value;
                # compared but mutable, unhashable.
                made.__hash__ = _hash if frozen else None
        done: type[T] = made
        return done

    return wrap if cls is None else wrap(cls)
