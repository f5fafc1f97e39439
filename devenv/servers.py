"""Both embedded servers together, for ``finally-indexer up`` and the test session."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from finally_indexer.devenv._process import ServerError
from finally_indexer.devenv.postgres import PostgresServer
from finally_indexer.devenv.redis import RedisServer

__all__ = [
    "DEV_POSTGRES_PORT",
    "DEV_REDIS_PORT",
    "DevServerUrls",
    "ServerError",
    "dev_servers",
    "session_dir",
]

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


def session_dir(parent: Path) -> Path:
    """A fresh folder for this process's throwaway servers, after clearing those of dead processes.

    Several test sessions may run at once (one per developer or CI job): each gets its own
    servers. A session killed outright leaves its PostgreSQL running (Redis dies with its parent);
    the next session stops it and removes its data.
    """
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob("s*"):
        pid = old.name[1:]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            RedisServer(old / "redis").stop_stale()
            PostgresServer(old / "postgres").stop_stale()
            shutil.rmtree(old, ignore_errors=True)
    mine = parent / f"s{os.getpid()}"
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    return mine
