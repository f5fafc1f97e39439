"""The one consume path: every delivery of a work-stream entry, new or reclaimed, goes through here.

:meth:`Consumer.consume` owns the rules of delivery, for the jobs stream and the batch stream
alike, whoever read the entries (a FastStream subscriber in a worker, :func:`read_new` and
:func:`claim_idle` in drain mode):

1. **The heartbeat.** While entries are worked on they stay claimed (:func:`keep_claimed` re-claims
   them every third of ``RECLAIM_IDLE_MS``), so a slow batch is not mistaken for an orphan.
2. **The dead-letter decision.** An entry delivered more than ``MAX_DELIVERIES`` times — not
   counting deliveries that failed on a dependency (:func:`is_transient`: PostgreSQL, Redis,
   Qdrant or the embedding API down, slow or rate-limiting) — is handed to its lane's
   ``give_up``; a delivery that crashed the worker counts. Never when its last failure was a
   :class:`~finally_indexer.core.errors.ConfigurationError` (a revoked key, a wrong model name):
   the listings are not at fault, so it is processed again and stays pending until the fix.
   An outage therefore costs time, never dead letters; while a dependency fails, the consumer
   backs off (:class:`Backoff`), and once a dependency has failed ``BREAKER_FAILURES`` times in a
   row its breaker opens (:mod:`.breaker`): deliveries that need it wait for a probe to succeed.
   The one bound on an outage is age: a redelivered entry that entered its stream more than
   ``WORK_MAX_AGE_S`` ago is dead-lettered with reason ``max_age_exceeded`` (replayable).
3. **The failure memory.** Each failure is remembered per (stream, entry) in Redis
   (:class:`FailureMemory`: it survives the restart that fixes a setting) and becomes the dead
   letter's message.
4. **Acks.** What succeeded (or was dead-lettered) is acknowledged with one ``XACK``; what failed
   stays pending for a reclaimer. Nothing else in the service acks a work-stream entry.

Entries pending longer than ``RECLAIM_IDLE_MS`` are claimed again (``XAUTOCLAIM``, which counts one
more delivery) by FastStream's reclaiming subscribers in a worker, and by :func:`claim_idle` in
drain mode; either way they come back through :meth:`Consumer.consume` with their delivery count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from finally_indexer.core.errors import ConfigurationError, TransientError, redact
from finally_indexer.core.metrics import BACKOFF_SECONDS, CONFIGURATION_ERRORS, REDELIVERIES
from finally_indexer.core.streams import StreamEntry, StreamGroup, as_text
from finally_indexer.processor.breaker import Breakers
from finally_indexer.processor.deadletter import MAX_AGE_REASON, MAX_DELIVERIES_REASON
from finally_indexer.processor.dependencies import ALL_DEPENDENCIES, Dependency, blame

__all__ = [
    "Consumed",
    "Consumer",
    "Lane",
    "claim_idle",
    "entries_of",
    "entry_time_ms",
    "is_transient",
    "keep_claimed",
    "read_new",
]

log = structlog.get_logger(__name__)

#: Characters of an entry's last error kept for its dead letter.
ERROR_CHARS: Final = 2_000
#: Pause after the first delivery that failed on a dependency, doubled per further one, capped:
#: a restarted dependency is picked up within half a minute, a long outage costs one attempt per
#: pause instead of one per pending entry.
BACKOFF_FIRST_S: Final = 0.1
BACKOFF_MAX_S: Final = 30.0
#: Exceptions of the drivers that mean "a dependency is unreachable" (not wrapped by every caller).
_UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InternalClientError,  # a pooled connection PostgreSQL dropped mid-operation (bench/faults.py)
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
#: What asyncpg says (as a plain ``InterfaceError``) when a pooled connection died under a call:
#: a restart of PostgreSQL. Its other ``InterfaceError``\ s are client misuse (an operation already
#: in progress, a released connection) and count like any bug.
_CONNECTION_LOST: Final = "connection is closed"
#: Heartbeats per ``RECLAIM_IDLE_MS`` while entries are worked on: at a third, two heartbeats can
#: be late or fail before the entries look idle to a reclaimer.
HEARTBEATS_PER_IDLE: Final = 3

#: KEYS[1] = stream, ARGV[1] = group, ARGV[2] = consumer, ARGV[3..] = entry ids.
#: Re-claims (``XCLAIM ... 0 ... JUSTID``: idle time reset, delivery count unchanged) only the ids
#: still pending *for this consumer*: an entry acked meanwhile, or taken over by another consumer
#: after a missed heartbeat, is left alone instead of being pulled back.
KEEP_CLAIMED_SCRIPT: Final = """
local claim = {KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then claim[#claim + 1] = ARGV[i] end
end
local mine = #claim - 4
if mine == 0 then return 0 end
claim[#claim + 1] = 'JUSTID'
-- unpack() last: in the middle of an argument list Lua keeps only its first value
redis.call('XCLAIM', unpack(claim))
return mine
"""

#: Process one entry on its n-th delivery; raise to leave it pending.
Process = Callable[[StreamEntry, int], Awaitable[None]]
#: Dead-letter one entry after n deliveries, with the last error seen for it (if any) and the
#: reason code (``max_deliveries`` or ``max_age_exceeded``).
GiveUp = Callable[[StreamEntry, int, str | None, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Lane:
    """One work stream's handling: what processes an entry, what dead-letters it, how many at once,
    and the dependencies its deliveries need (an open breaker of one of them holds the lane)."""

    pair: StreamGroup
    process: Process
    give_up: GiveUp
    concurrency: int = 1
    needs: frozenset[Dependency] = ALL_DEPENDENCIES


@dataclass(slots=True)
class Consumed:
    """What one :meth:`Consumer.consume` call did with its entries."""

    acked: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)


class Consumer:
    """Applies the delivery rules above for one consumer name (this process)."""

    def __init__(
        self, redis: Redis, *, consumer: str, max_deliveries: int, reclaim_idle_ms: int,
        handler_max_s: float | None = None, backoff: Backoff | None = None,
        breakers: Breakers | None = None, max_age_s: float | None = None,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.name = consumer
        self._max = max_deliveries
        self._every_s = reclaim_idle_ms / 1000 / HEARTBEATS_PER_IDLE
        self._handler_max_s = handler_max_s
        self._memory = FailureMemory(redis)
        self._backoff = backoff if backoff is not None else Backoff()
        self.breakers = breakers
        self._max_age_ms = None if max_age_s is None else max_age_s * 1000

    async def consume(
        self, lane: Lane, entries: Sequence[StreamEntry], deliveries: Mapping[str, int] | None = None
    ) -> Consumed:
        """Handle ``entries`` of ``lane`` (each on its delivery count, 1 when not given) and ack what is done."""
        counts = deliveries or {}
        limit = asyncio.Semaphore(lane.concurrency)

        async def one(entry: StreamEntry) -> None:
            async with limit:
                await self._one(lane, entry, counts.get(entry.entry_id, 1))

        ids = [e.entry_id for e in entries]
        async with keep_claimed(
            self.redis, lane.pair, self.name, ids, every_s=self._every_s, max_s=self._handler_max_s
        ):
            # a dependency is down: wait (entries kept claimed) instead of hammering it
            probing = await self.breakers.admit(lane.needs) if self.breakers else frozenset()
            try:
                await self._backoff.wait(lane.pair.stream)
                results = await asyncio.gather(*(one(e) for e in entries), return_exceptions=True)
            except BaseException:
                if self.breakers:
                    self.breakers.release(probing)
                raise
        outcome = Consumed()
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, BaseException):
                outcome.failed[entry.entry_id] = result
            else:
                outcome.acked.append(entry.entry_id)
        transient = [e for e in outcome.failed.values() if is_transient(e)]
        self._backoff.record(lane.pair.stream, failed=bool(transient))
        if self.breakers:
            self.breakers.settle(
                lane.needs, probing, failed=_blamed(transient), succeeded=bool(outcome.acked)
            )
        if outcome.acked:
            async with self.redis.pipeline(transaction=True) as tx:
                tx.xack(lane.pair.stream, lane.pair.group, *outcome.acked)
                self._memory.forget(tx, lane.pair.stream, outcome.acked)
                await tx.execute()
        return outcome

    async def _one(self, lane: Lane, entry: StreamEntry, deliveries: int) -> None:
        past: Past | None = None
        if deliveries > self._max:
            past = await self._memory.recall(entry)
            # failures of a dependency (transient) do not count; a crash mid-delivery does
            if deliveries - past.transient > self._max and not past.misconfigured:
                await lane.give_up(entry, deliveries, past.error, MAX_DELIVERIES_REASON)
                return
        if deliveries > 1 and self._too_old(entry):
            # however its deliveries failed (outages, a misconfiguration): the operator's bound
            past = past or await self._memory.recall(entry)
            log.warning("work_too_old", stream=entry.stream, entry_id=entry.entry_id, deliveries=deliveries)
            await lane.give_up(entry, deliveries, past.error, MAX_AGE_REASON)
            return
        if deliveries > 1:
            REDELIVERIES.labels(stream=entry.stream).inc()
            log.info("entry_redelivered", stream=entry.stream, entry_id=entry.entry_id, deliveries=deliveries)
        try:
            await lane.process(entry, deliveries)
        except Exception as exc:
            await self._note(entry, exc)
            raise

    def _too_old(self, entry: StreamEntry) -> bool:
        """Whether the entry entered its stream more than ``WORK_MAX_AGE_S`` ago (its id's time)."""
        if self._max_age_ms is None:
            return False
        enqueued_ms = entry_time_ms(entry.entry_id)
        return enqueued_ms is not None and time.time() * 1000 - enqueued_ms > self._max_age_ms

    async def _note(self, entry: StreamEntry, exc: Exception) -> None:
        try:
            first = await self._memory.note(entry, exc)
        except RedisError as redis_down:  # the failure stays pending; only its memory is lost
            log.warning("failure_not_remembered", entry_id=entry.entry_id, error=redact(repr(redis_down)))
            first = False
        if not isinstance(exc, ConfigurationError):
            log.warning("entry_failed", stream=entry.stream, entry_id=entry.entry_id, error=redact(repr(exc)))
            return
        CONFIGURATION_ERRORS.labels(stream=entry.stream).inc()
        if first:
            log.error(
                "service_misconfigured",
                stream=entry.stream,
                entry_id=entry.entry_id,
                error=redact(str(exc)),
                message=(
                    f"the service is misconfigured: {redact(str(exc))}; "
                    "entries stay pending until it is fixed (they are not dead-lettered)"
                ),
            )


def is_transient(exc: BaseException) -> bool:
    """A failure of a dependency (down, slow, rate-limiting), not of the entry: it never counts."""
    if isinstance(exc, asyncpg.InterfaceError):
        return _CONNECTION_LOST in str(exc)
    return isinstance(exc, (TransientError, *_UNAVAILABLE))


def entry_time_ms(entry_id: str) -> int | None:
    """When an entry was added to its stream: the milliseconds part of its id (None if not an id)."""
    head = entry_id.partition("-")[0]
    return int(head) if head.isdigit() else None


def _blamed(failures: Sequence[BaseException]) -> dict[Dependency, str]:
    """The dependencies ``failures`` are blamed on, each with its last failure's text."""
    blamed: dict[Dependency, str] = {}
    for exc in failures:
        if (dependency := blame(exc)) is not None:
            blamed[dependency] = f"{type(exc).__name__}: {exc}"
    return blamed


# --- failure memory -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Past:
    """What earlier deliveries of an entry left behind."""

    transient: int = 0  # failures of a dependency: they do not count toward MAX_DELIVERIES
    misconfigured: bool = False  # the last failure was a ConfigurationError: never dead-letter
    error: str | None = None  # the last failure, for the dead letter's message


class FailureMemory:
    """Per entry, in one Redis hash per stream (``<stream>:failures``): it survives restarts.

    Fields ``<id>:t`` (transient failures), ``<id>:c`` (misconfigured), ``<id>:e`` (last error,
    redacted, at most ``ERROR_CHARS``); deleted with the entry's ack (same transaction).
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    @staticmethod
    def key(stream: str) -> str:
        """The hash of ``stream``'s failures (same Cluster slot as a hash-tagged stream)."""
        return f"{stream}:failures"

    async def note(self, entry: StreamEntry, exc: Exception) -> bool:
        """Remember ``exc``; true on the first misconfiguration noted for the entry."""
        key, entry_id = self.key(entry.stream), entry.entry_id
        text = redact(f"{type(exc).__name__}: {exc}")[:ERROR_CHARS]
        configuration = isinstance(exc, ConfigurationError)
        async with self._redis.pipeline(transaction=True) as tx:
            tx.hset(key, f"{entry_id}:e", text)
            # neither an outage nor a misconfiguration is the entry's fault: neither counts
            tx.hincrby(key, f"{entry_id}:t", 1 if is_transient(exc) or configuration else 0)
            tx.hsetnx(key, f"{entry_id}:c", "1") if configuration else tx.hdel(key, f"{entry_id}:c")
            replies = await tx.execute()
        return configuration and bool(replies[2])

    async def recall(self, entry: StreamEntry) -> Past:
        """What earlier deliveries left behind (nothing, for an entry that never failed)."""
        entry_id = entry.entry_id
        t, c, e = await self._redis.hmget(
            self.key(entry.stream), [f"{entry_id}:t", f"{entry_id}:c", f"{entry_id}:e"]
        )
        return Past(int(t or 0), c is not None, as_text(e) if e is not None else None)

    def forget(self, tx: Any, stream: str, entry_ids: Sequence[str]) -> None:
        """Queue on ``tx`` the deletion of everything remembered about ``entry_ids``."""
        tx.hdel(self.key(stream), *(f"{i}:{f}" for i in entry_ids for f in ("t", "c", "e")))


class Backoff:
    """Pauses a stream's consumption after a delivery failed on a dependency, doubling to a cap.

    While PostgreSQL, Redis, Qdrant or the embedding API is down, a worker waits between
    attempts instead of churning through its pending entries; the first success resets it.
    """

    def __init__(self, *, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> None:
        self._first, self._max = first_s, max_s
        self._pause: dict[str, float] = {}

    async def wait(self, stream: str) -> None:
        """Sleep out the current pause of ``stream`` (none after a success)."""
        if pause := self._pause.get(stream, 0.0):
            await asyncio.sleep(pause)

    def record(self, stream: str, *, failed: bool) -> None:
        """Double the pause after a failure on a dependency; reset it after anything else."""
        pause = self._pause.get(stream, 0.0)
        self._pause[stream] = (min(pause * 2, self._max) if pause else self._first) if failed else 0.0
        BACKOFF_SECONDS.labels(stream=stream).set(self._pause[stream])


# --- the heartbeat ----------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def keep_claimed(
    redis: Redis, pair: StreamGroup, consumer: str, ids: Sequence[str], *, every_s: float,
    max_s: float | None = None,
) -> AsyncIterator[None]:  # fmt: skip
    """While the block runs, re-claim ``ids`` for ``consumer`` every ``every_s`` seconds.

    Resets the entries' idle time without counting a delivery, so reclaimers (``XAUTOCLAIM`` with
    ``RECLAIM_IDLE_MS``) leave entries alone while they are being worked on; pass a third of the
    reclaim idle time. A failed heartbeat is logged and retried at the next tick. After ``max_s``
    (``HANDLER_MAX_S``) no claim is renewed: a handler hung on a dead connection must not hold its
    entries forever; they go idle and another worker reclaims them.
    """
    if not ids or every_s <= 0:
        yield
        return
    beat = _Heartbeat(redis, pair, consumer, list(ids), every_s=every_s, max_s=max_s)
    task = asyncio.create_task(beat.run())
    try:
        yield
    finally:
        await beat.stop(task)


class _Heartbeat:
    """The loop behind :func:`keep_claimed`; stopped between calls, never cancelled inside one.

    Cancelling a redis-py command mid-flight can leave the cancelled task waiting forever (seen
    with redis-py 8.1 on Python 3.11), which would hang the handler: a heartbeat in the middle of
    its script finishes it and then exits.
    """

    def __init__(
        self, redis: Redis, pair: StreamGroup, consumer: str, ids: list[str], *, every_s: float,
        max_s: float | None,
    ) -> None:  # fmt: skip
        self._script = redis.register_script(KEEP_CLAIMED_SCRIPT)
        self._stream, self._args, self._every_s = pair.stream, [pair.group, consumer, *ids], every_s
        self._until = time.monotonic() + max_s if max_s is not None else None
        self._busy = False
        self._stopped = False

    async def run(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self._every_s)
            if self._until is not None and time.monotonic() > self._until:
                log.warning("handler_overran", stream=self._stream, entries=len(self._args) - 2)
                return  # the entries go idle: another worker will reclaim them
            self._busy = True
            try:
                await self._script(keys=[self._stream], args=self._args)
            except RedisError as exc:
                log.warning("heartbeat_failed", stream=self._stream, error=redact(str(exc)))
            finally:
                self._busy = False

    async def stop(self, task: asyncio.Task[None]) -> None:
        self._stopped = True
        if not self._busy:
            task.cancel()  # it is sleeping: a cancelled sleep is clean
        await asyncio.wait({task})  # not ``await task``: our own cancellation must not reach it
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("heartbeat_crashed", stream=self._stream, error=redact(repr(exc)))


# --- reading ----------------------------------------------------------------------------------------
def entries_of(stream: str, raw: Mapping[str, Any]) -> list[StreamEntry]:
    """The entries of a raw FastStream Redis message (one entry, or a batch of them)."""
    data = raw["data"] if isinstance(raw["data"], list) else [raw["data"]]
    return [StreamEntry(stream, as_text(i), dict(f)) for i, f in zip(raw["message_ids"], data, strict=True)]


async def read_new(redis: Redis, pair: StreamGroup, consumer: str, *, count: int) -> list[StreamEntry]:
    """Up to ``count`` entries never delivered to the group (``XREADGROUP >``, not blocking)."""
    reply: Any = await redis.xreadgroup(pair.group, consumer, {pair.stream: ">"}, count=count)
    if not reply:
        return []
    # RESP2: [[stream name, [(id, fields), ...]]]
    return [StreamEntry(pair.stream, as_text(i), dict(f)) for i, f in reply[0][1]]


async def claim_idle(
    redis: Redis, pair: StreamGroup, consumer: str, *, min_idle_ms: int, count: int = 100
) -> tuple[list[StreamEntry], dict[str, int]]:
    """Claim up to ``count`` entries idle for ``min_idle_ms``, and the delivery count of each."""
    stream, group = pair.stream, pair.group
    _, claimed, *_ = await redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
    if not claimed:
        return [], {}
    entries = [StreamEntry(stream, as_text(raw_id), dict(fields)) for raw_id, fields in claimed]
    # one XPENDING over the claimed range, for this consumer, gives every delivery count at once
    pending = await redis.xpending_range(
        stream, group, min=entries[0].entry_id, max=entries[-1].entry_id, count=len(entries),
        consumername=consumer,
    )  # fmt: skip
    counts = {as_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
    for e in entries:  # other entries of ours inside the range may have used up the count
        if e.entry_id not in counts:
            one = await redis.xpending_range(stream, group, min=e.entry_id, max=e.entry_id, count=1)
            counts[e.entry_id] = int(one[0]["times_delivered"]) if one else 1
    return entries, counts
