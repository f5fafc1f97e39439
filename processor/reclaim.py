"""Redelivery: entries left pending by a dead or failing consumer are claimed and processed again.

An entry pending longer than ``RECLAIM_IDLE_MS`` is claimed (``XAUTOCLAIM``, which counts one more
delivery); at most ``MAX_DELIVERIES`` deliveries are attempted, then the entry is dead-lettered
with the last error this process saw for it. In the workers the claiming is done by FastStream
(``StreamSub(min_idle_time=...)``, see ``broker.py``); :func:`claim_idle` does the same for the
drain mode used by tests and benchmarks.

Two exceptions to "idle means orphaned, too many deliveries means dead":

- an entry still being worked on is kept claimed by :func:`keep_claimed` (a heartbeat resetting
  its idle time), so a slow batch (an embedding call waiting out 429s) is not reclaimed and
  embedded a second time by another worker;
- an entry whose last failure was a :class:`~finally_indexer.core.errors.ConfigurationError`
  (a revoked API key, a wrong model name) is never dead-lettered: the listings are not at fault,
  so it stays pending and is retried until the configuration is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from finally_indexer.core.errors import ConfigurationError, redact
from finally_indexer.core.metrics import CONFIGURATION_ERRORS, REDELIVERIES
from finally_indexer.processor.deadletter import StreamEntry
from finally_indexer.schemas.messages import as_text

__all__ = ["LastErrors", "Redelivery", "claim_idle", "keep_claimed"]

log = structlog.get_logger(__name__)

#: Errors remembered per entry id for the dead letter's message; bounded so a storm of failures
#: cannot grow memory (an entry forgotten here is dead-lettered with a generic message).
LAST_ERRORS_CAP: Final = 10_000

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

Process = Callable[[StreamEntry, int], Awaitable[None]]
GiveUp = Callable[[StreamEntry, int, str | None], Awaitable[None]]


@contextlib.asynccontextmanager
async def keep_claimed(
    redis: Redis, stream: str, group: str, consumer: str, ids: Sequence[str], *, every_s: float
) -> AsyncIterator[None]:
    """While the block runs, re-claim ``ids`` for ``consumer`` every ``every_s`` seconds.

    Resets the entries' idle time without counting a delivery, so reclaimers (``XAUTOCLAIM`` with
    ``RECLAIM_IDLE_MS``) leave entries alone while they are being worked on; pass a third of the
    reclaim idle time. A failed heartbeat is logged and retried at the next tick.
    """
    if not ids or every_s <= 0:
        yield
        return
    beat = _Heartbeat(redis, stream, group, consumer, list(ids), every_s=every_s)
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
        self, redis: Redis, stream: str, group: str, consumer: str, ids: list[str], *, every_s: float
    ) -> None:
        self._script = redis.register_script(KEEP_CLAIMED_SCRIPT)
        self._stream, self._args, self._every_s = stream, [group, consumer, *ids], every_s
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


@dataclass(slots=True)
class _Last:
    message: str
    configuration: bool  # the failure was a ConfigurationError: not the entry's fault
    reported: bool = False  # the misconfiguration was logged for this entry already


class LastErrors:
    """The last failure seen for each entry id (bounded, oldest forgotten first)."""

    def __init__(self, cap: int = LAST_ERRORS_CAP) -> None:
        self._errors: OrderedDict[str, _Last] = OrderedDict()
        self._cap = cap

    def note(self, entry_id: str, exc: BaseException) -> bool:
        """Remember ``exc`` as the entry's last failure; true on the first misconfiguration noted for it."""
        before = self._errors.get(entry_id)
        configuration = isinstance(exc, ConfigurationError)
        reported = before is not None and before.reported
        self._errors[entry_id] = _Last(
            f"{type(exc).__name__}: {exc}", configuration, reported or configuration
        )
        self._errors.move_to_end(entry_id)
        while len(self._errors) > self._cap:
            self._errors.popitem(last=False)
        return configuration and not reported

    def misconfigured(self, entry_id: str) -> bool:
        """Whether the entry's last failure was a :class:`ConfigurationError`."""
        last = self._errors.get(entry_id)
        return last is not None and last.configuration

    def pop(self, entry_id: str) -> str | None:
        """The entry's last failure, forgotten from now on."""
        last = self._errors.pop(entry_id, None)
        return last.message if last is not None else None


class Redelivery:
    """What to do with a reclaimed entry: process it again, or dead-letter it after too many tries."""

    def __init__(
        self, *, stream: str, max_deliveries: int, process: Process, give_up: GiveUp, errors: LastErrors
    ) -> None:
        self._stream = stream
        self._max = max_deliveries
        self._process = process
        self._give_up = give_up
        self._errors = errors

    def note_failure(self, entry_ids: Sequence[str], exc: BaseException) -> None:
        """Record a failure seen outside :meth:`handle` (an entry's first delivery) for ``entry_ids``."""
        for entry_id in entry_ids:
            self._note(entry_id, exc)

    async def handle(self, entry: StreamEntry, deliveries: int) -> None:
        """Process ``entry`` on its ``deliveries``-th delivery; raise to leave it pending.

        Past ``MAX_DELIVERIES`` the entry is dead-lettered, unless its last failure was a
        misconfiguration: then it is processed again (and stays pending while that fails).
        """
        if deliveries > self._max and not self._errors.misconfigured(entry.entry_id):
            await self._give_up(entry, deliveries, self._errors.pop(entry.entry_id))
            return
        REDELIVERIES.labels(stream=self._stream).inc()
        log.info("entry_redelivered", stream=self._stream, entry_id=entry.entry_id, deliveries=deliveries)
        try:
            await self._process(entry, deliveries)
        except Exception as exc:
            self._note(entry.entry_id, exc)
            raise
        self._errors.pop(entry.entry_id)

    def _note(self, entry_id: str, exc: BaseException) -> None:
        first = self._errors.note(entry_id, exc)
        if not isinstance(exc, ConfigurationError):
            return
        CONFIGURATION_ERRORS.labels(stream=self._stream).inc()
        if first:
            log.error(
                "service_misconfigured",
                stream=self._stream,
                entry_id=entry_id,
                error=redact(str(exc)),
                message=(
                    f"the service is misconfigured: {redact(str(exc))}; "
                    "entries stay pending until it is fixed (they are not dead-lettered)"
                ),
            )


async def claim_idle(
    redis: Redis, *, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 100
) -> list[tuple[StreamEntry, int]]:
    """Claim up to ``count`` entries idle for ``min_idle_ms``; each with its delivery count."""
    _, claimed, *_ = await redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
    if not claimed:
        return []
    entries = [StreamEntry(stream, as_text(raw_id), dict(fields)) for raw_id, fields in claimed]
    # one XPENDING over the claimed range, for this consumer, gives every delivery count at once
    pending = await redis.xpending_range(
        stream,
        group,
        min=entries[0].entry_id,
        max=entries[-1].entry_id,
        count=len(entries),
        consumername=consumer,
    )
    counts = {as_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
    for e in entries:  # other entries of ours inside the range may have used up the count
        if e.entry_id not in counts:
            one = await redis.xpending_range(stream, group, min=e.entry_id, max=e.entry_id, count=1)
            counts[e.entry_id] = int(one[0]["times_delivered"]) if one else 1
    return [(e, counts[e.entry_id]) for e in entries]
