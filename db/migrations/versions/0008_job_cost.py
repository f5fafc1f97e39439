"""Cost accounting per job: embedding tokens, requests and estimated US dollars on index_jobs.

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-30

Numbered 0008 because the number was reserved while 0006 was written on another branch; 0007 was
never used. The history stays linear: 0006 → 0008.
The DDL lives in ``db/sql/0008_job_cost.sql``; this revision only runs it.
"""

from __future__ import annotations

from alembic import op

from finally_indexer.db.migrations.sqlscript import execute_sql_file

revision = "0008"
down_revision: str | None = "0006"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    execute_sql_file("0008_job_cost.sql")


def downgrade() -> None:
    for column in ("embedding_tokens", "embedding_requests", "cost_usd", "embedding_model"):
        op.execute(f"ALTER TABLE index_jobs DROP COLUMN IF EXISTS {column}")
