"""load_problems table

``load_problems`` holds the job definitions the last load of each source rejected (a typo'd field
in jobs.toml, a module that failed to import, ...), so that the panel, the API and the CLI — other
processes than the one that loaded them — can show them (lexyjobs.load_problems).

Revision ID: 0016
Revises: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import UTCDateTime

revision = "0016"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "load_problems",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String(500), nullable=False),
        sa.Column("job", sa.String(200)),
        sa.Column("field", sa.String(100)),
        sa.Column("problem", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("load_problems")
