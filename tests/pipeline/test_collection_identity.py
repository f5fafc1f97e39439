"""A worker refuses, at start-up, a collection built with another model, size or text template."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from finally_indexer.core.cli import EXIT_CONFIG
from finally_indexer.core.constants import HASHING_MODEL, OPENAI_MODEL
from finally_indexer.core.errors import ConfigurationError
from finally_indexer.core.settings import Settings
from finally_indexer.processor.embedders.factory import build_embedder
from finally_indexer.processor.pipeline import Pipeline, collection_identity
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.texts import template_hash
from finally_indexer.processor.vectorstore import CollectionIdentity


async def _build_collection(settings: Settings, identity: CollectionIdentity) -> None:
    """The collection as an earlier run with ``identity`` left it."""
    store = build_vector_store(settings)
    try:
        await store.ensure_collection(identity)
    finally:
        await store.aclose()


def _openai_built(settings: Settings) -> CollectionIdentity:
    return CollectionIdentity(OPENAI_MODEL, settings.vector_size, template_hash(settings.text_template))


async def test_the_identity_comes_from_the_embedder_and_the_settings(settings: Settings) -> None:
    embedder = build_embedder(settings)
    changed = settings.model_copy(update={"text_template": "{title}"})
    try:
        identity = collection_identity(settings, embedder)
        assert identity == CollectionIdentity(HASHING_MODEL, 64, template_hash(settings.text_template))
        assert collection_identity(changed, embedder).template_hash != identity.template_hash
    finally:
        await embedder.aclose()


async def test_pipeline_open_refuses_another_model_and_closes_what_it_opened(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any]
) -> None:
    await _build_collection(settings, _openai_built(settings))
    with pytest.raises(ConfigurationError, match=f"{OPENAI_MODEL}.*settings ask for model {HASHING_MODEL}"):
        await Pipeline.open(settings, redis=redis, pool=pool)
    # the store it opened was closed: the local-mode folder can be opened again
    await _build_collection(settings, _openai_built(settings))
    assert await redis.exists(settings.batch_stream) == 0  # refused before creating any group


async def test_pipeline_open_records_its_identity(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any]
) -> None:
    pipeline = await Pipeline.open(settings, redis=redis, pool=pool)
    await pipeline.aclose()
    with pytest.raises(ConfigurationError, match=HASHING_MODEL):
        await _build_collection(settings, _openai_built(settings))


async def test_worker_command_exits_2_naming_both(settings: Settings, tmp_path: Path) -> None:
    await _build_collection(settings, _openai_built(settings))
    env = {"PATH": os.environ.get("PATH", "")} | settings.as_environment()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "finally_indexer.core.cli", "worker", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await worker.communicate()
    message = err.decode()
    assert worker.returncode == EXIT_CONFIG, message
    assert f"collection {settings.collection!r} was built with model {OPENAI_MODEL}" in message
    assert f"the settings ask for model {HASHING_MODEL} at 64 dimensions" in message
    assert "set COLLECTION to a new name" in message
    assert "Traceback" not in message
