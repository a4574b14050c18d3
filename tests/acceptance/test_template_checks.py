"""validate checks every template's names; a template failing at run time is one line."""

from __future__ import annotations

from acceptance_helpers import Taskplan


def test_validate_checks_template_names(tp: Taskplan) -> None:
    tp.write("tpl.yaml", """
        job: tpl
        params: {day: "2026-01-01"}
        schedules:
          - cron: "0 2 * * *"
            params: {mode: full}
        tasks:
          a: {shell: "echo {{ params.dya }} {{ params.mode }} {{ params.get('x', 1) }}"}
          b:
            depends_on: [a]
            shell: "echo {{ tasks.a.reslt }} {{ run.idd }} {{ tasks.c.result }}"
          c: {shell: "echo {{ item }}"}
          d:
            foreach: {values: [1, 2]}
            shell: "echo {{ item }} {{ run.id }} {{ run.fire_time }} {{ params.day }}"
    """)
    res = tp("validate", "tpl.yaml", db=False)
    assert res.code == 2, res
    assert res.err.splitlines() == [
        "tpl.yaml:7:14: tasks.a.shell: template reads params.dya, which the job does not"
        " declare; did you mean 'day'? (declared params: day, mode)",
        "tpl.yaml:10:12: tasks.b.shell: template reads tasks.a.reslt; a task offers only"
        " tasks.a.result; did you mean 'result'?",
        "tpl.yaml:10:12: tasks.b.shell: template reads run.idd; run has attempt, fire_time, id,"
        " job; did you mean 'id'?",
        "tpl.yaml:10:12: tasks.b.shell: tasks.c is not an upstream of task 'b'; a template can"
        " only read results of tasks it waits for",
        "tpl.yaml:11:14: tasks.c.shell: {{ item }} is not available in a task without foreach",
        "5 problem(s)",
    ], res.err
    assert not (tp.home / "taskplan.db").exists()


def test_a_template_failing_at_run_time_is_one_line_without_traceback(tp: Taskplan) -> None:
    # A job without `params:` takes any --param, so this is only found when it runs.
    tp.write("rt.yaml", """
        job: rt
        tasks:
          a: {shell: "echo {{ params.nope }}"}
    """)
    res = tp("run", "rt.yaml")
    assert res.code == 1, res
    assert "Traceback" not in res.err and "Traceback" not in res.out, res
    assert "failed: a after 1 attempt(s): template error: params has no 'nope' (the run's" \
           " params: none); give it with --param nope=VALUE, or a default under params:\n" \
           in res.out, res
    assert tp.ok("logs", "1", "a").out.startswith("taskplan: template error: ")
    # --debug is a global flag
    assert tp.ok("--debug", "status", "1").code == 0


def test_validate_checks_templates_inside_a_job_tasks_list_and_mapping_params(tp: Taskplan
                                                                             ) -> None:
    """They are rendered, so they are checked, each at its own position."""
    tp.write("child.yaml", "job: child\nparams: {names: [], opts: {}}\ntasks:\n"
                           "  t: {shell: 'true'}\n")
    tp.write("parent.yaml", """
        job: parent
        params: {m: 3}
        tasks:
          one:
            job: child
            params:
              names: [x, "{{ params.mm }}"]
              opts: {a: "{{ item }}"}
    """)
    res = tp("validate", "parent.yaml", "child.yaml", db=False)
    assert res.code == 2, res
    assert res.err.splitlines() == [
        "parent.yaml:7:18: tasks.one.params.names[1]: template reads params.mm, which the job"
        " does not declare; did you mean 'm'? (declared params: m)",
        "parent.yaml:8:17: tasks.one.params.opts.a: {{ item }} is not available in a task"
        " without foreach",
        "2 problem(s)",
    ], res.err
