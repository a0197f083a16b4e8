"""Runs per job and status kept as counters, so that the dashboard and the runs list read a few
dozen rows instead of counting a history of millions (``count(*)`` over 1,000,000 runs took
67 ms on SQLite and 136 ms on Postgres, and grows with every run kept).

Every change of a run's existence or status adds to the transaction's pending changes: its
insert (``lexyjobs.store.insert_runs``), each status transition (``lexyjobs.states``, the only
writer of ``runs.status``) and its deletion by retention. A job's deletion takes its counters
along (a foreign key with ON DELETE CASCADE, like its runs). The pending changes are written
when the transaction commits, in one statement, so a counter row is locked only for the last
moment of a transaction and never while it waits for a run's row lock (no deadlock between a
worker's finished batch and an operator's bulk cancel). On Postgres each transaction adds to
one of ``SLOTS`` rows per (job, status), chosen at random, so concurrent workers rarely wait for
each other's counters; readers sum the slots.

A session that joins a transaction it does not commit (``lexyjobs.enqueueing`` inside a host
application's transaction) writes its changes itself with ``write_pending``."""
from __future__ import annotations

import functools
import random
from collections import Counter
from typing import Any, Iterable

from sqlalchemy import Table, bindparam, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from lexyjobs import prepared
from lexyjobs.models import Run, RunCount

RUNS: Table = Run.__table__  # type: ignore[assignment]
RUN_COUNTS: Table = RunCount.__table__  # type: ignore[assignment]
SLOTS = 8
_PENDING = "lexyjobs_run_counts"


def add(session: Session, changes: Iterable[tuple[str, str, int]]) -> None:
    """Note ``(job, status, delta)`` changes, written when ``session`` commits."""
    pending: Counter[tuple[str, str]] = session.info.setdefault(_PENDING, Counter())
    for job, status, delta in changes:
        pending[(job, status)] += delta


def moved(session: Session, jobs: Iterable[str], from_status: str, to_status: str) -> None:
    """Note that one run of each of ``jobs`` (repeated per run) went from one status to another."""
    add(session, ((job, status, delta) for job in jobs for status, delta in ((from_status, -1), (to_status, 1))))


def write_pending(session: Session) -> None:
    """Write the pending changes now, in ``session``'s transaction (sorted, one slot)."""
    pending: Counter[tuple[str, str]] | None = session.info.pop(_PENDING, None)
    changes = sorted((key, n) for key, n in (pending or {}).items() if n)
    if not changes:
        return
    dialect = session.get_bind().dialect.name
    slot = random.randrange(SLOTS) if dialect == "postgresql" else 0
    prepared.run_many(session, _upsert(dialect), [{"c_job": job, "c_status": status, "c_slot": slot, "c_n": n}
                                                  for (job, status), n in changes])


@functools.cache
def _upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(RUN_COUNTS).values(job_name=bindparam("c_job"), status=bindparam("c_status"),
                                          slot=bindparam("c_slot"), n=bindparam("c_n", type_=RUN_COUNTS.c.n.type))
    return statement.on_conflict_do_update(index_elements=["job_name", "status", "slot"],
                                           set_={"n": RUN_COUNTS.c.n + statement.excluded.n})


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    if session.info.get(_PENDING):
        write_pending(session)


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def totals(session: Session, job: str | None = None) -> dict[str, int]:
    """Runs per status (only the statuses that have some), of one job or of all."""
    query = select(RUN_COUNTS.c.status, func.sum(RUN_COUNTS.c.n)).group_by(RUN_COUNTS.c.status)
    if job is not None:
        query = query.where(RUN_COUNTS.c.job_name == job)
    return {status: int(n) for status, n in session.execute(query) if n}


def recount(session: Session) -> None:
    """Rebuild the counters from the runs themselves (after a restore or a manual edit of ``runs``)."""
    session.info.pop(_PENDING, None)
    session.execute(RUN_COUNTS.delete())
    grouped = select(RUNS.c.job_name, RUNS.c.status, func.count()).group_by(RUNS.c.job_name, RUNS.c.status)
    rows = [{"job_name": job, "status": status, "slot": 0, "n": n} for job, status, n in session.execute(grouped)]
    if rows:
        session.execute(RUN_COUNTS.insert(), rows)


def drift(session: Session) -> dict[tuple[str, str], tuple[int, int]]:
    """Where the counters disagree with the runs: ``{(job, status): (counted, actual)}``."""
    actual = {(job, status): n for job, status, n in session.execute(
        select(RUNS.c.job_name, RUNS.c.status, func.count()).group_by(RUNS.c.job_name, RUNS.c.status))}
    counted = {(job, status): int(n) for job, status, n in session.execute(
        select(RUN_COUNTS.c.job_name, RUN_COUNTS.c.status, func.sum(RUN_COUNTS.c.n))
        .group_by(RUN_COUNTS.c.job_name, RUN_COUNTS.c.status))}
    return {key: (counted.get(key, 0), actual.get(key, 0)) for key in set(actual) | set(counted)
            if counted.get(key, 0) != actual.get(key, 0)}
