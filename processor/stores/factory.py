"""``build_vector_store(settings)``: the store ``VECTOR_STORE`` names (server, local or edge)."""

from __future__ import annotations

from pathlib import Path

from finally_indexer.core.settings import Settings, VectorStoreKind
from finally_indexer.processor.stores.generations import EdgeFamily, ServedEdgeStore
from finally_indexer.processor.vectorstore import VectorStore

__all__ = ["build_vector_store"]


def build_vector_store(settings: Settings) -> VectorStore:
    """``server`` → Qdrant at ``QDRANT_URL``; ``local`` → qdrant-client local mode (``QDRANT_PATH``,
    ``:memory:`` for memory); ``edge`` → Qdrant Edge in ``QDRANT_PATH``, the generation the pointer file names (see
    :mod:`.generations`; ``QDRANT_PATH/<collection>`` while there is no pointer)."""
    if settings.vector_store is VectorStoreKind.EDGE:
        family = EdgeFamily(Path(settings.qdrant_path), served=settings.collection)
        return ServedEdgeStore(family, vector_size=settings.vector_size)
    # Imported here: qdrant-client takes seconds to import, which every start of a worker on the
    # edge store (the default) would pay, a restart after a crash included.
    from finally_indexer.processor.stores.qdrant_server import QdrantServerStore  # noqa: PLC0415

    return QdrantServerStore.from_settings(settings)
