"""The reference in docs/ stays complete: every command and flag, every job-file key, every
`--json` shape is there, and every job-file example in it is valid."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from taskplan.cli.main import COMMANDS, cli
from taskplan.spec import schema, validate_files
from taskplan.spec.connections import ConnectionsFile

DOCS = Path(__file__).resolve().parents[2] / "docs"
CLI_DOC = (DOCS / "reference" / "cli.md").read_text()
JOB_DOC = (DOCS / "reference" / "job-file.md").read_text()
JSON_DOC = (DOCS / "json-output.md").read_text()


def commands() -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    for name in COMMANDS:
        cmd = cli.get_command(ctx, name)
        assert cmd is not None, name
        if isinstance(cmd, click.Group):
            yield name, cmd
            for sub in cmd.list_commands(ctx):
                found = cmd.get_command(ctx, sub)
                assert found is not None
                yield f"{name} {sub}", found
        else:
            yield name, cmd


def cli_section(name: str) -> str | None:
    m = re.search(r"^### `taskplan " + re.escape(name) + r"(?: [^`]*)?`\n(.*?)(?=^#{2,3} |\Z)",
                  CLI_DOC, re.S | re.M)
    return m.group(1) if m else None


def test_every_command_and_flag_is_in_the_command_reference() -> None:
    missing = []
    for name, cmd in commands():
        if isinstance(cmd, click.Group) and not [
                p for p in cmd.params if isinstance(p, click.Option) and "--db" not in p.opts]:
            continue  # a bare group: its subcommands have the sections
        text = cli_section(name)
        if text is None:
            missing.append(f"taskplan {name}")
            continue
        for p in cmd.params:
            if isinstance(p, click.Option) and "--db" not in p.opts:
                flag = max(p.opts, key=len)
                if f"`{flag}`" not in text:
                    missing.append(f"taskplan {name} {flag}")
        if "```sh" not in text:
            missing.append(f"taskplan {name}: an example")
    assert missing == []


def test_every_command_takes_db_after_its_name_as_the_reference_says() -> None:
    assert "`--db URL` (before or after the command name)" in CLI_DOC
    missing = [name for name, cmd in commands() if not isinstance(cmd, click.Group)
               and not any(isinstance(p, click.Option) and "--db" in p.opts
                           for p in cmd.params)]
    assert missing == []


def model_keys(model: type[BaseModel]) -> set[str]:
    return {f.alias or k for k, f in model.model_fields.items()}


def test_every_job_file_key_is_in_the_job_file_reference() -> None:
    models = [m for m in vars(schema).values()
              if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ ==
              schema.__name__ and m is not schema.StrictModel] + [ConnectionsFile]
    assert schema.Header in models and schema.TaskModel in models
    missing = sorted(f"{m.__name__}.{k}" for m in models for k in model_keys(m)
                     if f"`{k}`" not in JOB_DOC)
    assert missing == []


def test_every_json_listing_is_in_the_json_reference() -> None:
    missing = [name for name, cmd in commands()
               if any(isinstance(p, click.Option) and "--json" in p.opts for p in cmd.params)
               and f"`{name.split()[0]}" not in JSON_DOC]
    assert missing == []


def yaml_examples() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", JOB_DOC, re.S)


@pytest.mark.parametrize("index", range(len(yaml_examples())))
def test_every_job_file_example_validates(index: int, tmp_path: Path) -> None:
    text = yaml_examples()[index]
    path = tmp_path / f"example{index}.yaml"
    path.write_text(text)
    assert [str(p) for p in validate_files([path])] == []


def test_the_readme_says_what_to_run_after_the_example() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert "taskplan status" in readme and "taskplan logs" in readme


def test_the_readme_table_names_every_command() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert [name for name in COMMANDS if f"`taskplan {name}" not in readme] == []


def test_every_file_and_name_the_architecture_names_exists() -> None:
    """docs/architecture.md points at files, functions and tables; a rename leaves it pointing
    at nothing, so every path it names must exist and every code name (one with `_` or an
    inner capital) must occur in the source."""
    repo = DOCS.parent
    src = repo / "src" / "taskplan"
    text = (DOCS / "architecture.md").read_text()
    code = "\n".join(p.read_text() for p in sorted(src.rglob("*"))
                     if p.suffix in (".py", ".sql") and "__pycache__" not in p.parts)
    bases = [repo, repo / "src", src] + [src / d for d in ("engine", "store", "executors",
                                                               "spec", "store/dialects")]
    missing = []
    for token in sorted(set(re.findall(r"`([^`\n]+)`", text))):
        if "*" in token or "vN" in token or token == "taskplan.toml":
            continue  # a family of names, or the user's own file
        if re.fullmatch(r"[\w./]+/[\w./]*|[\w/]+\.(?:py|sql)", token):
            if not any((base / token).exists() for base in bases):
                missing.append(token)
            continue
        for name in re.findall(r"[A-Za-z_]\w*", token):
            if (("_" in name.strip("_") or re.search(r"[a-z][A-Z]", name))
                    and not re.search(r"\b" + re.escape(name) + r"\b", code)):
                missing.append(f"{name} (in `{token}`)")
    assert missing == []


def test_every_migration_is_in_the_release_notes_and_the_server_step_lists() -> None:
    """A migration added without its line in docs/releases.md (or, when it writes the server
    step, without its number where the docs list those) leaves upgraders guessing."""
    versions = DOCS.parent / "src" / "taskplan" / "store" / "migrations" / "versions"
    releases = (DOCS / "releases.md").read_text()
    deployment = (DOCS / "deployment.md").read_text()
    architecture = (DOCS / "architecture.md").read_text()
    files = sorted(versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert files
    missing = [f.name for f in files
               if int(f.name[:4]) >= 4 and f"| {f.name[:4]} |" not in releases]
    listed = re.search(r"replaces server-side functions \(([^)]*)\)", releases)
    server_list = re.search(r"migrations (0003[^`]*?), code", deployment)
    assert listed and server_list
    for f in files:
        if re.search(r"step_v\d+\.sql", f.read_text()) is None:
            continue
        number = f.name[:4]
        missing += [f"{where}: {number}" for where, text in (
            ("releases.md", listed.group(1)), ("deployment.md", server_list.group(1)),
            ("architecture.md", architecture)) if number not in text]
    assert missing == []


# Folders the tools write when they run (not committed, so absent from a clean clone).
WRITTEN_BY_RUNS = ("benchmarks/results",)


def test_every_file_the_docs_cite_exists() -> None:
    """The docs send readers to tests, sources, examples and other pages; a rename leaves
    them pointing at nothing."""
    repo = DOCS.parent
    pages = [repo / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("*/*.md"))]
    missing = []
    for page in pages:
        text = re.sub(r"/\n", "/", page.read_text())  # a path broken over two lines
        for path in set(re.findall(
                r"(?<![\w/.])((?:tests|src|benchmarks|scripts|examples|docs)/[\w./-]*\w)", text)):
            if path.startswith(WRITTEN_BY_RUNS):
                continue
            if "vN" not in path and not (repo / path).exists():
                missing.append(f"{page.name}: {path}")
    assert sorted(missing) == []


def test_the_job_file_reference_gives_the_defaults_the_schema_has() -> None:
    """The `default` columns of docs/reference/job-file.md against the schema's defaults:
    a literal (`0`, `skip`, `[]`) must be the default, `none` must be no value, and `required`
    must be required."""
    import yaml
    from pydantic_core import PydanticUndefined

    weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    tables = {"Job keys": schema.Header, "Tasks": schema.TaskModel,
              "Cross-job triggers": schema.TriggerModel, "Deadlines": schema.DeadlineModel,
              "A calendar file": schema.CalendarFile}
    wrong = []
    for title, model in tables.items():
        body = re.search(r"^## " + re.escape(title) + r"\n(.*?)(?=^## |\Z)", JOB_DOC,
                         re.S | re.M)
        assert body is not None, title
        rows = re.findall(r"^\| `(\w+)` \|.*\| (.*?) \|$", body.group(1), re.M)
        assert rows, title
        for key, doc in rows:
            field = next(f for k, f in model.model_fields.items() if (f.alias or k) == key)
            default = field.get_default(call_default_factory=True)
            default = getattr(default, "value", default)  # an enum: its text
            if doc == "required":
                ok = default is PydanticUndefined
            elif doc == "none":
                ok = default is None
            elif re.fullmatch(r"`[^`.]*`", doc):  # not a reference such as defaults.x
                said = yaml.safe_load(doc.strip("`"))
                if key == "weekends":
                    said = [weekdays.index(d) for d in said]
                ok = said == default
            else:
                ok = True  # a default said in words (taskplan.toml's, the job's)
            if not ok:
                wrong.append(f"{title}: {key} says {doc}, is {default!r}")
    assert wrong == []


def test_the_command_reference_gives_each_option_its_default() -> None:
    """Every option with a default says it in its bullet, `(default X)`, and X is the
    default click applies (the slot counts, which depend on the machine, in words)."""
    wrong = []
    for name, cmd in commands():
        text = cli_section(name) or ""
        for p in cmd.params:
            if (not isinstance(p, click.Option) or "--db" in p.opts or p.is_flag or p.count
                    or p.multiple or p.required):
                continue
            default = p.get_default(click.Context(cmd), call=False)
            if default is None:
                continue
            flag = max(p.opts, key=len)
            bullet = next((line for line in text.splitlines() if line.startswith("- ")
                           and f"`{flag}`" in line.split(":")[0]), "")
            said = re.search(r"\(default:? ([^)]*)\)", bullet)
            if said is None:
                wrong.append(f"taskplan {name} {flag}: no default said (it is {default})")
            elif said.group(1) not in (str(default), "the CPUs, 2 to 8"):
                wrong.append(f"taskplan {name} {flag}: says {said.group(1)}, is {default}")
    assert wrong == []


def test_every_option_the_docs_name_exists() -> None:
    """A renamed or removed option left behind in a page is one a reader types and gets
    'No such option' for."""
    known = {opt for p in cli.params for opt in p.opts}
    for _, cmd in commands():
        known |= {opt for p in cmd.params if isinstance(p, click.Option)
                  for opt in (*p.opts, *p.secondary_opts)}
    # Not taskplan's: the benchmark harnesses' own, a peer's, and a task's arguments.
    others = {"--help", "--repeat", "--rows", "--prefect-python", "--log-level", "--day",
              "--full"}
    pages = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("*/*.md"))]
    unknown = sorted(f"{page.name}: {opt}" for page in pages
                     for opt in set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", page.read_text()))
                     if opt not in known | others)
    assert unknown == []


def test_every_command_line_in_the_docs_uses_options_of_its_command() -> None:
    """`taskplan CMD ... --flag` in a page, inline or in an example block: the flag must be
    one of CMD's (or a global one), so that copying the line works."""
    found = dict(commands())
    global_opts = {opt for p in cli.params for opt in p.opts} | {"--help", "-h"}
    pages = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("*/*.md"))]
    wrong = []
    for page in pages:
        text = page.read_text()
        lines = re.findall(r"`(taskplan [^`\n]+)`", text)
        for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, re.S):
            lines += [line.split(" #")[0] for line in block.splitlines() if "taskplan " in line]
        for line in lines:
            line = re.sub(r"'[^']*'|\"[^\"]*\"", "''", line)  # a quoted value is no option
            for part in re.split(r"&&|\||;|─", line):
                m = re.search(r"taskplan\s+((?:-\S+\s+(?:[^-\s]\S*\s+)?)*)([a-z][a-z-]*)"
                              r"(?:\s+([a-z][a-z-]*))?(.*)", part)
                if m is None or m.group(2) not in found:
                    continue
                name, rest = m.group(2), f"{m.group(3) or ''} {m.group(4)}"
                if m.group(3) and f"{name} {m.group(3)}" in found:
                    name = f"{name} {m.group(3)}"
                opts = global_opts | {opt for p in found[name].params
                                      if isinstance(p, click.Option)
                                      for opt in (*p.opts, *p.secondary_opts)}
                wrong += [f"{page.name}: taskplan {name} {flag}"
                          for flag in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", rest)
                          if flag not in opts]
    assert wrong == []


def whole_examples() -> list[tuple[str, str]]:
    """The complete job, calendar and connections files shown in the README and docs/*.md
    (fragments, with `...` or alternatives for one key, are left out)."""
    pages = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]
    found = []
    for page in pages:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            top = re.findall(r"^([a-z_]+):", block, re.M)
            if ("..." in block or len(top) != len(set(top))
                    or not ({"job", "tasks"} <= set(top) or top[:1] in (["calendar"],
                                                                        ["connections"]))):
                continue
            found.append((page.name, block))
    return found


@pytest.mark.parametrize("index", range(len(whole_examples())))
def test_every_whole_example_of_the_docs_validates(index: int, tmp_path: Path) -> None:
    page, text = whole_examples()[index]
    path = tmp_path / f"{Path(page).stem}{index}.yaml"
    path.write_text(text)
    assert [str(p) for p in validate_files([path])] == [], page
