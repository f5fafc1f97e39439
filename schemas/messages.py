"""Entries on the streams: jobs (v1), batches (v1) and events (v1).

Redis stream fields are flat strings; each model has ``to_fields``/``from_fields`` so the wire form
is defined once. Field ``v`` carries the schema version of every entry.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from finally_indexer.core.errors import MalformedJob, clip
from finally_indexer.core.streams import as_text
from finally_indexer.schemas.jobs import Job, JobSource, Operation
from finally_indexer.schemas.legacy import MalformedReason, job_from_payload

__all__ = ["SCHEMA_VERSION", "BatchMessage", "Event", "EventType", "JobEntry", "read_job"]

SCHEMA_VERSION = 1


class JobEntry(BaseModel):
    """An entry of the jobs stream: the raw job bytes exactly as received, plus where they came from.

    The payload stays raw so that a malformed job can be stored and replayed byte for byte.
    Jobs from the API and from retries use the legacy JSON shape with optional extra fields
    ``job_id``, ``scope`` ("all" | "ids" | "changed") and ``force`` (re-embed even if unchanged).
    """

    model_config = ConfigDict(frozen=True)

    payload: bytes
    source: JobSource = JobSource.LEGACY
    received_ms: int = Field(default_factory=lambda: int(time.time() * 1000))
    v: int = SCHEMA_VERSION

    def to_fields(self) -> dict[str, bytes | str]:
        return {
            "payload": self.payload,
            "source": self.source.value,
            "received_ms": str(self.received_ms),
            "v": str(self.v),
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> JobEntry:
        f = {as_text(k): v for k, v in fields.items()}
        payload = f.get("payload", b"")
        return cls(
            payload=payload if isinstance(payload, bytes) else str(payload).encode(),
            source=JobSource(as_text(f.get("source", "legacy"))),
            received_ms=int(as_text(f.get("received_ms", "0")) or 0),
            v=int(as_text(f.get("v", "1")) or 1),
        )


def read_job(fields: dict[Any, Any], entry_id: str, *, max_bytes: int | None = None) -> tuple[JobEntry, Job]:
    """A jobs-stream entry and the job it carries; :class:`MalformedJob` when either is unreadable.

    Total: nothing else escapes, whatever the entry holds (a payload over ``max_bytes`` bytes is
    ``payload_too_large``; anything unforeseen is ``invalid`` with the exception's class).
    """
    try:
        entry = JobEntry.from_fields(fields)
        return entry, job_from_payload(
            entry.payload, source=entry.source, entry_id=entry_id, max_bytes=max_bytes
        )
    except MalformedJob:
        raise
    except Exception as exc:  # the parse is total: every failure is the input's
        detail = clip(f"unreadable jobs-stream entry: {type(exc).__name__}: {exc}", 500)
        raise MalformedJob(MalformedReason.INVALID, detail) from None


class BatchMessage(BaseModel):
    """An entry of the batch stream: one right-sized slice of a job for one indexer call."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    seq: int = Field(ge=0)
    operation: Operation
    product_ids: list[int] = Field(min_length=1)
    force: bool = False
    received_ms: int = 0  # when the job entered the system (bridge or API), for end-to-end latency
    v: int = SCHEMA_VERSION

    def to_fields(self) -> dict[str, str]:
        return {
            "job_id": self.job_id,
            "seq": str(self.seq),
            "operation": self.operation.value,
            "product_ids": json.dumps(self.product_ids, separators=(",", ":")),
            "force": "1" if self.force else "0",
            "received_ms": str(self.received_ms),
            "v": str(self.v),
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> BatchMessage:
        f = {as_text(k): as_text(v) for k, v in fields.items()}
        return cls(
            job_id=f["job_id"],
            seq=int(f["seq"]),
            operation=Operation(f["operation"]),
            product_ids=json.loads(f["product_ids"]),
            force=f.get("force") == "1",
            received_ms=int(f.get("received_ms", "0") or 0),
            v=int(f.get("v", "1") or 1),
        )


class EventType(StrEnum):
    """Kinds of outcome appended to the events stream."""

    JOB_ACCEPTED = "job_accepted"
    JOB_PLANNED = "job_planned"
    JOB_COMPLETED = "job_completed"
    JOB_MALFORMED = "job_malformed"
    BATCH_INDEXED = "batch_indexed"
    ITEM_FAILED = "item_failed"
    DEAD_LETTERED = "dead_lettered"


class Event(BaseModel):
    """An entry of the events stream; downstream consumers (the agent's cache) read ``product_ids``.

    Events are delivered at least once: ``outbox_id`` (the ``event_outbox`` row it was relayed
    from) is the same on every copy of one event, so a consumer that must not see one twice
    de-duplicates on it. It is ``None`` only on events never written to the outbox.
    """

    model_config = ConfigDict(frozen=True)

    type: EventType
    job_id: str | None = None
    seq: int | None = None
    product_ids: list[int] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    ts_ms: int = Field(default_factory=lambda: int(time.time() * 1000))
    outbox_id: int | None = None
    v: int = SCHEMA_VERSION

    def to_fields(self) -> dict[str, str]:
        return {"event": self.model_dump_json(exclude_none=True)}

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Event:
        f = {as_text(k): as_text(v) for k, v in fields.items()}
        return cls.model_validate_json(f["event"])
