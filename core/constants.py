"""Names of Redis keys, streams, groups, the collection and other fixed numbers.

Every name that two processes must agree on lives here, as data. Names that a deployment may
want to change (the legacy list, the stream prefix, the collection) are only *defaults*: the
settings class reads them from here and lets the environment override them.
"""

from __future__ import annotations

from typing import Final

# --- the legacy contract -------------------------------------------------------------------
#: The scraper LPUSHes JSON jobs here; we RPOP, so the list is consumed first-in first-out.
LEGACY_LIST: Final = "indexing_jobs"

# --- streams and groups ----------------------------------------------------------------------
#: The jobs stream shares a Redis Cluster hash slot with the legacy list (hash tag
#: ``{indexing_jobs}``; an untagged key hashes its whole name, so ``indexing_jobs`` and
#: ``{indexing_jobs}:jobs`` land in the same slot). The bridge's Lua script touches both keys.
JOBS_STREAM: Final = "{indexing_jobs}:jobs"
BATCH_STREAM: Final = "finally-indexer:batches"
EVENTS_STREAM: Final = "finally-indexer:events"
DEAD_LETTER_STREAM: Final = "finally-indexer:dead-letter"
PLANNER_GROUP: Final = "planner"
INDEXER_GROUP: Final = "indexer"

#: The events stream is a bounded log (XADD MAXLEN ~): enough for the dashboard and for a
#: downstream cache that falls behind by a few minutes at full speed (~200 events/s).
EVENTS_MAXLEN: Final = 100_000
#: Dead letters are kept until an operator replays them; the cap only stops a runaway producer
#: from filling Redis memory (every dead letter is also a row in ``failed_operations``).
DEAD_LETTER_MAXLEN: Final = 1_000_000

# --- the vector collection ---------------------------------------------------------------------
COLLECTION: Final = "bike_listings"
#: text-embedding-3-large's native size.
VECTOR_SIZE: Final = 3072
OPENAI_MODEL: Final = "text-embedding-3-large"
HASHING_MODEL: Final = "hashing-char-ngram-v1"
#: The edge store refuses a write (as an outage: transient) while its disk has less free space than
#: this. Qdrant Edge writes through memory-mapped sparse files: a page that finds no free block
#: kills the process with SIGBUS, which no handler can catch (bench/faults.py store-disk-full).
#: A batch of 64 listings at 3072 dimensions is under 1 MiB; a new WAL segment or vector chunk 32 MiB.
EDGE_MIN_FREE_BYTES: Final = 64 * 1024 * 1024

# --- OpenAI embeddings API limits (per request / per input) --------------------------------------
OPENAI_MAX_INPUTS_PER_REQUEST: Final = 2048
OPENAI_MAX_TOKENS_PER_REQUEST: Final = 300_000
OPENAI_MAX_TOKENS_PER_INPUT: Final = 8191
#: US dollars per 1M input tokens for text-embedding-3-large (published price list).
OPENAI_USD_PER_MILLION_TOKENS: Final = 0.13
#: The default of ``EMBEDDING_PRICES``: US dollars per 1M input tokens, per model (OpenAI's
#: published list); the offline embedder is free. A model missing from the table is counted at 0.
EMBEDDING_USD_PER_MILLION_TOKENS: Final = {
    "text-embedding-3-large": OPENAI_USD_PER_MILLION_TOKENS,
    "text-embedding-3-small": 0.02,
    "text-embedding-ada-002": 0.10,
    HASHING_MODEL: 0.0,
}

# --- the shared embedding rate budget (processor/embedders/budget.py) -----------------------------
#: One Redis hash per (API key hash, model): ``<prefix>:<sha256(key)[:16]>:<model>``. Every worker
#: process spending the same key on the same model takes from it.
EMBEDDING_BUDGET_PREFIX: Final = "finally-indexer:embedding-budget"
#: The hash expires after an hour without requests (learned limits are learned again).
EMBEDDING_BUDGET_TTL_MS: Final = 3_600_000
#: After a 429 every worker's pace is multiplied by this (down to the floor below) ...
EMBEDDING_BUDGET_DECREASE: Final = 0.9
EMBEDDING_BUDGET_FLOOR: Final = 0.5
#: ... and each request answered without a 429 gives this much of the limit back (up to 1).
EMBEDDING_BUDGET_RECOVER: Final = 0.01
#: Before any limit is known, one request (the probe) goes at a time; the others ask again after
#: this many ms, and a probe never answered stops blocking after the timeout.
EMBEDDING_PROBE_WAIT_MS: Final = 50
EMBEDDING_PROBE_TIMEOUT_MS: Final = 30_000
#: Pause held for every worker after a 429 that names no retry time (seconds).
EMBEDDING_DEFAULT_HOLD_S: Final = 1.0

# --- batching and redelivery defaults ------------------------------------------------------------
#: Listings per batch message: small enough that a redelivered batch costs little, large enough
#: that one PostgreSQL read and one Qdrant write serve many listings.
DEFAULT_BATCH_SIZE: Final = 64
#: A pending entry idle this long is presumed orphaned by a dead worker and reclaimed.
DEFAULT_RECLAIM_IDLE_MS: Final = 60_000
#: Deliveries after which an entry is dead-lettered instead of processed again.
DEFAULT_MAX_DELIVERIES: Final = 5
#: A legacy job naming more ids than this is rejected as malformed (use "all" instead).
MAX_IDS_PER_JOB: Final = 100_000
