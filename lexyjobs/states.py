"""The run state machine: ``RunStatus``, the allowed moves, and ``transition_many`` /
``transition_each`` — the only code that writes ``runs.status``. Each move is a conditional
UPDATE (compare-and-set on the expected status and, for worker writes, the lease) plus an event
row in the same transaction."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Iterable, Mapping, Sequence, cast

from sqlalchemy import Row, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from lexyjobs import prepared, run_counts
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
    values_of = {"b_lease": lease, **{f"v_{k}": v for k, v in params.items()}}
    moved = [row for size, chunk in prepared.id_chunks(ids) for row in prepared.run(
        session, _update_statement(expected, to, lease is not None, shape, tuple(returning), size), {**chunk, **values_of})]
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


@functools.lru_cache(maxsize=512)
def _update_statement(expected: RunStatus, to: RunStatus, fenced: bool, shape: tuple[tuple[str, _Step | None], ...],
                      returning: tuple[Any, ...], count: int) -> Any:
    """The compare-and-set UPDATE for one shape of transition and ``count`` runs, built and
    compiled once (``lexyjobs.prepared``: building and executing SQLAlchemy statements costs
    more than SQLite running them). ``shape`` names the columns set (and which of them step);
    values arrive as bind parameters ``v_<column>`` (never a bare column name: in an UPDATE
    that would be taken as a SET value)."""
    condition = [prepared.ids_in(RUNS.c.id, count)[0], RUNS.c.status == expected.value]
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


def read_runs(session: Session, run_ids: Iterable[int], *, postgres: bool) -> dict[int, Any]:
    """The runs ``transition_each`` decides on, by id: rows of (id, job_name, status, lease,
    attempt, cancel_requested, cancel_requested_at), row-locked in id order on Postgres. A
    worker reads them once, before it decides how its runs end (a cancel request that comes
    later waits for the lock, then finds the run finished), and passes them on as ``current``."""
    ids = sorted(set(run_ids))  # chunks in id order: row locks in id order
    return {row.id: row for size, chunk in prepared.id_chunks(ids)
            for row in prepared.run(session, _current_of(size, postgres), chunk)}


def transition_each(session: Session, changes: Sequence[Change], *, expected: RunStatus, at: datetime,
                    postgres: bool, events: list[dict[str, Any]] | None = None,
                    current: Mapping[int, Any] | None = None) -> list[int]:
    """Move several runs, each with its own target, values and lease: a worker's finished batch.
    One read of the runs (row-locked in id order on Postgres; SQLite's write transaction already
    excludes other writers) decides which are still ``expected`` under the lease their change
    names; then one UPDATE per shape (target and columns set), executed for each such run
    (executemany) and still fenced, moves them. Returns the ids moved; the others (lease lost)
    are left alone. Event rows as in ``transition_many``. ``current``: the runs as ``read_runs``
    read them in this transaction (else they are read here)."""
    for change in changes:
        if change.to not in ALLOWED[expected]:
            raise ValueError(f"a run cannot go from {expected} to {change.to}")
    if not changes:
        return []
    if current is None:
        current = read_runs(session, (c.run_id for c in changes), postgres=postgres)
    mine = [c for c in changes if (row := current.get(c.run_id)) is not None
            and row.status == expected.value and row.lease == c.lease]
    shapes: dict[tuple[RunStatus, tuple[str, ...]], list[Change]] = {}
    for change in mine:
        shapes.setdefault((change.to, tuple(sorted(change.values))), []).append(change)
    for (to, columns), group in shapes.items():
        if postgres:
            _pg_fenced_update(session, expected, to, columns, group)
        else:  # SQLite: executemany costs no round trips
            prepared.run_many(session, _fenced_update(expected, to, columns),
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


@functools.lru_cache(maxsize=512)
def _current_of(count: int, postgres: bool) -> Any:
    """``read_runs``' read of ``count`` runs, row-locked in id order on Postgres."""
    read = (select(RUNS.c.id, RUNS.c.job_name, RUNS.c.status, RUNS.c.lease, RUNS.c.attempt, RUNS.c.cancel_requested,
                   RUNS.c.cancel_requested_at)
            .where(prepared.ids_in(RUNS.c.id, count)[0]).order_by(RUNS.c.id))
    return read.with_for_update(of=RUNS) if postgres else read


