"""``build_embedder(settings)``: the embedder the settings ask for (``auto`` → OpenAI iff a key is set).

Given a Redis client, an OpenAI embedder draws on the rate budget every worker process shares for
its key and model (``EMBEDDING_TPM`` / ``EMBEDDING_RPM``, or the limits the API's headers name).
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from finally_indexer.core.errors import ConfigurationError
from finally_indexer.core.settings import EmbedderKind, Settings
from finally_indexer.processor.embedders.budget import RateBudget, budget_key, read_budget
from finally_indexer.processor.embedders.hashing import HashingEmbedder
from finally_indexer.processor.embedders.openai import OpenAIEmbedder
from finally_indexer.processor.embedding import Embedder

__all__ = ["budget_limits", "build_budget", "build_embedder", "limits_of"]


def build_embedder(settings: Settings, *, redis: Redis | None = None) -> Embedder:
    """An :class:`OpenAIEmbedder` (on the shared budget when ``redis`` is given) or a
    :class:`HashingEmbedder`, sized to ``VECTOR_SIZE``."""
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
        budget=None if redis is None else build_budget(settings, redis),
        usd_per_million_tokens=settings.usd_per_million_tokens(settings.embedding_model),
    )


async def budget_limits(settings: Settings, redis: Redis) -> tuple[int, int]:
    """Tokens and requests per minute of the configured key and model: the settings', else those
    learned from the API's headers (0: unknown; always 0 for the offline embedder)."""
    if settings.resolved_embedder() is not EmbedderKind.OPENAI or settings.openai_api_key is None:
        return 0, 0
    learned = await read_budget(redis, budget_key(settings.openai_api_key, settings.embedding_model))
    return limits_of(settings, learned)


def limits_of(settings: Settings, learned: Mapping[str, float]) -> tuple[int, int]:
    """Tokens and requests per minute: the settings', else those learned (the budget hash's)."""
    return (
        settings.embedding_tpm or int(learned.get("lt", 0)),
        settings.embedding_rpm or int(learned.get("lr", 0)),
    )


def build_budget(settings: Settings, redis: Redis) -> RateBudget:
    """The shared rate budget of the configured key and model."""
    if settings.openai_api_key is None:
        raise ConfigurationError("the embedding budget needs OPENAI_API_KEY")
    return RateBudget(
        redis,
        key=budget_key(settings.openai_api_key, settings.embedding_model),
        tokens_per_minute=settings.embedding_tpm,
        requests_per_minute=settings.embedding_rpm,
        burst_s=settings.embedding_burst_s,
    )
