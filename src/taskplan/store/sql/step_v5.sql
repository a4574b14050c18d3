-- taskplan's PostgreSQL step, version 5 (migration 0017). It replaces only taskplan_claim
-- (version 4, step_v4.sql, migration 0014): between runs of equal priority and equal load,
-- the slot goes to the run with the fewest ready task runs left, not the lowest id. By id, a
-- one-slot agent gave the slot each task of an older run freed back to that run (both runs
-- then had none running), so a run of 10 tasks waited for every one of the older run's
-- 10,000; so did any run beyond as many busy runs as there were slots. The current
-- taskplan_finish_successes is step_v3.sql's, taskplan_step step_v1.sql's.
--
-- Constants are tokens (an at-sign, the NAME, an at-sign) filled in by
-- taskplan/store/pgserver.py, which the Python side reads too. What the step does, how it
-- reads task runs and how it locks: see the head of step_v2.sql; none of it changes here.

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
    r_labels bigint[];
    mine bigint[];
    given integer[];
    taken integer[];
    dry boolean[];
    n integer;
    k integer;
    j integer;
    best integer;
    load_k integer;
    load_b integer;
    left_k integer;
    left_b integer;
    left_slots integer := p_free;
    round_left integer;
    held bigint[] := '{}';
    cand record;
    got record;
    take bigint[];
    got_k integer;
    passed boolean;
    seen integer;
    want integer;
    room integer;
    pool_room jsonb;
    out taskplan_claim_row;
    c_ids bigint[] := '{}';
    c_runs bigint[] := '{}';
    c_attempts integer[] := '{}';
