-- "Is this stream entry dead-lettered already?" A redelivery after a crash between the dead
-- letter and the ack must not record it twice; the check runs on every dead letter.
CREATE INDEX failed_operations_entry ON failed_operations (stream, entry_id) WHERE entry_id IS NOT NULL;
