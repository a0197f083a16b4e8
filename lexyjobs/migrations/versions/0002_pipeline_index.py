"""index runs by pipeline (downstream lookups when a pipeline step finishes)

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_pipeline", "runs", ["pipeline_id", "job_name"])


def downgrade() -> None:
    op.drop_index("ix_runs_pipeline", table_name="runs")
