"""Read-only queries behind the API and the panel: run search with filters, counts by status and
the queue and throughput statistics. (The engine's own SQL is in ``lexyjobs.store``.)"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, case, cast, func, or_, select
from sqlalchemy.orm import Session

from lexyjobs import run_counts, store
from lexyjobs.finished_hours import FinishedHours, Hours, Tally, add_up
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
    ignoring its status filter — the stat cards above a filtered list. All runs, or one job's,
    are read from the counters the transitions keep (lexyjobs.run_counts), whatever the history;
    other filters count the matching runs."""
    conditions = where.conditions(with_status=False) if where else []
    counts = {status.value: 0 for status in RunStatus}
    if where is None or dataclasses.replace(where, statuses=(), job=None) == RunFilter():
        counts.update(run_counts.totals(session, where.job if where else None))
    else:
        counts.update(session.execute(select(Run.status, func.count()).where(*conditions).group_by(Run.status)).all())
    return {"total": sum(counts.values()), **counts}


def matching(counts: dict[str, int], where: RunFilter) -> int:
    """How many runs match ``where``, from its ``status_counts`` (which drop only the status
    filter): a list page needs both, and counting the same runs twice is what costs."""
    return sum(counts.get(status, 0) for status in set(where.statuses)) if where.statuses else counts["total"]


def queue_stats(session: Session, *, now: datetime, postgres: bool, hours: FinishedHours) -> dict[str, Any]:
    """Queue depth now, and the last 24 hours' outcomes, failure rate and average times (of the
    runs that started; ``hours`` remembers the closed hours' tallies)."""
    due = session.execute(select(func.count(), func.min(Run.scheduled_for)).where(
        Run.status == RunStatus.QUEUED.value, Run.scheduled_for <= now)).one()
    running = session.scalar(select(func.count()).select_from(Run).where(Run.status == RunStatus.RUNNING.value))
    day = add_up(hours.since(session, now - timedelta(hours=24), now=now, postgres=postgres).values())
    started = sum(t.started for t in day.values())
    succeeded, failed = (day.get(status, Tally()).started for status in ("succeeded", "failed"))
    return {
        "queued_due": due[0], "oldest_queued_seconds": _age(now, due[1]), "running": running or 0,
        "last_24h": {
            "finished": started, "succeeded": succeeded, "failed": failed,
            "failure_rate": round(failed / (succeeded + failed), 4) if succeeded + failed else None,
            "avg_queue_seconds": round(sum(t.waited for t in day.values()) / started, 3) if started else None,
            "avg_processing_seconds": round(sum(t.busy for t in day.values()) / started, 3) if started else None,
        },
    }


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, round((now - then).total_seconds(), 3))


def throughput(session: Session, *, since: datetime, hourly: bool, postgres: bool, hours: FinishedHours,
               now: datetime) -> dict[str, dict[str, int]]:
    """Finished runs per hour (``hourly``) or per day since ``since``, by outcome: ``{"2025-03-01T14":
    {"succeeded": 12, "failed": 1, ...}}`` with UTC bucket keys (``YYYY-MM-DD`` for days), from the
    hourly tallies ``hours`` remembers."""
    return buckets(hours.since(session, since, now=now, postgres=postgres), hourly=hourly)


def buckets(tallies: Hours, *, hourly: bool) -> dict[str, dict[str, int]]:
    """``throughput``'s answer from hourly tallies already read (one read serves both charts)."""
    found: dict[str, dict[str, int]] = {}
    for hour, by_status in tallies.items():
        bucket = found.setdefault(hour.strftime("%Y-%m-%dT%H" if hourly else "%Y-%m-%d"), {})
        for status, tally in by_status.items():
            bucket[status] = bucket.get(status, 0) + tally.finished
    return found


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
    return _stamp(newest_run, newest_event, *running, *store.jobs_stamp(session))


def run_stamp(session: Session, run_id: int) -> str:
    """Changes whenever what a run's detail page shows changes (status, progress, log…)."""
    run = session.execute(select(Run.status, Run.attempt, Run.progress, Run.progress_message, Run.cancel_requested,
                                 Run.finished_at).where(Run.id == run_id)).first()
    log_size = session.scalar(select(RunLog.size).where(RunLog.run_id == run_id))
    return _stamp(*(run or ("missing",)), log_size)


