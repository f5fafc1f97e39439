-- Bounded cost at a million rows (issue 9 item 7): counters kept by triggers, the indexes the
-- summaries and the retention pruning read, so /status, /metrics and /failures never scan
-- failed_operations whole.

-- Rows of failed_operations per (reason, operation_type), and how many of them are open.
-- Kept by the statement triggers below, in the writer's transaction: they are exact.
CREATE TABLE failure_tallies (
    reason          text NOT NULL,
    operation_type  text NOT NULL,
    total           bigint NOT NULL DEFAULT 0,
    open            bigint NOT NULL DEFAULT 0,   -- resolved_at IS NULL
    PRIMARY KEY (reason, operation_type)
);

-- One statement, one upsert per (reason, operation_type) touched, taken in key order so two
-- writers lock the counter rows in the same order (no deadlock between them). A transition
-- table exists only for the events that have it, hence the source chosen per event.
CREATE FUNCTION failure_tallies_count() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    added   text := 'SELECT reason, operation_type, 1 AS n, (resolved_at IS NULL)::int AS o FROM new_rows';
    removed text := 'SELECT reason, operation_type, -1 AS n, -(resolved_at IS NULL)::int AS o FROM old_rows';
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM failure_tallies;
        RETURN NULL;
    END IF;
    EXECUTE format(
        $q$
        INSERT INTO failure_tallies AS t (reason, operation_type, total, open)
        SELECT reason, operation_type, sum(n), sum(o) FROM (%s) AS d
        GROUP BY reason, operation_type
        HAVING sum(n) <> 0 OR sum(o) <> 0
        ORDER BY reason, operation_type
        ON CONFLICT (reason, operation_type)
        DO UPDATE SET total = t.total + EXCLUDED.total, open = t.open + EXCLUDED.open
        $q$,
        CASE TG_OP WHEN 'INSERT' THEN added WHEN 'DELETE' THEN removed
                   ELSE added || ' UNION ALL ' || removed END
    );
    RETURN NULL;
END
$fn$;

CREATE TRIGGER failure_tallies_insert AFTER INSERT ON failed_operations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION failure_tallies_count();
CREATE TRIGGER failure_tallies_update AFTER UPDATE ON failed_operations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION failure_tallies_count();
CREATE TRIGGER failure_tallies_delete AFTER DELETE ON failed_operations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION failure_tallies_count();
CREATE TRIGGER failure_tallies_truncate AFTER TRUNCATE ON failed_operations
    FOR EACH STATEMENT EXECUTE FUNCTION failure_tallies_count();

-- The rows already there (the triggers exist now and hold the table against writers until commit).
INSERT INTO failure_tallies (reason, operation_type, total, open)
SELECT reason, operation_type, count(*), count(*) FILTER (WHERE resolved_at IS NULL)
FROM failed_operations GROUP BY reason, operation_type;

-- /failures: the latest message of a reason is one index step away.
CREATE INDEX failed_operations_reason_id ON failed_operations (reason, id);
-- /status, /metrics: failures of the last hour read from the index, not the table.
CREATE INDEX failed_operations_created_at ON failed_operations (created_at);
-- Retention: resolved failures and finished jobs, oldest first.
CREATE INDEX failed_operations_resolved ON failed_operations (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX index_jobs_finished ON index_jobs (finished_at) WHERE status IN ('completed', 'failed');
