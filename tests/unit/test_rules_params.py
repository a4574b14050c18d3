"""A run's params checked and typed against the job's declared defaults (rules.declared_params):
the same for `--param` text, the API's JSON values and the console's."""

from __future__ import annotations

import pytest

from taskplan.errors import UsageError
from taskplan.rules import declared_params
from taskplan.spec import load_job_text

JOB = """
job: x
params: {n: 3, on: false, tags: [a], name: t, r: 2.5}
schedules: [{cron: "0 1 * * *", params: {mode: 1}}]
tasks:
  a: {shell: echo}
"""


@pytest.mark.parametrize(("given", "kept"), [
    ({"n": "7"}, {"n": 7}), ({"n": 7}, {"n": 7}), ({"on": "true"}, {"on": True}),
    ({"r": 4}, {"r": 4}), ({"tags": '["p"]'}, {"tags": ["p"]}), ({"name": 5}, {"name": 5}),
    ({"mode": "2"}, {"mode": 2}),  # a schedule's param, typed by the schedule's default
])
def test_values_of_the_defaults_kind_are_kept_typed(given: dict[str, object],
                                                    kept: dict[str, object]) -> None:
    assert declared_params(load_job_text(JOB, "j.yaml", "."), given) == kept


@pytest.mark.parametrize("given", [
    {"n": True}, {"n": [1]}, {"n": 2.5}, {"on": 0}, {"tags": {"a": 1}}, {"r": "NaN"},
    {"r": float("inf")}, {"mode": "x"}, {"n": "seven"},
])
def test_values_of_another_kind_are_refused_whatever_their_form(given: dict[str, object]
                                                               ) -> None:
    with pytest.raises(UsageError, match=r"takes .*, as its default .* is; got"):
        declared_params(load_job_text(JOB, "j.yaml", "."), given)
