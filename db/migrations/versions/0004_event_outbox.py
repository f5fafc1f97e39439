"""The events outbox: event_outbox (events committed with their effects, relayed to Redis).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14

The DDL lives in ``db/sql/0004_event_outbox.sql``; this revision only runs it.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0004"
down_revision: str | None = "0003"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    execute_sql_file("0004_event_outbox.sql")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS event_outbox")
