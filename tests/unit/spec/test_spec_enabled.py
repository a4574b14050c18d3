import textwrap

import pytest

from taskplan.errors import DefinitionError
from taskplan.spec import load_job_text


def problems(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load_job_text(textwrap.dedent(text), "job.yaml", "/jobs")
    return [str(p) for p in info.value.problems]


def test_enabled_must_be_a_boolean_and_schedule_exceptions_are_checked_in_place() -> None:
    got = problems("""\
        job: j
        enabled: "no"
        tags: [""]
        schedules:
          - at: "06:00"
            enabled: 1
            exceptions:
              - {}
              - weekdays: [funday]
        tasks:
          a: {shell: "true", enabled: yes}
        """)
    assert any(p.startswith("job.yaml:2:10: ") and "expected true or false" in p for p in got)
    assert any(p.startswith("job.yaml:3:") for p in got)
    assert any(p.startswith("job.yaml:6:14: ") and "true or false" in p for p in got)
    assert any(p.startswith("job.yaml:8:") and "expected dates: or calendar keys" in p
               for p in got)
    assert any(p.startswith("job.yaml:9:") and "weekday" in p for p in got)
    assert any(p.startswith("job.yaml:11:") and "true or false" in p for p in got)
