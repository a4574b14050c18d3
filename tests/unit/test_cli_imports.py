"""What each quick command imports: a structural check, not a timing one. `--help`, `--version`
and the read-only commands must start without the engine's layers, the job-file parser
(pydantic, YAML, Jinja), the agent, the progress display or SQLAlchemy: together they are most
of a command's start-up time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskplan.cli.main import COMMANDS, SUMMARIES
from taskplan.store.db import Store

# Run a command in a fresh interpreter, as the `taskplan` script does, then print its exit code
# and every module it loaded.
PROBE = """
import json, sys
from taskplan.cli.main import main
sys.argv = ["taskplan", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
HEAVY = ("pydantic", "sqlalchemy", "alembic", "yaml", "jinja2", "rich", "taskplan.agent",
         "taskplan.engine.facade", "taskplan.engine.claims", "taskplan.engine.transitions",
         "taskplan.engine.recovery", "taskplan.engine.definitions", "taskplan.spec.schema",
         "taskplan.executors", "taskplan.forecast")
# What `--help` and `--version` do not need either: settings, the store, the shared CLI code.
STORE = ("taskplan.config", "taskplan.store", "taskplan.cli.common")


def run(cwd: Path, *args: str) -> tuple[int, list[str]]:
    env = {"PATH": "/usr/bin:/bin"}
    if "TASKPLAN_CACHE_DIR" in os.environ:  # the suite's own cache of checked job files
        env["TASKPLAN_CACHE_DIR"] = os.environ["TASKPLAN_CACHE_DIR"]
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                         check=True, cwd=cwd, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return int(result["code"]), list(result["modules"])


def loaded(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("imports")
    url = f"sqlite:///{folder / 'store.db'}"
    Store(url).close()
    return folder, url


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_load_neither_settings_nor_store(tmp_path: Path,
                                                          args: list[str]) -> None:
    code, modules = run(tmp_path, *args)
    assert code == 0
    assert loaded(modules, HEAVY + STORE) == []


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["runs"],
                                  ["runs", "--json"], ["logs", "1", "a"]])
def test_read_only_commands_load_neither_engine_nor_parser(store: tuple[Path, str],
                                                          args: list[str]) -> None:
    folder, url = store
    code, modules = run(folder, "--db", url, *args)
    assert loaded(modules, HEAVY) == []
    # `logs` of a run that does not exist: its error path imports nothing heavy either.
    assert code == (2 if args[0] == "logs" else 0)


def test_every_command_has_a_summary_so_help_imports_none() -> None:
    assert sorted(SUMMARIES) == sorted(COMMANDS)


def test_the_probe_sees_heavy_modules(store: tuple[Path, str], tmp_path: Path) -> None:
    """The check can fail: `validate` of a job file does load the parser."""
    job = tmp_path / "j.yaml"
    job.write_text('job: j\ntasks:\n  a:\n    shell: ["true"]\n')
    code, modules = run(tmp_path, "--db", store[1], "validate", str(job))
    assert code == 0
    assert "pydantic" in loaded(modules, HEAVY)


def test_a_shell_job_runs_without_templates_display_forecaster_or_sqlalchemy(
        store: tuple[Path, str], tmp_path: Path) -> None:
    """`run` of a shell job without templates or deadline, output to a pipe: Jinja, rich, the
    forecaster, SQLAlchemy and the other executors stay unloaded (the file is checked, with
    pydantic, the first time it runs)."""
    job = tmp_path / "one.yaml"
    job.write_text('job: one\ntasks:\n  only:\n    shell: ["true"]\n')
    code, modules = run(tmp_path, "--db", store[1], "run", str(job))
    assert code == 0
    assert loaded(modules, ("jinja2", "rich", "taskplan.forecast", "sqlalchemy", "alembic",
                            "taskplan.executors.python", "taskplan.executors.sql")) == []


def test_a_file_run_again_is_neither_parsed_nor_checked(store: tuple[Path, str],
                                                         tmp_path: Path) -> None:
    """The second `run` of an unchanged file finds it in the cache of checked job files: no
    YAML, no pydantic, no job-file schema; nor does the end of its run build the definitions
    of the store's other jobs, which declare no cross-job triggers."""
    other = tmp_path / "other.yaml"
    other.write_text('job: other\ntasks:\n  only:\n    shell: ["true"]\n')
    assert run(tmp_path, "--db", store[1], "apply", str(other))[0] == 0
    job = tmp_path / "again.yaml"
    job.write_text('job: again\ntasks:\n  only:\n    shell: ["true"]\n')
    code, first = run(tmp_path, "--db", store[1], "run", str(job))
    assert code == 0 and "pydantic" in first
    code, again = run(tmp_path, "--db", store[1], "run", str(job))
    assert code == 0
    assert loaded(again, ("pydantic", "yaml", "taskplan.spec.schema", "taskplan.spec.loader",
                          "taskplan.engine.waiting")) == []
