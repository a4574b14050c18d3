"""`dataclass`: the standard library's decorator, with the same meaning, cheaper to apply.

`dataclasses.dataclass` writes the source of `__init__`, `__repr__`, `__eq__` and, for a frozen
class, `__hash__`, `__setattr__` and `__delattr__`, and compiles each with `exec`: 0.2-0.3 ms a
method here. `taskplan run` defines some 65 record classes before it can do anything, so that
compiling was a third of its imports (37-42 ms of 175 `exec` calls in a run of a checked
200-task chain, measured 2026-12-02). This decorator asks the standard one only to collect the
fields (no method written, hence no `exec`), then:

- gives every class the same `__repr__`, `__eq__` and `__hash__`, written once here and driven
  by tuples of field names computed when the class is defined;
- guards a frozen class with `__setattr__`/`__delattr__` closures (no source to compile);
- writes `__init__` when the class is first instantiated: until then the class holds a stand-in
  that compiles the real one (the same source the standard decorator writes: positional and
  keyword parameters, defaults, default factories, frozen assignment, `__post_init__`),
  installs it on the class and calls it. A class never instantiated in a process (most of
  them, in any one command) never pays for it; one that is pays once, then runs the same
  code as the standard one's. The records made on every step or task (`hot=True`) compile it
  with the class instead, so that no run's first tasks pay for it.

What they do is what the generated ones do (tests/unit/test_dataclass.py holds them side by
side): `__eq__` compares the fields with `compare=True` as a tuple, between instances of the
same class only (as Python 3.11 and 3.12 do; 3.13 compares field by field, which differs only
for a value unequal to itself, such as NaN, held by both); `__hash__` hashes that tuple
(frozen classes; others with `eq` are unhashable); `__repr__` shows the fields with
`repr=True`, guarded against recursion. A class that defines one of them itself keeps its
own; `order=True` and `unsafe_hash=True`, a dataclass base, `InitVar` and `KW_ONLY`/`kw_only`
fields go to the standard decorator unchanged (no class here has them; a `ClassVar` is left
out of the fields by the standard collection, as there; an `InitVar` or `KW_ONLY` under
another name, seen only once the fields are collected, is refused
with a `TypeError` when the class is defined). `__init__` is compiled as the standard one is,
with the class's module as its globals and the defaults as closure variables, so
`typing.get_type_hints` resolves it alike and a field may be called `self`. (A
field's `hash=` takes part as it does there.) The methods read the field names from the
instance's class, so a subclass's `super().__eq__` compares its own fields: no class here does
that. Two visible differences: a class without a docstring gets `Name(field, ...)` as its
`__doc__` (the standard one writes the whole signature, which costs an `inspect.signature`),
and `inspect.signature` of a class shows `(*args, **kwargs)` until its first instance exists.
"""

from __future__ import annotations

import dataclasses
import reprlib
import sys
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
              unsafe_hash: bool = False, frozen: bool = False, hot: bool = False
              ) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def dataclass(cls: type[T] | None = None, /, *, init: bool = True, repr: bool = True,
              eq: bool = True, order: bool = False, unsafe_hash: bool = False,
              frozen: bool = False, hot: bool = False) -> Any:
    """As `dataclasses.dataclass`, with the options taskplan uses. `hot`: instances are made
    for every task or step, so `__init__` is compiled now, with the class, rather than inside
    the first task that makes one (a run's first hops would pay a few tenths of a ms each)."""

    def wrap(c: type[T]) -> type[T]:
        if order or unsafe_hash or not _PARAMS_WRITABLE or not _plain(c):
            return dataclasses.dataclass(c, init=init, repr=repr, eq=eq, order=order,
                                         unsafe_hash=unsafe_hash, frozen=frozen)
        own = c.__dict__
        # The standard decorator's test: Python itself sets `__hash__ = None` beside an
        # `__eq__` written in the class, which is not a hash of the class's own.
        class_hash = own.get("__hash__", dataclasses.MISSING)
        own_hash = not (class_hash is dataclasses.MISSING
                        or (class_hash is None and "__eq__" in own))
        if frozen:
            for name in ("__setattr__", "__delattr__"):
                if name in own:  # as the standard decorator refuses it
                    raise TypeError(f"Cannot overwrite attribute {name} in class {c.__name__}")
        if not c.__doc__:
            c.__doc__ = f"{c.__name__}({', '.join(own.get('__annotations__', {}))})"
        made: Any = dataclasses.dataclass(c, init=False, repr=False, eq=False, frozen=False)
        params = made.__dataclass_params__
        params.init, params.repr, params.eq, params.frozen = init, repr, eq, frozen
        _refuse_special(made)
        fields = dataclasses.fields(made)
        if init and "__init__" not in own:
            _check_defaults(fields)
            post_init = hasattr(made, "__post_init__")  # looked up now, as the standard one
            made.__init__ = (_compiled_init(made, fields, frozen, post_init) if hot
                             else _init_on_first_use(made, fields, frozen, post_init))
        if frozen:
            made.__setattr__, made.__delattr__ = _frozen_guards(
                made, frozenset(f.name for f in fields))
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


def _params_writable() -> bool:
    """Whether a class's `__dataclass_params__` takes new values (Python 3.11-3.13 do): the
    classes made here must say what they are (frozen, with init) to `dataclasses` itself, which
    checks them when a dataclass inherits from another."""

    @dataclasses.dataclass(init=False, repr=False, eq=False)
    class Probe:
        """No fields."""

    try:
        Probe.__dataclass_params__.frozen = True  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return False
    return True


