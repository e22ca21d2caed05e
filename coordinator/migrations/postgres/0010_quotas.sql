-- Tenant quotas (docs/CONTRACT.md §2.12). A NULL limit is no limit. `max_queued` is checked by
-- every enqueue of the tenant, inside the enqueue's transaction, after locking this row (`FOR
-- UPDATE`): two replicas never both admit the job that takes the tenant past it. `max_leased` is
-- read where leases are granted. (0009 is flow control.)
CREATE TABLE quotas (
    tenant     text        PRIMARY KEY,
    max_queued bigint      CHECK (max_queued >= 0),
    max_leased bigint      CHECK (max_leased >= 0),
    updated_at timestamptz NOT NULL
);
