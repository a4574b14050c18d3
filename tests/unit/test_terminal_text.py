from taskplan.cli.terminal_text import safe, safe_line


def test_controls_are_shown_not_acted_on() -> None:
    assert safe("a\x1b[2Jb\x07c\x9bd\x7fe") == "a\\x1b[2Jb\\ac\\x9bd\\x7fe"
    assert safe("x\ry") == "x\\ry"  # a bare CR would overwrite the line with a fake prompt
    assert safe("evil\u202etxt.exe\u2066") == "evil\\u202etxt.exe\\u2066"


def test_line_structure_and_printable_text_are_kept() -> None:
    text = "naïve 日本 — ok\n\tindented\r\nnext"
    assert safe(text) == "naïve 日本 — ok\n\tindented\nnext"
    assert safe_line(text) == "naïve 日本 — ok\\n\\tindented\\nnext"
