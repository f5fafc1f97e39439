"""``GET /health`` (PostgreSQL, Redis and Qdrant answer; the work is consumed) and ``GET /health/live``.

The three dependency checks run at once, each bounded by :data:`CHECK_TIMEOUT_S`. When Redis
answers, both work streams must have their consumer group: a missing one (a flushed Redis, a
failover to an empty replica, no worker started yet) means nothing consumes that stream, which
any process can see — the API may run without a worker — so it is ``stopped`` until a worker
recreates the group (:mod:`finally_indexer.processor.recovery`). The liveness
route calls nothing, so the metrics server of the worker and bridge processes serves it too
(:mod:`finally_indexer.http.metrics`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis
from redis.exceptions import RedisError

from finally_indexer.core.settings import Settings
from finally_indexer.http.deps import AppDeps, PgPool
from finally_indexer.processor.recovery import missing_groups
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.api import CheckResult, HealthReport

#: Each dependency must answer within this; a slower one counts as down.
CHECK_TIMEOUT_S = 1.0


@get(
    "/health",
    tags=["health"],
    summary="PostgreSQL, Redis and Qdrant connectivity; the work streams are consumed",
    description=(
        "200 when all three answer within 1 s and both work streams have their consumer group; "
        "503 with `down` naming the dependencies that do not answer and `stopped` the streams nothing consumes."
    ),
    responses={
        HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
            data_container=HealthReport, description="A dependency is down."
        )
    },
)
async def health(
    deps: NamedDependency[AppDeps], settings: NamedDependency[Settings]
) -> Response[HealthReport]:
    report = await check_all(deps.pool, deps.redis, deps.store)
    if not report.down:
        report.stopped = await stopped_work(deps.redis, settings)
        report.status = "degraded" if report.stopped else "ok"
    degraded = report.status == "degraded"
    return Response(report, status_code=HTTP_503_SERVICE_UNAVAILABLE if degraded else HTTP_200_OK)


async def stopped_work(redis: Redis, settings: Settings) -> list[str]:
    """One sentence per work stream whose consumer group is missing (empty when Redis does not answer)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            missing = await missing_groups(redis, settings)
    except (TimeoutError, RedisError):  # Redis answered PING a moment ago; its check says the rest
        return []
    return [
        f"{p.group} on {p.stream}: consumer group missing, nothing consumes the {p.role} "
        "(Redis lost its data or no worker has started; a worker recreates it)"
        for p in missing
    ]


@get("/health/live", tags=["health"], summary="Liveness: the process answers (no dependency calls)")
async def live() -> dict[str, str]:
    return {"status": "alive"}


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


ROUTES: list[ControllerRouterHandler] = [health, live]
