"""How both stores record a collection's :class:`CollectionIdentity` and judge it at start-up.

The record is one flat JSON object (:func:`identity_record`): the Qdrant collection's ``metadata``
for the server and local mode, a small file beside the shard for Qdrant Edge. The rule is the
same for both: a collection recorded with another identity is refused (:func:`refuse_another`,
with a message naming both and the way out); one recorded with none was built before identities
were recorded and is adopted (the writer records its own and calls :func:`log_adopted`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from finally_indexer.core.errors import ConfigurationError
from finally_indexer.processor.vectorstore import CollectionIdentity

__all__ = [
    "RECORDED_DIMENSIONS",
    "RECORDED_MODEL",
    "RECORDED_TEMPLATE_HASH",
    "REINDEX_HINT",
    "check_dimensions",
    "identity_from_record",
    "identity_record",
    "log_adopted",
    "refuse_another",
]

log = structlog.get_logger(__name__)

#: Keys of the record (the server's collection metadata, the edge store's identity file).
RECORDED_MODEL = "embedding_model"
RECORDED_DIMENSIONS = "vector_size"
RECORDED_TEMPLATE_HASH = "text_template_hash"

#: The way out of a refused start-up, quoted by every refusal.
REINDEX_HINT = (
    "Its vectors cannot be mixed with new ones: start the workers with the settings it was built "
    "with and build a new generation with these without downtime (run `finally-indexer reindex` with "
    "these settings), or set COLLECTION to a new name and sync with force"
)


def identity_record(identity: CollectionIdentity) -> dict[str, Any]:
    """The identity as stored with the collection."""
    return {
        RECORDED_MODEL: identity.model,
        RECORDED_DIMENSIONS: identity.dimensions,
        RECORDED_TEMPLATE_HASH: identity.template_hash,
    }


def identity_from_record(record: Mapping[str, Any] | None) -> CollectionIdentity | None:
    """The identity a record holds; ``None`` when it holds none (or an incomplete one)."""
    record = record or {}
    model = record.get(RECORDED_MODEL)
    dimensions = record.get(RECORDED_DIMENSIONS)
    template = record.get(RECORDED_TEMPLATE_HASH)
    if not isinstance(model, str) or not isinstance(template, str) or not isinstance(dimensions, int):
        return None
    return CollectionIdentity(model=model, dimensions=dimensions, template_hash=template)


def refuse_another(collection: str, recorded: CollectionIdentity, configured: CollectionIdentity) -> None:
    """Raise :class:`ConfigurationError` naming both identities when they differ."""
    if recorded != configured:
        raise ConfigurationError(
            f"collection {collection!r} was built with {recorded.describe()}; the settings ask for "
            f"{configured.describe()}. {REINDEX_HINT}"
        )


def check_dimensions(identity: CollectionIdentity, vector_size: int) -> None:
    """A store is built for one vector size; an identity of another size is a wiring mistake."""
    if identity.dimensions != vector_size:
        raise ValueError(f"identity of {identity.dimensions} dimensions for a store of {vector_size}")


def log_adopted(collection: str, identity: CollectionIdentity) -> None:
    """The one warning for a collection that recorded no identity and now records this one."""
    log.warning(
        "collection_identity_adopted",
        collection=collection,
        model=identity.model,
        dimensions=identity.dimensions,
        template_hash=identity.template_hash,
        hint="the collection recorded no model; its vectors are assumed to come from these settings",
    )
