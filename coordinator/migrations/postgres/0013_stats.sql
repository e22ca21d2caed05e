-- Job statistics rolled up per minute from the ledger (`crate::stats`): what `GET /v1/stats`,
-- `GET /v1/failures` and `GET /v1/slo` read, without scanning events per request. One
-- coordinator at a time rolls a range of settled events up and moves `stats_cursor` (a
-- compare-and-set on it, so two replicas never count a range twice). `pickup_le_<ms>`: leases
-- granted within that many milliseconds of the job becoming due (cumulative). Rows older than
-- the stats window are swept.
CREATE TABLE job_stats (
    tenant            text        NOT NULL,
    queue             text        NOT NULL,
    minute            timestamptz NOT NULL,
    leased            bigint      NOT NULL DEFAULT 0,
    succeeded         bigint      NOT NULL DEFAULT 0,
    failed            bigint      NOT NULL DEFAULT 0,
    dead              bigint      NOT NULL DEFAULT 0,
    cancelled         bigint      NOT NULL DEFAULT 0,
    pickup_le_10     bigint      NOT NULL DEFAULT 0,
    pickup_le_50     bigint      NOT NULL DEFAULT 0,
    pickup_le_100    bigint      NOT NULL DEFAULT 0,
    pickup_le_250    bigint      NOT NULL DEFAULT 0,
    pickup_le_500    bigint      NOT NULL DEFAULT 0,
    pickup_le_1000   bigint      NOT NULL DEFAULT 0,
    pickup_le_2500   bigint      NOT NULL DEFAULT 0,
    pickup_le_5000   bigint      NOT NULL DEFAULT 0,
    pickup_le_10000  bigint      NOT NULL DEFAULT 0,
    pickup_le_30000  bigint      NOT NULL DEFAULT 0,
    pickup_le_60000  bigint      NOT NULL DEFAULT 0,
    pickup_le_300000 bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, minute, queue)
);

-- Failed attempts per minute by queue and class (`error.class`, or `lease_expired`).
CREATE TABLE failure_stats (
    tenant text        NOT NULL,
    queue  text        NOT NULL,
    class  text        NOT NULL,
    minute timestamptz NOT NULL,
    count  bigint      NOT NULL,
    PRIMARY KEY (tenant, minute, queue, class)
);

-- The last event rolled up. Starts at the ledger's end: history before the upgrade is not
-- counted.
CREATE TABLE stats_cursor (
    id            integer PRIMARY KEY CHECK (id = 1),
    last_event_id bigint  NOT NULL
);
INSERT INTO stats_cursor (id, last_event_id) SELECT 1, COALESCE(max(id), 0) FROM events;

-- Service-level objectives per queue (`*`: the tenant's default), `PUT /v1/slo/{queue}`.
CREATE TABLE slo_objectives (
    tenant        text             NOT NULL,
    queue         text             NOT NULL,
    success_ratio double precision NOT NULL,
    pickup_ms     bigint           NOT NULL,
    pickup_ratio  double precision NOT NULL,
    updated_at    timestamptz      NOT NULL,
    PRIMARY KEY (tenant, queue)
);
