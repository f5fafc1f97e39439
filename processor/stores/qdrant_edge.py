"""``QdrantEdgeStore``: the collection in-process with ``qdrant-edge-py`` (Qdrant's own engine).

The collection is one Edge *shard* in ``QDRANT_PATH/<collection>``: segments, HNSW and a
write-ahead log, so an update acknowledged by ``EdgeShard.update`` survives a crash of the process
(the WAL is replayed on load; ``tests/vectors/test_edge_persistence.py`` kills a writer with
SIGKILL to prove it). The shard holds an exclusive lock on its WAL: one process per directory.
Beside the segments, ``collection_identity.json`` records the model, vector size and template hash
the vectors were built with (written atomically when a writer creates or adopts the shard).

The binding is synchronous. Every call runs in a worker thread (``asyncio.to_thread``) under an
``asyncio.Lock``, so the event loop never blocks and calls reach the shard one at a time.

A write is refused with :class:`~finally_indexer.core.errors.DependencyUnavailable` (an outage:
the entry is retried, never dead-lettered) while the shard's disk has less than
``EDGE_MIN_FREE_BYTES`` free: Edge writes through memory-mapped sparse files, and on a full disk
the page fault of such a write kills the whole process with SIGBUS instead of raising.

Edge runs no background optimizer: points land in an appendable segment that is scanned
exhaustively until :meth:`QdrantEdgeStore.optimize` builds the HNSW index (call it after a bulk
load; ~51 s for 30k x 3072 on 2 cores). Search is exact before that, approximate after.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe
import structlog

from finally_indexer.core import metrics
from finally_indexer.core.constants import EDGE_MIN_FREE_BYTES
from finally_indexer.core.errors import ConfigurationError, DependencyUnavailable, PermanentError
from finally_indexer.core.settings import Settings
from finally_indexer.processor.stores.identity import (
    REINDEX_HINT,
    check_dimensions,
    identity_from_record,
    identity_record,
    log_adopted,
    refuse_another,
)
from finally_indexer.processor.stores.mapped_pages import release_mapped
from finally_indexer.processor.stores.points import SCROLL_PAGE, VERSION_KEY, point_payload, stored_listing
from finally_indexer.processor.vectorstore import (
    CollectionIdentity,
    ListingPoint,
    PayloadUpdate,
    SearchHit,
    StoredListing,
)

__all__ = ["QdrantEdgeStore"]

T = TypeVar("T")

log = structlog.get_logger(__name__)


def _version_le(limit: int) -> Any:
    """Stored version ≤ ``limit``, or no version at all (a point from an older indexer)."""
    return qe.Filter(
        should=[
            qe.FieldCondition(key=VERSION_KEY, range=qe.RangeFloat(lte=float(limit))),
            qe.IsEmptyCondition(VERSION_KEY),
        ]
    )


def _drop_payload_indexes(shard: Any, path: Path) -> None:
    """Remove the payload indexes a shard created by an earlier version carries (``version``).

    Edge keeps a payload index of an appendable segment in RAM, a few hundred bytes a point: with
    it, opening a 1M-point collection left 589 MB of anonymous memory, without it 185 MB
    (``python bench/audit.py``). Nothing needs one: the stale-write guard's clauses name point
    ids, so Edge checks the version of those points only.
    """
    fields = list(shard.info().payload_schema)
    if not fields:
        return
    try:
        ensure_room(path)  # a write like any other: on a full disk, the next open drops them
    except DependencyUnavailable:
        return
    for field in fields:
        shard.update(qe.UpdateOperation.delete_field_index(field))
        log.info("edge_payload_index_dropped", shard=str(path), field=field)


def stale_write_filter(points: Sequence[ListingPoint]) -> Any:
    """One clause per point: it may replace only a stored point whose version is not newer."""
    return qe.Filter(
        should=[qe.Filter(must=[qe.HasIdCondition({p.product_id}), _version_le(p.version)]) for p in points]
    )


#: Messages of engine errors caused by the request itself; retrying the same request cannot help.
_BAD_REQUEST = ("dimension error", "wrong input", "bad input", "bad request", "not found")


def _classify(op: str, exc: Exception) -> Exception:
    """Bad requests are permanent; anything else from the engine (I/O, a full disk) is transient."""
    message = f"qdrant edge {op}: {exc}"
    if any(marker in str(exc).lower() for marker in _BAD_REQUEST):
        return PermanentError(message)
    return DependencyUnavailable(message)


#: The engine's folder of a segment's payloads (``segments/<id>/payload_storage``): what a scan reads.
PAYLOAD_STORAGE_DIR = "payload_storage"
#: Scroll pages between two releases of the payload pages a scan read (50 x 1,000 points: ~12 MB
#: of payloads at the listings' size).
SCAN_RELEASE_PAGES = 50

#: Written by Edge when it creates a shard: its presence means the shard exists.
EDGE_CONFIG_FILE = "edge_config.json"
#: This store's record of the collection's identity, in the shard's folder (Edge ignores it).
IDENTITY_FILE = "collection_identity.json"


def read_identity(path: Path) -> CollectionIdentity | None:
    """The identity recorded in ``path``; ``None`` when there is no file (a shard from before)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:  # bad JSON or UTF-8; written atomically, so only a hand edit does this
        raise ConfigurationError(f"{path} is unreadable ({exc}); delete it to adopt the shard") from exc
    return identity_from_record(record if isinstance(record, dict) else None)


