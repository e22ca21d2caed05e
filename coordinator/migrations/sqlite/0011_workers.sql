-- Workers as the coordinators last saw them (`GET /v1/workers`); see the PostgreSQL migration.
-- Times are microseconds; `queues` is a JSON array.
CREATE TABLE workers (
    tenant            TEXT    NOT NULL,
    worker_id         TEXT    NOT NULL,
    transport         TEXT    NOT NULL,
    queues            TEXT    NOT NULL,
    version           TEXT,
    first_seen_at     INTEGER NOT NULL,
    last_seen_at      INTEGER NOT NULL,
    last_heartbeat_at INTEGER,
    closed_at         INTEGER,
    PRIMARY KEY (tenant, worker_id)
);
