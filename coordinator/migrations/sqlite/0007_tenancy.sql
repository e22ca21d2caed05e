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
