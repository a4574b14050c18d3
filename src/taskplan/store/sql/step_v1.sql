-- taskplan's PostgreSQL step, version 1 (as created by migration 0003).
-- Kept so that migration 0010 can be downgraded; see step_v2.sql for the current code.
-- Constants are tokens (an at-sign, the NAME, an at-sign) filled in by taskplan/store/pgserver.py.

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
                IF got.failed_children > 0 THEN
                    RAISE SQLSTATE '@STEP_FALLBACK@';  -- a foreach that failed: policies apply
                END IF;
                next_ids := next_ids || v.p;
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

CREATE OR REPLACE FUNCTION taskplan_claim(
    p_agent bigint, p_now double precision, p_free integer, p_root bigint,
    p_runs bigint[], p_running integer[], p_ready integer[]
) RETURNS SETOF taskplan_claim_row LANGUAGE plpgsql AS $fn$
DECLARE
    r_id bigint[];
    r_prio integer[];
    r_running integer[];
    r_ready integer[];
    r_maxp integer[];
    r_stage integer[];
    r_ver bigint[];
    given integer[];
    n integer;
    k integer;
    j integer;
    best integer;
    load_k integer;
    load_b integer;
    left_slots integer := p_free;
    held bigint[];
    cand record;
    got record;
    take bigint[];
    room integer;
    pool_room jsonb;
    out taskplan_claim_row;
    c_ids bigint[] := '{}';
    c_runs bigint[] := '{}';
    c_attempts integer[] := '{}';
