-- revision: 0017
-- Rendered by `python -m taskplan.store.fresh` from the migrations; do not edit.
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE events (
	id INTEGER NOT NULL, 
	at FLOAT NOT NULL, 
	run_id INTEGER NOT NULL, 
	task_run_id INTEGER, 
	state VARCHAR(20) NOT NULL, 
	detail TEXT, 
	CONSTRAINT pk_events PRIMARY KEY (id)
);
CREATE INDEX ix_events_run_id_id ON events (run_id, id);
CREATE TABLE jobs (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	current_version_id INTEGER, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, paused BOOLEAN DEFAULT '0' NOT NULL, 
	CONSTRAINT pk_jobs PRIMARY KEY (id), 
	CONSTRAINT uq_jobs_name UNIQUE (name)
);
CREATE TABLE leases (
	name VARCHAR(200) NOT NULL, 
	holder VARCHAR(200) NOT NULL, 
	until FLOAT NOT NULL, 
	CONSTRAINT pk_leases PRIMARY KEY (name)
);
CREATE TABLE log_chunks (
	task_run_id INTEGER NOT NULL, 
	attempt INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	data TEXT NOT NULL, 
	CONSTRAINT pk_log_chunks PRIMARY KEY (task_run_id, attempt, seq)
);
CREATE TABLE pools (
	name VARCHAR(200) NOT NULL, 
	size INTEGER NOT NULL, 
	CONSTRAINT pk_pools PRIMARY KEY (name)
);
CREATE TABLE schedule_firings (
	job_id INTEGER NOT NULL, 
	schedule_key VARCHAR(200) NOT NULL, 
	fire_at FLOAT NOT NULL, 
	run_id INTEGER, 
	created_at FLOAT NOT NULL, note TEXT, 
	CONSTRAINT pk_schedule_firings PRIMARY KEY (job_id, schedule_key, fire_at)
);
CREATE TABLE schedule_state (
	job_id INTEGER NOT NULL, 
	schedule_key VARCHAR(200) NOT NULL, 
	fired_count INTEGER DEFAULT '0' NOT NULL, 
	last_fire_at FLOAT, 
	CONSTRAINT pk_schedule_state PRIMARY KEY (job_id, schedule_key)
);
CREATE TABLE task_edges (
	up_id INTEGER NOT NULL, 
	down_id INTEGER NOT NULL, 
	CONSTRAINT pk_task_edges PRIMARY KEY (up_id, down_id)
);
CREATE TABLE trigger_firings (
	job_id INTEGER NOT NULL, 
	trigger_index INTEGER NOT NULL, 
	upstream_key VARCHAR(500) NOT NULL, 
	run_id INTEGER, 
	created_at FLOAT NOT NULL, upstream_runs TEXT, 
	CONSTRAINT pk_trigger_firings PRIMARY KEY (job_id, trigger_index, upstream_key)
);
CREATE TABLE job_versions (
	id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	spec_hash VARCHAR(64) NOT NULL, 
	definition TEXT NOT NULL, 
	source_path TEXT NOT NULL, 
	base_dir TEXT NOT NULL, 
	created_at FLOAT NOT NULL, 
	CONSTRAINT pk_job_versions PRIMARY KEY (id), 
	CONSTRAINT fk_job_versions_job_id_jobs FOREIGN KEY(job_id) REFERENCES jobs (id), 
	CONSTRAINT uq_job_versions_job_id_version UNIQUE (job_id, version)
);
CREATE TABLE task_runs (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	task VARCHAR(200) NOT NULL, 
	kind VARCHAR(10) NOT NULL, 
	parent_id INTEGER, 
	item_index INTEGER, 
	item TEXT, 
	stage INTEGER, 
	state VARCHAR(20) NOT NULL, 
	trigger_rule VARCHAR(20) NOT NULL, 
	pending_up INTEGER DEFAULT '0' NOT NULL, 
	failed_up INTEGER DEFAULT '0' NOT NULL, 
	pending_children INTEGER DEFAULT '0' NOT NULL, 
	failed_children INTEGER DEFAULT '0' NOT NULL, 
	priority INTEGER DEFAULT '0' NOT NULL, 
	rank INTEGER DEFAULT '0' NOT NULL, 
	pool VARCHAR(200), 
	attempts INTEGER DEFAULT '0' NOT NULL, 
	max_attempts INTEGER DEFAULT '1' NOT NULL, 
	ready_at FLOAT, 
	agent_id INTEGER, 
	started_at FLOAT, 
	finished_at FLOAT, 
	exit_code INTEGER, 
	result TEXT, 
	error TEXT, 
	child_run_id INTEGER, label_set INTEGER, 
	CONSTRAINT pk_task_runs PRIMARY KEY (id), 
	CONSTRAINT fk_task_runs_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id)
);
CREATE INDEX ix_task_runs_agent_id_state ON task_runs (agent_id, state);
CREATE INDEX ix_task_runs_parent_id_item_index ON task_runs (parent_id, item_index);
CREATE INDEX ix_task_runs_run_id_state_rank_ready_at ON task_runs (run_id, state, rank, ready_at);
CREATE INDEX ix_task_runs_run_id_task ON task_runs (run_id, task);
CREATE INDEX ix_task_runs_state_ready_at ON task_runs (state, ready_at) WHERE state = 'retrying';
CREATE TABLE attempts (
	task_run_id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	attempt INTEGER NOT NULL, 
	agent_id INTEGER, 
	state VARCHAR(20) NOT NULL, 
	started_at FLOAT NOT NULL, 
	finished_at FLOAT, 
	exit_code INTEGER, 
	error TEXT, 
	output_bytes BIGINT DEFAULT '0' NOT NULL, 
	truncated BOOLEAN DEFAULT '0' NOT NULL, 
	CONSTRAINT pk_attempts PRIMARY KEY (task_run_id, attempt), 
	CONSTRAINT fk_attempts_task_run_id_task_runs FOREIGN KEY(task_run_id) REFERENCES task_runs (id)
);
CREATE INDEX ix_attempts_run_id ON attempts (run_id);
CREATE TABLE connections (
	name VARCHAR(200) NOT NULL, 
	url TEXT NOT NULL, 
	source_path TEXT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	CONSTRAINT pk_connections PRIMARY KEY (name)
);
CREATE TABLE calendars (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	current_version_id INTEGER, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	CONSTRAINT pk_calendars PRIMARY KEY (id), 
	CONSTRAINT uq_calendars_name UNIQUE (name)
);
CREATE TABLE calendar_versions (
	id INTEGER NOT NULL, 
	calendar_id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	spec_hash VARCHAR(64) NOT NULL, 
	definition TEXT NOT NULL, 
	source_path TEXT NOT NULL, 
	created_at FLOAT NOT NULL, 
	CONSTRAINT pk_calendar_versions PRIMARY KEY (id), 
	CONSTRAINT fk_calendar_versions_calendar_id_calendars FOREIGN KEY(calendar_id) REFERENCES calendars (id), 
	CONSTRAINT uq_calendar_versions_calendar_id_version UNIQUE (calendar_id, version)
);
CREATE TABLE backfills (
	id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	from_at FLOAT NOT NULL, 
	to_at FLOAT NOT NULL, 
	max_active INTEGER, 
	created_at FLOAT NOT NULL, 
	CONSTRAINT pk_backfills PRIMARY KEY (id)
);
CREATE TABLE notifications (
	id INTEGER NOT NULL, 
	event VARCHAR(40) NOT NULL, 
	created_at FLOAT NOT NULL, 
	job VARCHAR(200), 
	run_id INTEGER, 
	task_run_id INTEGER, 
	channel TEXT NOT NULL, 
	payload TEXT NOT NULL, 
	state VARCHAR(20) NOT NULL, 
	attempts INTEGER DEFAULT '0' NOT NULL, 
	round_from INTEGER DEFAULT '0' NOT NULL, 
	next_at FLOAT NOT NULL, 
	delivered_at FLOAT, 
	last_error TEXT, 
	CONSTRAINT pk_notifications PRIMARY KEY (id)
);
CREATE INDEX ix_notifications_state_next_at ON notifications (state, next_at);
CREATE INDEX ix_notifications_run_id ON notifications (run_id);
CREATE TABLE notification_attempts (
	notification_id INTEGER NOT NULL, 
	attempt INTEGER NOT NULL, 
	sender VARCHAR(200) NOT NULL, 
	started_at FLOAT NOT NULL, 
	finished_at FLOAT, 
	ok BOOLEAN, 
	status INTEGER, 
	error TEXT, 
	CONSTRAINT pk_notification_attempts PRIMARY KEY (notification_id, attempt)
);
CREATE TABLE label_sets (
	id INTEGER NOT NULL, 
	labels VARCHAR(2000) NOT NULL, 
	CONSTRAINT pk_label_sets PRIMARY KEY (id), 
	CONSTRAINT uq_label_sets_labels UNIQUE (labels)
);
CREATE TABLE "agents" (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	host VARCHAR(200) NOT NULL, 
	pid INTEGER NOT NULL, 
	slots INTEGER NOT NULL, 
	state VARCHAR(20) NOT NULL, 
	started_at FLOAT NOT NULL, 
	heartbeat_at FLOAT NOT NULL, 
	lease_until FLOAT NOT NULL, 
	process VARCHAR(200), 
	labels TEXT DEFAULT '' NOT NULL, 
	CONSTRAINT pk_agents PRIMARY KEY (id)
);
CREATE INDEX ix_agents_state_lease_until ON agents (state, lease_until);
CREATE TABLE paused_schedules (
	job_id INTEGER NOT NULL, 
	schedule_key VARCHAR(200) NOT NULL, 
	paused_at FLOAT NOT NULL, 
	CONSTRAINT pk_paused_schedules PRIMARY KEY (job_id, schedule_key)
);
CREATE TABLE "runs" (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    version_id INTEGER NOT NULL,
    root_run_id INTEGER,
    parent_task_run_id INTEGER,
    state VARCHAR(20) NOT NULL,
    "trigger" VARCHAR(20) NOT NULL,
    trigger_ref TEXT,
    params TEXT NOT NULL,
    priority INTEGER DEFAULT '0' NOT NULL,
    max_parallel INTEGER,
    on_failure VARCHAR(20) NOT NULL,
    halt VARCHAR(20),
    halt_stage INTEGER,
    unfinished INTEGER DEFAULT '0' NOT NULL,
    running INTEGER DEFAULT '0' NOT NULL,
    ready INTEGER DEFAULT '0' NOT NULL,
    failed INTEGER DEFAULT '0' NOT NULL,
    created_at FLOAT NOT NULL,
    started_at FLOAT,
    finished_at FLOAT,
    error TEXT,
    fire_at FLOAT,
    deadline_at FLOAT,
    deadline_state VARCHAR(20),
    pin_agent_id INTEGER,
    max_label_set INTEGER DEFAULT '0' NOT NULL,
    CONSTRAINT fk_runs_job_id_jobs FOREIGN KEY(job_id) REFERENCES jobs (id),
    CONSTRAINT fk_runs_version_id_job_versions FOREIGN KEY(version_id)
        REFERENCES job_versions (id)
);
CREATE INDEX ix_runs_job_id_id ON runs (job_id, id);
CREATE INDEX ix_runs_root_run_id ON runs (root_run_id);
CREATE INDEX ix_runs_state_priority ON runs (state, priority);
CREATE INDEX ix_task_runs_pool ON task_runs (pool) WHERE state = 'running' AND pool IS NOT NULL;
