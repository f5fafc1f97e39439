"""The indexer: makes the collection reflect PostgreSQL for the listings of one batch.

For a sync/update batch: one query reads the rows; rows gone from PostgreSQL are deleted from the
collection; the others are rendered to text and hashed; listings whose stored hash and model
match are skipped (no embedding call) unless the job forces it; the rest are embedded in one call
(the embedder splits requests), upserted with version protection (the store refuses to replace a
newer point), flagged ``is_conversion`` for the embedded row version only, and recorded in
``index_state`` — all PostgreSQL effects and the batch's completion in one transaction.

Deletes leave a tombstone (``db/tombstones.py``) before they remove points, and remove only points
not newer than the delete; a sync never keeps a point for a row version a tombstone covers (it
checks before embedding, and again after its upsert, which closes the race with a delete that
commits in between). So a stale read cannot bring a deleted listing back, and a late or
redelivered delete cannot remove a listing re-created since.

Every effect is idempotent, so a redelivered batch converges to the same state at no embedding
cost. Transient failures propagate (the entry stays pending and is reclaimed); an input the model
rejects, or a row without ``updated_at``, fails only its listing. The batch's events are written
to the outbox in that transaction and relayed to Redis after the commit (a slow Redis never holds
the job's row lock; a crash or a failed XADD only delays them: see ``processor/outbox.py``).

What the batch's embedding call used (tokens billed, requests, US dollars at the model's price)
is added to its job in that same transaction, and only when it moves the batch out of 'pending':
a redelivered batch is not counted twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from pydantic import ValidationError

from finally_indexer.core.metrics import (
    ACCOUNTED_COST,
    ACCOUNTED_REQUESTS,
    ACCOUNTED_TOKENS,
    END_TO_END_SECONDS,
    FAILURES,
    LISTINGS,
)
from finally_indexer.core.streams import StreamEntry
from finally_indexer.db import failures, jobs, products, state, tombstones
from finally_indexer.db.failures import Failure
from finally_indexer.db.jobs import BatchCounts, BatchUsage
from finally_indexer.db.products import SOURCE_FP
from finally_indexer.db.state import IndexedListing
from finally_indexer.processor.cost import Usage, requests_needed, usd
from finally_indexer.processor.deadletter import DeadLetters
from finally_indexer.processor.dependencies import Dependency, calling
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.events import EventLog
from finally_indexer.processor.outbox import relay_soon, stage
from finally_indexer.processor.source_keys import source_keyer
from finally_indexer.processor.stores.points import MODEL_KEY, SOURCE_KEY
from finally_indexer.processor.texts import build_text, payload_for, text_hash, version_of
from finally_indexer.processor.vectorstore import ListingPoint, PayloadUpdate, VectorStore
from finally_indexer.schemas.jobs import Operation
from finally_indexer.schemas.messages import BatchMessage, Event, EventType

__all__ = ["Indexer"]

log = structlog.get_logger(__name__)

#: Reason code of a listing whose text the embedding model refused.
REJECTED_REASON = "embedding_input_rejected"
#: Reason code of a listing whose row has no ``updated_at`` (no write version: cannot be indexed).
MISSING_UPDATED_AT_REASON = "missing_updated_at"

_ERROR_CLASSES = {REJECTED_REASON: "EmbeddingInputRejected", MISSING_UPDATED_AT_REASON: "MissingUpdatedAt"}


@dataclass(frozen=True, slots=True)
class _Failed:
    """Why one listing of a batch failed (permanently, for this row version)."""

    reason: str  # a reason code (REJECTED_REASON, MISSING_UPDATED_AT_REASON)
    message: str


@dataclass(frozen=True, slots=True)
class _Listing:
    """One present listing, rendered."""

    product_id: int
    row: dict[str, Any]
    text: str
    hash: str
    updated_at: datetime
    version: int


@dataclass(slots=True)
class _Outcome:
    """What a batch did to its listings."""

    written: list[_Listing] = field(default_factory=list)  # embedded and upserted
    skipped: list[_Listing] = field(default_factory=list)  # unchanged, no embedding call
    refreshed: list[_Listing] = field(default_factory=list)  # skipped, but the row moved on: new payload
    deleted: list[int] = field(default_factory=list)  # removed: rows gone from PostgreSQL, or deleted
    tombstoned: list[int] = field(default_factory=list)  # removed: the row read is older than a delete
    spared: list[int] = field(default_factory=list)  # a delete of a row re-created since: kept
    rejected: dict[int, _Failed] = field(default_factory=dict)  # failed listings: product id -> why
    new_ids: set[int] = field(default_factory=set)  # written listings that were not stored before
    usage: Usage = field(default_factory=Usage)  # what the embedding call used

    def removed(self) -> list[int]:
        """Every listing whose point this batch removed."""
        return [*self.deleted, *self.tombstoned]

    def counts(self) -> BatchCounts:
        return BatchCounts(
            indexed=len(self.written),
            skipped=len(self.skipped) + len(self.spared),
            deleted=len(self.removed()),
            failed=len(self.rejected),
        )


class Indexer:
    """Processes batch messages against PostgreSQL, the embedder and the vector store."""

    def __init__(
        self, *, pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder, events: EventLog,
        dead_letters: DeadLetters, text_template: str, usd_per_million_tokens: float = 0.0,
    ) -> None:  # fmt: skip
        self._pool = pool
        self._store = store
        self._embedder = embedder
        self._events = events
        self._dead = dead_letters
        self._template = text_template
        self._price = usd_per_million_tokens

    @property
    def store(self) -> VectorStore:
        """The collection this indexer writes."""
        return self._store

    def use_store(self, store: VectorStore) -> None:
        """Write ``store`` from now on: a generation's own collection rather than the served name,
        which a switch may move to a collection of another model under a batch in flight."""
        self._store = store

    async def handle(self, entry: StreamEntry, *, deliveries: int = 1) -> None:
        """Process one batch entry (or dead-letter it if unreadable). Failures propagate."""
        try:
            batch = BatchMessage.from_fields(entry.fields)
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            await self._dead.invalid_batch(entry, exc)
            return
        if batch.operation is Operation.DELETE:
            outcome = await self._delete(batch)
        else:
            outcome = await self._sync(batch)
        usage = self._usage_of(outcome)  # priced once: the job's row and the metrics agree
        counted = await self._commit(entry, batch, outcome, usage, deliveries)
        await self._report(batch, outcome, accounted=usage if counted else None)

    async def mirror(self, batch: BatchMessage) -> None:
        """Apply a batch to this indexer's collection only: no commit, no events, no accounting.

        For the generations that are not the record (one being built, one kept for a rollback):
        the serving generation's :meth:`handle` commits the batch after every mirror succeeded.
        Every effect is idempotent, so a redelivery mirrors again at no embedding cost.
        """
        if batch.operation is Operation.DELETE:
            await self._delete(batch)
        else:
            await self._sync(batch)

    async def _delete(self, batch: BatchMessage) -> _Outcome:
        """Tombstone and remove the listings, except those whose row is newer than the delete."""
        deleted_at = _requested_version(batch)
        rows = await products.fetch_listings(self._pool, batch.product_ids)
        newer = {
            pid
            for pid, row in rows.items()
            if row["updated_at"] is not None and version_of(row["updated_at"]) > deleted_at
        }
        outcome = _Outcome(
            deleted=[i for i in batch.product_ids if i not in newer],
            spared=[i for i in batch.product_ids if i in newer],
        )
        await self._bury(outcome.deleted, version=deleted_at)
        return outcome

    async def _bury(self, ids: list[int], *, version: int) -> None:
        """Tombstone first (committed), then remove the points not newer than ``version``."""
        if ids:
            await tombstones.record(self._pool, ids, version=version)
            await self._store.delete(ids, max_version=version)

    async def _sync(self, batch: BatchMessage) -> _Outcome:
        rows = await products.fetch_listings(self._pool, batch.product_ids)
        outcome = _Outcome(deleted=[i for i in batch.product_ids if i not in rows])
        listings: list[_Listing] = []
        for product_id, record in rows.items():
            if record["updated_at"] is None:  # no version to write: fail this listing only
                outcome.rejected[product_id] = _Failed(
                    MISSING_UPDATED_AT_REASON, "products.updated_at is NULL: the row has no write version"
                )
            else:
                listings.append(self._render(record))
        listings = await self._drop_tombstoned(listings, outcome)
        todo = await self._split_unchanged(listings, outcome, force=batch.force)
        if todo:
            await self._embed_and_upsert(todo, outcome)
            outcome.written = await self._drop_tombstoned(outcome.written, outcome)
        await self._refresh_payloads(outcome.refreshed)
        await self._bury(outcome.deleted, version=_now_version())
        return outcome

    async def _drop_tombstoned(self, listings: list[_Listing], outcome: _Outcome) -> list[_Listing]:
        """The listings no tombstone covers; the others' points (at their version or older) are removed."""
        dead = await tombstones.covered(self._pool, [(x.product_id, x.version) for x in listings])
        for x in listings:
            if x.product_id in dead:
                await self._store.delete([x.product_id], max_version=x.version)
                outcome.tombstoned.append(x.product_id)
        return [x for x in listings if x.product_id not in dead]

    def _render(self, record: asyncpg.Record) -> _Listing:
        row = dict(record)
        text = build_text(row, self._template)
        updated_at: datetime = row["updated_at"]
        if updated_at.tzinfo is None:  # timestamp without time zone: read as UTC, like version_of
            updated_at = updated_at.replace(tzinfo=UTC)
        return _Listing(int(row["id"]), row, text, text_hash(text), updated_at, version_of(updated_at))

    async def _split_unchanged(
        self, listings: list[_Listing], outcome: _Outcome, *, force: bool
    ) -> list[_Listing]:
        """Put unchanged listings in ``outcome.skipped``; return those that need embedding."""
        ids = [x.product_id for x in listings]
        stored = await self._store.get(ids) if ids else {}
        models = await state.fetch_models(self._pool, ids) if ids else {}
        todo: list[_Listing] = []
        for x in listings:
            held = stored.get(x.product_id)
            unchanged = (
                held is not None
                and held.text_hash == x.hash
                and (held.model or models.get(x.product_id)) == self._embedder.model
            )
            (outcome.skipped if unchanged and not force else todo).append(x)
            if unchanged and not force and held is not None and held.version < x.version:
                outcome.refreshed.append(x)
            if held is None:
                outcome.new_ids.add(x.product_id)
        return todo

    async def _embed_and_upsert(self, todo: list[_Listing], outcome: _Outcome) -> None:
        with calling(Dependency.EMBEDDING):  # whatever the embedder raises is the embedding API's
            result = await self._embedder.embed_many([x.text for x in todo])
        outcome.usage = Usage(result.tokens, requests_needed(len(todo), result.tokens, self._embedder.limits))
        points: list[ListingPoint] = []
        for i, (x, vector) in enumerate(zip(todo, result.vectors, strict=True)):
            if vector is None:
                why = result.rejected.get(i, "rejected by the embedding model")
                outcome.rejected[x.product_id] = _Failed(REJECTED_REASON, why)
                continue
            points.append(self._point(x, vector))
            outcome.written.append(x)
        if points:
            await self._store.upsert(points)

    async def _refresh_payloads(self, listings: list[_Listing]) -> None:
        """Same text, newer row: move the stored version (and payload) forward without embedding.

        Without this, an older write still in flight (a slow worker holding a previous version of
        a row whose text then changed back) could replace the point after we flagged the row.
        """
        if listings:
            updates = [PayloadUpdate(x.product_id, x.version, x.hash, self._payload(x)) for x in listings]
            await self._store.update_payloads(updates)

    def _point(self, x: _Listing, vector: list[float]) -> ListingPoint:
        return ListingPoint(
            product_id=x.product_id,
            vector=vector,
            version=x.version,
            text_hash=x.hash,
            payload=self._payload(x),
        )

    def _payload(self, x: _Listing) -> dict[str, Any]:
        """The point's payload: the row's columns, the model, and the source key an audit checks
        instead of rendering the row again (``processor.source_keys``)."""
        payload = payload_for(x.row) | {MODEL_KEY: self._embedder.model}
        fingerprint = x.row.get(SOURCE_FP)
        if fingerprint is not None:
            payload[SOURCE_KEY] = source_keyer(self._template)(fingerprint, x.hash)
        return payload

    async def _commit(
        self, entry: StreamEntry, batch: BatchMessage, outcome: _Outcome, usage: BatchUsage, deliveries: int
    ) -> bool:
        """Every PostgreSQL effect of the batch, its completion, its usage and its events, in one
        transaction; True when this delivery completed the batch (False: it had been before).

        The events go to the outbox (:mod:`.outbox`), so a crash after the commit cannot lose
        them; ``job_completed`` is among them when this batch closed the job. No Redis call in
        here: the caller relays after the commit, so a hung Redis cannot hold the job's row lock.
        """
        indexed = outcome.written + outcome.skipped
        async with self._pool.acquire() as conn, conn.transaction():
            # The job's row lock serialises its batches' commits, so the last one sees the others
            # done and closes the job (without it two last batches could each miss the other).
            await jobs.lock_job(conn, batch.job_id)
            await products.mark_converted(conn, [(x.product_id, x.updated_at) for x in indexed])
            await state.upsert_states(conn, [self._state_of(x) for x in indexed])
            await products.mark_unconverted(conn, [*outcome.deleted, *outcome.tombstoned, *outcome.rejected])
            await state.delete_states(conn, [*outcome.deleted, *outcome.tombstoned])
            await failures.record_failures(
                conn, [_rejection(entry, batch, pid, why) for pid, why in outcome.rejected.items()]
            )
            await failures.resolve_succeeded(
                conn, [x.product_id for x in indexed] + outcome.deleted + outcome.tombstoned
            )
            job_status = None
            counted = await jobs.complete_batch(
                conn, batch.job_id, batch.seq, outcome.counts(), deliveries=deliveries,
                usage=usage,
            )  # fmt: skip
            if counted:
                job_status = await jobs.finish_job_if_done(conn, batch.job_id)
            await stage(conn, _events_of(batch, outcome, job_status))
        return counted

    def _usage_of(self, outcome: _Outcome) -> BatchUsage:
        tokens, requests = outcome.usage.tokens, outcome.usage.requests
        return BatchUsage(
            tokens, requests, usd(tokens, self._price), self._embedder.model if requests else None
        )

    def _state_of(self, x: _Listing) -> IndexedListing:
        return IndexedListing(x.product_id, x.hash, x.updated_at, x.version, self._embedder.model)

    async def _report(self, batch: BatchMessage, outcome: _Outcome, *, accounted: BatchUsage | None) -> None:
        """After the commit: relay the outbox (the batch's events, with whatever else waits there);
        ``accounted``: the usage this delivery added to the job (None: an earlier one had)."""
        await relay_soon(self._pool, self._events)
        _count(outcome)
        if accounted is not None:
            _count_usage(accounted)
        if batch.received_ms:
            END_TO_END_SECONDS.observe(max(0.0, time.time() - batch.received_ms / 1000))
        # DEBUG: one line per batch is hundreds per sync; jobs and the console show the progress.
        log.debug(
            "batch_indexed", job_id=batch.job_id, seq=batch.seq, tokens=outcome.usage.tokens,
            **_as_dict(outcome.counts()),
        )  # fmt: skip


