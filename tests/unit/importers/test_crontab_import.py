"""`taskplan import crontab`: the conversion itself (pure), checked through the job-file loader."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from taskplan.importers.crontab import convert_crontab, split_command
from taskplan.importers.documents import check
from taskplan.timing import next_firings

CD = 'cd "$HOME" || exit 1\n'
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
    # cron (cronie's do_command.c) writes a final newline only when the input lacks one
    assert split_command("cat%a%b") == ("cat", "a\nb\n")
    assert split_command("cat -A > f%line one%line two%") == ("cat -A > f",
                                                              "line one\nline two\n")
    assert split_command("date +\\%F") == ("date +%F", None)
    assert split_command("x\\%%y\\%") == ("x%", "y%\n")
    assert split_command("cat%") == ("cat", "")
    assert split_command("cat%%") == ("cat", "\n")
    # in the command a backslash escapes one character: \\% is two backslashes, then the end
    assert split_command("echo a\\\\%b") == ("echo a\\\\", "b\n")
    # in the input each backslash escapes the next, kept unless that is a %
    assert split_command("cat%a\\\\%b\\c") == ("cat", "a\\%b\\c\n")


def test_a_crontab_becomes_one_valid_job_per_entry(tmp_path: Path) -> None:
    items = convert_crontab(CRONTAB, "my.cron")
    texts = {item.origin.split(":")[1]: (item, check(item, tmp_path)) for item in items}
    assert sorted(texts) == ["11", "12", "5", "6", "8", "9"]
    backup, _ = texts["5"]
    assert backup.name == "backup_sh_full" and backup.spec is not None
    assert backup.spec.schedules[0].cron == "30 2 * * 1-5" and backup.spec.timezone is None
    task = backup.spec.tasks[0]
    # run in $HOME, as cron runs it
    assert task.command == CD + "/usr/local/bin/backup.sh --full > /tmp/backup.log 2>&1"
    assert task.env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "GREETING": "hello world"}
    assert str(backup.spec.on_overlap) == "allow" and str(backup.spec.on_misfire) == "skip"
    assert any("MAILTO" in n for n in backup.notes)
    daily, _ = texts["6"]
    assert daily.spec is not None and daily.spec.schedules[0].cron == "0 0 * * *"
    assert daily.spec.tasks[0].command == (
        '{% raw %}' + CD + 'echo "{{ not a template }}"{% endraw %}')
    mail, _ = texts["8"]
    assert mail.spec is not None and mail.spec.timezone == "America/New_York"
    assert mail.spec.tasks[0].command == CD + (
        '{ mail -s "100% done" ops\n} <<\'TASKPLAN_STDIN\'\nline one\nline two\n'
        "TASKPLAN_STDIN\n")
    # cron's either-or of day-of-month and day-of-week is kept
    got = [at.day for at, _ in next_firings(mail.spec, datetime(2030, 1, 1, tzinfo=UTC), 4)]
    assert got == [1, 7, 14, 15]
    reboot, _ = texts["9"]
    assert reboot.document is None and any("@reboot" in n for n in reboot.notes)
    bash, _ = texts["11"]
    assert bash.spec is not None
    assert bash.spec.tasks[0].command == ("/bin/bash", "-c", CD + "[[ -f /tmp/x ]] && echo yes")
    assert bash.spec.tasks[0].env["SHELL"] == "/bin/bash"
    broken, _ = texts["12"]
    assert broken.document is None and any("Bad minute" in n for n in broken.notes)


def _named(text: str) -> dict[str, str]:
    """{line: job name} of a crontab's imported entries."""
    lines = text.splitlines()
    return {lines[int(i.origin.split(":")[1]) - 1]: i.name
            for i in convert_crontab(text, "c") if i.document is not None}


def test_a_name_is_made_of_its_own_entry_never_its_place() -> None:
    lines = ["0 2 * * * /usr/local/bin/backup.sh --daily > /var/log/b.log 2>&1",
             "0 3 * * 0 /usr/local/bin/backup.sh --weekly > /var/log/b.log 2>&1",
             "@hourly cd /srv && LANG=C exec php artisan schedule:run",
             "0 1 * * * /opt/a/run.sh x",
             "0 2 * * * /opt/b/run.sh x",
             "0 4 * * * sync.sh 2>/dev/null",
             "0 5 * * * sync.sh",
             "0 6 * * * sync.sh",
             "0 7 * * * sync.sh"]
    names = _named("\n".join(lines))
    assert list(names.values())[:3] == [
        "backup_sh_daily", "backup_sh_weekly", "php_artisan_schedule_run"]
    # the same words from other commands: each gets a hash of its command ...
    run_a, run_b = names[lines[3]], names[lines[4]]
    assert run_a != run_b and all(re.fullmatch(r"run_sh_x_[0-9a-f]{6}", n) for n in (run_a, run_b))
    # ... and the same command on other schedules a hash of its whole entry
    syncs = [names[line] for line in lines[5:]]
    assert len(set(syncs)) == 4 and all(re.fullmatch(r"sync_sh_[0-9a-f]{6}", n) for n in syncs)
    # In any order, with other entries added or removed, every entry keeps its name ...
    for changed in [["# a comment", *lines], lines[::-1], lines[1:], lines[:5] + lines[6:],
                    lines[:-1], [*lines, "30 1 * * * /usr/bin/other --daily"]]:
        got = _named("\n".join(changed))
        assert {line: got[line] for line in lines if line in got} == {
            line: names[line] for line in lines if line in changed}, changed
    # ... but those that made the same name as a removed one
    assert _named("\n".join(lines[:3] + lines[4:]))[lines[4]] == "run_sh_x"


