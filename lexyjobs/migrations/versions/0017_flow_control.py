"""flow control: named queues, concurrency keys, rate limits, unique runs, idempotent enqueue

``runs`` gains what the claim and the enqueue need to apply flow control without reading job
definitions: the run's ``queue``; its rendered ``concurrency_key`` and that key's
``concurrency_limit``; ``rate_limits`` (the buckets it takes a slot from, resolved at enqueue);
``held_until``/``held_by`` (a run the claim found over a rate limit waits, skipped by later
claims, until its slot); ``idempotency_key`` and ``unique_key`` (duplicate enqueues return the
first run). ``queues`` holds the paused state of each queue, ``rate_slots`` the recent starts
counted against each rate limit (a sliding window), ``named_limits`` the ``[limits.<name>]`` tables
of jobs.toml, ``workers.queues`` what each worker process serves and ``workers.stopping_at``
when it stopped claiming (shutting down: its queued runs say so).

Revision ID: 0017
Revises: 0016
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import JSONType, UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# Partial indexes of the runs that have a key only: every claim and finish of the many runs
# without one would otherwise write an index entry (measured: ~8 % of a no-op claim on SQLite).
RUNNING = sa.text("status = 'running' AND concurrency_key IS NOT NULL")
ACTIVE = sa.text("status IN ('queued', 'running') AND unique_key IS NOT NULL")


def upgrade() -> None:
    for column in (sa.Column("queue", sa.String(100), nullable=False, server_default="default"),
                   sa.Column("concurrency_key", sa.String(300)),
                   sa.Column("concurrency_limit", sa.Integer),
                   sa.Column("rate_limits", JSONType),
                   sa.Column("held_until", UTCDateTime),
                   sa.Column("held_by", sa.String(300)),
                   sa.Column("idempotency_key", sa.String(300)),
                   sa.Column("unique_key", sa.String(500))):
        op.add_column("runs", column)  # nullable or with a default: an in-place ALTER on SQLite too
    op.create_index("ix_runs_concurrency_key", "runs", ["concurrency_key"],
                    sqlite_where=RUNNING, postgresql_where=RUNNING)
    op.create_index("ix_runs_unique_key", "runs", ["unique_key"], sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    op.create_index("ix_runs_idempotency", "runs", ["job_name", "idempotency_key", "created_at"],
                    sqlite_where=sa.text("idempotency_key IS NOT NULL"),
                    postgresql_where=sa.text("idempotency_key IS NOT NULL"))
    op.add_column("workers", sa.Column("queues", JSONType))  # NULL: every queue
    op.add_column("workers", sa.Column("stopping_at", UTCDateTime))  # set when it stops claiming
    op.create_table(
        "queues",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("paused_at", UTCDateTime),
        sa.Column("paused_by", sa.String(200)),
    )
    op.create_table(
        "rate_slots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.String(300), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_rate_slots_bucket_at", "rate_slots", ["bucket", "at"])
    op.create_table(
        "named_limits",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("named_limits")
    op.drop_table("rate_slots")
    op.drop_table("queues")
    op.drop_column("workers", "stopping_at")
    op.drop_column("workers", "queues")
    op.drop_index("ix_runs_idempotency", "runs")
    op.drop_index("ix_runs_unique_key", "runs")
    op.drop_index("ix_runs_concurrency_key", "runs")
    for column in ("unique_key", "idempotency_key", "held_by", "held_until", "rate_limits", "concurrency_limit",
                   "concurrency_key", "queue"):
        op.drop_column("runs", column)  # SQLite >= 3.35 drops a column in place
