"""Business calendars through the real CLI: apply a calendar file next to a job, `next`
explaining each skip, a new calendar version taking effect without re-applying the job, and
bad files or unknown names refused before anything is stored."""

from __future__ import annotations

import socket

from acceptance_helpers import Taskplan

UK = """
    calendar: uk_business
    description: English bank holidays, weekends and Christmas Eve
    holidays: {country: GB, subdiv: ENG}
    dates: [2026-12-24]
"""

PAYROLL = """
    job: payroll
    timezone: Europe/London
    schedules:
      - name: daily
        at: "06:00"
        calendar: uk_business
      - name: third
        business_day: 3
        at: "07:00"
        calendar: uk_business
    tasks:
      pay: {shell: "true"}
"""


def test_next_explains_calendar_skips(tp: Taskplan) -> None:
    tp.write("cal/uk.yaml", UK)
    tp.write("cal/payroll.yaml", PAYROLL)
    out = tp.ok("apply", "cal").out
    assert "calendar uk_business: version 1 (new)" in out and "payroll: version 1" in out
    text = tp.ok("next", "payroll", "-n", "4", "--after", "2026-12-23T12:00").out
    assert "2026-12-25 06:00 skipped: Christmas Day (GB)" in text
    assert "2026-12-24 06:00 skipped: closed date of calendar uk_business" in text
    got = tp.ok("next", "payroll", "-n", "4", "--after", "2026-12-23T12:00", "--json").json()
    fired = [(e["at"], e["schedule"]) for e in got if "skipped" not in e]
    assert fired == [("2026-12-29T06:00:00+00:00", "daily"), ("2026-12-30T06:00:00+00:00", "daily"),
                     ("2026-12-31T06:00:00+00:00", "daily"), ("2027-01-04T06:00:00+00:00", "daily")]
    skipped = {e["at"][:10]: e["skipped"] for e in got if "skipped" in e}
    assert skipped["2026-12-28"] == "Boxing Day (observed) (GB)"
    assert skipped["2026-12-27"] == "weekend (sun)"
    third = tp.ok("next", "payroll", "-n", "20", "--after", "2026-12-23T12:00", "--json").json()
    assert ("2027-01-06T07:00:00+00:00", "third") in [(e["at"], e["schedule"]) for e in third]


def test_a_new_calendar_version_applies_without_reapplying_the_job(tp: Taskplan) -> None:
    tp.write("uk.yaml", UK)
    tp.write("payroll.yaml", PAYROLL)
    tp.ok("apply", "uk.yaml", "payroll.yaml")
    before = tp.ok("next", "payroll", "-n", "1", "--after", "2026-12-29T00:00", "--json").json()
    assert before[0]["at"] == "2026-12-29T06:00:00+00:00"
    tp.write("uk.yaml", UK.replace("[2026-12-24]", "[2026-12-24, 2026-12-29]"))
    assert "calendar uk_business: version 2 (new)" in tp.ok("apply", "uk.yaml").out
    after = tp.ok("next", "payroll", "-n", "1", "--after", "2026-12-29T00:00", "--json").json()
    assert after[0] == {"at": "2026-12-29T06:00:00+00:00", "schedule": "daily",
                        "skipped": "closed date of calendar uk_business"}
    assert after[1]["at"] == "2026-12-30T06:00:00+00:00" and "skipped" not in after[1]
    listed = tp.ok("calendars", "uk_business", "--from", "2026-12-24", "--to", "2026-12-29",
                   "--json").json()
    assert [d["date"] for d in listed] == ["2026-12-24", "2026-12-25", "2026-12-26",
                                           "2026-12-27", "2026-12-28", "2026-12-29"]


def test_unknown_calendar_or_bad_file_stores_nothing(tp: Taskplan) -> None:
    tp.write("payroll.yaml", PAYROLL)
    res = tp("apply", "payroll.yaml")
    assert res.code == 2 and "Traceback" not in res.err
    # at each `calendar:` key naming it, and no store made just to find it holds none
    assert res.err.splitlines() == [
        f"payroll.yaml:{line}:5: unknown calendar 'uk_business': it is neither applied to this"
        " store nor given in this command (no calendar is applied to this store); apply its"
        " calendar file first, or with this job" for line in (6, 10)]
    assert not tp.db_path.exists()
    res = tp("run", "payroll.yaml")  # run FILE applies the job first: refused the same way
    assert res.code == 2 and "payroll.yaml:6:5: unknown calendar 'uk_business'" in res.err, res
    assert not tp.db_path.exists()
    tp.write("other.yaml", UK.replace("uk_business", "uk_busines"))
    tp.ok("apply", "other.yaml")
    res = tp("validate", "payroll.yaml")  # with a store, validate says the same
    assert res.code == 2 and "did you mean 'uk_busines'?" in res.err
    assert "payroll.yaml:6:5: unknown calendar 'uk_business'" in res.err
    assert tp.ok("jobs", "--json").json() == []
    tp.write("bad.yaml", """
        calendar: uk
        holidays: {country: GB, subdiv: ZZZ}
        weekends: [sat, funday]
    """)
    res = tp("validate", "bad.yaml")
    assert res.code == 2
    assert "bad.yaml:3:" in res.err and "funday" in res.err
    assert "Traceback" not in res.err
    tp.write("bad2.yaml", "calendar: uk\nholidays: {country: GB, subdiv: ZZZ}\n")
    res = tp("apply", "bad2.yaml")
    assert res.code == 2 and "bad2.yaml:2:" in res.err and "unknown subdivision 'ZZZ'" in res.err
    res = tp("calendars", "nope")
    assert res.code == 2 and "no calendar named 'nope'" in res.err
    # --to alone counts from today: the line says so, not "before --from" (not given)
    tp.write("uk.yaml", UK)
    tp.ok("apply", "uk.yaml")
    res = tp("calendars", "uk_business", "--to", "2000-01-01")
    assert (res.code, res.err) == (2, "taskplan: --to 2000-01-01 is before --from (default:"
                                      " today)\n"), res


def test_a_calendar_given_or_applied_is_known(tp: Taskplan) -> None:
    tp.write("uk.yaml", UK)
    tp.write("payroll.yaml", PAYROLL)
    assert tp.ok("validate", "payroll.yaml", db=False).out == "ok\n"  # no store: cannot tell
    assert tp.ok("validate", "uk.yaml", "payroll.yaml").out == "ok\n"
    tp.ok("apply", "uk.yaml")
    assert tp.ok("validate", "payroll.yaml").out == "ok\n"
    assert "payroll: version 1 (new)" in tp.ok("apply", "payroll.yaml").out


def test_validate_needs_no_reachable_store(tp: Taskplan) -> None:
    # A CI lint step may have TASKPLAN_DB set and no way to the database: validate still
    # checks the files (which calendars exist is unknown then, so none is missing).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tp.write("payroll.yaml", PAYROLL)
    tp.write("plain.yaml", "job: plain\ntasks:\n  a: {shell: \"true\"}\n")
    unreachable = f"postgresql://u:p@127.0.0.1:{port}/x"
    for name in ("plain.yaml", "payroll.yaml"):
        res = tp("validate", name, "--db", unreachable, db=False)
        assert (res.code, res.out.strip()) == (0, "ok"), (name, res)
