-- Bounded storage (docs/ARCHITECTURE.md, "Retention and the ledger archive").
--
-- Retention overrides: per tenant (`queue` = '', never a valid queue name) or per queue. A NULL
-- window is inherited from the next level (queue, then tenant, then the coordinator's flags);
-- windows are stored as written (`24h`, `7d`, `off`).
CREATE TABLE retention_policies (
    tenant     TEXT    NOT NULL,
    queue      TEXT    NOT NULL DEFAULT '',
    succeeded  TEXT,
    failed     TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, queue)
) STRICT;

-- Archived ledger segments, one row per NDJSON file, in chain order. A segment is recorded in
-- the transaction that deletes its events, so a row exists exactly when its events left the
-- table.
CREATE TABLE ledger_segments (
    seq             INTEGER PRIMARY KEY,
    first_id        INTEGER NOT NULL UNIQUE,
    last_id         INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    sha256          TEXT    NOT NULL,
    manifest_sha256 TEXT    NOT NULL,
    prev            TEXT    UNIQUE,
    file            TEXT    NOT NULL,
    archived_at     INTEGER NOT NULL
) STRICT;
