"""`taskplan import crontab`: the conversion itself (pure), checked through the job-file loader."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

from taskplan.importers.crontab import convert_crontab, split_command
from taskplan.importers.documents import check
from taskplan.timing import next_firings

CRONTAB = textwrap.dedent("""\
    # nightly things
    MAILTO=ops@example.com
    PATH=/usr/local/bin:/usr/bin:/bin
    GREETING = "hello world"
    30 2 * * 1-5 /usr/local/bin/backup.sh --full > /tmp/backup.log 2>&1
    @daily echo "{{ not a template }}"
    CRON_TZ=America/New_York
    0 9 1,15 * mon mail -s "100\\% done" ops%line one%line two
    @reboot /usr/bin/start-thing
    SHELL=/bin/bash
    */15 * * * * [[ -f /tmp/x ]] && echo yes
    61 * * * * broken
    """)


def test_percent_ends_the_command_and_the_rest_is_its_standard_input() -> None:
    assert split_command("cat%a%b") == ("cat", "a\nb")
    assert split_command("date +\\%F") == ("date +%F", None)
    assert split_command("x\\%%y\\%") == ("x%", "y%")
    assert split_command("cat%") == ("cat", "")


def test_a_crontab_becomes_one_valid_job_per_entry(tmp_path: Path) -> None:
    items = convert_crontab(CRONTAB, "my.cron")
    texts = {item.origin.split(":")[1]: (item, check(item, tmp_path)) for item in items}
    assert sorted(texts) == ["11", "12", "5", "6", "8", "9"]
    backup, _ = texts["5"]
    assert backup.name == "backup_sh" and backup.spec is not None
    assert backup.spec.schedules[0].cron == "30 2 * * 1-5" and backup.spec.timezone is None
    task = backup.spec.tasks[0]
    assert task.command == "/usr/local/bin/backup.sh --full > /tmp/backup.log 2>&1"
    assert task.env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "GREETING": "hello world"}
    assert str(backup.spec.on_overlap) == "allow" and str(backup.spec.on_misfire) == "skip"
    assert any("MAILTO" in n for n in backup.notes)
    daily, _ = texts["6"]
    assert daily.spec is not None and daily.spec.schedules[0].cron == "0 0 * * *"
    assert daily.spec.tasks[0].command == '{% raw %}echo "{{ not a template }}"{% endraw %}'
    mail, _ = texts["8"]
    assert mail.spec is not None and mail.spec.timezone == "America/New_York"
    assert mail.spec.tasks[0].command == (
        '{ mail -s "100% done" ops\n} <<\'TASKPLAN_STDIN\'\nline one\nline two\n'
        "TASKPLAN_STDIN\n")
    # cron's either-or of day-of-month and day-of-week is kept
    got = [at.day for at, _ in next_firings(mail.spec, datetime(2030, 1, 1, tzinfo=UTC), 4)]
    assert got == [1, 7, 14, 15]
    reboot, _ = texts["9"]
    assert reboot.document is None and any("@reboot" in n for n in reboot.notes)
    bash, _ = texts["11"]
    assert bash.spec is not None
    assert bash.spec.tasks[0].command == ("/bin/bash", "-c", "[[ -f /tmp/x ]] && echo yes")
    assert bash.spec.tasks[0].env["SHELL"] == "/bin/bash"
    broken, _ = texts["12"]
    assert broken.document is None and any("Bad minute" in n for n in broken.notes)


def test_names_are_stable_and_unique() -> None:
    text = "0 1 * * * /opt/a/run.sh x\n0 2 * * * /opt/b/run.sh x\n@hourly cd /srv && make\n"
    first = [i.name for i in convert_crontab(text, "c")]
    assert first == ["run_sh_x", "run_sh_x_2", "make"]
    assert [i.name for i in convert_crontab("# new line\n" + text, "c")] == first