_PARAMS_WRITABLE = _params_writable()


def _plain(cls: type) -> bool:
    """Whether this module can make the class: no dataclass base, and no field the standard
    decorator treats apart from a plain one (InitVar, KW_ONLY, kw_only, or a name this
    module's generated code uses; a ClassVar is no field once collected). Read from the
    annotations' text, before anything is changed; `_refuse_special` checks the collected
    fields afterwards, for aliased names."""
    if any(hasattr(base, "__dataclass_fields__") for base in cls.__mro__[1:]):
        return False
    own = cls.__dict__
    for name, annotation in own.get("__annotations__", {}).items():
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if "InitVar" in text or "KW_ONLY" in text:
            return False
        if name.startswith("__taskplan_"):
            return False
        value = own.get(name)
        if isinstance(value, dataclasses.Field) and value.kw_only is True:
            return False
    return True


def _refuse_special(cls: type) -> None:
    """An InitVar or a keyword-only field that `_plain` could not see (an alias such as
    `from dataclasses import InitVar as IV` under string annotations): refused when the
    class is defined rather than made with the wrong `__init__`."""
    initvar = getattr(dataclasses, "_FIELD_INITVAR", None)
    for f in cls.__dataclass_fields__.values():  # type: ignore[attr-defined]
        if (initvar is not None and getattr(f, "_field_type", None) is initvar) or (
                f.kw_only is True):
            raise TypeError(f"{cls.__qualname__}.{f.name}: taskplan.dataclass makes no InitVar"
                            " or keyword-only field; use dataclasses.dataclass for this class")


def _check_defaults(fields: tuple[dataclasses.Field[Any], ...]) -> None:
    """The standard decorator's check when it writes `__init__`, made when the class is
    defined rather than at its first instance."""
    seen_default = False
    for f in fields:
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")


class _Factory:
    """An argument left out whose field has a default_factory (shown as the standard
    decorator shows its own)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _init_source(fields: tuple[dataclasses.Field[Any], ...], frozen: bool, post_init: bool
                 ) -> tuple[str, dict[str, Any]]:
    """The source of a function that makes `__init__`, and the values it takes, as the
    standard decorator writes them (its `_init_fn` and `_create_fn`): defaults by reference,
    factories called when the argument is left out, frozen fields set through
    `object.__setattr__`. The helpers are the outer function's parameters, so the compiled
    `__init__` sees them as closure variables and the class's module as its globals."""
    names: dict[str, Any] = {"__taskplan_factory__": _FACTORY, "__taskplan_object__": object}
    me = "__taskplan_self__" if any(f.name == "self" for f in fields) else "self"
    args: list[str] = []
    body: list[str] = []
    for f in fields:
        default = f"__taskplan_default_{f.name}__"
        if f.default_factory is not dataclasses.MISSING:
            names[default] = f.default_factory
            if f.init:
                args.append(f"{f.name}=__taskplan_factory__")
                value = f"{default}() if {f.name} is __taskplan_factory__ else {f.name}"
            else:
                value = f"{default}()"
        elif f.init:
            if f.default is not dataclasses.MISSING:
                names[default] = f.default
                args.append(f"{f.name}={default}")
            else:
                args.append(f.name)
            value = f.name
        else:
            continue  # not set here: the class attribute holds its default
        body.append(f"__taskplan_object__.__setattr__({me}, {f.name!r}, {value})" if frozen
                    else f"{me}.{f.name} = {value}")
    if post_init:
        body.append(f"{me}.__post_init__()")
    lines = "\n".join(f"        {line}" for line in body or ["pass"])
    source = (f"def __taskplan_create__({', '.join(names)}):\n"
              f"    def __init__({', '.join([me, *args])}):\n{lines}\n"
              "    return __init__\n")
    return source, names


def _compiled_init(cls: type, fields: tuple[dataclasses.Field[Any], ...], frozen: bool,
                   post_init: bool) -> Callable[..., None]:
    source, names = _init_source(fields, frozen, post_init)
    made: dict[str, Any] = {}
    module = sys.modules.get(cls.__module__)
    # The class's module as globals (so that `typing.get_type_hints(cls.__init__)` resolves
    # its annotations), the definitions kept out of it in `made`.
    exec(source, module.__dict__ if module is not None else {}, made)
    init: Callable[..., None] = made["__taskplan_create__"](**names)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {**{f.name: f.type for f in fields if f.init}, "return": None}
    return init


def _init_on_first_use(cls: type, fields: tuple[dataclasses.Field[Any], ...], frozen: bool,
                       post_init: bool) -> Callable[..., None]:
    real: Callable[..., None] | None = None

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Compiled once, also for code holding this stand-in (a subclass's `__init__ =
        # Base.__init__`); two threads first at once may both compile, either is kept.
        nonlocal real
        if real is None:
            real = _compiled_init(cls, fields, frozen, post_init)
            type.__setattr__(cls, "__init__", real)
        real(self, *args, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _frozen_guards(cls: type, names: frozenset[str]
                   ) -> tuple[Callable[[Any, str, Any], None], Callable[[Any, str], None]]:
    """A frozen class's `__setattr__` and `__delattr__`: as the standard decorator's, no
    assignment to a field (nor to anything on an instance of the class itself)."""
    owner: Any = cls

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(owner, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(owner, self).__delattr__(name)

    __setattr__.__qualname__ = f"{cls.__qualname__}.__setattr__"
    __delattr__.__qualname__ = f"{cls.__qualname__}.__delattr__"
    return __setattr__, __delattr__
