-- Provenance on every job event: the digest of the inputs the job ran with and the version of
-- the worker that caused the event.
ALTER TABLE events ADD COLUMN inputs_hash TEXT;
ALTER TABLE events ADD COLUMN worker_version TEXT;
