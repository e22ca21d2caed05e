-- Workers as the coordinators last saw them (`GET /v1/workers`): who claimed, over which
-- transport, for which queues, when last seen and last heartbeating, and when its WebSocket
-- session last closed. Written at most every few seconds per worker and coordinator
-- (`crate::presence`); rows unseen for a day are swept.
CREATE TABLE workers (
    tenant            text        NOT NULL,
    worker_id         text        NOT NULL,
    transport         text        NOT NULL,
    queues            text        NOT NULL,
    version           text,
    first_seen_at     timestamptz NOT NULL,
    last_seen_at      timestamptz NOT NULL,
    last_heartbeat_at timestamptz,
    closed_at         timestamptz,
    PRIMARY KEY (tenant, worker_id)
);
