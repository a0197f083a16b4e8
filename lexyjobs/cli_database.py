"""Which database a CLI command works on, and opening it without side effects.

A one-shot command never creates a database: typed in the wrong folder, ``sqlite:///jobs.db``
would otherwise leave an empty ``jobs.db`` there and answer "no job named …". Read commands
open the database read-only when this process may not write it (a 0444 file, a read-only
folder) and never change its schema; write commands refuse a missing database too, naming the
path, since only ``lexyjobs db upgrade`` and the server (``serve``/``worker``) create one."""
from __future__ import annotations

import os

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from lexyjobs import schema
from lexyjobs.db import Database, sqlite_path
from lexyjobs.errors import LexyjobsError


class DatabaseMissing(LexyjobsError):
    """There is no lexyjobs database there."""

    code = "no_database"


def describe(url: str) -> str:
    """The database as a user can find it: a SQLite file's absolute path, else the URL without
    its password."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    return make_url(url).render_as_string(hide_password=True)


def _missing(url: str, what: str) -> DatabaseMissing:
    hint = ("run the command in the folder the server runs in, or set LEXYJOBS_DATABASE_URL"
            if sqlite_path(url) is not None else "check LEXYJOBS_DATABASE_URL")
    return DatabaseMissing(f"{what} {describe(url)}; {hint} (`lexyjobs db upgrade` or starting the server "
                           "creates a new one)", details={"database": describe(url)})


def check_exists(db: Database) -> None:
    """DatabaseMissing unless ``db`` is a SQLite file that exists or another database with the
    lexyjobs tables; connects (SQLite: only once the file is known to exist)."""
    path = sqlite_path(db.url)
    if path is not None and not path.is_file():
        raise _missing(db.url, "no database at")
    with db.engine.connect() as connection:  # an unreachable server raises here (a database error)
        has_schema = inspect(connection).has_table("alembic_version")
    if not has_schema:
        raise _missing(db.url, "no lexyjobs tables in the database")


def for_reading(db: Database) -> Database:
    """``db`` ready for a read command: the database exists and is at this version's schema;
    a new read-only ``Database`` when this process cannot write the SQLite file or its folder."""
    path = sqlite_path(db.url)
    if path is not None and path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        db = Database(db.url, read_only=True)
    check_exists(db)
    revision = schema.current_revision(db)
    if revision != schema.HEAD:
        raise LexyjobsError(f"the database {describe(db.url)} has schema {revision}, this lexyjobs reads "
                            f"{schema.HEAD}: run `lexyjobs db upgrade` (or restart the server)")
    return db


def for_writing(db: Database) -> Database:
    """``db`` ready for a write command: the database exists; its schema is brought up to date
    (Alembic is imported only when it is not: see ``schema.upgrade``)."""
    check_exists(db)
    schema.upgrade(db)
    return db
