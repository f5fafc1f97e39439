-- Tombstones of deleted listings and the reports of index audits.

-- A deleted listing: a write of a row version at or below `version` must not bring it back
-- (a sync batch that read the row before it was deleted), and a delete never removes a point
-- written for a row newer than it. Pruned after TOMBSTONE_RETENTION_S.
CREATE TABLE index_tombstones (
    product_id  bigint PRIMARY KEY,
    version     bigint NOT NULL,                  -- when the delete was requested, in microseconds
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX index_tombstones_deleted_at ON index_tombstones (deleted_at);

-- "Which jobs touched listing 5?" (GET /listings/{id}) without scanning every batch.
CREATE INDEX index_job_batches_product_ids ON index_job_batches USING gin (product_ids);

-- One row per audit (PostgreSQL compared with the collection); the last ones are kept.
CREATE TABLE audit_reports (
    audit_id        text PRIMARY KEY,
    status          text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    repair          boolean NOT NULL DEFAULT false,
    requested_by    text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    duration_s      double precision,
    listings        bigint NOT NULL DEFAULT 0,     -- rows read from products
    points          bigint NOT NULL DEFAULT 0,     -- points read from the collection
    counts          jsonb NOT NULL DEFAULT '{}',   -- class -> number of listings
    samples         jsonb NOT NULL DEFAULT '{}',   -- class -> a few product ids
    repair_job_ids  text[] NOT NULL DEFAULT '{}',
    flags_corrected integer NOT NULL DEFAULT 0,
    error           text
);
CREATE INDEX audit_reports_started_at ON audit_reports (started_at DESC);
