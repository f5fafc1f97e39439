"""``QdrantServerStore``: the collection through ``qdrant_client.AsyncQdrantClient``.

One class for two engines: a Qdrant server (``VECTOR_STORE=server``, ``QDRANT_URL`` + API key)
and qdrant-client's *local mode* (``VECTOR_STORE=local``: ``QDRANT_PATH=:memory:`` or a
directory). Local mode is a numpy brute-force scan run on the calling thread: right for tests and
a few thousand points, not for 30k x 3072 (see ``bench/README.md``); use ``edge`` there.

Errors are classified once (:func:`_classified`): connection failures →
:class:`DependencyUnavailable`; 429/5xx/timeouts → :class:`TransientError`; other 4xx and local
mode's ``ValueError`` → :class:`PermanentError`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Final

import httpx
from qdrant_client import AsyncQdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from finally_indexer.core import metrics
from finally_indexer.core.errors import (
    ConfigurationError,
    DependencyUnavailable,
    IndexerError,
    PermanentError,
    TransientError,
)
from finally_indexer.core.settings import Settings, VectorStoreKind
from finally_indexer.processor.stores.generations import AliasFamily
from finally_indexer.processor.stores.identity import (
    REINDEX_HINT,
    check_dimensions,
    identity_from_record,
    identity_record,
    log_adopted,
    refuse_another,
)
from finally_indexer.processor.stores.points import (
    PRODUCT_ID_KEY,
    SCROLL_PAGE,
    VERSION_KEY,
    point_payload,
    stored_listing,
)
from finally_indexer.processor.vectorstore import (
    CollectionIdentity,
    ListingPoint,
    PayloadUpdate,
    SearchHit,
    StoredListing,
)

__all__ = ["MEMORY", "QdrantServerStore"]

#: ``QDRANT_PATH`` value that selects qdrant-client's in-memory local mode.
MEMORY = ":memory:"


@contextlib.contextmanager
def _classified(op: str) -> Iterator[None]:
    """Map qdrant-client and transport errors onto the transient/permanent tree."""
    try:
        yield
    except UnexpectedResponse as exc:
        code = exc.status_code or 0
        if code == 429 or code >= 500 or code == 408:
            raise TransientError(f"qdrant {op}: {exc}") from exc
        raise PermanentError(f"qdrant {op}: {exc}") from exc
    except (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError) as exc:
        raise DependencyUnavailable(f"qdrant {op}: {type(exc).__name__}: {exc}") from exc
    except ValueError as exc:  # local mode reports bad requests (wrong vector size …) this way
        raise PermanentError(f"qdrant {op}: {exc}") from exc


#: The first Qdrant release that honours ``update_filter`` on upsert (older ones drop the field).
MIN_SERVER_VERSION: Final = (1, 16)


def server_supports_update_filter(version: str) -> bool:
    """True when a server reporting ``version`` (e.g. "1.20.0", "v1.16.3-dev") applies update_filter."""
    parts = re.findall(r"\d+", version)[:2]
    return len(parts) == 2 and (int(parts[0]), int(parts[1])) >= MIN_SERVER_VERSION


def _version_le(limit: int) -> m.Filter:
    """Stored version ≤ ``limit``, or no version at all (a point from an older indexer)."""
    return m.Filter(
        should=[
            m.FieldCondition(key=VERSION_KEY, range=m.Range(lte=limit)),
            m.IsEmptyCondition(is_empty=m.PayloadField(key=VERSION_KEY)),
        ]
    )


def stale_write_filter(points: Sequence[ListingPoint]) -> m.Filter:
    """One clause per point: it may replace only a stored point whose version is not newer."""
    return m.Filter(
        should=[
            m.Filter(must=[m.HasIdCondition(has_id=[p.product_id]), _version_le(p.version)]) for p in points
        ]
    )


class QdrantServerStore:
    """A :class:`~finally_indexer.processor.vectorstore.VectorStore` over ``AsyncQdrantClient``."""

    def __init__(
        self, client: AsyncQdrantClient, *, collection: str, vector_size: int, payload_indexes: bool = True
    ) -> None:
        self._client = client
        self._collection = collection
        self._vector_size = vector_size
        # Local mode ignores payload indexes and warns about them; a server benefits from them.
        self._payload_indexes = payload_indexes

    @classmethod
    def from_settings(cls, settings: Settings) -> QdrantServerStore:
        """Server mode for ``VECTOR_STORE=server``; local mode (memory or ``QDRANT_PATH``) otherwise."""
        if settings.vector_store is VectorStoreKind.SERVER:
            api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            # The version check runs in a background thread and only warns; ``ping`` is our check.
            # QDRANT_TIMEOUT_S bounds every request: a black-holed server is an outage, not a hang
            client = AsyncQdrantClient(
                url=settings.qdrant_location(), api_key=api_key, check_compatibility=False,
                timeout=settings.qdrant_timeout_s,
            )  # fmt: skip
            return cls(client, collection=settings.collection, vector_size=settings.vector_size)
        if str(settings.qdrant_path) == MEMORY:
            client = AsyncQdrantClient(location=MEMORY)
        else:
            Path(settings.qdrant_path).mkdir(parents=True, exist_ok=True)
            client = AsyncQdrantClient(path=str(settings.qdrant_path))
        return cls(
            client, collection=settings.collection, vector_size=settings.vector_size, payload_indexes=False
        )

    @property
    def generations(self) -> AliasFamily:
        """The generations behind this collection's name, as aliases on the same client."""
        return AliasFamily(self._client, served=self._collection, payload_indexes=self._payload_indexes)

    def __repr__(self) -> str:
        return f"QdrantServerStore(collection={self._collection!r}, vector_size={self._vector_size})"

    async def ensure_collection(self, identity: CollectionIdentity | None = None) -> None:
        if identity is not None:
            check_dimensions(identity, self._vector_size)
        if self._payload_indexes:  # a real server (local mode has no version to check)
            await self._check_server_version()
        with _classified("ensure_collection"):
            exists = await self._client.collection_exists(self._collection) or await self._is_alias()
            if not exists and await self._create(identity):
                return
            # it existed, or another writer created it meanwhile: either way it is judged
            await self._check_existing(identity)

    async def _is_alias(self) -> bool:
        """Whether the name is an alias (a server may answer "exists" for collections only)."""
        response = await self._client.get_aliases()
        return any(a.alias_name == self._collection for a in response.aliases)

    async def _check_existing(self, identity: CollectionIdentity | None) -> None:
        """Refuse another identity or size; record ``identity`` in a collection that has none."""
        info = await self._client.get_collection(self._collection)
        recorded = identity_from_record(info.config.metadata)
        if identity is not None and recorded is not None:
            refuse_another(self._collection, recorded, identity)
        self._check_size(info)
        if identity is not None and recorded is None:
            await self._client.update_collection(self._collection, metadata=identity_record(identity))
            log_adopted(self._collection, identity)

    async def _create(self, identity: CollectionIdentity | None) -> bool:
        """Create the collection recording ``identity``; False when another writer created it first."""
        try:
            await self._client.create_collection(
                self._collection,
                vectors_config=m.VectorParams(size=self._vector_size, distance=m.Distance.COSINE),
                metadata=identity_record(identity) if identity is not None else None,
            )
        except UnexpectedResponse as exc:
            if exc.status_code != 409:  # 409: another worker created it first
                raise
            return False
        if self._payload_indexes:
            for key in (PRODUCT_ID_KEY, VERSION_KEY):
                await self._client.create_payload_index(self._collection, key, m.PayloadSchemaType.INTEGER)
        return True

    async def _check_server_version(self) -> None:
        """Refuse a server older than 1.16: it silently ignores ``update_filter`` on upsert, so the
        stale-write protection would be gone without any error."""
        with _classified("version"):
            info = await self._client.info()
        if not server_supports_update_filter(info.version):
            raise ConfigurationError(
                f"Qdrant server {info.version} is too old: conditional upserts (update_filter) need "
                f"Qdrant >= {'.'.join(map(str, MIN_SERVER_VERSION))}; upgrade the server"
            )

    def _check_size(self, info: m.CollectionInfo) -> None:
        vectors = info.config.params.vectors
        size = vectors.size if isinstance(vectors, m.VectorParams) else None
        if size is not None and size != self._vector_size:
            raise ConfigurationError(
                f"collection {self._collection!r} holds {size}-dimensional vectors, "
                f"VECTOR_SIZE is {self._vector_size}. {REINDEX_HINT}"
            )

    async def upsert(self, points: Sequence[ListingPoint]) -> None:
        if not points:
            return
        structs = [
            m.PointStruct(id=p.product_id, vector=list(p.vector), payload=point_payload(p)) for p in points
        ]
        started = time.perf_counter()
        with _classified("upsert"):
            await self._client.upsert(
                self._collection, points=structs, wait=True, update_filter=stale_write_filter(points)
            )
        metrics.STORE_WRITE_SECONDS.labels(op="upsert").observe(time.perf_counter() - started)

    async def update_payloads(self, updates: Sequence[PayloadUpdate]) -> None:
        if not updates:
            return
        operations = [
            m.SetPayloadOperation(
                set_payload=m.SetPayload(
                    payload=point_payload(u),
                    filter=m.Filter(must=[m.HasIdCondition(has_id=[u.product_id]), _version_le(u.version)]),
                )
            )
            for u in updates
        ]
        started = time.perf_counter()
        with _classified("set_payload"):
            await self._client.batch_update_points(self._collection, update_operations=operations, wait=True)
        metrics.STORE_WRITE_SECONDS.labels(op="set_payload").observe(time.perf_counter() - started)

    async def delete(self, product_ids: Sequence[int], *, max_version: int | None = None) -> None:
        if not product_ids:
            return
        must: list[m.Condition] = [m.HasIdCondition(has_id=list(product_ids))]
        if max_version is not None:
            must.append(_version_le(max_version))
        started = time.perf_counter()
        with _classified("delete"):
            await self._client.delete(
                self._collection, points_selector=m.FilterSelector(filter=m.Filter(must=must)), wait=True
            )
        metrics.STORE_WRITE_SECONDS.labels(op="delete").observe(time.perf_counter() - started)

    async def get(self, product_ids: Sequence[int]) -> dict[int, StoredListing]:
        if not product_ids:
            return {}
        with _classified("retrieve"):
            records = await self._client.retrieve(
                self._collection, ids=list(product_ids), with_payload=True, with_vectors=False
            )
        return {int(r.id): stored_listing(r.id, r.payload) for r in records}

    async def scan(self) -> AsyncIterator[StoredListing]:
        offset: m.ExtendedPointId | None = None
        while True:
            with _classified("scroll"):
                records, offset = await self._client.scroll(
                    self._collection, limit=SCROLL_PAGE, offset=offset, with_payload=True, with_vectors=False
                )
            for record in records:
                yield stored_listing(record.id, record.payload)
            if offset is None:
                return

    async def count(self) -> int:
        with _classified("count"):
            result = await self._client.count(self._collection, exact=True)
        return result.count

    async def search(self, vector: Sequence[float], limit: int = 10) -> list[SearchHit]:
        with _classified("search"):
            response = await self._client.query_points(
                self._collection, query=list(vector), limit=limit, with_payload=True
            )
        return [
            SearchHit(product_id=int(p.id), score=p.score, payload=dict(p.payload or {}))
            for p in response.points
        ]

    async def ping(self) -> None:
        try:
            with _classified("ping"):
                await self._client.get_collections()
        except IndexerError as exc:  # refused (401, 403 …) counts as unavailable for a health check
            raise DependencyUnavailable(str(exc)) from exc

    async def aclose(self) -> None:
        await self._client.close()
