"""alert targets added in the panel

``alert_targets`` holds the webhook, Slack and e-mail targets admins add in Settings, beside
those of the environment: each with its events, failure threshold, the jobs or categories it
covers (none: every job) and whether it is on. A URL and a signing secret are stored sealed in
``secret`` (lexyjobs.sealing); ``destination`` holds what the panel shows.

Revision ID: 0018
Revises: 0017
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import JSONType, UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_targets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("destination", sa.String(2000), nullable=False),
        sa.Column("secret", sa.Text),
        sa.Column("events", JSONType, nullable=False),
        sa.Column("after_failures", sa.Integer, nullable=False, server_default="1"),
        sa.Column("jobs", JSONType, nullable=False),
        sa.Column("categories", JSONType, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200)),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("updated_by", sa.String(200)),
    )


def downgrade() -> None:
    op.drop_table("alert_targets")
