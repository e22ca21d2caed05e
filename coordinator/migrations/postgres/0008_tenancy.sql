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
