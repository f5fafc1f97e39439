"""Drift in flight on audit reports: audit_reports.newest_row_at, in_flight_after, in_flight.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

The DDL lives in ``db/sql/0010_audit_in_flight.sql``; this revision only runs it.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0010"
down_revision: str | None = "0009"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    execute_sql_file("0010_audit_in_flight.sql")


def downgrade() -> None:
    for column in ("newest_row_at", "in_flight_after", "in_flight"):
        op.execute(f"ALTER TABLE audit_reports DROP COLUMN IF EXISTS {column}")
