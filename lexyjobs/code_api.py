"""The read and management helpers of the Python API (``lexyjobs.get_run``, ``list_runs``,
``stats``, ``cancel``, ``retry``, ``prune``): what a host application calls instead of the HTTP
API. They act on ``runtime.resolve()``'s database; cancel and retry write an audit entry naming
the actor ``code`` (``code:<by>`` with ``by=``), as the API's actions name the token."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from lexyjobs import audit, queries, retention, runs
from lexyjobs.enqueueing import CODE_ACTOR, InvalidArgument, prepare_once
from lexyjobs.handle import Run
from lexyjobs.queries import RunFilter
from lexyjobs.db import utcnow
from lexyjobs.flow.waiting import runs_json
from lexyjobs.states import RunStatus

if TYPE_CHECKING:
    from lexyjobs.runtime import Runtime

STATUSES = tuple(status.value for status in RunStatus)
MAX_LIMIT = 10_000


def _runtime(runtime: Runtime | None) -> Runtime:
    from lexyjobs.runtime import resolve

    found = runtime or resolve()
    prepare_once(found)
    return found


def _actor(by: str | None) -> str:
    return CODE_ACTOR if by is None else f"{CODE_ACTOR}:{by}"


def get_run(run_id: int, *, runtime: Runtime | None = None) -> Run:
    """The run with ``run_id`` (RunNotFound if there is none)."""
    lexy = _runtime(runtime)
    return Run(lexy, _json(lexy, [runs.get_run(lexy.db, run_id)])[0])


def list_runs(job: str | None = None, status: str | Iterable[str] | None = None, limit: int = 50, *,
              runtime: Runtime | None = None) -> list[Run]:
    """Runs newest first, of ``job`` and in ``status`` (one or several) when given."""
    statuses = (status,) if isinstance(status, str) else tuple(status or ())
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise InvalidArgument("status", f"{unknown[0]!r} is not one of {', '.join(STATUSES)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    lexy = _runtime(runtime)
    with lexy.db.read() as session:
        found = queries.search_runs(session, RunFilter(statuses=statuses, job=job), limit=limit)
        data = runs_json(session, found, now=utcnow(), stale_after=lexy.settings.stale_after)
    return [Run(lexy, item) for item in data]


def _json(lexy: Runtime, found: list[Any]) -> list[dict[str, Any]]:
    """The runs' API JSON with why each queued one waits (lexyjobs.flow.waiting)."""
    with lexy.db.read() as session:
        return runs_json(session, found, now=utcnow(), stale_after=lexy.settings.stale_after)


def stats(job: str | None = None, *, runtime: Runtime | None = None) -> dict[str, int]:
    """Runs per status (every status, zeros included) and ``total``, of ``job`` or of all jobs:
    the counts the dashboard and ``GET /api/stats`` show."""
    lexy = _runtime(runtime)
    with lexy.db.read() as session:
        return queries.status_counts(session, RunFilter(job=job) if job else None)


def cancel(run_id: int, *, by: str | None = None, runtime: Runtime | None = None) -> str:
    """Cancel a run: "canceled" when it was queued, "cancel requested" when running (its worker
    stops it); Conflict if it already finished, RunNotFound if there is none."""
    lexy = _runtime(runtime)
    outcome = runs.cancel(lexy.db, run_id, by=_actor(by))
    audit.record(lexy.db, _actor(by), "run.cancel", str(run_id), details={"outcome": outcome})
    return outcome


def retry(run_id: int, *, by: str | None = None, runtime: Runtime | None = None) -> Run:
    """Enqueue a new run with the job, params and priority of a finished one; returns it (for a
    unique job whose duplicate is active, that run, with ``existing`` and ``message``)."""
    lexy = _runtime(runtime)
    done = runs.submit_retry(lexy.db, run_id, by=_actor(by))
    if done.existing is None:
        audit.record(lexy.db, _actor(by), "run.retry", str(run_id), details={"run_id": done.run_id})
    return Run(lexy, _json(lexy, [runs.get_run(lexy.db, done.run_id)])[0],
               message=done.existing.message if done.existing else None)


def prune(days: int | None = None, failed_days: int | None = None, *, dry_run: bool = False,
          runtime: Runtime | None = None) -> retention.PruneReport:
    """Delete finished runs older than ``days`` (failed ones: ``failed_days``), with their events
    and logs; defaults: LEXYJOBS_RETENTION_DAYS / LEXYJOBS_RETENTION_FAILED_DAYS; 0 keeps them.
    Queued and running runs are never touched. ``.total`` is how many runs went (or would go,
    with ``dry_run``). Audit-log entries follow LEXYJOBS_AUDIT_RETENTION_DAYS."""
    lexy = _runtime(runtime)
    settings = lexy.settings
    for field, value in (("days", days), ("failed_days", failed_days)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidArgument(field, "must be a whole number of days, 0 or more (0 keeps them forever)")
    policy = retention.Policy(settings.retention_days if days is None else days,
                              settings.retention_failed_days if failed_days is None else failed_days,
                              settings.audit_retention_days)
    return retention.prune(lexy.db, policy, dry_run=dry_run)
