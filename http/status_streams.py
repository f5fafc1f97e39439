"""For ``/status``: a Redis stream and its consumer group (length, lag, pending, consumers).

Every figure, the age of the oldest pending entry too, comes from Redis itself (XLEN, XINFO
GROUPS/CONSUMERS, XPENDING), so every process that asks sees the same numbers.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from finally_indexer.core.streams import StreamGroup, as_text
from finally_indexer.schemas.status import GroupStats, StreamStats

#: A consumer that touched the group (read, claim, ack) less than this long ago counts as alive.
#: Subscribers poll with blocking reads of a few seconds, so a live one stays far below it.
CONSUMER_ALIVE_MS = 30_000
#: When Redis cannot tell the lag (``null`` after an XDEL), count undelivered entries up to this
#: many with one XRANGE; past it, fall back to the entries-added minus entries-read estimate.
LAG_COUNT_CAP = 10_000


async def stream_stats(redis: Redis, pair: StreamGroup) -> StreamStats:
    """Length of the stream and the state of its group (zeros when either does not exist)."""
    name, role, group = pair.stream, pair.role, pair.group
    length = int(await redis.xlen(name))
    try:
        groups = await redis.xinfo_groups(name)
    except ResponseError:  # no such key: the stream was never written
        groups = []
    info = next((g for g in groups if as_text(g["name"]) == group), None)
    if info is None:
        return StreamStats(name, role, length, GroupStats(group, False, length, True, 0, 0.0, 0.0, 0, 0))
    lag, exact = await _lag(redis, name, info)
    idle, age = await _oldest_pending(redis, name, group) if info["pending"] else (0.0, 0.0)
    alive, total = await _consumers(redis, name, group)
    pending = int(info["pending"])
    return StreamStats(
        name, role, length, GroupStats(group, True, lag, exact, pending, idle, age, total, alive)
    )


async def _lag(redis: Redis, name: str, info: dict[str, Any]) -> tuple[int, bool]:
    if info.get("lag") is not None:
        return int(info["lag"]), True
    last = as_text(info["last-delivered-id"])
    undelivered = await redis.xrange(name, min=f"({last}", max="+", count=LAG_COUNT_CAP) or []
    if len(undelivered) < LAG_COUNT_CAP:
        return len(undelivered), True
    stream = await redis.xinfo_stream(name)
    read = info.get("entries-read") or 0
    return max(len(undelivered), int(stream["entries-added"]) - int(read)), False


async def _oldest_pending(redis: Redis, name: str, group: str) -> tuple[float, float]:
    """Seconds since the oldest pending entry (by id) was last delivered, and since it was added.

    The idle time is reset by every heartbeat and every claim; the age (from the entry id's
    millisecond part, against Redis' own clock) is what the work has waited in all.
    """
    first = await redis.xpending_range(name, group, min="-", max="+", count=1)
    if not first:
        return 0.0, 0.0
    seconds, micros = await redis.time()
    added_ms = int(as_text(first[0]["message_id"]).split("-", 1)[0])
    age = max(0.0, seconds + micros / 1e6 - added_ms / 1000)
    return float(first[0]["time_since_delivered"]) / 1000.0, round(age, 3)


async def _consumers(redis: Redis, name: str, group: str) -> tuple[int, int]:
    consumers = await redis.xinfo_consumers(name, group)
    alive = sum(1 for c in consumers if int(c["idle"]) < CONSUMER_ALIVE_MS)
    return alive, len(consumers)
