"""run_counts: runs per job and status, kept by the transitions (lexyjobs.run_counts)

The dashboard and the runs list read these few rows instead of counting every run kept. The
table starts from the runs already there, counted once here.

Revision ID: 0020
Revises: 0019
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_counts",
        sa.Column("job_name", sa.String(100), sa.ForeignKey("jobs.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("status", sa.String(20), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO run_counts (job_name, status, slot, n) "
               "SELECT job_name, status, 0, count(*) FROM runs GROUP BY job_name, status")


def downgrade() -> None:
    op.drop_table("run_counts")
