-- Flow control at lease time (docs/flow-control.md).
--
-- The keys a job's limits apply to besides its implicit `queue:<name>` and `kind:<kind>`, as
-- given at enqueue (`NULL` when none: most jobs carry none and pay nothing).
ALTER TABLE jobs ADD COLUMN limit_keys text[];

-- A tenant's limits, one per key (`*` the whole tenant, `queue:<name>`, `kind:<kind>`, a job's
-- own key such as `host:api.example.com`, or a prefix such as `host:*`: one bucket per host).
-- `spec` is the definition as the API takes it (rate, burst, concurrency…), kept whole so that a
-- new kind of limit needs no migration.
CREATE TABLE limits (
    tenant     text        NOT NULL,
    key        text        NOT NULL,
    spec       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, key)
);

-- What a limit remembers between claims, per bucket (the limit's key, or for a prefix limit the
-- job key it matched): the token bucket's level and when it was last refilled; the circuit
-- breaker's consecutive failures, when it opened (`NULL` while closed) and when its half-open
-- probe was leased; an adaptive rate's fraction of the configured rate and when a throttle last
-- set it.
CREATE TABLE limit_state (
    tenant      text             NOT NULL,
    key         text             NOT NULL,
    bucket      text             NOT NULL,
    tokens      double precision NOT NULL,
    refilled_at timestamptz      NOT NULL,
    failures    integer          NOT NULL DEFAULT 0,
    opened_at   timestamptz,
    probe_at    timestamptz,
    factor      double precision NOT NULL DEFAULT 1,
    adjusted_at timestamptz,
    PRIMARY KEY (tenant, key, bucket)
);
