"""The registry of worker processes (table ``workers``): who executes runs right now.

A worker process registers at start (``register``), its monitor thread moves ``heartbeat_at``
every LEXYJOBS_HEARTBEAT_INTERVAL (``heartbeat``: one UPDATE, in the same transaction as its
runs' heartbeats when it has any) and it deletes its row on a clean stop (``unregister``). A
process that dies leaves its row behind: the live workers delete rows whose heartbeat is older
than LEXYJOBS_STALE_AFTER (``prune_dead``, next to the rescue of stale runs, which uses the same
window), and ``live_workers`` never lists them even before that. A worker's current runs are not
stored: they are the runs ``running`` under its name (``runs.worker``), claimed-ahead ones
included. Clocks: every time here is the writing process's clock, like the runs' heartbeats."""
from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from lexyjobs.db import Database
from lexyjobs.models import Run, WorkerProcess
from lexyjobs.states import RunStatus

WORKERS = cast(Table, WorkerProcess.__table__)


@dataclass(frozen=True)
class Registration:
    """What a worker process says about itself in the registry."""

    name: str
    host: str
    pid: int
    version: str
    threads: int
    started_at: datetime
    queues: tuple[str, ...] | None = None  # the queues it serves, e.g. ("default", "ai:2"); None: every queue

    @classmethod
    def of_this_process(cls, name: str, *, threads: int, started_at: datetime,
                        queues: tuple[str, ...] | None = None) -> Registration:
        from lexyjobs import __version__  # here, not at import: the package imports its modules first

        return cls(name, socket.gethostname(), os.getpid(), __version__, threads, started_at, queues)


@dataclass(frozen=True)
class CurrentRun:
    """A run a worker is running now."""

    id: int
    job: str
    started_at: datetime | None
    progress: float | None


@dataclass(frozen=True, kw_only=True)
class WorkerInfo(Registration):
    """A live worker process: its registration, last heartbeat and current runs (oldest first)."""

    heartbeat_at: datetime
    runs: tuple[CurrentRun, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API and the CLI (times in ISO 8601)."""
        return {"name": self.name, "host": self.host, "pid": self.pid, "version": self.version,
                "threads": self.threads, "queues": list(self.queues) if self.queues is not None else None,
                "started_at": self.started_at.isoformat(),
                "heartbeat_at": self.heartbeat_at.isoformat(),
                "runs": [{"id": run.id, "job": run.job, "progress": run.progress,
                          "started_at": run.started_at.isoformat() if run.started_at else None} for run in self.runs]}


def register(session: Session, me: Registration, *, now: datetime) -> None:
    """Write ``me``'s row with a fresh heartbeat, replacing any row of the same name (a restarted
    container is the same host with the same pid). Call in a write transaction."""
    session.execute(delete(WORKERS).where(WORKERS.c.name == me.name))
    values = asdict(me)
    values["queues"] = list(me.queues) if me.queues is not None else None
    session.execute(insert(WORKERS).values(**values, heartbeat_at=now))


def heartbeat(session: Session, me: Registration, *, now: datetime) -> bool:
    """Move ``me``'s heartbeat to ``now`` (one UPDATE by primary key). If the row is gone — a
    live peer pruned it while this process stalled for longer than LEXYJOBS_STALE_AFTER — it is
    written again and False is returned."""
    result = session.execute(update(WORKERS).where(WORKERS.c.name == me.name).values(heartbeat_at=now))
    if cast(CursorResult[Any], result).rowcount == 1:
        return True
    register(session, me, now=now)
    return False


def mark_stopping(session: Session, name: str, *, now: datetime) -> None:
    """Record that worker ``name`` stopped claiming (it is shutting down), so the runs waiting
    for it can say so until its row goes."""
    session.execute(update(WORKERS).where(WORKERS.c.name == name).values(stopping_at=now))


def unregister(session: Session, name: str) -> None:
    """Delete the row of worker ``name`` (its clean stop)."""
    session.execute(delete(WORKERS).where(WORKERS.c.name == name))


def prune_dead(db: Database, *, now: datetime, stale_after: float) -> list[str]:
    """Delete the rows of workers whose heartbeat is older than ``stale_after`` seconds (their
    process died without stopping) and return their names. A read finds them first, so the
    usual case — nobody died — takes no write lock (SQLite has one for the whole file). The
    DELETE repeats the condition: a worker that heartbeat in between stays."""
    cutoff = now - timedelta(seconds=stale_after)
    with db.read() as session:
        dead = list(session.scalars(select(WORKERS.c.name).where(WORKERS.c.heartbeat_at < cutoff)))
    if not dead:
        return []
    with db.write() as session:
        gone = session.scalars(delete(WORKERS).where(WORKERS.c.name.in_(dead), WORKERS.c.heartbeat_at < cutoff)
                               .returning(WORKERS.c.name))
        return sorted(gone)


def live_workers(session: Session, *, now: datetime, stale_after: float) -> list[WorkerInfo]:
    """Workers whose heartbeat is at most ``stale_after`` seconds old, by host then start, each
    with its running runs. Two queries: the registry (a few rows) and the running runs of those
    workers (a range of ``ix_runs_status_id``: only running runs are read)."""
    rows = session.execute(select(WORKERS).where(WORKERS.c.heartbeat_at >= now - timedelta(seconds=stale_after))
                           .order_by(WORKERS.c.host, WORKERS.c.started_at, WORKERS.c.name)).all()
    if not rows:
        return []
    running: dict[str, list[CurrentRun]] = {row.name: [] for row in rows}
    for run in session.execute(select(Run.id, Run.job_name, Run.worker, Run.started_at, Run.progress)
                               .where(Run.status == RunStatus.RUNNING.value, Run.worker.in_(list(running)))
                               .order_by(Run.id)):
        running[run.worker].append(CurrentRun(run.id, run.job_name, run.started_at, run.progress))
    return [WorkerInfo(row.name, row.host, row.pid, row.version, row.threads, row.started_at,
                       tuple(row.queues) if row.queues is not None else None, heartbeat_at=row.heartbeat_at,
                       runs=tuple(running[row.name])) for row in rows]
