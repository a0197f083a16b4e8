"""Enqueueing inside a host application's transaction (``lexyjobs.enqueue(..., session=...)``).

The host hands over its SQLAlchemy ``Session`` (or ``scoped_session``, e.g. Flask-SQLAlchemy's
``db.session``) or ``Connection``. lexyjobs writes the run through *that* connection, so the run
exists exactly when the host's transaction commits:

* commit → the run is there; on Postgres the ``NOTIFY`` sent in the transaction is delivered at
  commit (Postgres holds notifications until then), which wakes workers in every process; with a
  ``Session``, workers of this process are also woken right after its commit (``after_commit``).
  With a bare ``Connection`` there is no after-commit event, so workers of this process hear the
  commit like those of another process: the NOTIFY on Postgres, the ``data_version`` watch on
  SQLite (every 25 ms), at worst the poll (``LEXYJOBS_POLL_INTERVAL``).
* rollback → no run, no notification, no wake-up.

The connection must reach the database lexyjobs uses — same SQLite file, or same Postgres
server, database and schema — or ``OtherDatabase`` is raised before anything is written."""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Union

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, scoped_session

from lexyjobs.db import Database, sqlite_path
from lexyjobs.errors import LexyjobsError

HostSession = Union[Session, Connection, "scoped_session[Any]"]
LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
_schemas: weakref.WeakKeyDictionary[Database, str] = weakref.WeakKeyDictionary()  # Postgres: read once


class OtherDatabase(LexyjobsError):
    """The session given to enqueue is bound to another database than lexyjobs'."""

    status_code = 409
    code = "other_database"


def host_connection(host: Any) -> tuple[Connection, Session | None]:
    """The host's connection (in a transaction, begun if need be) and its Session, if it gave one."""
    if isinstance(host, scoped_session):
        host = host()
    if isinstance(host, Session):
        return host.connection(), host
    if isinstance(host, Connection):
        if not host.in_transaction():
            host.begin()  # what its first execute would do ("commit as you go"): the host commits it
        return host, None
    raise LexyjobsError(f"session must be a SQLAlchemy Session, scoped_session or Connection, not "
                        f"{type(host).__name__}", details={"field": "session"})


def check_same_database(conn: Connection, db: Database) -> None:
    """Refuse (OtherDatabase) a connection to another database, or another schema of ours."""
    ours, theirs = db.engine.url, conn.engine.url
    if db.is_sqlite:
        mine, other = sqlite_path(str(ours)), sqlite_path(theirs.render_as_string(hide_password=False))
        if other is None or _real(mine) != _real(other):
            _refuse(f"lexyjobs uses the SQLite file {mine}; the session is on {other or theirs.render_as_string()}")
        return
    if theirs.get_backend_name() != "postgresql":
        _refuse(f"lexyjobs uses Postgres; the session is on {theirs.get_backend_name()}")
    where = _server(make_url(ours)), _server(theirs)
    if where[0] != where[1]:
        _refuse(f"lexyjobs uses {_describe(where[0])}; the session is on {_describe(where[1])}")
    schema = conn.execute(text("SELECT current_schema()")).scalar()
    if schema != _our_schema(db):
        _refuse(f"lexyjobs' tables are in schema {_our_schema(db)!r}; the session's search_path starts at "
                f"{schema!r}")


def _real(path: Path | None) -> Path | None:
    return None if path is None else path.resolve()


def _server(url: Any) -> tuple[str, int, str]:
    host = url.host or ""
    return ("local" if host in LOCAL_HOSTS else host, url.port or 5432, url.database or "")


def _describe(server: tuple[str, int, str]) -> str:
    return f"database {server[2]!r} on {server[0]}:{server[1]}"


def _our_schema(db: Database) -> str:
    if db not in _schemas:
        with db.read() as session:
            _schemas[db] = str(session.execute(text("SELECT current_schema()")).scalar())
    return _schemas[db]


def _refuse(message: str) -> None:
    raise OtherDatabase(f"enqueue(session=...) needs a session on lexyjobs' own database: {message}")
