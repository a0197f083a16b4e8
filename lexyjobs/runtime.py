"""The app's engine room: settings, database, job catalog and — once started — the worker pool
and the scheduler. ``create_app`` builds it without side effects; ``start`` is called by the
server/worker entry points, or lazily by the first request a WSGI server other than ours serves
(``flask run``, with or without the reloader; see ``init_app``). It starts once per process."""
from __future__ import annotations

import atexit
import logging
import os
import sys
import threading

from flask import Flask, current_app, has_app_context, request
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lexyjobs import accounts, schema, tracing
from lexyjobs.config import Settings
from lexyjobs.db import Database
from lexyjobs.maintenance import Periodic, housekeeping
from lexyjobs.registry import JobCatalog, SyncReport, sync_jobs
from lexyjobs.scheduler import Scheduler
from lexyjobs.worker import Worker
from lexyjobs.finished_hours import FinishedHours

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        tracing.enable(settings)
        self.db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous,
                           pool_size=max(10, settings.workers + settings.http_threads + 4))
        self.catalog = JobCatalog(self.db)
        self.finished_hours = FinishedHours()  # the closed hours' tallies, for the dashboard and /api/stats
        self.worker: Worker | None = None
        self.scheduler: Scheduler | None = None
        self.housekeeping: list[Periodic] = []
        self.sync_report: SyncReport | None = None
        self.started = False
        self.stopped = False
        self.url_prefix = ""  # where the Lexyjobs extension mounted the panel and API ("/admin/jobs")
        self.own_users = True  # False when the host app's login is used (Lexyjobs(authorize=...)): no admin bootstrap
        self._start_lock = threading.Lock()

    def prepare(self, *, authoritative: bool = False) -> SyncReport:
        """Upgrade the schema and load code and file jobs into it. Only the server is
        ``authoritative``: it also archives jobs that disappeared from their source."""
        schema.upgrade(self.db)
        for attempt in range(3):
            try:
                self.sync_report = sync_jobs(self.db, jobs_file=self.settings.jobs_file,
                                             imports=self.settings.imports, archive_missing=authoritative)
                break
            except IntegrityError:  # another process inserted the same new job at the same moment
                if attempt == 2:
                    raise
        assert self.sync_report is not None
        if authoritative and self.own_users and self.settings.password_login:
            self._ensure_admin()
        return self.sync_report

    def _ensure_admin(self) -> None:
        """LEXYJOBS_ADMIN_PASSWORD sets user admin's password; with no users at all, a generated
        one is printed once, here, and never stored in clear."""
        generated = accounts.ensure_admin(self.db, self.settings.admin_password)
        if generated is not None:
            print(f"lexyjobs: created user 'admin' with password: {generated}\n"
                  "lexyjobs: it is shown only this once; change it with `lexyjobs users set-password admin`",
                  file=sys.stderr, flush=True)

    def start(self, *, worker: bool = True, scheduler: bool = True) -> bool:
        """Prepare, then start the worker pool (unless ``workers`` is 0) and/or the scheduler
        threads. Only the first call in a process starts anything (returns True); later ones
        return False."""
        with self._start_lock:
            if self.started:
                return False
            self.prepare(authoritative=scheduler)
            if worker and self.settings.workers > 0:
                self.worker = Worker(self.db, self.settings, self.catalog)
                self.worker.start()
            if scheduler:
                self.scheduler = Scheduler(self.db)
                self.scheduler.start()
                self.housekeeping = housekeeping(self.db, self.settings)
                for thread in self.housekeeping:
                    thread.start()
                print(f"lexyjobs: scheduler started in pid {os.getpid()}", file=sys.stderr, flush=True)
            self.started = True
            return True

    def stop(self, grace: float | None = None) -> None:
        """Stop the scheduler, then stop the worker gracefully. Later calls do nothing (an explicit
        ``stop()`` and the at-exit one of a lazily started runtime may both come)."""
        if self.stopped:
            return
        self.stopped = True
        if self.scheduler is not None:
            self.scheduler.stop()
        for thread in self.housekeeping:
            thread.stop()
        if self.worker is not None:
            self.worker.stop(grace)
        tracing.shutdown()
        self.db.dispose()

    def health(self) -> dict[str, bool | None]:
        """Readiness: the database answers and the started threads are alive."""
        try:
            with self.db.read() as session:
                session.execute(text("SELECT 1"))
            database = True
        except SQLAlchemyError:
            database = False
        return {"database": database,
                "worker": self.worker.alive() if self.worker else None,
                "scheduler": self.scheduler.alive() if self.scheduler else None}


def current() -> Runtime:
    """The Runtime of the current Flask app."""
    return current_app.extensions["lexyjobs"]


_default: Runtime | None = None
_default_lock = threading.Lock()


def set_default(runtime: Runtime) -> None:
    """Make ``runtime`` the one code outside a Flask app context uses (the last app set up wins)."""
    global _default
    _default = runtime


def resolve() -> Runtime:
    """The Runtime for code that enqueues or reads runs: the current Flask app's inside an app
    context, else the last one set up in this process, else one built from the environment
    (``LEXYJOBS_*``) on first use; building it opens no connection until the database is used."""
    global _default
    if has_app_context() and "lexyjobs" in current_app.extensions:
        return current()
    with _default_lock:
        if _default is None:
            from lexyjobs.config import load_settings
            _default = Runtime(load_settings())
        return _default


def init_app(app: Flask, *, scheduler: bool = True) -> None:
    """Start the worker pool and the scheduler on the first request served by a real WSGI server
    when no entry point started them (``flask --app app run [--debug]``). With the Werkzeug
    reloader, only the child process (``WERKZEUG_RUN_MAIN=true``) serves requests, so the reloader
    parent never starts them, and the child starts them once (lock + flag). Test clients set no
    ``SERVER_SOFTWARE`` and start nothing. A runtime started this way stops gracefully at exit
    (a reload or Ctrl-C)."""
    lexy: Runtime = app.extensions["lexyjobs"]

    @app.before_request
    def _start_on_first_request() -> None:
        if lexy.started or not request.environ.get("SERVER_SOFTWARE"):
            return
        if lexy.start(scheduler=scheduler):
            atexit.register(lexy.stop)
