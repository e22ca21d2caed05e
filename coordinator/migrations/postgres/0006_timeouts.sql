-- Execution timeouts (docs/CONTRACT.md §2.3). `timeout_ms` is the job's own longest run per
-- attempt; a queue's `default_timeout_ms` applies to jobs without one, decided when an attempt
-- is claimed. `deadline_at` is the latest attempt's run-time deadline: the lease is never
-- extended past it (so a lease that reaches it has `lease_expires_at = deadline_at`, found by
-- the claim path through `jobs_lease_expiry` like any expired lease), and outcomes are refused
-- from then on.
ALTER TABLE jobs ADD COLUMN timeout_ms bigint;
ALTER TABLE jobs ADD COLUMN deadline_at timestamptz;
ALTER TABLE queues ADD COLUMN default_timeout_ms bigint;
