-- Provenance on every job event: the digest of the inputs the job ran with and the version of
-- the worker that caused the event. Nullable without a default, so adding them rewrites nothing.
ALTER TABLE events ADD COLUMN inputs_hash text, ADD COLUMN worker_version text;
