"""Every kind of problem, with the exact line:col it must point at."""

import textwrap
from pathlib import Path

import pytest

from taskplan.errors import DefinitionError, Problem
from taskplan.spec import job_from_definition, load_job_text, validate_files

CASES = [
    # (id, file text, "line:col", message fragment)
    ("yaml syntax", "job: x\ntasks: [a, b\n", "3:1", "YAML syntax"),
    ("not a mapping", "- a\n- b\n", "1:1", "expected a mapping with at least job: and tasks:"),
    ("missing job", "tasks:\n  a: {shell: x}\n", "1:1", "missing required key 'job'"),
    ("missing tasks", "job: x\n", "1:1", "missing required key 'tasks'"),
    ("empty tasks", "job: x\ntasks: {}\n", "2:8", "tasks: expected at least one task"),
    # `tasks:` with nothing after it stored a job of no tasks, whose runs "succeeded" at once.
    ("tasks left empty", "job: x\ntasks:\n", "2:1", "tasks: expected at least one task"),
    ("bad job name", "job: Nightly\ntasks: {a: {shell: x}}\n", "1:6",
     "job: expected a job name of lowercase letters, digits, _ and -, got 'Nightly'"),
    ("unknown top key", "job: x\nschedule: []\ntasks: {a: {shell: x}}\n", "2:1",
     "unknown key 'schedule'; did you mean 'schedules'?"),
    ("unknown task key", "job: x\ntasks:\n  a:\n    shell: x\n    retry: 2\n", "5:5",
     "tasks.a.retry: unknown key 'retry'; did you mean 'retries'?"),
    ("bad retries", "job: x\ntasks:\n  load:\n    shell: x\n    retries: two\n", "5:14",
     "tasks.load.retries: expected a whole number >= 0, got 'two'"),
    ("bad duration", "job: x\ntasks:\n  a:\n    shell: x\n    retry_delay: 5 minutes\n",
     "5:18", "tasks.a.retry_delay: expected a duration like 30s"),
    ("zero timeout", "job: x\ntasks:\n  a:\n    shell: x\n    timeout: 0\n", "5:14",
     "greater than zero"),
    ("bad backoff", "job: x\ntasks:\n  a:\n    shell: x\n    retry_backoff: 0.5\n", "5:20",
     "expected a number >= 1, got 0.5"),
    ("bad agent label", "job: x\ntasks:\n  a:\n    shell: x\n    agent_labels: [etl, a b]\n",
     "5:25", "tasks.a.agent_labels[1]: expected an agent label"),
    ("job labels not a list", "job: x\nagent_labels: {a: 1}\ntasks: {a: {shell: x}}\n", "2:15",
     "agent_labels"),
    ("bad stage", "job: x\ntasks:\n  a:\n    shell: x\n    stage: 0\n", "5:12",
     "tasks.a.stage: expected a whole number >= 1, got 0"),
    ("bad trigger", "job: x\ntasks:\n  a:\n    shell: x\n    trigger: any\n", "5:14",
     "expected one of all_success, all_done, one_failed, got 'any'"),
    ("two kinds", "job: x\ntasks:\n  a:\n    sql: select 1\n    shell: x\n", "5:5",
     "tasks.a.shell: expected exactly one of sql, shell, python, job, found both sql and shell"),
    ("no kind", "job: x\ntasks:\n  a:\n    retries: 1\n", "3:3",
     "tasks.a: expected exactly one of sql, shell, python, job, found none"),
    ("task not a mapping", "job: x\ntasks:\n  a: echo hi\n", "3:6",
     "tasks.a: expected a mapping with one of sql, shell, python, job, got 'echo hi'"),
    ("bad task name", "job: x\ntasks:\n  bad name: {shell: x}\n", "3:3",
     "tasks: expected a task name of letters, digits, _ and -"),
    ("duplicate task", "job: x\ntasks:\n  a: {shell: x}\n  a: {shell: y}\n", "4:3",
     "duplicate key 'a': already defined at line 3"),
    ("bad python", "job: x\ntasks:\n  a: {python: reports.daily.build}\n", "3:15",
     "expected a callable as module.path:function"),
    ("empty argv", "job: x\ntasks:\n  a: {shell: []}\n", "3:14",
     "expected a non-empty list of arguments"),
    ("bad argv item", "job: x\ntasks:\n  a: {shell: [echo, {x: 1}]}\n", "3:21",
     "tasks.a.shell[1]: expected a string or a number, got a mapping"),
    ("bad env", "job: x\ntasks:\n  a:\n    shell: x\n    env: {A: [1]}\n", "5:14",
     "tasks.a.env.A: expected a string (or a number)"),
    ("job calls itself", "job: x\ntasks:\n  a: {job: x}\n", "3:12", "job 'x' cannot start itself"),
    ("params on shell", "job: x\ntasks:\n  a:\n    shell: x\n    params: {a: 1}\n", "5:5",
     "only job tasks take params (this is a shell task)"),
    ("connection on shell",
     "job: x\nconnections: {db: 'sqlite://'}\ntasks:\n  a:\n    shell: x\n    connection: db\n",
     "6:5", "only sql tasks use a connection (this is a shell task)"),
    ("unknown dependency", "job: x\ntasks:\n  a: {shell: x}\n  b:\n    shell: y\n"
     "    depends_on: [a, lod]\n", "6:21", "tasks.b.depends_on[1]: unknown task 'lod'"),
    ("unknown dependency string", "job: x\ntasks:\n  load: {shell: x}\n  b:\n    shell: y\n"
     "    depends_on: lod\n", "6:17", "unknown task 'lod'; did you mean 'load'?"),
    ("misspelt choice", "job: x\ntasks:\n  a: {shell: x, trigger: all_sucess}\n", "3:26",
     "tasks.a.trigger: expected one of all_success, all_done, one_failed (did you mean"
     " all_success?), got 'all_sucess'"),
    ("misspelt time zone", "job: x\ntimezone: Europe/Pari\ntasks: {a: {shell: x}}\n", "2:11",
     "timezone: expected an IANA time zone name like Europe/Paris or UTC (did you mean"
     " Europe/Paris?), got 'Europe/Pari'"),
    ("a city for a time zone", "job: x\ntimezone: new york\ntasks: {a: {shell: x}}\n", "2:11",
     "(did you mean America/New_York?), got 'new york'"),
    # A key in the wrong place, or by another scheduler's name: the guess by spelling named
    # `triggers` for `retries` and nothing for `upstream`.
    ("task key at the job's level", "job: x\nretries: 2\ntasks: {a: {shell: x}}\n", "2:1",
     "retries: unknown key 'retries' here: retries is a task key: put it under defaults: (for"
     " every task) or under a task"),
    ("job key in a task", "job: x\ntasks:\n  a: {shell: x, on_failure: stop}\n", "3:17",
     "tasks.a.on_failure: unknown key 'on_failure' here: on_failure is a job key: put it at"
     " the top level of the file, not in a task"),
    ("another scheduler's word", "job: x\ntasks:\n  a: {shell: x, upstream: [b]}\n"
     "  b: {shell: x}\n", "3:17", "unknown key 'upstream'; did you mean 'depends_on'?"),
    ("another scheduler's word for a job key", "job: x\ntasks:\n  a: {shell: x, schedule: x}\n",
     "3:17", "unknown key 'schedule' here: did you mean 'schedules'? schedules is a job key"),
    ("unknown dependency in another case", "job: x\ntasks:\n  a: {shell: x}\n  b:\n"
     "    shell: y\n    depends_on: [A]\n", "6:18", "unknown task 'A'; did you mean 'a'?"),
    ("self dependency", "job: x\ntasks:\n  a:\n    shell: x\n    depends_on: [a]\n", "5:18",
     "task 'a' cannot depend on itself"),
    ("cycle", "job: x\ntasks:\n  a: {shell: x, depends_on: [c]}\n  b: {shell: x, depends_on: [a]}\n"
     "  c: {shell: x, depends_on: [b]}\n", "3:3", "dependency cycle: a -> c -> b -> a"),
    ("stage cycle", "job: x\ntasks:\n  a: {shell: x, stage: 1, depends_on: [b]}\n"
     "  b: {shell: x, stage: 2}\n", "3:3",
     "dependency cycle: a -> b -> a (b is in stage 2 so it waits for every task of stage 1)"),
    ("unknown connection",
     "job: x\nconnections: {db: 'sqlite://'}\ntasks:\n  a:\n    sql: select 1\n"
     "    connection: dbb\n", "6:17", "unknown connection 'dbb' (declared connections: db)"),
    ("connection not a URL",
     "job: x\nconnections:\n  db: localhost/mart\ntasks:\n  a: {sql: select 1, connection: db}\n",
     "3:7", "connections.db: expected a URL such as postgresql://user@host/db or ${VAR} holding"
     " one, got 'localhost/mart'"),
    ("schedule param of another kind than its default",
     "job: x\nparams: {n: 3}\nschedules:\n  - every: 1h\n    params: {n: abc}\n"
     "tasks:\n  a: {shell: x}\n", "5:17",
     "schedules[0].params.n: param 'n' takes a whole number, as its default 3 is; got 'abc'"),
    ("schedule param holding a template",
     "job: x\nparams: {day: x}\nschedules:\n  - every: 1h\n"
     "    params: {day: '{{ run.fire_time }}'}\ntasks:\n  a: {shell: x}\n", "5:19",
     "schedules[0].params.day: a schedule's params are values: nothing renders"
     " '{{ run.fire_time }}' (read run.fire_time, params or tasks in the task's own text)"),
    ("trigger param of another kind than its default",
     "job: x\nparams: {on: false}\ntriggers:\n  - after: [y]\n    params: {on: [1]}\n"
     "tasks:\n  a: {shell: x}\n", "5:18",
     "triggers[0].params.on: param 'on' takes true or false, as its default false is; got [1]"),
    ("unknown default connection",
     "job: x\ndefaults: {connection: mart}\ntasks:\n  a: {sql: select 1}\n", "2:24",
     "unknown connection 'mart' (the job declares no connections:)"),
    ("sql without connection", "job: x\ntasks:\n  a: {sql: select 1}\n", "3:3",
     "a sql task needs a connection"),
    ("foreach two sources", "job: x\ntasks:\n  a:\n    shell: x\n"
     "    foreach: {values: [1], from: b}\n  b: {shell: y}\n", "5:28",
     "expected exactly one of sql, values, from, found both values and from"),
    ("foreach unknown from", "job: x\ntasks:\n  a:\n    shell: x\n    foreach: {from: zz}\n",
     "5:21", "tasks.a.foreach.from: unknown task 'zz'"),
    ("foreach unknown key", "job: x\ntasks:\n  a:\n    shell: x\n    foreach: {value: [1]}\n",
     "5:15", "unknown key 'value'; did you mean 'values'?"),
    ("template syntax", "job: x\ntasks:\n  a:\n    shell: echo {{ params.x\n", "4:12",
     "tasks.a.shell: template syntax error"),
    ("template unknown root", "job: x\ntasks:\n  a:\n    shell: [echo, '{{ env.HOME }}']\n",
     "4:19", "tasks.a.shell[1]: template uses unknown name 'env'"),
    ("item without foreach", "job: x\ntasks:\n  a:\n    shell: echo {{ item }}\n", "4:12",
     "{{ item }} is not available in a task without foreach"),
    ("result of a non upstream", "job: x\ntasks:\n  a: {shell: x}\n  b:\n"
     "    shell: echo {{ tasks.a.result }}\n", "5:12",
     "tasks.a is not an upstream of task 'b'"),
    ("bad cron", "job: x\ntasks: {a: {shell: x}}\nschedules:\n  - cron: '61 * * * *'\n", "4:11",
     "schedules[0].cron: expected a valid cron expression (Bad minute)"),
    ("cron field count", "job: x\ntasks: {a: {shell: x}}\nschedules:\n  - cron: '* * * *'\n",
     "4:11", "expected a cron expression of 5 fields"),
    ("two schedule kinds", "job: x\ntasks: {a: {shell: x}}\nschedules:\n  - cron: '@daily'\n"
     "    every: 1h\n", "5:5", "found cron and every"),
    ("empty schedule", "job: x\ntasks: {a: {shell: x}}\nschedules:\n  - name: nothing\n", "4:5",
     "schedules[0]: expected exactly one of cron, every, once or calendar keys"),
    ("bad at", "job: x\ntasks: {a: {shell: x}}\nschedules:\n  - at: ['06:00', '6pm']\n", "4:19",
     "schedules[0].at[1]: expected a time of day as HH:MM"),
    ("bad weekday", "job: x\ntasks: {a: {shell: x}}\nschedules:\n  - weekdays: [mon, fry]\n",
     "4:21", "expected a weekday: mon, tue"),
    ("bad monthday", "job: x\ntasks: {a: {shell: x}}\nschedules:\n  - monthdays: [0]\n", "4:17",
     "expected a day of the month from 1 to 31, or last, got 0"),
    ("end before start", "job: x\ntasks: {a: {shell: x}}\nschedules:\n  - every: 1h\n"
     "    start: 2026-06-01\n    end: 2026-01-01\n", "6:10", "expected an end after start"),
    ("max_runs without start", "job: x\ntasks: {a: {shell: x}}\nschedules:\n  - every: 1h\n"
     "    max_runs: 3\n", "4:5", "max_runs needs a start"),
    ("datetime past the calendar's end", "job: x\ntasks: {a: {shell: x}}\nschedules:\n"
     "  - once: 9999-12-31T23:00-02:00\n", "4:11",
     "expected a date or date-time like 2026-01-01, 2026-01-01T06:00 (in the job's timezone)"
     " or 2026-01-01T06:00+01:00"),
    ("end before an aware start", "job: x\ntimezone: Europe/Paris\ntasks: {a: {shell: x}}\n"
     "schedules:\n  - every: 1h\n    start: 2026-03-01T10:00+01:00\n"
     "    end: 2026-03-01T09:30\n", "7:10", "schedules[0].end: expected an end after start"),
    ("duplicate schedule name", "job: x\ntasks: {a: {shell: x}}\nschedules:\n"
     "  - {cron: '@daily', name: n}\n  - {cron: '@hourly', name: n}\n", "5:29",
     "schedule name 'n' is already used by schedule 0"),
    ("bad exception date", "job: x\ntasks: {a: {shell: x}}\nexceptions:\n"
     "  - dates: [2026-02-30]\n", "4:13", "exceptions[0].dates[0]: expected a date as YYYY-MM-DD"),
    ("exception dates and calendar", "job: x\ntasks: {a: {shell: x}}\nexceptions:\n"
     "  - dates: [2026-02-03]\n    weekdays: [fri]\n", "5:5", "either dates: or the day keys"),
    ("bad timezone", "job: x\ntimezone: Paris\ntasks: {a: {shell: x}}\n", "2:11",
     "expected an IANA time zone name"),
    ("bad on_failure", "job: x\non_failure: halt\ntasks: {a: {shell: x}}\n", "2:13",
     "expected one of continue, stop, finish_stage, cancel, got 'halt'"),
    ("bad pool size", "job: x\npools: {mart: 0}\ntasks: {a: {shell: x}}\n", "2:15",
     "pools.mart: expected a whole number >= 1, got 0"),
    ("empty after", "job: x\ntasks: {a: {shell: x}}\ntriggers:\n  - after: []\n", "4:12",
     "expected at least one job name"),
    ("trigger after itself", "job: x\ntasks: {a: {shell: x}}\ntriggers:\n  - after: [y, x]\n",
     "4:16", "job 'x' cannot trigger itself"),
    ("bad trigger status", "job: x\ntasks: {a: {shell: x}}\ntriggers:\n  - after: y\n"
     "    status: done\n", "5:13", "expected one of succeeded, finished, got 'done'"),
    ("missing after", "job: x\ntasks: {a: {shell: x}}\ntriggers:\n  - status: finished\n", "4:5",
     "triggers[0]: missing required key 'after'"),
    ("retries empty value", "job: x\ntasks:\n  a:\n    shell: x\n    retries:\n", "5:5",
     "tasks.a.retries: expected a whole number >= 0, got nothing"),
    # A kind or a foreach source left empty (`shell:` with the command forgotten) crashed
    # validate with "AssertionError", or (a foreach source) failed every run of the job with it.
    ("shell empty value", "job: x\ntasks:\n  a:\n    shell:\n", "4:5",
     "tasks.a.shell: expected a command (a string, or a list of arguments), got nothing"),
    ("python empty value", "job: x\ntasks:\n  a: {python: null}\n", "3:15",
     "tasks.a.python: expected a callable as module.path:function, got nothing"),
    ("sql empty value", "job: x\nconnections: {db: 'sqlite://'}\ntasks:\n"
     "  a: {sql: ~, connection: db}\n", "4:12",
     "tasks.a.sql: expected a SQL statement or script, got nothing"),
    ("job empty value", "job: x\ntasks:\n  a:\n    job:\n", "4:5",
     "tasks.a.job: expected the name of a job to run, got nothing"),
    ("foreach values empty", "job: x\ntasks:\n  a:\n    shell: x\n    foreach: {values: null}\n",
     "5:23", "tasks.a.foreach.values: expected a list of values, got nothing"),
    ("foreach from empty", "job: x\ntasks:\n  a:\n    shell: x\n    foreach:\n      from:\n",
     "6:7", "tasks.a.foreach.from: expected the name of an upstream task, got nothing"),
    ("foreach sql empty", "job: x\nconnections: {db: 'sqlite://'}\ntasks:\n  a:\n    shell: x\n"
     "    foreach: {sql: null, connection: db}\n", "6:20",
     "tasks.a.foreach.sql: expected a SQL query, got nothing"),
    # Addresses and URLs are read as the sender reads them (a To header, a URL scheme).
    ("address without domain", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - {on: run_failed, email: [ops@example.com, ops@]}\n", "4:47",
     "notify[0].email[1]: expected an e-mail address like ops@example.com"),
    ("address with a name", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - {on: run_failed, email: 'Ops<ops@example.com>'}\n", "4:29",
     "expected an e-mail address"),
    ("apprise scheme with a space", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - {on: run_failed, apprise: 'ht tp://bad'}\n", "4:31", "expected an Apprise URL"),
    ("webhook without host", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - {on: run_failed, webhook: 'https://'}\n", "4:31", "expected an http:// or https://"),
    # Read as the sender reads it: every try of these failed (InvalidURL, no host).
    ("webhook with a port out of range", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - {on: run_failed, webhook: 'http://hooks:99999/x'}\n", "4:31",
     "notify[0].webhook: expected an http:// or https:// URL"),
    ("webhook with a port that is no number", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - {on: run_failed, webhook: 'http://hooks:abc/x'}\n", "4:31",
     "notify[0].webhook: expected an http:// or https:// URL"),
    ("webhook with an unclosed IPv6 host", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - {on: run_failed, webhook: 'http://[::1/x'}\n", "4:31",
     "notify[0].webhook: expected an http:// or https:// URL"),
    ("webhook with a port and no host", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - {on: run_failed, webhook: 'http://:80/x'}\n", "4:31",
     "notify[0].webhook: expected an http:// or https:// URL"),
    # `notify:` with nothing after it (its entries commented out) quietly meant taskplan.toml's
    # defaults, where `triggers:` or `tasks:` with nothing after them mean none.
    ("notify with nothing after it", "job: x\ntasks: {a: {shell: x}}\nnotify:\n", "3:1",
     "notify: expected a list of notification rules ([] for none; leave the key out for"
     " taskplan.toml's defaults), got nothing"),
    # One try's timeout is also how long a sender that died mid-try holds the notification
    # back; 1e300 failed every try with OverflowError.
    ("notify timeout past an hour", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - {on: run_failed, webhook: 'http://h/x', timeout: 2d}\n", "4:54",
     "notify[0].timeout: expected a duration of at most 1h (one try of a notification),"
     " got '2d'"),
    # A command string is split like a shell would split it when the notification is sent:
    # an unclosed quote passed validate and apply, then its run's end raised ValueError in
    # every agent that tried to record it (the run stayed running).
    ("notify command with an unclosed quote", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - on: run_failed\n    command: '\"/bin/alert --quiet'\n", "5:14",
     "notify[0].command: expected a command line with its quotes closed"),
    ("notify command of an empty word", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - on: run_failed\n    command: \"''\"\n", "5:14",
     "notify[0].command: expected a command line that names a program"),
    ("notify argv of an empty program", "job: x\ntasks: {a: {shell: x}}\nnotify:\n"
     "  - on: run_failed\n    command: ['', x]\n", "5:14",
     "notify[0].command: expected a command line that names a program"),
    # A deadline past year 9999 broke `runs`, `status` and `forecast` of the job's runs.
    ("deadline too far", "job: x\ndeadline: {within: 100000000d}\ntasks: {a: {shell: x}}\n",
     "2:20", "deadline.within: expected a duration of at most 366d"),
]


def _problems(text: str) -> list[Problem]:
    with pytest.raises(DefinitionError) as info:
        load_job_text(text, "job.yaml", "/jobs")
    return info.value.problems


@pytest.mark.parametrize(("text", "where", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_problem(text: str, where: str, fragment: str) -> None:
    found = _problems(text)
    matching = [p for p in found if fragment in p.message]
    assert matching, f"no problem mentions {fragment!r}; got {[str(p) for p in found]}"
    assert f"{matching[0].line}:{matching[0].col}" == where, str(matching[0])
    assert matching[0].file == "job.yaml"


def test_five_errors_reported_together() -> None:
    text = textwrap.dedent("""\
        job: x
        tasks:
          load:
            shell: x
            retries: two
          a:
            python: m:f
            shell: y
          b:
            shell: z
            depends_on: [nowhere]
        schedules:
          - cron: "* * *"
        timezone: Mars/Base
    """)
    found = _problems(text)
    assert [(p.line, p.col) for p in found] == [(5, 14), (8, 5), (11, 18), (13, 11), (14, 11)]
    assert len({p.message.split(":")[0] for p in found}) == 5


def test_error_text_carries_file_line_col() -> None:
    with pytest.raises(DefinitionError) as info:
        load_job_text("job: x\ntasks:\n  a: {shell: x, retries: -1}\n", "jobs/x.yaml", "jobs")
    assert str(info.value) == (
        "jobs/x.yaml:3:26: tasks.a.retries: expected a whole number >= 0, got -1")


def test_whole_numbers_beyond_32_bits_are_refused_where_written() -> None:
    from taskplan.errors import DefinitionError
    from taskplan.spec import load_job_text

    text = ("job: big\nmax_parallel: 99999999999999999999999\n"
            "tasks:\n  a: {shell: x, priority: -99999999999999999999}\n")
    try:
        load_job_text(text, "big.yaml", ".")
    except DefinitionError as exc:
        shown = [str(p) for p in exc.problems]
    else:
        raise AssertionError("accepted")
    assert shown == [
        "big.yaml:2:15: max_parallel: expected a whole number from 1 to 2147483647,"
        " got 99999999999999999999999",
        "big.yaml:4:27: tasks.a.priority: expected a whole number from -2147483647 to"
        " 2147483647, got -99999999999999999999"]


def test_names_longer_than_the_store_keeps_are_refused_where_written() -> None:
    # The store keeps names in columns of 200 characters: PostgreSQL refused a longer one in
    # the middle of an apply ("value too long for type character varying(200)").
    found = {(p.line, p.col): p.message for p in _problems(
        f"job: {'j' * 201}\npools: {{{'q' * 201}: 2}}\n"
        f"schedules:\n  - {{cron: \"0 2 * * *\", name: {'s' * 201}}}\ntasks:\n"
        f"  {'t' * 201}: {{shell: \"true\"}}\n"
        f"  ok: {{shell: \"true\", pool: {'p' * 201}}}\n")}
    assert set(found) == {(1, 6), (2, 9), (4, 31), (6, 3), (7, 29)}, found
    for message in found.values():
        assert "of at most 200 characters (the store keeps no more), got one of 201" in message
    spec = load_job_text(f"job: {'j' * 200}\ntasks:\n  {'t' * 200}: {{shell: \"true\"}}\n",
                         "job.yaml", "/jobs")
    assert len(spec.name) == 200 and len(spec.tasks[0].name) == 200


def test_agent_labels_longer_in_all_than_the_store_keeps_are_refused_where_written() -> None:
    # A task's label set (its job's labels and its own, comma-joined) is kept in a column of
    # 2000 characters: 25 labels of 100 passed validate and failed every run on PostgreSQL.
    many = ", ".join(f"{c}{'x' * 99}" for c in "abcdefghijklmnopqrs")  # 19 x 100 + 18 commas
    found = {(p.line, p.col): p.message for p in _problems(
        f"job: j\nagent_labels: [{many}]\ntasks:\n"
        f"  ok: {{shell: \"true\"}}\n"
        f"  big: {{shell: \"true\", agent_labels: [{'y' * 100}]}}\n")}
    assert set(found) == {(5, 24)}, found
    assert found[(5, 24)] == ("tasks.big.agent_labels: expected agent labels of at most 2000"
                              " characters in all (the job's and the task's, comma-joined: the"
                              " store keeps no more), got 2019")
    spec = load_job_text(f"job: j\nagent_labels: [{many}]\ntasks:\n  a: {{shell: x}}\n",
                         "job.yaml", "/jobs")
    assert len(",".join(spec.tasks[0].agent_labels)) == 1918


def test_long_sql_and_stored_long_names_still_load() -> None:
    # The bound is on names in files only: SQL text has none, and a version a SQLite store
    # kept before (with a longer name) still loads.
    spec = load_job_text(f"job: x\nconnections: {{db: \"sqlite:///x.db\"}}\ntasks:\n"
                         f"  q: {{connection: db, sql: \"SELECT {'1, ' * 300}1\"}}\n",
                         "job.yaml", "/jobs")
    assert len(spec.tasks[0].command) > 900
    stored = job_from_definition({"job": "j" * 250, "tasks": {"t" * 250: {"shell": "x"}}},
                                 "", "")
    assert len(stored.name) == 250


def test_a_key_longer_than_yaml_allows_is_named_as_such() -> None:
    (problem,) = _problems(f"job: x\ntasks:\n  {'a' * 2000}: {{shell: \"true\"}}\n")
    assert (problem.line, problem.col) == (3, 2003)
    assert problem.message == ("YAML syntax: a key of 2000 characters: YAML's `key: value` takes"
                               " keys of at most 1024")


def test_env_names_a_shell_cannot_use_are_refused_where_written() -> None:
    # exec refused '=' only when the attempt started ("illegal environment variable name").
    # Names a shell cannot expand but a program reads (a.b, A-B) are kept.
    found = [str(p) for p in _problems(
        'job: x\ndefaults:\n  env: {"A=B": 1}\ntasks:\n'
        '  g: {shell: "true", env: {"1 BAD=": x, OK_1: y, a.b: z, "": w, "N\\0": v}}\n')]
    words = ("is not an environment variable name: expected a non-empty name without '=' or"
             " NUL (e.g. DB_HOST)")
    assert found == [f"job.yaml:3:9: defaults.env: 'A=B' {words}",
                     f"job.yaml:5:28: tasks.g.env: '1 BAD=' {words}",
                     f"job.yaml:5:58: tasks.g.env: '' {words}",
                     f"job.yaml:5:65: tasks.g.env: 'N\\x00' {words}"]


def test_a_stored_definition_with_such_an_env_name_still_loads() -> None:
    # Versions applied before the rule keep loading (and fail at the attempt, as they did).
    spec = job_from_definition({"job": "x", "tasks": {"a": {"shell": "x", "env": {"A-B": 1}}}},
                               "", "")
    assert spec.tasks[0].env == {"A-B": "1"}


def test_keys_a_task_kind_would_ignore_are_refused_where_written() -> None:
    # A python task's env never reached os.environ, nor its cwd os.getcwd(); a job task's
    # timeout never stopped its child run; in_process meant nothing to the other kinds.
    found = [str(p) for p in _problems(textwrap.dedent("""\
        job: x
        connections: {db: "sqlite://"}
        tasks:
          p: {python: "m:f", env: {A: b}, cwd: sub}
          q: {sql: "select 1", connection: db, env: {A: b}, cwd: sub, in_process: true}
          j: {job: other, timeout: 5m, in_process: false}
          s: {shell: "true", in_process: true}
        """))]
    assert found == [
        "job.yaml:4:22: tasks.p.env: only shell tasks take env (this is a python task: its"
        " function runs in a worker with the agent's environment)",
        "job.yaml:4:35: tasks.p.cwd: only shell tasks take cwd (this is a python task: its"
        " function runs in the agent's folder and is imported from the job file's)",
        "job.yaml:5:40: tasks.q.env: only shell tasks take env (this is a sql task)",
        "job.yaml:5:53: tasks.q.cwd: only shell tasks take cwd (this is a sql task)",
        "job.yaml:5:63: tasks.q.in_process: only python tasks take in_process (this is a sql"
        " task)",
        "job.yaml:6:19: tasks.j.timeout: only shell, python and sql tasks take timeout (this"
        " is a job task: its child run's tasks take their own timeouts)",
        "job.yaml:6:32: tasks.j.in_process: only python tasks take in_process (this is a job"
        " task)",
        "job.yaml:7:22: tasks.s.in_process: only python tasks take in_process (this is a"
        " shell task)"]


def test_defaults_of_those_keys_apply_only_to_the_tasks_that_use_them() -> None:
    spec = load_job_text(textwrap.dedent("""\
        job: x
        defaults: {env: {A: b}, cwd: sub, in_process: true, timeout: 5m}
        tasks:
          p: {python: "m:f"}
          s: {shell: "true"}
          j: {job: other}
        """), "job.yaml", "/jobs")
    assert spec.task("s").env == {"A": "b"} and spec.task("s").cwd == "sub"
    assert spec.task("p").in_process


def test_a_stored_definition_with_such_keys_still_loads() -> None:
    # Versions applied before the rule keep loading (the keys still mean nothing there).
    spec = job_from_definition({"job": "x", "tasks": {
        "p": {"python": "m:f", "env": {"A": "b"}, "cwd": "sub"},
        "j": {"job": "other", "timeout": "5m"}}}, "", "")
    assert spec.task("p").env == {"A": "b"} and spec.task("j").timeout == 300.0


def test_durations_past_what_a_run_can_wait_are_refused_where_written() -> None:
    # A timeout of 1e308s failed the attempt "inside taskplan" (OverflowError), a retry_delay
    # of 999999999d left a retry no `status` could print, and `every: 1e308` made validate
    # itself die with a traceback.
    found = [str(p) for p in _problems(textwrap.dedent("""\
        job: x
        defaults: {timeout: 400d}
        schedules: [{every: 1e308}]
        tasks:
          a: {shell: "true", timeout: 1e308, retry_delay: 999999999d}
          b: {shell: "true", timeout: 366d, retry_delay: 8784h}
        """))]
    assert found == [
        "job.yaml:2:21: defaults.timeout: expected a duration of at most 366d, got '400d'",
        "job.yaml:3:21: schedules[0].every: expected a duration of at most 36500d (100 years),"
        " got 1e+308",
        "job.yaml:5:31: tasks.a.timeout: expected a duration of at most 366d, got 1e+308",
        "job.yaml:5:51: tasks.a.retry_delay: expected a duration of at most 366d, got"
        " '999999999d'"]
    # A stored version keeps loading (the rule is for files).
    spec = job_from_definition({"job": "x", "tasks": {"a": {"shell": "x", "timeout": 1e10}}},
                               "", "")
    assert spec.task("a").timeout == 1e10


def test_an_every_shorter_than_a_second_is_refused_where_written() -> None:
    # `every: 10ms` (for 10m) was accepted: a running scheduler then recorded a firing every
    # 10 ms (100 rows a second, skipped while the first run went on).
    found = [str(p) for p in _problems(textwrap.dedent("""\
        job: x
        schedules: [{every: 10ms}, {every: 0.5}, {every: 1s}]
        tasks:
          a: {shell: "true"}
        """))]
    assert found == [
        "job.yaml:2:21: schedules[0].every: expected a duration of at least 1s, got '10ms'",
        "job.yaml:2:36: schedules[1].every: expected a duration of at least 1s, got 0.5"]


def test_a_stored_definition_with_a_deadline_past_a_year_still_loads() -> None:
    # The 366d rule on deadline.within is for files: a version stored before it keeps loading.
    spec = job_from_definition({"job": "x", "deadline": {"within": "400d"},
                                "tasks": {"a": {"shell": "x"}}}, "", "")
    assert spec.deadline is not None and spec.deadline.within == 400 * 86400.0


def test_param_names_no_param_could_set_are_refused_where_written() -> None:
    # `--param a=b=5` sets `a`; `params: {"a=b": 1}` was kept, and no run could ever set it.
    found = [str(p) for p in _problems(textwrap.dedent("""\
        job: x
        params: {"a=b": 1, "": 2, "my day": 3}
        schedules: [{cron: "@daily", params: {" sp": 1}}]
        tasks:
          a: {shell: "true"}
        """))]
    words = "is not a param name --param can give: expected a name without '=' or surrounding" \
            " spaces (e.g. day)"
    assert found == [f"job.yaml:2:10: params: 'a=b' {words}",
                     f"job.yaml:2:20: params: '' {words}",
                     f"job.yaml:3:39: schedules[0].params: ' sp' {words}"]
    spec = job_from_definition({"job": "x", "params": {"a=b": 1}, "tasks": {"a": {"shell": "x"}}},
                               "", "")
    assert spec.params == {"a=b": 1}


def test_a_calendar_name_longer_than_the_store_keeps_is_refused_in_its_file(
        tmp_path: Path) -> None:
    long = tmp_path / "long.yaml"
    long.write_text(f"calendar: {'c' * 201}\nweekends: [sat, sun]\n")
    (problem,) = validate_files([str(long)])
    assert (problem.line, problem.col) == (1, 11)
    assert "calendar name of at most 200 characters" in problem.message


def test_a_long_cycle_is_named_by_its_ends_in_one_readable_line() -> None:
    lines = ["job: x", "tasks:", "  t0: {shell: x, depends_on: [t999]}"]
    lines += [f"  t{i}: {{shell: x, depends_on: [t{i - 1}]}}" for i in range(1, 1000)]
    [problem] = _problems("\n".join(lines) + "\n")
    assert problem.message == (
        "tasks.t0: dependency cycle: t0 -> t999 -> t998 -> t997 -> t996 -> t995 ->"
        " ... (989 more) -> t5 -> t4 -> t3 -> t2 -> t1 -> t0")


def test_many_unknown_names_among_many_tasks_get_their_first_hints_only() -> None:
    """'Did you mean' compares a name with every task's: a budget per file keeps a file with
    thousands of misspelt names among thousands of tasks from taking minutes to check."""
    lines = ["job: x", "tasks:"]
    lines += [f"  task_{i}: {{shell: x, depends_on: [tsk_{i}]}}" for i in range(3000)]
    problems = _problems("\n".join(lines) + "\n")
    assert len(problems) == 3000  # every one reported, with its position
    assert problems[0].message.endswith("unknown task 'tsk_0'; did you mean 'task_0'?")
    assert problems[-1].message.endswith("unknown task 'tsk_2999'")
    hinted = [p for p in problems if "did you mean" in p.message]
    assert 0 < len(hinted) < 3000
    assert hinted == problems[:len(hinted)]


def test_end_before_start_is_reported_once_at_the_end_key() -> None:
    found = _problems("job: x\ntasks: {a: {shell: x}}\nschedules:\n  - cron: '@daily'\n"
                      "    start: 2026-06-01T00:00\n    end: 2026-01-01T00:00\n")
    assert [str(p) for p in found] == [
        "job.yaml:6:10: schedules[0].end: expected an end after start"]


def test_once_start_and_end_may_name_an_instant_with_an_offset() -> None:
    from datetime import UTC, datetime

    from taskplan.timing import next_firings

    spec = load_job_text(textwrap.dedent("""\
        job: x
        timezone: Europe/Paris
        tasks: {a: {shell: x}}
        schedules:
          - once: 2026-03-01T10:00+01:00
          - every: 30m
            start: 2026-03-01T10:00Z
            end: "2026-03-01T12:00:00-01:00"
          - once: 2026-03-02T10:00
        """), "job.yaml", "/jobs")
    got = next_firings(spec, datetime(2026, 1, 1, tzinfo=UTC), 10)
    assert [(at.astimezone(UTC).strftime("%d %H:%M"), s.index) for at, s in got] == [
        ("01 09:00", 0), ("01 10:00", 1), ("01 10:30", 1), ("01 11:00", 1), ("01 11:30", 1),
        ("01 12:00", 1), ("01 12:30", 1), ("01 13:00", 1), ("02 09:00", 2)]
    # Stored and read back as written: the offset is kept.
    again = job_from_definition(spec.definition, "job.yaml", "/jobs")
    assert [sc.once for sc in again.schedules][::2] == [
        datetime.fromisoformat("2026-03-01T10:00+01:00"), datetime(2026, 3, 2, 10, 0)]


def test_a_calendar_file_reports_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("calendar: Bad Name\nholidays: [{country: GB}, {country: XX}]\n"
                    "dates: [notadate]\nweekends: [sat, 6, -1]\n")
    assert [f"{p.line}:{p.col}: {p.message.split(',')[0]}" for p in validate_files([path])] == [
        "1:11: calendar: expected a calendar name of lowercase letters",
        "2:27: holidays[1]: unknown country code 'XX' (expected an ISO 3166 code such as GB)",
        "3:9: dates[0]: expected a date as YYYY-MM-DD",
        "4:17: weekends[1]: expected a weekday: mon",
        "4:20: weekends[2]: expected a weekday: mon"]


def test_weekends_are_weekday_names_short_or_long_in_any_case(tmp_path: Path) -> None:
    from taskplan.spec import calendar_from_definition

    path = tmp_path / "c.yaml"
    path.write_text("calendar: c\nweekends: [sat, SUNDAY, Fri]\n")
    assert validate_files([path]) == []
    cal = calendar_from_definition({"calendar": "c", "weekends": ["sat", "SUNDAY", "Fri"]}, "")
    assert cal.weekends == (4, 5, 6)
    # -1 was once let through (and closed no day): a calendar stored with it still loads.
    assert calendar_from_definition({"calendar": "c", "weekends": ["sat", -1]}, "").weekends \
        == (5,)
