-- Tenant quotas (docs/CONTRACT.md §2.12). A NULL limit is no limit. `max_queued` is checked by
-- every enqueue of the tenant inside the enqueue's write transaction (the single writer makes the
-- check and the insert one step). `max_leased` is read where leases are granted; `updated_at` is
-- in microseconds. (0008 is flow control.)
CREATE TABLE quotas (
    tenant     TEXT    PRIMARY KEY,
    max_queued INTEGER CHECK (max_queued >= 0),
    max_leased INTEGER CHECK (max_leased >= 0),
    updated_at INTEGER NOT NULL
) STRICT;
