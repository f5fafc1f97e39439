"""``OpenAIEmbedder`` with the real ``openai`` client against the fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import numpy as np
import pytest
import structlog
from fakes.openai_server import FakeOpenAI, fake_vector
from pydantic import SecretStr
from redis.asyncio import Redis

from finally_indexer.core.errors import (
    ConfigurationError,
    EmbeddingInputRejected,
    EmbeddingRateLimited,
    TransientError,
)
from finally_indexer.core.metrics import REGISTRY
from finally_indexer.core.settings import EmbedderKind, Settings
from finally_indexer.processor.embedders.budget import RateBudget
from finally_indexer.processor.embedders.factory import build_embedder
from finally_indexer.processor.embedders.hashing import HashingEmbedder
from finally_indexer.processor.embedders.openai import OpenAIEmbedder, RetryPolicy
from finally_indexer.processor.embedders.tokens import count_tokens
from finally_indexer.processor.embedding import Embedder

KEY = "sk-test-DO-NOT-LOG-4f9c2a"
Make = Callable[..., OpenAIEmbedder]
TEXTS = ["혼다 PCX125 2021년식", "야마하 XMAX 300", "BMW R1250GS 어드벤처", "스즈키 버그만 400"]


@pytest.fixture
async def make(
    fake_openai: FakeOpenAI, fast_retry: RetryPolicy
) -> AsyncIterator[Callable[..., OpenAIEmbedder]]:
    """Build embedders pointed at the fake (closed at teardown, even when the test fails)."""
    built: list[OpenAIEmbedder] = []

    def build(**kwargs: Any) -> OpenAIEmbedder:
        options: dict[str, Any] = {"model": "text-embedding-3-large", "dimensions": 64, "concurrency": 4}
        options.update(kwargs)
        options.setdefault("retry", fast_retry)
        options.setdefault("base_url", fake_openai.base_url)
        built.append(OpenAIEmbedder(api_key=SecretStr(KEY), **options))
        return built[-1]

    yield build
    for embedder in built:
        await embedder.aclose()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"finally_indexer_{name}", labels) or 0.0


def _retry_waits(logged: list[MutableMapping[str, Any]]) -> list[float]:
    """The pauses the embedder chose before each retry (what tenacity then sleeps)."""
    return [e["wait_s"] for e in logged if e["event"] == "embedding_retry"]


async def test_embeds_in_order_with_dimensions_and_tokens(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make(usd_per_million_tokens=0.13)  # the factory passes EMBEDDING_PRICES' entry
    assert isinstance(embedder, Embedder)
    tokens_before = sample("embedding_tokens_total", model="text-embedding-3-large")
    cost_before = sample("embedding_cost_usd_total", model="text-embedding-3-large")
    ok_before = sample("embedding_requests_total", status="ok")
    result = await embedder.embed(TEXTS)
    assert np.allclose(result.vectors, [fake_vector(t, 64) for t in TEXTS])
    expected_tokens = sum(count_tokens(t) for t in TEXTS)
    assert result.tokens == expected_tokens
    [request] = fake_openai.requests
    assert request.inputs == TEXTS
    assert request.dimensions == 64  # differs from the model's native 3072, so it is sent
    assert request.authorized
    assert sample("embedding_tokens_total", model="text-embedding-3-large") - tokens_before == expected_tokens
    assert sample("embedding_cost_usd_total", model="text-embedding-3-large") - cost_before == pytest.approx(
        expected_tokens * 0.13 / 1e6
    )
    assert sample("embedding_requests_total", status="ok") - ok_before == 1


async def test_native_size_is_not_sent(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make(model="text-embedding-3-small", dimensions=1536)
    result = await embedder.embed(["하나"])
    assert len(result.vectors[0]) == 1536
    assert fake_openai.requests[0].dimensions is None


async def test_wrong_size_from_the_server_is_a_configuration_error(
    make: Make, fake_openai: FakeOpenAI
) -> None:
    embedder = make(model="some-compatible-model", dimensions=32)  # fake answers 64
    with pytest.raises(ConfigurationError, match="64 dimensions"):
        await embedder.embed(["하나"])


async def test_429_honours_retry_after_then_succeeds(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make()
    limited_before = sample("embedding_requests_total", status="rate_limited")
    fake_openai.fail_next(429, 2, retry_after_ms=250)
    with structlog.testing.capture_logs() as logged:
        result = await embedder.embed(TEXTS)
    assert _retry_waits(logged) == [0.25, 0.25]  # the server's pause, not our (millisecond) backoff
    assert len(result.vectors) == 4
    assert [r.status for r in fake_openai.requests] == [429, 429, 200]
    assert sample("embedding_requests_total", status="rate_limited") - limited_before == 2


async def test_retry_after_in_seconds_is_capped(make: Make, fake_openai: FakeOpenAI) -> None:
    retry = RetryPolicy(
        max_attempts=2, initial_backoff=0.001, max_backoff=0.01, jitter=0, max_retry_after=0.2
    )
    embedder = make(retry=retry)
    fake_openai.fail_next(429, 1, retry_after=3600)
    with structlog.testing.capture_logs() as logged:
        await embedder.embed(TEXTS)
    assert _retry_waits(logged) == [0.2]  # max_retry_after, not the hour the server asked for
    assert [r.status for r in fake_openai.requests] == [429, 200]


async def test_persistent_429_raises_rate_limited_with_the_hint(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make()
    fake_openai.fail_next(429, 10, retry_after=0.01)
    with pytest.raises(EmbeddingRateLimited) as caught:
        await embedder.embed(TEXTS)
    assert caught.value.retry_after == pytest.approx(0.01)
    assert len(fake_openai.requests) == 4  # fast_retry.max_attempts


async def test_500_then_success(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make()
    fake_openai.fail_next(500, 2)
    result = await embedder.embed(TEXTS)
    assert len(result.vectors) == 4
    assert [r.status for r in fake_openai.requests] == [500, 500, 200]


async def test_persistent_5xx_is_transient(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make()
    fake_openai.fail_next(503, 10)
    with pytest.raises(TransientError) as caught:
        await embedder.embed(TEXTS)
    assert not isinstance(caught.value, EmbeddingRateLimited)
    assert len(fake_openai.requests) == 4  # fast_retry.max_attempts


async def test_unreachable_server_is_transient(make: Make) -> None:
    embedder = make(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TransientError, match="unreachable"):
        await embedder.embed(["하나"])


async def test_401_is_a_configuration_error(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make()
    fake_openai.fail_next(401, 1)
    with pytest.raises(ConfigurationError):
        await embedder.embed(TEXTS)
    assert len(fake_openai.requests) == 1


async def test_one_rejected_input_fails_only_itself(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make()
    texts = [f"매물 {i}" for i in range(8)]
    texts[5] = f"매물 5 {fake_openai.reject_marker}"
    partial = await embedder.embed_many(texts)
    assert set(partial.rejected) == {5}
    assert partial.vectors[5] is None
    for i, vector in enumerate(partial.vectors):
        if i != 5:
            assert vector is not None
            assert np.allclose(vector, fake_vector(texts[i], 64))
    assert partial.tokens == sum(count_tokens(t) for i, t in enumerate(texts) if i != 5)
    assert len(fake_openai.requests) <= 1 + 2 * 3  # bisection: log2(8) levels, two requests each
    with pytest.raises(EmbeddingInputRejected) as caught:
        await embedder.embed(texts)
    assert caught.value.index == 5


async def test_empty_input_is_rejected_without_a_request(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make()
    partial = await embedder.embed_many(["하나", "  ", "둘"])
    assert set(partial.rejected) == {1}
    assert fake_openai.requests[0].inputs == ["하나", "둘"]


async def test_long_inputs_are_truncated_and_big_calls_split(make: Make, fake_openai: FakeOpenAI) -> None:
    embedder = make(max_input_tokens=50)
    texts = ["가나다라마바사 " * 200] + [f"매물 {i}" for i in range(2_100)]
    result = await embedder.embed(texts)
    assert len(result.vectors) == len(texts)
    assert [len(r.inputs) for r in fake_openai.requests] == [2048, 53]
    assert count_tokens(fake_openai.requests[0].inputs[0]) <= 50


async def test_concurrency_is_bounded_and_waiting_calls_are_packed(
    make: Make, fake_openai: FakeOpenAI
) -> None:
    """EMBEDDING_CONCURRENCY is a ceiling; calls that wait for a slot share the next request."""
    embedder = make(concurrency=2)
    fake_openai.latency = 0.05
    texts = [f"매물 {i}" for i in range(8)]
    results = await asyncio.gather(*(embedder.embed([text]) for text in texts))
    assert [r.vectors[0] for r in results] == [fake_vector(t, 64) for t in texts]
    assert [r.tokens for r in results] == [count_tokens(t) for t in texts]
    assert fake_openai.max_in_flight <= 2
    assert len(fake_openai.requests) < len(texts)
    assert sorted(fake_openai.embedded_inputs) == sorted(texts)


async def test_the_key_is_never_logged(
    make: Make, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    embedder = make()
    fake_openai.fail_next(429, 1, retry_after_ms=1)
    fake_openai.fail_next(500, 1)
    with structlog.testing.capture_logs() as events:
        await embedder.embed_many([*TEXTS, fake_openai.reject_marker])
    assert any(e["event"] == "embedding_retry" for e in events)
    assert any(e["event"] == "embedding_input_rejected" for e in events)
    assert KEY not in repr(events)
    assert KEY not in caplog.text
    assert KEY not in repr(embedder)
    assert all(KEY not in repr(r.headers) for r in fake_openai.requests)


def test_factory_picks_the_embedder(fake_openai: FakeOpenAI) -> None:
    assert isinstance(
        build_embedder(Settings(embedder=EmbedderKind.HASHING, vector_size=64)), HashingEmbedder
    )
    assert isinstance(
        build_embedder(Settings(embedder=EmbedderKind.AUTO, openai_api_key=None, vector_size=64)),
        HashingEmbedder,
    )
    chosen = build_embedder(
        Settings(
            embedder=EmbedderKind.AUTO, openai_api_key=SecretStr(KEY), openai_base_url=fake_openai.base_url
        )
    )
    assert isinstance(chosen, OpenAIEmbedder)
    assert chosen.dimensions == 3072
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        build_embedder(Settings(embedder=EmbedderKind.OPENAI, openai_api_key=None))


@pytest.mark.parametrize("overload", [429, 503])
async def test_the_limiter_grows_while_latency_limits_and_shrinks_on_overload(
    make: Make, fake_openai: FakeOpenAI, overload: int
) -> None:
    embedder = make(concurrency=4)
    fake_openai.latency = 0.02
    assert embedder.concurrency == 1
    # a steady stream of calls: while every slot is busy the next texts wait, so slots are added
    pending = []
    for i in range(60):
        pending.append(asyncio.create_task(embedder.embed([f"매물 {i}"])))
        await asyncio.sleep(0.005)
    await asyncio.gather(*pending)
    grown = embedder.concurrency
    assert grown > 1
    assert fake_openai.max_in_flight <= 4
    fake_openai.fail_next(overload, 1, retry_after_ms=1)
    await embedder.embed(["하나"])  # retried: answered, and the limit halved (issue 10: 429/5xx)
    assert embedder.concurrency == max(1, grown // 2)


async def test_a_rejected_input_in_a_packed_request_fails_only_its_own_caller(
    make: Make, fake_openai: FakeOpenAI
) -> None:
    embedder = make(concurrency=1)
    fake_openai.latency = 0.05
    first = asyncio.create_task(embedder.embed_many(["먼저"]))
    await asyncio.sleep(0.02)  # the first request is in flight: the next two calls wait and are packed
    mine = asyncio.create_task(embedder.embed_many(["내 매물 1", f"내 매물 2 {fake_openai.reject_marker}"]))
    theirs = asyncio.create_task(embedder.embed_many(["남의 매물 1", "남의 매물 2"]))
    results = await asyncio.gather(first, mine, theirs)
    packed = [r for r in fake_openai.requests if len(r.inputs) == 4]
    assert packed  # both calls went out in one request (refused, then bisected)
    assert results[1].rejected.keys() == {1}
    assert results[1].vectors[0] == fake_vector("내 매물 1", 64)
    assert results[2].rejected == {}
    assert results[2].vectors == [fake_vector("남의 매물 1", 64), fake_vector("남의 매물 2", 64)]


async def test_embedders_sharing_a_budget_learn_the_limit_and_get_no_429(
    fake_openai: FakeOpenAI, fast_retry: RetryPolicy, redis_url: str, test_uid: str
) -> None:
    """Two processes' embedders on one key: the limits come from the headers, no request is refused."""
    limits = fake_openai.limit_rate(60_000, 6_000, burst_s=1.0)  # 1,000 tokens/s, 1 s tolerance
    clients = [Redis.from_url(redis_url) for _ in range(2)]
    key = f"t{test_uid}:embedding-budget"
    embedders = [
        OpenAIEmbedder(
            api_key=SecretStr(KEY), model="text-embedding-3-large", dimensions=64, base_url=fake_openai.base_url,
            retry=fast_retry, concurrency=4, budget=RateBudget(client, key=key, burst_s=0.5),
        )
        for client in clients
    ]  # fmt: skip
    texts = [f"{'매물 ' * 20}{i}" for i in range(24)]
    try:
        results = await asyncio.gather(*(embedders[i % 2].embed([t]) for i, t in enumerate(texts)))
    finally:
        for embedder in embedders:
            await embedder.aclose()
        for client in clients:
            await client.aclose()
    assert [r.vectors[0] for r in results] == [fake_vector(t, 64) for t in texts]
    assert limits.rejected == 0
    assert [r.status for r in fake_openai.requests].count(429) == 0
    assert limits.tokens == sum(count_tokens(t) for t in texts) > 2 * 1_000  # more than the tolerance
