"""Alembic environment: the service's migrations, run inside one PostgreSQL schema.

Two callers: ``finally_indexer.db.migrate`` passes ``dsn`` and ``schema`` in
``config.attributes``; the alembic CLI (packaged ``alembic.ini``) passes ``-x dsn=`` and
``-x schema=`` or falls back on the service settings (``MIGRATE_DATABASE_URL``). Either way the schema is created if
absent, it comes first on the ``search_path`` (so the unqualified DDL lands in it) and it holds
the ``alembic_version`` table. A session advisory lock serialises concurrent upgrades, e.g.
several workers starting at once.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from finally_indexer.db.migrate import MIGRATION_LOCK, sqlalchemy_url
from finally_indexer.db.pool import quote_schema, validate_schema

config = context.config


def _target() -> tuple[str | None, str | None]:
    """The DSN (``None`` only for offline SQL without one) and the schema (``None``: default)."""
    if config.attributes.get("programmatic"):
        return config.attributes.get("dsn"), config.attributes.get("schema")
    x = context.get_x_argument(as_dictionary=True)
    dsn = x.get("dsn") or config.get_main_option("sqlalchemy.url")
    schema = x.get("schema")
    if (dsn is None and not context.is_offline_mode()) or schema is None:
        from finally_indexer.core.settings import load_settings  # noqa: PLC0415 - CLI only

        settings = load_settings()
        dsn = dsn or (None if context.is_offline_mode() else settings.migrate_dsn())
        schema = schema if schema is not None else settings.postgres_schema
    return dsn, (validate_schema(schema) if schema else None)


def _enter_schema(connection: Connection, schema: str | None) -> None:
    connection.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": MIGRATION_LOCK})
    if schema is not None:
        # Checked first: even CREATE SCHEMA IF NOT EXISTS needs CREATE on the database, which a
        # least-privilege migration role (owner of a schema the DBA made) does not have.
        exists = connection.execute(
            text("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :schema)"), {"schema": schema}
        ).scalar()
        if not exists:
            connection.exec_driver_sql(f"CREATE SCHEMA {quote_schema(schema)}")
        connection.exec_driver_sql(f"SET search_path TO {quote_schema(schema)}, public")
    connection.commit()


def run_offline(dsn: str | None, schema: str | None) -> None:
    """Write the upgrade as SQL (``alembic upgrade --sql``) for a DBA to review and run."""
    if dsn is None:
        context.configure(dialect_name="postgresql", version_table_schema=schema, literal_binds=True)
    else:
        context.configure(url=sqlalchemy_url(dsn), version_table_schema=schema, literal_binds=True)
    with context.begin_transaction():
        if schema is not None:
            context.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_schema(schema)}")
            context.execute(f"SET search_path TO {quote_schema(schema)}, public")
        context.run_migrations()


def run_online(dsn: str, schema: str | None) -> None:
    """Connect, lock, enter the schema and run the pending revisions in one transaction."""
    engine = create_engine(sqlalchemy_url(dsn), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _enter_schema(connection, schema)
            context.configure(connection=connection, version_table_schema=schema)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()


def main() -> None:
    dsn, schema = _target()
    if context.is_offline_mode():
        run_offline(dsn, schema)
    elif dsn is None:
        raise RuntimeError("no database to migrate: pass -x dsn=... or set DATABASE_URL")
    else:
        run_online(dsn, schema)


main()
