"""Read-only queries behind the API and the panel: run search with filters, counts by status and
the queue and throughput statistics. (The engine's own SQL is in ``lexyjobs.store``.)"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, case, cast, func, or_, select
from sqlalchemy.orm import Session

from lexyjobs.models import Job, Run, RunEvent, RunLog
from lexyjobs.states import RunStatus


@dataclass(frozen=True)
class RunFilter:
    """Which runs to show. Every field is optional; ``statuses`` and ``triggers`` match any of theirs."""

    statuses: tuple[str, ...] = ()
    job: str | None = None
    category: str | None = None
    triggers: tuple[str, ...] = ()
    since: datetime | None = None   # created at or after
    until: datetime | None = None   # created before
    text: str | None = None         # in params or error

    def conditions(self, *, with_status: bool = True) -> list[Any]:
        found: list[Any] = []
        if with_status and self.statuses:
            found.append(Run.status.in_(self.statuses))
        if self.job:
            found.append(Run.job_name == self.job)
        if self.category:
            found.append(Run.job_name.in_(select(Job.name).where(Job.category == self.category)))
        if self.triggers:
            found.append(Run.trigger.in_(self.triggers))
        if self.since:
            found.append(Run.created_at >= self.since)
        if self.until:
            found.append(Run.created_at < self.until)
        if self.text:
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            found.append(or_(Run.error.ilike(pattern, escape="\\"),
                             cast(Run.params, String).ilike(pattern, escape="\\")))
        return found


def search_runs(session: Session, where: RunFilter, *, limit: int = 50, offset: int = 0) -> list[Run]:
    """Matching runs, newest first."""
    query = select(Run).where(*where.conditions()).order_by(Run.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


def count_runs(session: Session, where: RunFilter) -> int:
    return session.scalar(select(func.count()).select_from(Run).where(*where.conditions())) or 0


def retries_of(session: Session, run_id: int) -> list[int]:
    """Ids of the runs started by retrying ``run_id``."""
    return list(session.scalars(select(Run.id).where(Run.retry_of == run_id).order_by(Run.id)))


def status_counts(session: Session, where: RunFilter | None = None) -> dict[str, int]:
    """``total`` and one count per status (zeros included) of the runs matching ``where``,
    ignoring its status filter — the stat cards above a filtered list."""
    conditions = where.conditions(with_status=False) if where else []
    rows = session.execute(select(Run.status, func.count()).where(*conditions).group_by(Run.status)).all()
    counts = {status.value: 0 for status in RunStatus}
    counts.update({status: n for status, n in rows})
    return {"total": sum(counts.values()), **counts}


def _seconds(start: Any, end: Any, postgres: bool) -> Any:
    if postgres:
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def queue_stats(session: Session, *, now: datetime, postgres: bool) -> dict[str, Any]:
    """Queue depth now, and the last 24 hours' outcomes, failure rate and average times."""
    due = session.execute(select(func.count(), func.min(Run.scheduled_for)).where(
        Run.status == RunStatus.QUEUED.value, Run.scheduled_for <= now)).one()
    running = session.scalar(select(func.count()).select_from(Run).where(Run.status == RunStatus.RUNNING.value))
    day_ago = now - timedelta(hours=24)
    finished = session.execute(
        select(Run.status, func.count(), func.avg(_seconds(Run.scheduled_for, Run.started_at, postgres)),
               func.avg(_seconds(Run.started_at, Run.finished_at, postgres)))
        .where(Run.finished_at >= day_ago, Run.started_at.is_not(None)).group_by(Run.status)).all()
    by_status = {status: (n, wait, busy) for status, n, wait, busy in finished}
    done = sum(n for n, _, _ in by_status.values())
    succeeded, failed = by_status.get("succeeded", (0,))[0], by_status.get("failed", (0,))[0]
    return {
        "queued_due": due[0], "oldest_queued_seconds": _age(now, due[1]), "running": running or 0,
        "last_24h": {
            "finished": done, "succeeded": succeeded, "failed": failed,
            "failure_rate": round(failed / (succeeded + failed), 4) if succeeded + failed else None,
            "avg_queue_seconds": _weighted(by_status, 1), "avg_processing_seconds": _weighted(by_status, 2),
        },
    }


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, round((now - then).total_seconds(), 3))


def _weighted(by_status: dict[str, tuple[int, Any, Any]], column: int) -> float | None:
    pairs = [(row[0], float(row[column])) for row in by_status.values() if row[column] is not None]
    total = sum(n for n, _ in pairs)
    return round(sum(n * v for n, v in pairs) / total, 3) if total else None


# ---------------------------------------------------------------- change stamps (polling)

def activity_stamp(session: Session) -> str:
    """Changes whenever a run is created, changes status, moves its progress or is asked to
    cancel, and when a job changes: what a polled list shows. Primary-key maxima plus an
    aggregate over the (few) running runs, so it stays cheap at millions of runs."""
    newest_run = session.scalar(select(func.max(Run.id)))
    newest_event = session.scalar(select(func.max(RunEvent.id)))
    running = session.execute(select(
        func.count(), func.sum(func.coalesce(Run.progress, 0)), func.sum(func.length(func.coalesce(Run.progress_message, ""))),
        func.sum(case((Run.cancel_requested, 1), else_=0))).where(Run.status == "running")).one()
    jobs = session.execute(select(func.count(), func.max(Job.updated_at), func.sum(Job.version))).one()
    return _stamp(newest_run, newest_event, *running, *jobs)


def run_stamp(session: Session, run_id: int) -> str:
    """Changes whenever what a run's detail page shows changes (status, progress, log…)."""
    run = session.execute(select(Run.status, Run.attempt, Run.progress, Run.progress_message, Run.cancel_requested,
                                 Run.finished_at).where(Run.id == run_id)).first()
    log_size = session.scalar(select(RunLog.size).where(RunLog.run_id == run_id))
    return _stamp(*(run or ("missing",)), log_size)


def _stamp(*parts: Any) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()
