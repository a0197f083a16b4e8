"""the runs list sorted by duration or queue time at a million runs

``ix_runs_duration`` and ``ix_runs_queue_time`` index ``span(started_at, finished_at)`` and
``span(scheduled_for, started_at)`` (``lexyjobs.models.span``: seconds on SQLite, an interval on
Postgres), then ``id`` for stable ties. Without them a sorted first page reads and sorts every run:
200 ms on SQLite at 1,000,000 runs (bench/panel.py); with them it reads 50 index entries.

Revision ID: 0019
Revises: 0018
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

INDEXES = {"ix_runs_duration": ("started_at", "finished_at"), "ix_runs_queue_time": ("scheduled_for", "started_at")}


def _span(start: str, end: str) -> sa.TextClause:
    """The expression ``lexyjobs.models.span`` compiles to, written out (a migration keeps its own copy)."""
    if op.get_bind().dialect.name == "postgresql":
        return sa.text(f"({end} - {start})")
    return sa.text(f"((julianday({end}) - julianday({start})) * 86400.0)")


def upgrade() -> None:
    for name, (start, end) in INDEXES.items():
        op.create_index(name, "runs", [_span(start, end), sa.text("id")])


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="runs")
