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

from taskplan.spec.loader import (
    Definitions,
    calendar_from_definition,
    definition_hash,
    expand_paths,
    job_from_definition,
    load_definitions,
    load_job_file,
    load_job_files,
    load_job_text,
    validate_files,
)

__all__ = [
    "Definitions",
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
