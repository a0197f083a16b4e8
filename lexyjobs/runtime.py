"""The app's engine room: settings, database, job catalog and — once started — the worker pool
and the scheduler. ``create_app`` builds it without side effects; ``start`` is called by the
server/worker entry points only."""
from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from lexyjobs import schema
from lexyjobs.config import Settings
from lexyjobs.db import Database
from lexyjobs.registry import JobCatalog, SyncReport, sync_jobs
from lexyjobs.scheduler import Scheduler
from lexyjobs.worker import Worker

log = logging.getLogger(__name__)


class Lexyjobs:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous,
                           pool_size=max(10, settings.workers + settings.http_threads + 4))
        self.catalog = JobCatalog(self.db)
        self.worker: Worker | None = None
        self.scheduler: Scheduler | None = None
        self.sync_report: SyncReport | None = None

    def prepare(self, *, authoritative: bool = False) -> SyncReport:
        """Upgrade the schema and load code and file jobs into it. Only the server is
        ``authoritative``: it also archives jobs that disappeared from their source."""
        schema.upgrade(self.db)
        self.sync_report = sync_jobs(self.db, jobs_file=self.settings.jobs_file, imports=self.settings.imports,
                                     archive_missing=authoritative)
        return self.sync_report

    def start(self, *, worker: bool = True, scheduler: bool = True) -> None:
        """Prepare, then start the worker pool and/or the scheduler threads."""
        self.prepare(authoritative=scheduler)
        if worker:
            self.worker = Worker(self.db, self.settings, self.catalog)
            self.worker.start()
        if scheduler:
            self.scheduler = Scheduler(self.db)
            self.scheduler.start()

    def stop(self, grace: float | None = None) -> None:
        """Stop the scheduler, then stop the worker gracefully."""
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.worker is not None:
            self.worker.stop(grace)
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


def current() -> Lexyjobs:
    """The Lexyjobs of the current Flask app."""
    return current_app.extensions["lexyjobs"]
