-- Cost accounting per job: what the embedding calls of its batches used and cost. Each batch adds
-- its usage in the transaction that moves its row out of 'pending', so a redelivered batch is
-- counted once (the same guarantee as the progress counts).
ALTER TABLE index_jobs
    ADD COLUMN embedding_tokens   bigint  NOT NULL DEFAULT 0,  -- tokens the provider billed
    ADD COLUMN embedding_requests bigint  NOT NULL DEFAULT 0,  -- embedding requests the batches needed
    ADD COLUMN cost_usd           numeric NOT NULL DEFAULT 0,  -- at the price of the model when counted
    ADD COLUMN embedding_model    text;                        -- the model that embedded (NULL: nothing was)
