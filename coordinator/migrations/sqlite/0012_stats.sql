-- Job statistics rolled up per minute from the ledger; see the PostgreSQL migration. Times
-- (`minute`) are microseconds.
CREATE TABLE job_stats (
    tenant            TEXT    NOT NULL,
    queue             TEXT    NOT NULL,
    minute            INTEGER NOT NULL,
    leased            INTEGER NOT NULL DEFAULT 0,
    succeeded         INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    dead              INTEGER NOT NULL DEFAULT 0,
    cancelled         INTEGER NOT NULL DEFAULT 0,
    pickup_le_10     INTEGER NOT NULL DEFAULT 0,
    pickup_le_50     INTEGER NOT NULL DEFAULT 0,
    pickup_le_100    INTEGER NOT NULL DEFAULT 0,
    pickup_le_250    INTEGER NOT NULL DEFAULT 0,
    pickup_le_500    INTEGER NOT NULL DEFAULT 0,
    pickup_le_1000   INTEGER NOT NULL DEFAULT 0,
    pickup_le_2500   INTEGER NOT NULL DEFAULT 0,
    pickup_le_5000   INTEGER NOT NULL DEFAULT 0,
    pickup_le_10000  INTEGER NOT NULL DEFAULT 0,
    pickup_le_30000  INTEGER NOT NULL DEFAULT 0,
    pickup_le_60000  INTEGER NOT NULL DEFAULT 0,
    pickup_le_300000 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, minute, queue)
);

CREATE TABLE failure_stats (
    tenant TEXT    NOT NULL,
    queue  TEXT    NOT NULL,
    class  TEXT    NOT NULL,
    minute INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (tenant, minute, queue, class)
);

CREATE TABLE stats_cursor (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_event_id INTEGER NOT NULL
);
INSERT INTO stats_cursor (id, last_event_id) SELECT 1, COALESCE(max(id), 0) FROM events;

CREATE TABLE slo_objectives (
    tenant        TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    success_ratio REAL    NOT NULL,
    pickup_ms     INTEGER NOT NULL,
    pickup_ratio  REAL    NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, queue)
);
