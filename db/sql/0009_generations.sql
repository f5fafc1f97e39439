-- Generations of the collection: each is a Qdrant collection (or an edge shard directory) built
-- with one embedding model, vector size and text template; the served name (COLLECTION) is an
-- alias (edge: a pointer file) to the one whose status is 'serving'. PostgreSQL is the record of
-- which generations exist and which one serves; the alias follows it (docs/pipeline.md, Generations).
CREATE TABLE index_generations (
    name          text PRIMARY KEY,       -- the collection (server, local mode) or shard directory (edge)
    served_as     text NOT NULL,          -- the served name it is (or was, or will be) behind
    status        text NOT NULL CHECK (status IN ('building', 'serving', 'retired', 'dropped', 'failed')),
    model         text NOT NULL,          -- its CollectionIdentity
    dimensions    integer NOT NULL,
    template_hash text NOT NULL,
    embedding     jsonb NOT NULL,         -- the embedding settings that build its vectors (no secrets)
    job_id        text,                   -- the job that builds it (NULL: adopted or first generation)
    error         text,                   -- why a build failed
    created_at    timestamptz NOT NULL DEFAULT now(),
    switched_at   timestamptz,            -- when it last became the serving generation
    retired_at    timestamptz,            -- when another generation replaced it
    keep_until    timestamptz             -- retired: dropped by housekeeping after this
);
-- One serving and at most one building generation per served name: a second reindex is refused
-- by the database itself, whichever process starts it.
CREATE UNIQUE INDEX index_generations_one_serving ON index_generations (served_as) WHERE status = 'serving';
CREATE UNIQUE INDEX index_generations_one_building ON index_generations (served_as) WHERE status = 'building';
