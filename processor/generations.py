"""Generations behind the served name, as the workers run them: which collections a batch writes,
with which embedder, and when the served name switches.

PostgreSQL (``index_generations``) is the record: the *serving* generation, at most one
*building* one, and *retired* ones kept for a rollback until ``REINDEX_KEEP_S`` has passed. Each
generation records the embedding settings its vectors are built with (``embedding``: embedder,
model, size, template, base URL; never a key), so any worker builds each generation's embedder
from the record — its own settings only supply the secrets and pick the identity of a first
generation. A worker whose own identity is none of the live generations' is refused at start-up.

**Routing** (:meth:`Generations.handle`, the indexer lane). A batch of the job building a
generation is indexed into that generation only, with the ordinary commit (progress, usage,
failures, events). Any other batch — a live sync, update or delete — is first *mirrored* into
every other live generation (building and retired: no commit), then indexed into the serving one
with the commit; so during a build and during the keep time every generation receives every
update, each embedded by its own model, and a failure anywhere leaves the entry pending as usual.

**Finishing** (:meth:`Generations.step`, every ``GENERATIONS_POLL_S`` in each worker). When the
build job has completed, the new generation is audited (with repair: drift is queued as ordinary
jobs, which reach it through the mirror); when no drift *holds the switch* the record switches in
one transaction and then the alias (or pointer) follows. A drifted listing edited after the
watermark of the build's previous audit (whose repairs have all finished; the audit's own for the
first) does not hold it: its sync is on its way, mirrored into both generations like any other
(see :meth:`Generations._in_flight_after`). Every other drifted listing does. A step also points
the alias at the record's serving generation (after a crash between the two, or a rollback
recorded by the CLI) and drops retired generations past their keep time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import structlog
from pydantic import ValidationError
from redis.asyncio import Redis

from finally_indexer.core import metrics
from finally_indexer.core.errors import ConfigurationError, redact
from finally_indexer.core.settings import EmbedderKind, Settings
from finally_indexer.core.streams import StreamEntry
from finally_indexer.db import audit as audit_queries
from finally_indexer.db import generations as records
from finally_indexer.db.generations import GenerationRow
from finally_indexer.processor.audit import AuditBusy, Auditor
from finally_indexer.processor.embedders.factory import build_embedder
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.indexer import Indexer
from finally_indexer.processor.stores.generations import AliasFamily, Family, generation_name
from finally_indexer.processor.texts import template_hash, version_of
from finally_indexer.processor.vectorstore import CollectionIdentity, VectorStore
from finally_indexer.schemas.messages import BatchMessage

__all__ = [
    "EMBEDDING_FIELDS",
    "GENERATIONS_POLL_S",
    "Generations",
    "NothingToRollBack",
    "ServingAuditor",
    "audit_requester",
    "embedding_record",
    "identity_of",
    "rollback",
    "row_identity",
    "settings_for",
]

log = structlog.get_logger(__name__)

#: Seconds between two steps of a worker's generations loop (finish a build, follow the record).
GENERATIONS_POLL_S: Final = 2.0
#: Audits of a completed build in a row whose drift holding the switch is more than ``DRIFT_NOISE``
#: before the build is given up.
MAX_BUILD_AUDITS: Final = 10
#: Seconds between the end of an audit of a build that found drift and the next one, plus that
#: audit's own duration: a build under constant updates is audited at most half the time.
REAUDIT_PAUSE_S: Final = 5.0
#: Share of the listings an audit of a build may find drifted (drift that holds the switch) without
#: counting toward giving up: an edit older than the watermark whose sync is still queued (a
#: pipeline behind by more than the time between two audits) holds it; the build keeps being audited
#: (and repaired) until one finds none.
DRIFT_NOISE: Final = 0.01
#: The settings a generation's vectors depend on, recorded with it (no secret among them).
EMBEDDING_FIELDS: Final = (
    "embedder",
    "embedding_model",
    "vector_size",
    "text_template",
    "openai_base_url",
    "embedding_max_input_tokens",
)

#: Placeholder time of a record not yet inserted (the database sets the real one).
_EPOCH: Final = datetime.fromtimestamp(0, UTC)

#: Builds the indexer of one generation: (store, embedder, the generation's settings).
MakeIndexer = Callable[[VectorStore, Embedder, Settings], Indexer]


def audit_requester(name: str) -> str:
    """The ``requested_by`` of the audits of build ``name`` (how its previous audit is found)."""
    return f"reindex {name}"


class NothingToRollBack(RuntimeError):
    """No retired generation is left to roll back to."""


def identity_of(settings: Settings) -> CollectionIdentity:
    """The identity a generation built with ``settings`` has."""
    return CollectionIdentity(
        model=settings.model_name(),
        dimensions=settings.vector_size,
        template_hash=template_hash(settings.text_template),
    )


def row_identity(row: GenerationRow) -> CollectionIdentity:
    return CollectionIdentity(model=row.model, dimensions=row.dimensions, template_hash=row.template_hash)


def embedding_record(settings: Settings) -> dict[str, Any]:
    """The embedding settings recorded with a generation (JSON values)."""
    record: dict[str, Any] = {}
    for name in EMBEDDING_FIELDS:
        value = getattr(settings, name)
        record[name] = value.value if isinstance(value, EmbedderKind) else value
    return record


def settings_for(settings: Settings, row: GenerationRow) -> Settings:
    """``settings`` with the generation's embedding settings (the process's secrets kept)."""
    update: dict[str, Any] = {name: row.embedding[name] for name in EMBEDDING_FIELDS if name in row.embedding}
    if "embedder" in update:
        update["embedder"] = EmbedderKind(update["embedder"])
    return settings.model_copy(update=update)


def new_row(
    settings: Settings, name: str, *, status: str, job_id: str | None = None,
    identity: CollectionIdentity | None = None,
) -> GenerationRow:  # fmt: skip
    """A generation record for ``settings`` (timestamps are the database's)."""
    identity = identity or identity_of(settings)
    return GenerationRow(
        name=name, served_as=settings.collection, status=status, model=identity.model,
        dimensions=identity.dimensions, template_hash=identity.template_hash,
        embedding=embedding_record(settings), job_id=job_id, error=None, created_at=_EPOCH,
        switched_at=None, retired_at=None, keep_until=None,
    )  # fmt: skip


async def rollback(pool: asyncpg.Pool[Any], settings: Settings) -> GenerationRow:
    """Make the generation retired last the serving one again (the record; the alias follows at
    the workers' next step, or at once through :meth:`Generations.follow`)."""
    candidate = await records.rollback_candidate(pool, settings.collection)
    if candidate is None:
        raise NothingToRollBack(
            f"no generation of {settings.collection!r} is kept for a rollback (none was replaced, "
            "or REINDEX_KEEP_S has passed and it was dropped)"
        )
    if not await records.promote(
        pool, settings.collection, candidate.name, from_status="retired", keep_s=settings.reindex_keep_s
    ):
        raise NothingToRollBack(f"generation {candidate.name} changed meanwhile; try again")
    log.warning("generation_rolled_back", served=settings.collection, generation=candidate.name)
    return candidate


class Generations:
    """One worker's view of the generations: their indexers, the routing and the finishing step."""

    def __init__(
        self, *, pool: asyncpg.Pool[Any], redis: Redis, settings: Settings, family: Family,
        embedder: Embedder, identity: CollectionIdentity, make_indexer: MakeIndexer,
    ) -> None:  # fmt: skip
        self._pool = pool
        self._redis = redis
        self._settings = settings
        self._family = family
        self._embedder = embedder  # the process's own: used for generations of its identity
        self._identity = identity
        self._make = make_indexer
        self._indexers: dict[str, Indexer] = {}
        self._owned: list[Embedder] = []  # embedders built from records, closed with this object
        self._opening = asyncio.Lock()
        self._audits: dict[str, int] = {}  # build -> audits that found drift
        self._repairs: dict[str, list[str]] = {}  # build -> repair jobs its last audit queued
        self._next_audit: dict[str, float] = {}  # build -> monotonic time its next audit may start

    @property
    def served(self) -> str:
        return self._settings.collection

    # --- start-up ---------------------------------------------------------------------------------
    async def open_serving(self, own: Indexer | None = None) -> GenerationRow:
        """Record the serving generation if none is (adopting a collection under the served name,
        or creating the first generation), refuse a process of another identity, follow the record.

        ``own`` (the pipeline's indexer, built with this process's embedder) becomes the indexer
        of the live generation of this process's identity, writing that generation's collection.
        """
        serving = await records.serving(self._pool, self.served)
        if serving is None:
            serving = await self._first_generation()
        live = await records.live(self._pool, self.served)
        if all(row_identity(g) != self._identity for g in live):
            raise ConfigurationError(
                f"collection {self.served!r} (generation {serving.name}) was built with "
                f"{row_identity(serving).describe()}; the settings ask for {self._identity.describe()}. "
                "Start the workers with the serving generation's settings, or build a generation with "
                "these settings: finally-indexer reindex"
            )
        mine = next(g for g in live if row_identity(g) == self._identity)
        if own is not None and mine.name not in self._indexers:
            store = self._family.open(mine.name, mine.dimensions)
            await store.ensure_collection(self._identity)
            own.use_store(store)
            self._indexers[mine.name] = own
        await self.indexer(serving)  # opens (and checks) its collection
        await self.follow()
        return serving

    async def _first_generation(self) -> GenerationRow:
        current = await self._family.current()
        if current is not None:  # an alias or pointer without a record (the record was lost)
            name = current
        elif await self._family.exists(self.served):  # built before generations: adopted
            name = self.served
        else:
            name = generation_name(self.served, self._identity, await records.names(self._pool))
        store = self._family.open(name, self._identity.dimensions)
        # refuses a collection recorded with another identity; records ours in one recording none
        await store.ensure_collection(self._identity)
        if await records.insert_serving(
            self._pool, new_row(self._settings, name, status="serving", identity=self._identity)
        ):
            log.info("generation_recorded", served=self.served, generation=name, adopted=name == self.served)
        serving = await records.serving(self._pool, self.served)
        if serving is None:  # pragma: no cover - inserted or found above
            raise RuntimeError("no serving generation after recording one")
        return serving

    async def serves_own_identity(self) -> bool:
        """Whether the serving generation was built with this process's identity (after a switch
        to another model it is not, until the process restarts with the new settings)."""
        serving = await records.serving(self._pool, self.served)
        return serving is not None and row_identity(serving) == self._identity

    # --- routing ------------------------------------------------------------------------------------
    async def indexer(self, row: GenerationRow) -> Indexer:
        """The indexer of generation ``row`` (its collection opened and checked on first use)."""
        found = self._indexers.get(row.name)
        if found is not None:
            return found
        async with self._opening:
            found = self._indexers.get(row.name)
            if found is not None:
                return found
            identity = row_identity(row)
            settings = settings_for(self._settings, row)
            if identity == self._identity:
                embedder = self._embedder
            else:
                embedder = build_embedder(settings, redis=self._redis)
                self._owned.append(embedder)
            store = self._family.open(row.name, row.dimensions)
            await store.ensure_collection(identity)
            found = self._indexers[row.name] = self._make(store, embedder, settings)
            return found

    async def handle(self, entry: StreamEntry, fallback: Indexer, *, deliveries: int) -> None:
        """Index one batch entry into the generations it belongs to (see the module's docstring)."""
        try:
            batch = BatchMessage.from_fields(entry.fields)
        except (ValidationError, ValueError, KeyError, TypeError):
            await fallback.handle(entry, deliveries=deliveries)  # dead-letters it
            return
        live = await records.live(self._pool, self.served)
        serving = next((g for g in live if g.status == "serving"), None)
        if serving is None:  # the record was lost under a running worker: the served store
            await fallback.handle(entry, deliveries=deliveries)
            return
        build = next((g for g in live if g.status == "building" and g.job_id == batch.job_id), None)
        if build is not None:
            await (await self.indexer(build)).handle(entry, deliveries=deliveries)
            return
        for other in live:
            if other is not serving:
                await (await self.indexer(other)).mirror(batch)
        await (await self.indexer(serving)).handle(entry, deliveries=deliveries)

    # --- finishing, following, dropping --------------------------------------------------------------
    async def step(self) -> None:
        """One round: follow the record, finish a completed build, drop what is past its keep time."""
        await self.follow()
        build = await records.building(self._pool, self.served)
        if build is not None and build.job_id is not None:
            await self._finish(build, build.job_id)
        await self._drop_due()
        await self._report()

    async def follow(self) -> None:
        """Point the served name at the record's serving generation if it points elsewhere."""
        serving = await records.serving(self._pool, self.served)
        if serving is None:
            return
        current = await self._family.current()
        if current == serving.name or (current is None and serving.name == self.served):
            return
        await self._switch_alias(serving, previous=current)

    async def _switch_alias(self, serving: GenerationRow, *, previous: str | None) -> None:
        adopted_gone = previous is None and isinstance(self._family, AliasFamily)
        await self._family.point(serving.name, serving.dimensions)
        if adopted_gone and await records.serving(self._pool, self.served) is not None:
            # Qdrant deleted the adopted collection to free its name for the alias
            await records.mark_dropped(self._pool, self.served)
        metrics.GENERATION_SWITCHES.inc()
        log.warning("generation_switched", served=self.served, generation=serving.name, previous=previous)

    async def _finish(self, build: GenerationRow, job_id: str) -> None:
        progress = await records.build_progress(self._pool, job_id)
        if progress is None or progress.status == "failed":
            await records.fail_build(self._pool, build.name, "the build job failed or is gone")
            log.error("generation_build_failed", generation=build.name, job_id=job_id)
            return
        if progress.status != "completed" or not await self._repairs_done(build.name):
            return
        if time.monotonic() < self._next_audit.get(build.name, 0.0):
            return
        audited = await self._audit(build)
        if audited is None:
            return
        drift, listings = audited  # the drift that holds the switch (in flight excepted)
        if drift == 0:
            if await records.promote(
                self._pool,
                self.served,
                build.name,
                from_status="building",
                keep_s=self._settings.reindex_keep_s,
            ):
                await self.follow()
            return
        if drift <= DRIFT_NOISE * max(listings, 1):  # updates in flight: audit again, no strike
            self._audits[build.name] = 0
            return
        self._audits[build.name] = self._audits.get(build.name, 0) + 1
        if self._audits[build.name] >= MAX_BUILD_AUDITS:
            await records.fail_build(self._pool, build.name, f"{drift} listings still drifted after repairs")
            log.error("generation_build_failed", generation=build.name, drift=drift)

    async def _audit(self, build: GenerationRow) -> tuple[int, int] | None:
        """Audit the built generation with repair; the drift that holds its switch and its listings
        (None: another audit of it runs)."""
        settings = settings_for(self._settings, build).model_copy(update={"collection": build.name})
        store = (await self.indexer(build)).store
        auditor = Auditor(pool=self._pool, redis=self._redis, store=store, settings=settings)
        requested_by = audit_requester(build.name)
        after = await self._in_flight_after(requested_by)
        started = time.monotonic()
        try:
            report = await auditor.run(repair=True, requested_by=requested_by, in_flight_after=after)
        except AuditBusy:
            return None
        # the next audit of a build that drifted waits: never audit back to back (a full scan)
        self._next_audit[build.name] = time.monotonic() + REAUDIT_PAUSE_S + (time.monotonic() - started)
        self._repairs[build.name] = list(report["repair_job_ids"])
        drift = sum(n for verdict, n in report["counts"].items() if verdict != "ok")
        holding = drift - int(report["in_flight"])
        log.info(
            "generation_audited",
            generation=build.name,
            drift=drift,
            in_flight=report["in_flight"],
            holding=holding,
            repair_jobs=len(report["repair_job_ids"]),
        )
        return holding, int(report["listings"])

    async def _in_flight_after(self, requested_by: str) -> int | None:
        """The watermark a build's audit judges "in flight" by: the newest ``updated_at`` when the
        build's previous audit started, if every repair that audit queued has finished; None (the
        audit's own watermark) when there is none.

        Why that is safe: a listing whose row is not newer than that watermark was read, as it is
        now, by the previous audit; if it drifted then, its repair has run since (through the mirror,
        reading the row then). Drifted again, unchanged, it is the build's own fault, and it holds
        the switch. A listing edited since has its own sync, mirrored into both generations (or, for
        an edit without a job, is as stale in the serving generation, where its scheduled audits will
        find it); either way this audit queues its repair too. Why it is live: an edit's sync holds
        the switch only if it is still in flight a whole audit cycle later (``REAUDIT_PAUSE_S`` and
        more); with the audit's own watermark every edit queued just before it started, its sync
        not yet done, would hold it (a small catalogue audits faster than a sync lands).
        """
        previous = await audit_queries.latest_completed(self._pool, requested_by=requested_by)
        if previous is None or previous["newest_row_at"] is None:
            return None
        if not await self._finished(previous["repair_job_ids"]):
            return None
        return version_of(previous["newest_row_at"])

    async def _repairs_done(self, name: str) -> bool:
        """Whether the repair jobs the last audit of ``name`` queued have all finished."""
        return await self._finished(self._repairs.get(name, []))

    async def _finished(self, job_ids: Iterable[str]) -> bool:
        """Whether none of ``job_ids`` is still pending or running (a job gone counts as finished)."""
        for job_id in job_ids:
            progress = await records.build_progress(self._pool, job_id)
            if progress is not None and progress.status in ("pending", "running"):
                return False
        return True

    async def _drop_due(self) -> None:
        current = await self._family.current()
        for row in await records.due_drops(self._pool, self.served):
            if row.name == current or (current is None and row.name == self.served):
                continue  # never the collection readers are served from
            indexer = self._indexers.pop(row.name, None)
            del indexer
            await self._family.drop(row.name)
            await records.mark_dropped(self._pool, row.name)
            log.info("generation_dropped", served=self.served, generation=row.name, status=row.status)

    async def _report(self) -> None:
        """The build's progress as metrics (0 of 0 when no build runs)."""
        build = await records.building(self._pool, self.served)
        progress = await records.build_progress(self._pool, build.job_id) if build and build.job_id else None
        metrics.REINDEX_TOTAL.set(progress.total if progress else 0)
        metrics.REINDEX_DONE.set(progress.done if progress else 0)

    async def run(self, *, stop: asyncio.Event) -> None:
        """:meth:`step` every ``GENERATIONS_POLL_S`` until ``stop``; a failed step is logged, not fatal."""
        while not stop.is_set():
            try:
                await self.step()
            except Exception as exc:  # a dependency down: the next step tries again
                log.warning("generations_step_failed", error=redact(repr(exc)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), GENERATIONS_POLL_S)

    async def aclose(self) -> None:
        """Close the embedders built from records (stores belong to the served store's family)."""
        owned, self._owned = self._owned, []
        for embedder in owned:
            with contextlib.suppress(Exception):
                await embedder.aclose()


class ServingAuditor(Auditor):
    """The scheduled audit of a worker with generations: it audits only while the serving
    generation has the worker's own identity. After a switch to another model, a worker still on
    the old settings would find every listing ``wrong_model`` and queue forced re-embeds of all
    of them; it skips (with a warning) until it is restarted with the new settings."""

    def __init__(self, generations: Generations, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._generations = generations

    async def due(self, *, within_s: float) -> bool:
        if not await self._generations.serves_own_identity():
            log.warning(
                "scheduled_audit_skipped",
                reason="the serving generation was built with other settings: restart with them",
            )
            return False
        return await super().due(within_s=within_s)
