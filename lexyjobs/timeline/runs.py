"""The runs a timeline window shows, read without touching the rest of the history.

A window of a week over a million runs holds a quarter of them, so nothing here reads every run in
the window: per job it takes the newest ``per_job`` runs created in the window (one index range on
``ix_runs_job_created`` each, in UNION ALL batches) and, for the jobs that have more, a count of
the rest from the same index, up to ``MORE_CAP`` (beyond, the row says "+500+ more": counting a
busy week exactly read ~250,000 index entries, most of the page's SQL, and counting up to 1,000
still took ~8 ms of the page's 60 at 1M runs). Runs created before the window still show when they
end inside it or have not ended: the finished ones of the jobs not already full
(``ix_runs_job_outcome``, a short range per job and status) and the queued or running ones
(``ix_runs_status_id``, bounded by the first id created in the window: ids grow with creation).

Times come back as seconds since the epoch, computed by the database: thousands of bars, four
times each, parsed into datetimes cost more than the queries."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import Float, Integer, bindparam, cast, func, select, text, union_all
from sqlalchemy.orm import Session

from lexyjobs.models import Run, UTCDateTime
from lexyjobs.states import TERMINAL, RunStatus

BATCH = 200  # jobs per UNION ALL (SQLite allows 500 terms in one compound SELECT)
ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
FINISHED = tuple(sorted(s.value for s in TERMINAL))
OLD_ACTIVE_LIMIT = 500  # queued/running runs created before the window (a stuck backlog stays cheap)
MORE_CAP = 500  # the window's runs left out of a row are counted up to this many
_JULIAN_EPOCH = 2440587.5  # julianday('1970-01-01')


@dataclass(slots=True)  # (not frozen: a frozen dataclass's __init__ costs several times more, per run)
class Span:
    """One run as the timeline draws it; times in seconds since the epoch (UTC)."""

    id: int
    job: str
    status: str
    trigger: str
    attempt: int
    created: float
    scheduled: float
    started: float | None
    finished: float | None
    due: float  # when it began to wait: its due time, or its creation when it was made after that

    @classmethod
    def of(cls, id: int, job: str, status: str, trigger: str, attempt: int, created: float, scheduled: float,
           started: float | None, finished: float | None) -> Span:
        return cls(id, job, status, trigger, attempt, created, scheduled, started, finished,
                   created if created > scheduled else scheduled)


@dataclass
class JobRuns:
    """A row's runs: ``spans`` (newest first) and how many more the window holds (at least, when
    ``more`` reached ``MORE_CAP``)."""

    spans: list[Span] = field(default_factory=list)
    more: int = 0

    @property
    def more_capped(self) -> bool:
        return self.more >= MORE_CAP


def window_runs(session: Session, names: Sequence[str], *, start: datetime, end: datetime,
                per_job: int) -> dict[str, JobRuns]:
    """The runs of each job in ``names`` that show between ``start`` and ``end``: at most
    ``per_job`` created in the window (the newest), plus those created before it that end in it
    or have not ended. ``more`` counts the window's runs left out. Reads only the window's rows."""
    postgres = session.get_bind().dialect.name == "postgresql"
    connection = session.connection()  # Core, fetched at once: the ORM's path costs more per row
    found = {name: JobRuns() for name in names}
    seen: set[int] = set()
    window = {"start": start, "end": end, "limit": per_job + 1}
    if postgres:  # one LATERAL join: planning a UNION ALL of a hundred branches cost more than running it
        _add(found, seen, connection.execute(_NEWEST_POSTGRES, {**window, "names": list(names)}).all())
    for first in range(0, 0 if postgres else len(names), BATCH):
        batch = names[first:first + BATCH]
        values: dict[str, Any] = {f"job_{i}": name for i, name in enumerate(batch)}
        _add(found, seen, connection.execute(_newest_statement(len(batch)), {**window, **values}).all())
    full = [name for name, runs in found.items() if len(runs.spans) > per_job]
    for name in full:  # (a UNION ALL promises no order)
        found[name].spans.sort(key=lambda s: (s.created, s.id), reverse=True)
        del found[name].spans[per_job:]
    if full:
        for name, count in _counts(session, full, {**window, "limit": per_job + MORE_CAP}, postgres):
            found[name].more = max(0, count - len(found[name].spans))
    left = set(full)
    open_jobs = [name for name in names if name not in left]
    if open_jobs:
        _add(found, seen, connection.execute(_ended_inside(open_jobs, start, per_job, postgres)).all())
    _add(found, seen, (row for row in connection.execute(_still_active(session, start, postgres)) if row[1] in found))
    for runs in found.values():
        runs.spans.sort(key=lambda s: (s.created, s.id), reverse=True)
    return found


def _counts(session: Session, names: list[str], window: dict[str, Any], postgres: bool) -> list[Any]:
    """(job, runs created in the window, at most ``:limit``) for each of ``names``."""
    if postgres:
        return list(session.execute(_COUNTS_POSTGRES, {**window, "names": names}))
    found: list[Any] = []
    for first in range(0, len(names), BATCH):
        batch = names[first:first + BATCH]
        found += session.execute(_count_statement(len(batch)),
                                 {**window, **{f"job_{i}": name for i, name in enumerate(batch)}}).all()
    return found


def _add(found: dict[str, JobRuns], seen: set[int], rows: Any) -> None:
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            found[row[1]].spans.append(Span.of(*row))


def _epoch(column: Any, postgres: bool) -> Any:
    if postgres:
        return cast(func.extract("epoch", column), Float)
    return (func.julianday(column) - _JULIAN_EPOCH) * 86400.0


def _columns(postgres: bool) -> list[Any]:
    """Span's fields, in order."""
    return [Run.id, Run.job_name, Run.status, Run.trigger, Run.attempt,
            *(_epoch(c, postgres).label(c.key) for c in (Run.created_at, Run.scheduled_for, Run.started_at,
                                                          Run.finished_at))]


