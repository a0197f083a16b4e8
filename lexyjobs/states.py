"""The run state machine: ``RunStatus``, the allowed moves, and ``transition_many`` /
``transition_each`` — the only code that writes ``runs.status``. Each move is a conditional
UPDATE (compare-and-set on the expected status and, for worker writes, the lease) plus an event
row in the same transaction."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Iterable, Sequence, cast

from sqlalchemy import Row, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from lexyjobs import run_counts
from lexyjobs.errors import TransitionConflict
from lexyjobs.models import Run, RunEvent


class RunStatus(StrEnum):
    QUEUED = "queued"        # waiting for a worker (maybe delayed until scheduled_for, e.g. a retry)
    RUNNING = "running"      # claimed by a worker that holds the run's current lease
    SUCCEEDED = "succeeded"  # finished without error
    FAILED = "failed"        # finished with an error and no attempts left (or not retryable)
    CANCELED = "canceled"    # stopped on request before or while running
    BLOCKED = "blocked"      # never ran: an upstream in its pipeline failed or was canceled
    SKIPPED = "skipped"      # a scheduled fire that did not run (missed while down, or overlap policy)


RUNS, EVENTS = cast(Table, Run.__table__), cast(Table, RunEvent.__table__)

TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.BLOCKED,
                      RunStatus.SKIPPED})
# BLOCKED and SKIPPED runs are created in that state, as a record that something did not run;
# no transition leads into or out of them.

ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELED}),
    # back to QUEUED: retry with backoff, rescue from a dead worker, re-queue on shutdown
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.QUEUED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELED: frozenset(),
    RunStatus.BLOCKED: frozenset(),
    RunStatus.SKIPPED: frozenset(),
}


def transition_many(session: Session, run_ids: Iterable[int], to: RunStatus, *, expected: RunStatus,
                    at: datetime, lease: int | None = None, note: str | None = None,
                    values: dict[str, Any] | None = None, returning: Sequence[Any] = (),
                    events: list[dict[str, Any]] | None = None) -> list[Row[Any]]:
    """Move every run in ``run_ids`` that is still ``expected`` (and holds ``lease`` when given)
    to ``to``, setting ``values`` too. Returns the moved runs as rows of (id, job_name, attempt,
    lease, *returning) after the change; the others are left alone. Writes one RunEvent per moved
    run in the caller's transaction — or, when ``events`` is given, appends the rows there for
    the caller to write with ``insert_events`` before it commits (one INSERT for a batch)."""
    if to not in ALLOWED[expected]:
        raise ValueError(f"a run cannot go from {expected} to {to}")
    ids = list(run_ids)
    if not ids:
        return []
    values = values or {}
    params = {k: v for k, v in values.items() if not isinstance(v, _Step)}
    shape = tuple(sorted((k, v if isinstance(v, _Step) else None) for k, v in values.items()))  # no values
    statement = _update_statement(expected, to, lease is not None, shape, tuple(returning))
    moved = list(session.execute(statement, {"b_ids": ids, "b_lease": lease, **{f"v_{k}": v for k, v in params.items()}}))
    run_counts.moved(session, (m.job_name for m in moved), expected.value, to.value)
    rows = [{"run_id": m.id, "at": at, "from_status": expected.value, "to_status": to.value,
             "attempt": m.attempt, "note": note} for m in moved]
    if events is not None:
        events.extend(rows)
    else:
        insert_events(session, rows)
    return moved


class _Step:
    """A value meaning "the column's current value plus ``delta``" (cacheable, unlike an expression)."""

    def __init__(self, delta: int) -> None:
        self.delta = delta


INCREMENT, DECREMENT = _Step(1), _Step(-1)


@functools.lru_cache(maxsize=256)
def _update_statement(expected: RunStatus, to: RunStatus, fenced: bool, shape: tuple[tuple[str, _Step | None], ...],
                      returning: tuple[Any, ...]) -> Any:
    """The compare-and-set UPDATE for one shape of transition, built once and reused (building
    SQLAlchemy statements costs more than SQLite executing them). ``shape`` names the columns
    set (and which of them step); values arrive as bind parameters ``v_<column>`` (never a bare
    column name: in an UPDATE that would be taken as a SET value)."""
    condition = [RUNS.c.id.in_(bindparam("b_ids", expanding=True)), RUNS.c.status == expected.value]
    if fenced:
        condition.append(RUNS.c.lease == bindparam("b_lease"))
    assignments: dict[str, Any] = {"status": to.value}
    for column, value in shape:
        assignments[column] = RUNS.c[column] + value.delta if isinstance(value, _Step) else bindparam(f"v_{column}")
    return (update(RUNS).where(*condition).values(**assignments)
            .returning(RUNS.c.id, RUNS.c.job_name, RUNS.c.attempt, RUNS.c.lease, *returning))


@dataclass(frozen=True)
class Change:
    """One run's move in ``transition_each``: where to, the lease it must still hold, its own
    column values and the note of its event row."""

    run_id: int
    lease: int
    to: RunStatus
    values: dict[str, Any]
    note: str | None = None


def transition_each(session: Session, changes: Sequence[Change], *, expected: RunStatus, at: datetime,
                    postgres: bool, events: list[dict[str, Any]] | None = None) -> list[int]:
    """Move several runs, each with its own target, values and lease: a worker's finished batch.
    One read of the runs (row-locked in id order on Postgres; SQLite's write transaction already
    excludes other writers) decides which are still ``expected`` under the lease their change
    names; then one UPDATE per shape (target and columns set), executed for each such run
    (executemany) and still fenced, moves them. Returns the ids moved; the others (lease lost)
    are left alone. Event rows as in ``transition_many``."""
    for change in changes:
        if change.to not in ALLOWED[expected]:
            raise ValueError(f"a run cannot go from {expected} to {change.to}")
    if not changes:
        return []
    read = select(RUNS.c.id, RUNS.c.job_name, RUNS.c.status, RUNS.c.lease, RUNS.c.attempt).where(
        RUNS.c.id.in_([c.run_id for c in changes])).order_by(RUNS.c.id)
    current = {row.id: row for row in session.execute(read.with_for_update(of=RUNS) if postgres else read)}
    mine = [c for c in changes if (row := current.get(c.run_id)) is not None
            and row.status == expected.value and row.lease == c.lease]
    shapes: dict[tuple[RunStatus, tuple[str, ...]], list[Change]] = {}
    for change in mine:
        shapes.setdefault((change.to, tuple(sorted(change.values))), []).append(change)
    for (to, columns), group in shapes.items():
        session.execute(_fenced_update(expected, to, columns),
                        [{"b_id": c.run_id, "b_lease": c.lease, **{f"v_{k}": c.values[k] for k in columns}}
                         for c in group])
        run_counts.moved(session, (current[c.run_id].job_name for c in group), expected.value, to.value)
    rows = [{"run_id": c.run_id, "at": at, "from_status": expected.value, "to_status": c.to.value,
             "attempt": current[c.run_id].attempt, "note": c.note} for c in mine]
    if events is not None:
        events.extend(rows)
    else:
        insert_events(session, rows)
    return [c.run_id for c in mine]


@functools.lru_cache(maxsize=64)
def _fenced_update(expected: RunStatus, to: RunStatus, columns: tuple[str, ...]) -> Any:
    """``UPDATE runs SET status = to, <columns> WHERE id = :b_id AND status = expected AND
    lease = :b_lease``, built once per shape (see ``_update_statement``)."""
    return (update(RUNS).where(RUNS.c.id == bindparam("b_id"), RUNS.c.status == expected.value,
                               RUNS.c.lease == bindparam("b_lease"))
            .values(status=to.value, **{column: bindparam(f"v_{column}") for column in columns}))


def insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write event rows collected by ``transition_many(..., events=...)``."""
    if rows:
        session.execute(insert(EVENTS), rows)


def transition(session: Session, run_id: int, to: RunStatus, *, expected: RunStatus, at: datetime,
               lease: int | None = None, note: str | None = None, events: list[dict[str, Any]] | None = None,
               **values: Any) -> Row[Any]:
    """Move one run; raise TransitionConflict if it was not ``expected`` (or lost its lease)."""
    moved = transition_many(session, [run_id], to, expected=expected, at=at, lease=lease, note=note, values=values,
                            events=events)
    if not moved:
        raise TransitionConflict(f"run {run_id} is not {expected}" + (f" with lease {lease}" if lease is not None else ""),
                                 details={"run_id": run_id, "expected": expected.value, "to": to.value})
    return moved[0]
