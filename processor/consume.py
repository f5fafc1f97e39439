"""The one consume path: every delivery of a work-stream entry, new or reclaimed, goes through here.

:meth:`Consumer.consume` owns the rules of delivery, for the jobs stream and the batch stream
alike, whoever read the entries (a FastStream subscriber in a worker, :func:`read_new` and
:func:`claim_idle` in drain mode):

1. **The heartbeat.** While entries are worked on they stay claimed (:func:`keep_claimed` re-claims
   them every third of ``RECLAIM_IDLE_MS``), so a slow batch is not mistaken for an orphan.
2. **The dead-letter decision.** An entry delivered more than ``MAX_DELIVERIES`` times is handed
   to its lane's ``give_up`` — unless its last failure was a
   :class:`~finally_indexer.core.errors.ConfigurationError` (a revoked key, a wrong model name):
   the listings are not at fault, so it is processed again and stays pending until the fix.
3. **The failure memory.** Each failure is remembered per (stream, entry) (:class:`LastErrors`)
   and becomes the dead letter's message.
4. **Acks.** What succeeded (or was dead-lettered) is acknowledged with one ``XACK``; what failed
   stays pending for a reclaimer. Nothing else in the service acks a work-stream entry.

Entries pending longer than ``RECLAIM_IDLE_MS`` are claimed again (``XAUTOCLAIM``, which counts one
more delivery) by FastStream's reclaiming subscribers in a worker, and by :func:`claim_idle` in
drain mode; either way they come back through :meth:`Consumer.consume` with their delivery count.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from finally_indexer.core.errors import ConfigurationError, redact
from finally_indexer.core.metrics import CONFIGURATION_ERRORS, REDELIVERIES
from finally_indexer.core.streams import StreamEntry, StreamGroup, as_text

__all__ = [
    "Consumed",
    "Consumer",
    "Lane",
    "LastErrors",
    "claim_idle",
    "entries_of",
    "keep_claimed",
    "read_new",
]

log = structlog.get_logger(__name__)

#: Errors remembered per entry for the dead letter's message; bounded so a storm of failures
#: cannot grow memory (an entry forgotten here is dead-lettered with a generic message).
LAST_ERRORS_CAP: Final = 10_000
#: Heartbeats per ``RECLAIM_IDLE_MS`` while entries are worked on: at a third, two heartbeats can
#: be late or fail before the entries look idle to a reclaimer.
HEARTBEATS_PER_IDLE: Final = 3

#: KEYS[1] = stream, ARGV[1] = group, ARGV[2] = consumer, ARGV[3..] = entry ids.
#: Re-claims (``XCLAIM ... 0 ... JUSTID``: idle time reset, delivery count unchanged) only the ids
#: still pending *for this consumer*: an entry acked meanwhile, or taken over by another consumer
#: after a missed heartbeat, is left alone instead of being pulled back.
KEEP_CLAIMED_SCRIPT: Final = """
local mine = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then mine[#mine + 1] = ARGV[i] end
end
if #mine == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine), 'JUSTID')
return #mine
"""

#: Process one entry on its n-th delivery; raise to leave it pending.
Process = Callable[[StreamEntry, int], Awaitable[None]]
#: Dead-letter one entry after n deliveries, with the last error seen for it (if any).
GiveUp = Callable[[StreamEntry, int, str | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Lane:
    """One work stream's handling: what processes an entry, what dead-letters it, how many at once."""

    pair: StreamGroup
    process: Process
    give_up: GiveUp
    concurrency: int = 1


@dataclass(slots=True)
class Consumed:
    """What one :meth:`Consumer.consume` call did with its entries."""

    acked: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)


