"""Run operations used by the CLI, API, scheduler and worker: enqueue (validated), cancel,
retry by hand, and rescue of runs whose worker died."""
from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from sqlalchemy.orm import Session

from lexyjobs import cancels, children, pipelines, store, tracing
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import JobDefinition, definition_from_job
from lexyjobs.flow import unique
from lexyjobs.flow.spec import RateLimit, flow_columns
from lexyjobs.errors import Conflict, InvalidDefinition, JobNotFound, LexyjobsError, RunNotFound, TransitionConflict
from lexyjobs.models import Run
from lexyjobs.params import validate_params
from lexyjobs.states import DECREMENT, RunStatus, transition, transition_many

log = logging.getLogger(__name__)
TRIGGERS = ("schedule", "manual", "api", "dependency", "retry")


@dataclass(frozen=True)
class RunRequest:
    """One run to enqueue."""

    job: str
    params: Mapping[str, Any] | None = None
    priority: int | None = None
    scheduled_for: datetime | None = None
    trigger: str = "manual"
    created_by: str | None = None
    params_from_strings: bool = False
    pipeline_id: str | None = None
    parent_run_id: int | None = None
    retry_of: int | None = None
    fire_key: str | None = None
    key: unique.IdempotencyKey | None = None  # Idempotency-Key: a repeat returns the first run
    backfill: tuple[int, int] | None = None  # (backfill id, most of its runs at once): lexyjobs.backfill


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue gave: a new run, or (``existing`` set) the run that answered for it
    (same idempotency key, or a duplicate of a unique job's active run: ``lexyjobs.flow.unique``)."""

    run_id: int
    existing: unique.Existing | None = None


def enqueue(db: Database, job: str, params: Mapping[str, Any] | None = None, **options: Any) -> int:
    """Validate and enqueue one run; returns its id (an existing run's for a duplicate, see
    ``submit``). See ``RunRequest`` for the options."""
    return enqueue_many(db, [RunRequest(job, params, **options)])[0]


def submit(db: Database, job: str, params: Mapping[str, Any] | None = None, **options: Any) -> Enqueued:
    """``enqueue`` saying whether an existing run answered instead of a new one."""
    return submit_many(db, [RunRequest(job, params, **options)])[0]


def enqueue_many(db: Database, requests: Sequence[RunRequest], *, now: datetime | None = None) -> list[int]:
    """Validate and enqueue runs in one transaction (all or nothing); returns their ids.
    Raises JobNotFound, InvalidParams or LexyjobsError before anything is written."""
    return [done.run_id for done in submit_many(db, requests, now=now)]


def submit_many(db: Database, requests: Sequence[RunRequest], *, now: datetime | None = None) -> list[Enqueued]:
    """``enqueue_many`` saying, per request, whether an existing run answered for it."""
    with db.write() as session:
        rows = insert_requests(session, requests, now=now or utcnow())
        if any(unique.EXISTING not in row for row in rows):
            db.enqueued(session)
    return [Enqueued(row["id"], row.get(unique.EXISTING)) for row in rows]


def insert_requests(session: Session, requests: Sequence[RunRequest], *, now: datetime) -> list[dict[str, Any]]:
    """Validate ``requests`` and insert their runs in ``session``'s transaction; returns their
    rows with their ``id``; where an earlier run answers for a request (same idempotency key,
    a unique job's duplicate) that run's row with ``existing`` instead. The caller commits and
    wakes workers (``Database.enqueued``);
    ``lexyjobs.enqueueing`` uses it inside a host application's transaction too."""
    jobs = store.active_jobs(session)
    definitions = _definitions(jobs, {r.job for r in requests})
    upstreams = {u for job in jobs.values() for u in job.spec.get("depends_on") or ()}
    named = store.named_limits(session) if any(d.flow.limits for d in definitions.values()) else None
    rows = [run_row(definitions[r.job], _start_pipeline(r, upstreams), now, named) for r in requests]
    if any(r.key for r in requests) or any(row["unique_key"] for row in rows):
        # a repeated key or a unique job's duplicate: the earlier run answers (row["existing"])
        uniques = {name: (d.flow.unique or (), d.flow.unique_while) for name, d in definitions.items()}
        return unique.insert_once(session, rows, [r.key for r in requests], uniques, now=now)
    return [{**row, "id": run_id} for row, run_id in zip(rows, store.insert_runs(session, rows))]


def _definitions(jobs: Mapping[str, Any], names: set[str]) -> dict[str, JobDefinition]:
    """The definitions of ``names`` among the active ``jobs``; JobNotFound for any other."""
    missing = sorted(names - set(jobs))
    if missing:
        raise JobNotFound(missing[0])
    return {name: definition_from_job(jobs[name]) for name in names}


def _start_pipeline(request: RunRequest, upstreams: set[str]) -> RunRequest:
    """A run of a job that has downstream jobs starts a pipeline, unless it is part of one."""
    if request.pipeline_id is None and request.job in upstreams:
        return dataclasses.replace(request, pipeline_id=uuid.uuid4().hex)
    return request


def run_row(definition: JobDefinition, request: RunRequest, now: datetime,
            named_limits: Mapping[str, RateLimit] | None = None) -> dict[str, Any]:
    """The row of a queued run for ``request`` (validated: trigger, priority, params), with its
    flow-control columns (``named_limits``: the ``[limits.<name>]`` tables it may name)."""
    if request.trigger not in TRIGGERS:
        raise LexyjobsError(f"trigger must be one of {', '.join(TRIGGERS)}")
    priority = definition.priority if request.priority is None else request.priority
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 10:
        raise LexyjobsError("priority must be a whole number from 0 to 10", details={"field": "priority"})
    if request.scheduled_for is not None and request.scheduled_for.tzinfo is None:
        raise LexyjobsError("scheduled_for needs a timezone", details={"field": "scheduled_for"})
    params = validate_params(definition.params, request.params, from_strings=request.params_from_strings)
    return {**flow_columns(definition, params, named_limits), "job_name": definition.name, "status": RunStatus.QUEUED.value, "priority": priority, "params": params,
            "trigger": request.trigger, "created_by": request.created_by, "created_at": now,
            "scheduled_for": max(request.scheduled_for or now, now), "attempt": 0,
            "max_attempts": definition.max_attempts, "lease": 0, "cancel_requested": False,
            "pipeline_id": request.pipeline_id, "parent_run_id": request.parent_run_id,
            "retry_of": request.retry_of, "fire_key": request.fire_key,
            **tracing.enqueue_columns(definition.name, request.trigger), **_backfill_columns(request)}


def _backfill_columns(request: RunRequest) -> dict[str, Any]:
    """A backfill's runs share one concurrency key, limited to the concurrency it was given."""
    if request.backfill is None:
        return {}
    backfill_id, concurrency = request.backfill
    return {"backfill_id": backfill_id, "concurrency_key": f"backfill:{backfill_id}", "concurrency_limit": concurrency}


NO_FLOW = {"queue": "default", "concurrency_key": None, "concurrency_limit": None, "rate_limits": None,
           "unique_key": None}  # a run recorded as not run waits for nothing


def not_run_row(job: str, status: RunStatus, *, reason: str, trigger: str, now: datetime,
                params: Mapping[str, Any] | None = None, scheduled_for: datetime | None = None,
                fire_key: str | None = None, pipeline_id: str | None = None, parent_run_id: int | None = None,
                created_by: str | None = None) -> dict[str, Any]:
    """A run row created directly as BLOCKED or SKIPPED: the record that something did not run
    (a missed or overlapping fire, a pipeline step behind a failure), visible in the history."""
    if status not in (RunStatus.BLOCKED, RunStatus.SKIPPED):
        raise ValueError(f"only blocked or skipped runs are recorded without running, not {status}")
    return {"job_name": job, "status": status.value, "priority": 0, "params": dict(params or {}),
            "trigger": trigger, "created_by": created_by, "created_at": now, "scheduled_for": scheduled_for or now,
            "finished_at": now, "attempt": 0, "max_attempts": 0, "lease": 0, "cancel_requested": False,
            "error": reason, "pipeline_id": pipeline_id, "parent_run_id": parent_run_id, "fire_key": fire_key,
            **NO_FLOW}


def record_not_run(db: Database, job: str, status: RunStatus, *, reason: str, trigger: str,
                   now: datetime | None = None, **fields: Any) -> int:
    """Insert one BLOCKED or SKIPPED run (see ``not_run_row``); returns its id."""
    with db.write() as session:
        if store.get_job(session, job) is None:
            raise JobNotFound(job)
        return store.insert_runs(session, [not_run_row(job, status, reason=reason, trigger=trigger,
                                                       now=now or utcnow(), **fields)])[0]


def get_run(db: Database, run_id: int) -> Run:
    """The run, or RunNotFound."""
    with db.read() as session:
        run = store.get_run(session, run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


def cancel(db: Database, run_id: int, *, by: str | None = None) -> str:
    """Cancel a run. A queued run is canceled at once ("canceled"); a running one is flagged and
    its worker stops it ("cancel requested"; the request is a run event naming ``by``, and a run
    that finishes first keeps its outcome: see ``lexyjobs.cancels``). Conflict if it already
    finished."""
    now = utcnow()
    note = f"canceled by {by}" if by else "canceled"
    with db.write() as session:
        run = store.get_run(session, run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run.status == RunStatus.QUEUED and transition_many(
                session, [run_id], RunStatus.CANCELED, expected=RunStatus.QUEUED, at=now, note=note,
                values={"finished_at": now, "error": note}):
            pipelines.advance(session, [pipelines.Finished(run_id, run.job_name, run.pipeline_id, RunStatus.CANCELED)],
                              now=now, postgres=db.is_postgres)  # downstream steps are only blocked: no wake-up
            return "canceled"
        if run.status == RunStatus.RUNNING and cancels.request(session, run_id, by=by, now=now):
            return "cancel requested"
    raise Conflict(f"run {run_id} is {run.status}; only queued or running runs can be canceled",
                   details={"run_id": run_id, "status": run.status})


RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELED, RunStatus.SUCCEEDED})


def retry(db: Database, run_id: int, *, by: str | None = None, trigger: str = "retry") -> int:
    """Enqueue a new run with the same job and params as a finished one; returns the new id
    (see ``submit_retry``)."""
    return submit_retry(db, run_id, by=by, trigger=trigger).run_id


def submit_retry(db: Database, run_id: int, *, by: str | None = None, trigger: str = "retry") -> Enqueued:
    """``retry`` saying whether an existing run answered: for a unique job whose duplicate is
    active meanwhile, that run does (``Enqueued.existing``), and no new run is made."""
    run = get_run(db, run_id)
    if run.status not in RETRYABLE:
        raise Conflict(f"run {run_id} is {run.status}; only finished runs can be retried",
                       details={"run_id": run_id, "status": run.status})
    return submit(db, run.job_name, run.params, priority=run.priority, trigger=trigger, created_by=by,
                  retry_of=run.id, pipeline_id=run.pipeline_id)


def cancel_many(db: Database, ids: Sequence[int], *, by: str) -> tuple[int, int]:
    """``cancel`` for many runs in one transaction: (canceled, cancel requested); finished or
    unknown runs are left alone. Queued runs
    move first; a run a worker claimed meanwhile is running by then and gets the flag instead."""
    now = utcnow()
    note = f"canceled by {by}"
    with db.write() as session:
        moved = transition_many(session, ids, RunStatus.CANCELED, expected=RunStatus.QUEUED, at=now, note=note,
                                values={"finished_at": now, "error": note}, returning=(Run.__table__.c.pipeline_id,))
        pipelines.advance(session, [pipelines.Finished(row.id, row.job_name, row.pipeline_id, RunStatus.CANCELED)
                                    for row in moved], now=now, postgres=db.is_postgres)  # only blocks: no wake-up
        done = {row.id for row in moved}
        flagged = sum(1 for run_id in sorted(ids)  # id order: the order a finishing worker locks runs in
                      if run_id not in done and cancels.request(session, run_id, by=by, now=now))
    return len(moved), flagged


def retry_many(db: Database, ids: Sequence[int], *, by: str) -> int:
    """Enqueue retries of the finished runs among ``ids`` in one transaction; if one of them
    cannot be enqueued (job deleted, params no longer valid), the others go one by one. Returns
    how many new runs there are (a unique job's duplicate of an active run is not one)."""
    with db.read() as session:
        found = [run for run in (store.get_run(session, run_id) for run_id in ids) if run is not None]
    requests = [RunRequest(run.job_name, run.params, priority=run.priority, trigger="retry", created_by=by,
                                retry_of=run.id, pipeline_id=run.pipeline_id)
                for run in found if run.status in RETRYABLE]
    try:
        return sum(done.existing is None for done in submit_many(db, requests)) if requests else 0
    except LexyjobsError:
        return sum(_enqueue_or_skip(db, request) for request in requests)


def _enqueue_or_skip(db: Database, request: RunRequest) -> int:
    try:
        [done] = submit_many(db, [request])
    except LexyjobsError:
        return 0
    return int(done.existing is None)


GROUP_END_WAIT = 3.0  # seconds a rescue waits for a dead worker's job process group to be gone
NOT_BEGUN = "rescued before it began"  # the note's start when a claimed-ahead run is given back


def rescue_stale(db: Database, *, stale_after: float, now: datetime | None = None,
                 postgres: bool | None = None) -> list[tuple[int, str]]:
    """Runs left ``running`` by a dead worker (heartbeat older than ``stale_after`` seconds) are
    re-queued as a new attempt, or failed when attempts are exhausted or the job is not
    idempotent ("interrupted: worker died", at-most-once); a run someone asked to cancel ends
    canceled. A run that never began (claimed ahead, see ``lexyjobs.begun``) goes back uncounted,
    whatever the job. A re-queued run keeps its priority and due time, so its place in the queue.

    A run whose job process group was started on this host (``runs.process_group``) moves only
    once that group is gone: the rescue kills it first and waits (outside any transaction), so
    attempt N+1 never starts beside attempt N. A group on another host cannot be seen from here:
    there, the group dies with its process (``lexyjobs.children``).

    Each move is fenced by the lease the dead worker held, and on Postgres the stale rows are
    taken SKIP LOCKED, so processes rescuing at the same time never move a run twice.
    Returns (run id, new status) pairs."""
    now = now or utcnow()
    postgres = db.is_postgres if postgres is None else postgres
    cutoff = now - timedelta(seconds=stale_after)
    _end_local_groups(db, cutoff)
    moved: list[tuple[int, str]] = []
    with db.write() as session:
        idempotent: dict[str, bool] = {}
        ended: list[pipelines.Finished] = []
        for row in store.stale_runs(session, cutoff=cutoff, skip_locked=postgres):
            if _group_here(row) and children.group_alive(row.process_group, marker=children.run_marker(row.id)):
                log.warning("run %s: its process group %d is still alive on this host; rescued once it is gone",
                            row.id, row.process_group)
                continue
            if row.job_name not in idempotent:
                idempotent[row.job_name] = _is_idempotent(session, row.job_name)
            status = _rescue_one(session, row, idempotent[row.job_name], now)
            if status is None:
                continue  # moved meanwhile by someone else
            moved.append((row.id, status.value))
            if status != RunStatus.QUEUED:
                ended.append(pipelines.Finished(row.id, row.job_name, row.pipeline_id, status))
        pipelines.advance(session, ended, now=now, postgres=postgres)  # blocks only: no wake-up
        if any(status == RunStatus.QUEUED for _, status in moved):
            db.enqueued(session)
    for run_id, status_text in moved:
        log.warning("run %s rescued from a dead worker: now %s", run_id, status_text)
    return moved


def _group_here(row: Any) -> bool:
    return row.process_group is not None and row.process_host == children.HOST


def _end_local_groups(db: Database, cutoff: datetime) -> None:
    """Kill the job process groups that stale runs started on this host and wait until they are
    gone (up to GROUP_END_WAIT each; a group that outlives it keeps its run from moving)."""
    with db.read() as session:
        local = [(row.id, row.process_group) for row in store.stale_runs(session, cutoff=cutoff) if _group_here(row)]
    for run_id, pgid in local:
        if children.group_alive(pgid, marker=children.run_marker(run_id)):
            log.warning("run %s: its worker is dead but its process group %d still runs here; killing it",
                        run_id, pgid)
            if not children.end_group(pgid, marker=children.run_marker(run_id), timeout=GROUP_END_WAIT):
                log.error("run %s: its process group %d survived SIGKILL for %.0fs", run_id, pgid, GROUP_END_WAIT)


def _rescue_one(session: Session, row: Any, idempotent: bool, now: datetime) -> RunStatus | None:
    silent = (now - row.heartbeat_at).total_seconds()
    reason = f"worker {row.worker} stopped heartbeating {silent:.0f}s ago"
    # worker and heartbeat cleared; scheduled_for and priority kept: the run keeps its place
    fence = {"expected": RunStatus.RUNNING, "lease": row.lease, "at": now}
    try:
        if row.cancel_requested:
            transition(session, row.id, RunStatus.CANCELED, note=f"canceled ({reason})", finished_at=now,
                       error="canceled", heartbeat_at=None, **fence)
            return RunStatus.CANCELED
        if row.begun_at is None and not _counted_anyway(session, row, idempotent):
            transition(session, row.id, RunStatus.QUEUED, note=f"{NOT_BEGUN}: {reason}; re-queued, attempt not counted",
                       attempt=DECREMENT, worker=None, heartbeat_at=None, **fence)
            return RunStatus.QUEUED
        if idempotent and row.attempt < row.max_attempts:
            transition(session, row.id, RunStatus.QUEUED, note=f"rescued: {reason}; re-queued as attempt {row.attempt + 1}",
                       worker=None, heartbeat_at=None, error=f"interrupted: worker died (attempt {row.attempt})", **fence)
            return RunStatus.QUEUED
        why = "interrupted: worker died" + ("; attempts exhausted" if idempotent else "")
        transition(session, row.id, RunStatus.FAILED, note=f"{why} ({reason})", finished_at=now, error=why,
                   heartbeat_at=None, **fence)
        return RunStatus.FAILED
    except TransitionConflict:
        return None


def _counted_anyway(session: Session, row: Any, idempotent: bool) -> bool:
    """A run of an idempotent job is recorded as begun lazily (``lexyjobs.begun``): one that
    kills its process at once could be rescued "before it began" forever. After as many such
    rescues as it has attempts, the attempt counts."""
    return idempotent and store.count_events(session, row.id, note_prefix=NOT_BEGUN) >= row.max_attempts


def _is_idempotent(session: Session, name: str) -> bool:
    job_row = store.get_job(session, name)
    try:
        return job_row is None or definition_from_job(job_row).idempotent
    except InvalidDefinition:
        return True
