"""Checked job files, kept so that running an unchanged file again skips its checking.

Parsing and checking a job file (YAML, then the pydantic schema and the cross-task rules) costs
more than everything else `taskplan run` does for a small job: importing the schema alone is
about 100 ms. A file that checked cleanly is kept here as its built JobSpec (pickled), under a
key made of everything its checking depends on: the file's bytes, the shared connection names
a task may use without declaring them, and the taskplan code that checked it (the version and
every module's size and modification time, so an upgrade or an edit of taskplan misses). Where
the file lies is not part of it: no check looks outside the file, and the two fields that
hold its location (`source_path`, `base_dir`) are set from the path it is loaded from. A file
with problems is never kept: its problems are found and reported again, with their positions,
each time.

The cache is where Python keeps its own compiled files' kind of data: under
`$TASKPLAN_CACHE_DIR`, else `$XDG_CACHE_HOME/taskplan`, else `~/.cache/taskplan`, in `jobs/`.
`TASKPLAN_CACHE_DIR=off` turns it off. It is only a shortcut: any failure to read or write it
(permissions, a full disk, a corrupt entry) falls back to checking the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import sys
from pathlib import Path

import taskplan
from taskplan.model import JobSpec
from taskplan.spec.shared import SHARED

FORMAT = b"taskplan-checked-job-2"
KEEP = 256  # entries kept; the oldest are removed beyond it
_code_stamp: bytes | None = None


def load_job_file(path: str | Path) -> JobSpec:
    """The job a file defines, from the cache when the same file was checked before; raises
    DefinitionError with every problem otherwise (as spec.loader.load_job_file)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        from taskplan.spec import loader

        return loader.load_job_file(path)  # it reports why the file cannot be read
    folder = cache_dir()
    entry = None if folder is None else folder / (key_of(raw).hex() + ".pickle")
    if entry is not None:
        spec = _read(entry)
        if spec is not None:
            _touch(entry)  # pruning removes the least recently used
            absolute = os.path.abspath(path)
            return dataclasses.replace(spec, source_path=absolute,
                                       base_dir=os.path.dirname(absolute))
    from taskplan.spec import loader

    spec = loader.load_job_file_text(path, text)
    if entry is not None:
        _write(entry, spec)
    return spec


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


def key_of(raw: bytes) -> bytes:
    """Everything the checking of a file of these bytes depends on, hashed."""
    h = hashlib.sha256(FORMAT)
    for part in (code_stamp(), "\0".join(sorted(SHARED.get())).encode(), raw):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def code_stamp() -> bytes:
    """taskplan's version, Python's, and the size and mtime of every module of taskplan."""
    global _code_stamp
    if _code_stamp is None:
        h = hashlib.sha256(f"{taskplan.__version__} {sys.version_info[:2]}".encode())
        root = os.path.dirname(taskplan.__file__)
        for rel, st in sorted(_modules(root, "")):
            h.update(f"{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
        _code_stamp = h.digest()
    return _code_stamp


def _modules(folder: str, rel: str) -> list[tuple[str, os.stat_result]]:
    out: list[tuple[str, os.stat_result]] = []
    with os.scandir(folder) as entries:
        for e in entries:
            if e.is_dir() and e.name != "__pycache__":
                out.extend(_modules(e.path, f"{rel}{e.name}/"))
            elif e.name.endswith(".py"):
                out.append((rel + e.name, e.stat()))
    return out


def _read(entry: Path) -> JobSpec | None:
    try:
        with open(entry, "rb") as fh:
            # Only this user's own entries: another user's file could unpickle anything.
            if os.fstat(fh.fileno()).st_uid != os.getuid():
                return None
            spec = pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception:  # a torn or foreign entry is a miss, never an error
        return None
    return spec if isinstance(spec, JobSpec) else None


def _touch(entry: Path) -> None:
    try:
        os.utime(entry)
    except OSError:
        pass


def _write(entry: Path, spec: JobSpec) -> None:
    import tempfile  # (with shutil and random: only when an entry is written)

    try:
        entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
    entries = [e for e in os.scandir(folder) if e.name.endswith(".pickle")]
    if len(entries) <= KEEP:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns)
    for e in entries[:len(entries) - KEEP]:
        try:
            os.unlink(e.path)
        except OSError:
            pass
