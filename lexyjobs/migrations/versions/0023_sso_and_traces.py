"""users.source and users.subject: who signs in through OpenID Connect (lexyjobs.sso); runs.trace_parent:
the W3C traceparent of the trace a run belongs to (lexyjobs.tracing), carried from enqueue to the worker

Revision ID: 0023
Revises: 0022
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("source", sa.String(20), nullable=False, server_default="local"))
    op.add_column("users", sa.Column("subject", sa.String(400)))  # "<issuer> <sub>" for source "oidc"
    op.create_index("ix_users_subject", "users", ["subject"], unique=True)
    op.add_column("runs", sa.Column("trace_parent", sa.String(60)))


def downgrade() -> None:
    op.drop_column("runs", "trace_parent")
    op.drop_index("ix_users_subject", "users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("subject")
        batch.drop_column("source")