def test_long_names_and_exact_duplicates() -> None:
    long_a = "/opt/tool --" + "very-long-option " * 5 + "--target alpha"
    long_b = "/opt/tool --" + "very-long-option " * 5 + "--target beta"
    items = convert_crontab(f"0 1 * * * {long_a}\n0 1 * * * {long_b}\n0 1 * * * {long_a}\n",
                            "c")
    a, b, again = items
    assert len(a.name) <= 48 and a.name.startswith("tool_very-long-option_very-long")
    assert re.search(r"_[0-9a-f]{6}$", a.name) and a.name != b.name
    # cron would start both at each firing; one job runs once
    assert again.document is None and any("the same entry as c:1" in n for n in again.notes)
    assert [i.name for i in convert_crontab(f"0 1 * * * {long_a}\n", "c")] == [a.name]


def test_a_cron_tz_naming_no_zone_is_reported_on_its_own_line(tmp_path: Path) -> None:
    text = ("0 1 * * * echo before\n"
            "CRON_TZ=Nowhere/Zone\n"
            "0 2 * * * echo inside\n"
            "CRON_TZ=Europe/Paris\n"
            "0 3 * * * echo after\n")
    before, inside, after = convert_crontab(text, "my.cron", "UTC")
    assert inside.document is None
    assert inside.notes == ["my.cron:2: CRON_TZ 'Nowhere/Zone' is not an IANA time zone name "
                            "(like Europe/Paris), so the entries below it are not imported"]
    for item, zone in [(before, "UTC"), (after, "Europe/Paris")]:
        assert check(item, tmp_path) is not None and item.spec is not None
        assert item.spec.timezone == zone


def test_a_command_holding_the_end_of_a_raw_block_still_runs_as_written(tmp_path: Path) -> None:
    # A command writing a Jinja file (an Ansible template, say) may hold {% endraw %} itself,
    # which would end the {% raw %} block the import wraps it in.
    from taskplan.spec.templating import environment

    text = ("J={{x}} {%- endraw -%} {%+ endraw%}\n"
            '0 1 * * * printf "{\\% raw \\%}{{ a }}{\\% endraw \\%}\\n" > tpl.j2\n')
    [item] = convert_crontab(text, "c")
    assert check(item, tmp_path) is not None and item.spec is not None, item.notes
    task = item.spec.tasks[0]
    assert isinstance(task.command, str)
    assert environment().from_string(task.command).render() == (
        CD + 'printf "{% raw %}{{ a }}{% endraw %}\\n" > tpl.j2')
    assert environment().from_string(task.env["J"]).render() == (
        "{{x}} {%- endraw -%} {%+ endraw%}")


def test_cronies_entry_options_are_read_as_cronie_reads_them(tmp_path: Path) -> None:
    # cronie: a leading - turns off the syslog line of each run (system crontab or root), and
    # -n before the command mails only when it fails; any other option is refused.
    text = ("-*/5 * * * * root /usr/bin/quiet\n"
            "-@daily root /usr/bin/quiet-daily\n"
            "0 1 * * * root -n /usr/bin/mail-on-error --x\n"
            "0 2 * * * root -n\t -n /usr/bin/twice\n"
            "0 3 * * * root -x /usr/bin/other\n"
            "0 4 * * * root -n\n"
            "- 0 5 * * * root /usr/bin/blank-after-dash\n")
    quiet, daily, mail, twice, other, bare, blank = convert_crontab(text, "c", system=True)
    for item, cron, command in [(quiet, "*/5 * * * *", "/usr/bin/quiet"),
                                (daily, "0 0 * * *", "/usr/bin/quiet-daily"),
                                (mail, "0 1 * * *", "/usr/bin/mail-on-error --x")]:
        assert check(item, tmp_path) is not None and item.spec is not None, item.notes
        assert item.spec.schedules[0].cron == cron
        assert item.spec.tasks[0].command == CD + command
    assert any("syslog" in n for n in quiet.notes) and any("syslog" in n for n in daily.notes)
    assert any("-n" in n and "notify" in n for n in mail.notes)
    assert mail.name == "mail-on-error_x"
    for item in (twice, other, bare, blank):
        assert item.document is None and any("not imported" in n for n in item.notes), item
    assert any("'-x'" in n for n in other.notes)
