"""The run summary behind the health signals (``lexyjobs.health_signals.RecentRuns``), read for
every job of a page at once. (The outcome summary, ``store.health_inputs``, is in the store.)

``recent_runs(session, names, scheduled, now)`` takes five queries whatever the number of jobs,
read-only, without locks, each a bounded index range per job:

1. each job's latest ``SUCCESSES_READ`` successes: where they begin (the ``SUCCESSES_READ``-th
   latest, an index seek on ``ix_runs_job_outcome``), then the range of that index from there,
   with their durations computed by the database;
2. the running runs (few: at most the workers' threads; ``ix_runs_status_id``);
3. the runs created in the last hour, counted per job (a range of ``ix_runs_created``);
4. the latest ``SCHEDULED_READ`` scheduled runs of the jobs in ``scheduled``, looked for among
   their latest ``LATEST_RUNS_READ`` runs (a seek, then a short range of ``ix_runs_job_id``);
5. the first start of those among them that were retried (their ``run_events``), only when any was.


Why a late run still waits (``lexyjobs.flow.waiting``: four more small queries) is looked up by
``waiting_messages`` for the few runs that are late, once the signals found them."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import and_, func, select, true
from sqlalchemy.orm import Session

from lexyjobs.flow.waiting import waiting_for
from lexyjobs.health_signals import SCHEDULED_READ, SUCCESSES_READ, RecentRuns, ScheduledRun
from lexyjobs.models import Run, RunEvent, span
from lexyjobs.states import RUNS, RunStatus
from lexyjobs.store import JOBS

HOUR = timedelta(hours=1)
LATEST_RUNS_READ = 10  # a job's latest runs (any trigger) its latest scheduled runs are looked for in
SUCCEEDED, RUNNING, SKIPPED = RunStatus.SUCCEEDED.value, RunStatus.RUNNING.value, RunStatus.SKIPPED.value


def recent_runs(session: Session, names: Sequence[str], scheduled: Iterable[str], *, now: datetime) -> dict[str, RecentRuns]:
    """Per job in ``names``, its ``RecentRuns`` at ``now`` (scheduled runs only for the jobs in
    ``scheduled``: those with a schedule or a ``run_at``). Jobs without runs get an empty one."""
    if not names:
        return {}
    successes = _successes(session, names)
    running: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    for row in session.execute(select(RUNS.c.id, RUNS.c.job_name, RUNS.c.started_at)
                               .where(RUNS.c.status == RUNNING, RUNS.c.job_name.in_(names))
                               .order_by(RUNS.c.started_at, RUNS.c.id)):
        if row.started_at is not None:
            running[row.job_name].append((row.id, row.started_at))
    counts: dict[str, int] = dict(session.execute(select(RUNS.c.job_name, func.count())
                                  .where(RUNS.c.created_at > now - HOUR, RUNS.c.created_at <= now,
                                         RUNS.c.job_name.in_(names))
                                  .group_by(RUNS.c.job_name)).all())
    fired = _scheduled(session, [n for n in scheduled if n in set(names)])
    return {name: RecentRuns(successes=tuple(successes.get(name, ())), running=tuple(running.get(name, ())),
                             runs_last_hour=int(counts.get(name, 0)), scheduled=tuple(fired.get(name, ())))
            for name in names}


def waiting_messages(session: Session, run_ids: Sequence[int], *, now: datetime, stale_after: float) -> dict[int, str]:
    """Why each of the queued runs ``run_ids`` waits, in one sentence (``lexyjobs.flow.waiting``)."""
    if not run_ids:
        return {}
    found = list(session.scalars(select(Run).where(Run.id.in_(list(run_ids)))))
    return {run_id: why.message for run_id, why in waiting_for(session, found, now=now, stale_after=stale_after).items()}


def _latest(session: Session, names: Sequence[str], columns: Sequence[str], *, order: str, limit: int,
            status: str | None = None) -> Any:
    """A subquery of ``columns`` (and ``job_name``) of each job's latest ``limit`` runs by column
    ``order`` (of ``status`` when given; ties may add a few), read as one short index range per job. Postgres takes a LATERAL
    join; SQLite has none, so a MATERIALIZED CTE first finds where each job's range begins (left to
    itself, SQLite folds it into the join and evaluates it once per run of the job)."""
    def matching(runs: Any) -> list[Any]:
        return [runs.c.job_name == JOBS.c.name] + ([runs.c.status == status] if status else [])
    wanted = [RUNS.c[name] for name in ("job_name", *columns)]
    if session.get_bind().dialect.name == "postgresql":
        per_job = (select(*wanted).where(*matching(RUNS)).order_by(RUNS.c[order].desc()).limit(limit).lateral("per_job"))
        return select(per_job).select_from(JOBS).join(per_job, true()).where(JOBS.c.name.in_(names)).subquery("latest")
    nth, low = RUNS.alias("nth"), RUNS.alias("lowest")
    nth_value = (select(nth.c[order]).where(*matching(nth)).order_by(nth.c[order].desc())
                 .limit(1).offset(limit - 1).scalar_subquery())
    lowest = select(func.min(low.c[order])).where(*matching(low)).scalar_subquery()
    starts = (select(JOBS.c.name.label("name"), func.coalesce(nth_value, lowest).label("since"))
              .where(JOBS.c.name.in_(names)).cte("starts").prefix_with("MATERIALIZED"))
    return (select(*wanted).join_from(starts, RUNS, and_(RUNS.c.job_name == starts.c.name, RUNS.c[order] >= starts.c.since,
                                                      *([RUNS.c.status == status] if status else [])))
            .subquery("latest"))


def _successes(session: Session, names: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    latest = _latest(session, names, ("id", "started_at", "finished_at"), order="finished_at", limit=SUCCESSES_READ,
                     status=SUCCEEDED)
    took = span(latest.c.started_at, latest.c.finished_at)  # computed by the database: no timestamps to parse
    rows = session.execute(select(latest.c.job_name, latest.c.id, took).where(took.is_not(None))
                           .order_by(latest.c.job_name, latest.c.finished_at.desc(), latest.c.id.desc())).all()
    found: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for name, run_id, seconds in rows:
        if len(found[name]) < SUCCESSES_READ:
            seconds = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
            found[name].append((run_id, max(0.0, round(seconds, 3))))  # (SQLite's julianday: to the ms)
    return found


def _scheduled(session: Session, names: Sequence[str]) -> dict[str, list[ScheduledRun]]:
    """The latest ``SCHEDULED_READ`` scheduled runs among each job's latest ``LATEST_RUNS_READ``
    runs of any trigger (a bounded range, however few of its runs the scheduler made), newest first."""
    if not names:
        return {}
    latest = _latest(session, names, ("id", "status", "trigger", "created_at", "started_at", "attempt"), order="id",
                     limit=LATEST_RUNS_READ)
    rows = session.execute(
        select(latest.c.job_name, latest.c.id, latest.c.status, latest.c.created_at, latest.c.started_at,
               latest.c.attempt)
        .where(latest.c.trigger == "schedule", latest.c.status != SKIPPED)
        .order_by(latest.c.job_name, latest.c.id.desc())).all()
    kept: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        if len(kept[row.job_name]) < SCHEDULED_READ:
            kept[row.job_name].append(row)
    rows = [row for newest in kept.values() for row in newest]
    # the first start: started_at while the first attempt is the latest, else the first 'running' event
    retried = [row.id for row in rows if row.attempt > 1 or (row.attempt == 1 and row.status == "queued")]
    first_starts = dict(session.execute(
        select(RunEvent.run_id, func.min(RunEvent.at)).where(RunEvent.run_id.in_(retried), RunEvent.to_status == RUNNING)
        .group_by(RunEvent.run_id)).all()) if retried else {}
    found: dict[str, list[ScheduledRun]] = defaultdict(list)
    for row in rows:
        started = None if row.attempt == 0 else first_starts.get(row.id, row.started_at)
        found[row.job_name].append(ScheduledRun(row.id, row.created_at, started))
    return found


def creation_times(session: Session, name: str, *, since: datetime, until: datetime) -> list[datetime]:
    """When each run of job ``name`` created in ``(since, until]`` was created, oldest first
    (a range of ``ix_runs_job_created``): the alerter's look at whether ``too_often`` cleared."""
    return list(session.scalars(select(RUNS.c.created_at)
                                .where(RUNS.c.job_name == name, RUNS.c.created_at > since, RUNS.c.created_at <= until)
                                .order_by(RUNS.c.created_at)))
