"""The events outbox: event_outbox (events committed with their effects, relayed to Redis).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

The DDL lives in ``db/sql/0005_event_outbox.sql``; this revision only runs it.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0005"
down_revision: str | None = "0004"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    execute_sql_file("0005_event_outbox.sql")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS event_outbox")
