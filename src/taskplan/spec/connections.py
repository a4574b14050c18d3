"""Shared connections: named database URLs declared once, for the sql tasks of every job.

They come from a connections file (top-level `connections:` and no `job:`), applied like jobs
and stored in the `connections` table, or from `[connections]` in taskplan.toml. A URL keeps its
`${VAR}` (environment) and `${file:/path}` (file content) references unresolved wherever it is
stored; the agent resolves them when a task runs. So that no secret lands in the database, a
connections file whose URL carries a password in clear is refused.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import ConfigDict

from taskplan.errors import Problem
from taskplan.spec import fields as f
from taskplan.spec.report import Reporter
from taskplan.spec.schema import StrictModel
from taskplan.spec.source import Positions

CONNECTION_NAME_RE = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
MAX_CONNECTION_NAME = 200  # connections.name
# user:password@ in a URL; the password is in clear unless it is one ${...} reference.
_USERINFO = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:(?P<pw>[^@\s]*)@")
_REFERENCE = re.compile(r"^\$\{[^}]+\}$")



class ConnectionsFile(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    connections: Annotated[dict[str, f.NonEmptyText], f.MappingIn]
    description: f.Text = ""


# ?password=... (libpq, psycopg and SQLAlchemy read it as the password too).
_QUERY_PASSWORD = re.compile(r"[?&](?:password|passwd|pwd)=(?P<pw>[^&#\s]*)", re.IGNORECASE)


def clear_password(url: str) -> bool:
    """True when the URL carries a password in clear, in its user info or its query."""
    m = _USERINFO.match(url)
    if m and m["pw"] and not _REFERENCE.match(m["pw"]):
        return True
    return any(q["pw"] and not _REFERENCE.match(q["pw"]) for q in _QUERY_PASSWORD.finditer(url))


def analyse_connections(data: dict[str, Any], positions: Positions, filename: str
                        ) -> tuple[dict[str, str] | None, list[Problem]]:
    r = Reporter(filename, positions, data)
    model: ConnectionsFile | None = r.validate(ConnectionsFile, data, ())
    if model is None:
        return None, r.problems
    if not model.connections:
        r.at_value(("connections",), "expected at least one connection (name: URL)")
    for name, url in model.connections.items():
        path = ("connections", name)
        if not re.fullmatch(CONNECTION_NAME_RE, name):
            r.at_key(path, f"connection name {name!r}: expected letters, digits, _ . and -")
        elif len(name) > MAX_CONNECTION_NAME:
            r.at_key(path, f"expected a connection name of at most {MAX_CONNECTION_NAME}"
                           f" characters (the store keeps no more), got one of {len(name)}")
        elif "://" not in url:
            r.at_value(path, "expected a URL such as postgresql://user@host/db")
        elif clear_password(url):
            r.at_value(path, "the password is written in clear; a connections file is stored"
                       " in the database, so write ${VAR} (environment) or ${file:/path}"
                       " (a secret file) in its place")
    if r.problems:
        return None, r.problems
    return dict(model.connections), []
