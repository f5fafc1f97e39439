"""Housekeeping of the work streams: trim what every consumer is done with, forget dead consumers.

Redis 7 has no ``XTRIM ... ACKED`` (8.2+) and ``XTRIM`` ignores consumer groups, so the safe
bound is computed here: an entry may go only when it is older than both the group's oldest
pending entry and its last-delivered id (nothing undelivered or unacknowledged is ever removed),
and older than ``STREAM_RETENTION_S`` (acknowledged entries stay that long as an audit log).

Tombstones of deleted listings older than ``TOMBSTONE_RETENTION_S`` are forgotten in the same round,
and so are failures resolved more than ``FAILURE_RETENTION_S`` ago and jobs (with their batches)
finished more than ``JOB_RETENTION_S`` ago — :data:`PRUNE_BATCH` rows per statement, so no delete
holds locks or writes WAL for long. Open failures and unfinished jobs are never pruned.

Every worker restart leaves a consumer name (``hostname-pid``) behind in the group; one idle for
longer than :data:`DEAD_CONSUMER_IDLE_MS` that holds no pending entry is deleted — deleting a
consumer with nothing pending loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from finally_indexer.core.errors import TransientError
from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import as_text, work_groups
from finally_indexer.db import failures, jobs, tombstones
from finally_indexer.processor.enqueue import append_requeued

__all__ = [
    "DEAD_CONSUMER_IDLE_MS",
    "HOUSEKEEPING_INTERVAL_S",
    "PRUNE_BATCH",
    "forget_dead_consumers",
    "prune_history",
    "run_housekeeping",
    "trim_stream",
]

log = structlog.get_logger(__name__)

#: Seconds between housekeeping rounds in a worker (several workers doing it at once is harmless).
HOUSEKEEPING_INTERVAL_S: Final = 60.0
#: A consumer silent this long (1 h) with nothing pending is a dead process's leftover name.
DEAD_CONSUMER_IDLE_MS: Final = 3_600_000
#: Rows deleted per statement when pruning history: a few ms of locks and WAL per statement.
PRUNE_BATCH: Final = 5_000


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def _safe_bound(redis: Redis, stream: str, group: str) -> str | None:
    """The smallest id the group still needs (oldest pending, else last delivered); None if no group."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # the stream does not exist yet
        return None
    info = next((g for g in groups if as_text(g["name"]) == group), None)
    if info is None:
        return None
    bound = as_text(info["last-delivered-id"])
    pending = await redis.xpending(stream, group)
    if pending["pending"]:
        bound = min(bound, as_text(pending["min"]), key=_id_key)
    return bound


async def trim_stream(
    redis: Redis, stream: str, group: str, *, retention_ms: int, now_ms: int | None = None
) -> int:
    """Remove entries the group is done with and older than the retention; return how many went."""
    bound = await _safe_bound(redis, stream, group)
    if bound is None:
        return 0
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cutoff = f"{max(now_ms - retention_ms, 0)}-0"
    min_id = min(bound, cutoff, key=_id_key)
    removed = int(await redis.xtrim(stream, minid=min_id, approximate=False))
    if removed:
        log.info("stream_trimmed", stream=stream, removed=removed, min_id=min_id)
    return removed


async def forget_dead_consumers(
    redis: Redis, stream: str, group: str, *, keep: str, idle_ms: int = DEAD_CONSUMER_IDLE_MS
) -> list[str]:
    """Delete consumers idle longer than ``idle_ms`` with no pending entry (never ``keep``)."""
    try:
        consumers = await redis.xinfo_consumers(stream, group)
    except ResponseError:
        return []
    gone = [
        as_text(c["name"])
        for c in consumers
        if int(c["pending"]) == 0 and int(c["idle"]) > idle_ms and as_text(c["name"]) != keep
    ]
    for name in gone:
        await redis.xgroup_delconsumer(stream, group, name)
    if gone:
        log.info("dead_consumers_forgotten", stream=stream, group=group, consumers=gone)
    return gone


async def housekeeping_round(
    redis: Redis, settings: Settings, *, consumer: str, pool: asyncpg.Pool[Any] | None = None
) -> None:
    """One round over the jobs and batch streams (and the tombstones, given a pool)."""
    retention_ms = settings.stream_retention_s * 1000
    for pair in work_groups(settings):
        await trim_stream(redis, pair.stream, pair.group, retention_ms=retention_ms)
        await forget_dead_consumers(redis, pair.stream, pair.group, keep=consumer)
    if pool is not None:
        pruned = await tombstones.prune(pool, older_than_s=settings.tombstone_retention_s)
        if pruned:
            log.info("tombstones_pruned", n=pruned)
        await prune_history(pool, settings)
        await append_requeued(pool, redis, jobs_stream=settings.jobs_stream)


async def prune_history(pool: asyncpg.Pool[Any], settings: Settings, *, batch: int = PRUNE_BATCH) -> None:
    """Delete resolved failures and finished jobs past their retention, ``batch`` rows at a time."""
    failures_gone = await _in_batches(
        lambda: failures.prune_resolved(pool, older_than_s=settings.failure_retention_s, limit=batch), batch
    )
    jobs_gone = await _in_batches(
        lambda: jobs.prune_finished(pool, older_than_s=settings.job_retention_s, limit=batch), batch
    )
    if failures_gone or jobs_gone:
        log.info("history_pruned", failures=failures_gone, jobs=jobs_gone)


async def _in_batches(step: Callable[[], Awaitable[int]], batch: int) -> int:
    """Run ``step`` until it deletes fewer than ``batch`` rows; the total deleted."""
    total = 0
    while (n := await step()) == batch:
        total += n
    return total + n


async def run_housekeeping(
    redis: Redis,
    settings: Settings,
    *,
    consumer: str,
    stop: asyncio.Event,
    pool: asyncpg.Pool[Any] | None = None,
) -> None:
    """Run :func:`housekeeping_round` every :data:`HOUSEKEEPING_INTERVAL_S` until ``stop``."""
    while not stop.is_set():
        try:
            await housekeeping_round(redis, settings, consumer=consumer, pool=pool)
        except (
            RedisError,
            asyncpg.PostgresError,
            OSError,
            TransientError,
        ) as exc:  # briefly down: next round
            log.warning("housekeeping_failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HOUSEKEEPING_INTERVAL_S)
