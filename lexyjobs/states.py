"""The run state machine: ``RunStatus``, the allowed moves, and ``transition_many`` — the only
code that writes ``runs.status``. Each move is one conditional UPDATE (compare-and-set on the
expected status and, for worker writes, the lease) plus an event row in the same transaction."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Iterable, Sequence

from sqlalchemy import Row, insert, update
from sqlalchemy.orm import Session

from lexyjobs.errors import TransitionConflict
from lexyjobs.models import Run, RunEvent


class RunStatus(StrEnum):
    QUEUED = "queued"        # waiting for a worker (maybe delayed until scheduled_for, e.g. a retry)
    RUNNING = "running"      # claimed by a worker that holds the run's current lease
    SUCCEEDED = "succeeded"  # finished without error
    FAILED = "failed"        # finished with an error and no attempts left (or not retryable)
    CANCELED = "canceled"    # stopped on request before or while running


TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED})

ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELED}),
    # back to QUEUED: retry with backoff, rescue from a dead worker, re-queue on shutdown
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.QUEUED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELED: frozenset(),
}


def transition_many(session: Session, run_ids: Iterable[int], to: RunStatus, *, expected: RunStatus,
                    at: datetime, lease: int | None = None, note: str | None = None,
                    values: dict[str, Any] | None = None, returning: Sequence[Any] = ()) -> list[Row[Any]]:
    """Move every run in ``run_ids`` that is still ``expected`` (and holds ``lease`` when given)
    to ``to``, setting ``values`` too. Returns the moved runs as rows of (id, job_name, attempt,
    lease, *returning) after the change; the others are left alone. Writes one RunEvent per moved
    run in the caller's transaction."""
    if to not in ALLOWED[expected]:
        raise ValueError(f"a run cannot go from {expected} to {to}")
    ids = list(run_ids)
    if not ids:
        return []
    condition = [Run.id.in_(ids), Run.status == expected.value]
    if lease is not None:
        condition.append(Run.lease == lease)
    statement = (update(Run).where(*condition).values(status=to.value, **(values or {}))
                 .returning(Run.id, Run.job_name, Run.attempt, Run.lease, *returning))
    moved = list(session.execute(statement, execution_options={"synchronize_session": False}))
    if moved:
        session.execute(insert(RunEvent), [
            {"run_id": m.id, "at": at, "from_status": expected.value, "to_status": to.value,
             "attempt": m.attempt, "note": note} for m in moved])
    return moved


def transition(session: Session, run_id: int, to: RunStatus, *, expected: RunStatus, at: datetime,
               lease: int | None = None, note: str | None = None, **values: Any) -> Row[Any]:
    """Move one run; raise TransitionConflict if it was not ``expected`` (or lost its lease)."""
    moved = transition_many(session, [run_id], to, expected=expected, at=at, lease=lease, note=note, values=values)
    if not moved:
        raise TransitionConflict(f"run {run_id} is not {expected}" + (f" with lease {lease}" if lease is not None else ""),
                                 details={"run_id": run_id, "expected": expected.value, "to": to.value})
    return moved[0]
