from collections.abc import Iterator, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from jinja2 import TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError

from taskplan.executors.base import missing_result
from taskplan.spec import templating
from taskplan.spec.templating import (
    is_template,
    referenced_roots,
    referenced_task_results,
    render,
)


def test_render_params_and_item() -> None:
    out = render("{{ params.day }}-{{ item.n }}", {"params": {"day": "2026"}, "item": {"n": 3}})
    assert out == "2026-3"


def test_plain_text_is_returned_as_is() -> None:
    assert render("SELECT 1", {}) == "SELECT 1"


def test_ident_default_double_quotes() -> None:
    assert render("{{ item.view | ident }}", {"item": {"view": 'we"ird'}}) == '"we""ird"'


def test_ident_uses_the_given_quoting() -> None:
    def backticks(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    assert render("{{ t | ident }}", {"t": "sales"}, quote_ident=backticks) == "`sales`"
    # The cached template does not keep the previous caller's quoting.
    assert render("{{ t | ident }}", {"t": "sales"}) == '"sales"'


@pytest.mark.parametrize(("value", "got"), [
    (None, "got none (null)"), ("", "got empty text"), (["a", "b"], 'got a list: ["a","b"]'),
    ({"k": 1}, 'got a mapping: {"k":1}')])
def test_ident_refuses_what_names_nothing(value: Any, got: str) -> None:
    """A null param (forgotten --param) became the table "None", a list "['a', 'b']"."""
    from jinja2 import TemplateRuntimeError

    with pytest.raises(TemplateRuntimeError) as info:
        render("CREATE TABLE {{ params.t | ident }} (x int)", {"params": {"t": value}})
    assert str(info.value) == f"ident expects a name (text or a number), {got}"
    assert render("{{ n | ident }}", {"n": 5}) == '"5"'


def test_strict_undefined() -> None:
    with pytest.raises(UndefinedError):
        render("{{ params.missing }}", {"params": {}})
    with pytest.raises(UndefinedError):
        render("{{ nothing }}", {})


def test_a_missing_param_or_column_is_named_as_such() -> None:
    # Jinja said "'dict object' has no attribute 'day'": of params, of an item, of a result?
    with pytest.raises(UndefinedError) as info:
        render("{{ params.day }}", {"params": {"b": 1, "a": 2}})
    assert str(info.value) == ("params has no 'day' (the run's params: a, b); give it with"
                               " --param day=VALUE, or a default under params:")
    with pytest.raises(UndefinedError) as info:
        render("{{ params['day'] }}", {"params": {}})
    assert str(info.value).startswith("params has no 'day' (the run's params: none);")
    with pytest.raises(UndefinedError) as info:
        render("{{ item.name }}", {"item": {"id": 1, "city": "Oslo"}})
    assert str(info.value) == "item has no 'name' (the item has: id, city)"
    # Other objects keep Jinja's words; params still reads as a mapping.
    with pytest.raises(UndefinedError, match="'dict object' has no attribute 'x'"):
        render("{{ tasks.a.result.x }}", {"tasks": {"a": {"result": {}}}})
    # The upstream results say why one is missing, not "'TaskResultsView object' has no..."
    class Results(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise missing_result(key, ["src"], {})

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            return 0

    with pytest.raises(UndefinedError) as info:
        render("{{ tasks.src.result }}", {"tasks": Results()})
    assert str(info.value) == ("tasks.src.result: no result for 'src': it did not succeed"
                               " (results has: none)")
    assert render("{{ params.get('x', 'd') }} {{ params | length }} {{ params.a }}"
                  " {{ item.n }}", {"params": {"a": 1}, "item": {"n": 2}}) == "d 1 1 2"


def test_lists_mappings_and_booleans_render_as_json() -> None:
    # `{{ params.names }}` rendered "['a', 'b']" (Python's repr): a child job's list param
    # refused it, and a script reading its argument as JSON failed on None, True and quotes.
    out = render("{{ params.names }} {{ params.cfg }} {{ item }} {{ params.on }}",
                 {"params": {"names": ["a", "b"], "cfg": {"k": None, "t": True}, "on": True},
                  "item": {"d": date(2026, 1, 2), "n": Decimal("1.5"), "s": "é"}})
    assert out == ('["a","b"] {"k":null,"t":true} {"d":"2026-01-02","n":"1.5","s":"é"} true')
    # Scalars print as before; a filter's own output is untouched.
    assert render("{{ params.n }} {{ params.x }} {{ params.names | join(',') }}",
                  {"params": {"n": 1.5, "x": None, "names": ["a", "b"]}}) == "1.5 None a,b"


def test_a_param_column_or_task_named_like_a_dict_method_is_that_value() -> None:
    # `params.update` rendered "<built-in method update of _Params object at 0x...>", and
    # `tasks.copy.result` failed "'method object' has no attribute 'result'".
    assert render("{{ params.update }} {{ item.values }} {{ item.keys }}",
                  {"params": {"update": "yes"}, "item": {"values": 1, "keys": 2}}) == "yes 1 2"

    class Results(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            if key == "copy":
                return {"result": 7}
            raise missing_result(key, ["copy", "items"], {"copy": 7})

        def __iter__(self) -> Iterator[str]:
            return iter(("copy",))

        def __len__(self) -> int:
            return 1

    assert render("{{ tasks.copy.result }}", {"tasks": Results()}) == "7"
    with pytest.raises(UndefinedError) as info:
        render("{{ tasks.items.result }}", {"tasks": Results()})
    assert str(info.value) == ("tasks.items.result: no result for 'items': it did not succeed"
                               " (results has: copy)")
    # With no param of that name, the method is still there.
    assert render("{{ params.items() | list }}", {"params": {"a": 1}}) == '[["a",1]]'


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ params.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_internals(template: str) -> None:
    with pytest.raises((SecurityError, UndefinedError)):
        render(template, {"params": {}})


def test_sandbox_environment_is_sandboxed() -> None:
    from jinja2.sandbox import SandboxedEnvironment

    assert isinstance(templating.ENV, SandboxedEnvironment)


def test_is_template() -> None:
    assert is_template("a {{ b }}")
    assert is_template("{% if x %}y{% endif %}")
    assert not is_template("SELECT :day")


def test_referenced_roots() -> None:
    text = "{{ params.a }} {% for x in item %}{{ x }}{% endfor %} {{ tasks.load.result }} {{ y }}"
    assert referenced_roots(text) == {"params", "item", "tasks", "y"}


def test_referenced_task_results() -> None:
    text = "{{ tasks.load.result }} {{ tasks['other'].result }} {{ params.tasks }}"
    assert referenced_task_results(text) == {"load", "other"}


def test_syntax_error_raises() -> None:
    with pytest.raises(TemplateSyntaxError):
        referenced_roots("{{ params.a ")
