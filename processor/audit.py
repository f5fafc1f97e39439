"""The audit: proves the collection matches PostgreSQL, listing by listing, and repairs what drifted.

Both sides are streamed in id order and merged — PostgreSQL by keyset pages, the collection by
scroll with payloads only (never vectors) — so neither is ever held whole in memory. Every
listing gets one verdict (``processor.audit_merge``: ok, missing, stale, ghost, wrong flag, wrong
model).

With ``repair`` the fixes go through the ordinary pipeline as ordinary jobs — a sync for
missing, stale and ghost listings (a sync removes the point of a row that is gone or deleted), a
forced sync for wrong-model ones — and wrong
flags are corrected as the audit goes, ``FLAG_CHUNK`` rows per transaction (each only for the row
version the audit saw). One audit runs at a
time per collection, across every process (a Redis lock).

A drifted listing whose row — or the row its point was written from — is newer than the audit's
watermark (the newest ``updated_at`` the table held when the audit started, unless the caller
gives an older one) changed while the audit ran: an edit whose sync is presumably still on its
way. The report keeps its verdict in ``counts`` and also counts it in ``in_flight``; the
watermark compares the rows' own clock with itself, never the host's or PostgreSQL's with the
scraper's.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError

from finally_indexer.core import metrics
from finally_indexer.core.constants import MAX_IDS_PER_JOB
from finally_indexer.core.errors import redact
from finally_indexer.core.settings import Settings
from finally_indexer.db import audit as queries
from finally_indexer.db.products import newest_update
from finally_indexer.processor.audit_merge import END, Judged, PageJudge, PointWindows, Verdict, judge
from finally_indexer.processor.audit_rows import ListingRow
from finally_indexer.processor.enqueue import enqueue_job
from finally_indexer.processor.texts import datetime_of, version_of
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.jobs import Job, JobSource, Operation

__all__ = [
    "AuditBusy",
    "Auditor",
    "Verdict",
    "audit_lock_key",
    "changed_after",
    "judge",
    "new_audit_id",
    "refresh_audit_gauges",
    "run_scheduled",
]

log = structlog.get_logger(__name__)

#: Listings read per keyset page: one query per 5,000 listings, a few megabytes per page.
PAGE: Final = 5_000
#: Items per read-ahead batch, and batches read ahead per side (bounded memory: two sides, two batches of 5,000 each).
READ_AHEAD_BATCH: Final = 5_000
READ_AHEAD_DEPTH: Final = 2
#: Wrong flags corrected per transaction: what a repair holds is bounded however many flags are wrong.
FLAG_CHUNK: Final = 5_000
#: Product ids kept per verdict as examples in a report.
SAMPLE_SIZE: Final = 20
#: Seconds the audit lock lives without renewal: a crashed auditor blocks the next one this long.
LOCK_TTL_S: Final = 60
#: A scheduled audit runs when no audit started within this share of the interval (workers wake
#: at different moments; without the slack two could audit back to back).
SCHEDULE_SLACK: Final = 0.9

_T = TypeVar("_T")
Progress = Callable[[int, int], None]  # (listings judged, listings expected)


class AuditBusy(RuntimeError):
    """Another audit of the same collection is running."""


def audit_lock_key(settings: Settings) -> str:
    """The Redis key that keeps audits of ``settings.collection`` one at a time."""
    return f"finally-indexer:audit-lock:{settings.collection}"


#: The watermark of an audit of an empty table (or of rows without ``updated_at``): every version is newer.
_BEFORE_ANY_VERSION: Final = -1


@dataclass(slots=True)
class _Tally:
    #: Versions above this one are changes made after the audit's watermark.
    after: int = _BEFORE_ANY_VERSION
    counts: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[int]] = field(default_factory=dict)
    listings: int = 0
    points: int = 0
    in_flight: int = 0

    def add(
        self, verdict: Verdict, product_id: int, row: ListingRow | None, point_version: int | None
    ) -> None:
        self.counts[verdict.value] += 1
        if verdict is not Verdict.OK:
            sample = self.samples.setdefault(verdict.value, [])
            if len(sample) < SAMPLE_SIZE:
                sample.append(product_id)
            # a point of another model is no edit's doing: never in flight
            if verdict is not Verdict.WRONG_MODEL and changed_after(self.after, row, point_version):
                self.in_flight += 1

    @property
    def drift(self) -> int:
        return sum(n for verdict, n in self.counts.items() if verdict != Verdict.OK)


def changed_after(after: int, row: ListingRow | None, point_version: int | None) -> bool:
    """Whether the listing's row, or the row its point was written from, is newer than version
    ``after``: the listing changed after the watermark was read. (A point newer than the row the
    audit read means the row changed between the audit's read of it and of the point.) A ghost
    without a row and with an old point cannot be dated: it is not in flight."""
    return (row is not None and row.version is not None and row.version > after) or (
        point_version is not None and point_version > after
    )


class _Repairs:
    """Fixes collected while auditing, applied in chunks as they accumulate (bounded memory): jobs
    every ``MAX_IDS_PER_JOB`` ids, flag corrections every ``FLAG_CHUNK`` rows (one transaction each)."""

    def __init__(self, auditor: Auditor, audit_id: str) -> None:
        self._auditor = auditor
        self._by = f"audit {audit_id}"
        self._ids: dict[tuple[Operation, bool], list[int]] = {}
        self._flags: list[tuple[int, bool, datetime | None]] = []
        self.flags_corrected = 0
        self.job_ids: list[str] = []

    async def add(self, verdict: Verdict, product_id: int, row: ListingRow | None) -> None:
        if verdict is Verdict.WRONG_FLAG and row is not None:
            self._flags.append((product_id, not row.is_conversion, row.updated_at))
            if len(self._flags) >= FLAG_CHUNK:
                await self._correct_flags()
        elif verdict in (Verdict.MISSING, Verdict.STALE, Verdict.GHOST, Verdict.WRONG_MODEL):
            # a ghost is synced, not deleted: the sync reads the row when it runs and removes the
            # point only if the row is gone (or deleted) then — a delete queued now would remove,
            # and tombstone, a listing created between the audit's read and the job
            await self._queue(Operation.SYNC, verdict is Verdict.WRONG_MODEL, product_id)

    async def _queue(self, operation: Operation, force: bool, product_id: int) -> None:
        ids = self._ids.setdefault((operation, force), [])
        ids.append(product_id)
        if len(ids) >= MAX_IDS_PER_JOB:
            await self._flush(operation, force)

    async def finish(self) -> int:
        """Queue what is left and correct the last flags; the number of flags corrected in all."""
        for operation, force in list(self._ids):
            await self._flush(operation, force)
        await self._correct_flags()
        return self.flags_corrected

    async def _correct_flags(self) -> None:
        """One transaction for the flags collected so far (each fix guarded by its row version)."""
        fixes, self._flags = self._flags, []
        if fixes:
            async with self._auditor.pool.acquire() as conn, conn.transaction():
                self.flags_corrected += await queries.correct_flags(conn, fixes)

    async def _flush(self, operation: Operation, force: bool) -> None:
        ids = self._ids.pop((operation, force), [])
        if ids:
            job = Job.build(
                source=JobSource.AUDIT, operation=operation, product_ids=ids, scope="ids", force=force,
                requested_by=self._by,
            )  # fmt: skip
            self.job_ids.append(await self._auditor.enqueue(job))


class Auditor:
    """Runs audits of one collection against PostgreSQL."""

    def __init__(
        self, *, pool: asyncpg.Pool[Any], redis: Redis, store: VectorStore, settings: Settings
    ) -> None:
        self.pool = pool
        self._redis = redis
        self._store = store
        self._settings = settings
        self._model = settings.model_name()
        self._locks: dict[str, tuple[Any, asyncio.Task[None]]] = {}
        self._background: set[asyncio.Task[dict[str, Any]]] = set()

    def lock_key(self) -> str:
        """The Redis key that keeps audits of this collection one at a time."""
        return audit_lock_key(self._settings)

    async def due(self, *, within_s: float) -> bool:
        """True when no audit of this collection started in the last ``within_s`` seconds."""
        latest = await queries.latest_reports(self.pool, limit=1)
        if not latest:
            return True
        started: datetime = latest[0]["started_at"]
        return time.time() - started.timestamp() >= within_s

    async def enqueue(self, job: Job) -> str:
        """Queue a repair job through the ordinary pipeline."""
        return await enqueue_job(self.pool, self._redis, jobs_stream=self._settings.jobs_stream, job=job)

    async def run(
        self, *, repair: bool = False, requested_by: str | None = None, progress: Progress | None = None,
        in_flight_after: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Audit (and repair) now; the stored report. ``AuditBusy`` if another audit is running.

        ``in_flight_after``: the row version drifted listings count as in flight above (by default
        the audit's own watermark: the newest ``updated_at`` when it starts).
        """
        audit_id = await self._begin(repair=repair, requested_by=requested_by)
        return await self._finish(audit_id, repair=repair, progress=progress, in_flight_after=in_flight_after)

    async def start(self, *, repair: bool = False, requested_by: str | None = None) -> str:
        """Start an audit in the background; its id (the report says 'running' until it ends).

        ``AuditBusy`` at once if another audit is running.
        """
        audit_id = await self._begin(repair=repair, requested_by=requested_by)
        task = asyncio.create_task(self._finish(audit_id, repair=repair, progress=None))
        self._background.add(task)
        task.add_done_callback(self._done)
        return audit_id

    async def _begin(self, *, repair: bool, requested_by: str | None) -> str:
        """Take the lock and record the audit as running."""
        lock = self._redis.lock(self.lock_key(), timeout=LOCK_TTL_S, blocking=False)
        if not await lock.acquire():
            raise AuditBusy(f"an audit of collection {self._settings.collection!r} is already running")
        audit_id = new_audit_id()
        self._locks[audit_id] = (lock, asyncio.create_task(_keep(lock)))
        try:
            await queries.start_report(self.pool, audit_id, repair=repair, requested_by=requested_by)
        except BaseException:
            await self._release(audit_id)
            raise
        return audit_id

    async def _finish(
        self, audit_id: str, *, repair: bool, progress: Progress | None, in_flight_after: int | None = None
    ) -> dict[str, Any]:
        """Compare, repair, record the report; the lock is released whatever happens."""
        started = time.perf_counter()
        try:
            # read before any listing: every edit after it carries a newer updated_at
            newest = await newest_update(self.pool)
            own = version_of(newest) if newest is not None else _BEFORE_ANY_VERSION
            tally = _Tally(after=own if in_flight_after is None else in_flight_after)
            with _collector_off_the_long_lived():
                repairs = await self._compare(audit_id, tally, repair=repair, progress=progress)
            flags = await repairs.finish() if repairs is not None else 0
            duration = time.perf_counter() - started
            await queries.finish_report(
                self.pool, audit_id, status="completed", duration_s=duration, listings=tally.listings,
                points=tally.points, counts={v.value: tally.counts.get(v.value, 0) for v in Verdict},
                samples=tally.samples, repair_job_ids=repairs.job_ids if repairs else (), flags_corrected=flags,
                newest_row_at=_instant(own), in_flight_after=_instant(tally.after), in_flight=tally.in_flight,
            )  # fmt: skip
            await queries.prune_reports(self.pool, keep=self._settings.audit_keep_reports)
        except BaseException as exc:  # cancelled too: the report must not stay 'running'
            await self._record_failure(audit_id, started, exc)
            raise
        finally:
            await self._release(audit_id)
        log.info(
            "audit_completed",
            audit_id=audit_id,
            drift=tally.drift,
            in_flight=tally.in_flight,
            seconds=round(duration, 2),
            **tally.counts,
        )
        await refresh_audit_gauges(self.pool)
        found = await queries.report(self.pool, audit_id)
        if found is None:  # pruned at once: AUDIT_KEEP_REPORTS cannot be below 1
            raise RuntimeError(f"audit report {audit_id} vanished")
        return found

    async def _release(self, audit_id: str) -> None:
        lock, renew = self._locks.pop(audit_id)
        renew.cancel()
        await asyncio.wait({renew})  # not ``await renew``: its outcome must not replace the audit's
        with contextlib.suppress(Exception):  # expired meanwhile: nothing to release
            await lock.release()

    def _done(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background_audit_failed", error=redact(repr(task.exception())))

    async def aclose(self) -> None:
        """Cancel background audits (their reports say 'failed'; the lock is released)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _compare(
        self, audit_id: str, tally: _Tally, *, repair: bool, progress: Progress | None
    ) -> _Repairs | None:
        """The merge of both sides in id order: each page of rows against the points of its ids."""
        repairs = _Repairs(self, audit_id) if repair else None
        expected = await queries.count_listings(self.pool)
        judging = PageJudge(model=self._model, template=self._settings.text_template)
        points = PointWindows(_read_ahead(_batched(self._store.scan(), READ_AHEAD_BATCH)))
        async for rows in _read_ahead(queries.listing_pages(self.pool, page=PAGE)):
            window = await points.upto(rows[-1]["id"])
            await self._tally(tally, repairs, judging.judge(rows, window), rows=len(rows), points=len(window))
            if progress is not None:
                progress(tally.listings, expected)
        rest = await points.upto(END)  # points past the last row: ghosts
        await self._tally(tally, repairs, judging.judge([], rest), rows=0, points=len(rest))
        if progress is not None:
            progress(tally.listings, expected)
        return repairs

    @staticmethod
    async def _tally(
        tally: _Tally, repairs: _Repairs | None, judged: tuple[int, list[Judged]], *, rows: int, points: int
    ) -> None:
        ok, others = judged
        tally.counts[Verdict.OK.value] += ok
        tally.listings += rows
        tally.points += points
        for verdict, product_id, row, point_version in others:
            tally.add(verdict, product_id, row, point_version)
            if repairs is not None:
                await repairs.add(verdict, product_id, row)

    async def _record_failure(self, audit_id: str, started: float, exc: BaseException) -> None:
        log.error("audit_failed", audit_id=audit_id, error=redact(repr(exc)))
        with contextlib.suppress(Exception):  # the report is best effort; the error propagates
            await queries.finish_report(
                self.pool, audit_id, status="failed", duration_s=time.perf_counter() - started, listings=0,
                points=0, counts={}, samples={}, error=redact(f"{type(exc).__name__}: {exc}")[:2000],
            )  # fmt: skip


async def _unless_stopped(work: Awaitable[Any], stop: asyncio.Event) -> None:
    """Run ``work`` until it ends or ``stop`` is set; a stop cancels it (its report says 'failed')."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
        log.info("audit_stopped", reason="the worker is stopping")
        return
    task.result()  # its failure, if any, is the caller's


@contextlib.contextmanager
def _collector_off_the_long_lived() -> Iterator[None]:
    """Keep the cyclic garbage collector off the objects the process held before the audit.

    An audit streams millions of short-lived objects (records, points, payloads), and the pages it
    reads ahead survive a few young collections, so full collections come often; each walks every
    object the process holds (its modules, its caches): in profiles of a 30k audit, most of its
    CPU beyond a plain read of both sides. Frozen (``gc.freeze``), those objects are out of the collector's sight until the audit
    ends; the audit's own garbage is collected as usual, and a cycle among the frozen objects is
    collected after (``gc.unfreeze`` hands them back).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _instant(version: int) -> datetime | None:
    """A watermark as a timestamp for the report (None: the table had no version)."""
    return datetime_of(version) if version != _BEFORE_ANY_VERSION else None


def new_audit_id() -> str:
    """A unique, readable audit id."""
    return f"audit-{uuid.uuid4().hex}"


async def _keep(lock: Any) -> None:
    """Renew the audit lock every third of its lifetime while the audit runs; a failed renewal is
    logged and tried again at the next tick (the lock outlives two missed renewals)."""
    while True:
        await asyncio.sleep(LOCK_TTL_S / 3)
        try:
            await lock.reacquire()
        except (RedisError, LockError) as exc:
            log.warning("audit_lock_renewal_failed", error=redact(repr(exc)))


async def _batched(items: AsyncIterator[_T], size: int) -> AsyncIterator[list[_T]]:
    batch: list[_T] = []
    async for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _read_ahead(pages: AsyncIterator[list[_T]]) -> AsyncIterator[list[_T]]:
    """``pages`` in order, read ahead by a task (at most ``READ_AHEAD_DEPTH`` of them).

    The audit judges one page while the next PostgreSQL page or collection scroll is already on
    its way: reading and judging overlap instead of adding up.
    """
    queue: asyncio.Queue[list[_T] | None] = asyncio.Queue(maxsize=READ_AHEAD_DEPTH)

    async def fill() -> None:
        async for page in pages:
            await queue.put(page)
        await queue.put(None)

    reader = asyncio.create_task(fill())
    try:
        while (page := await queue.get()) is not None:
            yield page
        await reader  # a read error surfaces here
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def refresh_audit_gauges(pool: asyncpg.Pool[Any]) -> None:
    """Set the audit gauges from the latest completed reports (the same figures in every process)."""
    reports = await queries.latest_reports(pool, limit=10, finished_only=True)
    completed = [r for r in reports if r["status"] == "completed"]
    if not completed:
        return
    latest = completed[0]
    for verdict in Verdict:
        metrics.AUDIT_LISTINGS.labels(verdict=verdict.value).set(latest["counts"].get(verdict.value, 0))
    metrics.AUDIT_LAST_COMPLETED.set(latest["finished_at"].timestamp())
    streak = 0
    for report in completed:
        if not any(n for v, n in report["counts"].items() if v != Verdict.OK.value):
            break
        streak += 1
    metrics.AUDIT_DRIFT_STREAK.set(streak)


async def run_scheduled(auditor: Auditor, *, interval_s: float, stop: asyncio.Event) -> None:
    """Audit every ``interval_s`` until ``stop``; across workers, one audit per interval.

    Each worker wakes every interval; the one that finds no audit started within the last 90 % of
    it takes the lock and audits, the others skip (a busy lock or a recent report).
    """
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if stop.is_set():
            return
        try:
            if await auditor.due(within_s=interval_s * SCHEDULE_SLACK):
                await _unless_stopped(auditor.run(requested_by="schedule"), stop)
        except AuditBusy:
            log.debug("audit_skipped", reason="another audit is running")
        except Exception as exc:
            log.warning("scheduled_audit_failed", error=redact(repr(exc)))
