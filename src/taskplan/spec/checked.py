"""Checked job files, kept so that running an unchanged file again skips its checking.

Parsing and checking a job file (YAML, then the pydantic schema and the cross-task rules) costs
more than everything else `taskplan run` does for a small job: importing the schema alone is
about 100 ms. A file that checked cleanly is kept here as its built JobSpec (pickled), under a
key made of everything its checking depends on: the file's bytes, the shared connection names
a task may use without declaring them, the taskplan code that checked it (the version and
every module's size and modification time, so an upgrade or an edit of taskplan misses), the
libraries the checking calls (pydantic, PyYAML, Jinja, cronsim, tzdata: each one's size and
modification time) and where time zones are looked up. The time zones a hit names are loaded
again before it is used: a zone the system no longer has makes it a miss, and the file is
checked (and refused) as if never seen. Where the file lies is not part of the key: no check
looks outside the file, and the two fields that hold its location (`source_path`, `base_dir`)
are set from the path it is loaded from. A file with problems is never kept: its problems are
found and reported again, with their positions, each time.

The cache is where Python keeps its own compiled files' kind of data: under
`$TASKPLAN_CACHE_DIR`, else `$XDG_CACHE_HOME/taskplan`, else `~/.cache/taskplan`, in `jobs/`.
`TASKPLAN_CACHE_DIR=off` turns it off. Entries are unpickled, so the folder must be this
user's own and writable by nobody else, and an entry must be a regular file of this user's
(symbolic links are not followed): otherwise the cache is not used. It is only a shortcut: any
failure to read or write it (permissions, a full disk, a corrupt entry) falls back to checking
the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import pickle
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import TZPATH

import taskplan
from taskplan.model import JobSpec
from taskplan.spec.outcome import Outcome
from taskplan.spec.reading import read_source
from taskplan.spec.shared import SHARED
from taskplan.spec.source import Positions
from taskplan.timing.checks import check_timezone

FORMAT = b"taskplan-checked-job-3"
KEEP = 256  # entries kept; the oldest are removed beyond it
STALE_TEMP = 3600.0  # s after which a half-written entry (its writer killed) is removed
# What the checking calls beyond taskplan, by import name.
LIBRARIES = ("pydantic", "pydantic_core", "yaml", "jinja2", "cronsim", "tzdata")
_code_stamp: bytes | None = None
_usable: dict[Path, bool] = {}


def load_job_file(path: str | Path) -> JobSpec:
    """The job a file defines, from the cache when the same file was checked before; raises
    DefinitionError with every problem otherwise (as spec.loader.load_job_file)."""
    raw, text = read_source(path, str(path))
    absolute = os.path.abspath(path)

    def check() -> JobSpec:
        from taskplan.spec import loader

        return loader.load_job_file_text(path, text)

    return _kept(_entry(raw), absolute, os.path.dirname(absolute), check)


def outcome_of(path: str | Path, raw: bytes, analyse: Callable[[], Outcome]) -> Outcome:
    """What `analyse()` finds in the file `path` of these bytes; from the cache, with no
    positions, when the same bytes checked cleanly before (the caller analyses the file again
    if it must point into it), and kept when it finds a job and no problem."""
    entry = _entry(raw)
    absolute = os.path.abspath(path)
    spec = _hit(entry, absolute, os.path.dirname(absolute))
    if spec is not None:
        return Outcome(spec, [], spec.definition, Positions())
    out = analyse()
    if entry is not None and out.spec is not None and not out.problems:
        _write(entry, out.spec)
    return out


def job_from_stored(definition: str, source_path: str, base_dir: str) -> JobSpec:
    """The JobSpec of a stored version's definition (its JSON text), rebuilt once per
    definition and taskplan code: a process that meets a version (`run JOB`, `jobs`, an agent's
    first task of it) otherwise loads the schema and checks every task of it again."""

    def rebuild() -> JobSpec:
        import json

        from taskplan.spec.analysis import job_from_definition

        return job_from_definition(json.loads(definition), source_path, base_dir)

    return _kept(_entry(definition.encode(), b"stored"), source_path, base_dir, rebuild)


def _kept(entry: Path | None, source_path: str, base_dir: str,
          build: Callable[[], JobSpec]) -> JobSpec:
    """The entry's job placed at source_path/base_dir, else build() (raising on problems),
    kept in the entry."""
    spec = _hit(entry, source_path, base_dir)
    if spec is None:
        spec = build()
        if entry is not None:
            _write(entry, spec)
    return spec


def _hit(entry: Path | None, source_path: str, base_dir: str) -> JobSpec | None:
    if entry is None:
        return None
    spec = _read(entry)
    if spec is None or not _zones_known(spec):
        return None
    _touch(entry)  # pruning removes the least recently used
    return dataclasses.replace(spec, source_path=source_path, base_dir=base_dir)


def cache_dir() -> Path | None:
    """The folder of checked job files, or None when the cache is off."""
    configured = os.environ.get("TASKPLAN_CACHE_DIR")
    if configured is not None:
        if configured.strip().lower() in ("", "off", "0", "false", "no"):
            return None
        base = Path(configured)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "taskplan" if xdg else Path.home() / ".cache" / "taskplan"
    return base / "jobs"


def key_of(raw: bytes, kind: bytes = b"file") -> bytes:
    """Everything the checking of a file of these bytes (kind b"file") or of a stored
    definition of this JSON text (kind b"stored") depends on, hashed."""
    h = hashlib.sha256(FORMAT)
    for part in (kind, code_stamp(), "\0".join(sorted(SHARED.get())).encode(), raw):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def code_stamp() -> bytes:
    """taskplan's version, Python's, the size and mtime of every module of taskplan and of
    the libraries the checking calls, and where time zones are looked up."""
    global _code_stamp
    if _code_stamp is None:
        h = hashlib.sha256(f"{taskplan.__version__} {sys.version_info[:2]}".encode())
        root = os.path.dirname(taskplan.__file__)
        for rel, st in sorted(_modules(root, "")):
            h.update(f"{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
        for name in LIBRARIES:
            h.update(f"{name} {_file_stamp(name)}\n".encode())
        h.update(f"zones {os.environ.get('PYTHONTZPATH')!r} {TZPATH!r}\n".encode())
        _code_stamp = h.digest()
    return _code_stamp


def warm_up() -> None:
    """For daemons, at start: what their first read of a stored definition would otherwise
    pay in the middle of a run (this module's imports, the stamp of taskplan's code; 15-20 ms
    before the first task of each agent could start)."""
    code_stamp()


def _modules(folder: str, rel: str) -> list[tuple[str, os.stat_result]]:
    out: list[tuple[str, os.stat_result]] = []
    with os.scandir(folder) as entries:
        for e in entries:
            if e.is_dir() and e.name != "__pycache__":
                out.extend(_modules(e.path, f"{rel}{e.name}/"))
            elif e.name.endswith(".py"):
                out.append((rel + e.name, e.stat()))
    return out


def _file_stamp(module: str) -> str:
    """Where an installed module lies, its size and mtime (an upgrade rewrites it), found
    without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not os.path.exists(spec.origin):
        return "absent"
    st = os.stat(spec.origin)
    return f"{spec.origin} {st.st_size} {st.st_mtime_ns}"


