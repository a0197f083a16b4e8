"""runs.cancel_requested_at: when a running run was first asked to cancel

A run whose body finishes before its worker acts on a cancel request keeps its real outcome;
the time of the request lets its record say so ("cancel requested at T; it finished first").
Who asked, and each request, are run events (lexyjobs.cancels).

Revision ID: 0011
Revises: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("cancel_requested_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "cancel_requested_at")  # SQLite >= 3.35 drops a column in place
