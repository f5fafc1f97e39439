"""The composition root: settings → connections (PostgreSQL, Redis, vector store, embedder) → pipeline.

:class:`Connections` opens what the settings name (and closes only what it opened: a test or the
all-in-one process may hand in its own). :class:`Pipeline` wires the stream side's components on
them — events, dead letters, bridge, planner, indexer, and the consume path with one lane per work
stream — and runs it either as FastStream subscribers (:meth:`Pipeline.broker`, a worker) or
in drain mode (:meth:`Pipeline.drain`, tests and benchmarks: the same consume path in a loop that
returns when everything queued is done).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from finally_indexer.core.redis_client import open_redis
from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry, StreamGroup, batch_group, jobs_group
from finally_indexer.db.pool import create_pool
from finally_indexer.processor.breaker import BreakerBoard, Breakers, board_key
from finally_indexer.processor.bridge import Bridge
from finally_indexer.processor.broker import build_broker, consumer_name, ensure_groups
from finally_indexer.processor.consume import Consumer, Lane
from finally_indexer.processor.deadletter import DeadLetters
from finally_indexer.processor.dependencies import Dependency
from finally_indexer.processor.drain import DrainReport, drain
from finally_indexer.processor.embedders.factory import build_embedder
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.events import EventLog
from finally_indexer.processor.generations import Generations
from finally_indexer.processor.indexer import Indexer
from finally_indexer.processor.outbox import relay_soon
from finally_indexer.processor.planner import Planner
from finally_indexer.processor.recovery import Republished, republish_unfinished
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.stores.generations import family_of
from finally_indexer.processor.texts import template_hash
from finally_indexer.processor.vectorstore import CollectionIdentity, VectorStore

__all__ = ["Connections", "DrainReport", "Pipeline", "collection_identity"]

_Close = Callable[[], Awaitable[Any]]

#: The planner reads PostgreSQL and writes Redis; it never waits on the vector store or the embedder.
PLANNER_NEEDS = frozenset({Dependency.POSTGRES, Dependency.REDIS})

#: No Redis call of a worker waits forever on a dead connection: the longest blocking call is the
#: bridge's 1 s BLMOVE wake-up, so 30 s means the connection is gone, not that the server is busy.
WORKER_REDIS_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 5.0, "socket_timeout": 30.0}


@dataclass(slots=True)
class Connections:
    """PostgreSQL, Redis, the vector store and (for workers) the embedder."""

    pool: asyncpg.Pool[Any]
    redis: Redis
    store: VectorStore
    embedder: Embedder | None
    _owned: list[_Close] = field(default_factory=list, repr=False)

    @classmethod
    async def open(
        cls, settings: Settings, *, redis: Redis | None = None, pool: asyncpg.Pool[Any] | None = None,
        store: VectorStore | None = None, embedder: Embedder | None = None, with_embedder: bool = True,
        redis_options: dict[str, Any] | None = None,
    ) -> Connections:  # fmt: skip
        """Open what is not given; ``with_embedder=False`` for processes that never embed (the API).

        Nothing here checks the collection: only :meth:`Pipeline.open` (a writer) does, so the API
        neither refuses a collection nor records anything in it.
        """
        owned: list[_Close] = []
        try:
            if redis is None:
                redis = open_redis(settings, **(redis_options or {}))
                owned.append(redis.aclose)
            if pool is None:
                pool = await create_pool(settings)
                owned.append(pool.close)
            if store is None:
                store = build_vector_store(settings)
                owned.append(store.aclose)
            if embedder is None and with_embedder:
                embedder = build_embedder(settings, redis=redis)
                owned.append(embedder.aclose)
        except BaseException:
            await _close_all(owned)
            raise
        return cls(pool, redis, store, embedder, owned)

    async def aclose(self) -> None:
        """Close what :meth:`open` opened, last first (given connections are left to their owner)."""
        await _close_all(self._owned)


async def _close_all(closers: list[_Close]) -> None:
    for close in reversed(closers):
        with contextlib.suppress(Exception):  # closing is best effort: one failure keeps no other open
            await close()
    closers.clear()


def collection_identity(settings: Settings, embedder: Embedder) -> CollectionIdentity:
    """What the collection a writer uses must have been built with: the embedder's model,
    ``VECTOR_SIZE`` and the hash of ``TEXT_TEMPLATE``."""
    return CollectionIdentity(
        model=embedder.model,
        dimensions=settings.vector_size,
        template_hash=template_hash(settings.text_template),
    )


def _generations(
    settings: Settings, conns: Connections, events: EventLog, dead: DeadLetters
) -> Generations | None:
    """The generations behind the served store (None when the store has none)."""
    family = family_of(conns.store)
    if family is None:
        return None
    embedder = _require_embedder(conns)

    def make_indexer(store: VectorStore, model: Embedder, own: Settings) -> Indexer:
        return Indexer(
            pool=conns.pool, store=store, embedder=model, events=events, dead_letters=dead,
            text_template=own.text_template, usd_per_million_tokens=settings.usd_per_million_tokens(model.model),
        )  # fmt: skip

    return Generations(
        pool=conns.pool, redis=conns.redis, settings=settings, family=family, embedder=embedder,
        identity=collection_identity(settings, embedder), make_indexer=make_indexer,
    )  # fmt: skip


def _require_embedder(conns: Connections) -> Embedder:
    if conns.embedder is None:
        raise ValueError("a pipeline needs an embedder")
    return conns.embedder


@dataclass(slots=True)
class Pipeline:
    """The components of the stream side, wired on one set of connections."""

    settings: Settings
    connections: Connections
    events: EventLog
    dead_letters: DeadLetters
    bridge: Bridge
    planner: Planner
    indexer: Indexer
    consumer: Consumer
    planner_lane: Lane
    indexer_lane: Lane
    #: The generations behind the served name (None: a store without them, e.g. a plain shard).
    generations: Generations | None = None
    #: The groups :meth:`open` had to create: on a Redis that lost its data, unfinished work in
    #: PostgreSQL must be re-published (on a first start there is none).
    groups_created: tuple[StreamGroup, ...] = ()

    @classmethod
    async def open(
        cls, settings: Settings, *, redis: Redis | None = None, pool: asyncpg.Pool[Any] | None = None,
        store: VectorStore | None = None, embedder: Embedder | None = None,
    ) -> Pipeline:  # fmt: skip
        """Connect what is not given, create the collection and the groups, wire the components.

        The collection must have been built with this embedder's model, ``VECTOR_SIZE`` and
        ``TEXT_TEMPLATE`` (:func:`collection_identity`); another one raises
        :class:`~finally_indexer.core.errors.ConfigurationError` before anything is consumed.
        """
        conns = await Connections.open(
            settings,
            redis=redis,
            pool=pool,
            store=store,
            embedder=embedder,
            redis_options=WORKER_REDIS_OPTIONS,
        )
        pipeline = cls.wire(settings, conns)
        try:
            if pipeline.generations is not None:
                # records (or adopts) the serving generation and checks this process's identity
                await pipeline.generations.open_serving(pipeline.indexer)
            else:
                await conns.store.ensure_collection(collection_identity(settings, _require_embedder(conns)))
            created = await ensure_groups(conns.redis, settings)
        except BaseException:
            await pipeline.aclose()
            raise
        pipeline.groups_created = tuple(created)
        return pipeline

    @classmethod
    def wire(cls, settings: Settings, conns: Connections) -> Pipeline:
        """The components on ``conns`` (no I/O)."""
        embedder = _require_embedder(conns)
        redis, pool = conns.redis, conns.pool
        events = EventLog(redis, settings.events_stream)
        dead = DeadLetters(redis, pool, events, stream=settings.dead_letter_stream)
        planner = Planner(
            redis=redis, pool=pool, events=events, dead_letters=dead,
            batch_stream=settings.batch_stream, batch_size=settings.batch_size,
            max_payload_bytes=settings.legacy_payload_max_bytes,
        )  # fmt: skip
        indexer = Indexer(
            pool=pool, store=conns.store, embedder=embedder, events=events, dead_letters=dead,
            text_template=settings.text_template,
            usd_per_million_tokens=settings.usd_per_million_tokens(embedder.model),
        )  # fmt: skip
        name = consumer_name(settings)
        breakers = Breakers(
            failures=settings.breaker_failures, open_s=settings.breaker_open_s,
            board=BreakerBoard(redis, consumer=name, key=board_key(settings.jobs_stream)),
        )  # fmt: skip
        consumer = Consumer(
            redis, consumer=name, max_deliveries=settings.max_deliveries,
            reclaim_idle_ms=settings.reclaim_idle_ms, handler_max_s=settings.handler_max_s,
            breakers=breakers, max_age_s=settings.work_max_age_s,
        )  # fmt: skip
        planner_lane = Lane(
            jobs_group(settings), process=lambda entry, _n: planner.handle(entry), give_up=dead.exhausted_job,
            needs=PLANNER_NEEDS,
        )  # fmt: skip
        generations = _generations(settings, conns, events, dead)
        process: Callable[[StreamEntry, int], Awaitable[None]] = (
            (lambda entry, n: indexer.handle(entry, deliveries=n))
            if generations is None
            else (lambda entry, n: generations.handle(entry, indexer, deliveries=n))
        )
        indexer_lane = Lane(
            batch_group(settings), process=process, give_up=dead.exhausted_batch,
            concurrency=settings.batches_in_flight(),
        )  # fmt: skip
        bridge = Bridge(redis, list_key=settings.legacy_list, stream_key=settings.jobs_stream)
        return cls(
            settings, conns, events, dead, bridge, planner, indexer, consumer, planner_lane, indexer_lane,
            generations,
        )  # fmt: skip

    @property
    def redis(self) -> Redis:
        """The pipeline's Redis client."""
        return self.connections.redis

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        """The pipeline's PostgreSQL pool."""
        return self.connections.pool

    @property
    def store(self) -> VectorStore:
        """The vector store the indexer writes."""
        return self.connections.store

    def broker(self) -> RedisBroker:
        """A FastStream broker whose subscribers feed this pipeline's lanes (not started)."""
        return build_broker(
            self.settings, self.consumer, planner=self.planner_lane, indexer=self.indexer_lane
        )

    async def republish_unfinished(self) -> Republished:
        """Put back on the streams what PostgreSQL says is unfinished (see :mod:`.recovery`)."""
        return await republish_unfinished(
            self.pool, self.redis, self.planner, jobs_stream=self.settings.jobs_stream
        )

    async def drain(self, *, timeout_s: float = 60.0) -> DrainReport:
        """Process everything queued, then relay the events outbox once (what a worker's
        :func:`~.outbox.run_relay` does), and return (see :func:`~.drain.drain`)."""
        report = await drain(
            self.bridge, self.consumer, (self.planner_lane, self.indexer_lane),
            legacy_list=self.settings.legacy_list, reclaim_idle_ms=self.settings.reclaim_idle_ms,
            timeout_s=timeout_s,
        )  # fmt: skip
        await relay_soon(self.pool, self.events)
        return report

    async def aclose(self) -> None:
        """Close the connections :meth:`open` opened (after the breaker reports in flight)."""
        if self.consumer.breakers is not None:
            await self.consumer.breakers.aclose()
        if self.generations is not None:
            await self.generations.aclose()
        await self.connections.aclose()
