"""A Qdrant server that accepts connections and never answers is an outage, not a hang."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from finally_indexer.core.errors import TransientError
from finally_indexer.core.settings import Settings, VectorStoreKind
from finally_indexer.processor.stores.qdrant_server import QdrantServerStore


@pytest.fixture
async def black_hole() -> AsyncIterator[str]:
    """A TCP server that reads every request and answers none (a black-holed Qdrant)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_request_to_a_silent_server_fails_after_qdrant_timeout_s(black_hole: str) -> None:
    settings = Settings(vector_store=VectorStoreKind.SERVER, qdrant_url=black_hole, qdrant_timeout_s=1)
    store = QdrantServerStore.from_settings(settings)
    try:
        request = asyncio.create_task(store.get([1]))
        await asyncio.wait({request}, timeout=60)  # generous: only a request without deadline stays
        assert request.done()
        assert isinstance(request.exception(), TransientError)  # DependencyUnavailable: an outage
    finally:
        await store.aclose()
