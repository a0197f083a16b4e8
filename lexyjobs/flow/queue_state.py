"""Named queues' state and figures: pausing and resuming a queue (table ``queues``), and what the
Queues page, ``GET /api/queues`` and ``lexyjobs queues`` show of each queue.

A pause is a row with ``paused = true``; every claim reads the table (``claiming``), so every
process obeys it at its next claim cycle. A pause holds back only the claim: schedules still
fire and enqueues still queue, the runs wait. Resuming wakes the workers (``Database.enqueued``:
NOTIFY on Postgres; on SQLite the commit itself wakes other processes' ``data_version`` watch).

The figures stay cheap at millions of runs: queued and running runs are read through their
partial indexes only, and throughput through a bounded range of ``ix_runs_status_finished_times``
(the last ``THROUGHPUT_WINDOW``)."""
from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from lexyjobs.flow.spec import DEFAULT_QUEUE
from lexyjobs.models import Job, QueueState, WorkerProcess
from lexyjobs.states import RUNS, RunStatus
from lexyjobs.store import status_is

QUEUES = cast(Table, QueueState.__table__)
WORKERS = cast(Table, WorkerProcess.__table__)
THROUGHPUT_WINDOW = timedelta(minutes=5)  # finished runs per minute are averaged over this
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED)


@dataclass
class QueueInfo:
    """One queue as the Queues page and the API show it."""

    name: str
    paused: bool = False
    paused_at: datetime | None = None
    paused_by: str | None = None
    queued: int = 0                      # queued runs, due now or later
    due: int = 0                         # of them, due now
    oldest_due: datetime | None = None   # the longest-waiting due run's due time
    running: int = 0
    finished_recently: int = 0           # runs finished within THROUGHPUT_WINDOW
    jobs: int = 0                        # job definitions that put their runs here
    workers: list[tuple[str, int | None]] = field(default_factory=list)  # live processes serving it, each cap

    def oldest_wait(self, now: datetime) -> float | None:
        """Seconds the longest-waiting due run has waited (None: nothing due)."""
        return None if self.oldest_due is None else max(0.0, round((now - self.oldest_due).total_seconds(), 3))

    @property
    def per_minute(self) -> float:
        return round(self.finished_recently / (THROUGHPUT_WINDOW.total_seconds() / 60), 2)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        """JSON data for the API and the CLI."""
        return {"name": self.name, "paused": self.paused,
                "paused_at": self.paused_at.isoformat() if self.paused_at else None, "paused_by": self.paused_by,
                "queued": self.queued, "due": self.due, "oldest_wait_seconds": self.oldest_wait(now),
                "running": self.running, "finished_per_minute": self.per_minute, "jobs": self.jobs,
                "workers": [{"name": name, "cap": cap} for name, cap in self.workers]}


def set_paused(session: Session, name: str, paused: bool, *, by: str, now: datetime) -> bool:
    """Pause or resume queue ``name``: a pause records when and by whom, a resume clears both.
    Returns whether the state changed (pausing a paused queue keeps its first pause's time).
    Two operators at once: the row is created tolerating the other's insert, then locked, so the
    second sees the first's change (and returns False) instead of failing."""
    locked = select(QUEUES.c.paused).where(QUEUES.c.name == name).with_for_update()
    current = session.execute(locked).first()
    if current is None:
        dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(dialect_insert(QUEUES).values(name=name, paused=False).on_conflict_do_nothing())
        current = session.execute(locked).one()
    if bool(current.paused) == paused:
        return False
    session.execute(update(QUEUES).where(QUEUES.c.name == name).values(
        paused=paused, paused_at=now if paused else None, paused_by=by if paused else None))
    return True


def known_queues(session: Session, *, now: datetime, stale_after: float) -> list[str]:
    """Every queue lexyjobs knows of: ``default``, and those of job definitions, of queued or
    running runs (or runs finished within THROUGHPUT_WINDOW), of the ``queues`` table and of live
    workers' ``LEXYJOBS_QUEUES``. Sorted, ``default`` first."""
    return [info.name for info in overview(session, now=now, stale_after=stale_after)]


def overview(session: Session, *, now: datetime, stale_after: float) -> list[QueueInfo]:
    """Each known queue with its pause, depth, oldest wait, running runs, throughput and the live
    processes serving it; ``default`` first, then by name. Six small queries, none of which reads
    finished runs beyond the throughput window."""
    found: dict[str, QueueInfo] = defaultdict(lambda: QueueInfo(""))

    def info(name: str) -> QueueInfo:
        item = found[name]
        item.name = name
        return item

    info(DEFAULT_QUEUE)  # always known: where every job's runs go unless it names another
    for spec in session.scalars(select(Job.spec).where(Job.archived.is_(False))):
        info(_queue_of(spec)).jobs += 1
    for row in session.execute(select(QUEUES)):
        item = info(row.name)
        item.paused, item.paused_at, item.paused_by = bool(row.paused), row.paused_at, row.paused_by
    for name, queued, due, oldest in session.execute(_QUEUED, {"now": now}):
        item = info(name)
        item.queued, item.due, item.oldest_due = queued, int(due or 0), oldest
    for name, running in session.execute(_RUNNING):
        info(name).running = running
    for name, finished in session.execute(_finished_query(), {"since": now - THROUGHPUT_WINDOW}):
        info(name).finished_recently += finished
    live = session.execute(select(WORKERS.c.name, WORKERS.c.queues)
                           .where(WORKERS.c.heartbeat_at >= now - timedelta(seconds=stale_after))
                           .order_by(WORKERS.c.name)).all()
    for worker, served in live:  # a worker serving every queue is listed under each known queue, below
        for name, cap in _entries(served or []):
            info(name).workers.append((worker, cap))
    everywhere = [worker for worker, served in live if served is None]
    for item in found.values():
        item.workers = sorted(item.workers + [(worker, None) for worker in everywhere])
    return sorted(found.values(), key=lambda q: (q.name != DEFAULT_QUEUE, q.name))


def _queue_of(spec: Any) -> str:
    queue = spec.get("queue") if isinstance(spec, dict) else None
    return queue if isinstance(queue, str) and queue else DEFAULT_QUEUE


def _entries(served: list[Any]) -> list[tuple[str, int | None]]:
    """``["default", "ai:2"]`` (workers.queues) as (name, cap) pairs."""
    out: list[tuple[str, int | None]] = []
    for entry in served:
        name, _, cap = str(entry).partition(":")
        out.append((name, int(cap) if cap.isdigit() else None))
    return out


# Queued runs per queue (read through the partial index of queued runs): how many, how many due,
# and the oldest due time. Running runs per queue (through the partial index of running runs).
_DUE = RUNS.c.scheduled_for <= bindparam("now")
_QUEUED = (select(RUNS.c.queue, func.count(), func.sum(case((_DUE, 1), else_=0)),
                  func.min(case((_DUE, RUNS.c.scheduled_for), else_=None)))
           .where(status_is(RunStatus.QUEUED)).group_by(RUNS.c.queue))
_RUNNING = select(RUNS.c.queue, func.count()).where(status_is(RunStatus.RUNNING)).group_by(RUNS.c.queue)


@functools.cache
def _finished_query() -> Any:
    """Runs finished at or after ``:since`` per queue: one range per finished status on
    ix_runs_status_finished_times (a GROUP BY over a finished_at range alone would make SQLite scan
    the status index over every run)."""
    return union_all(*(select(RUNS.c.queue, func.count()).where(status_is(status), RUNS.c.finished_at >= bindparam("since"))
                       .group_by(RUNS.c.queue) for status in FINISHED))
