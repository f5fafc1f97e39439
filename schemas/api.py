"""Request and response models of the HTTP control API (v1). Examples feed the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from finally_indexer.core.constants import MAX_IDS_PER_JOB
from finally_indexer.schemas.legacy import Operation

#: Largest id PostgreSQL's BIGINT holds.
_MAX_ID = 2**63 - 1

JobState = Literal["pending", "running", "completed", "failed"]


def _only_ints(value: Any) -> Any:
    """Refuse ``"1"``, ``1.0`` and ``true`` as ids even when the caller validates in lax mode
    (Litestar calls ``model_validate(strict=False)``, which overrides ``StrictInt``)."""
    if isinstance(value, list):
        bad = [v for v in value if type(v) is not int]
        if bad:
            raise ValueError(f"ids must be JSON integers, got {bad[:5]!r}")
    return value


def _check_ids(ids: list[int]) -> list[int]:
    bad = [i for i in ids if not 0 < i <= _MAX_ID]
    if bad:
        raise ValueError(f"ids must be positive 64-bit integers, got {bad[:5]}")
    return list(dict.fromkeys(ids))


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
            ]
        },
    )

    product_ids: list[StrictInt] | Literal["all"] = Field(
        default="all", description='"all" or a list of product ids (at most 100,000).'
    )
    scope: Literal["all", "changed"] = Field(
        default="changed", description='For "all": which listings to scan.'
    )
    force: bool = Field(default=False, description="Re-embed even listings whose text did not change.")
    operation: Operation = Field(
        default=Operation.SYNC, description='sync | update | delete ("all" only with sync).'
    )
    requested_by: str | None = Field(
        default=None, max_length=200, description="Free text shown in job listings."
    )

    _ints = field_validator("product_ids", mode="before")(_only_ints)

    @field_validator("product_ids")
    @classmethod
    def _ids(cls, ids: list[int] | Literal["all"]) -> list[int] | Literal["all"]:
        if ids == "all":
            return ids
        if not ids:
            raise ValueError('product_ids must not be empty (use "all" for every listing)')
        if len(ids) > MAX_IDS_PER_JOB:
            raise ValueError(f'too many product_ids ({len(ids)} > {MAX_IDS_PER_JOB}); use "all"')
        return _check_ids(ids)

    @model_validator(mode="after")
    def _all_only_with_sync(self) -> SyncRequest:
        if self.product_ids == "all" and self.operation is not Operation.SYNC:
            raise ValueError(
                f'product_ids "all" is only allowed with operation "sync", not "{self.operation.value}"'
            )
        return self

    @property
    def job_scope(self) -> Literal["all", "ids", "changed"]:
        """The ``index_jobs.scope`` value: ``ids`` for id lists, else the requested scope."""
        return "ids" if self.product_ids != "all" else self.scope


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
    ids: list[StrictInt] | None = Field(default=None, max_length=10_000, description="failed_operations ids.")
    product_ids: list[StrictInt] | None = Field(default=None, max_length=MAX_IDS_PER_JOB)
    operation_type: Literal["sync", "update", "delete", "job"] | None = None
    reason: str | None = Field(default=None, max_length=200)
    since: datetime | None = Field(default=None, description="Failures created at or after this instant.")
    until: datetime | None = Field(default=None, description="Failures created before this instant.")
    limit: int = Field(default=10_000, ge=1, le=100_000, description="At most this many rows are re-queued.")

    _ints = field_validator("ids", "product_ids", mode="before")(_only_ints)

    @field_validator("ids", "product_ids")
    @classmethod
    def _positive(cls, ids: list[int] | None) -> list[int] | None:
        return None if ids is None else _check_ids(ids)

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
    """``GET /health``: 200 when every dependency answers, 503 naming those that do not."""

    status: Literal["ok", "degraded"]
    down: list[str]
    checks: dict[str, CheckResult]


class ErrorBody(BaseModel):
    """Every error answer: a short code, a human sentence, and details when useful."""

    status_code: int
    error: str
    detail: str
    extra: Any = None
