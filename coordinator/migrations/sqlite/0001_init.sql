-- Leasehold schema, SQLite flavour. Times are INTEGER microseconds since the Unix epoch (exact
-- and cheap to compare), ids are 16-byte BLOB UUIDs, JSON is TEXT.
CREATE TABLE jobs (
    id               BLOB    PRIMARY KEY,
    tenant           TEXT    NOT NULL DEFAULT 'default',
    queue            TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('blocked','queued','leased','succeeded','dead','cancelled')),
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    lease_epoch      INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    lease_expires_at INTEGER,
    lease_ttl_ms     INTEGER,
    idempotency_key  TEXT,
    correlation_id   TEXT,
    project          TEXT,
    run_id           BLOB,
    inputs_hash      TEXT    NOT NULL,
    backoff          TEXT,
    worker_id        TEXT,
    worker_version   TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_reason    TEXT,
    checkpoint       TEXT,
    progress         TEXT,
    result           TEXT,
    last_error       TEXT,
    artifacts        TEXT    NOT NULL DEFAULT '[]'
) STRICT;

CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The claim path: ready jobs in priority order, and expired leases.
CREATE INDEX jobs_ready ON jobs (tenant, queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (tenant, queue, lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_listing ON jobs (tenant, id);
CREATE INDEX jobs_depth ON jobs (tenant, queue, state);

CREATE TABLE queues (
    tenant     TEXT    NOT NULL DEFAULT 'default',
    name       TEXT    NOT NULL,
    paused     INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) STRICT;

-- Append-only ledger; AUTOINCREMENT keeps ids strictly increasing, never reused.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant         TEXT    NOT NULL DEFAULT 'default',
    type           TEXT    NOT NULL,
    job_id         BLOB,
    run_id         BLOB,
    queue          TEXT,
    project        TEXT,
    kind           TEXT,
    worker_id      TEXT,
    correlation_id TEXT,
    at             INTEGER NOT NULL,
    data           TEXT    NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX events_job ON events (job_id, id);
CREATE INDEX events_at ON events (at);
