-- Job indexes that the planner cannot misuse and that cost fewer writes (docs/postgres-hot-path.md).
--
-- Every claim and every outcome changes `state`, which the partial indexes' predicates read, so
-- no such update is HOT: each one adds an entry to every index of `jobs`, and the old entries
-- stay until VACUUM. Two kinds of index turned that into whole-table work per statement:
--
-- * Indexes led by `tenant` alone (`jobs_depth`, `jobs_listing`): lacking statistics (a freshly
--   filled table) or with one tenant, `tenant = $1` looked selective, and statements that name
--   jobs by id scanned the whole tenant instead of probing the primary key.
-- * `jobs_leased`, partial on `state = 'leased'`: every statement that checks `state = 'leased'`
--   (finish, heartbeat) could read it by tenant, and under churn it is mostly entries of rows
--   that are no longer leased, so each outcome batch walked every lease ever granted since the
--   last VACUUM (357 ms per batch at 20k jobs). The replacement is partial on
--   `lease_expires_at IS NOT NULL`, which only the expired-lease search implies (its
--   `lease_expires_at <= $now` is strict), so outcome and heartbeat batches probe by id.
--
-- Queue depths are a GROUP BY over the table either way; listings walk the primary key (UUIDv7,
-- so newest first) filtering by tenant.
DROP INDEX IF EXISTS jobs_depth;
DROP INDEX IF EXISTS jobs_listing;
DROP INDEX IF EXISTS jobs_leased;
CREATE INDEX jobs_lease_expiry ON jobs (tenant, queue, lease_expires_at)
    WHERE lease_expires_at IS NOT NULL;
