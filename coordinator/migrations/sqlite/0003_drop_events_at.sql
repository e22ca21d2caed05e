-- No query reads events by `at`: every reader walks `id` (feeds, cursors, settled reads) or
-- `(job_id, id)` / `(run_id, id)`. The index cost an entry per event, two per job on the hot
-- path (bench/README.md, "Session-5 findings"). A retention job, when there is one, can cut by
-- id: ids grow with time, so a binary search over the primary key finds the cut-off.
DROP INDEX IF EXISTS events_at;
