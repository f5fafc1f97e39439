"""The PostgreSQL privileges the service needs, as the statements a DBA runs once.

Two roles: the *migration* role owns the service's schema and every table in it (``finally-indexer
migrate`` connects as it, ``MIGRATE_DATABASE_URL``); the *service* role (``DATABASE_URL``) reads
and writes rows in that schema, reads the listing columns of the scraper's ``products`` table and
updates only its ``is_conversion`` column. It owns nothing, so it can neither alter nor drop a
table, and PostgreSQL itself refuses any other write to ``products``.

``docs/database.md`` shows :func:`grant_script` for the default names, and the least-privilege
test runs :func:`grant_statements` for its own: the documented statements are the tested ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from finally_indexer.db.pool import is_plain_identifier
from finally_indexer.db.products import LISTING_COLUMNS

__all__ = ["LISTING_COLUMNS", "GrantPlan", "grant_script", "grant_statements"]

#: The one column of ``products`` the service writes.
WRITTEN_COLUMN: Final = "is_conversion"


def _quoted(name: str, what: str) -> str:
    """``name`` as a quoted identifier, after checking it is a plain lower-case one."""
    if not is_plain_identifier(name):
        raise ValueError(f"{what} {name!r}: expected a lower-case identifier ([a-z_][a-z0-9_]*)")
    return f'"{name}"'


@dataclass(frozen=True)  # no slots: the defaults stay readable on the class (CLI defaults)
class GrantPlan:
    """Who gets what: the two roles, the service's schema and where the scraper's table is."""

    service_role: str = "finally_indexer"
    migrate_role: str = "finally_indexer_migrate"
    schema: str = "finally_indexer"
    database: str = "finally"
    products_schema: str = "public"


def grant_statements(plan: GrantPlan) -> list[str]:
    """The statements, in order, for a superuser (or the database owner) to run once.

    The roles must exist (``CREATE ROLE ... LOGIN PASSWORD ...``: passwords are not ours to
    write). Running them again is harmless.
    """
    svc = _quoted(plan.service_role, "service role")
    mig = _quoted(plan.migrate_role, "migration role")
    schema = _quoted(plan.schema, "schema")
    db = _quoted(plan.database, "database")
    products_schema = _quoted(plan.products_schema, "products schema")
    products = f"{products_schema}.{_quoted('products', 'table')}"
    columns = ", ".join(_quoted(c, "column") for c in LISTING_COLUMNS)
    defaults = f"ALTER DEFAULT PRIVILEGES FOR ROLE {mig} IN SCHEMA {schema}"
    return [
        f"GRANT CONNECT ON DATABASE {db} TO {svc}, {mig}",
        # The migration role owns the schema: it creates the tables, nobody else can.
        f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {mig}",
        f"ALTER SCHEMA {schema} OWNER TO {mig}",
        f"GRANT USAGE ON SCHEMA {schema} TO {svc}",
        # Rows of the tables the migrations create (now and in later revisions), no DDL.
        f"{defaults} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {svc}",
        f"{defaults} GRANT USAGE, SELECT ON SEQUENCES TO {svc}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {svc}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {svc}",
        # The scraper's table: read the listing columns, write the flag, nothing else.
        f"GRANT USAGE ON SCHEMA {products_schema} TO {svc}",
        f"GRANT SELECT ({columns}) ON {products} TO {svc}",
        f"GRANT UPDATE ({_quoted(WRITTEN_COLUMN, 'column')}) ON {products} TO {svc}",
    ]


def grant_script(plan: GrantPlan | None = None) -> str:
    """:func:`grant_statements` as one SQL script (``psql -f``), a statement per line."""
    return "".join(f"{statement};\n" for statement in grant_statements(plan or GrantPlan()))
