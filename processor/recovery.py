"""Self-healing after broker data loss: Redis is transport, PostgreSQL the record of progress.

A flushed Redis (a restart without its AOF, a failover to an empty replica) deletes both work
streams with their consumer groups. FastStream 0.7.8 then stops every subscriber for good
(``StreamGroupNotFoundError``, logged once); nothing would recreate the groups, and a job bridged
afterwards would sit in a stream nobody reads. The :class:`BrokerSupervisor` of a worker checks
every :data:`RECOVERY_CHECK_S` that its subscribers run and that both groups exist; when either
is not so it stops the broker, recreates the groups at id 0 (``MKSTREAM``), starts a new broker
and re-publishes what PostgreSQL says is unfinished (:func:`republish_unfinished`). A worker that
fails :data:`RECOVERY_ATTEMPTS` recoveries in a row raises :class:`BrokerUnrecoverable`, so the
process exits non-zero and its own supervisor (compose ``restart:``) starts it again; while Redis
or PostgreSQL is unreachable it waits instead (that is an outage, not a failed recovery).

Re-publishing is safe because the indexer counts a batch once (its row leaves ``pending`` once)
and a job entry planned twice finds its plan: a duplicate costs time, never a double count.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import structlog
from faststream.redis import RedisBroker
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from finally_indexer.core.errors import BrokerUnrecoverable
from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamGroup, as_text, work_groups
from finally_indexer.db import jobs
from finally_indexer.processor.broker import ensure_groups
from finally_indexer.processor.enqueue import append_job
from finally_indexer.processor.planner import Planner
from finally_indexer.schemas.jobs import Operation

__all__ = [
    "RECOVERY_ATTEMPTS",
    "RECOVERY_CHECK_S",
    "BrokerSupervisor",
    "Republished",
    "missing_groups",
    "republish_unfinished",
]

log = structlog.get_logger(__name__)

#: Seconds between two checks of a worker (two XINFO GROUPS and a look at its own subscribers):
#: cheap, and the longest a flush goes unnoticed.
RECOVERY_CHECK_S: Final = 1.0
#: Failed recoveries in a row after which the worker gives up and exits non-zero (about this many
#: seconds of trying): a restart of the process is then the better chance.
RECOVERY_ATTEMPTS: Final = 5
#: Pause after a start of the subscribers timed out (FastStream's 3 s for the first PING), doubled
#: after each further timeout up to START_RETRY_MAX_S: a stall is waited out, never given up on.
START_RETRY_FIRST_S: Final = 1.0
START_RETRY_MAX_S: Final = 30.0


async def missing_groups(redis: Redis, settings: Settings) -> list[StreamGroup]:
    """The work streams whose consumer group does not exist (nothing consumes them)."""
    missing: list[StreamGroup] = []
    for pair in work_groups(settings):
        try:
            groups = await redis.xinfo_groups(pair.stream)
        except ResponseError:  # no such key: the stream (and so its group) is gone
            groups = []
        if not any(as_text(g["name"]) == pair.group for g in groups):
            missing.append(pair)
    return missing


@dataclass(frozen=True, slots=True)
class Republished:
    """What :func:`republish_unfinished` put back on the streams."""

    batches: int
    jobs: int


async def republish_unfinished(
    pool: asyncpg.Pool[Any], redis: Redis, planner: Planner, *, jobs_stream: str
) -> Republished:
    """Re-publish every pending batch of every running job, and the entry of every unplanned job."""
    by_job: dict[str, list[asyncpg.Record]] = {}
    for row in await jobs.unfinished_batches(pool):
        by_job.setdefault(row["job_id"], []).append(row)
    for job_id, rows in by_job.items():
        first = rows[0]
        batches = [(int(r["seq"]), [int(i) for i in r["product_ids"]]) for r in rows]
        await planner.publish(
            job_id, Operation(first["operation"]), bool(first["force"]), batches,
            received_ms=int(first["received_ms"]),
        )  # fmt: skip
    unplanned = await jobs.unplanned_jobs(pool)
    for job in unplanned:
        await jobs.set_stream_entry(pool, job.job_id, await append_job(redis, jobs_stream, job))
    done = Republished(batches=sum(len(r) for r in by_job.values()), jobs=len(unplanned))
    log.info("unfinished_work_republished", batches=done.batches, jobs=done.jobs, job_ids=list(by_job))
    return done


class BrokerSupervisor:
    """Runs a worker's broker and rebuilds it whenever its groups or subscribers are gone."""

    def __init__(
        self, *, redis: Redis, settings: Settings, build: Callable[[], RedisBroker],
        republish: Callable[[], Awaitable[object]], check_s: float = RECOVERY_CHECK_S, attempts: int = RECOVERY_ATTEMPTS,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._settings = settings
        self._build = build
        self._republish = republish
        self._check_s = check_s
        self._attempts = attempts
        self._broker: RedisBroker | None = None

    async def start(self, *, republish: bool = False, stop: asyncio.Event | None = None) -> None:
        """Start a broker; ``republish`` first puts back what PostgreSQL says is unfinished.

        FastStream gives each subscriber a fixed 3 s for its first PING and raises ``TimeoutError``
        past it: a process or a Redis stalled that long (a loaded machine) is an outage, not a
        failure, so the half-started broker is stopped and a new one started after a pause
        (``START_RETRY_FIRST_S``, doubling up to ``START_RETRY_MAX_S``) until one starts or
        ``stop`` is set (then no broker runs; the caller is stopping anyway).
        """
        if republish:
            await self._republish()
        pause = START_RETRY_FIRST_S
        for attempt in itertools.count(1):
            self._broker = self._build()
            try:
                await self._broker.start()
                return
            except TimeoutError as exc:
                log.warning("broker_start_timed_out", attempt=attempt, retry_in_s=pause, error=repr(exc))
                await self.stop()
            if stop is None:
                await asyncio.sleep(pause)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                if stop.is_set():
                    return
            pause = min(pause * 2, START_RETRY_MAX_S)

    async def stop(self) -> None:
        """Stop reading, wait up to the grace time for handlers, cancel the rest (left pending)."""
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``check_s`` until ``stop``; raise :class:`BrokerUnrecoverable` after too many failures."""
        failures = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._check_s)
            if stop.is_set():
                return
            try:
                if await self._healthy():
                    failures = 0
                    continue
                await self._recover(stop)
                failures = 0
            except (RedisConnectionError, RedisTimeoutError, OSError, asyncpg.PostgresConnectionError) as exc:
                # Redis (or PostgreSQL) unreachable: nothing can recover now, and a restart of this
                # process would not help either — wait for it instead of giving up (and in the
                # all-in-one process, taking the API down with the worker)
                log.warning("broker_recovery_waiting", reason="a dependency is unreachable", error=repr(exc))
            except (RedisError, asyncpg.PostgresError) as exc:
                failures += 1
                log.warning("broker_recovery_failed", attempt=failures, error=repr(exc))
                if failures >= self._attempts:
                    raise BrokerUnrecoverable(f"no recovery after {failures} attempts: {exc!r}") from exc

    async def _healthy(self) -> bool:
        stopped = [] if self._broker is None else [s for s in self._broker.subscribers if not s.running]
        missing = await missing_groups(self._redis, self._settings)
        if self._broker is not None and not stopped and not missing:
            return True
        log.warning(
            "broker_data_lost",
            missing_groups=[f"{p.group} on {p.stream}" for p in missing],
            stopped_subscribers=len(stopped),
            message="consumer groups or subscribers are gone (Redis flushed or failed over?): recovering",
        )
        return False

    async def _recover(self, stop: asyncio.Event) -> None:
        await self.stop()
        created = await ensure_groups(self._redis, self._settings)
        await self.start(republish=True, stop=stop)
        log.info("broker_recovered", groups_created=[f"{p.group} on {p.stream}" for p in created])
