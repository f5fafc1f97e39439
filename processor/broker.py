"""The FastStream side: the Redis broker and its subscribers, wired to the pipeline's handlers.

Four subscribers per worker process, all with the same consumer name:

- planner on the jobs stream (group ``planner``), one entry per call;
- indexer on the batch stream (group ``indexer``), ``batch=True``: one XACK per read;
- two reclaimers (``min_idle_time=RECLAIM_IDLE_MS``) that only ``XAUTOCLAIM`` orphaned entries.

The groups are created by :func:`ensure_groups` at id ``0`` before the subscribers start
(FastStream would create them at ``$`` and skip the backlog). Entries are read raw: the handlers
parse the fields themselves, so a malformed entry (even non-UTF-8 bytes, which FastStream's
default parser cannot serialise) reaches them and is dead-lettered instead of looping forever.

Every handler keeps its entries claimed while it works (:func:`~.reclaim.keep_claimed`, a heartbeat
every third of ``RECLAIM_IDLE_MS``): a slow batch is not mistaken for an orphan and reclaimed by
another worker while it is still running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Final

import structlog
from faststream import Context
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.message import RedisBatchStreamMessage, RedisStreamMessage
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from finally_indexer.core.constants import INDEXER_GROUP, PLANNER_GROUP
from finally_indexer.core.settings import Settings
from finally_indexer.processor.deadletter import StreamEntry
from finally_indexer.processor.indexer import Indexer
from finally_indexer.processor.planner import Planner
from finally_indexer.processor.reclaim import Redelivery, keep_claimed

__all__ = ["SHUTDOWN_GRACE_S", "build_broker", "consumer_name", "ensure_groups"]

log = structlog.get_logger(__name__)

#: Seconds a stopping worker waits for in-flight handlers before cancelling them (their entries
#: stay pending and are reclaimed elsewhere). Covers one batch's embedding call with the OpenAI
#: client's retries on a slow day; a deployment's stop timeout must be longer.
SHUTDOWN_GRACE_S: Final = 30.0
#: Heartbeats per ``RECLAIM_IDLE_MS`` while a handler works on its entries: at a third, two
#: heartbeats can be late or fail before the entries look idle to a reclaimer.
HEARTBEATS_PER_IDLE: Final = 3
#: Milliseconds a subscriber blocks on an empty stream before reading again (bounds shutdown).
POLL_MS: Final = 1000

#: FastStream injects the message object for parameters defaulting to this marker.
MESSAGE: Final[Any] = Context("message")

Parse = Callable[[Mapping[str, Any]], Awaitable[Any]]


def consumer_name(settings: Settings) -> str:
    """This process's consumer name: ``CONSUMER_NAME``, else ``hostname-pid``."""
    return settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}"


async def ensure_groups(redis: Redis, settings: Settings) -> None:
    """Create the planner and indexer groups at id 0 (reading the backlog) if absent."""
    for stream, group in ((settings.jobs_stream, PLANNER_GROUP), (settings.batch_stream, INDEXER_GROUP)):
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def _raw(message: Mapping[str, Any], original: Parse) -> Any:
    """FastStream's parser over a blank body; the handlers read ``raw_message`` themselves."""
    data = message["data"]
    blank = [{b"__data__": b"null"}] * len(data) if isinstance(data, list) else {b"__data__": b"null"}
    parsed = await original({**message, "data": blank})
    parsed.raw_message = message
    return parsed


def _entries(stream: str, raw: Mapping[str, Any]) -> list[StreamEntry]:
    data = raw["data"] if isinstance(raw["data"], list) else [raw["data"]]
    return [StreamEntry(stream, i.decode(), dict(f)) for i, f in zip(raw["message_ids"], data, strict=True)]


def build_broker(
    settings: Settings, *, redis: Redis, planner: Planner, indexer: Indexer,
    reclaim_jobs: Redelivery, reclaim_batches: Redelivery,
) -> RedisBroker:  # fmt: skip
    """A broker with the four subscribers of a worker (not started)."""
    # FastStream's own per-message lines ("Received", "Processed") go through a stdlib logger that
    # core/logging.py routes into structlog, at DEBUG: the handlers log each batch's outcome.
    broker = RedisBroker(
        settings.redis_dsn(),
        graceful_timeout=SHUTDOWN_GRACE_S,
        logger=logging.getLogger("finally_indexer.faststream"),
        log_level=logging.DEBUG,
    )
    consumer = consumer_name(settings)
    jobs, batches = settings.jobs_stream, settings.batch_stream
    every_s = settings.reclaim_idle_ms / 1000 / HEARTBEATS_PER_IDLE

    def claimed(stream: str, group: str, ids: list[str]) -> contextlib.AbstractAsyncContextManager[None]:
        return keep_claimed(redis, stream, group, consumer, ids, every_s=every_s)

    def sub(stream: str, group: str, **kw: Any) -> StreamSub[Any]:
        return StreamSub(stream, group=group, consumer=consumer, polling_interval=POLL_MS, **kw)

    async def plan(msg: RedisStreamMessage = MESSAGE) -> None:
        entry = _entries(jobs, msg.raw_message)[0]
        try:
            async with claimed(jobs, PLANNER_GROUP, [entry.entry_id]):
                await planner.handle(entry)
        except Exception as exc:
            reclaim_jobs.note_failure([entry.entry_id], exc)
            raise

    async def index(msg: RedisBatchStreamMessage = MESSAGE) -> None:
        entries = _entries(batches, msg.raw_message)
        ids = [e.entry_id for e in entries]
        async with claimed(batches, INDEXER_GROUP, ids):
            done, error = await indexer.handle_many(entries)
        if error is not None:
            # Only the first error is known: it stands for every failed entry of this read.
            acked = set(done)
            reclaim_batches.note_failure([i for i in ids if i not in acked], error)
            # Ack what succeeded; the failed entries stay pending for the reclaimer.
            if done:
                await redis.xack(batches, INDEXER_GROUP, *done)
            raise error

    broker.subscriber(stream=sub(jobs, PLANNER_GROUP), parser=_raw)(plan)
    max_records = settings.worker_concurrency * 2
    broker.subscriber(stream=sub(batches, INDEXER_GROUP, batch=True, max_records=max_records), parser=_raw)(
        index
    )
    for stream, group, redelivery in (
        (jobs, PLANNER_GROUP, reclaim_jobs),
        (batches, INDEXER_GROUP, reclaim_batches),
    ):
        reclaimer = sub(stream, group, min_idle_time=settings.reclaim_idle_ms)
        _add_reclaimer(broker, reclaimer, stream, redelivery, partial(claimed, stream, group))
    return broker


def _add_reclaimer(
    broker: RedisBroker, stream_sub: StreamSub[Any], stream: str, redelivery: Redelivery,
    claimed: Callable[[list[str]], contextlib.AbstractAsyncContextManager[None]],
) -> None:  # fmt: skip
    async def reclaim(msg: RedisStreamMessage = MESSAGE) -> None:
        deliveries = await msg.get_delivery_count()
        entry = _entries(stream, msg.raw_message)[0]
        async with claimed([entry.entry_id]):
            await redelivery.handle(entry, deliveries)

    broker.subscriber(stream=stream_sub, parser=_raw)(reclaim)
