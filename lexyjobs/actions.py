"""Manual actions — what a person or a token does through the API, the panel or the CLI. Each one
checks the actor's role, does the work through the engine (``runs``, ``registry``, ``store``) and
writes its audit entry, so every entry point gets the same rules and the same trail."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from lexyjobs import audit, registry, runs, store
from lexyjobs.accounts import Identity
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import JobDefinition
from lexyjobs.errors import JobNotFound, LexyjobsError
from lexyjobs.masking import restore_masked


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
            params_from_strings: bool = False) -> int:
    """Enqueue a run of ``name`` (operator); returns the run id."""
    actor.require("operator")
    run_id = runs.enqueue(db, name, params, priority=priority, scheduled_for=scheduled_for, trigger=trigger,
                          created_by=actor.identity.actor, params_from_strings=params_from_strings)
    actor.record("run.create", name, {"run_id": run_id}, db=db)
    return run_id


def cancel_run(db: Database, actor: Actor, run_id: int) -> str:
    """Cancel a queued or running run (operator); returns "canceled" or "cancel requested"."""
    actor.require("operator")
    outcome = runs.cancel(db, run_id, by=actor.identity.actor)
    actor.record("run.cancel", str(run_id), {"outcome": outcome}, db=db)
    return outcome


def retry_run(db: Database, actor: Actor, run_id: int) -> int:
    """Enqueue a new attempt of a finished run (operator); returns the new run id."""
    actor.require("operator")
    new_id = runs.retry(db, run_id, by=actor.identity.actor)
    actor.record("run.retry", str(run_id), {"run_id": new_id}, db=db)
    return new_id


def set_paused(db: Database, actor: Actor, name: str, paused: bool) -> None:
    """Pause or resume a job's schedule (operator). A paused job can still be run by hand."""
    actor.require("operator")
    with db.write() as session:
        if not store.set_job_enabled(session, name, not paused, now=utcnow()):
            raise JobNotFound(name)
    actor.record("job.pause" if paused else "job.resume", name, db=db)


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
