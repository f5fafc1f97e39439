"""Response models of ``GET /status``: queues, listings, throughput, jobs in progress and failures.

The dashboard's script (``http/static/dashboard.js``) reads this document, so field names and
order are a contract. They are frozen dataclasses (serialised by Litestar as they are); the
figures are computed by :mod:`finally_indexer.http.status` and its helper modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from finally_indexer.schemas.api import JobCost, JobProgress

__all__ = [
    "GroupStats",
    "JobSummary",
    "ListingsFigures",
    "MinuteBucket",
    "QueueFigures",
    "RecentError",
    "StatusReport",
    "StreamStats",
    "Throughput",
]


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One consumer group of one stream."""

    group: str
    exists: bool
    lag: int
    lag_exact: bool
    pending: int
    oldest_pending_idle_seconds: float  # since the oldest pending entry was last delivered or claimed
    oldest_pending_age_seconds: float  # since it entered the stream: the real age of the work
    consumers: int
    consumers_alive: int


@dataclass(frozen=True, slots=True)
class StreamStats:
    """One stream and the group that consumes it."""

    name: str
    role: str
    length: int
    group: GroupStats


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """Everything about Redis: the legacy list, the two work streams, dead letters."""

    legacy_list: str
    legacy_list_length: int
    streams: list[StreamStats]
    dead_letter_stream: str
    dead_letter_length: int


@dataclass(frozen=True, slots=True)
class ListingsFigures:
    """Listings in the source table, how many are indexed, and how stale the oldest pending one is."""

    total: int
    indexed: int
    pending: int
    coverage: float
    freshness_seconds: float


@dataclass(frozen=True, slots=True)
class MinuteBucket:
    """What the indexer reported during one minute (start in ms since the epoch)."""

    minute_ms: int
    batches: int
    listings: int
    failed: int


@dataclass(frozen=True, slots=True)
class Throughput:
    """Listings per minute over the last completed minutes, and every minute of the window."""

    window_minutes: int
    listings_per_minute: float
    per_minute: list[MinuteBucket]


@dataclass(frozen=True, slots=True)
class JobSummary:
    """A job still in progress (or just finished), as listed on ``/status``."""

    job_id: str
    status: str
    operation: str
    scope: str
    source: str
    created_at: datetime
    finished_at: datetime | None
    progress: JobProgress
    cost: JobCost


@dataclass(frozen=True, slots=True)
class RecentError:
    """One of the latest ``failed_operations`` rows (message cut to 500 characters)."""

    id: int
    created_at: datetime
    operation_type: str
    product_id: int | None
    reason: str
    error_message: str


@dataclass(frozen=True, slots=True)
class EmbeddingBudget:
    """The rate budget every worker shares for the configured API key and model (from Redis).

    Limits are ``EMBEDDING_TPM`` / ``EMBEDDING_RPM`` or, unset, the ones the API's headers named
    (0 until the first answer). ``pace`` is the share of the limit granted now (below 1 after 429s).
    """

    tokens_per_minute_limit: int
    requests_per_minute_limit: int
    tokens_this_minute: int
    tokens_last_minute: int
    used_last_minute: float  # tokens last minute ÷ the limit (0 when no limit is known)
    pace: float


@dataclass(frozen=True, slots=True)
class ReindexFigures:
    """The generation being built (``reindex``), while one is: its job's progress and ETA."""

    generation: str
    serving: str | None
    job_id: str | None
    job_status: str  # the build job's: pending, running, completed (then being audited)
    done: int  # listings handled so far
    total: int  # listings the build covers (0 until planned)
    listings_per_second: float  # since the build started
    eta_seconds: float | None  # None until a rate is known
    started_at: datetime


@dataclass(frozen=True, slots=True)
class StatusReport:
    """``GET /status``."""

    generated_at: datetime
    listings: ListingsFigures
    queues: QueueFigures
    throughput: Throughput
    jobs: list[JobSummary]
    failures_total: int
    failures_open: int
    failures_last_hour: int
    recent_errors: list[RecentError]
    embedding_budget: EmbeddingBudget | None = None  # None with the offline embedder
    reindex: ReindexFigures | None = None  # None when no generation is being built
