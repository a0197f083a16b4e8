"""``lexyjobs.enqueue``: run a job from Python code, optionally inside the host application's
transaction (``session=``, see ``lexyjobs.host_session``).

Input is validated exactly as ``POST /api/jobs/<name>/run`` validates it (``runs.run_row``,
``params.validate_params``), and every refusal is a ``LexyjobsError`` (``JobNotFound``,
``InvalidParams``, ``InvalidArgument``, ``OtherDatabase``…) carrying the same ``code``,
``message`` and ``details`` the API would answer with. The run and its ``run.create`` audit
entry are written in one transaction."""
from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Mapping

from sqlalchemy.orm import Session

from lexyjobs import audit, run_counts, runs
from lexyjobs.db import utcnow
from lexyjobs.errors import LexyjobsError
from lexyjobs.flow.unique import EXISTING, idempotency_key, take_sqlite_write_lock
from lexyjobs.handle import Run
from lexyjobs.host_session import check_same_database, host_connection
from lexyjobs.serialize import run_dict

if TYPE_CHECKING:
    from lexyjobs.runtime import Runtime

CODE_ACTOR = "code"  # audit actor and created_by of runs enqueued from code (``by=`` adds a name)
_prepare_lock = threading.Lock()


class InvalidArgument(LexyjobsError):
    """An argument has the wrong type or value."""

    status_code = 422
    code = "invalid_field"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", details={"field": field, "problem": problem})


def enqueue(job: str | Callable[..., Any], params: Mapping[str, Any] | None = None, *, priority: int | None = None,
            run_at: datetime | None = None, delay: timedelta | float | None = None, session: Any = None,
            by: str | None = None, key: str | None = None, runtime: Runtime | None = None) -> Run:
    """Queue a run of ``job`` (a job name, or a ``@job`` function) with ``params``; returns its
    handle. ``priority`` 0–10 (default: the job's); ``run_at`` (a timezone-aware datetime) or
    ``delay`` (a timedelta or seconds) puts it off. ``session``: the host's SQLAlchemy Session or
    Connection on the same database, to enqueue inside its transaction. ``by`` names who asked
    (audit actor ``code:<by>``, else ``code``). ``key``: an idempotency key (1–200 printable
    ASCII characters): a repeat for the same job within LEXYJOBS_IDEMPOTENCY_WINDOW returns the
    first run (``existing`` is true) instead of a new one. A unique job's duplicate also returns
    the run that is already there."""
    from lexyjobs.runtime import resolve

    runtime = runtime or resolve()
    name = job_name(job)
    if params is not None and not isinstance(params, Mapping):
        raise InvalidArgument("params", "must be a mapping of parameter values (or None)")
    actor = CODE_ACTOR if by is None else f"{CODE_ACTOR}:{by}"
    key_of = None if key is None else idempotency_key(key, runtime.settings.idempotency_window)
    request = runs.RunRequest(name, params, priority=priority, scheduled_for=due_time(run_at, delay),
                              trigger="api", created_by=actor, key=key_of)
    prepare_once(runtime)
    db = runtime.db
    if session is None:
        with db.write() as own:
            row = _insert(own, request, actor)
            if EXISTING not in row:
                db.enqueued(own)
        return _handle(runtime, row)
    conn, host = host_connection(session)
    check_same_database(conn, db)
    with Session(bind=conn) as ours:  # joins the host's transaction; closing it leaves that open
        if db.is_sqlite:
            take_sqlite_write_lock(ours)  # before our first read (see there)
        row = _insert(ours, request, actor)
        run_counts.write_pending(ours)  # this session never commits: its counters are written now
        ours.flush()
        if host is None and EXISTING not in row:
            db.enqueued(ours)  # only its NOTIFY matters: this session never commits (see host_session)
    if host is not None and EXISTING not in row:
        db.enqueued(host)  # NOTIFY in the host's transaction; local workers woken after its commit
    return _handle(runtime, row)


def _insert(session: Session, request: runs.RunRequest, actor: str) -> dict[str, Any]:
    now = utcnow()
    row = runs.insert_requests(session, [request], now=now)[0]
    if EXISTING not in row:  # an existing run answered: nothing was created
        session.add(audit.entry(actor, "run.create", request.job, details={"run_id": row["id"]}, at=now))
    return row


def _handle(runtime: Runtime, row: Mapping[str, Any]) -> Run:
    existing = row.get(EXISTING)
    return Run(runtime, run_dict_of({k: v for k, v in row.items() if k != EXISTING}),
               message=existing.message if existing else None)


def job_name(job: str | Callable[..., Any]) -> str:
    """The name of ``job``: a name as given, or the job a ``@job`` function declares."""
    if isinstance(job, str):
        return job
    name = getattr(job, "__lexyjobs_job__", None)
    if not isinstance(name, str):
        raise InvalidArgument("job", f"must be a job name or a @job function, not {job!r}")
    return name


def due_time(run_at: datetime | None, delay: timedelta | float | None, *, now: datetime | None = None) -> datetime | None:
    """When the run becomes due: ``run_at``, or now + ``delay``, or None (now)."""
    if run_at is not None and delay is not None:
        raise InvalidArgument("run_at", "give run_at or delay, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise InvalidArgument("run_at", f"must be a datetime, not {type(run_at).__name__}")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise InvalidArgument("run_at", "needs a timezone (e.g. datetime.now(timezone.utc) + ...)")
        return run_at
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise InvalidArgument("delay", f"must be a timedelta or a number of seconds, not {type(delay).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument("delay", "must be zero or more seconds")
    return (now or utcnow()) + timedelta(seconds=seconds)


def run_dict_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The API shape of a run just inserted, from its row (no read back)."""
    from lexyjobs.models import Run as RunRow

    return run_dict(RunRow(**row))


def prepare_once(runtime: Runtime) -> None:
    """Migrate the schema and sync the code and file jobs once per process, unless the app (or
    the worker, or the extension) already did: a script that only enqueues works on a fresh
    database. With SQLite, call it (or start the app) before a transaction of your own holds the
    write lock: it writes through its own connection."""
    if runtime.started or runtime.sync_report is not None:
        return
    with _prepare_lock:
        if runtime.started or runtime.sync_report is not None:
            return
        runtime.prepare()
