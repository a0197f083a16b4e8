"""llm_usage_days, llm_requests, llm_cache: what openai jobs spend per day, the requests of the
last minute per provider, and stored answers (lexyjobs.llm.spend, lexyjobs.llm.cache)

Revision ID: 0022
Revises: 0021
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lexyjobs.models import JSONType, RunId, UTCDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_usage_days",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("job_name", sa.String(100), primary_key=True),
        sa.Column("provider", sa.String(100), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("cached", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("currency", sa.String(10), nullable=False),
    )
    op.create_index("ix_llm_usage_days_provider", "llm_usage_days", ["provider", "day"])
    op.create_table(
        "llm_requests",
        sa.Column("id", RunId, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_llm_requests_provider_at", "llm_requests", ["provider", "at"])
    op.create_table(
        "llm_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("job_name", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("answer", JSONType, nullable=False),
    )
    op.create_index("ix_llm_cache_expires", "llm_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_table("llm_cache")
    op.drop_table("llm_requests")
    op.drop_table("llm_usage_days")
