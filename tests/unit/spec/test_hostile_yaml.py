"""Job files built to exhaust the reader: refused early, with one line pointing at the cause."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from taskplan.errors import DefinitionError
from taskplan.spec import load_job_text, reading, source
from taskplan.spec.source import MAX_DEPTH, MAX_DOCUMENT_CHARS, MAX_NODES, load_yaml

TASKS = "tasks:\n  t:\n    shell: echo hi\n"


def laughs(levels: int) -> str:
    """The "billion laughs": each anchor is a list of ten aliases of the previous one."""
    lines = ["job: bomb", "x-a0: &a0 [" + ", ".join(['"lol"'] * 10) + "]"]
    lines += [f"x-a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]"
              for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n" + TASKS


def problem_of(text: str) -> str:
    with pytest.raises(DefinitionError) as info:
        load_job_text(text, "bomb.yaml", ".")
    assert len(info.value.problems) == 1
    return str(info.value.problems[0])


def test_billion_laughs_is_refused_at_the_alias_that_overflows() -> None:
    # Nine levels expand to 10**9 nodes: the old reader spent minutes on it.
    msg = problem_of(laughs(9))
    # Level k's list expands to 1 + 10 * (level k-1's); the first level whose running total
    # passes the bound is where the reader stops (level k is on line k + 2).
    total, size, level = 0, 11, 0
    while total + size <= MAX_NODES:
        total, size, level = total + size, 1 + 10 * size, level + 1
    assert msg.startswith(f"bomb.yaml:{level + 2}:")
    assert "too many aliases: *a" in msg
    assert f"more than {MAX_NODES} nodes" in msg


def test_aliases_below_the_bound_still_work() -> None:
    # Three levels of laughs (11,111 nodes) are allowed: the bound is on size, not on style
    # (merges and anchors are covered in test_spec_loader).
    assert load_job_text(laughs(3), "ok.yaml", ".").name == "bomb"


def test_recursive_alias_is_refused() -> None:
    msg = problem_of("job: x\nx-a: &a [1, *a]\n" + TASKS)
    assert msg.startswith("bomb.yaml:2:13:") and "recursive alias" in msg


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_flow_nesting_is_refused(opening: str) -> None:
    # 20,000 levels made the old reader crash with a RecursionError traceback (and the
    # scanner's work grows with the square of the depth).
    msg = problem_of("job: x\nx-deep: " + opening * 20_000 + "\n" + TASKS)
    assert msg.startswith("bomb.yaml:2:") and f"nested more than {MAX_DEPTH} levels" in msg


def test_deep_block_nesting_is_refused() -> None:
    deep = "".join(f"{' ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5))
    msg = problem_of("job: x\nx-deep:\n" + "\n".join(" " + line for line in deep.splitlines())
                     + "\n" + TASKS)
    assert f"nested more than {MAX_DEPTH} levels" in msg


def test_too_many_nodes_without_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bound is lowered so the test does not spend seconds parsing a big list.
    monkeypatch.setattr(source, "MAX_NODES", 1000)
    items = ", ".join(["1"] * 1001)
    msg = problem_of(f"job: x\nx-big: [{items}]\n" + TASKS)
    assert "more than 1000 nodes in the document" in msg


def test_oversized_document_is_refused_without_parsing() -> None:
    text = "job: x\n" + TASKS + ("# padding\n" * (MAX_DOCUMENT_CHARS // 10 + 1))
    loaded = load_yaml(text, "big.yaml")
    assert loaded.data is None
    [p] = loaded.problems
    assert p.line > 1 and f"file too large: more than {MAX_DOCUMENT_CHARS}" in p.message


def test_a_file_past_the_byte_bound_is_refused_without_reading_it_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bounds are lowered so the test writes a small file, not one of 32 MB.
    monkeypatch.setattr(source, "MAX_DOCUMENT_CHARS", 100)
    monkeypatch.setattr(reading, "MAX_DOCUMENT_BYTES", 400)
    path = tmp_path / "big.yaml"
    path.write_text("job: x\n" + TASKS + "# padding\n" * 1000)
    with pytest.raises(DefinitionError) as info:
        reading.read_source(path, "big.yaml")
    [p] = info.value.problems
    # The 100th character is on line 11: the same line the text bound names.
    assert (p.file, p.line) == ("big.yaml", 11)
    assert "file too large: more than 100 characters" in p.message


CONTROL = [
    # (the character, the text around it on line 4): two-byte characters before it on its
    # line and the line above, since libyaml counts its offset in bytes
    ("\x07", '  a: {shell: "echo \x07 x"}'),
    ("\x00", '  a: {shell: "é \x00 x"}'),
    ("\ufffe", '  a: {shell: "ééé\ufffe"}'),
]


@pytest.mark.parametrize(("char", "line"), CONTROL)
@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
def test_a_character_yaml_forbids_is_pointed_at_on_one_line(
        char: str, line: str, libyaml: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not libyaml:  # PyYAML built without libyaml counts its offsets in characters
        monkeypatch.setitem(sys.modules, "yaml._yaml", None)
    text = f'job: ctl\ndescription: "é"\ntasks:\n{line}\n'
    msg = problem_of(text)
    assert "\n" not in msg
    col = line.index(char) + 1
    assert msg.startswith(f"bomb.yaml:4:{col}: YAML syntax: unacceptable character "
                          f"#x{ord(char):04x}: "), msg
    assert msg.endswith(" characters are not allowed"), msg  # control / special


def test_a_forbidden_character_after_a_byte_order_mark_on_line_one() -> None:
    loaded = load_yaml("\ufeffjob: \x07\n", "bom.yaml")
    assert [(p.line, p.col) for p in loaded.problems] == [(1, 6)]
