"""alerts table; index on runs.parent_run_id

``alerts`` records every notification sent about a job's state change (lexyjobs.alerts), with a
unique ``key`` so that several processes send each one once. Retention deletes old runs, and a
deleted run's ``ON DELETE SET NULL`` looks up the runs that point at it: ``retry_of`` had an
index, ``parent_run_id`` now has one too (without it each deleted run scanned the table).

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import JSONType, RunId, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", RunId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("job_name", sa.String(100), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("run_id", RunId),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("deliveries", JSONType),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
    )
    op.create_index("ix_alerts_created", "alerts", ["created_at"])
    op.create_index("ix_alerts_job", "alerts", ["job_name", "id"])
    op.create_index("ix_runs_parent", "runs", ["parent_run_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_parent", table_name="runs")
    op.drop_table("alerts")
