"""One contract for every vector store, subclassed per backend (qdrant-client local mode in memory
and on disk, Qdrant Edge)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import AsyncQdrantClient, models
from structlog.testing import capture_logs

from finally_indexer.core.constants import HASHING_MODEL, OPENAI_MODEL
from finally_indexer.core.errors import ConfigurationError, DependencyUnavailable, PermanentError
from finally_indexer.core.settings import DEFAULT_TEXT_TEMPLATE, Settings, VectorStoreKind
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.stores.generations import ServedEdgeStore
from finally_indexer.processor.stores.identity import identity_from_record
from finally_indexer.processor.stores.qdrant_edge import IDENTITY_FILE, QdrantEdgeStore, read_identity
from finally_indexer.processor.stores.qdrant_server import QdrantServerStore
from finally_indexer.processor.texts import template_hash
from finally_indexer.processor.vectorstore import (
    CollectionIdentity,
    ListingPoint,
    PayloadUpdate,
    StoredListing,
    VectorStore,
)

SIZE = 64
#: The collection the offline embedder builds with the default template.
OFFLINE = CollectionIdentity(HASHING_MODEL, SIZE, template_hash(DEFAULT_TEXT_TEMPLATE))
#: Each differs from OFFLINE in one part; a writer with any of them must be refused.
OTHERS = {
    "model": dataclasses.replace(OFFLINE, model=OPENAI_MODEL),
    "dimensions": dataclasses.replace(OFFLINE, dimensions=2 * SIZE),
    "template": dataclasses.replace(OFFLINE, template_hash=template_hash("{title}\n\n{content}")),
}

#: ``opened(size)``: a new store object on the test's collection, closed (or let go) on exit.
Opener = Callable[..., AbstractAsyncContextManager[VectorStore]]


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(SIZE)
    unit: list[float] = (v / np.linalg.norm(v)).tolist()
    return unit


def point(pid: int, version: int, *, seed: int | None = None, text: str | None = None) -> ListingPoint:
    return ListingPoint(
        product_id=pid,
        vector=vec(pid if seed is None else seed),
        version=version,
        text_hash=text or f"h{pid}-v{version}",
        payload={"title": f"listing {pid}", "price": 1000 * pid},
    )


class StoreContract:
    """The behaviour every ``VectorStore`` must have. Subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> VectorStore:
        raise NotImplementedError

    async def test_ensure_collection_is_idempotent(self, store: VectorStore) -> None:
        await store.upsert([point(1, 10)])
        await store.ensure_collection()
        await store.ensure_collection()
        assert await store.count() == 1

    async def test_upsert_get_count_scan(self, store: VectorStore) -> None:
        await store.upsert([point(i, 100 + i) for i in range(1, 6)])
        assert await store.count() == 5
        got = await store.get([2, 4, 99])
        assert got == {2: StoredListing(2, 102, "h2-v102"), 4: StoredListing(4, 104, "h4-v104")}
        scanned = sorted([s async for s in store.scan()], key=lambda s: s.product_id)
        assert [s.product_id for s in scanned] == [1, 2, 3, 4, 5]
        assert scanned[0] == StoredListing(1, 101, "h1-v101")

    async def test_scan_pages_through_more_than_one_page(self, store: VectorStore) -> None:
        await store.upsert([point(i, 1) for i in range(1, 1_203)])
        ids = [s.product_id async for s in store.scan()]
        assert sorted(ids) == list(range(1, 1_203))

    async def test_empty_inputs_are_no_ops(self, store: VectorStore) -> None:
        await store.upsert([])
        await store.delete([])
        assert await store.get([]) == {}
        assert await store.count() == 0

    async def test_search_finds_the_nearest_with_payload(self, store: VectorStore) -> None:
        await store.upsert([point(i, 1) for i in range(1, 21)])
        hits = await store.search(vec(7), limit=3)
        assert len(hits) == 3
        assert hits[0].product_id == 7
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert hits[0].payload["title"] == "listing 7"
        assert hits[0].payload["version"] == 1
        assert hits[0].score >= hits[1].score >= hits[2].score

    async def test_older_version_never_overwrites_newer(self, store: VectorStore) -> None:
        await store.upsert([point(1, 500, text="new")])
        await store.upsert([point(1, 300, seed=99, text="old")])
        assert (await store.get([1]))[1] == StoredListing(1, 500, "new")
        hits = await store.search(vec(1), limit=1)
        assert hits[0].product_id == 1
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)  # the vector was not replaced either

    async def test_newer_version_replaces_and_equal_version_rewrites(self, store: VectorStore) -> None:
        await store.upsert([point(1, 500, text="v500")])
        await store.upsert([point(1, 700, text="v700")])
        assert (await store.get([1]))[1] == StoredListing(1, 700, "v700")
        await store.upsert([point(1, 700, text="re-embedded")])  # a forced re-embed of the same row
        assert (await store.get([1]))[1] == StoredListing(1, 700, "re-embedded")

    async def test_one_batch_mixes_stale_newer_and_new_points(self, store: VectorStore) -> None:
        await store.upsert([point(1, 500, text="keep"), point(2, 500, text="replace-me")])
        await store.upsert(
            [point(1, 100, text="stale"), point(2, 900, text="newer"), point(3, 1, text="new")]
        )
        assert await store.get([1, 2, 3]) == {
            1: StoredListing(1, 500, "keep"),
            2: StoredListing(2, 900, "newer"),
            3: StoredListing(3, 1, "new"),
        }

    async def test_update_payloads_moves_version_forward_and_keeps_the_vector(
        self, store: VectorStore
    ) -> None:
        await store.upsert([point(1, 10), point(2, 50)])
        await store.update_payloads(
            [
                PayloadUpdate(1, 20, "h1-v10", {"title": "new title", "price": 5}),
                PayloadUpdate(2, 40, "h2-v50", {"title": "older"}),  # stale: point 2 is at version 50
                PayloadUpdate(3, 99, "h3", {"title": "absent"}),  # never creates a point
            ]
        )
        assert await store.get([1, 2, 3]) == {
            1: StoredListing(1, 20, "h1-v10"),
            2: StoredListing(2, 50, "h2-v50"),
        }
        hits = await store.search(vec(1), limit=1)
        assert hits[0].product_id == 1
        assert hits[0].payload["title"] == "new title"
        # now an in-flight write of the old version (10) can no longer replace the point
        await store.upsert([point(1, 15, seed=7)])
        assert (await store.get([1]))[1].version == 20

    async def test_delete(self, store: VectorStore) -> None:
        await store.upsert([point(i, 10) for i in range(1, 5)])
        await store.delete([1, 3, 42])
        assert sorted(await store.get([1, 2, 3, 4])) == [2, 4]
        assert await store.count() == 2

    async def test_delete_up_to_a_version_spares_newer_points(self, store: VectorStore) -> None:
        await store.upsert([point(1, 10), point(2, 20), point(3, 30)])
        await store.delete([1, 2, 3], max_version=20)
        assert sorted(await store.get([1, 2, 3])) == [3]

    async def test_ping(self, store: VectorStore) -> None:
        await store.ping()

    async def test_a_wrong_vector_size_is_permanent(self, store: VectorStore) -> None:
        with pytest.raises(PermanentError):
            await store.upsert([ListingPoint(1, [1.0, 0.0], 1, "h")])

    async def write_unversioned(self, store: VectorStore, pid: int) -> None:
        """Store a point the way an older indexer did: no version, no text hash."""
        raise NotImplementedError

    async def test_a_point_without_version_is_replaceable(self, store: VectorStore) -> None:
        await self.write_unversioned(store, 1)
        assert (await store.get([1]))[1] == StoredListing(1, 0, "")
        await store.upsert([point(1, 5, text="now-versioned")])
        assert (await store.get([1]))[1] == StoredListing(1, 5, "now-versioned")

    # --- the collection's identity -----------------------------------------------------------------
    @pytest.fixture
    def opened(self, tmp_path: Path) -> Opener:
        """Stores on one collection, one after the other (as successive processes would open it)."""
        raise NotImplementedError

    async def recorded(self, store: VectorStore) -> CollectionIdentity | None:
        """The identity the collection records, read past the store."""
        raise NotImplementedError

    async def test_a_writer_records_its_identity_and_opens_again(self, opened: Opener) -> None:
        async with opened() as store:
            await store.ensure_collection(OFFLINE)
            await store.ensure_collection(OFFLINE)  # idempotent
            await store.upsert([point(1, 1)])
            assert await self.recorded(store) == OFFLINE
        async with opened() as store:
            with capture_logs() as logs:
                await store.ensure_collection(OFFLINE)
            assert logs == []
            assert await store.count() == 1

    @pytest.mark.parametrize("part", sorted(OTHERS))
    async def test_a_writer_with_another_identity_is_refused(self, opened: Opener, part: str) -> None:
        other = OTHERS[part]
        async with opened() as store:
            await store.ensure_collection(OFFLINE)
            await store.upsert([point(1, 1)])
        async with opened(size=other.dimensions) as store:
            with pytest.raises(ConfigurationError) as refused:
                await store.ensure_collection(other)
        message = str(refused.value)
        assert f"was built with {OFFLINE.describe()}; the settings ask for {other.describe()}" in message
        assert "COLLECTION" in message
        assert "force" in message
        async with opened() as store:  # refused, not rewritten
            await store.ensure_collection(OFFLINE)
            assert await self.recorded(store) == OFFLINE
            assert await store.count() == 1

    async def test_a_collection_from_before_identities_is_adopted_once(self, opened: Opener) -> None:
        async with opened() as store:
            await store.ensure_collection()  # as the indexer did before identities were recorded
            await store.upsert([point(1, 1)])
            assert await self.recorded(store) is None
        async with opened() as store:
            with capture_logs() as logs:
                await store.ensure_collection(OFFLINE)
                await store.ensure_collection(OFFLINE)
            assert [e["event"] for e in logs] == ["collection_identity_adopted"]
            assert logs[0]["log_level"] == "warning"
            assert logs[0]["model"] == HASHING_MODEL
            assert await self.recorded(store) == OFFLINE
            assert await store.count() == 1
        async with opened() as store:  # adopted: from now on another identity is refused
            with pytest.raises(ConfigurationError, match=OPENAI_MODEL):
                await store.ensure_collection(OTHERS["model"])

    async def test_a_collection_from_before_of_another_size_is_refused_not_adopted(
        self, opened: Opener
    ) -> None:
        async with opened() as store:
            await store.ensure_collection()
        other = OTHERS["dimensions"]
        async with opened(size=other.dimensions) as store:
            with pytest.raises(ConfigurationError, match="VECTOR_SIZE") as refused:
                await store.ensure_collection(other)
        assert "COLLECTION" in str(refused.value)
        async with opened() as store:
            await store.ensure_collection()
            assert await self.recorded(store) is None

    async def test_a_reader_neither_checks_nor_records(self, opened: Opener) -> None:
        async with opened() as store:
            await store.ensure_collection(OFFLINE)
        async with opened() as store:
            await store.ensure_collection()  # the API's store: no identity
            assert await self.recorded(store) == OFFLINE

    async def test_an_identity_of_another_size_than_the_store_is_a_wiring_mistake(
        self, opened: Opener
    ) -> None:
        async with opened() as store:
            with pytest.raises(ValueError, match="dimensions"):
                await store.ensure_collection(OTHERS["dimensions"])


