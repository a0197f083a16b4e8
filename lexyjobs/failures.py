"""Failures of the background loops (dispatcher, monitor, LISTEN, watch, scheduler, housekeeping),
logged without flooding the process log.

Every loop retries after a failure, within a second or less, so a database outage used to log each
attempt with its traceback (a 45 s Postgres outage: 2,646 lines, 56 tracebacks). Here each process
has one ``FailureLog`` per database, shared by its loops:

- an error is logged once when a loop first meets it — with its traceback only the first time
  this process ever sees that error — then the identical error (same type and first line) in the
  same place is only counted, and logged again with the count once per ``REPEAT_SECONDS``;
- an error that says the database cannot be reached (a lost or refused connection) opens an
  outage; the first statement that succeeds afterwards, in any thread, closes it with one line:
  ``database reachable again after 45 s (2,640 failed attempts)``. The next outage logs its
  errors again (without tracebacks already shown).

Errors that are not about reaching the database (a bug, a refused row) are throttled the same way
but end no outage: a loop that keeps failing on them logs once per interval, not per attempt."""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from lexyjobs.db import Database
from lexyjobs.durations import format_duration

REPEAT_SECONDS = 60.0
log = logging.getLogger(__name__)


@dataclass
class _Repeats:
    since_logged: int = 0  # identical failures since the error was last logged
    logged_at: float = 0.0
    outage: bool = False


def error_key(exc: BaseException) -> tuple[str, str]:
    """What makes two errors "identical": their type and the first line of their message
    (SQLAlchemy puts the SQL and a link on later lines)."""
    text = str(exc).strip().splitlines()
    return type(exc).__name__, text[0][:300] if text else ""


def is_unreachable(exc: BaseException) -> bool:
    """True for errors that say the database cannot be reached (connection lost, refused, reset,
    the server shutting down; a SQLite file that cannot be opened), as opposed to a statement the
    database refused (a missing table, a constraint, a lock timeout)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if isinstance(exc.orig, BaseException) else exc
    if isinstance(exc, sqlite3.OperationalError):
        return str(exc).startswith(("unable to open database file", "disk I/O error"))
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a runtime requirement
        return False
    if isinstance(exc, psycopg.InterfaceError):  # e.g. "the connection is closed"
        return True
    # client-side connection errors carry no SQLSTATE; 08xxx: connection exceptions; 57P01-03:
    # the server shutting down or starting (deadlocks and timeouts are OperationalErrors too: not these)
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.OperationalError) and (
        sqlstate is None or sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03"))


class FailureLog:
    """One process's failure log for one database (see the module docstring). Thread-safe."""

    def __init__(self, *, interval: float = REPEAT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._repeats: dict[tuple[str, str, str], _Repeats] = {}  # (where, *error_key)
        self._traced: set[tuple[str, str]] = set()
        self._outage_since: float | None = None
        self._outage_failures = 0

    def failed(self, logger: logging.Logger, where: str, exc: BaseException) -> None:
        """Log (or count) ``exc``, which made ``where`` ("worker w1: could not write a batch") fail."""
        key, now = error_key(exc), self.clock()
        unreachable = is_unreachable(exc)
        with self._lock:
            if unreachable:
                if self._outage_since is None:
                    self._outage_since, self._outage_failures = now, 0
                self._outage_failures += 1
            repeats = self._repeats.get((where, *key))
            if repeats is None:
                self._repeats[(where, *key)] = _Repeats(logged_at=now, outage=unreachable)
                traceback = key not in self._traced
                self._traced.add(key)
            elif now - repeats.logged_at >= self.interval:
                count, repeats.since_logged, repeats.logged_at = repeats.since_logged + 1, 0, now
                logger.error("%s: %s: %s (%d times in the last %s)", where, *key, count,
                             format_duration(self.interval))
                return
            else:
                repeats.since_logged += 1
                return
        logger.error("%s: %s: %s (the same error again is logged once per %s, with a count)", where, *key,
                     format_duration(self.interval), exc_info=exc if traceback else None)

    def succeeded(self) -> None:
        """A statement worked: an open outage ends here, with one line."""
        if self._outage_since is None:  # the common case: no lock taken
            return
        with self._lock:
            if self._outage_since is None:
                return
            took, failures = self.clock() - self._outage_since, self._outage_failures
            self._outage_since = None
            for key in [k for k, r in self._repeats.items() if r.outage]:  # the next outage logs them again
                del self._repeats[key]
        log.warning("database reachable again after %s (%d failed attempts meanwhile)",
                    format_duration(took), failures, extra={"outage_seconds": round(took, 1), "failures": failures})


_LOGS: "weakref.WeakKeyDictionary[Database, FailureLog]" = weakref.WeakKeyDictionary()
_LOGS_LOCK = threading.Lock()


def failure_log(db: Database) -> FailureLog:
    """The process's FailureLog for ``db``; made on first use, with a hook that ends outages on the
    first statement that succeeds on ``db``'s engine (in any thread)."""
    with _LOGS_LOCK:
        found = _LOGS.get(db)
        if found is None:
            found = _LOGS[db] = FailureLog()
            failures = found

            def _after_execute(*_args: Any) -> None:
                failures.succeeded()
            event.listen(db.engine, "after_cursor_execute", _after_execute)
        return found
