"""jobs, runs, run events and run logs

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import JSONType, RunId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("schedule", sa.String(200)),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("max_concurrency", sa.Integer, nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", RunId, primary_key=True, autoincrement=True),
        sa.Column("job_name", sa.String(100), sa.ForeignKey("jobs.name", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("created_by", sa.String(200)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("scheduled_for", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("lease", sa.Integer, nullable=False),
        sa.Column("progress", sa.Float),
        sa.Column("progress_message", sa.String(500)),
        sa.Column("result", JSONType),
        sa.Column("error", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("details", JSONType),
        sa.Column("worker", sa.String(200)),
        sa.Column("heartbeat_at", UTCDateTime),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("pipeline_id", sa.String(36)),
        sa.Column("parent_run_id", RunId, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("retry_of", RunId, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("fire_key", sa.String(200), unique=True),
    )
    queued, running = sa.text("status = 'queued'"), sa.text("status = 'running'")
    op.create_index("ix_runs_queue", "runs", [sa.text("priority DESC"), "scheduled_for", "id"],
                    sqlite_where=queued, postgresql_where=queued)
    op.create_index("ix_runs_running", "runs", ["job_name", "heartbeat_at"],
                    sqlite_where=running, postgresql_where=running)
    op.create_index("ix_runs_job_created", "runs", ["job_name", "created_at"])
    op.create_index("ix_runs_status_created", "runs", ["status", "created_at"])
    op.create_index("ix_runs_created", "runs", ["created_at"])
    op.create_table(
        "run_events",
        sa.Column("id", RunId, primary_key=True, autoincrement=True),
        sa.Column("run_id", RunId, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_run_events_run", "run_events", ["run_id", "id"])
    op.create_index("ix_run_events_at", "run_events", ["at"])
    op.create_table(
        "run_logs",
        sa.Column("run_id", RunId, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_logs")
    op.drop_table("run_events")
    op.drop_table("runs")
    op.drop_table("jobs")
