"""What an unquoted scalar means (YAML 1.2 core schema): the shortcut for text that cannot be
anything else gives what the patterns give."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from taskplan.spec.source import by_patterns, load_yaml, resolve_plain


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


# Text built from the characters the core schema's patterns are made of, so that many draws
# are near-misses of a null, a boolean, a number or a timestamp.
NEAR = st.text(alphabet="~nulNULtrueTRUEfalsFALSEinfINFaN.0123456789+-:eEoxTZ _é", max_size=12)


@given(st.one_of(NEAR, st.text(max_size=12)))
@example("null")
@example("True")
@example("FALSE")
@example("nullx")
@example(".inf")
@example("-.Inf")
@example("0x1F")
@example("2026-02-30")
@example("2026-01-02 03:04:05 +01:00")
def test_the_shortcut_agrees_with_the_patterns(value: str) -> None:
    assert same(resolve_plain(value), by_patterns(value))


def test_words_and_numbers_in_a_document() -> None:
    loaded = load_yaml("a: null\nb: True\nc: no\nd: t0001\ne: 9:30\nf: -1.5e3\ng: ~\n", "f.yaml")
    assert loaded.problems == []
    assert loaded.data == {"a": None, "b": True, "c": "no", "d": "t0001", "e": "9:30",
                           "f": -1500.0, "g": None}


def test_core_tags_are_read_and_any_other_tag_is_refused_where_written() -> None:
    loaded = load_yaml("a: !!str 5\nb: !!int '7'\nc: !!float 1.5\nd: !!bool 'true'\n"
                       "e: !!timestamp 2026-01-01\nf: !!map {x: 1}\ng: !!seq [1]\n",
                       "f.yaml")
    assert loaded.problems == []
    assert loaded.data == {"a": "5", "b": 7, "c": 1.5, "d": True, "e": "2026-01-01",
                           "f": {"x": 1}, "g": [1]}
    # `!Ref x` was read as the text "x", `!!binary` as its base64, `!!set` as a mapping.
    words = ("means nothing in a job file (only !!str, !!int, !!float, !!bool, !!null and"
             " !!timestamp are read): remove it")
    for text, where, tag in (("a: !Ref x\n", (1, 4), "!Ref"),
                             ("a: !!binary aGVsbG8=\n", (1, 4), "!!binary"),
                             ("a:\n  b: !!set {x, y}\n", (2, 6), "!!set"),
                             ("a: !!python/object:os.system {b: 1}\n", (1, 4),
                              "!!python/object:os.system")):
        loaded = load_yaml(text, "f.yaml")
        assert [(p.line, p.col, p.message) for p in loaded.problems] == [
            (*where, f"YAML tag {tag} {words}")], text
