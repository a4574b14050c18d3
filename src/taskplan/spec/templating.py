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
# What `run.` offers (the agent builds it) and what `tasks.<name>.` offers.
RUN_KEYS: frozenset[str] = frozenset({"id", "job", "attempt", "fire_time"})
TASK_KEYS: frozenset[str] = frozenset({"result"})
# Mapping methods a template may call on params (`params.get('x', 1)`), not parameter names.
_METHODS = frozenset({"get", "items", "keys", "values"})
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


def attribute_uses(template: str) -> list[tuple[str, str, str | None]]:
    """(root, name, sub) for each `params.name`, `run.name` and `tasks.name.sub` the template
    reads (also the `root['name']` form); sub is None unless a task's attribute is read.

    Raises jinja2.TemplateSyntaxError if malformed.
    """
    tree = _parse(template)
    called = {id(c.node) for c in tree.find_all(nodes.Call) if isinstance(c, nodes.Call)}
    found: list[tuple[str, str, str | None]] = []

    def key_of(node: nodes.Node) -> tuple[nodes.Node, str] | None:
        if isinstance(node, nodes.Getattr):
            return node.node, node.attr
        if (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
                and isinstance(node.arg.value, str)):
            return node.node, node.arg.value
        return None

    parents: dict[int, nodes.Node] = {}
    for parent in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(parent, nodes.Getattr | nodes.Getitem):
            parents[id(parent.node)] = parent
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        pair = key_of(node)
        if pair is None or not isinstance(pair[0], nodes.Name):
            continue
        root, name = pair[0].name, pair[1]
        if root in ("params", "run") and not (name in _METHODS and id(node) in called):
            found.append((root, name, None))
        elif root == "tasks":
            outer = parents.get(id(node))
            sub = key_of(outer) if outer is not None else None
            found.append((root, name, sub[1] if sub is not None else None))
    return found

