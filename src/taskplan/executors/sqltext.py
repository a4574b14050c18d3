"""SQL script text: split a script into statements, and make literals safe for `:name` binds.

A small scanner that knows where code ends and literal text begins: quoted strings ('' and, on
MySQL, backslash escapes; PostgreSQL E'' strings), quoted identifiers ("", backticks, [] on
SQLite), PostgreSQL dollar quotes ($$ ... $$, $tag$ ... $tag$), line comments (--, # on MySQL)
and block comments (nested on PostgreSQL). A `;` splits statements only in code.

In a routine's definition (a statement opening with `CREATE` whose first words name a
`PROCEDURE`, `FUNCTION`, `TRIGGER` or `EVENT`), the `;` between `BEGIN` and its `END` belong to
the body: a MySQL/MariaDB compound statement, a SQLite trigger, a PostgreSQL `BEGIN ATOMIC`
body; so do those of MariaDB's anonymous block, `[label:] BEGIN NOT ATOMIC ... END`. `CASE ...
END` nests inside it; `END IF`, `END LOOP`, `END WHILE`, `END REPEAT` and `END FOR` close
blocks that were never counted. A database server takes such a definition as one statement,
as the mysql client sends it after a `DELIMITER` change.

Not handled: client-side `DELIMITER` commands themselves (a mysql-client feature, not SQL).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

CODE, STRING, IDENT, COMMENT = "code", "string", "ident", "comment"
_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[A-Za-z0-9_$]")


def _family(dialect: str) -> str:
    d = dialect.lower()
    if d.startswith(("postgres", "psycopg")):
        return "postgresql"
    if d.startswith(("mysql", "mariadb", "pymysql")):
        return "mysql"
    if d.startswith("sqlite"):
        return "sqlite"
    return d


def segments(sql: str, dialect: str = "postgresql") -> Iterator[tuple[str, str]]:
    """(kind, text) pieces of `sql`, in order; joined they give back `sql` exactly.

    An unterminated quote or comment runs to the end of the text (the server reports it).
    """
    fam = _family(dialect)
    n = len(sql)
    i = start = 0

    def flush(upto: int) -> Iterator[tuple[str, str]]:
        if upto > start:
            yield CODE, sql[start:upto]

    while i < n:
        c = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        end = -1
        kind = ""
        if (c == "-" and nxt == "-") or (c == "#" and fam == "mysql"):
            j = sql.find("\n", i)
            end, kind = (n if j < 0 else j + 1), COMMENT
        elif c == "/" and nxt == "*":
            end, kind = _block_comment_end(sql, i, nested=fam == "postgresql"), COMMENT
        elif c == "'":
            backslash = fam == "mysql" or (
                fam == "postgresql" and i > 0 and sql[i - 1] in "eE"
                and (i < 2 or not _WORD.match(sql[i - 2])))
            end, kind = _quoted_end(sql, i, "'", backslash), STRING
        elif c == '"':
            end = _quoted_end(sql, i, '"', fam == "mysql")
            kind = STRING if fam == "mysql" else IDENT
        elif c == "`" and fam in ("mysql", "sqlite"):
            end, kind = _quoted_end(sql, i, "`", False), IDENT
        elif c == "[" and fam == "sqlite":
            j = sql.find("]", i + 1)
            end, kind = (n if j < 0 else j + 1), IDENT
        elif c == "$" and fam == "postgresql" and (i == 0 or not _WORD.match(sql[i - 1])):
            m = _TAG.match(sql, i)
            if m:
                tag = m.group(0)
                j = sql.find(tag, m.end())
                end, kind = (n if j < 0 else j + len(tag)), STRING
        if end < 0:
            i += 1
            continue
        yield from flush(i)
        yield kind, sql[i:end]
        i = start = end
    yield from flush(n)


def _quoted_end(sql: str, i: int, quote: str, backslash: bool) -> int:
    n = len(sql)
    j = i + 1
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _block_comment_end(sql: str, i: int, *, nested: bool) -> int:
    n = len(sql)
    depth = 0
    j = i
    while j < n:
        if sql.startswith("/*", j):
            depth = depth + 1 if nested or depth == 0 else depth
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n


_CODE_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|;")
_ROUTINES = frozenset({"PROCEDURE", "FUNCTION", "TRIGGER", "EVENT"})
_UNCOUNTED_ENDS = frozenset({"IF", "LOOP", "WHILE", "REPEAT", "FOR"})
_ANONYMOUS = ["BEGIN", "NOT", "ATOMIC"]
_HEAD_WORDS = 8  # CREATE OR REPLACE DEFINER = user PROCEDURE: the kind comes early


class _Body:
    """Where a statement stands: its first words, and how deep in BEGIN/CASE ... END."""

    def __init__(self) -> None:
        self.head: list[str] = []
        self.depth = 0
        self.last = ""

    def routine(self) -> bool:
        created = self.head[:1] == ["CREATE"] and not _ROUTINES.isdisjoint(self.head)
        return created or self.block()

    def block(self) -> bool:
        """MariaDB's anonymous compound statement, `[label:] BEGIN NOT ATOMIC ... END`."""
        return _ANONYMOUS in (self.head[:3], self.head[1:4])

    def word(self, word: str, following: str) -> None:
        if len(self.head) < _HEAD_WORDS:
            self.head.append(word)
            if word == "ATOMIC" and len(self.head) <= 4 and self.block():
                self.depth += 1  # (its BEGIN, read before the statement showed what it is)
        closing, self.last = self.last == "END", word
        if not self.routine() or closing:  # the CASE of `END CASE` opens nothing
            return
        if word in ("BEGIN", "CASE"):
            self.depth += 1
        elif word == "END" and following not in _UNCOUNTED_ENDS and self.depth:
            self.depth -= 1


def split_statements(sql: str, dialect: str = "postgresql") -> list[str]:
    """The statements of a script, stripped, without empty or comment-only ones."""
    out: list[str] = []
    current: list[tuple[str, str]] = []
    body = _Body()

    def close() -> None:
        nonlocal body
        if any(k != COMMENT and t.strip() for k, t in current):
            out.append("".join(t for _, t in current).strip())
        current.clear()
        body = _Body()

    for kind, text in segments(sql, dialect):
        if kind != CODE:
            current.append((kind, text))
            continue
        tokens = [(m.start(), m.group(0).upper()) for m in _CODE_TOKEN.finditer(text)]
        cut = 0
        for n, (at, token) in enumerate(tokens):
            if token != ";":
                body.word(token, tokens[n + 1][1] if n + 1 < len(tokens) else "")
                continue
            body.last = token
            if not body.depth:
                current.append((CODE, text[cut:at]))
                close()
                cut = at + 1
        current.append((CODE, text[cut:]))
    close()
    return out


def protect_literals(sql: str, dialect: str = "postgresql") -> str:
    """Escape `:` outside code (`\\:`), so SQLAlchemy's text() finds binds only in code.

    In code, a `::` cast is escaped too: text() refuses a bind followed by `:`, so without
    this `:day::date` would reach the server as written instead of binding `day`.
    """
    return "".join(t.replace("::", "\\:\\:") if k == CODE else t.replace(":", "\\:")
                   for k, t in segments(sql, dialect))
