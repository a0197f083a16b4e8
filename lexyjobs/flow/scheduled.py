"""The Scheduled view: queued runs due later (delayed by ``run_at`` or waiting out a retry
backoff), soonest first.

Cheap at millions of runs: ``ix_runs_queue`` holds queued runs only, ordered by (priority desc,
scheduled_for, id). Priorities are 0–10, so the soonest ``n`` are the soonest of eleven index
ranges ``priority = p AND scheduled_for > now``, each read in order and stopped after ``n``
rows; the database merges eleven short lists instead of sorting every queued run."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, union_all
from sqlalchemy.orm import Session

from lexyjobs.models import Run
from lexyjobs.queries import RunFilter
from lexyjobs.states import RunStatus
from lexyjobs.store import status_is

PRIORITIES = range(0, 11)  # runs.run_row refuses any other priority
MAX_OFFSET = 10_000  # deeper pages of the view would read too many index entries per priority


def _due_later(where: RunFilter, now: datetime, priority: int) -> list[Any]:
    return [status_is(RunStatus.QUEUED), Run.priority == priority, Run.scheduled_for > now,
            *where.conditions(with_status=False)]


def scheduled_runs(session: Session, where: RunFilter, *, now: datetime, limit: int, offset: int = 0) -> list[Run]:
    """Queued runs due after ``now`` matching ``where`` (its statuses ignored), soonest first
    (then higher priority, then older), ``limit`` of them after ``offset`` (at most MAX_OFFSET)."""
    offset = min(offset, MAX_OFFSET)
    take = offset + limit
    parts = [select(Run.id, Run.scheduled_for, Run.priority).where(*_due_later(where, now, p))
             .order_by(Run.scheduled_for, Run.id).limit(take) for p in PRIORITIES]
    merged = union_all(*(part.subquery().select() for part in parts)).subquery()
    ids = list(session.scalars(select(merged.c.id).order_by(merged.c.scheduled_for, merged.c.priority.desc(),
                                                            merged.c.id).limit(limit).offset(offset)))
    if not ids:
        return []
    found = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def count_scheduled(session: Session, where: RunFilter, *, now: datetime) -> int:
    """How many queued runs matching ``where`` are due after ``now`` (the eleven index ranges)."""
    parts = [select(func.count()).select_from(Run).where(*_due_later(where, now, p)) for p in PRIORITIES]
    return sum(int(n or 0) for n in session.scalars(union_all(*parts)))
