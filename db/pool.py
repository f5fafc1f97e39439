"""The asyncpg connection pool, bound to the service's schema, and a latency probe.

Every connection of the pool has ``search_path = <schema>, public``: the service's own tables
live in ``<schema>`` (created by the migrations) while the scraper's ``products`` table is found
in ``public`` unless the schema holds a mirror of its own (dev and tests, see ``dev_schema.py``).

``json`` and ``jsonb`` values are decoded to Python objects and encoded from them
(``json.dumps``), so callers pass and receive dicts and lists, never JSON strings.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from finally_indexer.core.errors import ConfigurationError, DependencyUnavailable

if TYPE_CHECKING:
    from finally_indexer.core.settings import Settings

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DB",
    "PING_TIMEOUT_S",
    "BoundedPool",
    "create_pool",
    "is_plain_identifier",
    "ping",
    "quote_schema",
    "resolve_schema",
    "validate_schema",
]

log = structlog.get_logger(__name__)

#: Anything queries can run on: the pool (one statement, autocommit) or one connection (transactions).
DB: TypeAlias = "asyncpg.Pool[Any] | asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

#: Seconds to wait for a TCP connection and the server's greeting. A reachable server answers
#: in milliseconds; waiting longer only delays the report that it is down.
CONNECT_TIMEOUT_S: Final = 10.0
#: A health probe that takes longer than this is reported as a failure, not waited for.
PING_TIMEOUT_S: Final = 5.0

#: Unquoted PostgreSQL identifiers: lower case so that quoted and unquoted uses name the same
#: schema (or role); 63 bytes is PostgreSQL's NAMEDATALEN - 1.
_IDENTIFIER_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_UNREACHABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)


def is_plain_identifier(name: str) -> bool:
    """``name`` is a lower-case PostgreSQL identifier of at most 63 bytes, not a ``pg_`` name."""
    return bool(_IDENTIFIER_RE.fullmatch(name)) and not name.startswith("pg_")


def validate_schema(schema: str) -> str:
    """Return ``schema`` if it is a safe lower-case identifier, else raise ``ConfigurationError``."""
    if not is_plain_identifier(schema):
        raise ConfigurationError(
            f"POSTGRES_SCHEMA={schema!r}: expected a lower-case identifier "
            "([a-z_][a-z0-9_]*, at most 63 characters, not starting with 'pg_')"
        )
    return schema


def quote_schema(schema: str) -> str:
    """The validated schema name as a quoted SQL identifier."""
    return f'"{validate_schema(schema)}"'


def resolve_schema(settings: Settings, schema: str | None) -> str | None:
    """The explicit ``schema``, else ``POSTGRES_SCHEMA``, validated; ``None``: the server's default."""
    chosen = schema if schema is not None else settings.postgres_schema
    return validate_schema(chosen) if chosen else None


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _where(dsn: str) -> str:
    """``host:port/db`` of a DSN, without credentials, for error messages."""
    tail = dsn.split("@", 1)[-1] if "@" in dsn else dsn.split("://", 1)[-1]
    return tail.split("?", 1)[0]


class BoundedPool(asyncpg.Pool):
    """A pool whose every acquire has a deadline (``DB_POOL_ACQUIRE_TIMEOUT_S``) unless one is given.

    asyncpg's own default is to wait forever, and ``pool.fetch(...)`` and friends acquire without
    a timeout: with every connection held by calls hung on a black-holed server, each further
    caller would queue for good. A ``TimeoutError`` is a transient failure like any outage.
    """

    def __init__(self, *connect_args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        self.acquire_timeout = acquire_timeout
        kwargs.setdefault("max_queries", 50_000)  # asyncpg.create_pool's defaults
        kwargs.setdefault("max_inactive_connection_lifetime", 300.0)
        kwargs.setdefault("loop", None)
        kwargs.setdefault("connection_class", asyncpg.Connection)
        kwargs.setdefault("record_class", asyncpg.Record)
        super().__init__(*connect_args, **kwargs)

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(settings: Settings, *, schema: str | None = None) -> asyncpg.Pool[Any]:
    """Open a pool of ``DB_POOL_MIN``..``DB_POOL_MAX`` connections on ``schema`` (or ``POSTGRES_SCHEMA``).

    Raises ``DependencyUnavailable`` when the server cannot be reached and ``ConfigurationError``
    when it refuses the credentials or the database does not exist.
    """
    chosen = resolve_schema(settings, schema)
    dsn = settings.postgres_dsn()
    # UTC sessions: a scraper column of type ``timestamp`` (no time zone) is read as UTC by the
    # indexer, and the ``updated_at = $2`` compare-and-set must see it the same way.
    server_settings = {"application_name": "finally-indexer", "timezone": "UTC"}
    if chosen is not None:
        server_settings["search_path"] = f"{quote_schema(chosen)}, public"
    try:
        pool: asyncpg.Pool[Any] = await BoundedPool(
            dsn,
            acquire_timeout=settings.db_pool_acquire_timeout_s,
            min_size=min(settings.db_pool_min, settings.db_pool_max),
            max_size=settings.db_pool_max,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=settings.db_command_timeout_s,
            server_settings=server_settings,
            init=_init_connection,
        )
    except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidCatalogNameError) as exc:
        raise ConfigurationError(f"PostgreSQL at {_where(dsn)} refused the connection: {exc}") from exc
    except _UNREACHABLE as exc:
        raise DependencyUnavailable(
            f"PostgreSQL at {_where(dsn)} is unreachable: {type(exc).__name__}: {exc}"
        ) from exc
    log.debug("pg_pool_opened", where=_where(dsn), schema=chosen, max_size=settings.db_pool_max)
    return pool


async def ping(pool: asyncpg.Pool[Any]) -> float:
    """Round-trip ``SELECT 1`` through the pool; return the latency in seconds.

    Raises ``DependencyUnavailable`` if the server does not answer within ``PING_TIMEOUT_S``.
    """
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await pool.fetchval("SELECT 1")
    except (*_UNREACHABLE, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
        raise DependencyUnavailable(f"PostgreSQL ping failed: {type(exc).__name__}: {exc}") from exc
    return time.perf_counter() - started
