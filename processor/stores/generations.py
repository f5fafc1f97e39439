"""Generations of one collection behind its served name, per engine: the alias (or pointer) and the
collections it may point at.

A *generation* is a collection built with one :class:`CollectionIdentity`, named after it by
:func:`generation_name`. The served name (``COLLECTION``) points at one generation:

- **Qdrant server and local mode** (:class:`AliasFamily`): the served name is a Qdrant collection
  alias, switched with one ``update_collection_aliases`` call (delete + create in one request:
  atomic for every reader). Qdrant resolves the alias in every call, so the served store is a plain
  :class:`QdrantServerStore` on the served name.
- **Qdrant Edge** (:class:`EdgeFamily`): the served name is the service's own pointer file,
  ``QDRANT_PATH/<served>.generation.json``, written atomically (temporary file, fsync, rename,
  fsync of the directory). :class:`ServedEdgeStore` resolves it before every call — a ``stat``,
  re-read only when the file changed — so a reader in another process follows a switch at its
  next call.

A collection that exists under the served name itself (built before generations) is *adopted*:
it is the first generation, named as the served name. On the edge store it simply stays a
directory the pointer can point back at. Qdrant cannot hold an alias and a collection of the same
name, so on a server (and in local mode) the first switch away from an adopted collection deletes
it and creates the alias: readers see an error for the moment between the two calls, and the
adopted generation cannot be rolled back to (docs/operations.md says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from finally_indexer.processor.stores.qdrant_edge import (
    EDGE_CONFIG_FILE,
    QdrantEdgeStore,
    write_json_atomically,
)
from finally_indexer.processor.vectorstore import (
    CollectionIdentity,
    ListingPoint,
    PayloadUpdate,
    SearchHit,
    StoredListing,
    VectorStore,
)

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

__all__ = [
    "AliasFamily",
    "EdgeFamily",
    "Family",
    "ServedEdgeStore",
    "family_of",
    "generation_name",
    "pointer_path",
]

#: Characters of a model name kept in a generation name (Qdrant and file systems take these).
_UNSAFE = re.compile(r"[^a-z0-9_-]+")
#: Characters of the template hash in a generation name (enough to tell templates apart).
HASH_CHARS = 8
#: Suffix of the edge store's pointer file beside the generations' directories.
POINTER_SUFFIX = ".generation.json"


def generation_name(served: str, identity: CollectionIdentity, taken: set[str]) -> str:
    """``<served>--<model>-<dimensions>-<template hash>``; when that name was used before (the same
    identity built again), ``-2``, ``-3`` … is appended: names are never reused."""
    model = _UNSAFE.sub("-", identity.model.lower()).strip("-") or "model"
    base = f"{served}--{model}-{identity.dimensions}-{identity.template_hash[:HASH_CHARS]}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


class Family(Protocol):
    """The generations of one served name in one engine."""

    served: str

    def open(self, name: str, vector_size: int) -> VectorStore:
        """The store of generation ``name`` (one object per name and process: shards have one opener)."""
        ...

    async def current(self) -> str | None:
        """The generation the served name points at; None when it points nowhere (no alias, no pointer)."""
        ...

    async def exists(self, name: str) -> bool:
        """Whether a collection (not an alias) of that name exists."""
        ...

    async def point(self, name: str, vector_size: int) -> None:
        """Switch the served name to generation ``name`` (atomically for readers)."""
        ...

    async def drop(self, name: str) -> None:
        """Delete generation ``name``'s collection (never the one the served name points at)."""
        ...


def _classified(op: str) -> contextlib.AbstractContextManager[None]:
    """qdrant-client's errors as the service's (unreachable → DependencyUnavailable …)."""
    from finally_indexer.processor.stores.qdrant_server import _classified as classified  # noqa: PLC0415

    return classified(op)


def family_of(store: VectorStore) -> Family | None:
    """The generations behind ``store`` when it is a served store (None: a plain collection)."""
    family = getattr(store, "generations", None)
    return family if isinstance(family, (EdgeFamily, AliasFamily)) else None


# --- Qdrant server and local mode: collection aliases ----------------------------------------------
class AliasFamily:
    """Generations as collections of one ``AsyncQdrantClient``, the served name an alias."""

    def __init__(self, client: AsyncQdrantClient, *, served: str, payload_indexes: bool) -> None:
        self._client = client
        self.served = served
        self._payload_indexes = payload_indexes

    def open(self, name: str, vector_size: int) -> VectorStore:
        from finally_indexer.processor.stores.qdrant_server import QdrantServerStore  # noqa: PLC0415

        return QdrantServerStore(
            self._client, collection=name, vector_size=vector_size, payload_indexes=self._payload_indexes
        )

    async def current(self) -> str | None:
        with _classified("get_aliases"):
            response = await self._client.get_aliases()
        for alias in response.aliases:
            if alias.alias_name == self.served:
                return alias.collection_name
        return None

    async def exists(self, name: str) -> bool:
        if name == self.served and await self.current() is not None:
            return False  # the served name is a collection only when it is no alias
        with _classified("collection_exists"):
            return await self._client.collection_exists(name)

    async def point(self, name: str, vector_size: int) -> None:
        from qdrant_client import models as m  # noqa: PLC0415

        del vector_size  # the collection knows its size
        current = await self.current()
        if current == name or (current is None and name == self.served):
            return
        operations: list[Any] = []
        with _classified("update_collection_aliases"):
            if current is not None:
                operations.append(m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=self.served)))
            elif await self._client.collection_exists(self.served):
                # an adopted collection holds the name the alias needs: Qdrant has no rename
                await self._client.delete_collection(self.served)
            operations.append(
                m.CreateAliasOperation(
                    create_alias=m.CreateAlias(collection_name=name, alias_name=self.served)
                )
            )
            await self._client.update_collection_aliases(change_aliases_operations=operations)

    async def drop(self, name: str) -> None:
        if name != await self.current():
            with _classified("delete_collection"):
                await self._client.delete_collection(name)


