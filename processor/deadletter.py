"""Dead letters: entries that cannot be processed, kept with the reason where an operator can replay them.

Each dead letter is written twice: to the dead-letter stream (the original fields, byte for byte,
plus ``dl_*`` fields saying where it came from and why) and to ``failed_operations`` (one row per
listing, or one row with the raw payload for a malformed job), which ``POST /retry`` replays.
Error text is redacted (:func:`~finally_indexer.core.errors.redact`) before it is written anywhere:
provider errors can quote API keys, and operators read it through ``/status`` and ``/failures``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from redis.asyncio import Redis

from finally_indexer.core.constants import DEAD_LETTER_MAXLEN
from finally_indexer.core.errors import MalformedJob, clip, redact, storable
from finally_indexer.core.metrics import DEAD_LETTERS, FAILURES, JOBS_MALFORMED
from finally_indexer.core.streams import StreamEntry
from finally_indexer.db import jobs
from finally_indexer.db.failures import MAX_ERROR_CHARS, Failure, has_failure, record_failures
from finally_indexer.db.pool import DB
from finally_indexer.processor.events import EventLog
from finally_indexer.processor.outbox import relay_soon, stage
from finally_indexer.schemas.legacy import KEPT_PAYLOAD_BYTES, MalformedReason
from finally_indexer.schemas.messages import BatchMessage, Event, EventType, read_job

__all__ = ["DeadLetters"]

log = structlog.get_logger(__name__)

#: Reason code of an entry delivered more than ``MAX_DELIVERIES`` times.
MAX_DELIVERIES_REASON = "max_deliveries"
#: Reason code of a redelivered entry whose work is older than ``WORK_MAX_AGE_S``.
MAX_AGE_REASON = "max_age_exceeded"
#: ``failed_operations.error_class`` per give-up reason.
_GIVE_UP_CLASSES = {MAX_DELIVERIES_REASON: "MaxDeliveries", MAX_AGE_REASON: "MaxAgeExceeded"}
#: Reason code of a batch-stream entry that does not parse as a BatchMessage.
INVALID_BATCH_REASON = "invalid_batch"


class DeadLetters:
    """Writes dead letters to the dead-letter stream, ``failed_operations`` and the events log.

    Total and idempotent: nothing here raises because of what the entry holds (text is made
    storable, the payload re-parse is total), and an entry is recorded once per reason — a
    redelivery after a crash between the dead letter and the ack finds its row and only acks.
    """

    def __init__(self, redis: Redis, pool: asyncpg.Pool[Any], events: EventLog, *, stream: str) -> None:
        self._redis = redis
        self._pool = pool
        self._events = events
        self._stream = stream

    async def malformed_job(self, entry: StreamEntry, exc: MalformedJob) -> None:
        """A job that breaks the legacy contract: keep its raw bytes (the first ones when too large)."""
        detail = storable(redact(clip(exc.detail, MAX_ERROR_CHARS)))
        failure = _job_failure(entry, _payload_of(entry, exc.reason), exc.reason, exc)
        event = Event(type=EventType.JOB_MALFORMED, reason=exc.reason, message=detail)
        if not await self._write_once(
            entry, [failure], event, reason=exc.reason, error=str(exc), deliveries=1
        ):
            return
        JOBS_MALFORMED.labels(reason=exc.reason).inc()
        log.warning("job_malformed", entry_id=entry.entry_id, reason=exc.reason, detail=detail)

    async def invalid_batch(self, entry: StreamEntry, exc: Exception, *, deliveries: int = 1) -> None:
        """A batch-stream entry that does not parse (written by something other than the planner)."""
        message = storable(redact(clip(str(exc), MAX_ERROR_CHARS)))
        failure = Failure(
            operation_type="batch", reason=INVALID_BATCH_REASON, error_class=type(exc).__name__,
            error_message=str(exc), payload=_flatten(entry.fields), stream=entry.stream, entry_id=entry.entry_id,
        )  # fmt: skip
        event = Event(type=EventType.DEAD_LETTERED, reason=INVALID_BATCH_REASON, message=message)
        written = await self._write_once(
            entry, [failure], event, reason=INVALID_BATCH_REASON, error=repr(exc), deliveries=deliveries
        )
        if not written:
            return
        FAILURES.labels(reason=INVALID_BATCH_REASON).inc()
        log.warning("batch_invalid", entry_id=entry.entry_id, error=message)

    async def exhausted_job(
        self, entry: StreamEntry, deliveries: int, last_error: str | None, reason: str = MAX_DELIVERIES_REASON
    ) -> None:
        """A job entry given up: delivered more than ``MAX_DELIVERIES`` times, or its work too old."""
        error = storable(redact(clip(last_error or _given_up(reason, deliveries), 2000)))
        failure = _job_failure(entry, _payload_of(entry), reason, None, error)
        job_id = _job_id_of(entry)

        async def also(conn: DB) -> None:
            await jobs.fail_job(conn, job_id, error)

        event = _dead_lettered(job_id, None, [], deliveries, error, reason=reason)
        written = await self._write_once(
            entry, [failure], event, reason=reason, error=error, deliveries=deliveries, also=also
        )
        if written:
            log.error("dead_lettered", job_id=job_id, deliveries=deliveries, reason=reason, error=error)

    async def exhausted_batch(
        self, entry: StreamEntry, deliveries: int, last_error: str | None, reason: str = MAX_DELIVERIES_REASON
    ) -> None:
        """A batch given up (too many deliveries, or too old): every listing of it fails.

        An entry that does not even parse (its invalid-batch dead letter failed on every earlier
        delivery) is dead-lettered as invalid now, raw fields and all: raising here would leave
        it pending forever.
        """
        try:
            batch = BatchMessage.from_fields(entry.fields)
        except Exception as exc:  # whatever the fields hold, the entry is dead-lettered
            await self.invalid_batch(entry, exc, deliveries=deliveries)
            return
        error = storable(redact(clip(last_error or _given_up(reason, deliveries), 2000)))
        failures = [_listing_failure(entry, batch, pid, error, reason) for pid in batch.product_ids]

        async def also(conn: DB) -> None:
            await jobs.lock_job(conn, batch.job_id)  # serialises with the job's other batches
            if await jobs.fail_batch(conn, batch.job_id, batch.seq, deliveries=deliveries):
                await jobs.finish_job_if_done(conn, batch.job_id)

        event = _dead_lettered(batch.job_id, batch.seq, batch.product_ids, deliveries, error, reason=reason)
        written = await self._write_once(
            entry, failures, event, reason=reason, error=error, deliveries=deliveries, also=also
        )
        if written:
            FAILURES.labels(reason=reason).inc(len(failures))
            log.error(
                "dead_lettered", job_id=batch.job_id, seq=batch.seq, deliveries=deliveries, reason=reason,
                error=error,
            )  # fmt: skip

    async def _write_once(
        self, entry: StreamEntry, failures: list[Failure], event: Event, *, reason: str, error: str,
        deliveries: int, also: Callable[[DB], Awaitable[None]] | None = None,
    ) -> bool:  # fmt: skip
        """Record ``failures``, ``event`` and the dead-letter entry unless this entry has them; true if written.

        One transaction, serialised per entry by an advisory lock: the rows, ``also``'s writes,
        the event (in the outbox, relayed after the commit) and the check commit together. The
        stream entry is added before the commit, so a crash in between can only add it twice
        (at-least-once), never leave a row without its dead letter.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            key = storable(f"{entry.stream}/{entry.entry_id}")
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
            if await has_failure(conn, stream=entry.stream, entry_id=entry.entry_id, reason=reason):
                log.info("dead_letter_already_recorded", entry_id=entry.entry_id, reason=reason)
                return False
            await record_failures(conn, failures)
            if also is not None:
                await also(conn)
            await stage(conn, [event])
            await self._append(entry, reason=reason, error=error, deliveries=deliveries)
        await relay_soon(self._pool, self._events)
        return True

    async def _append(self, entry: StreamEntry, *, reason: str, error: str, deliveries: int) -> None:
        fields: dict[bytes | str, bytes | str] = dict(entry.fields.items())
        if reason == MalformedReason.PAYLOAD_TOO_LARGE:
            fields[b"payload"] = _payload_of(entry, reason)
        fields.update(
            dl_origin_stream=entry.stream, dl_origin_id=entry.entry_id, dl_reason=reason,
            dl_error=redact(clip(error, 2000)), dl_deliveries=str(deliveries), dl_ts_ms=str(int(time.time() * 1000)),
        )  # fmt: skip
        await self._redis.xadd(self._stream, fields, maxlen=DEAD_LETTER_MAXLEN, approximate=True)  # type: ignore[arg-type]
        DEAD_LETTERS.labels(stream=entry.stream).inc()