def write_identity(path: Path, identity: CollectionIdentity) -> None:
    """Record ``identity`` atomically (:func:`write_json_atomically`)."""
    write_json_atomically(path, identity_record(identity))


def write_json_atomically(path: Path, record: dict[str, Any]) -> None:
    """Temporary file beside ``path``, fsync, rename over it, fsync the directory: a crash leaves the
    old file or the new one, never a torn one, and the rename survives a power loss."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def ensure_room(path: Path) -> None:
    """Raise :class:`DependencyUnavailable` when ``path``'s disk has less than ``EDGE_MIN_FREE_BYTES`` free.

    Checked before every write: the engine's mmap writes turn a full disk into SIGBUS.
    """
    existing = next(p for p in (path, *path.parents) if p.exists())  # the shard may not exist yet
    free = shutil.disk_usage(existing).free
    if free < EDGE_MIN_FREE_BYTES:
        raise DependencyUnavailable(
            f"qdrant edge shard {path}: {free // 2**20} MiB free on its disk, under the "
            f"{EDGE_MIN_FREE_BYTES // 2**20} MiB a write may need; writes wait until space is freed"
        )


def _scroller(request: Any) -> Callable[[Any], Any]:
    return lambda shard: shard.scroll(request)


class QdrantEdgeStore:
    """A :class:`~finally_indexer.processor.vectorstore.VectorStore` over one Qdrant Edge shard."""

    def __init__(self, path: Path, *, vector_size: int) -> None:
        self._path = Path(path)
        self._vector_size = vector_size
        self._identity_file = self._path / IDENTITY_FILE
        self._shard: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> QdrantEdgeStore:
        return cls(Path(settings.qdrant_path) / settings.collection, vector_size=settings.vector_size)

    def __repr__(self) -> str:
        return f"QdrantEdgeStore(path={str(self._path)!r}, vector_size={self._vector_size})"

    @property
    def _collection(self) -> str:
        """The collection's name, as operators know it (``QDRANT_PATH/<collection>``)."""
        return self._path.name

    # --- the shard, one call at a time in a worker thread ---------------------------------------------
    def _config(self) -> Any:
        return qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=self._vector_size, distance=qe.Distance.Cosine))

    def _open_sync(self) -> Any:
        if self._shard is not None:
            return self._shard
        try:
            if (self._path / EDGE_CONFIG_FILE).exists():
                # Passing the config makes Edge check it against the stored segments.
                shard = qe.EdgeShard.load(str(self._path), self._config())
                _drop_payload_indexes(shard, self._path)
            else:
                shard = qe.EdgeShard.create(str(self._path), self._config())
        except Exception as exc:
            if "WouldBlock" in str(exc):
                raise DependencyUnavailable(
                    f"qdrant edge shard {self._path} is open in another process"
                ) from exc
            if "incompatible" in str(exc).lower():
                raise ConfigurationError(
                    f"edge shard {self._path} does not match VECTOR_SIZE={self._vector_size}: {exc}. "
                    f"{REINDEX_HINT}"
                ) from exc
            raise
        self._shard = shard
        return shard

    async def _run(self, op: str, fn: Callable[[Any], T]) -> T:
        """``fn(shard)`` in a worker thread, the shard opened first (see :meth:`_call`)."""
        return await self._call(op, lambda: fn(self._open_sync()))

    async def _write(self, op: str, fn: Callable[[Any], T]) -> T:
        """:meth:`_run` for an operation that writes: refused while the disk is (nearly) full."""

        def checked() -> T:
            ensure_room(self._path)
            return fn(self._open_sync())

        return await self._call(op, checked)

    async def _call(self, op: str, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread under the lock; engine errors classified."""
        async with self._lock:
            work = asyncio.ensure_future(asyncio.to_thread(fn))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # A thread cannot be stopped and this one still holds the shard: keep the lock
                # until it ends (a caller's timeout, e.g. /health's, must not let a second thread
                # into the shard meanwhile), then let the cancellation through.
                await asyncio.wait({work})
                if not work.cancelled():
                    work.exception()  # retrieved: its outcome no longer matters to anyone
                raise
            except (ConfigurationError, DependencyUnavailable):
                raise
            except Exception as exc:  # the binding raises plain Exception for everything
                raise _classify(op, exc) from exc

    # --- the VectorStore protocol ------------------------------------------------------------------------
    async def ensure_collection(self, identity: CollectionIdentity | None = None) -> None:
        if identity is None:
            await self._run("open", lambda shard: None)
            return
        check_dimensions(identity, self._vector_size)
        await self._call("open", lambda: self._ensure_sync(identity))

    def _ensure_sync(self, identity: CollectionIdentity) -> None:
        """Judge the recorded identity before opening (its message says more than Edge's size
        check), open or create the shard, and record ``identity`` when the shard has none."""
        ensure_room(self._path)  # opening writes (WAL, new segments): a writer's open is a write
        existed = self._shard is not None or (self._path / EDGE_CONFIG_FILE).exists()
        recorded = read_identity(self._identity_file) if existed else None
        if recorded is not None:
            refuse_another(self._collection, recorded, identity)
        self._open_sync()
        if recorded is None:
            # Written after the shard: a crash in between leaves a shard without a record, adopted
            # on the next start, never a record without its shard.
            write_identity(self._identity_file, identity)
            if existed:
                log_adopted(self._collection, identity)

    async def upsert(self, points: Sequence[ListingPoint]) -> None:
        if not points:
            return

        def write(shard: Any) -> None:
            # Converting 64 x 3072 floats takes milliseconds: done here, in the worker thread, so
            # the event loop (and an API served by the same process) is not held up meanwhile.
            batch = [qe.Point(p.product_id, list(p.vector), point_payload(p)) for p in points]
            shard.update(qe.UpdateOperation.upsert_points(batch, condition=stale_write_filter(points)))

        started = time.perf_counter()
        await self._write("upsert", write)
        metrics.STORE_WRITE_SECONDS.labels(op="upsert").observe(time.perf_counter() - started)

    async def update_payloads(self, updates: Sequence[PayloadUpdate]) -> None:
        if not updates:
            return
        operations = [
            qe.UpdateOperation.set_payload_by_filter(
                qe.Filter(must=[qe.HasIdCondition({u.product_id}), _version_le(u.version)]), point_payload(u)
            )
            for u in updates
        ]

        def apply(shard: Any) -> None:
            for operation in operations:
                shard.update(operation)

        started = time.perf_counter()
        await self._write("set_payload", apply)
        metrics.STORE_WRITE_SECONDS.labels(op="set_payload").observe(time.perf_counter() - started)

    async def delete(self, product_ids: Sequence[int], *, max_version: int | None = None) -> None:
        if not product_ids:
            return
        must: list[Any] = [qe.HasIdCondition(set(product_ids))]
        if max_version is not None:
            must.append(_version_le(max_version))
        operation = qe.UpdateOperation.delete_points_by_filter(qe.Filter(must=must))
        started = time.perf_counter()
        await self._write("delete", lambda shard: shard.update(operation))
        metrics.STORE_WRITE_SECONDS.labels(op="delete").observe(time.perf_counter() - started)

    async def get(self, product_ids: Sequence[int]) -> dict[int, StoredListing]:
        if not product_ids:
            return {}
        ids = list(product_ids)
        records = await self._run(
            "retrieve", lambda shard: shard.retrieve(ids, with_payload=True, with_vector=False)
        )
        return {int(r.id): stored_listing(r.id, r.payload) for r in records}

    async def scan(self) -> AsyncIterator[StoredListing]:
        """Every point in id order, payload only. The payload pages read are handed back to the
        kernel every ``SCAN_RELEASE_PAGES`` pages and at the end (``mapped_pages``): a scan reads
        each once, and would otherwise leave the whole payload storage in the resident set."""
        offset: Any = None
        pages = 0
        while True:
            request = qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=True, with_vector=False)
            records, offset = await self._run("scroll", _scroller(request))
            pages += 1
            if pages % SCAN_RELEASE_PAGES == 0:
                await self._release_payload_pages()
            for record in records:
                yield stored_listing(record.id, record.payload)
            if offset is None:
                break
        # a scan left early keeps its last window's pages until the next scan: no await on the way out
        if pages > SCAN_RELEASE_PAGES:
            await self._release_payload_pages()

    async def _release_payload_pages(self) -> None:
        """:func:`release_mapped` on the payload storage, under the lock: no engine call runs meanwhile."""
        await self._call("release", lambda: release_mapped(self._path, PAYLOAD_STORAGE_DIR))

    async def count(self) -> int:
        return int(await self._run("count", lambda shard: shard.count(qe.CountRequest(exact=True))))

    async def search(self, vector: Sequence[float], limit: int = 10) -> list[SearchHit]:
        request = qe.QueryRequest(
            limit=limit, query=qe.Query.Nearest(list(vector)), with_payload=True, with_vector=False
        )
        points = await self._run("search", lambda shard: shard.query(request))
        return [
            SearchHit(product_id=int(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in points
        ]

    async def ping(self) -> None:
        try:
            await self._run("ping", lambda shard: shard.info())
        except Exception as exc:
            raise DependencyUnavailable(f"qdrant edge shard {self._path}: {exc}") from exc

    async def optimize(self) -> bool:
        """Build the HNSW index and merge segments now (blocking writes meanwhile); True if anything changed."""
        return bool(await self._write("optimize", lambda shard: shard.optimize()))

    async def flush(self) -> None:
        """Persist segments now (the WAL already makes acknowledged writes durable)."""
        await self._run("flush", lambda shard: shard.flush())

    async def aclose(self) -> None:
        async with self._lock:
            shard, self._shard = self._shard, None
            if shard is not None:
                await asyncio.to_thread(self._close_sync, shard)

    @staticmethod
    def _close_sync(shard: Any) -> None:
        shard.flush()
        shard.close()