def _count_usage(usage: BatchUsage) -> None:
    """The usage accounted to jobs, per model (each batch once, at the configured price)."""
    if usage.model is not None:  # named only when a request was made
        ACCOUNTED_TOKENS.labels(model=usage.model).inc(usage.tokens)
        ACCOUNTED_REQUESTS.labels(model=usage.model).inc(usage.requests)
        ACCOUNTED_COST.labels(model=usage.model).inc(usage.usd)


def _events_of(batch: BatchMessage, outcome: _Outcome, job_status: str | None) -> list[Event]:
    """The batch's events: batch_indexed, item_failed per reason, job_completed if it closed the job."""
    # Everything whose stored point changed, payload-only refreshes included (cache invalidation).
    changed = [x.product_id for x in [*outcome.written, *outcome.refreshed]] + outcome.removed()
    events = [
        Event(
            type=EventType.BATCH_INDEXED,
            job_id=batch.job_id,
            seq=batch.seq,
            product_ids=changed,
            counts=_as_dict(outcome.counts()),
        )
    ]
    for reason, failed in _by_reason(outcome.rejected).items():
        events.append(Event(
            type=EventType.ITEM_FAILED, job_id=batch.job_id, seq=batch.seq, product_ids=list(failed),
            reason=reason, message=json.dumps(failed, ensure_ascii=False)[:2000],
        ))  # fmt: skip
    if job_status is not None:
        events.append(Event(type=EventType.JOB_COMPLETED, job_id=batch.job_id, reason=job_status))
    return events


