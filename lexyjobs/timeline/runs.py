"""The runs a timeline window shows, read without touching the rest of the history.

A window of a week over a million runs holds a quarter of them, so nothing here reads every run
in the window: per job it takes the newest ``per_job`` runs created in the window (one index
range on ``ix_runs_job_created`` each, in UNION ALL batches) and, for the jobs that have more, a
count of the rest from the same index. Runs created before the window still show when they end
inside it or have not ended: the finished ones of the jobs not already full (``ix_runs_job_outcome``,
a short range per job and status) and the queued or running ones (``ix_runs_status_id``, bounded
by the first id created in the window: ids grow with creation)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import func, select, union_all
from sqlalchemy.orm import Session

from lexyjobs.models import Run
from lexyjobs.states import TERMINAL, RunStatus

BATCH = 200  # jobs per UNION ALL (SQLite allows 500 terms in one compound SELECT)
ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
FINISHED = tuple(sorted(s.value for s in TERMINAL))
OLD_ACTIVE_LIMIT = 500  # queued/running runs created before the window (a stuck backlog stays cheap)
COLUMNS = (Run.id, Run.job_name, Run.status, Run.trigger, Run.attempt, Run.created_at, Run.scheduled_for,
           Run.started_at, Run.finished_at)


@dataclass(frozen=True)
class Span:
    """One run as the timeline draws it."""

    id: int
    job: str
    status: str
    trigger: str
    attempt: int
    created: datetime
    scheduled: datetime
    started: datetime | None
    finished: datetime | None

    @property
    def due(self) -> datetime:
        """When it began to wait: its due time, or its creation when it was made after that."""
        return max(self.created, self.scheduled)


@dataclass
class JobRuns:
    """A row's runs: ``spans`` (newest first) and how many more the window holds."""

    spans: list[Span] = field(default_factory=list)
    more: int = 0


def window_runs(session: Session, names: Sequence[str], *, start: datetime, end: datetime,
                per_job: int) -> dict[str, JobRuns]:
    """The runs of each job in ``names`` that show between ``start`` and ``end``: at most
    ``per_job`` created in the window (the newest), plus those created before it that end in it
    or have not ended. ``more`` counts the window's runs left out. Reads only the window's rows."""
    found = {name: JobRuns() for name in names}
    seen: set[int] = set()
    full: list[str] = []
    for first in range(0, len(names), BATCH):
        for row in session.execute(_newest_created(names[first:first + BATCH], start, end, per_job + 1)):
            _add(found, seen, row)
    for name, runs in found.items():
        if len(runs.spans) > per_job:
            runs.spans.sort(key=lambda s: (s.created, s.id), reverse=True)
            del runs.spans[per_job:]
            full.append(name)
    if full:
        counted = session.execute(select(Run.job_name, func.count()).where(
            Run.job_name.in_(full), Run.created_at >= start, Run.created_at <= end).group_by(Run.job_name))
        for name, count in counted:
            found[name].more = max(0, count - len(found[name].spans))
    open_jobs = [name for name in names if name not in set(full)]
    if open_jobs:
        for row in session.execute(_ended_inside(open_jobs, start, per_job)):
            _add(found, seen, row)
    for row in session.execute(_still_active(session, start)):
        if row.job_name in found:
            _add(found, seen, row)
    for runs in found.values():
        runs.spans.sort(key=lambda s: (s.created, s.id), reverse=True)
    return found


def _add(found: dict[str, JobRuns], seen: set[int], row: Any) -> None:
    if row.id in seen:
        return
    seen.add(row.id)
    found[row.job_name].spans.append(Span(row.id, row.job_name, row.status, row.trigger, row.attempt,
                                          row.created_at, row.scheduled_for, row.started_at, row.finished_at))


def _newest_created(names: Sequence[str], start: datetime, end: datetime, limit: int) -> Any:
    """Per job, its newest ``limit`` runs created in [start, end]: one short index range each."""
    parts = [select(*COLUMNS).where(Run.job_name == name, Run.created_at >= start, Run.created_at <= end)
             .order_by(Run.created_at.desc()).limit(limit).subquery() for name in names]
    selects = [select(*part.c) for part in parts]
    return selects[0] if len(selects) == 1 else union_all(*selects)


def _ended_inside(names: Sequence[str], start: datetime, per_job: int) -> Any:
    """Runs of ``names`` created before ``start`` that finished after it (these jobs have few
    runs in the window, so each (job, status) range of ``ix_runs_job_outcome`` is short)."""
    return (select(*COLUMNS).where(Run.job_name.in_(names), Run.status.in_(FINISHED), Run.finished_at >= start,
                                   Run.created_at < start)
            .limit(per_job * len(names)))


def _still_active(session: Session, start: datetime) -> Any:
    """Queued and running runs created before ``start`` (the oldest first, at most OLD_ACTIVE_LIMIT)."""
    first_inside = session.scalar(select(Run.id).where(Run.created_at >= start).order_by(Run.created_at).limit(1))
    query = select(*COLUMNS).where(Run.status.in_(ACTIVE), Run.created_at < start)
    if first_inside is not None:
        query = query.where(Run.id < first_inside)
    return query.order_by(Run.id).limit(OLD_ACTIVE_LIMIT)
