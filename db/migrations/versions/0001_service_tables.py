"""The service's own tables: index_jobs, index_job_batches, index_state, failed_operations.

Revision ID: 0001
Revises: none
Create Date: 2026-11-22

The DDL lives in ``db/sql/0001_service_tables.sql`` (the reviewed contract); this revision only
runs it. The scraper's ``products`` table is never created or altered by a migration.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0001"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

#: Dependents first, so the foreign key of index_job_batches never blocks a drop.
_TABLES = ("failed_operations", "index_state", "index_job_batches", "index_jobs")


def upgrade() -> None:
    execute_sql_file("0001_service_tables.sql")


def downgrade() -> None:
    for table in _TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
