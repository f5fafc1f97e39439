"""Request and response models of the HTTP control API (v1). Examples feed the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from finally_indexer.core.constants import MAX_IDS_PER_JOB
from finally_indexer.schemas.jobs import Ids, IdsOrAll, Job, JobSource, Operation, check_shape

JobState = Literal["pending", "running", "completed", "failed"]


class SyncRequest(BaseModel):
    """``POST /sync``: queue a synchronisation of every listing or of the listed ids.

    ``scope`` applies to ``product_ids: "all"``: ``changed`` (default) reads only listings that are
    not indexed or changed since they were indexed; ``all`` scans every listing (unchanged ones are
    still skipped unless ``force``). ``force`` re-embeds even unchanged listings.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"product_ids": "all", "scope": "changed"},
                {"product_ids": [101, 102, 103], "operation": "update", "force": True},
                {"product_ids": "all", "scope": "all", "force": True, "dry_run": True},
            ]
        },
    )

    product_ids: IdsOrAll = Field(
        default="all", description='"all" or a list of product ids (at most 100,000).'
    )
    scope: Literal["all", "changed"] = Field(
        default="changed", description='For "all": which listings to scan.'
    )
    force: bool = Field(default=False, description="Re-embed even listings whose text did not change.")
    operation: Operation = Field(
        default=Operation.SYNC, description="sync | update | delete (delete needs a list of ids)."
    )
    requested_by: str | None = Field(
        default=None, max_length=200, description="Free text shown in job listings."
    )
    dry_run: bool = Field(
        default=False,
        description="Queue nothing: answer 200 with what the job would embed, skip and delete, its tokens,"
        " requests, US dollars and expected duration.",
    )

    @model_validator(mode="after")
    def _fits(self) -> SyncRequest:
        """The rules every job follows (:func:`~finally_indexer.schemas.jobs.check_shape`)."""
        check_shape(self.operation, is_all=self.product_ids == "all", scope=self.job_scope)
        return self

    @property
    def job_scope(self) -> str | None:
        """``scope`` when it applies (``"all"``); None for a list of ids (the job's scope is then "ids")."""
        return self.scope if self.product_ids == "all" else None

    def to_job(self) -> Job:
        """The job this request queues, with a new ``api-…`` id."""
        return Job.build(
            source=JobSource.API, operation=self.operation, product_ids=self.product_ids,
            scope=self.job_scope, force=self.force, requested_by=self.requested_by,
        )  # fmt: skip


class SyncAccepted(BaseModel):
    """``202`` answer of ``POST /sync``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "api-4f1c0e8a9b2d4c6e8f0a1b2c3d4e5f60",
                    "status": "pending",
                    "links": {"self": "/jobs/api-4f1c0e8a9b2d4c6e8f0a1b2c3d4e5f60", "status": "/status"},
                }
            ]
        }
    )

    job_id: str
    status: JobState = "pending"
    links: dict[str, str] = Field(description="self: this job; status: the service status.")


class ReindexRequest(BaseModel):
    """``POST /reindex``: build a new generation of the collection with the API process's embedding
    settings, then switch the served name to it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"dry_run": True}]})

    requested_by: str | None = Field(
        default=None, max_length=200, description="Free text shown in job listings."
    )
    dry_run: bool = Field(
        default=False, description="Queue nothing: answer 200 with the estimate of the build instead."
    )


class ReindexAccepted(BaseModel):
    """``202`` answer of ``POST /reindex``."""

    job_id: str = Field(description="The job that builds the generation (follow it at /jobs/{id}).")
    generation: str = Field(description="The collection being built.")
    serving: str = Field(description="The collection served until the switch.")
    status: Literal["building"] = "building"
    links: dict[str, str]


