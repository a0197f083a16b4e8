"""Backfill: run a job once for each of its fire times (or each day) in a past range, with that
time as the run's fire time (``ctx.fire_time``, ``LEXYJOBS_FIRE_TIME``, ``{{ fire_time }}``).

The runs are enqueued together, oldest first, as one group (``backfills`` row, ``runs.backfill_id``):
they share the concurrency key ``backfill:<id>`` limited to the concurrency asked for, so with 1
they run one after the other, in order. Times that already have a succeeded run for that fire (the
schedule's own, or an earlier backfill's) are skipped unless asked. More than ``MAX_RUNS`` times
are refused: ask for a shorter range. Cancelling the group cancels its runs still queued or running."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lexyjobs import runs, store
from lexyjobs.cron import next_fire, parse_timezone
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import JobDefinition, definition_from_job
from lexyjobs.errors import JobNotFound, LexyjobsError, NotFound
from lexyjobs.fire_times import fire_time_of
from lexyjobs.models import Backfill, Run
from lexyjobs.scheduler import fire_key
from lexyjobs.states import RunStatus

MAX_RUNS = 1000
MAX_CONCURRENCY = 50
PER = ("fire", "day")
ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


class InvalidBackfill(LexyjobsError):
    status_code = 422
    code = "invalid_backfill"


@dataclass(frozen=True)
class Started:
    backfill_id: int
    run_ids: list[int]
    skipped: list[datetime]  # times that already had a succeeded run


@dataclass(frozen=True)
class Progress:
    backfill: Backfill
    counts: dict[str, int]  # runs by status

    @property
    def done(self) -> int:
        return self.counts.get(RunStatus.SUCCEEDED.value, 0)

    @property
    def finished(self) -> bool:
        return not any(self.counts.get(status, 0) for status in ACTIVE)

    def describe(self) -> str:
        unit = "days" if self.backfill.per == "day" else "fire times"
        text = f"{self.done} of {self.backfill.total} {unit} done"
        failed = self.counts.get(RunStatus.FAILED.value, 0)
        return text + (f", {failed} failed" if failed else "") + (", canceled" if self.backfill.canceled_at else "")


def times_in(definition: JobDefinition, start: datetime, end: datetime, per: str) -> list[datetime]:
    """The job's fire times (``per="fire"``) or its days' midnights in its timezone (``"day"``)
    from ``start`` to ``end``, both included, oldest first; InvalidBackfill past MAX_RUNS."""
    found: list[datetime] = []
    tz = parse_timezone(definition.timezone)
    if per == "day":
        day = start.astimezone(tz).date()
        at = datetime.combine(day, time(), tz)
        at = at if at >= start else datetime.combine(day + timedelta(days=1), time(), tz)
        while at <= end and len(found) <= MAX_RUNS:
            found.append(at.astimezone(UTC))
            at = datetime.combine(at.date() + timedelta(days=1), time(), tz)
    else:
        if definition.schedule is None:
            raise InvalidBackfill(f"job '{definition.name}' has no schedule: backfill it per day instead",
                                  details={"field": "per"})
        at = next_fire(definition.schedule, tz, start - timedelta(microseconds=1))
        while at <= end and len(found) <= MAX_RUNS:
            found.append(at.astimezone(UTC))
            at = next_fire(definition.schedule, tz, at)
    if len(found) > MAX_RUNS:
        raise InvalidBackfill(f"the range holds more than {MAX_RUNS} {'days' if per == 'day' else 'fire times'}; "
                              "backfill a shorter range at a time (an earlier end)", details={"field": "end"})
    return found


@dataclass(frozen=True)
class Plan:
    """What a backfill over a range would run: every time in it, those it runs, those it skips."""

    times: list[datetime]
    todo: list[datetime]
    skipped: list[datetime]  # times that already had a succeeded run


def plan(db: Database, job: str, start: datetime, end: datetime, *, per: str = "fire",
         include_succeeded: bool = False, now: datetime | None = None) -> Plan:
    """The backfill ``start`` would enqueue, without enqueuing it (the panel's preview)."""
    _check(start, end, per, 1, now or utcnow())
    with db.read() as session:
        return _plan(session, _definition(session, job), start, end, per, include_succeeded)


def start(db: Database, job: str, start: datetime, end: datetime, *, per: str = "fire", concurrency: int = 1,
          include_succeeded: bool = False, by: str | None = None, now: datetime | None = None) -> Started:
    """Enqueue the backfill of ``job`` from ``start`` to ``end`` (aware, both included)."""
    now = now or utcnow()
    _check(start, end, per, concurrency, now)
    with db.write() as session:
        found = _plan(session, _definition(session, job), start, end, per, include_succeeded)
        if not found.todo:
            if found.times:
                raise InvalidBackfill("every time in the range already has a succeeded run; set include_succeeded "
                                      "to run them again", details={"field": "include_succeeded"})
            raise InvalidBackfill("the range holds no fire time of the job: move its start earlier",
                                  details={"field": "start"})
        backfill = Backfill(job_name=job, range_start=start, range_end=end, per=per, concurrency=concurrency,
                            total=len(found.todo), skipped=len(found.skipped), created_by=by, created_at=now)
        session.add(backfill)
        session.flush()
        requests = [runs.RunRequest(job, trigger="manual", created_by=by, backfill=(backfill.id, concurrency),
                                    fire_key=f"{fire_key(job, at)}#backfill-{backfill.id}") for at in found.todo]
        rows = runs.insert_requests(session, requests, now=now)
        db.enqueued(session)
        return Started(backfill.id, [row["id"] for row in rows], found.skipped)


def _definition(session: Session, job: str) -> JobDefinition:
    row = store.get_job(session, job)
    if row is None or row.archived:
        raise JobNotFound(job)
    return definition_from_job(row)


def _plan(session: Session, definition: JobDefinition, start: datetime, end: datetime, per: str,
          include_succeeded: bool) -> Plan:
    times = times_in(definition, start, end, per)
    done = set() if include_succeeded else _succeeded_times(session, definition.name, start, end) & set(times)
    return Plan(times, [at for at in times if at not in done], sorted(done))


def _check(start: datetime, end: datetime, per: str, concurrency: int, now: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidBackfill("start and end need a timezone", details={"field": "start"})
    if end < start:
        raise InvalidBackfill("end is before start", details={"field": "end"})
    if end > now:
        raise InvalidBackfill("a backfill covers the past: end is in the future", details={"field": "end"})
    if per not in PER:
        raise InvalidBackfill(f"per must be {' or '.join(PER)}", details={"field": "per"})
    if isinstance(concurrency, bool) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InvalidBackfill(f"concurrency must be 1 to {MAX_CONCURRENCY}", details={"field": "concurrency"})


def _succeeded_times(session: Session, job: str, start: datetime, end: datetime) -> set[datetime]:
    """Fire times in the range with a succeeded run: the schedule's own or a backfill's (their
    keys sort by time after ``job@``, a backfill's suffix after its fire's)."""
    low, high = fire_key(job, start), fire_key(job, end) + "~"
    keys = session.scalars(select(Run.fire_key).where(
        Run.job_name == job, Run.status == RunStatus.SUCCEEDED.value, Run.fire_key >= low, Run.fire_key <= high))
    return {at for key in keys if (at := fire_time_of(key)) is not None}


def progress(db: Database, backfill_id: int) -> Progress:
    with db.read() as session:
        backfill = session.get(Backfill, backfill_id)
        if backfill is None:
            raise NotFound(f"no backfill {backfill_id}", details={"backfill_id": backfill_id})
        return Progress(backfill, _counts(session, [backfill_id]).get(backfill_id, {}))


def recent(db: Database, job: str, *, limit: int = 5) -> list[Progress]:
    """The job's latest ``limit`` backfills, newest first, with their progress."""
    with db.read() as session:
        rows = list(session.scalars(select(Backfill).where(Backfill.job_name == job)
                                    .order_by(Backfill.id.desc()).limit(limit)))
        counts = _counts(session, [row.id for row in rows])
    return [Progress(row, counts.get(row.id, {})) for row in rows]


def group_runs(db: Database, backfill_id: int) -> list[tuple[Run, datetime | None]]:
    """The backfill's runs in fire-time order (the order they were enqueued), each with its fire time."""
    with db.read() as session:
        found = list(session.scalars(select(Run).where(Run.backfill_id == backfill_id).order_by(Run.id)))
    return [(run, fire_time_of(run.fire_key) if run.fire_key else None) for run in found]


def _counts(session: Session, ids: Sequence[int]) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {backfill_id: {} for backfill_id in ids}
    if ids:
        for row in session.execute(select(Run.backfill_id, Run.status, func.count().label("n"))
                                   .where(Run.backfill_id.in_(list(ids))).group_by(Run.backfill_id, Run.status)):
            found[row.backfill_id or 0][row.status] = row.n
    return found


def cancel(db: Database, backfill_id: int, *, by: str) -> tuple[int, int]:
    """Cancel the group: its queued runs at once, its running ones by their workers. Returns
    ``runs.cancel_many``'s counts (canceled, asked to stop)."""
    progress(db, backfill_id)  # NotFound for an unknown id
    with db.write() as session:
        backfill = session.get(Backfill, backfill_id)
        if backfill is not None and backfill.canceled_at is None:
            backfill.canceled_at, backfill.canceled_by = utcnow(), by
        ids: Sequence[int] = session.scalars(select(Run.id).where(Run.backfill_id == backfill_id,
                                                                  Run.status.in_(ACTIVE))).all()
    return runs.cancel_many(db, list(ids), by=by)
