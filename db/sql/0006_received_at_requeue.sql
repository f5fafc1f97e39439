-- When a job entered the system (the bridge's or the API's clock), kept with the job: it is the
-- version of a delete, so a retry or a recovery that re-publishes the job hours later still
-- removes only listings not re-created since the delete was received.
ALTER TABLE index_jobs ADD COLUMN received_at timestamptz;
UPDATE index_jobs SET received_at = created_at;  -- the best known bound for older rows (finished jobs are pruned)
ALTER TABLE index_jobs
    ALTER COLUMN received_at SET DEFAULT now(),
    ALTER COLUMN received_at SET NOT NULL;

-- POST /retry commits its marks first, then appends: a job row (or a re-queued raw payload)
-- without its entry yet is finished by the next /retry or a worker's housekeeping.
CREATE INDEX index_jobs_unqueued ON index_jobs (created_at)
    WHERE status = 'pending' AND stream_entry_id IS NULL AND source = 'retry';
-- The jobs-stream entry a re-queued raw payload was appended as; NULL while it waits to be appended.
ALTER TABLE failed_operations ADD COLUMN replay_entry_id text;
UPDATE failed_operations SET replay_entry_id = '' WHERE operation_type = 'job' AND resolution = 'requeued';
CREATE INDEX failed_operations_unreplayed ON failed_operations (id)
    WHERE operation_type = 'job' AND resolution = 'requeued' AND replay_entry_id IS NULL;