class Consumer:
    """Applies the delivery rules above for one consumer name (this process)."""

    def __init__(
        self, redis: Redis, *, consumer: str, max_deliveries: int, reclaim_idle_ms: int,
        errors: LastErrors | None = None,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.name = consumer
        self._max = max_deliveries
        self._every_s = reclaim_idle_ms / 1000 / HEARTBEATS_PER_IDLE
        self._errors = errors if errors is not None else LastErrors()

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
        async with keep_claimed(self.redis, lane.pair, self.name, ids, every_s=self._every_s):
            results = await asyncio.gather(*(one(e) for e in entries), return_exceptions=True)
        outcome = Consumed()
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, BaseException):
                outcome.failed[entry.entry_id] = result
            else:
                outcome.acked.append(entry.entry_id)
        if outcome.acked:
            await self.redis.xack(lane.pair.stream, lane.pair.group, *outcome.acked)
        return outcome

    async def _one(self, lane: Lane, entry: StreamEntry, deliveries: int) -> None:
        key = (entry.stream, entry.entry_id)
        if deliveries > self._max and not self._errors.misconfigured(key):
            await lane.give_up(entry, deliveries, self._errors.pop(key))
            return
        if deliveries > 1:
            REDELIVERIES.labels(stream=entry.stream).inc()
            log.info("entry_redelivered", stream=entry.stream, entry_id=entry.entry_id, deliveries=deliveries)
        try:
            await lane.process(entry, deliveries)
        except Exception as exc:
            self._note(entry, exc)
            raise
        self._errors.pop(key)

    def _note(self, entry: StreamEntry, exc: BaseException) -> None:
        first = self._errors.note((entry.stream, entry.entry_id), exc)
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


# --- failure memory -------------------------------------------------------------------------------
_Key = tuple[str, str]  # (stream, entry id): entry ids are unique per stream only


@dataclass(slots=True)
class _Last:
    message: str
    configuration: bool  # the failure was a ConfigurationError: not the entry's fault
    reported: bool = False  # the misconfiguration was logged for this entry already


class LastErrors:
    """The last failure seen for each (stream, entry) (bounded, oldest forgotten first)."""

    def __init__(self, cap: int = LAST_ERRORS_CAP) -> None:
        self._errors: OrderedDict[_Key, _Last] = OrderedDict()
        self._cap = cap

    def note(self, key: _Key, exc: BaseException) -> bool:
        """Remember ``exc`` as the entry's last failure; true on the first misconfiguration noted for it."""
        before = self._errors.get(key)
        configuration = isinstance(exc, ConfigurationError)
        reported = before is not None and before.reported
        self._errors[key] = _Last(f"{type(exc).__name__}: {exc}", configuration, reported or configuration)
        self._errors.move_to_end(key)
        while len(self._errors) > self._cap:
            self._errors.popitem(last=False)
        return configuration and not reported

    def misconfigured(self, key: _Key) -> bool:
        """Whether the entry's last failure was a :class:`ConfigurationError`."""
        last = self._errors.get(key)
        return last is not None and last.configuration

    def pop(self, key: _Key) -> str | None:
        """The entry's last failure, forgotten from now on."""
        last = self._errors.pop(key, None)
        return last.message if last is not None else None


# --- the heartbeat ----------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def keep_claimed(
    redis: Redis, pair: StreamGroup, consumer: str, ids: Sequence[str], *, every_s: float
) -> AsyncIterator[None]:
    """While the block runs, re-claim ``ids`` for ``consumer`` every ``every_s`` seconds.

    Resets the entries' idle time without counting a delivery, so reclaimers (``XAUTOCLAIM`` with
    ``RECLAIM_IDLE_MS``) leave entries alone while they are being worked on; pass a third of the
    reclaim idle time. A failed heartbeat is logged and retried at the next tick.
    """
    if not ids or every_s <= 0:
        yield
        return
    beat = _Heartbeat(redis, pair, consumer, list(ids), every_s=every_s)
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
        self, redis: Redis, pair: StreamGroup, consumer: str, ids: list[str], *, every_s: float
    ) -> None:
        self._script = redis.register_script(KEEP_CLAIMED_SCRIPT)
        self._stream, self._args, self._every_s = pair.stream, [pair.group, consumer, *ids], every_s
        self._busy = False
        self._stopped = False

    async def run(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self._every_s)
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
