"""The legacy job contract the scraper LPUSHes onto ``indexing_jobs`` (must keep working unchanged).

.. code-block:: python

    r.lpush("indexing_jobs", json.dumps({"operation": "sync", "product_ids": [1, 2, 3]}))
    r.lpush("indexing_jobs", json.dumps({"operation": "sync", "product_ids": "all"}))

Extra fields (``v``, ``job_id``, ``requested_by`` …) are tolerated. :func:`parse_legacy_job`
turns raw bytes into a :class:`LegacyJob` or raises :class:`MalformedJob` with a reason code;
:func:`job_from_payload` goes on to the :class:`~finally_indexer.schemas.jobs.Job` it asks for.
API and retry jobs travel in the same JSON shape with the extras ``job_id``, ``scope`` and ``force``.
"""

from __future__ import annotations

import json
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finally_indexer.core.errors import MalformedJob
from finally_indexer.schemas.jobs import IdsOrAll, Job, JobSource, Operation

__all__ = ["LegacyJob", "MalformedReason", "job_from_payload", "parse_legacy_job"]

#: Optional text extras (job_id, requested_by) are cut to this length, never rejected for it.
_MAX_EXTRA_CHARS = 200


class MalformedReason(StrEnum):
    """Reason codes recorded with a malformed job (shown to operators, used as a metric label)."""

    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_OPERATION = "unknown_operation"
    BAD_PRODUCT_IDS = "bad_product_ids"
    EMPTY_PRODUCT_IDS = "empty_product_ids"
    TOO_MANY_PRODUCT_IDS = "too_many_product_ids"
    INVALID = "invalid"


class LegacyJob(BaseModel):
    """One job as the scraper sends it. ``product_ids`` is a list of ids or the string ``"all"``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    operation: Operation
    product_ids: IdsOrAll
    v: int | None = Field(default=None, description="Optional message schema version.")
    job_id: str | None = Field(
        default=None, description="The producer's reference (any scalar, kept as text)."
    )
    requested_by: str | None = Field(default=None, description="Who asked (any scalar, kept as text).")

    @field_validator("job_id", "requested_by", mode="before")
    @classmethod
    def _scalar_as_text(cls, value: object) -> str | None:
        """Optional extras are tolerated whatever their JSON type: kept as text, cut to a sane length."""
        if value is None:
            return None
        text = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        )
        return text[:_MAX_EXTRA_CHARS]

    @property
    def is_all(self) -> bool:
        """True when the job covers every listing."""
        return self.product_ids == "all"


def parse_legacy_job(raw: bytes | str) -> LegacyJob:
    """Parse one raw list element; raise :class:`MalformedJob` with a reason code when it is bad."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedJob(
                MalformedReason.NOT_UTF8, f"payload is not UTF-8 ({exc.reason} at byte {exc.start})"
            ) from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedJob(
            MalformedReason.BAD_JSON, f"not valid JSON: {exc.msg} at position {exc.pos}"
        ) from exc
    if not isinstance(data, dict):
        raise MalformedJob(
            MalformedReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(data).__name__}"
        )
    try:
        return LegacyJob.model_validate(data)
    except ValidationError as exc:
        raise _classify(exc) from exc


def job_from_payload(raw: bytes | str, *, source: JobSource, entry_id: str) -> Job:
    """The job a jobs-stream payload asks for; :class:`MalformedJob` when it breaks the contract or a rule."""
    legacy = parse_legacy_job(raw)
    extras = legacy.model_extra or {}
    force = extras.get("force", False)
    if not isinstance(force, bool):
        raise MalformedJob(MalformedReason.INVALID, f"force must be a boolean, got {force!r}"[:300])
    scope = extras.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise MalformedJob(MalformedReason.INVALID, f"scope must be a string, got {scope!r}"[:300])
    try:
        return Job.build(
            source=source, operation=legacy.operation, product_ids=legacy.product_ids, scope=scope,
            force=force, requested_by=legacy.requested_by, entry_id=entry_id, given_id=legacy.job_id,
        )  # fmt: skip
    except ValueError as exc:
        raise MalformedJob(MalformedReason.INVALID, str(exc)) from exc


def _classify(exc: ValidationError) -> MalformedJob:
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if field == "operation":
        return MalformedJob(MalformedReason.UNKNOWN_OPERATION, detail)
    if field == "product_ids":
        msg = str(first.get("msg", ""))
        if "empty product_ids" in msg:
            return MalformedJob(MalformedReason.EMPTY_PRODUCT_IDS, detail)
        if "too many product_ids" in msg:
            return MalformedJob(MalformedReason.TOO_MANY_PRODUCT_IDS, detail)
        return MalformedJob(MalformedReason.BAD_PRODUCT_IDS, detail)
    return MalformedJob(MalformedReason.INVALID, detail)