@functools.lru_cache(maxsize=64)
def _fenced_update(expected: RunStatus, to: RunStatus, columns: tuple[str, ...]) -> Any:
    """``UPDATE runs SET status = to, <columns> WHERE id = :b_id AND status = expected AND
    lease = :b_lease``, built once per shape (see ``_update_statement``)."""
    return (update(RUNS).where(RUNS.c.id == bindparam("b_id"), RUNS.c.status == expected.value,
                               RUNS.c.lease == bindparam("b_lease"))
            .values(status=to.value, **{column: bindparam(f"v_{column}") for column in columns}))


def _pg_fenced_update(session: Session, expected: RunStatus, to: RunStatus, columns: tuple[str, ...],
                      group: Sequence[Change]) -> None:
    """Postgres: ``_fenced_update`` for every change of ``group`` in one statement (``UPDATE …
    FROM unnest(arrays)``, one array per column): an executemany of a 40-run batch took ~6 ms,
    each row a statement on the server. Values are bound as SQLAlchemy binds them (the columns'
    own processors: JSON ``null``, UTC datetimes)."""
    sql, processors = _pg_fenced_sql(expected, to, columns, prepared.dialect_of(session))
    params: dict[str, Any] = {"b_id": [c.run_id for c in group], "b_lease": [c.lease for c in group]}
    for column, process in zip(columns, processors):
        params[f"v_{column}"] = [process(c.values[column]) if process else c.values[column] for c in group]
    session.connection().exec_driver_sql(sql, params)


@functools.lru_cache(maxsize=64)
def _pg_fenced_sql(expected: RunStatus, to: RunStatus, columns: tuple[str, ...], dialect: Any) -> tuple[str, list[Any]]:
    types = [RUNS.c[column].type.dialect_impl(dialect) for column in columns]
    arrays = ", ".join(["%(b_id)s::bigint[]", "%(b_lease)s::integer[]",
                        *(f"%(v_{column})s::{kind.compile(dialect=dialect)}[]" for column, kind in zip(columns, types))])
    names = ", ".join(["b_id", "b_lease", *(f"v_{column}" for column in columns)])
    sets = ", ".join([f"status = '{to.value}'", *(f"{column} = v.v_{column}" for column in columns)])
    sql = (f"UPDATE runs SET {sets} FROM unnest({arrays}) AS v({names}) "
           f"WHERE runs.id = v.b_id AND runs.lease = v.b_lease AND runs.status = '{expected.value}'")
    return sql, [kind.bind_processor(dialect) for kind in types]


def insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write event rows collected by ``transition_many(..., events=...)``."""
    if not rows:
        return
    if prepared.dialect_of(session).name == "postgresql":  # one statement, one round trip, whatever the rows
        session.connection().exec_driver_sql(_PG_INSERT_EVENTS, {k: [row.get(k) for row in rows] for k in _EVENT_COLUMNS})
    else:  # SQLite: executemany costs no round trips
        prepared.run_many(session, _INSERT_EVENT, [{f"e_{k}": row.get(k) for k in _EVENT_COLUMNS} for row in rows])


_EVENT_COLUMNS = ("run_id", "at", "from_status", "to_status", "attempt", "note")
# Postgres: the rows as one array per column (an executemany of 40 rows took ~3 ms, each row a
# statement on the server).
_PG_INSERT_EVENTS = ("INSERT INTO run_events (run_id, at, from_status, to_status, attempt, note) "
                     "SELECT * FROM unnest(%(run_id)s::bigint[], %(at)s::timestamptz[], %(from_status)s::varchar[], "
                     "%(to_status)s::varchar[], %(attempt)s::integer[], %(note)s::text[])")
_INSERT_EVENT = insert(EVENTS).values(**{column: bindparam(f"e_{column}", type_=EVENTS.c[column].type)
                                         for column in _EVENT_COLUMNS})


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
