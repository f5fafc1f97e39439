"""The job: one model for work that comes from the legacy list, the API or a retry.

A job says which listings (ids, or every listing), what to do with them (sync, update, delete),
how to choose them (``scope``), whether to re-embed unchanged ones (``force``), and where it came
from. :class:`Job` is built from a legacy payload (:func:`finally_indexer.schemas.legacy.job_from_payload`)
and from an API request (:meth:`finally_indexer.schemas.api.SyncRequest.to_job`) through the same
validator, so the rules below hold for both:

- ``delete`` needs explicit ids (nothing deletes every listing);
- ``update`` and ``sync`` may name ids or ``"all"`` (an update of every listing is a full re-sync);
- scope ``all``/``changed`` goes with ``"all"``, scope ``ids`` with an id list.

Product ids are validated by :data:`IdsOrAll` / :func:`check_product_ids` here and nowhere else.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator

from finally_indexer.core.constants import MAX_IDS_PER_JOB

__all__ = [
    "MAX_PRODUCT_ID",
    "Ids",
    "IdsOrAll",
    "Job",
    "JobSource",
    "Operation",
    "Scope",
    "check_product_ids",
    "check_shape",
    "job_id_for",
]

#: Largest id PostgreSQL's BIGINT (and Qdrant's unsigned point id) can hold.
MAX_PRODUCT_ID = 2**63 - 1

Scope = Literal["all", "ids", "changed"]


class Operation(StrEnum):
    """What a job asks for."""

    SYNC = "sync"
    UPDATE = "update"
    DELETE = "delete"


class JobSource(StrEnum):
    """Who put a job on the jobs stream."""

    LEGACY = "legacy"  # moved from the legacy list by the bridge
    API = "api"  # POST /sync
    RETRY = "retry"  # POST /retry
    AUDIT = "audit"  # the repairs of an audit


# --- product ids ------------------------------------------------------------------------------------
def _ints_only(value: Any) -> Any:
    """Refuse ``"1"``, ``1.0`` and ``true`` as ids, even when the caller validates in lax mode
    (Litestar calls ``model_validate(strict=False)``)."""
    if isinstance(value, list):
        bad = [v for v in value if type(v) is not int]
        if bad:
            raise ValueError(f"product ids must be JSON integers, got {bad[:5]!r}")
    return value


def _in_range(ids: list[int]) -> list[int]:
    """``ids`` without duplicates (first occurrence kept), each a positive 64-bit integer."""
    bad = [i for i in ids if not 0 < i <= MAX_PRODUCT_ID]
    if bad:
        raise ValueError(f"product ids must be positive 64-bit integers, got {bad[:5]}")
    return list(dict.fromkeys(ids))


def check_product_ids(ids: list[int]) -> list[int]:
    """The ids of one job: at least one, at most ``MAX_IDS_PER_JOB``, in range, duplicates dropped."""
    if not ids:
        raise ValueError('empty product_ids: give at least one id, or "all"')
    if len(ids) > MAX_IDS_PER_JOB:
        raise ValueError(f'too many product_ids ({len(ids)} > {MAX_IDS_PER_JOB}); use "all"')
    return _in_range(ids)


def _ids_or_all(value: list[int] | Literal["all"]) -> list[int] | Literal["all"]:
    return value if value == "all" else check_product_ids(value)


#: A list of ids (in range, no duplicates; may be empty) — filters such as ``POST /retry``'s.
Ids = Annotated[list[int], BeforeValidator(_ints_only), AfterValidator(_in_range)]
#: A job's ``product_ids``: ``"all"`` or 1..``MAX_IDS_PER_JOB`` ids.
IdsOrAll = Annotated[list[int] | Literal["all"], BeforeValidator(_ints_only), AfterValidator(_ids_or_all)]


# --- the rules and the id ----------------------------------------------------------------------------
def check_shape(operation: Operation, *, is_all: bool, scope: str | None) -> Scope:
    """The job's scope if ``operation``, ids-or-all and ``scope`` fit together; ``ValueError`` if not."""
    if operation is Operation.DELETE and is_all:
        raise ValueError("delete needs explicit product_ids (refusing to delete everything)")
    if scope is None:
        return "all" if is_all else "ids"
    if is_all and scope in ("all", "changed"):
        return "all" if scope == "all" else "changed"
    if not is_all and scope == "ids":
        return "ids"
    raise ValueError(f"scope {scope!r} does not fit product_ids {'all' if is_all else 'as a list'}")


def job_id_for(source: JobSource, *, entry_id: str | None = None, given: str | None = None) -> str:
    """The id of a job, the one rule for every place that needs it (planner, dead letters, API, retry).

    A legacy job is keyed by its jobs-stream entry id: a redelivery of the entry is the same job,
    while a producer ``job_id`` is only a label that may repeat every night (it is kept as the
    job's ``external_id``). An API or retry job keeps the id it was given when it was queued;
    a job being queued gets a new one (``api-…``, ``retry-…``).
    """
    if source is JobSource.LEGACY:
        if entry_id is None:
            raise ValueError("a legacy job is identified by its jobs-stream entry id")
        return entry_id
    return given or entry_id or f"{source.value}-{uuid.uuid4().hex}"


class Job(BaseModel):
    """One unit of work as the planner plans it and ``index_jobs`` records it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    source: JobSource
    operation: Operation
    product_ids: list[int] | None  # None: every listing (``"all"``)
    scope: Scope
    force: bool = False
    requested_by: str | None = None
    external_id: str | None = None  # the producer's own job_id of a legacy job (may repeat)
    #: When the job entered the system (None: now). A delete's version: a retry or recovery
    #: re-publishing it later must not remove listings re-created since it was received.
    received_at: datetime | None = None

    @model_validator(mode="after")
    def _fits(self) -> Job:
        if self.product_ids is not None:
            check_product_ids(self.product_ids)
        check_shape(self.operation, is_all=self.is_all, scope=self.scope)
        return self

    @property
    def is_all(self) -> bool:
        """True when the job covers every listing."""
        return self.product_ids is None

    @classmethod
    def build(
        cls, *, source: JobSource, operation: Operation, product_ids: list[int] | Literal["all"],
        scope: str | None = None, force: bool = False, requested_by: str | None = None,
        entry_id: str | None = None, given_id: str | None = None,
    ) -> Job:  # fmt: skip
        """A job with its id (:func:`job_id_for`) and its scope resolved; ``ValueError`` if it breaks a rule."""
        is_all = product_ids == "all"
        resolved = check_shape(operation, is_all=is_all, scope=scope)
        legacy = source is JobSource.LEGACY
        return cls(
            job_id=job_id_for(source, entry_id=entry_id, given=None if legacy else given_id),
            source=source, operation=operation,
            product_ids=None if product_ids == "all" else list(product_ids),
            scope=resolved, force=force, requested_by=requested_by,
            external_id=given_id if legacy else None,
        )  # fmt: skip

    def to_payload(self) -> dict[str, Any]:
        """The job in the legacy JSON shape plus its extras (``job_id``, ``scope``, ``force``)."""
        body: dict[str, Any] = {
            "v": 1,
            "operation": self.operation.value,
            "product_ids": self.product_ids if self.product_ids is not None else "all",
            "job_id": self.job_id,
            "scope": self.scope,
            "force": self.force,
            "requested_by": self.requested_by,
        }
        return {k: v for k, v in body.items() if v is not None}