def _given_up(reason: str, deliveries: int) -> str:
    if reason == MAX_AGE_REASON:
        return f"work older than WORK_MAX_AGE_S after {deliveries} deliveries"
    return f"delivered {deliveries} times without success"


def _dead_lettered(
    job_id: str | None, seq: int | None, ids: list[int], deliveries: int, error: str, *, reason: str
) -> Event:
    return Event(
        type=EventType.DEAD_LETTERED, job_id=job_id, seq=seq, product_ids=ids,
        counts={"deliveries": deliveries}, reason=reason, message=error,
    )  # fmt: skip


def _job_failure(
    entry: StreamEntry, payload: bytes, reason: str, exc: MalformedJob | None, error: str | None = None
) -> Failure:
    return Failure(
        operation_type="job", reason=reason,
        error_class=type(exc).__name__ if exc else _GIVE_UP_CLASSES.get(reason, "GivenUp"),
        error_message=str(exc) if exc else (error or reason), payload=payload,
        stream=entry.stream, entry_id=entry.entry_id,
    )  # fmt: skip


def _listing_failure(
    entry: StreamEntry, batch: BatchMessage, product_id: int, error: str, reason: str
) -> Failure:
    return Failure(
        operation_type=batch.operation.value, reason=reason, error_class=_GIVE_UP_CLASSES.get(reason, "GivenUp"),
        error_message=error, product_id=product_id, job_id=batch.job_id,
        stream=entry.stream, entry_id=entry.entry_id,
    )  # fmt: skip


def _payload_of(entry: StreamEntry, reason: str | None = None) -> bytes:
    """A job entry's raw payload (every field, flattened, when it has none); only its first
    :data:`KEPT_PAYLOAD_BYTES` when it was refused as too large (its size and SHA-256 are in the message)."""
    payload = entry.fields.get(b"payload") or _flatten(entry.fields)
    return payload[:KEPT_PAYLOAD_BYTES] if reason == MalformedReason.PAYLOAD_TOO_LARGE else payload


def _job_id_of(entry: StreamEntry) -> str:
    """The id the planner gave the entry's job (a malformed job has no row: its entry id then)."""
    try:
        return read_job(entry.fields, entry.entry_id)[1].job_id
    except Exception:  # read_job is total; this guard keeps the dead letter total even so
        return entry.entry_id


def _flatten(fields: dict[bytes, bytes]) -> bytes:
    """An unparseable entry's fields as one byte string (``key=value`` lines) for the failure row."""
    return b"\n".join(k + b"=" + v for k, v in fields.items())
