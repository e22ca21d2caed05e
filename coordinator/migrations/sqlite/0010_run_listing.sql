-- `GET /v1/runs` lists a tenant's runs newest first (ids are UUIDv7) with a cursor on the id.
CREATE INDEX runs_listing ON runs (tenant, id);
