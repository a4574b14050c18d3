-- Two pgAgent jobs, written into pgAgent's catalog the way pgAdmin's job dialog does.
-- Run in a database where `CREATE EXTENSION pgagent` was done (demo.sh does all of it).

CREATE TABLE IF NOT EXISTS sales (day date, amount numeric);
CREATE TABLE IF NOT EXISTS sales_summary (day date PRIMARY KEY, total numeric);

-- Job 1: a nightly load, three steps, weekdays at 02:30 except Christmas Eve at 02:30 and
-- Christmas Day. (A jobhostagent such as 'reporting-1' would become agent_labels:
-- [host=reporting-1]; it is left empty so that the demo runs on this machine.)
WITH job AS (
    INSERT INTO pgagent.pga_job (jobjclid, jobname, jobdesc, jobhostagent)
    SELECT jclid, 'Nightly sales load', 'Load yesterday''s sales and summarise them', ''
      FROM pgagent.pga_jobclass WHERE jclname = 'Data Import'
    RETURNING jobid
), steps AS (
    INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstkind, jstcode, jstdbname, jstonerror)
    SELECT jobid, s.name, s.kind, s.code, s.db, s.onerror FROM job, (VALUES
        ('1 load', 's', 'INSERT INTO sales SELECT current_date - 1, (random() * 1000)::int'
                        ' FROM generate_series(1, 50);', current_database(), 'f'),
        ('2 notify', 'b', E'echo "loaded $(date +%F)"\nexit 3', '', 'i'),
        ('3 summarise', 's', 'INSERT INTO sales_summary SELECT day, sum(amount) FROM sales'
                             ' GROUP BY day ON CONFLICT (day) DO UPDATE SET total = EXCLUDED.total;',
         current_database(), 'f')
    ) AS s(name, kind, code, db, onerror)
    RETURNING jstid
), sched AS (
    INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscstart, jscminutes, jschours,
                                      jscweekdays)
    SELECT jobid, 'weekdays 02:30', '2026-01-01 00:00',
           (SELECT array_agg(m = 30 ORDER BY m) FROM generate_series(0, 59) m),
           (SELECT array_agg(h = 2 ORDER BY h) FROM generate_series(0, 23) h),
           '{f,t,t,t,t,t,f}'                       -- Sunday first: Monday..Friday
      FROM job
    RETURNING jscid
)
INSERT INTO pgagent.pga_exception (jexscid, jexdate, jextime)
SELECT jscid, d, t FROM sched, (VALUES ('2026-12-25'::date, NULL::time),
                                       ('2026-12-24'::date, '02:30'::time)) AS e(d, t);

-- Job 2: monthly maintenance on the last day of the month at 23:00, disabled schedule kept.
WITH job AS (
    INSERT INTO pgagent.pga_job (jobjclid, jobname, jobdesc)
    SELECT jclid, 'Month-end vacuum', 'VACUUM ANALYZE the sales tables'
      FROM pgagent.pga_jobclass WHERE jclname = 'Routine Maintenance'
    RETURNING jobid
), steps AS (
    INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstkind, jstcode, jstdbname)
    SELECT jobid, 'vacuum', 's', 'VACUUM ANALYZE sales', current_database() FROM job
)
INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscenabled, jscstart, jscminutes, jschours,
                                  jscmonthdays)
SELECT jobid, 'last day 23:00', false, '2026-01-01 00:00',
       (SELECT array_agg(m = 0 ORDER BY m) FROM generate_series(0, 59) m),
       (SELECT array_agg(h = 23 ORDER BY h) FROM generate_series(0, 23) h),
       (SELECT array_agg(d = 32 ORDER BY d) FROM generate_series(1, 32) d)
  FROM job;
