"""Failure counters kept by triggers and the indexes behind bounded summaries and retention.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

The DDL lives in ``db/sql/0004_bounded_reads_retention.sql``; this revision only runs it.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0004"
down_revision: str | None = "0003"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    execute_sql_file("0004_bounded_reads_retention.sql")


def downgrade() -> None:
    for index in (
        "index_jobs_finished", "failed_operations_resolved", "failed_operations_created_at",
        "failed_operations_reason_id",
    ):  # fmt: skip
        op.execute(f"DROP INDEX IF EXISTS {index}")
    for event in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS failure_tallies_{event} ON failed_operations")
    op.execute("DROP FUNCTION IF EXISTS failure_tallies_count()")
    op.execute("DROP TABLE IF EXISTS failure_tallies")
