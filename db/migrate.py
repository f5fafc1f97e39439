"""Alembic migrations of the service's own tables, driven from code.

``upgrade`` is synchronous (Alembic and psycopg are); async callers run it in a thread:
``await asyncio.to_thread(upgrade, settings.postgres_dsn(), schema=schema)``.

The configuration is built here rather than read from a file, with ``script_location`` taken
from the installed package, so it works from a wheel or the Docker image as well as from the
repository. ``db/alembic.ini`` offers the same to the alembic CLI.
"""

from __future__ import annotations

import io
import threading
from importlib.resources import files
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from finally_indexer.db.pool import validate_schema

__all__ = [
    "MIGRATION_LOCK",
    "alembic_config",
    "current",
    "head",
    "ini_path",
    "sqlalchemy_url",
    "upgrade",
    "upgrade_sql",
]

#: Key of the PostgreSQL advisory lock that serialises concurrent upgrades (``hashtext`` of it).
MIGRATION_LOCK: Final = "finally-indexer:migrate"

#: Alembic's ``context`` and ``op`` are module-level proxies: two commands running at once in
#: one process (threads) would overwrite each other's. Across processes the advisory lock
#: (``MIGRATION_LOCK``) serialises upgrades; within one, this lock does.
_COMMAND_LOCK: Final = threading.Lock()

_DRIVERS: Final = {
    "postgres",
    "postgresql",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
}


def sqlalchemy_url(dsn: str) -> str:
    """``dsn`` (``postgresql://``, ``postgres://`` or ``postgresql+asyncpg://``) for SQLAlchemy's psycopg driver."""
    url = make_url(dsn)
    if url.drivername not in _DRIVERS:
        raise ValueError(f"not a PostgreSQL URL: scheme {url.drivername!r}")
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def ini_path() -> Path:
    """Where the packaged ``alembic.ini`` is installed (for ``alembic -c``)."""
    return Path(str(files("finally_indexer.db").joinpath("alembic.ini")))


def _script_location() -> str:
    return str(files("finally_indexer.db.migrations"))


def alembic_config(
    dsn: str | None, *, schema: str | None = None, output: io.StringIO | None = None
) -> Config:
    """An Alembic ``Config`` for the packaged migrations, aimed at ``dsn`` and ``schema``."""
    config = Config(output_buffer=output)
    # configparser interpolates "%": a path containing one must be escaped
    config.set_main_option("script_location", _script_location().replace("%", "%%"))
    config.attributes.update(programmatic=True, dsn=dsn, schema=validate_schema(schema) if schema else None)
    return config


def upgrade(dsn: str, *, schema: str | None = None) -> None:
    """Create ``schema`` if absent and bring its service tables to the newest revision.

    The version table lives in ``schema``. Running it again is a no-op; concurrent runs wait on
    an advisory lock. ``schema=None`` migrates the connection's default schema.
    """
    with _COMMAND_LOCK:
        command.upgrade(alembic_config(dsn, schema=schema), "head")


def upgrade_sql(*, schema: str | None = None) -> str:
    """The full upgrade as SQL text (offline mode), for a DBA to review and run with ``psql``."""
    buffer = io.StringIO()
    with _COMMAND_LOCK:
        command.upgrade(alembic_config(None, schema=schema, output=buffer), "head", sql=True)
    return buffer.getvalue()


def current(dsn: str, schema: str | None = None) -> str | None:
    """The revision recorded in ``schema`` (``None`` when never migrated or the schema is absent)."""
    engine = create_engine(sqlalchemy_url(dsn), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            opts = {"version_table_schema": validate_schema(schema) if schema else None}
            return MigrationContext.configure(connection, opts=opts).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision of the packaged migrations (compare with ``current`` for readiness)."""
    revision = ScriptDirectory.from_config(alembic_config(None)).get_current_head()
    if revision is None:
        raise RuntimeError("the packaged migrations have no head revision")
    return revision