def _stamp(*parts: Any) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


# ---------------------------------------------------------------- one run (the run detail page)

def run_status(session: Session, run_id: int) -> str | None:
    """The run's status alone (None: no such run) — what the log tail's poller needs each second."""
    return session.scalar(select(Run.status).where(Run.id == run_id))


def log_size(session: Session, run_id: int) -> int:
    """Characters ever written to the run's log (0 without a log): the offset the next text gets.
    Reading it does not load the log itself, so an idle tail poll stays cheap."""
    return session.scalar(select(RunLog.size).where(RunLog.run_id == run_id)) or 0


def retry_family(session: Session, run_id: int, *, limit: int = 50) -> list[Any]:
    """The runs linked to ``run_id`` by retries by hand: the ``retry_of`` chain up to the first run
    and every retry below that one, as rows of (id, status, attempt, max_attempts, created_at),
    oldest first. At most ``limit`` runs (``run_id`` always among them)."""
    root, ids = run_id, {run_id}
    while len(ids) < limit:
        parent = session.scalar(select(Run.retry_of).where(Run.id == root))
        if parent is None or parent in ids:
            break
        root = parent
        ids.add(root)
    tree, frontier = {root}, [root]
    while frontier and len(tree | ids) < limit:
        children = session.scalars(select(Run.id).where(Run.retry_of.in_(frontier)).order_by(Run.id)
                                   .limit(limit)).all()
        frontier = [child for child in children if child not in tree][:limit - len(tree | ids)]
        tree.update(frontier)
    ids |= tree
    query = (select(Run.id, Run.status, Run.attempt, Run.max_attempts, Run.created_at)
             .where(Run.id.in_(ids)).order_by(Run.id))
    return list(session.execute(query).all())


# ---------------------------------------------------------------- runs list: bulk actions, export, filter choices

def run_ids(session: Session, where: RunFilter, *, limit: int) -> list[int]:
    """Ids of at most ``limit`` runs matching ``where``, newest first (the targets of a bulk action)."""
    return list(session.scalars(select(Run.id).where(*where.conditions()).order_by(Run.id.desc()).limit(limit)))


def runs_by_ids(session: Session, ids: list[int]) -> list[Run]:
    """The runs with these ids (missing ones left out), in ascending id order."""
    return list(session.scalars(select(Run).where(Run.id.in_(ids)).order_by(Run.id))) if ids else []


EXPORT_COLUMNS = (Run.id, Run.job_name, Run.status, Run.trigger, Run.created_by, Run.created_at, Run.scheduled_for,
                  Run.started_at, Run.finished_at, Run.attempt, Run.max_attempts, Run.error)


def export_rows(session: Session, where: RunFilter, *, before: int | None, limit: int) -> list[Any]:
    """Matching runs with an id below ``before`` (None: from the newest), newest first, as rows of
    ``EXPORT_COLUMNS`` (no ORM objects, no params: an export of a million runs stays quick).
    Keyset paging, so reading deep into a large export is as cheap as its first page."""
    conditions = where.conditions() + ([Run.id < before] if before is not None else [])
    return list(session.execute(select(*EXPORT_COLUMNS).where(*conditions).order_by(Run.id.desc()).limit(limit)))


def job_choices(session: Session) -> tuple[list[str], list[str]]:
    """Job names and categories (sorted, archived jobs included): the options of a filter form."""
    rows = session.execute(select(Job.name, Job.category)).all()
    return sorted(name for name, _ in rows), sorted({category for _, category in rows})


# ---------------------------------------------------------------- one job (the job detail page)

def recent_durations(session: Session, job: str, *, limit: int = 30) -> list[Any]:
    """The job's last ``limit`` runs that started and finished (succeeded, failed or canceled
    after starting), oldest first, as rows of (id, status, started_at, finished_at). Walks the
    job's runs newest first on ``ix_runs_job_created``, so it stays cheap at millions of runs."""
    query = (select(Run.id, Run.status, Run.started_at, Run.finished_at)
             .where(Run.job_name == job, Run.started_at.is_not(None), Run.finished_at.is_not(None),
                    Run.status.in_((RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELED.value)))
             .order_by(Run.created_at.desc(), Run.id.desc()).limit(limit))
    return list(reversed(session.execute(query).all()))


