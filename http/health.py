"""``GET /health`` (PostgreSQL, Redis and Qdrant answer; the work is consumed) and ``GET /health/live``.

The three dependency checks run at once, each bounded by :data:`CHECK_TIMEOUT_S`. When Redis
answers, both work streams must have their consumer group: a missing one (a flushed Redis, a
failover to an empty replica, no worker started yet) means nothing consumes that stream, which
any process can see — the API may run without a worker — so it is ``stopped`` until a worker
recreates the group (:mod:`finally_indexer.processor.recovery`). A dependency breaker a worker
holds open (:mod:`finally_indexer.processor.breaker`) is read from the workers' reports in Redis:
the embedding API is not checked here, and PostgreSQL or Qdrant may answer this process's probe
while failing a worker's calls — the report names the dependency, the worker and the last
failure, and ends when the breaker closes (or the worker is gone). The liveness
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
from finally_indexer.processor.breaker import board_key, read_board
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
        "200 when all three answer within 1 s, both work streams have their consumer group and no "
        "worker holds a dependency breaker open; 503 with `down` naming the dependencies that do not "
        "answer, `stopped` the streams nothing consumes and `breakers` the open breakers (dependency, "
        "worker, last failure)."
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
        report.breakers = await open_breakers(deps.redis, settings)
        report.status = "degraded" if report.stopped or report.breakers else "ok"
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


async def open_breakers(redis: Redis, settings: Settings) -> list[str]:
    """One sentence per dependency breaker a worker reports open or half-open (empty when Redis does not answer)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            reports = await read_board(redis, key=board_key(settings.jobs_stream))
    except (TimeoutError, RedisError):  # Redis answered PING a moment ago; its check says the rest
        return []
    now_ms = int(time.time() * 1000)
    return [r.describe(now_ms) for r in reports]


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
