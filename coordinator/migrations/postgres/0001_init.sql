-- Leasehold schema, PostgreSQL flavour.
CREATE TABLE jobs (
    id               uuid        PRIMARY KEY,
    tenant           text        NOT NULL DEFAULT 'default',
    queue            text        NOT NULL,
    kind             text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('blocked','queued','leased','succeeded','dead','cancelled')),
    payload          jsonb       NOT NULL,
    priority         integer     NOT NULL DEFAULT 0,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    lease_epoch      bigint      NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_expires_at timestamptz,
    lease_ttl_ms     bigint,
    idempotency_key  text,
    correlation_id   text,
    project          text,
    run_id           uuid,
    inputs_hash      text        NOT NULL,
    backoff          jsonb,
    worker_id        text,
    worker_version   text,
    cancel_requested boolean     NOT NULL DEFAULT false,
    cancel_reason    text,
    checkpoint       jsonb,
    progress         jsonb,
    result           jsonb,
    last_error       jsonb,
    artifacts        jsonb       NOT NULL DEFAULT '[]'
);

CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_ready ON jobs (tenant, queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (tenant, queue, lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_listing ON jobs (tenant, id);
CREATE INDEX jobs_depth ON jobs (tenant, queue, state);

CREATE TABLE queues (
    tenant     text        NOT NULL DEFAULT 'default',
    name       text        NOT NULL,
    paused     boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- Append-only ledger. `tx_id` records the writing transaction so that readers can later stay
-- below the oldest running transaction and never skip an id that commits late.
CREATE TABLE events (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         text        NOT NULL DEFAULT 'default',
    type           text        NOT NULL,
    job_id         uuid,
    run_id         uuid,
    queue          text,
    project        text,
    kind           text,
    worker_id      text,
    correlation_id text,
    at             timestamptz NOT NULL,
    data           jsonb       NOT NULL DEFAULT '{}',
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id()
);

CREATE INDEX events_job ON events (job_id, id);
CREATE INDEX events_at ON events (at);
