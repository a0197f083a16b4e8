"""Manual actions — what a person or a token does through the API, the panel or the CLI. Each one
checks the actor's role, does the work through the engine (``runs``, ``registry``, ``store``) and
writes its audit entry, so every entry point gets the same rules and the same trail."""
from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from lexyjobs import accounts, audit, backfill, pipelines, registry, runs, store
from lexyjobs.accounts import Identity
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import JobDefinition
from lexyjobs.errors import Conflict, JobNotFound, LexyjobsError, NotFound
from lexyjobs.flow import queue_state
from lexyjobs.flow.unique import IdempotencyKey
from lexyjobs.masking import restore_masked
from lexyjobs.queries import RunFilter
from lexyjobs.states import RunStatus


class Forbidden(LexyjobsError):
    """You do not have the role this needs."""

    status_code = 403
    code = "forbidden"


@dataclass(frozen=True)
class Actor:
    """Who acts and from where (the client address goes to the audit log)."""

    identity: Identity
    client: str | None = None

    def require(self, role: str) -> None:
        if not self.identity.can(role):
            raise Forbidden(f"this needs the {role} role; {self.identity.actor} has {self.identity.role}",
                            details={"required_role": role, "role": self.identity.role})

    def record(self, action: str, target: str | None, details: dict[str, Any] | None = None, *,
               db: Database) -> None:
        audit.record(db, self.identity.actor, action, target, client=self.client, details=details)


def run_job(db: Database, actor: Actor, name: str, params: Mapping[str, Any] | None = None, *,
            priority: int | None = None, scheduled_for: datetime | None = None, trigger: str = "api",
            params_from_strings: bool = False, key: IdempotencyKey | None = None) -> runs.Enqueued:
    """Enqueue a run of ``name`` (operator). An existing run may answer instead (same
    idempotency ``key``, a unique job's duplicate): then nothing is created or audited."""
    actor.require("operator")
    done = runs.submit(db, name, params, priority=priority, scheduled_for=scheduled_for, trigger=trigger,
                       created_by=actor.identity.actor, params_from_strings=params_from_strings, key=key)
    if done.existing is None:
        actor.record("run.create", name, {"run_id": done.run_id}, db=db)
    return done


def cancel_run(db: Database, actor: Actor, run_id: int) -> str:
    """Cancel a queued or running run (operator); returns "canceled" or "cancel requested"."""
    actor.require("operator")
    outcome = runs.cancel(db, run_id, by=actor.identity.actor)
    actor.record("run.cancel", str(run_id), {"outcome": outcome}, db=db)
    return outcome


def retry_run(db: Database, actor: Actor, run_id: int) -> runs.Enqueued:
    """Enqueue a new attempt of a finished run (operator); for a unique job whose duplicate is
    active, that run answers instead (nothing is created or audited)."""
    actor.require("operator")
    done = runs.submit_retry(db, run_id, by=actor.identity.actor)
    if done.existing is None:
        actor.record("run.retry", str(run_id), {"run_id": done.run_id}, db=db)
    return done


def start_backfill(db: Database, actor: Actor, name: str, start: datetime, end: datetime,
                   **options: Any) -> backfill.Started:
    """Backfill ``name`` over a past range (operator): one run per fire time or day (lexyjobs.backfill)."""
    actor.require("operator")
    started = backfill.start(db, name, start, end, by=actor.identity.actor, **options)
    actor.record("backfill.start", name, {"backfill_id": started.backfill_id, "runs": len(started.run_ids),
                                          "skipped": len(started.skipped), "start": start.isoformat(),
                                          "end": end.isoformat()}, db=db)
    return started


def cancel_backfill(db: Database, actor: Actor, backfill_id: int) -> tuple[int, int]:
    """Cancel a backfill's unfinished runs (operator)."""
    actor.require("operator")
    counts = backfill.cancel(db, backfill_id, by=actor.identity.actor)
    actor.record("backfill.cancel", str(backfill_id), {"canceled": counts[0], "cancel_requested": counts[1]}, db=db)
    return counts


def set_paused(db: Database, actor: Actor, name: str, paused: bool) -> None:
    """Pause or resume a job's schedule (operator). A paused job can still be run by hand."""
    actor.require("operator")
    with db.write() as session:
        if not store.set_job_enabled(session, name, not paused, now=utcnow()):
            raise JobNotFound(name)
    actor.record("job.pause" if paused else "job.resume", name, db=db)