class SyncEstimate(BaseModel):
    """``200`` answer of ``POST /sync`` with ``dry_run``: what the job would do; nothing was queued."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dry_run": True, "listings": 30000, "embed": 30000, "skip": 0, "delete": 0, "fail": 0,
                    "tokens": 9641000, "requests": 469, "usd": 1.25333, "model": "text-embedding-3-large",
                    "usd_per_million_tokens": 0.13, "duration_s": 578.5, "tokens_per_minute": 1000000,
                    "requests_per_minute": 0,
                }
            ]
        }
    )  # fmt: skip

    dry_run: Literal[True] = True
    listings: int = Field(description="Listings the job would cover.")
    embed: int = Field(description="Listings it would embed (new, changed, or forced).")
    skip: int = Field(description="Listings unchanged since they were indexed (no embedding).")
    delete: int = Field(description="Listings it would remove from the collection (rows gone, or a delete).")
    fail: int = Field(description="Listings it would fail (a row without updated_at).")
    tokens: int = Field(
        description="Tokens of the texts to embed, as the model counts them (cl100k for OpenAI, after"
        " truncation; characters for the offline embedder, which bills nothing)."
    )
    requests: int = Field(description="Embedding requests the batches need.")
    usd: float = Field(description="Estimated US dollars at the model's price in EMBEDDING_PRICES.")
    model: str
    usd_per_million_tokens: float
    duration_s: float | None = Field(
        description="Seconds at the rate budget (the slower of tokens and requests per minute); null when"
        " the budget is not known."
    )
    tokens_per_minute: int = Field(description="The budget the duration assumes (0: unknown).")
    requests_per_minute: int


class JobProgress(BaseModel):
    """Counts summed over a job's batches."""

    total: int = Field(description="Listings the job covers once planned (0 before).")
    done: int = Field(description="Listings embedded and written (new or updated).")
    skipped: int = Field(description="Listings unchanged, no embedding needed.")
    deleted: int
    failed: int
    batches: int
    batches_done: int
    percent: float = Field(description="Share of the planned listings handled, 0-100.")


class JobCost(BaseModel):
    """What a job's embedding calls used so far (each batch counted once, when it completes)."""

    tokens: int = Field(description="Tokens the embedding provider billed (0 for the offline embedder).")
    requests: int = Field(description="Embedding requests the job's batches needed.")
    usd: float = Field(description="Estimated US dollars, at the model's price in EMBEDDING_PRICES.")
    model: str | None = Field(description="The model that embedded (null while nothing was embedded).")


class JobView(BaseModel):
    """``GET /jobs/{job_id}``."""

    job_id: str
    status: JobState
    operation: str
    scope: str
    source: str
    force: bool
    requested_by: str | None
    product_ids: list[int] | None
    error: str | None
    progress: JobProgress
    cost: JobCost
    created_at: datetime
    planned_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class RetryRequest(BaseModel):
    """``POST /retry``: which open failures to re-queue. Filters combine with AND.

    Give ``all: true`` to re-queue every open failure, or at least one filter.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"all": True},
                {"reason": "max_deliveries", "since": "2025-01-01T00:00:00Z"},
                {"ids": [12, 13]},
                {"operation_type": "job"},
            ]
        },
    )

    all: bool = Field(default=False, description="Select every open failure (other filters still apply).")
    ids: Ids | None = Field(default=None, max_length=10_000, description="failed_operations ids.")
    product_ids: Ids | None = Field(default=None, max_length=MAX_IDS_PER_JOB)
    operation_type: Literal["sync", "update", "delete", "job"] | None = None
    reason: str | None = Field(default=None, max_length=200)
    since: datetime | None = Field(default=None, description="Failures created at or after this instant.")
    until: datetime | None = Field(default=None, description="Failures created before this instant.")
    limit: int = Field(default=10_000, ge=1, le=100_000, description="At most this many rows are re-queued.")

    @model_validator(mode="after")
    def _some_filter(self) -> RetryRequest:
        filters = (self.ids, self.product_ids, self.operation_type, self.reason, self.since, self.until)
        if not self.all and all(f is None for f in filters):
            raise ValueError(
                'give "all": true or at least one filter (ids, product_ids, operation_type, reason, since, until)'
            )
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class RetryResult(BaseModel):
    """Answer of ``POST /retry``."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"requeued": 3, "job_ids": ["retry-9a8b7c"], "replayed_payloads": 1}]}
    )

    requeued: int = Field(description="failed_operations rows re-queued.")
    job_ids: list[str] = Field(description="Jobs created for the listings (follow them at /jobs/{id}).")
    replayed_payloads: int = Field(description="Malformed raw jobs put back on the jobs stream as they were.")
    discarded: int = Field(
        0,
        description="Rows that cannot be replayed (an unreadable batch entry: no listing, no job)"
        " marked resolution 'discarded' so they never block a later retry.",
    )


class FailureView(BaseModel):
    """One row of ``failed_operations``."""

    id: int
    operation_type: str
    product_id: int | None
    job_id: str | None
    reason: str
    error_class: str
    error_message: str
    payload: str | None = Field(
        description="The raw job (its first 4 KiB): UTF-8 text when decodable, else base64."
    )
    payload_encoding: Literal["utf-8", "base64"] | None
    payload_bytes: int | None = Field(default=None, description="Size of the whole raw job.")
    payload_truncated: bool = Field(default=False, description="True when `payload` shows only the start.")
    stream: str | None
    entry_id: str | None
    created_at: datetime
    last_attempt_at: datetime
    retry_count: int
    requeued_at: datetime | None
    resolved_at: datetime | None
    resolution: str | None


