"""All SQL lives here: named queries with their contracts (atomicity, ordering, locking).

Every function takes the caller's Session, so several of them can share one transaction (the
worker finishes a batch of runs and claims the next batch in a single commit). Status changes go
through ``lexyjobs.states``; this module never writes ``runs.status`` itself."""
from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence, cast

from sqlalchemy import Table, bindparam, case, delete, func, insert, literal_column, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session

from lexyjobs import prepared, run_counts
from lexyjobs.db import NOTIFIED, NOTIFY_CHANNEL
from lexyjobs.flow.spec import RateLimit, parse_rate
from lexyjobs.models import Job, NamedLimit, Run, RunEvent, RunLog
from lexyjobs.states import RUNS, RunStatus

JOBS = cast(Table, Job.__table__)

# ---------------------------------------------------------------- jobs


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def get_job(session: Session, name: str) -> Job | None:
    """The job row named ``name`` (archived ones included), or None."""
    return session.get(Job, name)


def list_jobs(session: Session, *, include_archived: bool = False) -> list[Job]:
    """Jobs ordered by category then name."""
    query = select(Job).order_by(Job.category, Job.name)
    if not include_archived:
        query = query.where(Job.archived.is_(False))
    return list(session.scalars(query))


def job_versions(session: Session, names: Iterable[str]) -> dict[str, int]:
    """Current ``version`` of each named job (bumped whenever its spec changes)."""
    return dict(session.execute(select(Job.name, Job.version).where(Job.name.in_(list(names)))).all())


def save_job(session: Session, row: dict[str, Any], *, now: datetime) -> Job:
    """Insert or update a job from a definition row (columns of ``Job`` without runtime state).

    ``enabled`` follows the definition when the job is new or when the definition's own
    ``enabled`` value changed; otherwise the stored value (a pause made at run time) is kept.
    A job defined in the database (panel, API) has no other source: an ``enabled`` its saved
    definition states is the truth, so unticking Enabled pauses it and ticking it resumes it; a
    definition that does not mention ``enabled`` leaves the job paused or not.
    ``version`` is bumped only when the spec changed, so workers can cache definitions."""
    job = session.get(Job, row["name"], with_for_update=True)
    if job is None:
        job = Job(**row, enabled=row["spec"].get("enabled", True), archived=False, version=1,
                  created_at=now, updated_at=now)
        session.add(job)
    else:
        if job.spec != row["spec"] or job.archived or job.source != row["source"]:
            if row["source"] == "db":
                job.enabled = row["spec"].get("enabled", job.enabled)
            elif job.spec.get("enabled", True) != row["spec"].get("enabled", True):
                job.enabled = row["spec"].get("enabled", True)
            for key, value in row.items():
                setattr(job, key, value)
            job.archived = False
            job.version += 1
            job.updated_at = now
    session.flush()
    return job


def archive_jobs_not_in(session: Session, source: str, keep: Iterable[str], *, now: datetime) -> list[str]:
    """Archive the jobs of ``source`` ("code" or "file") whose names are not in ``keep``; they stop
    being scheduled or runnable but keep their history. Returns the archived names."""
    keep = set(keep)
    names = [n for n in session.scalars(select(Job.name).where(Job.source == source, Job.archived.is_(False)))
             if n not in keep]
    if names:
        session.execute(update(Job).where(Job.name.in_(names))
                        .values(archived=True, version=Job.version + 1, updated_at=now))
    return names


def set_job_enabled(session: Session, name: str, enabled: bool, *, now: datetime) -> bool:
    """Pause (False) or resume (True) a job. Returns False when there is no such job."""
    result = session.execute(update(Job).where(Job.name == name).values(enabled=enabled, updated_at=now))
    _spec_follows(session, [name], enabled)
    return _rowcount(result) == 1


def set_category_enabled(session: Session, category: str, enabled: bool, *, now: datetime) -> tuple[list[str], list[str]]:
    """Pause (False) or resume (True) every job of ``category`` that is not archived. Returns the
    names of the category's jobs and, of them, those whose state changed."""
    names = list(session.scalars(select(Job.name).where(Job.category == category, Job.archived.is_(False))
                                 .order_by(Job.name)))
    changed = list(session.scalars(update(Job).where(Job.name.in_(names), Job.enabled.is_(not enabled))
                                   .values(enabled=enabled, updated_at=now).returning(Job.name))) if names else []
    _spec_follows(session, changed, enabled)
    return names, sorted(changed)