def set_category_paused(db: Database, actor: Actor, category: str, paused: bool) -> list[str]:
    """Pause or resume the schedules of every job of ``category`` in one action (operator); one
    audit entry names the jobs that changed. Returns them; NotFound when the category has no job."""
    actor.require("operator")
    names: list[str] = []
    if category and "\x00" not in category and len(category) <= 100:  # else no job can have it (nor Postgres take it)
        with db.write() as session:
            names, changed = store.set_category_enabled(session, category, not paused, now=utcnow())
    if not names:
        raise NotFound(f"no job has the category '{category}'", details={"category": category})
    actor.record("category.pause" if paused else "category.resume", category, {"jobs": changed}, db=db)
    return changed


def set_queue_paused(db: Database, actor: Actor, name: str, paused: bool, *, stale_after: float) -> bool:
    """Pause or resume the named queue ``name`` (operator), for every process at its next claim.
    Schedules keep firing into a paused queue; its runs wait. A resume wakes the workers. Only a
    queue lexyjobs knows (of a job, a run, a worker or paused before) can be paused: NotFound
    otherwise, so a typo does not pause nothing. Returns whether the state changed."""
    actor.require("operator")
    now = utcnow()
    with db.read() as session:  # outside the write: SQLite's one write lock is held only to write
        known = queue_state.known_queues(session, now=now, stale_after=stale_after)
    if name not in known:
        raise NotFound(f"no queue named '{name}' (queues: {', '.join(known)})", details={"queue": name, "queues": known})
    with db.write() as session:
        changed = queue_state.set_paused(session, name, paused, by=actor.identity.actor, now=now)
        if changed and not paused:
            db.enqueued(session)  # idle workers claim now, here and in other processes
    actor.record("queue.pause" if paused else "queue.resume", name, {"changed": changed}, db=db)
    return changed


def create_job(db: Database, actor: Actor, name: str, definition: Mapping[str, Any]) -> JobDefinition:
    actor.require("admin")
    created = registry.create_job(db, name, definition)
    actor.record("job.create", name, db=db)
    return created


def update_job(db: Database, actor: Actor, name: str, definition: Mapping[str, Any]) -> JobDefinition:
    """Replace a database job's definition (admin). Masked values (``****``) sent back unchanged
    keep the stored secret."""
    actor.require("admin")
    with db.read() as session:
        current = store.get_job(session, name)
    if current is None:
        raise JobNotFound(name)
    updated = registry.update_job(db, name, restore_masked(dict(definition), current.spec))
    actor.record("job.update", name, db=db)
    return updated


def delete_job(db: Database, actor: Actor, name: str) -> None:
    actor.require("admin")
    registry.delete_job(db, name)
    actor.record("job.delete", name, db=db)


# ---------------------------------------------------------------- bulk actions (the runs list)

BULK_LIMIT = 10_000  # runs one bulk action may touch; past that, narrow the filter
BULK_CHUNK = 500     # runs per write transaction, so a big bulk never holds the write lock long
BULK_STATUSES: dict[str, tuple[str, ...]] = {
    "cancel": (RunStatus.QUEUED.value, RunStatus.RUNNING.value),
    "retry": (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELED.value),
}


class TooManyRuns(LexyjobsError):
    """A bulk action may touch at most BULK_LIMIT runs at once."""

    status_code = 422
    code = "too_many_runs"


@dataclass(frozen=True)
class BulkOutcome:
    """What a bulk action did: ``done`` runs acted on, ``skipped`` ones it could not act on
    (finished, not finished, gone…). For cancel, ``requested`` of the done ones were running:
    their workers were asked to stop them."""

    done: int
    skipped: int
    requested: int = 0


def bulk_filter(where: RunFilter, action: str) -> RunFilter | None:
    """``where`` narrowed to the statuses ``action`` ("cancel"/"retry") applies to; None when
    ``where`` asks only for statuses it cannot apply to."""
    allowed = BULK_STATUSES[action]
    statuses = tuple(s for s in (where.statuses or allowed) if s in allowed)
    return dataclasses.replace(where, statuses=statuses) if statuses else None


def bulk_cancel(db: Database, actor: Actor, run_ids: Sequence[int], *,
                matching: Mapping[str, Any] | None = None) -> BulkOutcome:
    """Cancel many runs (operator), like ``cancel_run`` each: queued ones at once, running ones
    flagged for their worker; finished or unknown ones are skipped. ``matching`` (the filter that
    chose them, if one did) goes to the single audit entry."""
    ids = _bulk_ids(actor, run_ids)
    by = actor.identity.actor
    canceled = requested = 0
    for start in range(0, len(ids), BULK_CHUNK):
        moved, flagged = runs.cancel_many(db, ids[start:start + BULK_CHUNK], by=by)
        canceled, requested = canceled + moved, requested + flagged
    outcome = BulkOutcome(canceled + requested, len(ids) - canceled - requested, requested)
    actor.record("run.bulk_cancel", f"{len(ids)} runs", _bulk_details(ids, outcome, matching), db=db)
    return outcome


