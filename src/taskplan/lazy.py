"""Names a package exports but imports only on first use (PEP 562): importing one submodule
of a package runs the package's `__init__` first, which must not load every other submodule."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: a name of `homes` is imported from its home module
    on first use and then kept in the package, so later lookups are plain attributes.

        __getattr__ = lazy_names(__name__, {"Engine": "taskplan.engine.facade"})
    """

    def lookup(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    return lookup