def _spec_follows(session: Session, names: list[str], enabled: bool) -> None:
    """A pause or resume of jobs defined in the database is written into their definition too
    (their only source), so the stored spec and the runtime state never disagree. File and code
    jobs keep their source's definition: the column alone holds the pause."""
    if not names:
        return
    for job in session.scalars(select(Job).where(Job.name.in_(names), Job.source == "db")):
        if job.spec.get("enabled", True) != enabled:
            job.spec = {**job.spec, "enabled": enabled}
            job.version += 1
    session.flush()


def delete_job(session: Session, name: str) -> bool:
    """Delete a job and (by cascade) its runs. Returns False when there is no such job."""
    return _rowcount(session.execute(delete(Job).where(Job.name == name))) == 1


# ---------------------------------------------------------------- enqueue


def named_limits(session: Session) -> dict[str, RateLimit]:
    """The ``[limits.<name>]`` rate limits, parsed, by name (a row that no longer parses is left out)."""
    out = {}
    for name, spec in session.execute(select(NamedLimit.name, NamedLimit.spec)):
        try:
            out[name] = parse_rate(spec.get("rate"))
        except ValueError:
            continue
    return out


def named_limit_specs(session: Session) -> dict[str, dict[str, Any]]:
    """The stored ``[limits.<name>]`` tables as written (``{"rate": "500/m"}``), by name."""
    return {name: dict(spec) for name, spec in session.execute(select(NamedLimit.name, NamedLimit.spec))}


def insert_runs(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert queued runs (one statement for the batch); returns their ids in ``rows`` order.
    The caller has validated the rows; the caller's ``Database.enqueued(session)`` wakes workers."""
    if not rows:
        return []
    unused = [column for column, default in FLOW_DEFAULTS.items()
              if all(row.get(column, default) == default for row in rows)]
    if unused:  # left to the column defaults: fewer parameters (an INSERT of 3,000 runs took 20 % longer)
        rows = [{k: v for k, v in row.items() if k not in unused} for row in rows]
    if len(rows) == 1:  # one call per run: a prepared statement (``lexyjobs.prepared``) for its columns
        row, postgres = {**_SCALAR_DEFAULTS, **rows[0]}, prepared.dialect_of(session).name == "postgresql"
        ids = [prepared.run(session, _insert_one(tuple(sorted(row)), postgres),
                            {f"r_{k}": v for k, v in row.items()})[0].id]
        if postgres:  # its NOTIFY went with it: Database.enqueued need not send one (a round trip)
            session.info[NOTIFIED] = True
    else:
        statement = insert(RUNS).returning(RUNS.c.id, sort_by_parameter_order=True)  # Core: no ORM bulk machinery
        ids = [row[0] for row in session.execute(statement, list(rows))]
    run_counts.add(session, ((row["job_name"], row["status"], 1) for row in rows))
    return ids


_SCALAR_DEFAULTS = {column.key: column.default.arg for column in RUNS.c  # type: ignore[attr-defined]
                    if column.default is not None and column.default.is_scalar}


@functools.lru_cache(maxsize=64)
def _insert_one(columns: tuple[str, ...], notify: bool) -> Any:
    """``INSERT INTO runs (columns…) VALUES (…) RETURNING id`` (the other columns' defaults
    included); with ``notify`` (Postgres) the NOTIFY that wakes other processes' workers too, as
    ``Database.enqueued`` sends it (at commit)."""
    statement = insert(RUNS).values({c: bindparam(f"r_{c}", type_=RUNS.c[c].type) for c in columns})
    if notify:
        return statement.returning(RUNS.c.id, func.pg_notify(NOTIFY_CHANNEL, func.current_schema()).label("notified"))
    return statement.returning(RUNS.c.id)


# The flow-control columns of a run (lexyjobs.flow) and their values when no rule applies.
FLOW_DEFAULTS: dict[str, Any] = {"queue": "default", "concurrency_key": None, "concurrency_limit": None,
                                 "rate_limits": None, "unique_key": None, "idempotency_key": None}


# ---------------------------------------------------------------- claim (lexyjobs.claiming)


def status_is(status: RunStatus) -> Any:
    """``runs.status = '<status>'`` with the value written into the SQL rather than bound: only
    then can SQLite's planner (and a generic Postgres plan) use the partial indexes on queued and
    running runs. With ``status = ?`` the claim sorted every queued run on every claim."""
    return RUNS.c.status == literal_column(f"'{status.value}'")


# ---------------------------------------------------------------- pipelines


def jobs_stamp(session: Session) -> tuple[Any, ...]:
    """Changes whenever a job is created, changed (its ``version``), paused, archived or deleted:
    (count, archived count, sum of versions, latest ``updated_at``), one pass over the jobs' rows
    (the archived count also catches an archive written without a new version)."""
    return tuple(prepared.run(session, _JOBS_STAMP, {})[0])


_JOBS_STAMP = select(func.count(), func.sum(case((JOBS.c.archived, 1), else_=0)), func.sum(JOBS.c.version),
                     func.max(JOBS.c.updated_at))


def active_jobs(session: Session) -> dict[str, Any]:
    """The jobs that are not archived, as (name, source, spec) rows by name: all an enqueue needs
    (the definitions, and which jobs have downstreams). Kept per database while ``jobs_stamp``
    stays the same: read and parsed on every enqueue, a hundred jobs' specs cost more than the
    rest of it. The rows are shared: not to be changed."""
    stamp, engine = jobs_stamp(session), session.get_bind()
    kept = _ACTIVE.get(engine)
    if kept is None or kept[0] != stamp:
        kept = _ACTIVE[engine] = (stamp, {row.name: row for row in prepared.run(session, _ACTIVE_JOBS, {})})
    return kept[1]


_ACTIVE_JOBS = select(JOBS.c.name, JOBS.c.source, JOBS.c.spec).where(JOBS.c.archived.is_(False))
_ACTIVE: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], dict[str, Any]]] = weakref.WeakKeyDictionary()


