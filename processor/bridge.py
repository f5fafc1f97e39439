"""The bridge: moves legacy ``LPUSH`` jobs from the list onto the jobs stream, atomically.

One Lua script pops from the list's right end (oldest first, so the list stays FIFO) and appends
each element to the jobs stream with the server's clock; Redis runs a script as one command, so a
crash can neither lose a job (popped but not appended) nor double it (appended but not popped).

When the list is empty the bridge blocks on ``BLMOVE list list RIGHT RIGHT``: with source equal
to destination that is a no-op rotation, so it wakes the bridge the moment a job arrives without
taking it; the script then moves it. No polling loop, no processing list, no duplicate window.

A Redis error (a restart, a failover, a network blip) does not end :meth:`Bridge.run`: it is
logged and retried with a capped exponential back-off until ``stop``, so a Redis restart neither
crashes the bridge role nor, in the all-in-one role, the worker and the API beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from finally_indexer.core.errors import redact
from finally_indexer.core.metrics import JOBS_BRIDGED

__all__ = ["MOVE_SCRIPT", "Bridge"]

log = structlog.get_logger(__name__)

#: Jobs moved per script call: Redis runs a script alone, so a short script keeps other clients'
#: latency low, while 100 XADDs (~0.1 ms) still drain a backlog of 10k jobs in ~100 calls.
MOVE_BATCH: Final = 100
#: Seconds one BLMOVE wake-up waits before the loop re-checks ``stop``; only bounds shutdown
#: latency when the list stays empty (stop also interrupts the wait directly).
WAKE_TIMEOUT_S: Final = 1
#: Seconds before the first retry after a Redis error; doubled after each further failure.
RETRY_FIRST_S: Final = 0.1
#: Cap of that back-off: a restarted Redis is picked up within a few seconds, and a long outage
#: costs one connection attempt (and one warning) per this many seconds.
RETRY_MAX_S: Final = 5.0

#: KEYS[1] = legacy list, KEYS[2] = jobs stream, ARGV[1] = how many to move at most.
#: ``received_ms`` is built from TIME's seconds and microseconds as a string: Lua 5.1 numbers
#: would print a millisecond timestamp in exponent form.
MOVE_SCRIPT: Final = """
local t = redis.call('TIME')
local ms = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local moved = 0
for _ = 1, tonumber(ARGV[1]) do
  local job = redis.call('RPOP', KEYS[1])
  if not job then break end
  redis.call('XADD', KEYS[2], '*', 'payload', job, 'source', 'legacy', 'received_ms', ms, 'v', '1')
  moved = moved + 1
end
return moved
"""


class Bridge:
    """Moves jobs from ``list_key`` to ``stream_key`` (both keys must share a Cluster hash slot)."""

    def __init__(self, redis: Redis, *, list_key: str, stream_key: str, batch: int = MOVE_BATCH) -> None:
        self._redis = redis
        self._list = list_key
        self._stream = stream_key
        self._batch = batch
        self._script = redis.register_script(MOVE_SCRIPT)

    async def move(self) -> int:
        """Move up to one batch of jobs; return how many were moved (0 when the list is empty)."""
        moved = int(await self._script(keys=[self._list, self._stream], args=[self._batch]))
        if moved:
            JOBS_BRIDGED.inc(moved)
            log.debug("jobs_bridged", n=moved, stream=self._stream)
        return moved

    async def drain(self) -> int:
        """Move every job currently in the list; return how many were moved."""
        total = 0
        while moved := await self.move():
            total += moved
        return total

    async def wait_for_job(self, wait_s: int = WAKE_TIMEOUT_S) -> bool:
        """Block until the list holds a job (without taking it) or ``wait_s`` seconds pass."""
        found = await self._redis.blmove(self._list, self._list, wait_s, "RIGHT", "RIGHT")
        return found is not None

    async def run(self, stop: asyncio.Event) -> None:
        """Move jobs as they arrive until ``stop`` is set."""
        log.info("bridge_started", list=self._list, stream=self._stream)
        backoff = RETRY_FIRST_S
        while not stop.is_set():
            try:
                if not await self.drain():
                    await self._wait_or_stop(stop)
            except RedisError as exc:
                log.warning("bridge_redis_error", error=redact(repr(exc)), retry_in_s=backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            backoff = RETRY_FIRST_S
        log.info("bridge_stopped", list=self._list)

    async def _wait_or_stop(self, stop: asyncio.Event) -> None:
        # Cancelling a pending BLMOVE is harmless: the rotation moves nothing.
        waiter = asyncio.ensure_future(self.wait_for_job())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, stopper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
