-- Bounded storage (docs/ARCHITECTURE.md, "Retention and the ledger archive").
--
-- Retention overrides: per tenant (`queue` = '', never a valid queue name) or per queue. A NULL
-- window is inherited from the next level (queue, then tenant, then the coordinator's flags);
-- windows are stored as written (`24h`, `7d`, `off`).
CREATE TABLE retention_policies (
    tenant     text        NOT NULL,
    queue      text        NOT NULL DEFAULT '',
    succeeded  text,
    failed     text,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, queue)
);

-- Archived ledger segments, one row per NDJSON file, in chain order. A segment is recorded in
-- the transaction that deletes its events, so a row exists exactly when its events left the
-- table. `seq` is the primary key and `prev` unique: two sweeps cannot both extend the chain.
CREATE TABLE ledger_segments (
    seq             bigint      PRIMARY KEY,
    first_id        bigint      NOT NULL UNIQUE,
    last_id         bigint      NOT NULL,
    count           bigint      NOT NULL,
    sha256          text        NOT NULL,
    manifest_sha256 text        NOT NULL,
    prev            text        UNIQUE,
    file            text        NOT NULL,
    archived_at     timestamptz NOT NULL
);
