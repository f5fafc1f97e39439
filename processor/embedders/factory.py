"""``build_embedder(settings)``: the embedder the settings ask for (``auto`` → OpenAI iff a key is set)."""

from __future__ import annotations

from finally_indexer.core.errors import ConfigurationError
from finally_indexer.core.settings import EmbedderKind, Settings
from finally_indexer.processor.embedders.hashing import HashingEmbedder
from finally_indexer.processor.embedders.openai import OpenAIEmbedder
from finally_indexer.processor.embedding import Embedder

__all__ = ["build_embedder"]


def build_embedder(settings: Settings) -> Embedder:
    """An :class:`OpenAIEmbedder` or a :class:`HashingEmbedder`, sized to ``VECTOR_SIZE``."""
    kind = settings.resolved_embedder()
    if kind is EmbedderKind.HASHING:
        return HashingEmbedder(dimensions=settings.vector_size)
    if settings.openai_api_key is None:
        raise ConfigurationError("EMBEDDER=openai needs OPENAI_API_KEY")
    return OpenAIEmbedder(
        api_key=settings.openai_api_key,
        model=settings.embedding_model,
        dimensions=settings.vector_size,
        base_url=settings.openai_base_url,
        concurrency=settings.embedding_concurrency,
        max_input_tokens=settings.embedding_max_input_tokens,
    )
