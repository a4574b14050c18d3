"""Jinja templating of task text, sandboxed so a job file cannot reach Python internals.

Templates see ``params``, ``item``, ``run`` and ``tasks.<name>.result``. Undefined names fail
loudly (StrictUndefined) instead of rendering as empty text inside a SQL statement.
Identifiers go through the ``ident`` filter, whose quoting the caller picks per SQL dialect.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import TemplateError as TemplateError  # resolved by __getattr__ at run time
    from jinja2 import nodes
    from jinja2.sandbox import SandboxedEnvironment

    ENV: SandboxedEnvironment

# Jinja is imported when a template is first compiled or parsed, not with this module: the
# agent imports it for every task, and most commands and arguments are not templates.
# `TemplateError` and `ENV` are attributes resolved on first use (module __getattr__ below).

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


class _Params(dict[str, Any]):
    """The run's params as a template sees them: named in the error of a missing one."""


class _Item(dict[str, Any]):
    """A foreach item that is a mapping (a row), named likewise."""


def _missing(obj: Any, name: Any) -> str | None:
    """`params has no 'day' ...` instead of Jinja's `'dict object' has no attribute 'day'`."""
    if isinstance(obj, _Params):
        have = ", ".join(sorted(obj)) or "none"
        return (f"params has no {name!r} (the run's params: {have}); give it with"
                f" --param {name}=VALUE, or a default under params:")
    if isinstance(obj, _Item):
        return f"item has no {name!r} (the item has: {', '.join(map(str, obj)) or 'nothing'})"
    if isinstance(obj, Mapping) and not isinstance(obj, dict) and isinstance(name, str):
        # The upstream results (`tasks.x`), a mapping whose missing key says why it is missing
        # ("no result for 'x': it did not succeed"), not "'TaskResultsView object' has no...".
        try:
            obj[name]
        except KeyError as exc:
            return f"tasks.{name}.result: {exc}" if type(exc) is not KeyError else None
    return None


def _json_default(value: Any) -> Any:
    # SQL rows bring dates and decimals: as TASKPLAN_ITEM holds them.
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


def _text_of(value: Any) -> Any:
    """What `{{ x }}` prints: a list or mapping as JSON (`["a","b"]`, `{"k":null}`), not
    Python's repr (`['a', 'b']`, `{'k': None}`), and a boolean as `true` / `false`, as
    TASKPLAN_PARAM_* and TASKPLAN_ITEM hold them; so a child job's list param or a script's
    argument reads what it was given. Anything else as Jinja prints it."""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        import json

        return json.dumps(value, default=_json_default, ensure_ascii=False,
                          separators=(",", ":"))
    return value


def _make_env() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined, pass_context
    from jinja2.runtime import Context
    from jinja2.sandbox import SandboxedEnvironment

    class Undefined(StrictUndefined):
        __slots__ = ()

        @property
        def _undefined_message(self) -> str:
            said = _missing(self._undefined_obj, self._undefined_name)
            return said if said is not None else str(super()._undefined_message)

    @pass_context
    def ident(context: Context, value: Any) -> str:
        quote: Callable[[str], str] = context.get(_QUOTE_KEY, quote_double)
        # A null param (a --param not given) made the table "None", a list "['a', 'b']".
        got = ("none (null)" if value is None else "empty text" if value == ""
               else "a list" if isinstance(value, list | tuple)
               else "a mapping" if isinstance(value, Mapping) else None)
        if got is not None:
            from jinja2 import TemplateRuntimeError

            if isinstance(value, list | tuple | Mapping):
                got += f": {_text_of(dict(value) if isinstance(value, Mapping) else value)}"
            raise TemplateRuntimeError(f"ident expects a name (text or a number), got {got}")
        return quote(str(value))

    class Environment(SandboxedEnvironment):
        def getattr(self, obj: Any, attribute: str) -> Any:
            # `params.update`, `item.values`, `tasks.copy.result`: a name the job file gave
            # (a param, an item's column, a task) wins over the dict method of that name,
            # which Jinja's attribute-first lookup would otherwise render (as
            # "<built-in method update ...>") or fail on. `params.get('x', 1)` still calls
            # the method when no param is named `get`.
            if isinstance(obj, _Params | _Item) or (
                    isinstance(obj, Mapping) and not isinstance(obj, dict)):
                try:
                    return obj[attribute]
                except KeyError as exc:
                    if type(exc) is not KeyError:  # the upstream results say why it is missing
                        return self.undefined(obj=obj, name=attribute)
            return super().getattr(obj, attribute)

    env = Environment(
        undefined=Undefined, autoescape=False, keep_trailing_newline=True, finalize=_text_of
    )
    env.filters["ident"] = ident
    return env


_env: SandboxedEnvironment | None = None
_env_lock = threading.Lock()


def environment() -> SandboxedEnvironment:
    """The one shared sandboxed environment (created, and Jinja imported, on first use)."""
    global _env
    if _env is None:
        with _env_lock:
            if _env is None:
                _env = _make_env()
    return _env


def __getattr__(name: str) -> Any:
    if name == "ENV":
        return environment()
    if name == "TemplateError":  # for `except templating.TemplateError`, looked up lazily
        from jinja2 import TemplateError

        return TemplateError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


@lru_cache(maxsize=1024)
def _compiled(template: str) -> Any:
    # A foreach task renders one template 100,000 times; compile it once.
    return environment().from_string(template)


def render(
    template: str,
    context: Mapping[str, Any],
    quote_ident: Callable[[str], str] = quote_double,
) -> str:
    """Render `template` with `context`; raises jinja2 errors (UndefinedError, SecurityError,
    and TemplateRuntimeError for any other exception an expression raises)."""
    if not is_template(template):
        return template
    values = dict(context)
    values[_QUOTE_KEY] = quote_ident
    if type(params := values.get("params")) is dict:
        values["params"] = _Params(params)
    if type(item := values.get("item")) is dict:
        values["item"] = _Item(item)
    try:
        result: str = _compiled(template).render(values)
    except Exception as exc:
        from jinja2 import TemplateError, TemplateRuntimeError

        if isinstance(exc, TemplateError):
            raise
        # `{{ params.n + 1 }}` with a text n: the template's fault, said as a template error.
        raise TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from exc
    return result


def error_line(exc: BaseException) -> str | None:
    """`template error: ...` (one line) when `exc` is a template's, else None."""
    from jinja2 import TemplateError

    if not isinstance(exc, TemplateError):
        return None
    return f"template error: {exc.message or exc}".splitlines()[0]


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """A job task's param: text is rendered, and so is every text inside a list or mapping
    (`names: [x, "{{ params.m }}"]`); other values pass as they are."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


def _parse(template: str) -> nodes.Template:
    return environment().parse(template)


def referenced_roots(template: str) -> set[str]:
    """Top-level names the template reads (raises jinja2.TemplateSyntaxError if malformed)."""
    from jinja2 import meta

    return set(meta.find_undeclared_variables(_parse(template)))


def referenced_task_results(template: str) -> set[str]:
    """Task names read as ``tasks.X`` or ``tasks['X']`` (assignments that shadow ``tasks``
    are rare enough to ignore)."""
    from jinja2 import nodes

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
    from jinja2 import nodes

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