class ReasonSummary(BaseModel):
    """Failures grouped by reason (failure cause analysis)."""

    reason: str
    count: int
    open: int
    operation_types: list[str]
    first_at: datetime
    last_at: datetime
    example: str = Field(description="The latest error message of this reason.")


class FailurePage(BaseModel):
    """``GET /failures``: one page, newest first, and the grouped summary of all matching rows."""

    items: list[FailureView]
    next_before_id: int | None = Field(description="Pass as before_id to get the next page; null at the end.")
    total: int = Field(description="Rows matching the filters.")
    by_reason: list[ReasonSummary]


class CheckResult(BaseModel):
    """One dependency check."""

    ok: bool
    latency_ms: float
    error: str | None = None


class HealthReport(BaseModel):
    """``GET /health``: 200 when every dependency answers and the work streams are consumed.

    503 ``degraded`` names the dependencies that do not answer (``down``) and, one sentence each,
    the work streams whose consumer group is missing (``stopped``: nothing consumes them) and the
    dependency breakers workers hold open (``breakers``: their work waits for the dependency).
    """

    status: Literal["ok", "degraded"]
    down: list[str]
    checks: dict[str, CheckResult]
    stopped: list[str] = []
    breakers: list[str] = []


class ErrorBody(BaseModel):
    """Every error answer: a short code, a human sentence, and details when useful."""

    status_code: int
    error: str
    detail: str
    extra: Any = None


class AuditRequest(BaseModel):
    """``POST /audit``: compare PostgreSQL with the collection; ``repair`` queues the fixes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"repair": True}]})

    repair: bool = Field(
        default=False,
        description="Queue sync jobs for missing, stale and wrong-model listings, delete jobs for ghosts, "
        "and correct wrong flags.",
    )


class AuditAccepted(BaseModel):
    """``202`` answer of ``POST /audit``."""

    audit_id: str
    status: Literal["running"] = "running"
    links: dict[str, str] = Field(description="self: this audit's report.")


class AuditReport(BaseModel):
    """One audit: listings per verdict, a few ids of each, and what the repair queued."""

    audit_id: str
    status: Literal["running", "completed", "failed"]
    repair: bool
    requested_by: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    listings: int = Field(description="Rows read from products.")
    points: int = Field(description="Points read from the collection.")
    counts: dict[str, int] = Field(
        description="Verdict → listings: ok, missing, stale, ghost, wrong_flag, wrong_model."
    )
    drift: int = Field(description="Listings whose verdict is not ok.")
    in_flight: int = Field(
        default=0,
        description=(
            "Of the drift (counted in counts too): listings whose row, or the row their point was written "
            "from, is newer than in_flight_after — edited while the audit ran, their sync presumably on its way."
        ),
    )
    in_flight_after: datetime | None = Field(
        default=None,
        description=(
            "The watermark: the newest products.updated_at when the audit started (an audit of a building "
            "generation: when its previous audit started). Null for an empty table or an older report."
        ),
    )
    samples: dict[str, list[int]] = Field(description="Verdict → a few product ids (see GET /listings/{id}).")
    repair_job_ids: list[str] = Field(description="Jobs the repair queued (follow them at /jobs/{id}).")
    flags_corrected: int
    error: str | None


class ListingInSource(BaseModel):
    """The listing as PostgreSQL has it."""

    row: dict[str, Any] = Field(description="The listing's columns.")
    version: int | None = Field(description="updated_at in microseconds (the write version).")
    text_hash: str | None = Field(description="sha256 of the text it embeds to now.")
    is_conversion: bool
    indexed: dict[str, Any] | None = Field(description="What the service recorded writing (index_state).")
    tombstone: dict[str, Any] | None = Field(description="A delete covering versions up to this one.")


class ListingInCollection(BaseModel):
    """The listing's point (never the vector)."""

    version: int
    text_hash: str
    model: str | None
    payload: dict[str, Any]


class JobTouching(BaseModel):
    """A job whose batches named the listing."""

    job_id: str
    status: JobState
    operation: str
    scope: str
    source: str
    created_at: datetime
    finished_at: datetime | None


class ListingView(BaseModel):
    """``GET /listings/{product_id}``: both sides, the audit's verdict, failures and jobs."""

    product_id: int
    verdict: str = Field(
        description="What an audit would say now: ok, missing, stale, ghost, wrong_flag, wrong_model."
    )
    source: ListingInSource | None = Field(description="null: no row in products.")
    collection: ListingInCollection | None = Field(description="null: no point.")
    open_failures: list[FailureView]
    jobs: list[JobTouching] = Field(description="The latest jobs that touched it, newest first.")
