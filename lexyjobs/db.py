"""Engine and sessions. SQLite runs in WAL mode with busy_timeout and foreign keys on, and every
write transaction starts with ``BEGIN IMMEDIATE`` so it takes the write lock up front (waiting up to
busy_timeout) instead of failing with "database is locked" when it upgrades from a read.

The SQLite file holds password hashes, params and logs, so it is private to its owner (0600):
lexyjobs creates it so before SQLite opens it, and SQLite gives the ``-wal`` and ``-shm`` files the
database file's mode. A file found readable by everyone is narrowed to 0600 at the first
connection, with one log line."""
from __future__ import annotations

import logging
import os
import stat
import urllib.parse
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_MS = 30_000
PRIVATE_MODE = 0o600
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")
NOTIFY_CHANNEL = "lexyjobs_runs"
_WAKE = "lexyjobs_wake"  # Session.info: the Database (weakly) whose listeners the commit calls
NOTIFIED = "lexyjobs_notified"  # Session.info: a statement of its transaction sent the NOTIFY already


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Database:
    """Owns the engine; ``write()`` and ``read()`` hand out short transactions."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = 20,
                 read_only: bool = False) -> None:
        """``read_only`` (SQLite): open the file read-only, for a database this process may not
        write (file mode 0444, a read-only folder); see ``sqlite_read_only_url``."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": pool_size}
        if self.is_sqlite and ":memory:" in url:
            raise ValueError("lexyjobs needs a SQLite file (several threads and processes share it), not :memory:")
        path = sqlite_path(url)
        read_only = read_only and path is not None
        self.engine: Engine = create_engine(sqlite_read_only_url(path) if read_only and path else url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine, sqlite_synchronous.upper(), wal=not read_only)
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(self.engine.execution_options(lexyjobs_immediate=True), expire_on_commit=False)
        self._enqueue_listeners: list[Callable[[], None]] = []

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on exit, rolled back on error."""
        with self._writes.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only snapshot, ended on exit: committed on Postgres (it wrote nothing, and
        psycopg answers a ROLLBACK by forgetting every prepared statement of the connection,
        with a DEALLOCATE ALL round trip: the panel's and the worker's reads would then never
        reach the prepare threshold), rolled back elsewhere and on error."""
        with self._reads() as session:
            yield session
            if self.is_postgres:
                session.commit()

    def on_enqueue(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after a transaction that enqueued runs commits (in-process wake-up)."""
        self._enqueue_listeners.append(listener)

    def enqueued(self, session: Session) -> None:
        """Mark ``session`` as having enqueued runs: NOTIFY other processes (unless a statement of
        the transaction did) and, once it commits, wake local workers (``_after_commit``)."""
        # The payload names the schema: instances sharing a database hear only theirs.
        if self.is_postgres and not session.info.get(NOTIFIED):
            session.execute(text("SELECT pg_notify(:channel, current_schema())"), {"channel": NOTIFY_CHANNEL})
        session.info[_WAKE] = weakref.ref(self)  # weak: a Database nobody uses is collected

    def fire_enqueue_listeners(self) -> None:
        for listener in self._enqueue_listeners:
            listener()

    def psycopg_conninfo(self) -> str:
        """The URL in the form psycopg.connect() takes (for the LISTEN connection)."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    def dispose(self) -> None:
        self.engine.dispose()


# Every session's end, a host application's included (``lexyjobs.enqueueing``): listened to once
# on the Session class. Listening per session cost ~70 µs of a one-run enqueue, and a listener
# bound to a Database would keep it (and its connection pool) alive.
@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    session.info.pop(NOTIFIED, None)
    owner = session.info.pop(_WAKE, None)
    db = owner() if owner is not None else None
    if db is not None:
        db.fire_enqueue_listeners()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    """The runs are gone, and a later commit of the same session (a host application's) must
    not wake workers for them."""
    session.info.pop(_WAKE, None)
    session.info.pop(NOTIFIED, None)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, absolute (None for another database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).absolute()


def sqlite_read_only_url(path: Path) -> str:
    """A read-only URL for the SQLite file ``path``. ``mode=ro`` reads the WAL too, but needs the
    ``-shm`` file (or a folder where it can create it); with neither, the database was closed
    cleanly (nothing in a WAL), so ``immutable=1`` reads the file alone without creating anything."""
    shm = path.with_name(path.name + "-shm")
    option = "mode=ro" if shm.exists() or os.access(path.parent, os.W_OK) else "immutable=1"
    return f"sqlite:///file:{urllib.parse.quote(str(path))}?{option}&uri=true"


def sqlite_file(url: str) -> str | None:
    """The file a ``sqlite:///`` URL names, as SQLite will open it (None: in memory, or a ``file:``
    URI, which SQLite opens itself: e.g. the CLI's read-only URL, which must create nothing)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:") or make_url(url).query.get("uri"):
        return None
    return database


def create_private(path: str) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (an empty file is an empty SQLite
    database). A folder that does not exist is left to SQLite to report."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    except OSError:
        pass


def narrow_world_readable(path: str) -> None:
    """Make the database and its side files 0600 if any of them is open to everyone (one log line).
    A file readable by its group only was made so on purpose and is left alone, and so is one
    this user does not own (only the owner may change its mode; e.g. the CLI run as another user)."""
    opened = []
    for name in (path + suffix for suffix in SQLITE_SIDE_FILES):
        try:
            found = os.stat(name)
        except OSError:
            continue
        mode = stat.S_IMODE(found.st_mode)
        if mode & stat.S_IRWXO and found.st_uid == os.geteuid():  # only its owner may change its mode
            opened.append((name, mode))
    if not opened:
        return
    failed = []
    for name, mode in opened:
        try:
            os.chmod(name, PRIVATE_MODE)
        except OSError as exc:
            failed.append(f"{name}: {exc.strerror}")
    modes = ", ".join(f"{name} {mode:04o}" for name, mode in opened)
    if failed:
        log.warning("the database files are readable by every user (%s) and could not be made private: %s",
                    modes, "; ".join(failed))
    else:
        log.warning("the database files were readable by every user (%s); they are now 0600", modes)


def _configure_sqlite(engine: Engine, synchronous: str, *, wal: bool = True) -> None:
    path = sqlite_file(engine.url.render_as_string(hide_password=False))
    checked: list[bool] = []  # the world-readable check runs at the first connection only

    @event.listens_for(engine, "do_connect")
    def _private_file(_dialect: Any, _record: Any, _cargs: Any, _cparams: Any) -> None:
        if path is None:
            return
        create_private(path)  # before SQLite opens (and creates) it, which would use the umask: 0644
        if not checked:
            checked.append(True)
            narrow_world_readable(path)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Manage transactions ourselves (the sqlite3 module's implicit BEGIN is DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if wal:  # a read-only connection leaves the journal mode as the file has it
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("lexyjobs_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
