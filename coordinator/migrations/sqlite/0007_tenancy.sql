-- API keys bound to a tenant and scopes (docs/SECURITY.md). Only the SHA-256 of a token is
-- stored; `scopes` is a space-separated list of scope names; times are microseconds.
CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    token_sha256 BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

-- Scheduler run records belong to a tenant like every other row (they had none: every caller saw
-- every tenant's records). Records written before this migration belong to `default`.
ALTER TABLE scheduler_runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
CREATE INDEX scheduler_runs_tenant ON scheduler_runs (tenant, id);

-- Who stored which artifact blob: the bytes are shared on disk, each tenant sees only the digests
-- it uploaded (docs/SECURITY.md). Blobs that jobs already name belong to those jobs' tenants; a
-- blob stored before this migration that no job names belongs to nobody until it is uploaded
-- again. `stored_at` is the last upload, in microseconds.
CREATE TABLE artifact_owners (
    tenant    TEXT    NOT NULL,
    digest    TEXT    NOT NULL,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, digest)
) STRICT;
CREATE INDEX artifact_owners_digest ON artifact_owners (digest);
INSERT OR IGNORE INTO artifact_owners (tenant, digest, stored_at)
SELECT DISTINCT jobs.tenant, json_extract(a.value, '$.digest'),
       CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
FROM jobs, json_each(jobs.artifacts) a
WHERE jobs.artifacts <> '[]' AND json_extract(a.value, '$.digest') IS NOT NULL;

-- `/metrics` counts the live states per tenant and queue through partial indexes instead of a
-- GROUP BY over every job ever kept (crate::store::LIVE_STATE_COUNTS); blocked jobs had none.
CREATE INDEX jobs_blocked ON jobs (tenant, queue) WHERE state = 'blocked';
