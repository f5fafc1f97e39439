"""The ``VectorStore`` interface: where listing vectors live (a Qdrant server or Qdrant in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ListingPoint:
    """One listing's vector and payload. The point id is the product id (deterministic, collision-free).

    ``version`` orders writes of the same listing: the source row's ``updated_at`` in
    microseconds since the epoch. A write never replaces a stored point with a higher version.
    """

    product_id: int
    vector: list[float]
    version: int
    text_hash: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PayloadUpdate:
    """A new payload and version for a stored point whose vector stays valid (same text hash).

    Used when a row changed without changing its embedded text (price format aside, e.g. a new
    ``img_url`` or only ``updated_at``): no embedding call, but the stored version moves forward so
    that an older write still in flight can no longer replace the point.
    """

    product_id: int
    version: int
    text_hash: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredListing:
    """What the store holds for one listing (for audits and convergence checks)."""

    product_id: int
    version: int
    text_hash: str
    model: str | None = None  # the embedding model named in the payload (None: written without one)
    source_key: str | None = None  # see processor.source_keys (None: written without one)
    payload: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result."""

    product_id: int
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CollectionIdentity:
    """What a collection's vectors were built with: the embedding model, their size and the hash
    of the text template (:func:`~finally_indexer.processor.texts.template_hash`).

    Vectors of two identities are not comparable: a store records the identity when it creates the
    collection and refuses to let a writer with another one in (see ``ensure_collection``).
    """

    model: str
    dimensions: int
    template_hash: str

    def describe(self) -> str:
        """``model X at N dimensions (template H)``, for messages to operators."""
        return f"model {self.model} at {self.dimensions} dimensions (template {self.template_hash})"


@runtime_checkable
class VectorStore(Protocol):
    """A Qdrant collection of listings, whichever engine holds it."""

    async def ensure_collection(self, identity: CollectionIdentity | None = None) -> None:
        """Create the collection if absent (Cosine, HNSW defaults, the configured size).

        With an ``identity`` (processes that write: the workers), the collection is created
        recording it; an existing collection recorded with another identity raises
        :class:`~finally_indexer.core.errors.ConfigurationError` naming both, and one recorded
        with none (built before identities were recorded) is adopted: the identity is recorded
        and a warning logged. Without one (readers such as the API) nothing is checked or recorded.
        A collection whose vectors are not of the store's size is refused either way.
        """
        ...

    async def upsert(self, points: Sequence[ListingPoint]) -> None:
        """Insert or replace points; a stored point with a newer ``version`` is left untouched."""
        ...

    async def update_payloads(self, updates: Sequence[PayloadUpdate]) -> None:
        """Replace the payload (keeping the vector) of stored points whose version is not newer."""
        ...

    async def delete(self, product_ids: Sequence[int], *, max_version: int | None = None) -> None:
        """Remove the listings' points (only those whose version is ≤ ``max_version`` when given)."""
        ...

    async def get(self, product_ids: Sequence[int]) -> dict[int, StoredListing]:
        """What is stored for these ids (missing ids are absent from the result)."""
        ...

    def scan(self) -> AsyncIterator[StoredListing]:
        """Every stored listing, without vectors (for audits and convergence checks)."""
        ...

    async def count(self) -> int: ...

    async def search(self, vector: Sequence[float], limit: int = 10) -> list[SearchHit]: ...

    async def ping(self) -> None:
        """Raise :class:`~finally_indexer.core.errors.DependencyUnavailable` when unreachable."""
        ...

    async def aclose(self) -> None: ...
