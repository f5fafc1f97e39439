"""Pytest fixtures over the fakes. In a conftest: ``from fakes.fixtures import fake_openai``.

``fake_openai`` yields a started :class:`~fakes.openai_server.FakeOpenAI`: point an embedder at
``fake_openai.base_url`` (any API key), steer it with ``fail_next(status, n, retry_after=...)``,
``reject_marker`` and ``latency``, and assert on ``fake_openai.requests``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fakes.openai_server import FakeOpenAI

__all__ = ["fake_openai"]


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A fresh OpenAI-compatible server on 127.0.0.1 (random port) for one test."""
    async with FakeOpenAI() as server:
        yield server
