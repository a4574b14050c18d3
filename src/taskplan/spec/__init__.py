"""Job files: YAML 1.2 with positions -> validated JobSpec, with every problem reported at once.

Choices the contract leaves open:
- a schedule's ``end`` is inclusive; a bare date means the end of that day (23:59:59.999999);
  a bare ``start``/``once`` date means midnight;
- cron aliases (@daily, ...) are stored expanded to 5 fields in ScheduleSpec.cron;
- null for an optional task key (timeout, pool, cwd, ...) means "none" and overrides defaults;
- top-level keys starting with ``x-`` are ignored, so they can hold YAML anchors;
- a task's sql, shell, env values, cwd, foreach sql and (for job tasks) string params are
  checked as templates.
"""

# The names below are imported on first use: a module that needs one piece of this package
# (templating for the agent, durations for `stop`, the digest for `apply`) must not load the
# job-file schema, whose pydantic models cost more than the rest of a quick command.
from __future__ import annotations

from typing import TYPE_CHECKING

from taskplan.lazy import lazy_names

if TYPE_CHECKING:
    from taskplan.spec.analysis import calendar_from_definition, job_from_definition
    from taskplan.spec.checked import load_job_file
    from taskplan.spec.digest import definition_hash
    from taskplan.spec.loader import (
        Definitions,
        expand_paths,
        load_definitions,
        load_job_files,
        load_job_text,
        validate_files,
    )
    from taskplan.spec.schema import build_validators

_LOADER = "taskplan.spec.loader"
_HOMES = {
    "Definitions": _LOADER,
    "build_validators": "taskplan.spec.schema",
    "calendar_from_definition": "taskplan.spec.analysis",
    "definition_hash": "taskplan.spec.digest",
    "expand_paths": _LOADER,
    "job_from_definition": "taskplan.spec.analysis",
    "load_definitions": _LOADER,
    "load_job_file": "taskplan.spec.checked",
    "load_job_files": _LOADER,
    "load_job_text": _LOADER,
    "validate_files": _LOADER,
}


__getattr__ = lazy_names(__name__, _HOMES)

__all__ = [
    "Definitions",
    "build_validators",
    "calendar_from_definition",
    "definition_hash",
    "expand_paths",
    "job_from_definition",
    "load_job_file",
    "load_job_files",
    "load_definitions",
    "load_job_text",
    "validate_files",
]
