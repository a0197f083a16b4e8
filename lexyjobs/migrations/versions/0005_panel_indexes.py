"""indexes for the panel's reads at millions of runs

Replaces two indexes by ones that serve the same lookups and more, and adds two per job:

* ``ix_runs_status_id (status, id)`` replaces ``(status, created_at)``: a list filtered by one
  status comes newest first straight from the index (``ORDER BY id DESC LIMIT 50``), and the
  count of one status is a range count.
* ``ix_runs_status_finished (status, finished_at)`` replaces ``(finished_at)``: finished runs
  per status and time bucket (the charts) are range counts; the last 24 hours' runs (queue and
  processing times) one range per status. (Adding started_at and scheduled_for would spare those
  averages their row lookups, but the 2.5× wider entries make every chart count slower by as
  much, and cost on every status change.)
* ``ix_runs_job_outcome (job_name, status, finished_at, id)``: a job's latest run per status, its
  last success and failure streak (health) by index seeks; its counts per status.
* ``ix_runs_job_id (job_name, id)``: a job's runs newest first (runs list, job history).

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_runs_status_created", table_name="runs")
    op.drop_index("ix_runs_finished", table_name="runs")
    op.create_index("ix_runs_status_id", "runs", ["status", "id"])
    op.create_index("ix_runs_status_finished", "runs", ["status", "finished_at"])
    op.create_index("ix_runs_job_outcome", "runs", ["job_name", "status", "finished_at", "id"])
    op.create_index("ix_runs_job_id", "runs", ["job_name", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_job_id", table_name="runs")
    op.drop_index("ix_runs_job_outcome", table_name="runs")
    op.drop_index("ix_runs_status_finished", table_name="runs")
    op.drop_index("ix_runs_status_id", table_name="runs")
    op.create_index("ix_runs_finished", "runs", ["finished_at"])
    op.create_index("ix_runs_status_created", "runs", ["status", "created_at"])
