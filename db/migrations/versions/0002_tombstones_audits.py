"""Tombstones of deleted listings and audit reports: index_tombstones, audit_reports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

The DDL lives in ``db/sql/0002_tombstones_audits.sql``; this revision only runs it.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0002"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_TABLES = ("audit_reports", "index_tombstones")


def upgrade() -> None:
    execute_sql_file("0002_tombstones_audits.sql")


def downgrade() -> None:
    for table in _TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
