"""The legacy job contract the scraper LPUSHes onto ``indexing_jobs`` (must keep working unchanged).

.. code-block:: python

    r.lpush("indexing_jobs", json.dumps({"operation": "sync", "product_ids": [1, 2, 3]}))
    r.lpush("indexing_jobs", json.dumps({"operation": "sync", "product_ids": "all"}))

Extra fields (``v``, ``job_id``, ``requested_by`` …) are tolerated. :func:`parse_legacy_job`
turns raw bytes into a :class:`LegacyJob` or raises :class:`MalformedJob` with a reason code.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from finally_indexer.core.constants import MAX_IDS_PER_JOB
from finally_indexer.core.errors import MalformedJob

#: Largest id PostgreSQL's BIGINT (and Qdrant's unsigned point id) can hold.
_MAX_ID = 2**63 - 1
#: Optional text extras (job_id, requested_by) are cut to this length, never rejected for it.
_MAX_EXTRA_CHARS = 200


class Operation(StrEnum):
    """What a job asks for."""

    SYNC = "sync"
    UPDATE = "update"
    DELETE = "delete"


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
    product_ids: list[StrictInt] | Literal["all"]
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

    @field_validator("product_ids")
    @classmethod
    def _ids_in_range(cls, ids: list[int] | Literal["all"]) -> list[int] | Literal["all"]:
        if ids == "all":
            return ids
        if not ids:
            raise ValueError("empty product_ids")
        if len(ids) > MAX_IDS_PER_JOB:
            raise ValueError(f"too many product_ids ({len(ids)} > {MAX_IDS_PER_JOB})")
        bad = [i for i in ids if not 0 < i <= _MAX_ID]
        if bad:
            raise ValueError(f"product ids must be positive 64-bit integers, got {bad[:5]}")
        return list(dict.fromkeys(ids))

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
