"""Fixtures for the vectors tests: the fake OpenAI server and a fast retry policy."""

from __future__ import annotations

import pytest
from fakes.fixtures import fake_openai

from finally_indexer.processor.embedders.openai import RetryPolicy

__all__ = ["fake_openai"]


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """Retries without real waiting (retry-after hints are still honoured, capped at 2 s)."""
    return RetryPolicy(
        max_attempts=4,
        initial_backoff=0.001,
        max_backoff=0.01,
        jitter=0.001,
        max_retry_after=2.0,
        request_timeout=5.0,
    )
