"""Both embedded servers together, for ``finally-indexer up`` and the test session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from finally_indexer.devenv.postgres import PostgresServer
from finally_indexer.devenv.redis import RedisServer

#: Ports ``up`` prefers, away from the usual 6379/5432 so a system server does not collide.
DEV_REDIS_PORT = 56379
DEV_POSTGRES_PORT = 55432


@dataclass(frozen=True, slots=True)
class DevServerUrls:
    """Where the running servers answer."""

    redis_url: str
    postgres_dsn: str


@asynccontextmanager
async def dev_servers(
    root: Path,
    *,
    redis_port: int | None = None,
    postgres_port: int | None = None,
    database: str = "finally",
    durable: bool = True,
) -> AsyncIterator[DevServerUrls]:
    """Start Redis and PostgreSQL with their data under ``root``; stop both on exit, whatever happens.

    Ports are used when free, any free port otherwise. ``durable=False`` turns off fsync in
    PostgreSQL (throwaway test servers).
    """
    redis_server = RedisServer(root / "redis", port=redis_port)
    pg_server = PostgresServer(root / "postgres", port=postgres_port, database=database, durable=durable)
    try:
        redis_url, postgres_dsn = await asyncio.gather(
            asyncio.to_thread(redis_server.start), asyncio.to_thread(pg_server.start)
        )
        yield DevServerUrls(redis_url=redis_url, postgres_dsn=postgres_dsn)
    finally:
        await asyncio.gather(asyncio.to_thread(redis_server.stop), asyncio.to_thread(pg_server.stop))
