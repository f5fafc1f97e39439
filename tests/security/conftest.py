"""Fixtures of the hardening tests: a database set up with exactly the documented grants.

``least_privilege_db`` makes, on the session's PostgreSQL, a database of its own whose
``public.products`` is owned by the superuser (standing in for the scraper), two roles (service
and migration) and runs :func:`~finally_indexer.db.grants.grant_statements` for them: the
statements ``docs/database.md`` shows, with the test's names. Everything is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from finally_indexer.db.grants import GrantPlan, grant_statements
from finally_indexer.db.migrations.sqlscript import read_sql, split_statements


@dataclass(frozen=True)
class LeastPrivilegeDb:
    """Where the roles connect and what the plan named."""

    plan: GrantPlan
    admin_dsn: str
    service_dsn: str
    migrate_dsn: str


def with_user_and_db(dsn: str, user: str, database: str) -> str:
    """``dsn`` with another user and database (same host and port; trust authentication)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}", path=f"/{database}"))


@pytest.fixture
async def least_privilege_db(postgres_dsn: str, test_uid: str) -> AsyncIterator[LeastPrivilegeDb]:
    plan = GrantPlan(
        service_role=f"lp_{test_uid}_service",
        migrate_role=f"lp_{test_uid}_migrate",
        schema="indexer",
        database=f"lp_{test_uid}",
        products_schema="public",
    )
    # names made of the test's uid: identifiers, not data, so no bind parameter can carry them
    server = await asyncpg.connect(postgres_dsn)
    try:
        await server.execute(f'CREATE DATABASE "{plan.database}"')
        for role in (plan.service_role, plan.migrate_role):
            await server.execute(f'CREATE ROLE "{role}" LOGIN')
        admin_dsn = with_user_and_db(postgres_dsn, "postgres", plan.database)
        admin = await asyncpg.connect(admin_dsn)
        try:
            for statement in split_statements(read_sql("products_dev.sql")):  # the scraper's table
                await admin.execute(statement)
            for statement in grant_statements(plan):
                await admin.execute(statement)
        finally:
            await admin.close()
        yield LeastPrivilegeDb(
            plan=plan,
            admin_dsn=admin_dsn,
            service_dsn=with_user_and_db(postgres_dsn, plan.service_role, plan.database),
            migrate_dsn=with_user_and_db(postgres_dsn, plan.migrate_role, plan.database),
        )
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{plan.database}" WITH (FORCE)')
        for role in (plan.service_role, plan.migrate_role):
            await server.execute(f'DROP ROLE IF EXISTS "{role}"')
        await server.close()