async def _metadata(store: VectorStore) -> CollectionIdentity | None:
    assert isinstance(store, QdrantServerStore)
    info = await store._client.get_collection(store._collection)
    return identity_from_record(info.config.metadata)


class TestLocalModeStore(StoreContract):
    """qdrant-client's in-process local mode (``VECTOR_STORE=local``, ``QDRANT_PATH=:memory:``)."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[VectorStore]:
        store = QdrantServerStore(
            AsyncQdrantClient(location=":memory:"), collection="t", vector_size=SIZE, payload_indexes=False
        )
        await store.ensure_collection()
        yield store
        await store.aclose()

    async def write_unversioned(self, store: VectorStore, pid: int) -> None:
        assert isinstance(store, QdrantServerStore)
        legacy = models.PointStruct(id=pid, vector=vec(pid), payload={"title": "legacy"})
        await store._client.upsert("t", [legacy])

    @pytest.fixture
    async def opened(self, tmp_path: Path) -> AsyncIterator[Opener]:
        client = AsyncQdrantClient(location=":memory:")  # one client holds the collection: shared

        @contextlib.asynccontextmanager
        async def open_(size: int = SIZE) -> AsyncIterator[VectorStore]:
            yield QdrantServerStore(client, collection="t", vector_size=size, payload_indexes=False)

        yield open_
        await client.close()

    async def recorded(self, store: VectorStore) -> CollectionIdentity | None:
        return await _metadata(store)


class TestLocalPathStore(TestLocalModeStore):
    """qdrant-client's local mode on disk (``VECTOR_STORE=local``, ``QDRANT_PATH=<folder>``)."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[VectorStore]:
        store = QdrantServerStore(
            AsyncQdrantClient(path=str(tmp_path / "local")), collection="t", vector_size=SIZE,
            payload_indexes=False,
        )  # fmt: skip
        await store.ensure_collection()
        yield store
        await store.aclose()

    @pytest.fixture
    def opened(self, tmp_path: Path) -> Opener:
        @contextlib.asynccontextmanager
        async def open_(size: int = SIZE) -> AsyncIterator[VectorStore]:
            client = AsyncQdrantClient(path=str(tmp_path / "local"))  # one opener at a time
            store = QdrantServerStore(client, collection="t", vector_size=size, payload_indexes=False)
            try:
                yield store
            finally:
                await store.aclose()

        return open_


