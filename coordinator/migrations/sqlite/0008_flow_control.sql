-- Flow control at lease time (docs/flow-control.md).
--
-- The keys a job's limits apply to besides its implicit `queue:<name>` and `kind:<kind>`, as
-- given at enqueue: a JSON array of strings, `NULL` when none (most jobs carry none).
ALTER TABLE jobs ADD COLUMN limit_keys TEXT;

-- A tenant's limits, one per key (`*` the whole tenant, `queue:<name>`, `kind:<kind>`, a job's
-- own key such as `host:api.example.com`, or a prefix such as `host:*`: one bucket per host).
-- `spec` is the definition as the API takes it (JSON), kept whole so that a new kind of limit
-- needs no migration. Times are microseconds.
CREATE TABLE limits (
    tenant     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) STRICT;

-- What a limit remembers between claims, per bucket (the limit's key, or for a prefix limit the
-- job key it matched): the token bucket's level and when it was last refilled; the circuit
-- breaker's consecutive failures, when it opened (`NULL` while closed) and when its half-open
-- probe was leased; an adaptive rate's fraction of the configured rate and when a throttle last
-- set it.
CREATE TABLE limit_state (
    tenant      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    bucket      TEXT    NOT NULL,
    tokens      REAL    NOT NULL,
    refilled_at INTEGER NOT NULL,
    failures    INTEGER NOT NULL DEFAULT 0,
    opened_at   INTEGER,
    probe_at    INTEGER,
    factor      REAL    NOT NULL DEFAULT 1,
    adjusted_at INTEGER,
    PRIMARY KEY (tenant, key, bucket)
) STRICT;
