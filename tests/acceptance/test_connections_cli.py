"""Shared connections through the real CLI: declared once (a connections file applied like
jobs, or taskplan.toml), used by name from any job, values from the environment or a secret
file, never stored in clear, masked in errors."""

from __future__ import annotations

import os
import sqlite3

import pytest
from acceptance_helpers import Taskplan

JOB = """
job: {name}
tasks:
  count:
    connection: {conn}
    sql: "SELECT 40 + 2 AS answer"
"""


def test_a_connections_file_is_applied_and_used_by_name(tp: Taskplan) -> None:
    (tp.home / "secret").write_text(f"{tp.home}/mart.db\n")
    tp.write("connections.yaml", """
        connections:
          mart: "sqlite:///${file:secret}"
          other: "postgresql://etl:${MART_PASSWORD}@db.example/mart"
    """.replace("secret", str(tp.home / "secret")))
    tp.write("report.yaml", JOB.format(name="report", conn="mart"))
    # The job may name it as soon as the file is given with it, or applied before.
    assert "ok" in tp.ok("validate", "connections.yaml", "report.yaml").out
    res = tp("validate", "report.yaml")
    assert res.code == 2 and "unknown connection 'mart'" in res.err
    out = tp.ok("apply", "connections.yaml").out
    assert "connection mart: new" in out and "connection other: new" in out
    assert "connection mart: unchanged" in tp.ok("apply", "connections.yaml").out
    tp.ok("validate", "report.yaml")
    # --db after the command name too: the store whose connections validate knows.
    tp.ok("validate", "report.yaml", "--db", tp.url, db=False)
    other = tp("validate", "report.yaml", "--db", "sqlite:///other.db", db=False)
    assert other.code == 2 and "unknown connection 'mart'" in other.err
    assert not (tp.home / "other.db").exists()
    tp.ok("run", "report.yaml")
    [run] = tp.ok("runs", "--json").json()
    assert tp.status(run["run_id"])["tasks"][0]["result"] is not None
    stored = sqlite3.connect(tp.db_path).execute("SELECT name, url FROM connections").fetchall()
    assert ("other", "postgresql://etl:${MART_PASSWORD}@db.example/mart") in stored
    listing = tp.ok("connections", "--json").json()
    assert {c["name"] for c in listing} == {"mart", "other"}


@pytest.mark.parametrize("url", ["postgresql://etl:hunter22@db.example/mart",
                                 "postgresql://etl@db.example/mart?sslmode=require&password=hunter22"])
def test_a_password_in_clear_is_refused_and_nothing_stored(tp: Taskplan, url: str) -> None:
    tp.write("connections.yaml", f"""
        connections:
          mart: "{url}"
    """)
    res = tp("apply", "connections.yaml")
    assert res.code == 2 and "connections.yaml:2:" in res.err and "in clear" in res.err
    assert "hunter22" not in res.err
    # Refused before the store is touched: there is none, or it holds no connection.
    assert not tp.db_path.exists() or tp.ok("connections", "--json").json() == []


def test_a_connection_name_longer_than_the_store_keeps_is_refused_at_its_line(
        tp: Taskplan) -> None:
    # connections.name is 200 characters: PostgreSQL refused a longer one in the middle of
    # an apply (StringDataRightTruncation).
    tp.write("connections.yaml", f"""
        connections:
          ok: "sqlite:///ok.db"
          {'m' * 201}: "sqlite:///mart.db"
    """)
    res = tp("apply", "connections.yaml")
    assert res.code == 2, res
    assert "connections.yaml:3:3:" in res.err and "at most 200 characters" in res.err, res.err
    assert not tp.db_path.exists() or tp.ok("connections", "--json").json() == []


def test_a_query_password_is_masked() -> None:
    from taskplan.redact import mask_url

    text = "cannot reach postgresql://etl@db/mart?password=hunter22&sslmode=require: refused"
    assert mask_url(text) == ("cannot reach postgresql://etl@db/mart?password=***"
                              "&sslmode=require: refused")


def test_taskplan_toml_connections_are_shared(tp: Taskplan) -> None:
    tp.write("taskplan.toml", f"""
        db = "sqlite:///{tp.db_path}"
        [connections]
        local = "sqlite:///${{DATA_DIR}}/local.db"
    """)
    tp.write("report.yaml", JOB.format(name="report", conn="local"))
    tp.ok("run", "report.yaml", db=False, env={"DATA_DIR": str(tp.home)})
    assert (tp.home / "local.db").exists()
    res = tp("run", "report.yaml", db=False)  # the variable is missing: the task says which
    assert res.code == 1
    [latest, _] = tp.ok("runs", "--json").json()
    assert "DATA_DIR is not set" in tp.status(latest["run_id"])["tasks"][0]["error"]


def test_a_secret_read_from_a_file_is_masked_in_errors(tp: Taskplan) -> None:
    pytest.importorskip("psycopg")
    secret = "s3cr3t-Zq9"
    (tp.home / "pw").write_text(secret + "\n")
    # The secret also names the database, so the server's error quotes it.
    tp.write("connections.yaml", """
        connections:
          pg: "postgresql://postgres:${file:PW}@127.0.0.1:5432/${file:PW}"
    """.replace("PW", str(tp.home / "pw")))
    tp.write("job.yaml", JOB.format(name="job", conn="pg"))
    tp.ok("apply", "connections.yaml")
    res = tp("run", "job.yaml")
    assert res.code == 1
    [run] = tp.ok("runs", "--json").json()
    error = tp.status(run["run_id"])["tasks"][0]["error"]
    if "does not exist" not in error and os.environ.get("CI", "").lower() != "true":
        pytest.skip(f"PostgreSQL not reachable: {error}")
    assert secret not in error and secret not in res.out + res.err and "***" in error
    assert secret not in tp.ok("logs", str(run["run_id"]), "count").out
