-- Runs (DAGs of jobs), dependency edges, and the scheduler's run records.
CREATE TABLE runs (
    id             BLOB    PRIMARY KEY,
    tenant         TEXT    NOT NULL DEFAULT 'default',
    run_token      TEXT,
    name           TEXT,
    project        TEXT,
    correlation_id TEXT,
    mode           TEXT,
    status         TEXT    NOT NULL DEFAULT 'pending',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    cancelled_at   INTEGER
) STRICT;
CREATE UNIQUE INDEX runs_token ON runs (tenant, run_token) WHERE run_token IS NOT NULL;

ALTER TABLE jobs ADD COLUMN run_key TEXT;
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE job_deps (
    job_id    BLOB NOT NULL,
    parent_id BLOB NOT NULL,
    PRIMARY KEY (job_id, parent_id)
) STRICT;
CREATE INDEX job_deps_parent ON job_deps (parent_id);

CREATE TABLE scheduler_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at      INTEGER NOT NULL,
    completed_at    INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    tables_assessed INTEGER NOT NULL DEFAULT 0,
    tables_skipped  INTEGER NOT NULL DEFAULT 0,
    tables_healthy  INTEGER NOT NULL DEFAULT 0,
    jobs_submitted  INTEGER NOT NULL DEFAULT 0,
    jobs_completed  INTEGER NOT NULL DEFAULT 0,
    jobs_failed     INTEGER NOT NULL DEFAULT 0,
    dry_run         INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    recorded_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX events_run ON events (run_id, id) WHERE run_id IS NOT NULL;
