-- The service's own tables. The scraper's `products` table is NOT created here (see products_dev.sql).

-- One row per job (a legacy LPUSH job, an API /sync request or a retry).
CREATE TABLE index_jobs (
    job_id          text PRIMARY KEY,
    operation       text NOT NULL CHECK (operation IN ('sync', 'update', 'delete')),
    scope           text NOT NULL CHECK (scope IN ('all', 'ids', 'changed')),
    product_ids     bigint[],                       -- NULL when scope is 'all' or 'changed'
    force           boolean NOT NULL DEFAULT false, -- re-embed even when unchanged
    source          text NOT NULL,                  -- 'legacy' | 'api' | 'retry'
    requested_by    text,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    total           integer NOT NULL DEFAULT 0,     -- listings the job covers once planned
    batches         integer NOT NULL DEFAULT 0,
    stream_entry_id text,                           -- id of the entry in the jobs stream
    external_id     text,                           -- the producer's job_id of a legacy job (may repeat)
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    planned_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX index_jobs_created_at ON index_jobs (created_at DESC);
CREATE INDEX index_jobs_open ON index_jobs (status) WHERE status IN ('pending', 'running');
CREATE INDEX index_jobs_external_id ON index_jobs (external_id) WHERE external_id IS NOT NULL;

-- The batches a job was planned into. Progress is the sum over a job's batches; a batch message
-- delivered twice is counted once because its row moves from 'pending' only once.
CREATE TABLE index_job_batches (
    job_id       text NOT NULL REFERENCES index_jobs (job_id) ON DELETE CASCADE,
    seq          integer NOT NULL,
    operation    text NOT NULL CHECK (operation IN ('sync', 'update', 'delete')),
    product_ids  bigint[] NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    indexed      integer NOT NULL DEFAULT 0,  -- embedded and written
    skipped      integer NOT NULL DEFAULT 0,  -- unchanged, no embedding call
    deleted      integer NOT NULL DEFAULT 0,  -- removed from the collection
    failed       integer NOT NULL DEFAULT 0,
    deliveries   integer NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

-- What the collection holds for each listing, as far as this service wrote it.
CREATE TABLE index_state (
    product_id        bigint PRIMARY KEY,
    text_hash         text NOT NULL,         -- sha256 of the embedded text
    source_updated_at timestamptz NOT NULL,  -- products.updated_at of the row that was embedded
    version           bigint NOT NULL,       -- the same instant in microseconds (Qdrant payload)
    model             text NOT NULL,
    indexed_at        timestamptz NOT NULL DEFAULT now()
);

-- Everything that failed, kept for operators to understand and replay. Append-only history:
-- a retry increments retry_count on the rows it re-queued; a later success resolves them.
CREATE TABLE failed_operations (
    id              bigserial PRIMARY KEY,
    operation_type  text NOT NULL,             -- sync | update | delete | job (malformed job)
    product_id      bigint,                    -- NULL for a malformed job
    job_id          text,
    reason          text NOT NULL,             -- short code: a MalformedReason or an error class
    error_class     text NOT NULL,
    error_message   text NOT NULL,
    payload         bytea,                     -- the raw job as received (may not be UTF-8)
    stream          text,                      -- where the failed entry came from
    entry_id        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz NOT NULL DEFAULT now(),
    retry_count     integer NOT NULL DEFAULT 0,
    requeued_at     timestamptz,
    resolved_at     timestamptz,
    resolution      text CHECK (resolution IN ('succeeded', 'discarded', 'requeued'))
);
CREATE INDEX failed_operations_open ON failed_operations (created_at DESC) WHERE resolved_at IS NULL;
CREATE INDEX failed_operations_reason ON failed_operations (reason, created_at DESC);
CREATE INDEX failed_operations_product ON failed_operations (product_id) WHERE product_id IS NOT NULL;
