"""Fixtures for the pipeline tests: an in-memory Qdrant, the offline embedder and wired pipelines.

``open_pipeline`` opens a pipeline on the test's Redis, schema and store, with the offline
embedder or one the test hands in (a :class:`~pipeline.helpers.HookedEmbedder` that fails, gates or
counts calls), and with setting overrides (``await open_pipeline(embedder=hooked, max_deliveries=2)``);
every pipeline it opened is closed after the test. ``pipeline`` is the plain one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fakes.fixtures import fake_openai
from pipeline.helpers import OpenPipeline
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
async def open_pipeline(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder
) -> AsyncIterator[OpenPipeline]:
    """Opens pipelines on the test's Redis names, schema and store (drain mode); closes them afterwards."""
    opened: list[Pipeline] = []
    offline = embedder

    async def open_(*, embedder: Embedder | None = None, **overrides: Any) -> Pipeline:
        wired = await Pipeline.open(
            settings.model_copy(update=overrides), redis=redis, pool=pool, store=store,
            embedder=embedder or offline,
        )  # fmt: skip
        opened.append(wired)
        return wired

    yield open_
    for wired in opened:
        await wired.aclose()


@pytest.fixture
async def pipeline(open_pipeline: OpenPipeline) -> Pipeline:
    """The stream side wired on the test's Redis names, schema, store and the offline embedder."""
    return await open_pipeline()
