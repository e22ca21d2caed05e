-- Runs (DAGs of jobs), dependency edges, and the scheduler's run records.
CREATE TABLE runs (
    id             uuid        PRIMARY KEY,
    tenant         text        NOT NULL DEFAULT 'default',
    run_token      text,
    name           text,
    project        text,
    correlation_id text,
    mode           text,
    status         text        NOT NULL DEFAULT 'pending',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    cancelled_at   timestamptz
);
CREATE UNIQUE INDEX runs_token ON runs (tenant, run_token) WHERE run_token IS NOT NULL;

ALTER TABLE jobs ADD COLUMN run_key text;
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE job_deps (
    job_id    uuid NOT NULL,
    parent_id uuid NOT NULL,
    PRIMARY KEY (job_id, parent_id)
);
CREATE INDEX job_deps_parent ON job_deps (parent_id);

CREATE TABLE scheduler_runs (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at      timestamptz NOT NULL,
    completed_at    timestamptz NOT NULL,
    status          text        NOT NULL,
    tables_assessed bigint      NOT NULL DEFAULT 0,
    tables_skipped  bigint      NOT NULL DEFAULT 0,
    tables_healthy  bigint      NOT NULL DEFAULT 0,
    jobs_submitted  bigint      NOT NULL DEFAULT 0,
    jobs_completed  bigint      NOT NULL DEFAULT 0,
    jobs_failed     bigint      NOT NULL DEFAULT 0,
    dry_run         boolean     NOT NULL DEFAULT false,
    error           text,
    recorded_at     timestamptz NOT NULL
);

CREATE INDEX events_run ON events (run_id, id) WHERE run_id IS NOT NULL;
