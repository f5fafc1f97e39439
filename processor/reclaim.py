"""Redelivery: entries left pending by a dead or failing consumer are claimed and processed again.

An entry pending longer than ``RECLAIM_IDLE_MS`` is claimed (``XAUTOCLAIM``, which counts one more
delivery); at most ``MAX_DELIVERIES`` deliveries are attempted, then the entry is dead-lettered
with the last error this process saw for it. In the workers the claiming is done by FastStream
(``StreamSub(min_idle_time=...)``, see ``broker.py``); :func:`claim_idle` does the same for the
drain mode used by tests and benchmarks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final

import structlog
from redis.asyncio import Redis

from finally_indexer.core.metrics import REDELIVERIES
from finally_indexer.processor.deadletter import StreamEntry

__all__ = ["LastErrors", "Redelivery", "claim_idle"]

log = structlog.get_logger(__name__)

#: Errors remembered per entry id for the dead letter's message; bounded so a storm of failures
#: cannot grow memory (an entry forgotten here is dead-lettered with a generic message).
LAST_ERRORS_CAP: Final = 10_000

Process = Callable[[StreamEntry, int], Awaitable[None]]
GiveUp = Callable[[StreamEntry, int, str | None], Awaitable[None]]


class LastErrors:
    """The last failure seen for each entry id (bounded, oldest forgotten first)."""

    def __init__(self, cap: int = LAST_ERRORS_CAP) -> None:
        self._errors: OrderedDict[str, str] = OrderedDict()
        self._cap = cap

    def note(self, entry_id: str, exc: BaseException) -> None:
        """Remember ``exc`` as the entry's last failure."""
        self._errors[entry_id] = f"{type(exc).__name__}: {exc}"
        self._errors.move_to_end(entry_id)
        while len(self._errors) > self._cap:
            self._errors.popitem(last=False)

    def pop(self, entry_id: str) -> str | None:
        """The entry's last failure, forgotten from now on."""
        return self._errors.pop(entry_id, None)


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

    async def handle(self, entry: StreamEntry, deliveries: int) -> None:
        """Process ``entry`` on its ``deliveries``-th delivery; raise to leave it pending."""
        if deliveries > self._max:
            await self._give_up(entry, deliveries, self._errors.pop(entry.entry_id))
            return
        REDELIVERIES.labels(stream=self._stream).inc()
        log.info("entry_redelivered", stream=self._stream, entry_id=entry.entry_id, deliveries=deliveries)
        try:
            await self._process(entry, deliveries)
        except Exception as exc:
            self._errors.note(entry.entry_id, exc)
            raise
        self._errors.pop(entry.entry_id)


async def claim_idle(
    redis: Redis, *, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 100
) -> list[tuple[StreamEntry, int]]:
    """Claim up to ``count`` entries idle for ``min_idle_ms``; each with its delivery count."""
    _, claimed, *_ = await redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
    out: list[tuple[StreamEntry, int]] = []
    for raw_id, fields in claimed:
        entry_id = raw_id.decode()
        pending = await redis.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
        deliveries = int(pending[0]["times_delivered"]) if pending else 1
        out.append((StreamEntry(stream, entry_id, dict(fields)), deliveries))
    return out