BEGIN
    -- The counters as this step will leave them: its finishes (p_runs: their deltas) are
    -- written to `runs` only at its end.
    SELECT array_agg(r.id ORDER BY r.id), array_agg(r.priority ORDER BY r.id),
           array_agg(r.running + COALESCE(d.rn, 0) ORDER BY r.id),
           array_agg(r.ready + COALESCE(d.rd, 0) ORDER BY r.id),
           array_agg(r.max_parallel ORDER BY r.id),
           array_agg(CASE WHEN r.halt = 'finish_stage' THEN r.halt_stage END ORDER BY r.id),
           array_agg(r.version_id ORDER BY r.id)
    INTO r_id, r_prio, r_running, r_ready, r_maxp, r_stage, r_ver
    FROM runs r LEFT JOIN unnest(p_runs, p_running, p_ready) AS d(i, rn, rd) ON d.i = r.id
    WHERE r.state = 'running' AND r.ready + COALESCE(d.rd, 0) > 0
        AND (r.halt IS NULL OR r.halt = 'finish_stage')
        AND (p_root IS NULL OR r.root_run_id = p_root);
    n := COALESCE(cardinality(r_id), 0);
    IF n = 0 OR p_free <= 0 THEN
        RETURN;
    END IF;
    -- Fair shares (engine/rules.py fair_shares): one slot at a time to the run of highest
    -- priority, then fewest running (counting what this step gave), then lowest id.
    given := array_fill(0, ARRAY[n]);
    WHILE left_slots > 0 LOOP
        best := NULL;
        FOR k IN 1..n LOOP
            CONTINUE WHEN given[k] >= r_ready[k];
            CONTINUE WHEN r_maxp[k] IS NOT NULL AND r_running[k] + given[k] >= r_maxp[k];
            load_k := r_running[k] + given[k];
            IF best IS NULL OR r_prio[k] > r_prio[best]
                    OR (r_prio[k] = r_prio[best] AND load_k < load_b) THEN
                best := k;
                load_b := load_k;
            END IF;
        END LOOP;
        EXIT WHEN best IS NULL;
        given[best] := given[best] + 1;
        left_slots := left_slots - 1;
    END LOOP;
    -- A run that the general path holds (or waits for) is left for the next step: waiting
    -- for it here, after this step's finishes took theirs, could deadlock. The holder wakes
    -- every agent when it commits.
    SELECT COALESCE(array_agg(x.id), '{}') INTO held FROM (
        SELECT r_id[g] AS id FROM generate_subscripts(r_id, 1) AS g
        WHERE given[g] > 0 ORDER BY r_id[g]
    ) x WHERE pg_try_advisory_xact_lock_shared(@RUN_LOCK_CLASS@, (x.id % 2147483647)::integer);
    FOR k IN 1..n LOOP
        CONTINUE WHEN given[k] = 0 OR NOT (r_id[k] = ANY(held));
        take := '{}';
        FOR cand IN
            SELECT t.id, t.pool FROM task_runs t
            WHERE t.run_id = r_id[k] AND t.state = 'ready'
                AND (r_stage[k] IS NULL OR COALESCE(t.stage, 0) <= r_stage[k])
            ORDER BY t.rank, t.ready_at LIMIT given[k] FOR UPDATE SKIP LOCKED
        LOOP
            IF cand.pool IS NULL THEN
                take := take || cand.id;
                CONTINUE;
            END IF;
            IF pool_room IS NULL THEN
                -- Claims that count pool room take turns (usage is then read after the
                -- previous taker committed).
                PERFORM 1 FROM pools ORDER BY pools.name FOR UPDATE;
                SELECT COALESCE(jsonb_object_agg(p.name, p.size - COALESCE(u.n, 0)), '{}')
                INTO pool_room
                FROM pools p LEFT JOIN (
                    SELECT t.pool, count(*) AS n FROM task_runs t
                    WHERE t.state = 'running' AND t.pool IS NOT NULL GROUP BY t.pool
                ) u ON u.pool = p.name;
            END IF;
            room := (pool_room ->> cand.pool)::integer;
            IF room IS NULL OR room > 0 THEN  -- an undeclared pool is unlimited
                take := take || cand.id;
                IF room IS NOT NULL THEN
                    pool_room := jsonb_set(pool_room, ARRAY[cand.pool], to_jsonb(room - 1));
                END IF;
            END IF;
        END LOOP;
        -- Each candidate is row-locked by this transaction: it is still ready.
        FOR j IN 1..COALESCE(cardinality(take), 0) LOOP
            UPDATE task_runs t SET state = 'running', attempts = t.attempts + 1,
                agent_id = p_agent, started_at = p_now, finished_at = NULL, exit_code = NULL,
                error = NULL
            WHERE t.id = take[j]
            RETURNING t.id, t.run_id, t.task, t.kind, t.item, t.attempts, t.max_attempts,
                t.stage, t.pool, t.parent_id INTO got;
            out := ROW(got.id, got.run_id, r_ver[k], got.task, got.kind, got.item,
                       got.attempts, got.max_attempts, got.stage, got.pool, got.parent_id);
            RETURN NEXT out;
            c_ids := c_ids || got.id;
            c_runs := c_runs || got.run_id;
            c_attempts := c_attempts || got.attempts;
        END LOOP;
    END LOOP;
    INSERT INTO attempts (task_run_id, run_id, attempt, agent_id, state, started_at)
    SELECT u.i, u.r, u.a, p_agent, 'running', p_now
    FROM unnest(c_ids, c_runs, c_attempts) AS u(i, r, a);
    INSERT INTO events (at, run_id, task_run_id, state, detail)
    SELECT p_now, u.r, u.i, 'running', NULL FROM unnest(c_runs, c_ids) AS u(r, i);
END
$fn$;

CREATE OR REPLACE FUNCTION taskplan_step(
    p_agent bigint, p_now double precision, p_free integer, p_root bigint, p_wake boolean,
    p_done jsonb
) RETURNS TABLE (
    tag text, id bigint, run_id bigint, version_id bigint, task text, kind text, item text,
    attempt integer, max_attempts integer, stage integer, pool text, parent_id bigint
) LANGUAGE plpgsql AS $fn$
DECLARE
    f_stale bigint[] := '{}';
    f_runs bigint[] := '{}';
    f_unfinished integer[] := '{}';
    f_running integer[] := '{}';
    f_ready integer[] := '{}';
    f_pooled boolean := false;
    wake_others boolean := false;
    claims taskplan_claim_row[] := '{}';
    v record;
    got record;
