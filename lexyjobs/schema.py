"""Create or upgrade the schema with Alembic. Safe to call from several processes at once:
Postgres takes an advisory lock, SQLite a ``BEGIN IMMEDIATE`` write lock."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from lexyjobs.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0024"  # the newest migration (a test checks it against the migrations folder)
_ADVISORY_LOCK = 7_412_003  # arbitrary constant shared by every lexyjobs process


def alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest). A database already at HEAD is
    left alone without loading Alembic (its import costs every process ~55 ms and ~11 MB)."""
    if revision == "head" and current_revision(db) == HEAD:
        return
    from alembic import command

    config = alembic_config()
    engine = db.engine.execution_options(lexyjobs_immediate=True)
    with engine.begin() as connection:
        if db.is_postgres:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(db: Database) -> str | None:
    """The revision the database is at (None: no schema yet)."""
    try:
        with db.engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
