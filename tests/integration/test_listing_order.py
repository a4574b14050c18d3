"""Listings by name come in the same order on every backend: code-point order, as on SQLite,
not in the collation of the PostgreSQL database (which in most locales sorts `a_a` first)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskplan.cli.main import cli

NAMES = ["b", "a_a", "ab", "a-b", "a0", "a-a"]


@pytest.mark.postgres
def test_jobs_and_calendars_are_listed_in_code_point_order_on_postgresql(
        pg_url: str, tmp_path: Path) -> None:
    import psycopg

    base = pg_url.rsplit("/", 1)[0]
    name = f"tp_icu_{secrets.token_hex(6)}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        try:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu'
                          " ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
        except psycopg.Error as exc:
            pytest.skip(f"this server makes no database with an ICU collation: {exc}")
    try:
        url = f"{base}/{name}"
        for n in NAMES:
            (tmp_path / f"{n}.yaml").write_text(f"job: {n}\ntasks: {{t: {{shell: 'true'}}}}\n")
            (tmp_path / f"cal-{n}.yaml").write_text(f"calendar: {n}\nweekends: [sun]\n")
        runner = CliRunner()
        res = runner.invoke(cli, ["apply", str(tmp_path), "--db", url])
        assert res.exit_code == 0, res.output
        jobs = runner.invoke(cli, ["jobs", "--json", "--db", url])
        assert [j["job"] for j in json.loads(jobs.output)] == sorted(NAMES)
        cals = runner.invoke(cli, ["calendars", "--json", "--db", url])
        assert [c["name"] for c in json.loads(cals.output)] == sorted(NAMES)
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
