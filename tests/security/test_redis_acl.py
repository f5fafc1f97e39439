"""The service runs as a Redis ACL user limited to its keys and commands, and Redis refuses the rest.

The user is made from :func:`~finally_indexer.processor.redis_acl.acl_rules` (the rules of the line
``check-config`` prints). The bridge, planner, indexer, housekeeping, an audit with repair (its
lock and repair jobs) and the read endpoints all run as that user; ``ACL LOG`` then holds no
refusal for it, and commands or keys outside the list are refused.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from app_client import serve_in_loop
from pipeline.helpers import add_listings, assert_converged, push, run_until_converged
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from finally_indexer.core.redis_client import open_redis
from finally_indexer.core.settings import Settings
from finally_indexer.http.app import create_app
from finally_indexer.http.deps import AppDeps
from finally_indexer.processor.audit import Auditor
from finally_indexer.processor.breaker import BreakerBoard, Breakers, board_key, read_board
from finally_indexer.processor.dependencies import Dependency
from finally_indexer.processor.embedders.budget import RateBudget, budget_key, read_budget
from finally_indexer.processor.housekeeping import forget_dead_consumers, housekeeping_round
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.redis_acl import acl_rules, acl_setuser_line
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.vectorstore import VectorStore


@pytest.fixture
async def acl_settings(settings: Settings, redis: Redis, test_uid: str) -> AsyncIterator[Settings]:
    """The test's settings as a fresh ACL user made from ``acl_rules`` (deleted afterwards)."""
    where = urlsplit(settings.redis_dsn())
    restricted = settings.model_copy(
        update={
            "redis_url": None,
            "redis_host": where.hostname,
            "redis_port": where.port,
            "redis_username": f"t{test_uid}-indexer",
            "redis_password": SecretStr(secrets.token_urlsafe(24)),
        }
    )
    user = restricted.redis_username
    assert user is not None
    info: Any = await redis.info("server")
    major, minor = (int(part) for part in str(info["redis_version"]).split(".")[:2])
    # the line printed on request (--acl-password-hash) carries the password's hash; the test logs
    # in with the clear one
    rules = acl_rules(restricted, server=(major, minor), hashed_password=True)
    line = acl_setuser_line(restricted, server=(major, minor), hashed_password=True)
    assert line == " ".join(["ACL", "SETUSER", user, *rules])
    await redis.execute_command("ACL", "SETUSER", user, *rules)
    yield restricted
    await redis.execute_command("ACL", "DELUSER", user)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[VectorStore]:
    vectors = build_vector_store(settings)
    yield vectors
    await vectors.aclose()


async def _refusals(redis: Redis, user: str) -> list[dict[str, Any]]:
    """What ``ACL LOG`` recorded as refused for ``user``."""
    entries: Any = await redis.execute_command("ACL", "LOG", "128")
    found = [dict(zip(e[::2], e[1::2], strict=True)) if isinstance(e, list) else e for e in entries]
    return [e for e in found if _text(e.get("username", e.get(b"username"))) == user]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.slow
async def test_the_service_runs_as_its_acl_user_and_redis_refuses_the_rest(
    acl_settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore
) -> None:
    user = acl_settings.redis_username
    assert user is not None
    await add_listings(pool, 1, 30)
    await push(redis, acl_settings, {"operation": "sync", "product_ids": "all"})
    await push(redis, acl_settings, b"{not json")  # a dead letter and a recorded failure
    pipeline = await Pipeline.open(acl_settings, pool=pool, store=store)
    try:
        await pipeline.redis.ping()
        assert user in {c.get("user") for c in await redis.client_list()}  # it is logged in as the user
        await run_until_converged(pipeline, acl_settings, timeout_s=60)
        await pool.execute("UPDATE products SET title = title || ' (수정)' WHERE id <= 3")
        auditor = Auditor(pool=pool, redis=pipeline.redis, store=store, settings=acl_settings)
        report = await auditor.run(repair=True, requested_by="test")  # takes the lock, queues a repair
        assert report["repair_job_ids"]
        await run_until_converged(pipeline, acl_settings, timeout_s=60)
        deps = AppDeps(pool=pool, redis=pipeline.redis, store=store)
        async with serve_in_loop(create_app(acl_settings, deps=deps)) as client:
            for path in ("/status", "/failures", "/health", "/metrics"):
                assert (await client.get(path)).status_code == 200, path
            sync = await client.post("/sync", json={"product_ids": [1, 2]})
            assert sync.status_code == 202, sync.text
        await run_until_converged(pipeline, acl_settings, timeout_s=60)
        # housekeeping with nothing to keep: trims both work streams, forgets idle consumers
        before = await redis.xlen(acl_settings.batch_stream)
        await housekeeping_round(
            pipeline.redis, acl_settings.model_copy(update={"stream_retention_s": 0}), consumer="-", pool=pool
        )
        assert await redis.xlen(acl_settings.batch_stream) < before
        assert await forget_dead_consumers(
            pipeline.redis, acl_settings.batch_stream, "indexer", keep="-", idle_ms=0
        ) == [acl_settings.consumer_name]
    finally:
        await pipeline.aclose()
    await assert_converged(pool, store, acl_settings)
    assert await _refusals(redis, user) == []

    restricted = open_redis(acl_settings)
    try:
        refused = [
            ("FLUSHALL",),
            ("KEYS", "*"),
            ("CONFIG", "GET", "requirepass"),
            ("SET", "someone-else:key", "x"),  # a command it has, on a key it does not
            ("XADD", "someone-else:stream", "*", "f", "v"),
            ("LPUSH", "other-list", "x"),
            ("SCRIPT", "FLUSH"),
        ]
        for command in refused:
            with pytest.raises(NoPermissionError):
                await restricted.execute_command(*command)
    finally:
        await restricted.aclose()
    assert len(await _refusals(redis, user)) == len(refused)


async def test_the_breaker_board_and_the_embedding_budget_are_within_the_acl(
    acl_settings: Settings, redis: Redis
) -> None:
    """Both are written only during an outage or with the OpenAI embedder, which the run above
    does not reach: each is exercised here as the ACL user."""
    user = acl_settings.redis_username
    assert user is not None
    restricted = open_redis(acl_settings)
    try:
        key = board_key(acl_settings.jobs_stream)
        board = BreakerBoard(restricted, consumer="w1", key=key)
        breakers = Breakers(failures=1, open_s=30, board=board)
        breakers.settle(
            [Dependency.POSTGRES], frozenset(), failed={Dependency.POSTGRES: "down"}, succeeded=False
        )
        await board.aclose()
        assert [r.dependency for r in await read_board(restricted, key=key)] == ["postgres"]

        budget = RateBudget(
            restricted, key=budget_key(SecretStr("sk-acl-test"), acl_settings.embedding_model),
            tokens_per_minute=1_000_000, requests_per_minute=1_000,
        )  # fmt: skip
        assert await budget.try_reserve(100) == 0.0
        await budget.settle(100, 90)
        assert await read_budget(restricted, budget.key)
    finally:
        await restricted.aclose()
    assert await _refusals(redis, user) == []