def job_dependencies(session: Session) -> dict[str, tuple[str, ...]]:
    """Upstream job names of every job that is not archived (its ``depends_on``)."""
    return {name: tuple(job.spec.get("depends_on") or ()) for name, job in active_jobs(session).items()}


def lock_pipeline(session: Session, pipeline_id: str, *, postgres: bool) -> None:
    """Serialize the steps of one pipeline that finish at the same time (Postgres: a
    transaction-level advisory lock; SQLite's BEGIN IMMEDIATE already serializes writers), so
    a fan-in step is enqueued once, not zero times or twice. Lock pipelines in sorted order."""
    if postgres:
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(pipeline_id))))


def pipeline_runs(session: Session, pipeline_id: str) -> list[Any]:
    """Rows (id, job_name, status) of a pipeline's runs, oldest first; the first is its root."""
    return list(session.execute(select(RUNS.c.id, RUNS.c.job_name, RUNS.c.status)
                                .where(RUNS.c.pipeline_id == pipeline_id).order_by(RUNS.c.id)))


# ---------------------------------------------------------------- worker writes (fenced by lease)


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one attempt of a run. Every write a worker makes to the run is
    conditioned on (id, lease, status running), so a worker whose run was rescued while it was
    stalled can never overwrite the newer attempt."""

    run_id: int
    lease: int


def heartbeat(session: Session, leases: Sequence[Lease], *, now: datetime) -> list[int]:
    """Refresh ``heartbeat_at`` of the runs whose lease is still held (one UPDATE); returns the
    ids whose lease is gone (rescued, cancelled or finished elsewhere)."""
    if not leases:
        return []
    held = set(session.scalars(
        update(Run).where(tuple_(Run.id, Run.lease).in_([(l.run_id, l.lease) for l in leases]),
                          Run.status == RunStatus.RUNNING.value)
        .values(heartbeat_at=now).returning(Run.id), execution_options={"synchronize_session": False}))
    return [l.run_id for l in leases if l.run_id not in held]


def mark_begun(session: Session, leases: Sequence[Lease], *, now: datetime) -> set[int]:
    """Record that these claimed-ahead runs began (``begun_at``), fenced by lease; one UPDATE.
    Returns the ids marked (a run whose lease is gone, or already marked, is left alone)."""
    if not leases:
        return set()
    return set(session.scalars(
        update(Run).where(tuple_(Run.id, Run.lease).in_([(l.run_id, l.lease) for l in leases]),
                          Run.status == RunStatus.RUNNING.value, Run.begun_at.is_(None))
        .values(begun_at=now).returning(Run.id), execution_options={"synchronize_session": False}))


def record_process(session: Session, lease: Lease, *, pgid: int, host: str, now: datetime) -> bool:
    """Record the process group the run's attempt started on ``host`` (a rescue there makes sure
    it is gone first); the run has begun by then. False when the lease is gone."""
    result = session.execute(
        update(Run).where(Run.id == lease.run_id, Run.lease == lease.lease, Run.status == RunStatus.RUNNING.value)
        .values(process_group=pgid, process_host=host, begun_at=func.coalesce(Run.begun_at, now)),
        execution_options={"synchronize_session": False})
    return _rowcount(result) == 1


def save_progress(session: Session, lease: Lease, progress: float | None, message: str | None) -> bool:
    """Record progress (0-100) and its message; False when the lease is gone."""
    result = session.execute(
        update(Run).where(Run.id == lease.run_id, Run.lease == lease.lease, Run.status == RunStatus.RUNNING.value)
        .values(progress=progress, progress_message=(message or None) and message[:500]),
        execution_options={"synchronize_session": False})
    return _rowcount(result) == 1


def holds_lease(session: Session, lease: Lease, *, running: bool = True) -> bool:
    """True while ``lease`` is the run's current lease (and, with ``running``, the run runs).
    A finished run keeps its last lease, so output that arrives late can still be attributed."""
    query = select(Run.id).where(Run.id == lease.run_id, Run.lease == lease.lease)
    if running:
        query = query.where(Run.status == RunStatus.RUNNING.value)
    return session.execute(query).first() is not None


def append_log(session: Session, run_id: int, text: str, *, max_chars: int) -> None:
    """Append ``text`` to the run's log, keeping only the newest ``max_chars`` characters (cut at
    a line start). ``size`` keeps counting everything ever written. Callers check the lease first."""
    if not text:
        return
    text = text.replace("\x00", "\\x00")  # Postgres text cannot hold NUL
    locked = select(RunLog.content, RunLog.size).where(RunLog.run_id == run_id).with_for_update()
    row = session.execute(locked).first()  # two appenders (monitor, dispatcher) must not lose text
    if row is None:  # create it, tolerating a concurrent creator, then lock it
        dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(dialect_insert(RunLog).values(run_id=run_id, content="", size=0).on_conflict_do_nothing())
        row = session.execute(locked).one()
    content = row.content + text
    if len(content) > max_chars:
        cut = len(content) - max_chars
        newline = content.find("\n", cut)
        content = content[newline + 1:] if 0 <= newline < cut + 200 else content[cut:]
    session.execute(update(RunLog).where(RunLog.run_id == run_id).values(content=content, size=RunLog.size + len(text)))


def read_log(session: Session, run_id: int, after: int = 0) -> tuple[str, int, int]:
    """The log from character offset ``after``: (text, next_offset, trimmed_chars). Offsets count
    every character ever written, so they stay valid when old lines are trimmed away."""
    row = session.execute(select(RunLog.content, RunLog.size).where(RunLog.run_id == run_id)).first()
    if row is None:
        return "", 0, 0
    start = row.size - len(row.content)
    return row.content[max(after - start, 0):], row.size, start


def cancel_requested(session: Session, run_ids: Sequence[int]) -> set[int]:
    """Which of ``run_ids`` (running here) someone asked to cancel."""
    if not run_ids:
        return set()
    return set(session.scalars(select(Run.id).where(Run.id.in_(list(run_ids)), Run.cancel_requested.is_(True))))


def request_cancel(session: Session, run_id: int, *, now: datetime) -> int | None:
    """Flag a running run for cancellation (its worker stops it), keeping the time of the first
    request in ``cancel_requested_at``. Returns the run's attempt, or None if it is not running.
    The UPDATE locks the row, so it is ordered against the worker's finish (``states.read_runs``):
    either the finish sees the flag, or this finds the run no longer running."""
    first = func.coalesce(RUNS.c.cancel_requested_at, bindparam("b_now", now, type_=RUNS.c.cancel_requested_at.type))
    row = session.execute(update(RUNS).where(RUNS.c.id == run_id, RUNS.c.status == RunStatus.RUNNING.value)
                          .values(cancel_requested=True, cancel_requested_at=first).returning(RUNS.c.attempt)).first()
    return None if row is None else int(row.attempt)


def stale_runs(session: Session, *, cutoff: datetime, limit: int = 500, skip_locked: bool = False) -> list[Any]:
    """Running runs whose heartbeat is older than ``cutoff`` (their worker is presumed dead):
    rows of (id, job_name, lease, attempt, max_attempts, worker, heartbeat_at, pipeline_id,
    cancel_requested, begun_at, process_group, process_host), oldest id first. With
    ``skip_locked`` (Postgres) the rows are locked, skipping those another rescuer holds."""
    query = (select(RUNS.c.id, RUNS.c.job_name, RUNS.c.lease, RUNS.c.attempt, RUNS.c.max_attempts, RUNS.c.worker,
                    RUNS.c.heartbeat_at, RUNS.c.pipeline_id, RUNS.c.cancel_requested, RUNS.c.begun_at,
                    RUNS.c.process_group, RUNS.c.process_host)
             .where(status_is(RunStatus.RUNNING), RUNS.c.heartbeat_at < cutoff)
             .order_by(RUNS.c.id).limit(limit))
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return list(session.execute(query))


# ---------------------------------------------------------------- reads


def get_run(session: Session, run_id: int) -> Run | None:
    """The run with ``run_id``, or None."""
    return session.get(Run, run_id)


def list_runs(session: Session, *, status: str | None = None, job: str | None = None,
              limit: int = 50, offset: int = 0) -> list[Run]:
    """Runs newest first, optionally filtered by status and job."""
    query = select(Run).order_by(Run.id.desc()).limit(limit).offset(offset)
    if status:
        query = query.where(Run.status == status)
    if job:
        query = query.where(Run.job_name == job)
    return list(session.scalars(query))


def count_events(session: Session, run_id: int, *, note_prefix: str) -> int:
    """How many of the run's events have a note starting with ``note_prefix``."""
    return session.scalar(select(func.count()).select_from(RunEvent).where(
        RunEvent.run_id == run_id, RunEvent.note.startswith(note_prefix, autoescape=True))) or 0