class TestEdgeStore(StoreContract):
    """Qdrant Edge in-process (``VECTOR_STORE=edge``)."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[VectorStore]:
        store = QdrantEdgeStore(tmp_path / "shard", vector_size=SIZE)
        await store.ensure_collection()
        yield store
        await store.aclose()

    async def write_unversioned(self, store: VectorStore, pid: int) -> None:
        assert isinstance(store, QdrantEdgeStore)
        operation = qe.UpdateOperation.upsert_points([qe.Point(pid, vec(pid), {"title": "legacy"})])
        await store._run("raw", lambda shard: shard.update(operation))

    @pytest.fixture
    def opened(self, tmp_path: Path) -> Opener:
        @contextlib.asynccontextmanager
        async def open_(size: int = SIZE) -> AsyncIterator[VectorStore]:
            store = QdrantEdgeStore(tmp_path / "bike_listings", vector_size=size)  # one opener at a time
            try:
                yield store
            finally:
                await store.aclose()

        return open_

    async def recorded(self, store: VectorStore) -> CollectionIdentity | None:
        assert isinstance(store, QdrantEdgeStore)
        return read_identity(store._identity_file)

    async def test_the_identity_is_a_json_file_in_the_shard_folder(
        self, opened: Opener, tmp_path: Path
    ) -> None:
        async with opened() as store:
            await store.ensure_collection(OFFLINE)
        files = sorted(p.name for p in (tmp_path / "bike_listings").iterdir())
        assert IDENTITY_FILE in files
        assert not [name for name in files if name.endswith(".tmp")]  # written through a temporary, renamed
        record = json.loads((tmp_path / "bike_listings" / IDENTITY_FILE).read_text())
        assert record == {
            "embedding_model": HASHING_MODEL,
            "vector_size": SIZE,
            "text_template_hash": OFFLINE.template_hash,
        }

    async def test_an_unreadable_identity_file_is_a_configuration_error(
        self, opened: Opener, tmp_path: Path
    ) -> None:
        async with opened() as store:
            await store.ensure_collection(OFFLINE)
        (tmp_path / "bike_listings" / IDENTITY_FILE).write_text("{not json")
        async with opened() as store:
            with pytest.raises(ConfigurationError, match="delete it"):
                await store.ensure_collection(OFFLINE)


@pytest.mark.parametrize(
    ("kind", "path", "expected"),
    [
        (VectorStoreKind.EDGE, "edge-data", ServedEdgeStore),  # the generation its pointer names
        (VectorStoreKind.LOCAL, ":memory:", QdrantServerStore),
        (VectorStoreKind.LOCAL, "local-data", QdrantServerStore),
    ],
)
async def test_factory(kind: VectorStoreKind, path: str, expected: type, tmp_path: Path) -> None:
    location = Path(path) if path == ":memory:" else tmp_path / path
    settings = Settings(vector_store=kind, qdrant_path=location, vector_size=SIZE, collection="c")
    store = build_vector_store(settings)
    assert isinstance(store, expected)
    await store.ensure_collection()
    await store.upsert([point(1, 1)])
    assert await store.count() == 1
    await store.aclose()


async def test_factory_server_mode_reports_unreachable_server() -> None:
    settings = Settings(
        vector_store=VectorStoreKind.SERVER, qdrant_url="http://127.0.0.1:9", vector_size=SIZE
    )
    store = build_vector_store(settings)
    assert isinstance(store, QdrantServerStore)
    with pytest.raises(DependencyUnavailable):
        await store.ping()
    await store.aclose()
