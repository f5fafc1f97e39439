"""Received times of jobs (delete versions) and the appends POST /retry still owes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

The DDL lives in ``db/sql/0006_received_at_requeue.sql``; this revision only runs it.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0006"
down_revision: str | None = "0005"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    execute_sql_file("0006_received_at_requeue.sql")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS failed_operations_unreplayed")
    op.execute("ALTER TABLE failed_operations DROP COLUMN IF EXISTS replay_entry_id")
    op.execute("DROP INDEX IF EXISTS index_jobs_unqueued")
    op.execute("ALTER TABLE index_jobs DROP COLUMN IF EXISTS received_at")
