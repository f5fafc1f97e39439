"""Adaptive concurrency for embedding requests: AIMD within a configured maximum.

A worker process should keep exactly as many requests in flight as the rate budget can pay for:
too few and latency, not the budget, sets the pace (at 2 s per request, two in flight use a third
of a 5M tokens/min budget); too many and requests only wait for the budget, holding texts that
could have been packed into one request. The limiter learns the number:

- **additive increase**: a request sent while every slot was busy (more work was waiting: latency
  is the limit) and not held by the budget, answered without error → one more slot; until the
  first overload or the first request the budget held, the limit doubles instead (slow start, as
  in TCP: a worker reaches the concurrency a 2 s latency needs in a few round trips, not dozens);
- **multiplicative decrease**: a 429, a 5xx or a timeout → the slots are halved (at least one);
- a request the budget held, or sent with a slot to spare, changes nothing: the budget (or the
  work available), not concurrency, is the limit.

:meth:`AdaptiveLimiter.record` is the pure rule (tests drive it directly); :meth:`acquire` and
:meth:`release` wrap it around real requests.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from finally_indexer.core import metrics

__all__ = ["AdaptiveLimiter", "Outcome", "Slot"]


class Outcome(enum.Enum):
    """How a request ended, as far as concurrency is concerned."""

    OK = "ok"
    OVERLOAD = "overload"  # 429, 5xx, timeout: the server or the budget wants fewer
    OTHER = "other"  # a rejected input, a configuration error: says nothing about load


@dataclass(slots=True)
class Slot:
    """One request's place: whether it found every slot busy, and whether the budget held it."""

    saturated: bool
    held: bool = False
    outcome: Outcome = Outcome.OTHER


class AdaptiveLimiter:
    """Requests in flight in this process, between 1 and ``maximum``; starts at ``initial``."""

    def __init__(self, *, maximum: int, initial: int = 1) -> None:
        self.maximum = maximum
        self.limit = max(1, min(initial, maximum))
        self.in_flight = 0
        self.slow_start = True
        self._changed = asyncio.Condition()
        self._publish()

    @property
    def busy(self) -> bool:
        """Every slot is taken: a request now would wait."""
        return self.in_flight >= self.limit

    def record(self, slot: Slot) -> int:
        """Apply one finished request to the limit (the AIMD rule); the new limit."""
        if slot.outcome is Outcome.OVERLOAD:
            self.slow_start = False
            self.limit = max(1, self.limit // 2)
        elif slot.outcome is Outcome.OK and slot.held:
            self.slow_start = False  # the budget binds: more slots would only wait
        elif slot.outcome is Outcome.OK and slot.saturated:
            grown = self.limit * 2 if self.slow_start else self.limit + 1
            self.limit = min(self.maximum, grown)
        self._publish()
        return self.limit

    async def acquire(self, *, saturated: bool) -> Slot:
        """Wait for a free slot; ``saturated`` says whether work was already waiting for one."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        self._publish()
        return Slot(saturated=saturated)

    async def release(self, slot: Slot) -> None:
        """Give the slot back and apply its outcome."""
        async with self._changed:
            self.in_flight -= 1
            self.record(slot)
            self._changed.notify_all()

    def _publish(self) -> None:
        metrics.EMBED_CONCURRENCY.set(self.limit)
        metrics.EMBED_IN_FLIGHT.set(self.in_flight)