def _entry(raw: bytes, kind: bytes = b"file") -> Path | None:
    """Where these bytes' entry is, or None when the cache is off or not safe to use."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        if not _safe(folder):
            return None
        return folder / (key_of(raw, kind).hex() + ".pickle")
    except (OSError, ImportError, ValueError):  # a module gone mid-upgrade, say: check
        return None


def _safe(folder: Path) -> bool:
    """The folder exists (created if not), is this user's and nobody else can write to it."""
    known = _usable.get(folder)
    if known is None:
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = os.stat(folder, follow_symlinks=False)
            known = (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
                     and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))
        except OSError:
            known = False
        _usable[folder] = known
    return known


def _read(entry: Path) -> JobSpec | None:
    try:
        fd = os.open(entry, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:  # none yet, or a symbolic link
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            # Only this user's own regular files: another user's could unpickle anything.
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                return None
            spec = pickle.load(fh)
    except Exception:  # a torn or foreign entry is a miss, never an error
        return None
    return spec if isinstance(spec, JobSpec) else None


def _zones_known(spec: JobSpec) -> bool:
    """Every time zone the job names still loads (the system's zone files can change)."""
    names = [spec.timezone, spec.deadline.timezone if spec.deadline is not None else None]
    return not any(name and check_timezone(name) for name in names)


def _touch(entry: Path) -> None:
    try:
        os.utime(entry)
    except OSError:
        pass


def _write(entry: Path, spec: JobSpec) -> None:
    import tempfile  # (with shutil and random: only when an entry is written)

    try:
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".new-")
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(spec, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, entry)  # readers see the whole entry or none
        except BaseException:
            os.unlink(tmp)
            raise
        _prune(entry.parent)
    except Exception:  # a cache that cannot be written is only slower
        return


def _prune(folder: Path) -> None:
    entries = []
    now = time.time()
    for e in os.scandir(folder):
        if e.name.endswith(".pickle"):
            entries.append(e)
        elif e.name.startswith(".new-") and now - e.stat().st_mtime > STALE_TEMP:
            _remove(e.path)
    if len(entries) <= KEEP:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns)
    for e in entries[:len(entries) - KEEP]:
        _remove(e.path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