# --- Qdrant Edge: the service's pointer file ---------------------------------------------------------
def pointer_path(root: Path, served: str) -> Path:
    """The edge store's pointer file of ``served``."""
    return Path(root) / f"{served}{POINTER_SUFFIX}"


class EdgeFamily:
    """Generations as shard directories under ``root``, the served name a pointer file beside them."""

    def __init__(self, root: Path, *, served: str) -> None:
        self._root = Path(root)
        self.served = served
        self._pointer = pointer_path(self._root, served)
        self._stores: dict[str, QdrantEdgeStore] = {}
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime, size) of the pointer last read
        self._target: tuple[str, int] | None = None

    def open(self, name: str, vector_size: int) -> QdrantEdgeStore:
        store = self._stores.get(name)
        if store is None:
            store = self._stores[name] = QdrantEdgeStore(self._root / name, vector_size=vector_size)
        return store

    def resolve(self) -> tuple[str, int] | None:
        """(generation, vector size) the pointer names, re-read only when the file changed."""
        try:
            st = os.stat(self._pointer)
        except FileNotFoundError:
            self._seen = self._target = None
            return None
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen != self._seen:
            record = json.loads(self._pointer.read_text(encoding="utf-8"))
            self._target = (str(record["generation"]), int(record["vector_size"]))
            self._seen = seen
        return self._target

    async def current(self) -> str | None:
        target = self.resolve()
        return target[0] if target is not None else None

    async def exists(self, name: str) -> bool:
        return name in self._stores or (self._root / name / EDGE_CONFIG_FILE).exists()

    async def point(self, name: str, vector_size: int) -> None:
        await asyncio.to_thread(self._write_pointer, name, vector_size)

    def _write_pointer(self, name: str, vector_size: int) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self._pointer, {"generation": name, "vector_size": vector_size})

    async def drop(self, name: str) -> None:
        if name == await self.current():
            return
        store = self._stores.pop(name, None)
        if store is not None:
            await store.aclose()
        await asyncio.to_thread(shutil.rmtree, self._root / name, True)

    async def aclose(self) -> None:
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.aclose()


class ServedEdgeStore:
    """The edge store under its served name: every call goes to the generation the pointer names
    (the directory of the served name itself while there is no pointer: an adopted or new shard)."""

    def __init__(self, family: EdgeFamily, *, vector_size: int) -> None:
        self.generations = family
        self._vector_size = vector_size

    def __repr__(self) -> str:
        return f"ServedEdgeStore(served={self.generations.served!r})"

    def _current(self) -> QdrantEdgeStore:
        target = self.generations.resolve()
        name, size = target if target is not None else (self.generations.served, self._vector_size)
        return self.generations.open(name, size)

    async def ensure_collection(self, identity: CollectionIdentity | None = None) -> None:
        await self._current().ensure_collection(identity)

    async def upsert(self, points: Sequence[ListingPoint]) -> None:
        await self._current().upsert(points)

    async def update_payloads(self, updates: Sequence[PayloadUpdate]) -> None:
        await self._current().update_payloads(updates)

    async def delete(self, product_ids: Sequence[int], *, max_version: int | None = None) -> None:
        await self._current().delete(product_ids, max_version=max_version)

    async def get(self, product_ids: Sequence[int]) -> dict[int, StoredListing]:
        return await self._current().get(product_ids)

    async def scan(self) -> AsyncIterator[StoredListing]:
        # one generation for the whole scan, even when the pointer moves meanwhile
        async for listing in self._current().scan():
            yield listing

    async def count(self) -> int:
        return await self._current().count()

    async def search(self, vector: Sequence[float], limit: int = 10) -> list[SearchHit]:
        return await self._current().search(vector, limit)

    async def ping(self) -> None:
        await self._current().ping()

    async def optimize(self) -> bool:
        """Build the serving generation's HNSW index now (see :meth:`QdrantEdgeStore.optimize`)."""
        return await self._current().optimize()

    async def flush(self) -> None:
        await self._current().flush()

    async def aclose(self) -> None:
        await self.generations.aclose()
