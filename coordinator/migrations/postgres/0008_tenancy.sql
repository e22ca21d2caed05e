-- API keys bound to a tenant and scopes (docs/SECURITY.md). Only the SHA-256 of a token is
-- stored; `scopes` is a space-separated list of scope names.
CREATE TABLE api_keys (
    id           text        PRIMARY KEY,
    name         text        NOT NULL,
    tenant       text        NOT NULL,
    scopes       text        NOT NULL,
    token_sha256 bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

-- Scheduler run records belong to a tenant like every other row (they had none: every caller saw
-- every tenant's records). Records written before this migration belong to `default`.
ALTER TABLE scheduler_runs ADD COLUMN tenant text NOT NULL DEFAULT 'default';
CREATE INDEX scheduler_runs_tenant ON scheduler_runs (tenant, id);

-- Who stored which artifact blob: the bytes are shared on disk, each tenant sees only the digests
-- it uploaded (docs/SECURITY.md). Blobs that jobs already name belong to those jobs' tenants; a
-- blob stored before this migration that no job names belongs to nobody until it is uploaded
-- again.
CREATE TABLE artifact_owners (
    tenant    text        NOT NULL,
    digest    text        NOT NULL,
    stored_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, digest)
);
CREATE INDEX artifact_owners_digest ON artifact_owners (digest);
INSERT INTO artifact_owners (tenant, digest, stored_at)
SELECT DISTINCT jobs.tenant, a->>'digest', now()
FROM jobs, jsonb_array_elements(jobs.artifacts) a
WHERE jobs.artifacts <> '[]'::jsonb AND a->>'digest' IS NOT NULL
ON CONFLICT DO NOTHING;

-- `/metrics` counts the live states per tenant and queue through partial indexes instead of a
-- GROUP BY over every job ever kept (crate::store::LIVE_STATE_COUNTS); blocked jobs had none.
-- Only rows entering `blocked` write to it.
CREATE INDEX jobs_blocked ON jobs (tenant, queue) WHERE state = 'blocked';
