"""Generations behind the served name: the index_generations table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

The DDL lives in ``db/sql/0009_generations.sql``; this revision only runs it.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0009"
down_revision: str | None = "0008"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    execute_sql_file("0009_generations.sql")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS index_generations")
