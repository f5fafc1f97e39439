"""Every Prometheus metric the service exports, defined once. Units in names, ``_total`` on counters.

Counters and histograms are updated where things happen (bridge, planner, indexer, embedders,
vector stores). Gauges about queues are *projections*: :mod:`finally_indexer.http.metrics`
fills them from Redis and PostgreSQL when ``/metrics`` is scraped, so every process that serves
``/metrics`` reports the same queue figures and each worker reports its own counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
NS = "finally_indexer"

# --- flow counters -------------------------------------------------------------------------------
JOBS_BRIDGED = Counter(
    "jobs_bridged_total",
    "Legacy jobs moved from the list to the jobs stream.",
    namespace=NS,
    registry=REGISTRY,
)
JOBS_ACCEPTED = Counter(
    "jobs_accepted_total",
    "Jobs validated and planned.",
    ["source", "operation"],
    namespace=NS,
    registry=REGISTRY,
)
JOBS_MALFORMED = Counter(
    "jobs_malformed_total",
    "Jobs rejected as malformed, by reason.",
    ["reason"],
    namespace=NS,
    registry=REGISTRY,
)
BATCHES_PLANNED = Counter(
    "batches_planned_total", "Batch messages written by the planner.", namespace=NS, registry=REGISTRY
)
LISTINGS = Counter(
    "listings_total",
    "Listings processed by outcome (indexed, updated, deleted, skipped, failed).",
    ["outcome"],
    namespace=NS,
    registry=REGISTRY,
)
FAILURES = Counter(
    "failures_total", "Failed operations, by reason.", ["reason"], namespace=NS, registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "dead_letters_total",
    "Entries moved to the dead-letter stream.",
    ["stream"],
    namespace=NS,
    registry=REGISTRY,
)
REDELIVERIES = Counter(
    "redeliveries_total",
    "Pending entries reclaimed from a dead or slow consumer.",
    ["stream"],
    namespace=NS,
    registry=REGISTRY,
)
CONFIGURATION_ERRORS = Counter(
    "configuration_errors_total",
    "Deliveries that failed because the service is misconfigured (e.g. a revoked API key); "
    "their entries stay pending, never dead-lettered, until it is fixed.",
    ["stream"],
    namespace=NS,
    registry=REGISTRY,
)

# --- embeddings ------------------------------------------------------------------------------------
EMBED_REQUESTS = Counter(
    "embedding_requests_total",
    "Embedding requests by status (ok, rate_limited, error, rejected).",
    ["status"],
    namespace=NS,
    registry=REGISTRY,
)
EMBED_SECONDS = Histogram(
    "embedding_request_duration_seconds",
    "Latency of one embedding request.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
    namespace=NS,
    registry=REGISTRY,
)
EMBED_TOKENS = Counter(
    "embedding_tokens_total",
    "Tokens sent to the embedding model.",
    ["model"],
    namespace=NS,
    registry=REGISTRY,
)
EMBED_COST = Counter(
    "embedding_cost_usd_total",
    "Estimated embedding spend in US dollars.",
    ["model"],
    namespace=NS,
    registry=REGISTRY,
)
ACCOUNTED_TOKENS = Counter(
    "job_embedding_tokens_total",
    "Embedding tokens accounted to jobs (each batch once, when it completes; a delivery that failed "
    "before its batch completed is billed in embedding_tokens_total but not here).",
    ["model"],
    namespace=NS,
    registry=REGISTRY,
)
ACCOUNTED_REQUESTS = Counter(
    "job_embedding_requests_total",
    "Embedding requests accounted to jobs (what each batch's texts need within the model's limits).",
    ["model"],
    namespace=NS,
    registry=REGISTRY,
)
ACCOUNTED_COST = Counter(
    "job_embedding_cost_usd_total",
    "Estimated US dollars accounted to jobs, at the prices in EMBEDDING_PRICES.",
    ["model"],
    namespace=NS,
    registry=REGISTRY,
)

EMBED_BUDGET_LIMIT = Gauge(
    "embedding_budget_limit_per_minute",
    "The shared embedding rate budget's limit (kind: tokens, requests per minute); 0 = not known yet.",
    ["kind"],
    namespace=NS,
    registry=REGISTRY,
)
EMBED_BUDGET_RESERVED = Counter(
    "embedding_budget_used_total",
    "Budget this process spent (kind: tokens the API billed; requests sent). "
    "sum(rate(...[1m])) * 60 over every worker is the budget used per minute.",
    ["kind"],
    namespace=NS,
    registry=REGISTRY,
)
EMBED_BUDGET_PACE = Gauge(
    "embedding_budget_pace_ratio",
    "Share of the limit the shared budget currently grants: 1, lowered by each 429, then recovering.",
    namespace=NS,
    registry=REGISTRY,
)
EMBED_BUDGET_WAIT_SECONDS = Counter(
    "embedding_budget_wait_seconds_total",
    "Seconds this process's requests waited for the shared budget.",
    namespace=NS,
    registry=REGISTRY,
)
EMBED_IN_FLIGHT = Gauge(
    "embedding_requests_in_flight",
    "Embedding requests this process has in flight.",
    namespace=NS,
    registry=REGISTRY,
)
EMBED_CONCURRENCY = Gauge(
    "embedding_concurrency_limit",
    "The adaptive limiter's current limit on this process's requests in flight.",
    namespace=NS,
    registry=REGISTRY,
)
EMBED_PACKED_INPUTS = Histogram(
    "embedding_request_inputs",
    "Inputs per embedding request (packed across the batches a worker holds).",
    buckets=(1, 8, 32, 64, 128, 256, 512, 1024, 2048),
    namespace=NS,
    registry=REGISTRY,
)

# --- vector store and end to end -------------------------------------------------------------------
STORE_WRITE_SECONDS = Histogram(
    "vector_store_write_duration_seconds",
    "Latency of one vector-store write (upsert or delete of a batch).",
    ["op"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
    namespace=NS,
    registry=REGISTRY,
)
END_TO_END_SECONDS = Histogram(
    "end_to_end_latency_seconds",
    "From the job entering the system (bridge or API) to the listing being searchable.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
    namespace=NS,
    registry=REGISTRY,
)

# --- projections, refreshed at scrape time ----------------------------------------------------------
LEGACY_LIST_LENGTH = Gauge(
    "legacy_list_length", "Jobs waiting in the legacy list.", namespace=NS, registry=REGISTRY
)
STREAM_LENGTH = Gauge("stream_length", "Entries in a stream.", ["stream"], namespace=NS, registry=REGISTRY)
GROUP_LAG = Gauge(
    "consumer_group_lag",
    "Entries not yet delivered to a consumer group.",
    ["stream", "group"],
    namespace=NS,
    registry=REGISTRY,
)
GROUP_PENDING = Gauge(
    "consumer_group_pending",
    "Entries delivered but not acknowledged.",
    ["stream", "group"],
    namespace=NS,
    registry=REGISTRY,
)
OLDEST_PENDING_AGE = Gauge(
    "oldest_pending_age_seconds",
    "Age of the oldest pending entry: since it entered the stream (heartbeats and claims do not reset it).",
    ["stream", "group"],
    namespace=NS,
    registry=REGISTRY,
)
CONSUMERS_ALIVE = Gauge(
    "consumers_alive",
    "Consumers of a group seen active recently.",
    ["stream", "group"],
    namespace=NS,
    registry=REGISTRY,
)
LISTINGS_TOTAL = Gauge("listings_in_source", "Listings in PostgreSQL.", namespace=NS, registry=REGISTRY)
LISTINGS_INDEXED = Gauge(
    "listings_indexed",
    "Listings whose current content is in the collection (is_conversion).",
    namespace=NS,
    registry=REGISTRY,
)
INDEX_COVERAGE = Gauge(
    "index_coverage_ratio",
    "Indexed listings divided by listings that should be indexed.",
    namespace=NS,
    registry=REGISTRY,
)
FRESHNESS = Gauge(
    "index_freshness_seconds",
    "Age of the oldest listing waiting to be indexed (0 when none).",
    namespace=NS,
    registry=REGISTRY,
)
FAILURES_OPEN = Gauge(
    "failed_operations_open", "Unresolved rows in failed_operations.", namespace=NS, registry=REGISTRY
)

BACKOFF_SECONDS = Gauge(
    "consumer_backoff_seconds",
    "Pause of this process's consumption of a stream after deliveries failed on a dependency (0: none).",
    ["stream"],
    namespace=NS,
    registry=REGISTRY,
)

BREAKER_STATE = Gauge(
    "dependency_breaker_state",
    "This worker's breaker of a dependency: 0 closed, 1 half-open (probing), 2 open (its work waits).",
    ["dependency"],
    namespace=NS,
    registry=REGISTRY,
)

EVENT_OUTBOX_ROWS = Gauge(
    "event_outbox_rows",
    "Committed events not yet relayed to the events stream (normally 0; grows while Redis refuses them).",
    namespace=NS,
    registry=REGISTRY,
)

# --- the audit (projections of the latest completed report in PostgreSQL) ---------------------------
AUDIT_LISTINGS = Gauge(
    "audit_listings",
    "Listings per verdict (ok, missing, stale, ghost, wrong_flag, wrong_model) in the latest completed audit.",
    ["verdict"],
    namespace=NS,
    registry=REGISTRY,
)
AUDIT_LAST_COMPLETED = Gauge(
    "audit_last_completed_timestamp_seconds",
    "When the latest audit completed (Unix time; 0 before the first).",
    namespace=NS,
    registry=REGISTRY,
)
AUDIT_DRIFT_STREAK = Gauge(
    "audit_drift_streak",
    "Consecutive completed audits, newest first, that found drift (any verdict but ok).",
    namespace=NS,
    registry=REGISTRY,
)

# --- generations (reindex) ---
REINDEX_TOTAL = Gauge(
    "reindex_listings_covered",
    "Listings the running reindex covers (0 when no generation is being built).",
    namespace=NS,
    registry=REGISTRY,
)
REINDEX_DONE = Gauge(
    "reindex_listings_done",
    "Listings the running reindex has handled so far (0 when no generation is being built).",
    namespace=NS,
    registry=REGISTRY,
)
GENERATION_SWITCHES = Counter(
    "generation_switches",
    "Times this process pointed the served name at another generation (a reindex or a rollback).",
    namespace=NS,
    registry=REGISTRY,
)