BEGIN
    -- The counters as this step will leave them: its finishes (p_runs: their deltas) are
    -- written to `runs` only at its end. A run pinned to another agent is left to it while
    -- that agent is alive.
    SELECT array_agg(r.id ORDER BY r.id), array_agg(r.priority ORDER BY r.id),
           array_agg(r.running + COALESCE(d.rn, 0) ORDER BY r.id),
           array_agg(r.ready + COALESCE(d.rd, 0) ORDER BY r.id),
           array_agg(r.max_parallel ORDER BY r.id),
           array_agg(CASE WHEN r.halt = 'finish_stage' THEN r.halt_stage END ORDER BY r.id),
           array_agg(r.version_id ORDER BY r.id),
           array_agg(r.max_label_set ORDER BY r.id)
    INTO r_id, r_prio, r_running, r_ready, r_maxp, r_stage, r_ver, r_labels
    FROM runs r LEFT JOIN unnest(p_runs, p_running, p_ready) AS d(i, rn, rd) ON d.i = r.id
    WHERE r.state = 'running' AND r.ready + COALESCE(d.rd, 0) > 0
        AND (r.halt IS NULL OR r.halt = 'finish_stage')
        AND (p_root IS NULL OR r.root_run_id = p_root)
        AND (r.pin_agent_id IS NULL OR r.pin_agent_id = p_agent OR NOT EXISTS (
            SELECT 1 FROM agents a
            WHERE a.id = r.pin_agent_id AND a.state IN ('alive', 'draining')));
    n := COALESCE(cardinality(r_id), 0);
    IF n = 0 OR p_free <= 0 THEN
        RETURN;
    END IF;
    -- The label sets this agent has every label of; read only when some run needs labels.
    IF (SELECT max(x) FROM unnest(r_labels) AS x) > 0 THEN
        SELECT COALESCE(array_agg(s.id), '{}') INTO mine
        FROM label_sets s, agents a
        WHERE a.id = p_agent
            AND string_to_array(s.labels, ',') <@ string_to_array(a.labels, ',');
    END IF;
    taken := array_fill(0, ARRAY[n]);
    dry := array_fill(false, ARRAY[n]);
    -- Rounds: a run that gives fewer than its share (its ready task runs need labels this
    -- agent lacks, are in full pools, or another agent holds them) is dry; the next round
    -- offers the slots left to the other runs.
    WHILE left_slots > 0 LOOP
        -- Fair shares (taskplan/rules.py fair_shares): one slot at a time to the run of
        -- highest priority, then fewest running (counting what this step gave), then fewest
        -- ready left (the same count), then lowest id.
        given := array_fill(0, ARRAY[n]);
        round_left := left_slots;
        WHILE round_left > 0 LOOP
            best := NULL;
            FOR k IN 1..n LOOP
                CONTINUE WHEN dry[k] OR taken[k] + given[k] >= r_ready[k];
                load_k := r_running[k] + taken[k] + given[k];
                left_k := r_ready[k] - taken[k] - given[k];
                CONTINUE WHEN r_maxp[k] IS NOT NULL AND load_k >= r_maxp[k];
                IF best IS NULL OR r_prio[k] > r_prio[best]
                        OR (r_prio[k] = r_prio[best] AND load_k < load_b)
                        OR (r_prio[k] = r_prio[best] AND load_k = load_b
                            AND left_k < left_b) THEN
                    best := k;
                    load_b := load_k;
                    left_b := left_k;
                END IF;
            END LOOP;
            EXIT WHEN best IS NULL;
            given[best] := given[best] + 1;
            round_left := round_left - 1;
        END LOOP;
        EXIT WHEN round_left = left_slots;
        -- A run that the general path holds (or waits for) is left for the next step: waiting
        -- for it here, after this step's finishes took theirs, could deadlock. The holder
        -- wakes every agent when it commits.
        SELECT held || COALESCE(array_agg(x.id), '{}') INTO held FROM (
            SELECT r_id[g] AS id FROM generate_subscripts(r_id, 1) AS g
            WHERE given[g] > 0 AND NOT (r_id[g] = ANY(held)) ORDER BY r_id[g]
        ) x WHERE pg_try_advisory_xact_lock_shared(@RUN_LOCK_CLASS@,
                                                   (x.id % 2147483647)::integer);
        FOR k IN 1..n LOOP
            CONTINUE WHEN given[k] = 0;
            IF NOT (r_id[k] = ANY(held)) THEN
                dry[k] := true;
                CONTINUE;
            END IF;
            got_k := 0;
            LOOP
                want := given[k] - got_k;
                take := '{}';
                passed := false;
                seen := 0;
                FOR cand IN
                    SELECT t.id, t.pool FROM task_runs t
                    WHERE t.run_id = r_id[k] AND t.state = 'ready'
                        AND (r_stage[k] IS NULL OR COALESCE(t.stage, 0) <= r_stage[k])
                        AND (r_labels[k] = 0 OR t.label_set IS NULL OR t.label_set = ANY(mine))
                        -- Pools this claim found full are left out (none before it counted
                        -- them: pool_room is NULL).
                        AND (t.pool IS NULL OR COALESCE((pool_room ->> t.pool)::integer, 1) > 0)
                    ORDER BY t.rank, t.ready_at LIMIT want FOR UPDATE SKIP LOCKED
                LOOP
                    seen := seen + 1;
                    IF cand.pool IS NULL THEN
                        take := take || cand.id;
                        CONTINUE;
                    END IF;
                    IF pool_room IS NULL THEN
                        -- Claims that count pool room take turns (usage is then read after
                        -- the previous taker committed).
                        PERFORM 1 FROM pools ORDER BY pools.name FOR UPDATE;
                        SELECT COALESCE(jsonb_object_agg(p.name, p.size - COALESCE(u.n, 0)),
                                        '{}')
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
                            pool_room := jsonb_set(pool_room, ARRAY[cand.pool],
                                                   to_jsonb(room - 1));
                        END IF;
                    ELSE
                        passed := true;
                    END IF;
                END LOOP;
                -- Each candidate is row-locked by this transaction: it is still ready. Once
                -- running, it is not read again below.
                FOR j IN 1..COALESCE(cardinality(take), 0) LOOP
                    UPDATE task_runs t SET state = 'running', attempts = t.attempts + 1,
                        agent_id = p_agent, started_at = p_now, finished_at = NULL,
                        exit_code = NULL, error = NULL
                    WHERE t.id = take[j]
                    RETURNING t.id, t.run_id, t.task, t.kind, t.item, t.attempts,
                        t.max_attempts, t.stage, t.pool, t.parent_id INTO got;
                    out := ROW(got.id, got.run_id, r_ver[k], got.task, got.kind, got.item,
                               got.attempts, got.max_attempts, got.stage, got.pool,
                               got.parent_id);
                    RETURN NEXT out;
                    c_ids := c_ids || got.id;
                    c_runs := c_runs || got.run_id;
                    c_attempts := c_attempts || got.attempts;
                END LOOP;
                -- Read on only past a pool this read found full, and only if the run may hold
                -- more (the read was not short). Pools only fill up here, so each read on
                -- leaves out at least one more full pool.
                got_k := got_k + COALESCE(cardinality(take), 0);
                EXIT WHEN NOT passed OR got_k >= given[k] OR seen < want;
            END LOOP;
            taken[k] := taken[k] + got_k;
            left_slots := left_slots - got_k;
            IF got_k < given[k] THEN
                dry[k] := true;
            END IF;
        END LOOP;
    END LOOP;
    INSERT INTO attempts (task_run_id, run_id, attempt, agent_id, state, started_at)
    SELECT u.i, u.r, u.a, p_agent, 'running', p_now
    FROM unnest(c_ids, c_runs, c_attempts) AS u(i, r, a);
    INSERT INTO events (at, run_id, task_run_id, state, detail)
    SELECT p_now, u.r, u.i, 'running', NULL FROM unnest(c_runs, c_ids) AS u(r, i);
END
$fn$;
