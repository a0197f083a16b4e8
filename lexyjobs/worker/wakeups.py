"""Wake-ups from other processes: an enqueue elsewhere should start a run here at once, not at
the next poll (LEXYJOBS_POLL_INTERVAL). Postgres says so itself (LISTEN/NOTIFY, ``listen``);
SQLite has no such thing, so its ``PRAGMA data_version`` is watched instead (``watch``).

Enqueues in this process wake the dispatcher directly (``Database.on_enqueue``). These loops hold
no locks and end within a second of ``Pool.closed``, so ``Worker.stop`` does not join them."""
from __future__ import annotations

import logging
from typing import Callable

from lexyjobs.db import NOTIFY_CHANNEL, Database
from lexyjobs.failures import FailureLog
from lexyjobs.worker.pool import Pool

log = logging.getLogger("lexyjobs.worker")  # one logger for the whole pool (README: log lines)
WATCH_INTERVAL = 0.025  # seconds between SQLite data_version reads (cross-process wake-ups)


class Wakeups:
    """Wakes the pool's dispatcher when another process may have enqueued a run."""

    def __init__(self, db: Database, pool: Pool, failures: FailureLog, *, name: str,
                 anything_due: Callable[[], bool]) -> None:
        self.db, self.pool, self.failures, self.name = db, pool, failures, name
        self.anything_due = anything_due  # a cheap read: is any run due that this process serves?

    def loop(self) -> None:
        """LISTEN on Postgres, the data_version watch on SQLite."""
        if self.db.is_postgres:
            self.listen()
        else:
            self.watch()

    def listen(self) -> None:
        import psycopg

        closed = self.pool.closed
        while not closed.is_set():
            try:
                with psycopg.connect(self.db.psycopg_conninfo(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    row = conn.execute("SELECT current_schema()").fetchone()
                    schema = row[0] if row else None
                    self.pool.wake()  # catch what was enqueued while we were not listening
                    while not closed.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            if notice.payload == schema:  # not another instance's (same database, other schema)
                                self.pool.wake()
            except psycopg.Error as exc:
                self.failures.failed(log, f"worker {self.name}: LISTEN connection failed; reconnecting", exc)
                closed.wait(1.0)

    def watch(self) -> None:
        """SQLite has no NOTIFY. ``PRAGMA data_version`` changes when another connection (another
        process's enqueue included) has committed; it reads the file's header, takes no lock and
        costs microseconds, so it is read every WATCH_INTERVAL; after a change, the dispatcher is
        woken if a run is due (heartbeats, finishes and this process's own commits change it too,
        and should not each cost a claim under the write lock)."""
        closed = self.pool.closed
        while not closed.is_set():
            try:
                raw = self.db.engine.raw_connection()  # autocommit (see db.py): no transaction is held
                try:
                    seen = raw.execute("PRAGMA data_version").fetchone()
                    while not closed.wait(WATCH_INTERVAL):
                        version = raw.execute("PRAGMA data_version").fetchone()
                        if version != seen:  # most commits are not enqueues: a cheap read, not a claim
                            seen = version
                            if self.anything_due():
                                self.pool.wake()
                finally:
                    raw.close()
            except Exception as exc:  # e.g. the file is gone or locked for long: say so, retry
                self.failures.failed(log, f"worker {self.name}: watching the database for changes failed; retrying",
                                     exc)
                closed.wait(1.0)
