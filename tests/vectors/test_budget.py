"""The shared embedding rate budget: the real Lua script on the real Redis, with a fake clock.

Each "worker" is its own :class:`RateBudget` with its own Redis connection on the same key. The
simulation is event-driven and deterministic: the client whose next attempt is earliest moves the
clock there and asks once (``try_reserve``); a refusal names the time to ask again. No sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from finally_indexer.core.settings import EmbedderKind, Settings
from finally_indexer.processor.embedders.budget import RateBudget, ServerLimits, budget_key, parse_duration
from finally_indexer.processor.embedders.factory import budget_limits

START = 1_800_000_000.0  # a fixed "now" (seconds) for the fake clock


class FakeClock:
    """Time that moves only when told; ``sleep`` moves it."""

    def __init__(self) -> None:
        self.t = START

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass(frozen=True)
class Grant:
    at: float
    client: int
    tokens: int


@pytest.fixture
def key(test_uid: str) -> str:
    return f"t{test_uid}:embedding-budget"


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[aioredis.Redis]]:
    """Three separate connections, as three worker processes would have."""
    made = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
    yield made
    for client in made:
        await client.aclose()


def budgets(
    clients: list[aioredis.Redis],
    key: str,
    clock: FakeClock,
    *,
    tpm: int = 0,
    rpm: int = 0,
    burst_s: float = 2.0,
) -> list[RateBudget]:
    return [
        RateBudget(c, key=key, tokens_per_minute=tpm, requests_per_minute=rpm, burst_s=burst_s, clock=clock)
        for c in clients
    ]


async def simulate(
    workers: Sequence[RateBudget], clock: FakeClock, sizes: Sequence[int], seconds: float
) -> list[Grant]:
    """Every worker asks for its request size as often as the budget lets it, for ``seconds``."""
    start = clock.t
    next_at = [start] * len(workers)
    last_grant = [start] * len(workers)
    grants: list[Grant] = []
    while True:
        # ties go to the worker granted least recently (real workers' wake-ups jitter)
        i = min(range(len(workers)), key=lambda k: (next_at[k], last_grant[k], k))
        if next_at[i] >= start + seconds:
            return grants
        clock.t = next_at[i]
        wait = await workers[i].try_reserve(sizes[i])
        if wait == 0:
            grants.append(Grant(clock.t, i, sizes[i]))
            last_grant[i] = clock.t
        else:
            next_at[i] = clock.t + wait


def most_in_any_window(grants: list[Grant], window: float) -> int:
    """The most tokens granted within any ``window`` seconds."""
    best, total, end = 0, 0, 0
    for first in grants:  # grants are in time order: slide the window's end along
        while end < len(grants) and grants[end].at < first.at + window:
            total += grants[end].tokens
            end += 1
        best = max(best, total)
        total -= first.tokens
    return best


async def test_workers_together_stay_within_the_shared_limit(clients: list[aioredis.Redis], key: str) -> None:
    clock = FakeClock()
    tpm, burst_s = 600_000, 2.0
    workers = budgets(clients, key, clock, tpm=tpm, rpm=10_000, burst_s=burst_s)
    sizes = [17_000, 5_000, 9_000]
    grants = await simulate(workers, clock, sizes, seconds=300)
    rate = tpm / 60
    # GCRA: in any window, at most the window's share plus the tolerance plus one request
    allowance = rate * burst_s + max(sizes)
    for window in (1.0, 10.0, 60.0):
        assert most_in_any_window(grants, window) <= rate * window + allowance
    used = sum(g.tokens for g in grants)
    assert used >= 0.98 * rate * 300  # and they use (nearly) all of it
    assert all(sum(g.tokens for g in grants if g.client == i) > 0.1 * used for i in range(3))


async def test_requests_per_minute_binds_when_requests_are_small(
    clients: list[aioredis.Redis], key: str
) -> None:
    clock = FakeClock()
    workers = budgets(clients[:2], key, clock, tpm=10_000_000, rpm=600, burst_s=1.0)
    grants = await simulate(workers, clock, [10, 10], seconds=120)
    per_second = 600 / 60
    ones = [Grant(g.at, g.client, 1) for g in grants]
    for window in (1.0, 60.0):
        assert most_in_any_window(ones, window) <= per_second * (window + 1.0) + 1
    assert len(grants) >= 0.98 * 600 * 2


async def test_a_429_holds_and_slows_every_worker(clients: list[aioredis.Redis], key: str) -> None:
    clock = FakeClock()
    a, b = budgets(clients[:2], key, clock, tpm=600_000, burst_s=2.0)
    assert await a.try_reserve(1_000) == 0
    await a.rate_limited(1_000, retry_after_s=3.0)
    wait = await b.try_reserve(1_000)  # the other worker learns of it on its next request
    assert 3.0 <= wait <= 3.01
    assert b.state is not None
    assert b.state.pace == pytest.approx(0.9)
    clock.t += wait
    grants = await simulate([a, b], clock, [10_000, 10_000], seconds=60)
    # a 429 lowers the pace for both; requests answered since give it back step by step
    assert sum(g.tokens for g in grants) <= 0.9 * 600_000 + 2.0 * 10_000 + 10_000
    assert {g.client for g in grants} == {0, 1}
    for _ in range(5):
        await a.settle(10_000, 10_000)
    assert a.state is not None
    assert a.state.pace == pytest.approx(0.95)


async def test_limits_are_learned_from_headers_by_every_worker(
    clients: list[aioredis.Redis], key: str
) -> None:
    clock = FakeClock()
    a, b = budgets(clients[:2], key, clock, burst_s=2.0)  # no EMBEDDING_TPM / EMBEDDING_RPM
    assert await a.try_reserve(50_000) == 0  # nothing known yet: the first request goes ...
    assert a.state is not None
    assert a.state.tokens_per_minute == 0
    assert await b.try_reserve(1_000) > 0  # ... alone, until its answer names the limits
    headers = {
        "x-ratelimit-limit-tokens": "60000",
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-remaining-requests": "99",
        "x-ratelimit-reset-tokens": "3s",
    }
    await a.settle(50_000, 50_000, ServerLimits.from_headers(headers))
    # the server has no room left for 3 s (1 s past our 2 s tolerance): the other worker waits ...
    wait = await b.try_reserve(10_000)
    assert wait == pytest.approx(1.0, abs=0.01)
    assert b.state is not None
    assert (b.state.tokens_per_minute, b.state.requests_per_minute) == (60_000, 100)
    clock.t += wait
    # ... then pays 1,000 tokens/s: 10,000 tokens are 10 s of budget for everyone
    assert await b.try_reserve(10_000) == 0
    assert await a.try_reserve(1) == pytest.approx(10.0, abs=0.01)


async def test_usage_reported_corrects_the_reservation(clients: list[aioredis.Redis], key: str) -> None:
    clock = FakeClock()
    (a,) = budgets(clients[:1], key, clock, tpm=60_000, burst_s=1.0)
    assert await a.try_reserve(30_000) == 0  # 30 s of budget reserved
    await a.settle(30_000, 3_000)  # the API billed 3 s of it
    assert await a.try_reserve(1) == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("120ms", 0.12),
        ("0.5s", 0.5),
        ("1h2m3s", 3723.0),
        ("soon", None),
        ("", None),
    ],
)
def test_reset_headers_are_parsed(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


async def test_a_server_that_names_no_limits_is_not_limited(clients: list[aioredis.Redis], key: str) -> None:
    clock = FakeClock()
    a, b = budgets(clients[:2], key, clock)
    assert await a.try_reserve(100) == 0
    await a.settle(100, 100, ServerLimits.from_headers({}))  # no x-ratelimit-* headers at all
    assert [await w.try_reserve(1_000_000) for w in (a, b, a, b)] == [0, 0, 0, 0]


async def test_a_dry_run_assumes_the_limits_of_the_settings_or_those_learned(
    redis: aioredis.Redis, redis_settings: Settings, test_uid: str
) -> None:
    """``budget_limits`` is what ``POST /sync`` and ``sync --dry-run`` time an estimate with."""
    offline = redis_settings.model_copy(update={"embedder": EmbedderKind.HASHING, "embedding_tpm": 600_000})
    assert await budget_limits(offline, redis) == (0, 0)  # nothing to pace: it costs no API time
    key = SecretStr(f"sk-dry-run-{test_uid}")
    configured = redis_settings.model_copy(
        update={"embedder": EmbedderKind.OPENAI, "openai_api_key": key, "embedding_tpm": 600_000}
    )
    assert await budget_limits(configured, redis) == (600_000, 0)
    learning = configured.model_copy(update={"embedding_tpm": 0})
    assert await budget_limits(learning, redis) == (0, 0)  # no answer seen yet
    budget = RateBudget(redis, key=budget_key(key, learning.embedding_model))
    await budget.settle(0, 0, ServerLimits(limit_tokens=1_000_000, limit_requests=3_000))
    assert await budget_limits(learning, redis) == (1_000_000, 3_000)