def _requested_version(batch: BatchMessage) -> int:
    """A delete's version: when its job entered the system (the same for every redelivery)."""
    return batch.received_ms * 1000 if batch.received_ms else _now_version()


def _now_version() -> int:
    """Now, in the unit of row versions (microseconds since the epoch)."""
    return time.time_ns() // 1000


def _as_dict(counts: BatchCounts) -> dict[str, int]:
    return {
        "indexed": counts.indexed,
        "skipped": counts.skipped,
        "deleted": counts.deleted,
        "failed": counts.failed,
    }


def _count(outcome: _Outcome) -> None:
    new = sum(1 for x in outcome.written if x.product_id in outcome.new_ids)
    LISTINGS.labels(outcome="indexed").inc(new)
    LISTINGS.labels(outcome="updated").inc(len(outcome.written) - new)
    LISTINGS.labels(outcome="skipped").inc(len(outcome.skipped))
    LISTINGS.labels(outcome="deleted").inc(len(outcome.removed()))
    LISTINGS.labels(outcome="failed").inc(len(outcome.rejected))
    for reason, failed in _by_reason(outcome.rejected).items():
        FAILURES.labels(reason=reason).inc(len(failed))


def _by_reason(rejected: dict[int, _Failed]) -> dict[str, dict[int, str]]:
    """Failed listings grouped by reason code: reason -> product id -> message."""
    grouped: dict[str, dict[int, str]] = {}
    for product_id, why in rejected.items():
        grouped.setdefault(why.reason, {})[product_id] = why.message
    return grouped


def _rejection(entry: StreamEntry, batch: BatchMessage, product_id: int, why: _Failed) -> Failure:
    return Failure(
        operation_type=batch.operation.value, reason=why.reason, error_class=_ERROR_CLASSES[why.reason],
        error_message=why.message, product_id=product_id, job_id=batch.job_id, stream=entry.stream,
        entry_id=entry.entry_id,
    )  # fmt: skip
