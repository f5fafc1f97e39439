"""An index on failed_operations (stream, entry_id): dead letters are recorded once per entry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

The DDL lives in ``db/sql/0003_failed_operations_entry.sql``; this revision only runs it.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0003"
down_revision: str | None = "0002"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    execute_sql_file("0003_failed_operations_entry.sql")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS failed_operations_entry")