def bulk_retry(db: Database, actor: Actor, run_ids: Sequence[int], *,
               matching: Mapping[str, Any] | None = None) -> BulkOutcome:
    """Retry many finished runs (operator), like ``retry_run`` each; runs not finished, unknown,
    or whose job is gone or no longer accepts their params are skipped. One audit entry."""
    ids = _bulk_ids(actor, run_ids)
    by = actor.identity.actor
    retried = sum(runs.retry_many(db, ids[start:start + BULK_CHUNK], by=by) for start in range(0, len(ids), BULK_CHUNK))
    outcome = BulkOutcome(retried, len(ids) - retried)
    actor.record("run.bulk_retry", f"{len(ids)} runs", _bulk_details(ids, outcome, matching), db=db)
    return outcome


def _bulk_ids(actor: Actor, run_ids: Sequence[int]) -> list[int]:
    actor.require("operator")
    ids = list(dict.fromkeys(run_ids))
    if len(ids) > BULK_LIMIT:
        raise TooManyRuns(f"{len(ids):,} runs selected; a bulk action takes at most {BULK_LIMIT:,} at once",
                          details={"count": len(ids), "limit": BULK_LIMIT})
    return ids


def _bulk_details(ids: list[int], outcome: BulkOutcome, matching: Mapping[str, Any] | None) -> dict[str, Any]:
    details: dict[str, Any] = {"run_ids": ids[:100], "count": len(ids), "done": outcome.done,
                               "skipped": outcome.skipped}
    if matching is not None:
        details["filter"] = dict(matching)
    return details


# ---------------------------------------------------------------- pipelines (the job detail page)

def run_pipeline_from(db: Database, actor: Actor, name: str) -> runs.Enqueued:
    """Start a pipeline at ``name`` (operator): a manual run of it with a new ``pipeline_id``; the
    jobs downstream of it follow as their upstreams succeed (``pipelines.advance``). Conflict when
    nothing depends on ``name``. Returns the run; one audit entry names the steps. A unique job
    whose duplicate is active starts nothing: that run answers (``existing``)."""
    actor.require("operator")
    with db.read() as session:
        graph = store.job_dependencies(session)
    if name not in graph:
        raise JobNotFound(name)
    steps = pipelines.descendants(graph, name)
    if not steps:
        raise Conflict(f"no job depends on '{name}': run it on its own instead", details={"job": name})
    pipeline_id = uuid.uuid4().hex
    done = runs.submit(db, name, trigger="manual", created_by=actor.identity.actor, pipeline_id=pipeline_id)
    if done.existing is None:
        actor.record("pipeline.start", name, {"run_id": done.run_id, "pipeline_id": pipeline_id,
                                              "steps": [name, *steps]}, db=db)
    return done


# ---------------------------------------------------------------- accounts (the settings page)

def create_token(db: Database, actor: Actor, name: str, role: str) -> str:
    """Create an API token (admin) and return it. The caller shows it once; it is stored only as
    its SHA-256 and never written to the audit log."""
    actor.require("admin")
    token = accounts.create_token(db, name, role, created_by=actor.identity.actor)
    actor.record("token.create", name, {"role": role}, db=db)
    return token


def revoke_token(db: Database, actor: Actor, name: str) -> None:
    """Revoke an API token (admin); requests bearing it are refused from now on."""
    actor.require("admin")
    accounts.revoke_token(db, name)
    actor.record("token.revoke", name, db=db)


def add_user(db: Database, actor: Actor, username: str, password: str, role: str) -> None:
    """Create a panel login (admin)."""
    actor.require("admin")
    accounts.add_user(db, username, password, role)
    actor.record("user.add", username, {"role": role}, db=db)


def set_role(db: Database, actor: Actor, username: str, role: str) -> None:
    """Change a user's role (admin). The last admin cannot be demoted (Conflict). The change
    applies to the user's next request: sessions read the role from the database each time."""
    actor.require("admin")
    before = accounts.set_role(db, username, role)
    actor.record("user.set_role", username, {"from": before, "to": role}, db=db)


def remove_user(db: Database, actor: Actor, username: str) -> None:
    """Delete a user (admin); their sessions stop working at once. Nobody removes themselves
    (Conflict): another admin must, so an admin never locks themselves out by a slip."""
    actor.require("admin")
    if actor.identity.kind == "user" and actor.identity.name == username:
        raise Conflict("you cannot remove yourself; ask another admin to do it", details={"username": username})
    accounts.remove_user(db, username)
    actor.record("user.remove", username, db=db)