# Postgres: per job of :names, its newest :limit runs created in [:start, :end] (ix_runs_job_created)
_NEWEST_POSTGRES = text("""
SELECT r.id, r.job_name, r.status, r."trigger", r.attempt, extract(epoch FROM r.created_at)::float8,
       extract(epoch FROM r.scheduled_for)::float8, extract(epoch FROM r.started_at)::float8,
       extract(epoch FROM r.finished_at)::float8
FROM unnest(CAST(:names AS varchar[])) AS j(name)
CROSS JOIN LATERAL (SELECT * FROM runs WHERE runs.job_name = j.name AND runs.created_at >= :start
                    AND runs.created_at <= :end ORDER BY runs.created_at DESC LIMIT :limit) AS r""")


@functools.lru_cache(maxsize=16)
def _newest_statement(count: int) -> Any:
    """Per job, its newest ``:limit`` runs created in [:start, :end] (one short index range each),
    for ``count`` jobs ``:job_0``… (SQLite); built once, as building a hundred subqueries costs
    more than running them, and so SQLAlchemy's compiled cache serves it too."""
    start, end = bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime())
    limit = bindparam("limit", type_=Integer())
    parts = [select(*_columns(False)).where(Run.job_name == bindparam(f"job_{i}"), Run.created_at >= start,
                                               Run.created_at <= end)
             .order_by(Run.created_at.desc()).limit(limit).subquery() for i in range(count)]
    selects = [select(*part.c) for part in parts]
    return selects[0] if count == 1 else union_all(*selects)


# Postgres: per job of :names, its runs created in [:start, :end], counted up to :limit
_COUNTS_POSTGRES = text("""
SELECT j.name, (SELECT count(*) FROM (SELECT 1 FROM runs WHERE runs.job_name = j.name AND runs.created_at >= :start
                                      AND runs.created_at <= :end LIMIT :limit) AS r)
FROM unnest(CAST(:names AS varchar[])) AS j(name)""")


@functools.lru_cache(maxsize=16)
def _count_statement(count: int) -> Any:
    """SQLite: for ``count`` jobs ``:job_0``…, (job, its runs created in [:start, :end] counted
    up to ``:limit``), one short index range each."""
    start, end = bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime())
    parts = [select(Run.id).where(Run.job_name == bindparam(f"job_{i}"), Run.created_at >= start,
                                  Run.created_at <= end).limit(bindparam("limit", type_=Integer())).subquery()
             for i in range(count)]
    selects = [select(bindparam(f"job_{i}", type_=Run.job_name.type), func.count()).select_from(part)
               for i, part in enumerate(parts)]
    return selects[0] if count == 1 else union_all(*selects)


def _ended_inside(names: Sequence[str], start: datetime, per_job: int, postgres: bool) -> Any:
    """Runs of ``names`` created before ``start`` that finished after it (these jobs have few
    runs in the window, so each (job, status) range of ``ix_runs_job_outcome`` is short)."""
    return (select(*_columns(postgres)).where(Run.job_name.in_(names), Run.status.in_(FINISHED),
                                              Run.finished_at >= start, Run.created_at < start)
            .limit(per_job * len(names)))


def _still_active(session: Session, start: datetime, postgres: bool) -> Any:
    """Queued and running runs created before ``start`` (the oldest first, at most OLD_ACTIVE_LIMIT)."""
    first_inside = session.scalar(select(Run.id).where(Run.created_at >= start).order_by(Run.created_at).limit(1))
    query = select(*_columns(postgres)).where(Run.status.in_(ACTIVE), Run.created_at < start)
    if first_inside is not None:
        query = query.where(Run.id < first_inside)
    return query.order_by(Run.id).limit(OLD_ACTIVE_LIMIT)
