"""Dependency checks for ``GET /health``: PostgreSQL, Redis and Qdrant, concurrently, each bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from finally_indexer.http.deps import PgPool
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.api import CheckResult, HealthReport

#: Each dependency must answer within this; a slower one counts as down.
CHECK_TIMEOUT_S = 1.0


async def _timed(check: Callable[[], Awaitable[object]]) -> CheckResult:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await check()
    except TimeoutError:
        return CheckResult(ok=False, latency_ms=_ms(start), error=f"no answer within {CHECK_TIMEOUT_S:g} s")
    except Exception as exc:  # any failure means "down"; the class and message say why
        return CheckResult(ok=False, latency_ms=_ms(start), error=f"{type(exc).__name__}: {exc}"[:300])
    return CheckResult(ok=True, latency_ms=_ms(start))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


async def check_all(pool: PgPool, redis: Redis, store: VectorStore) -> HealthReport:
    """Run the three checks at once; the report names every dependency that is down."""

    async def postgres() -> None:
        async with pool.acquire(timeout=CHECK_TIMEOUT_S) as conn:
            await conn.fetchval("SELECT 1")

    names = ("postgres", "redis", "qdrant")
    results = await asyncio.gather(_timed(postgres), _timed(redis.ping), _timed(store.ping))
    checks = dict(zip(names, results, strict=True))
    down = [name for name, r in checks.items() if not r.ok]
    return HealthReport(status="degraded" if down else "ok", down=down, checks=checks)
