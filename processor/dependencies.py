"""Which dependency a failure belongs to: PostgreSQL, Redis, the vector store or the embedding API.

The consume path opens a dependency's breaker (:mod:`.breaker`) on that dependency's failures, so
it must tell them apart. :func:`blame` asks, in order:

1. the call site: code that calls a dependency through :func:`calling` tags what escapes it (the
   indexer's embedding call: whatever the embedder raises is the embedding API's failure);
2. the driver's exception type (asyncpg → PostgreSQL, redis-py → Redis);
3. the module that raised it, innermost first (:data:`RAISED_IN`): an adapter in
   ``processor/stores`` or ``processor/embedders``, a driver, or ``db/`` names its dependency.

Anything else (a ``TimeoutError`` raised by our own code, a bug) is blamed on nothing: it still
counts as transient when it is one, but opens no breaker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import StrEnum
from typing import Final

import asyncpg
from redis.exceptions import RedisError

__all__ = ["ALL_DEPENDENCIES", "Dependency", "blame", "calling"]


class Dependency(StrEnum):
    """What a worker depends on; each has its own breaker."""

    POSTGRES = "postgres"
    REDIS = "redis"
    VECTOR_STORE = "vector_store"
    EMBEDDING = "embedding"


ALL_DEPENDENCIES: Final = frozenset(Dependency)

#: Module prefixes (of the frame that raised) → the dependency behind them; innermost frame first.
RAISED_IN: Final[tuple[tuple[str, Dependency], ...]] = (
    ("asyncpg", Dependency.POSTGRES),
    ("finally_indexer.db", Dependency.POSTGRES),
    ("redis", Dependency.REDIS),
    ("qdrant_client", Dependency.VECTOR_STORE),
    ("qdrant_edge", Dependency.VECTOR_STORE),
    ("finally_indexer.processor.stores", Dependency.VECTOR_STORE),
    ("openai", Dependency.EMBEDDING),
    ("finally_indexer.processor.embedders", Dependency.EMBEDDING),
)
_TAG: Final = "_finally_indexer_dependency"


@contextlib.contextmanager
def calling(dependency: Dependency) -> Iterator[None]:
    """Tag whatever escapes the block as ``dependency``'s failure (an inner tag wins)."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, _TAG, None) is None:
            with contextlib.suppress(AttributeError):  # an exception class with __slots__
                setattr(exc, _TAG, dependency)
        raise


def blame(exc: BaseException) -> Dependency | None:
    """The dependency ``exc`` is a failure of, or None when nothing says."""
    tagged = getattr(exc, _TAG, None)
    if isinstance(tagged, Dependency):
        return tagged
    if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)):
        return Dependency.POSTGRES
    if isinstance(exc, RedisError):
        return Dependency.REDIS
    return _raised_in(exc)


def _raised_in(exc: BaseException) -> Dependency | None:
    modules: list[str] = []
    tb = exc.__traceback__
    while tb is not None:
        modules.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    for module in reversed(modules):  # innermost first: the raiser, then its callers
        for prefix, dependency in RAISED_IN:
            if module == prefix or module.startswith(prefix + "."):
                return dependency
    return None
