"""backfills and runs.backfill_id: a group of runs over a past range, one per fire time or day
(lexyjobs.backfill)

Revision ID: 0024
Revises: 0023
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import UTCDateTime

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backfills",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_name", sa.String(100), sa.ForeignKey("jobs.name", ondelete="CASCADE"), nullable=False),
        sa.Column("range_start", UTCDateTime, nullable=False),
        sa.Column("range_end", UTCDateTime, nullable=False),
        sa.Column("per", sa.String(10), nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(200)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("canceled_at", UTCDateTime),
        sa.Column("canceled_by", sa.String(200)),
    )
    op.create_index("ix_backfills_job", "backfills", ["job_name", "id"])
    op.add_column("runs", sa.Column("backfill_id", sa.Integer))
    op.create_index("ix_runs_backfill", "runs", ["backfill_id"], sqlite_where=sa.text("backfill_id IS NOT NULL"),
                    postgresql_where=sa.text("backfill_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_runs_backfill", "runs")
    op.drop_column("runs", "backfill_id")  # in place (SQLite ≥ 3.35): a batch copy would lose runs' other indexes
    op.drop_index("ix_backfills_job", "backfills")
    op.drop_table("backfills")
