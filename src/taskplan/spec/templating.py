"""Jinja templating of task text, sandboxed so a job file cannot reach Python internals.

Templates see ``params``, ``item``, ``run`` and ``tasks.<name>.result``. Undefined names fail
loudly (StrictUndefined) instead of rendering as empty text inside a SQL statement.
Identifiers go through the ``ident`` filter, whose quoting the caller picks per SQL dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, meta, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

ALLOWED_ROOTS: frozenset[str] = frozenset({"params", "item", "run", "tasks"})
# The quoting function travels in the render context so one shared, cached environment
# serves every dialect and every thread.
_QUOTE_KEY = "__taskplan_quote_ident__"


def quote_double(name: str) -> str:
    """ANSI SQL identifier quoting: wrap in double quotes, double any inner quote."""
    return '"' + name.replace('"', '""') + '"'


@pass_context
def _ident(context: Context, value: Any) -> str:
    quote: Callable[[str], str] = context.get(_QUOTE_KEY, quote_double)
    return quote(str(value))


def _make_env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["ident"] = _ident
    return env


ENV: SandboxedEnvironment = _make_env()


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


@lru_cache(maxsize=1024)
def _compiled(template: str) -> Any:
    # A foreach task renders one template 100,000 times; compile it once.
    return ENV.from_string(template)


def render(
    template: str,
    context: Mapping[str, Any],
    quote_ident: Callable[[str], str] = quote_double,
) -> str:
    """Render `template` with `context`; raises jinja2 errors (UndefinedError, SecurityError)."""
    if not is_template(template):
        return template
    values = dict(context)
    values[_QUOTE_KEY] = quote_ident
    result: str = _compiled(template).render(values)
    return result


def _parse(template: str) -> nodes.Template:
    return ENV.parse(template)


def referenced_roots(template: str) -> set[str]:
    """Top-level names the template reads (raises jinja2.TemplateSyntaxError if malformed)."""
    return set(meta.find_undeclared_variables(_parse(template)))


def referenced_task_results(template: str) -> set[str]:
    """Task names read as ``tasks.X`` or ``tasks['X']`` (assignments that shadow ``tasks``
    are rare enough to ignore)."""
    found: set[str] = set()
    tree = _parse(template)
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "tasks":
            found.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        if (isinstance(item.node, nodes.Name) and item.node.name == "tasks"
                and isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str)):
            found.add(item.arg.value)
    return found
