"""What the HTTP app talks to: the PostgreSQL pool, the Redis client and the vector store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import structlog
from redis.asyncio import Redis

from finally_indexer.core.redis_client import open_redis
from finally_indexer.core.settings import Settings
from finally_indexer.processor.pipeline import Connections
from finally_indexer.processor.vectorstore import VectorStore

log = structlog.get_logger(__name__)

# asyncpg's stubs make Pool generic but the runtime class is not subscriptable, and Litestar
# resolves the annotations of dependency types at run time.
if TYPE_CHECKING:
    PgPool: TypeAlias = asyncpg.Pool[Any]
else:
    PgPool = asyncpg.Pool

#: Redis calls of the API are short; a dead server must fail a request quickly, not hang it.
REDIS_CONNECT_TIMEOUT_S = 1.0
REDIS_SOCKET_TIMEOUT_S = 5.0
REDIS_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
    "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
}


@dataclass(slots=True)
class AppDeps:
    """The app's connections. Created by the app's lifespan unless a caller injects them."""

    pool: PgPool
    redis: Redis
    store: VectorStore

    @classmethod
    async def open(cls, settings: Settings) -> AppDeps:
        """Connect to PostgreSQL, Redis and the vector store named by ``settings`` (no embedder)."""
        conns = await Connections.open(settings, with_embedder=False, redis_options=REDIS_OPTIONS)
        return cls(pool=conns.pool, redis=conns.redis, store=conns.store)

    async def aclose(self) -> None:
        """Close all three; one failing to close does not keep the others open."""
        for name, closer in (
            ("redis", self.redis.aclose),
            ("store", self.store.aclose),
            ("postgres", self.pool.close),
        ):
            try:
                await closer()
            except Exception as exc:  # closing is best effort at shutdown
                log.warning("close_failed", dependency=name, error=repr(exc))


def redis_client(settings: Settings) -> Redis:
    """A Redis client with short timeouts (bytes in, bytes out: raw job payloads stay raw)."""
    return open_redis(settings, **REDIS_OPTIONS)
