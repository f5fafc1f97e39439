"""Fixtures for the pipeline tests: an in-memory Qdrant, the offline embedder and a wired pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fakes.fixtures import fake_openai
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.embedders.factory import build_embedder
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.vectorstore import VectorStore

__all__ = ["fake_openai"]


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[VectorStore]:
    """qdrant-client's in-memory local mode (the stand-in for a Qdrant server)."""
    vectors = build_vector_store(settings.model_copy(update={"qdrant_path": Path(":memory:")}))
    await vectors.ensure_collection()
    yield vectors
    await vectors.aclose()


@pytest.fixture
async def embedder(settings: Settings) -> AsyncIterator[Embedder]:
    """The offline hashing embedder."""
    model = build_embedder(settings)
    yield model
    await model.aclose()


@pytest.fixture
async def pipeline(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder
) -> AsyncIterator[Pipeline]:
    """The stream side wired on the test's Redis names, schema, store and embedder (drain mode)."""
    wired = await Pipeline.open(settings, redis=redis, pool=pool, store=store, embedder=embedder)
    yield wired
    await wired.aclose()
