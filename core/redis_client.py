"""The one way the service opens a Redis client: the URL and TLS options from the settings."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from finally_indexer.core.settings import Settings

__all__ = ["open_redis"]


def open_redis(settings: Settings, **options: Any) -> Redis:
    """A client for ``settings.redis_dsn()`` (``rediss://`` with the ``REDIS_SSL_*`` files) plus
    ``options`` (timeouts, retries) of the caller; bytes in, bytes out."""
    return Redis.from_url(settings.redis_dsn(), **settings.redis_tls_options(), **options)
