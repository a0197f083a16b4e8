"""workers: the registry of live worker processes

Every worker process (``lexyjobs serve`` / ``lexyjobs worker``) keeps one row here while it
runs: inserted at start, its ``heartbeat_at`` moved by the monitor thread every
LEXYJOBS_HEARTBEAT_INTERVAL, deleted on a clean stop; rows of processes that died are deleted by
the live ones once their heartbeat is older than LEXYJOBS_STALE_AFTER (see ``lexyjobs.workers``).
A worker's current runs are not stored here: they are the runs with ``status = 'running'`` and
``worker`` = its name. The table holds a handful of rows, so it needs no index beyond its key.

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("threads", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workers")