def run_events(session: Session, run_id: int) -> list[RunEvent]:
    """The run's transitions, oldest first."""
    return list(session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id)))


def count_runs_by_status(session: Session, job: str | None = None) -> dict[str, int]:
    """Number of runs in each status (statuses with no runs are absent)."""
    query = select(Run.status, func.count()).group_by(Run.status)
    if job:
        query = query.where(Run.job_name == job)
    return dict(session.execute(query).all())


def active_runs_of_job(session: Session, name: str) -> int:
    """Queued plus running runs of a job."""
    return session.scalar(select(func.count()).select_from(Run).where(
        Run.job_name == name, Run.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]))) or 0


# ---------------------------------------------------------------- health


HEALTH_OUTCOMES = (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.BLOCKED.value)


def health_inputs(session: Session, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per job (all, or ``names``), the run summary ``lexyjobs.health.LastRuns`` takes, same keys:
    ``last_status``/``last_started_at``/``last_finished_at``/``last_error`` of the latest run that ended succeeded,
    failed or blocked (latest ``finished_at``, then highest id); ``last_success_at``;
    ``failure_streak`` (failed runs that finished after the last success); ``running_since``
    (earliest ``started_at`` of the job's running runs). Jobs without such runs are absent.

    Two queries whatever the number of jobs; read-only, takes no locks. The first asks, per row
    of ``jobs``, correlated subqueries that are each an index seek or a short range on
    ``ix_runs_job_outcome (job_name, status, finished_at, id)``: the job's latest run of each
    outcome, its last success and the failures after it. So the cost grows with the number of
    jobs and of their current failure streaks, not with the length of their history. The
    second reads the (at most three per job) candidate runs and keeps each job's latest."""
    if names is None:
        rows = session.execute(_health_summary(False)).all()
    else:
        rows = session.execute(_health_summary(True), {"names": list(names)}).all()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        name, succeeded_id, last_success, streak, running_since = row[0], row[1], row[4], row[5], row[6]
        entry: dict[str, Any] = {}
        if succeeded_id is not None:
            entry["last_success_at"] = last_success
        if streak:
            entry["failure_streak"] = streak
        if running_since is not None:
            entry["running_since"] = running_since
        if entry:
            out[name] = entry
    candidates = [run_id for row in rows for run_id in row[1:4] if run_id is not None]
    if candidates:
        latest = (select(RUNS.c.job_name, RUNS.c.status, RUNS.c.started_at, RUNS.c.finished_at, RUNS.c.error)
                  .where(RUNS.c.id.in_(candidates))
                  .order_by(RUNS.c.job_name, RUNS.c.finished_at.desc(), RUNS.c.id.desc()))
        for outcome in session.execute(latest):
            entry = out.setdefault(outcome.job_name, {})
            if "last_status" not in entry:  # the first row of each job is its latest outcome
                entry.update(last_status=outcome.status, last_started_at=outcome.started_at,
                             last_finished_at=outcome.finished_at, last_error=outcome.error)
    return out


@functools.cache
def _health_summary(scoped: bool) -> Any:
    """Per job: the ids of its latest succeeded, failed and blocked runs, its last success,
    failure streak and running since; ``scoped``: of the jobs in ``:names`` only. Built once
    (its construction costs more than running it)."""
    summary = select(JOBS.c.name, *(_latest_run_id(status) for status in HEALTH_OUTCOMES), _last_success(),
                     _failure_streak(), _running_since())
    return summary.where(JOBS.c.name.in_(bindparam("names", expanding=True))) if scoped else summary


def _latest_run_id(status: str) -> Any:
    """The id of the job's latest run in ``status`` (latest finished_at, then highest id)."""
    runs = RUNS.alias(f"latest_{status}")
    return (select(runs.c.id).where(runs.c.job_name == JOBS.c.name, runs.c.status == status)
            .order_by(runs.c.finished_at.desc(), runs.c.id.desc()).limit(1).scalar_subquery())


def _last_success() -> Any:
    runs = RUNS.alias("success")
    return (select(func.max(runs.c.finished_at))
            .where(runs.c.job_name == JOBS.c.name, runs.c.status == RunStatus.SUCCEEDED.value)
            .correlate(JOBS).scalar_subquery())  # to the outer ``jobs`` even when nested two levels deep


def _failure_streak() -> Any:
    """Failed runs that finished after the last success (all of them when it never succeeded)."""
    runs = RUNS.alias("failure")
    failed = (select(func.count()).select_from(runs)
              .where(runs.c.job_name == JOBS.c.name, runs.c.status == RunStatus.FAILED.value))
    return case((_last_success().is_(None), failed.scalar_subquery()),
                else_=failed.where(runs.c.finished_at > _last_success()).scalar_subquery())


def _running_since() -> Any:
    runs = RUNS.alias("running")
    return (select(func.min(runs.c.started_at))
            .where(runs.c.job_name == JOBS.c.name, runs.c.status == RunStatus.RUNNING.value).scalar_subquery())


# ---- scheduling

_JOBSTORE_LOCK = 7_412_004  # arbitrary constant shared by every lexyjobs process (see create_jobstore_table)


def create_jobstore_table(session: Session, table: Table, *, postgres: bool) -> None:
    """Create APScheduler's job table (``apscheduler_jobs``, defined by its SQLAlchemyJobStore) in
    our database if it is missing. Several processes may start at once: on Postgres they take an
    advisory lock first (two concurrent CREATE TABLEs collide on the catalog even with IF NOT
    EXISTS); on SQLite the caller's ``BEGIN IMMEDIATE`` write transaction serializes them."""
    if postgres:
        session.execute(select(func.pg_advisory_xact_lock(_JOBSTORE_LOCK)))
    table.create(session.connection(), checkfirst=True)


def active_runs(session: Session, name: str) -> list[tuple[int, str]]:
    """(id, status) of the job's queued and running runs, oldest first (for overlap policies)."""
    return [(row.id, row.status) for row in session.execute(
        select(Run.id, Run.status).where(Run.job_name == name,
                                         Run.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]))
        .order_by(Run.id))]


def add_creation_note(session: Session, run_id: int, note: str, *, status: str, at: datetime) -> None:
    """Record why a run was created (e.g. the missed fires a scheduled run stands for) as an event
    from no status to ``status``, so the note shows first in the run's timeline."""
    session.execute(insert(RunEvent).values(run_id=run_id, at=at, from_status=None, to_status=status, attempt=0,
                                            note=note))
