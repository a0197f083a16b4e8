"""Create or upgrade the schema with Alembic. Safe to call from several processes at once:
Postgres takes an advisory lock, SQLite a ``BEGIN IMMEDIATE`` write lock."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from lexyjobs.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_LOCK = 7_412_003  # arbitrary constant shared by every lexyjobs process


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest)."""
    config = alembic_config()
    engine = db.engine.execution_options(lexyjobs_immediate=True)
    with engine.begin() as connection:
        if db.is_postgres:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
