"""The job file of docs/job-file.md and docs/schedules.md, shared by the loader tests."""

SPEC_EXAMPLE = """\
job: nightly_sales
description: Load the sales mart
params:
  day: "2026-11-20"
connections:
  mart: ${MART_URL}
defaults:
  connection: mart
  retries: 2
  retry_delay: 30s
  timeout: 1h
on_failure: continue
max_parallel: 8
tasks:
  stage_orders:
    stage: 1
    sql: CALL stage_orders(:day)
  stage_customers:
    stage: 1
    shell: [python, stage.py, --table, customers, --day, "{{ params.day }}"]
  refresh:
    stage: 2
    foreach:
      sql: SELECT matviewname AS view FROM pg_matviews WHERE schemaname = 'mart'
    sql: REFRESH MATERIALIZED VIEW {{ item.view | ident }}
  report:
    depends_on: [refresh]
    python: reports.daily:build
  alert:
    depends_on: [report]
    trigger: one_failed
    shell: ./page-oncall.sh
timezone: Europe/Paris
schedules:
  - cron: "30 2 * * 1-5"
  - at: ["06:00", "18:00"]
    weekdays: [mon, wed, fri]
  - every: 15m
    start: 2026-01-01T00:00
    end: 2026-12-31
    max_runs: 500
  - once: 2026-12-24T18:00
    params: {mode: full}
exceptions:
  - dates: [2026-12-25, 2027-01-01]
  - weekdays: [fri]
on_misfire: run_once
on_overlap: skip
triggers:
  - after: [extract_a, extract_b, extract_c, extract_d]
    status: succeeded
    within: 12h
"""