BEGIN
    BEGIN
        IF jsonb_array_length(p_done) > 0 THEN
            SELECT * INTO f_stale, f_runs, f_unfinished, f_running, f_ready, f_pooled
            FROM taskplan_finish_successes(p_now, p_done);
        END IF;
        IF p_free > 0 THEN
            SELECT COALESCE(array_agg(c), '{}') INTO claims
            FROM taskplan_claim(p_agent, p_now, p_free, p_root, f_runs, f_running, f_ready) c;
        END IF;
        -- The counters, last and in run id order; each UPDATE holds the run until commit,
        -- so what it reads back (halt, unfinished) cannot change before this step commits.
        FOR v IN
            SELECT m.r, sum(m.u)::integer AS u, sum(m.rn)::integer AS rn,
                   sum(m.rd)::integer AS rd, bool_or(m.fin) AS fin,
                   max(m.stage) FILTER (WHERE NOT m.fin) AS stage,
                   bool_or(NOT m.fin) AS claimed
            FROM (
                SELECT d.r, d.u, d.rn, d.rd, true AS fin, NULL::integer AS stage
                FROM unnest(f_runs, f_unfinished, f_running, f_ready)
                    AS d(r, u, rn, rd)
                UNION ALL
                SELECT c.run_id, 0, 1, -1, false, COALESCE(c.stage, 0) FROM unnest(claims) c
            ) m GROUP BY m.r ORDER BY m.r
        LOOP
            UPDATE runs SET unfinished = runs.unfinished - v.u, running = runs.running + v.rn,
                ready = runs.ready + v.rd
            WHERE runs.id = v.r
            RETURNING runs.unfinished, runs.running, runs.halt, runs.halt_stage,
                runs.max_parallel INTO got;
            IF got.unfinished <= 0  -- the run ends: the general path runs its end (triggers)
                    OR (v.fin AND got.halt IS NOT NULL)
                    -- Steps overlap: one that claimed past max_parallel from a stale count
                    -- (read before another step's claims committed) hands over.
                    OR (v.claimed AND got.running > got.max_parallel)
                    OR (v.claimed AND got.halt IS NOT NULL
                        AND NOT (got.halt = 'finish_stage' AND v.stage <= got.halt_stage)) THEN
                RAISE SQLSTATE '@STEP_FALLBACK@';
            END IF;
            -- Others need waking only if claimable work grew: more ready than this step
            -- claimed, or room freed under max_parallel (or, below, in a pool).
            wake_others := wake_others OR v.rd > 0 OR (v.fin AND got.max_parallel IS NOT NULL);
        END LOOP;
    EXCEPTION WHEN SQLSTATE '@STEP_FALLBACK@' THEN
        -- Nothing of this step was written: the engine redoes it on its general path.
        RETURN QUERY SELECT 'fallback'::text, NULL::bigint, NULL::bigint, NULL::bigint,
            NULL::text, NULL::text, NULL::text, NULL::integer, NULL::integer,
            NULL::integer, NULL::text, NULL::bigint;
        RETURN;
    END;
    IF p_wake AND (wake_others OR f_pooled) THEN
        PERFORM pg_notify('@NOTIFY_CHANNEL@', '');
    END IF;
    RETURN QUERY SELECT 'stale'::text, s, NULL::bigint, NULL::bigint, NULL::text, NULL::text,
        NULL::text, NULL::integer, NULL::integer, NULL::integer, NULL::text, NULL::bigint
        FROM unnest(f_stale) AS s;
    RETURN QUERY SELECT 'claim'::text, c.* FROM unnest(claims) c;
END
$fn$;
