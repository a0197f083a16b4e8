"""jobs.spec keeps its keys in the order written (Postgres)

``jsonb`` stores object keys sorted by length, so a job's parameters came back in that order and
the run form listed ``day`` before ``limit`` before ``customer`` whatever order the author chose.
``json`` keeps the text as written. Nothing queries inside ``spec`` (it is read whole), so
jsonb's operators and indexes are not missed. SQLite already keeps the text as written.
Existing rows keep the order jsonb gave them until their job is saved again.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE jobs ALTER COLUMN spec TYPE json USING spec::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE jobs ALTER COLUMN spec TYPE jsonb USING spec::jsonb")