# ---------------------------------------------------------------- pipelines (the pipelines page)

_PIPELINE_COLUMNS = (Run.id, Run.pipeline_id, Run.job_name, Run.status, Run.trigger, Run.attempt, Run.max_attempts,
                     Run.created_at, Run.started_at, Run.finished_at, Run.progress, Run.error)


@dataclass(frozen=True)
class PipelineRun:
    """One pipeline: its runs as rows of ``_PIPELINE_COLUMNS``, oldest first (the first is its root)."""

    pipeline_id: str
    runs: tuple[Any, ...]

    @property
    def root(self) -> Any:
        return self.runs[0]

    def latest(self) -> dict[str, Any]:
        """The newest run of each step (a retried step has several), by job name."""
        return {row.job_name: row for row in self.runs}

    def step_counts(self) -> dict[str, int]:
        """How many steps are in each status, going by each step's newest run."""
        counts: dict[str, int] = {}
        for row in self.latest().values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts


PIPELINE_WALK = 500  # pipeline runs read per step, newest first


def recent_pipelines(session: Session, *, limit: int = 20) -> list[PipelineRun]:
    """The ``limit`` pipelines started last (by their root run's id), newest first, with their runs.

    Walks the runs that belong to a pipeline newest first, PIPELINE_WALK at a time, looking up
    the root id (smallest id, on ``ix_runs_pipeline``) of each pipeline met; it stops once
    ``limit`` pipelines are known to start at or after the walk's position — a pipeline not met
    yet has all its runs, its root too, below it. So it reads the latest few hundred pipeline
    runs, not all of them."""
    if limit <= 0:
        return []
    roots: dict[str, int] = {}  # pipeline id -> its root run's id
    before: int | None = None
    while True:
        walk = (select(Run.id, Run.pipeline_id).where(Run.pipeline_id.is_not(None)).order_by(Run.id.desc())
                .limit(PIPELINE_WALK))
        walked = session.execute(walk if before is None else walk.where(Run.id < before)).all()
        met = {pipeline_id for _, pipeline_id in walked if pipeline_id is not None and pipeline_id not in roots}
        if met:
            roots.update({pipeline_id: root for pipeline_id, root in session.execute(
                select(Run.pipeline_id, func.min(Run.id)).where(Run.pipeline_id.in_(met)).group_by(Run.pipeline_id))
                if pipeline_id is not None})
        newest = sorted(roots.values(), reverse=True)[:limit]
        if len(walked) < PIPELINE_WALK or (len(newest) == limit and newest[-1] >= walked[-1].id):
            break
        before = walked[-1].id
    ids = [pipeline_id for pipeline_id, _ in sorted(roots.items(), key=lambda item: item[1], reverse=True)[:limit]]
    if not ids:
        return []
    rows = session.execute(select(*_PIPELINE_COLUMNS).where(Run.pipeline_id.in_(ids)).order_by(Run.id)).all()
    grouped: dict[str, list[Any]] = {pipeline_id: [] for pipeline_id in ids}
    for row in rows:
        grouped[row.pipeline_id].append(row)
    return [PipelineRun(pipeline_id, tuple(grouped[pipeline_id])) for pipeline_id in ids]


def pipeline_run(session: Session, pipeline_id: str) -> PipelineRun | None:
    """One pipeline with its runs; None when no run carries ``pipeline_id``."""
    rows = session.execute(select(*_PIPELINE_COLUMNS).where(Run.pipeline_id == pipeline_id).order_by(Run.id)).all()
    return PipelineRun(pipeline_id, tuple(rows)) if rows else None


def pipeline_stamp(session: Session, pipeline_id: str) -> str:
    """Changes whenever a run of the pipeline is added or changes status, attempt or progress,
    and when a job changes (its ``depends_on`` shapes the drawing)."""
    rows = session.execute(select(Run.id, Run.status, Run.attempt, Run.progress)
                           .where(Run.pipeline_id == pipeline_id).order_by(Run.id)).all()
    jobs = session.execute(select(func.count(), func.sum(Job.version))).one()
    return _stamp(*(tuple(row) for row in rows), *jobs)

