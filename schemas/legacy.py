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

import hashlib
import json
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finally_indexer.core.errors import MalformedJob, clip
from finally_indexer.schemas.jobs import IdsOrAll, Job, JobSource, Operation

__all__ = [
    "KEPT_PAYLOAD_BYTES",
    "LegacyJob",
    "MalformedReason",
    "describe_errors",
    "job_from_payload",
    "parse_legacy_job",
]

#: Optional text extras (job_id, requested_by) are cut to this length, never rejected for it.
_MAX_EXTRA_CHARS = 200
#: Validation errors quoted in a malformed job's message (the count of the others is given).
MAX_ERRORS_SHOWN: Final = 5
#: Characters of a malformed job's message: it is stored, logged and published as an event.
MAX_DETAIL_CHARS: Final = 2048
#: Bytes of an over-size payload kept for the record (with its size and SHA-256): 16 KiB.
KEPT_PAYLOAD_BYTES: Final = 16 * 1024


class MalformedReason(StrEnum):
    """Reason codes recorded with a malformed job (shown to operators, used as a metric label)."""

    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_OPERATION = "unknown_operation"
    BAD_PRODUCT_IDS = "bad_product_ids"
    EMPTY_PRODUCT_IDS = "empty_product_ids"
    TOO_MANY_PRODUCT_IDS = "too_many_product_ids"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOO_DEEP = "too_deep"
    BAD_TEXT = "bad_text"
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
        return _storable(text[:_MAX_EXTRA_CHARS])

    @property
    def is_all(self) -> bool:
        """True when the job covers every listing."""
        return self.product_ids == "all"


def parse_legacy_job(raw: bytes | str, *, max_bytes: int | None = None) -> LegacyJob:
    """Parse one raw list element; raise :class:`MalformedJob` with a reason code when it is bad.

    Total: whatever the bytes are (over ``max_bytes``, nested past the parser's depth, numbers
    of thousands of digits, NUL or lone surrogates in text), the only exception is ``MalformedJob``.
    """
    data = _decode(raw, max_bytes=max_bytes)
    if not isinstance(data, dict):
        raise MalformedJob(
            MalformedReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(data).__name__}"
        )
    try:
        return LegacyJob.model_validate(data)
    except ValidationError as exc:
        raise _classify(exc) from None
    except RecursionError:
        raise MalformedJob(MalformedReason.TOO_DEEP, "JSON nested too deeply to validate") from None


def _decode(raw: bytes | str, *, max_bytes: int | None) -> object:
    """The JSON value of ``raw``, or :class:`MalformedJob` (size, encoding, syntax, depth, numbers)."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if max_bytes is not None and size > max_bytes:
        digest = hashlib.sha256(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))
        raise MalformedJob(
            MalformedReason.PAYLOAD_TOO_LARGE,
            f"payload of {size} bytes exceeds LEGACY_PAYLOAD_MAX_BYTES={max_bytes}; "
            f"sha256={digest.hexdigest()}; only the first {KEPT_PAYLOAD_BYTES} bytes are kept",
        )
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedJob(
                MalformedReason.NOT_UTF8, f"payload is not UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedJob(
            MalformedReason.BAD_JSON, f"not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    except RecursionError:
        raise MalformedJob(MalformedReason.TOO_DEEP, "JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise MalformedJob(MalformedReason.BAD_JSON, clip(f"not valid JSON: {exc}", 300)) from None


def _storable(text: str) -> str:
    """``text`` if PostgreSQL can store it as text (no NUL, no lone surrogate), else ``ValueError``."""
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must not contain lone surrogates") from None
    return text


def job_from_payload(
    raw: bytes | str, *, source: JobSource, entry_id: str, max_bytes: int | None = None
) -> Job:
    """The job a jobs-stream payload asks for; :class:`MalformedJob` when it breaks the contract or a rule."""
    legacy = parse_legacy_job(raw, max_bytes=max_bytes)
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
        raise MalformedJob(MalformedReason.INVALID, clip(str(exc), MAX_DETAIL_CHARS)) from None


def describe_errors(exc: ValidationError) -> str:
    """The first :data:`MAX_ERRORS_SHOWN` errors of ``exc`` (and how many more), at most a few KiB."""
    errors = exc.errors(include_url=False, include_input=False)
    shown = [f"{'.'.join(map(str, e['loc']))}: {clip(e['msg'], 300)}" for e in errors[:MAX_ERRORS_SHOWN]]
    if len(errors) > MAX_ERRORS_SHOWN:
        shown.append(f"… and {len(errors) - MAX_ERRORS_SHOWN} more errors")
    return clip("; ".join(shown), MAX_DETAIL_CHARS)


def _classify(exc: ValidationError) -> MalformedJob:
    first = exc.errors(include_url=False, include_input=False)[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    detail = describe_errors(exc)
    if "must not contain" in str(first.get("msg", "")):
        return MalformedJob(MalformedReason.BAD_TEXT, detail)
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
