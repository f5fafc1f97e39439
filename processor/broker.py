"""The FastStream side: a Redis broker whose subscribers hand every delivery to the consume path.

Four subscribers per worker process, all with the same consumer name, all wiring only — the
delivery rules (heartbeat, failure memory, acks, dead letters) live in :mod:`.consume`:

- the planner lane on the jobs stream, one entry per read and per call;
- the indexer lane on the batch stream, ``batch=True`` (a few batches per read, one XACK);
- one reclaimer per lane (``min_idle_time=RECLAIM_IDLE_MS``) that only ``XAUTOCLAIM``s orphans.

Acknowledgement is manual (``AckPolicy.MANUAL``): FastStream never acks, the consume path does.
The groups are created by :func:`ensure_groups` at id ``0`` before the subscribers start
(FastStream would create them at ``$`` and skip the backlog). Entries are read raw: a malformed
entry (even non-UTF-8 bytes, which FastStream's default parser cannot serialise) reaches the
handlers and is dead-lettered instead of looping forever.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from faststream import AckPolicy, Context
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.message import RedisStreamMessage
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamGroup, work_groups
from finally_indexer.processor.consume import Consumer, Lane, entries_of

__all__ = ["SHUTDOWN_GRACE_S", "build_broker", "consumer_name", "ensure_groups"]

#: Seconds a stopping worker waits for in-flight handlers before cancelling them (their entries
#: stay pending and are reclaimed elsewhere). Covers one batch's embedding call with the OpenAI
#: client's retries on a slow day; a deployment's stop timeout must be longer.
SHUTDOWN_GRACE_S: Final = 30.0
#: Milliseconds a subscriber blocks on an empty stream before reading again (bounds shutdown).
POLL_MS: Final = 1000
#: Job entries a planner reads at once. Planning one job can take seconds (a keyset scan of every
#: listing); entries read but not yet handled would sit unclaimed-by-heartbeat in this worker's
#: pending list, be reclaimed by another worker and planned twice. One at a time.
PLANNER_READ: Final = 1

#: FastStream injects the message object for parameters defaulting to this marker.
MESSAGE: Final[Any] = Context("message")

Parse = Callable[[Mapping[str, Any]], Awaitable[Any]]


def consumer_name(settings: Settings) -> str:
    """This process's consumer name: ``CONSUMER_NAME``, else ``hostname-pid``."""
    return settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}"


async def ensure_groups(redis: Redis, settings: Settings) -> list[StreamGroup]:
    """Create the planner and indexer groups at id 0 (reading the backlog) if absent; return those created."""
    created: list[StreamGroup] = []
    for pair in work_groups(settings):
        try:
            await redis.xgroup_create(pair.stream, pair.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        else:
            created.append(pair)
    return created


async def _raw(message: Mapping[str, Any], original: Parse) -> Any:
    """FastStream's parser over a blank body; the handlers read ``raw_message`` themselves."""
    data = message["data"]
    blank = [{b"__data__": b"null"}] * len(data) if isinstance(data, list) else {b"__data__": b"null"}
    parsed = await original({**message, "data": blank})
    parsed.raw_message = message
    return parsed


def build_broker(settings: Settings, consumer: Consumer, *, planner: Lane, indexer: Lane) -> RedisBroker:
    """A broker with the four subscribers of a worker (not started)."""
    # FastStream's own per-message lines ("Received", "Processed") go through a stdlib logger that
    # core/logging.py routes into structlog, at DEBUG: the consume path logs what matters.
    # The TLS files reach redis-py's SSLConnection (a rediss:// URL) through FastStream's pool.
    tls = settings.redis_tls_options()
    broker = RedisBroker(
        settings.redis_dsn(),
        **tls,
        graceful_timeout=SHUTDOWN_GRACE_S,
        logger=logging.getLogger("finally_indexer.faststream"),
        log_level=logging.DEBUG,
    )

    def subscribe(lane: Lane, **kw: Any) -> None:
        sub = StreamSub(
            lane.pair.stream, group=lane.pair.group, consumer=consumer.name, polling_interval=POLL_MS, **kw
        )

        async def deliver(msg: RedisStreamMessage = MESSAGE) -> None:
            await consumer.consume(lane, entries_of(lane.pair.stream, msg.raw_message))

        broker.subscriber(stream=sub, parser=_raw, ack_policy=AckPolicy.MANUAL)(deliver)

    def reclaim(lane: Lane) -> None:
        sub = StreamSub(
            lane.pair.stream, group=lane.pair.group, consumer=consumer.name, polling_interval=POLL_MS,
            min_idle_time=settings.reclaim_idle_ms,
        )  # fmt: skip

        async def redeliver(msg: RedisStreamMessage = MESSAGE) -> None:
            entries = entries_of(lane.pair.stream, msg.raw_message)
            count = await msg.get_delivery_count()
            await consumer.consume(lane, entries, {e.entry_id: count for e in entries})

        broker.subscriber(stream=sub, parser=_raw, ack_policy=AckPolicy.MANUAL)(redeliver)

    subscribe(planner, max_records=PLANNER_READ)
    subscribe(indexer, batch=True, max_records=settings.batches_in_flight() * 2)
    reclaim(planner)
    reclaim(indexer)
    return broker
