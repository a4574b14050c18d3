-- taskplan's PostgreSQL step, version 3 (migration 0012). Only taskplan_finish_successes
-- changed since version 2: a success that ends a foreach (its last item) hands the step to
-- the general path, as a failed one already did, so that the engine reports the foreach's end
-- (StepResult.ends) like any other. taskplan_claim is step_v2.sql's and taskplan_step
-- step_v1.sql's. Constants are tokens (an at-sign, the NAME, an at-sign) filled in by
-- taskplan/store/pgserver.py.

CREATE OR REPLACE FUNCTION taskplan_finish_successes(
    p_now double precision, p_done jsonb,
    OUT stale bigint[], OUT d_runs bigint[], OUT d_unfinished integer[],
    OUT d_running integer[], OUT d_ready integer[], OUT pooled boolean
) LANGUAGE plpgsql AS $fn$
DECLARE
    halted boolean;
    v record;
    got record;
    e_ids bigint[] := '{}';
    e_runs bigint[] := '{}';
    e_parents bigint[] := '{}';
    e_errors text[] := '{}';
    cur_ids bigint[];
    cur_parents bigint[];
    next_ids bigint[];
    set_runs bigint[] := '{}';
    ready_ids bigint[] := '{}';
    ready_runs bigint[] := '{}';
    k integer;
BEGIN
    stale := '{}';
    pooled := false;
    PERFORM pg_advisory_xact_lock_shared(@RUN_LOCK_CLASS@, (r % 2147483647)::integer)
    FROM (SELECT DISTINCT (e ->> 'r')::bigint AS r FROM jsonb_array_elements(p_done) e
          ORDER BY 1) x;
    SELECT COALESCE(bool_or(runs.halt IS NOT NULL), false) INTO halted FROM runs
    WHERE runs.id IN (SELECT (e ->> 'r')::bigint FROM jsonb_array_elements(p_done) e);
    IF halted THEN
        RAISE SQLSTATE '@STEP_FALLBACK@';
    END IF;
    FOR v IN SELECT * FROM jsonb_to_recordset(p_done)
            AS d(i bigint, a integer, t double precision, x integer, res text, e text)
    LOOP
        -- Leave `running` only under the attempt's own fencing token.
        UPDATE task_runs SET state = 'succeeded', finished_at = v.t, exit_code = v.x,
            result = v.res, error = v.e, agent_id = NULL
        WHERE id = v.i AND state = 'running' AND attempts = v.a
        RETURNING run_id, parent_id, pool INTO got;
        IF NOT FOUND THEN
            stale := stale || v.i;
            CONTINUE;
        END IF;
        pooled := pooled OR got.pool IS NOT NULL;
        UPDATE attempts SET state = 'succeeded', finished_at = v.t, exit_code = v.x,
            error = v.e
        WHERE task_run_id = v.i AND attempt = v.a;
        e_ids := e_ids || v.i;
        e_runs := e_runs || got.run_id;
        e_parents := e_parents || got.parent_id;
        e_errors := e_errors || v.e;
    END LOOP;
    INSERT INTO events (at, run_id, task_run_id, state, detail)
    SELECT p_now, r, i, 'succeeded', e FROM unnest(e_runs, e_ids, e_errors) AS u(r, i, e);

    cur_ids := e_ids;
    cur_parents := e_parents;
    WHILE cardinality(cur_ids) > 0 LOOP
        next_ids := '{}';
        -- Items of a foreach: the parent ends with its last item.
        FOR v IN SELECT p, count(*) AS n FROM unnest(cur_parents) AS p WHERE p IS NOT NULL
                GROUP BY p ORDER BY p
        LOOP
            UPDATE task_runs SET pending_children = pending_children - v.n WHERE id = v.p
            RETURNING pending_children, failed_children INTO got;
            IF got.pending_children = 0 THEN
                -- The general path ends a foreach: it applies the policies of one that failed,
                -- and it reports the end of every one to the agent (its progress lines).
                RAISE SQLSTATE '@STEP_FALLBACK@';
            END IF;
        END LOOP;
        -- Dependants of the rest: one decrement per finished upstream.
        FOR v IN SELECT e.down_id, count(*) AS n
                FROM task_edges e
                JOIN unnest(cur_ids, cur_parents) AS s(i, p) ON e.up_id = s.i AND s.p IS NULL
                GROUP BY e.down_id ORDER BY e.down_id
        LOOP
            UPDATE task_runs SET pending_up = pending_up - v.n
            WHERE id = v.down_id AND state = 'pending'
            RETURNING run_id, kind, trigger_rule, pending_up, failed_up INTO got;
            CONTINUE WHEN NOT FOUND OR got.pending_up > 0;
            IF got.kind = 'barrier' THEN
                IF got.failed_up > 0 THEN
                    RAISE SQLSTATE '@STEP_FALLBACK@';  -- upstream_failed: the general path
                END IF;
                next_ids := next_ids || v.down_id;
            ELSIF (got.trigger_rule = 'all_done'
                   OR (got.trigger_rule = 'one_failed' AND got.failed_up > 0)
                   OR (got.trigger_rule NOT IN ('all_done', 'one_failed')
                       AND got.failed_up = 0)) THEN
                UPDATE task_runs SET state = 'ready', ready_at = p_now WHERE id = v.down_id;
                ready_ids := ready_ids || v.down_id;
                ready_runs := ready_runs || got.run_id;
            ELSE
                RAISE SQLSTATE '@STEP_FALLBACK@';  -- skipped or upstream_failed: the general path
            END IF;
        END LOOP;
        -- Barriers and foreach parents that ended succeed here and pass it on.
        cur_ids := next_ids;
        cur_parents := '{}';
        FOR k IN 1..COALESCE(cardinality(next_ids), 0) LOOP
            UPDATE task_runs SET state = 'succeeded', finished_at = p_now
            WHERE id = next_ids[k] RETURNING run_id, parent_id INTO got;
            cur_parents := cur_parents || got.parent_id;
            set_runs := set_runs || got.run_id;
            INSERT INTO events (at, run_id, task_run_id, state, detail)
            VALUES (p_now, got.run_id, next_ids[k], 'succeeded', NULL);
        END LOOP;
    END LOOP;
    INSERT INTO events (at, run_id, task_run_id, state, detail)
    SELECT p_now, r, i, 'ready', NULL FROM unnest(ready_runs, ready_ids) AS u(r, i);

    SELECT COALESCE(array_agg(r ORDER BY r), '{}'), COALESCE(array_agg(u ORDER BY r), '{}'),
           COALESCE(array_agg(rn ORDER BY r), '{}'), COALESCE(array_agg(rd ORDER BY r), '{}')
    INTO d_runs, d_unfinished, d_running, d_ready
    FROM (
        SELECT r, sum(u)::integer AS u, sum(rn)::integer AS rn, sum(rd)::integer AS rd FROM (
            SELECT r, 1 AS u, -1 AS rn, 0 AS rd FROM unnest(e_runs) AS r
            UNION ALL SELECT r, 1, 0, 0 FROM unnest(set_runs) AS r
            UNION ALL SELECT r, 0, 0, 1 FROM unnest(ready_runs) AS r
        ) m GROUP BY r
    ) d;
END
$fn$;
