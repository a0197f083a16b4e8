"""runs.begun_at, runs.process_group, runs.process_host

``begun_at``: when the latest attempt's body began. A worker claims short runs ahead of its free
threads; those wait with ``begun_at`` NULL, and a rescue gives them back without counting the
attempt (nothing ran). Runs already running when this migration runs count as begun.

``process_group`` and ``process_host``: the job process group of the latest attempt (shell kind)
and where it runs, so that a rescue on that host kills the group before the run is queued again.

Revision ID: 0010
Revises: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("begun_at", UTCDateTime))
    op.add_column("runs", sa.Column("process_group", sa.Integer))
    op.add_column("runs", sa.Column("process_host", sa.String(200)))
    op.execute("UPDATE runs SET begun_at = started_at WHERE status = 'running'")


def downgrade() -> None:
    for column in ("process_host", "process_group", "begun_at"):
        op.drop_column("runs", column)
