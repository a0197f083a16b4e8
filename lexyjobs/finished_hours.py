"""Finished runs tallied per hour, with the hours that are over remembered between requests.

The dashboard's charts (24 hours, 7 days) and the "last 24 hours" figures of the dashboard and
``/api/stats`` count finished runs per hour and outcome, with their queue and processing times.
Counted afresh on every request, that is a week of history (a quarter of a million runs at a
million runs a month) read again each time the page loads.

An hour that ended more than ``SETTLE`` ago gains no more runs: ``finished_at`` is the writer's
clock at the finish, and ``SETTLE`` covers clocks a little apart and a transaction slow to commit.
It loses runs only to retention (``lexyjobs.retention``), which deletes each outcome's oldest runs
first: while a run of that outcome older than the hour remains, none of the hour's were deleted;
and when a job is deleted with its runs, which changes the jobs' stamp (``store.jobs_stamp``:
then every hour is counted again). So each process counts a closed hour once and keeps it
(``FinishedHours``); a request then reads only the hours still open, the part of an hour its
window starts in, the oldest finish of each outcome (one index seek each) and the jobs' stamp."""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import Float, bindparam, cast, func, select
from sqlalchemy.orm import Session

from lexyjobs import store
from lexyjobs.models import Run
from lexyjobs.states import TERMINAL

HOUR = timedelta(hours=1)
SETTLE = timedelta(minutes=5)
KEEP = timedelta(days=8)  # closed hours remembered: the dashboard's 7-day chart and a margin
FINISHED = tuple(sorted(status.value for status in TERMINAL))  # the statuses that set finished_at


@dataclass(frozen=True)
class Tally:
    """Finished runs of one outcome: how many, how many of them had started (blocked and skipped
    runs never do), and those started runs' seconds waiting (scheduled_for → started_at) and
    running (started_at → finished_at), summed."""

    finished: int = 0
    started: int = 0
    waited: float = 0.0
    busy: float = 0.0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.finished + other.finished, self.started + other.started, self.waited + other.waited,
                     self.busy + other.busy)


Hours = dict[datetime, dict[str, Tally]]  # hour start (UTC) -> status -> Tally


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def add_up(hours: Iterable[dict[str, Tally]]) -> dict[str, Tally]:
    """The tallies of several hours, per status."""
    total: dict[str, Tally] = {}
    for hour in hours:
        for status, tally in hour.items():
            total[status] = total.get(status, Tally()) + tally
    return total


class FinishedHours:
    """One process's memory of closed hours (thread-safe; shared by the panel and the API)."""

    def __init__(self, *, settle: timedelta = SETTLE, keep: timedelta = KEEP) -> None:
        self.settle, self.keep = settle, keep
        self._closed: Hours = {}
        self._jobs: tuple[Any, ...] | None = None  # the jobs' stamp the hours were counted under
        self._lock = threading.Lock()

    def since(self, session: Session, since: datetime, *, now: datetime, postgres: bool) -> Hours:
        """Per hour, the runs finished at or after ``since`` (the first hour counts from
        ``since``), the current hour included, and any later one a clock running ahead wrote.
        Hours without runs are left out; the tallies returned are shared, not to be changed."""
        open_from = floor_hour(now - self.settle)
        if since >= open_from:
            return _grouped(session, since, None, postgres)
        start, found = floor_hour(since), Hours()
        if since > start:  # the window starts inside a closed hour: that part is counted now
            found = _grouped(session, since, start + HOUR, postgres)
            start += HOUR
        oldest, jobs = _oldest_finishes(session), store.jobs_stamp(session)
        missing: list[datetime] = []
        with self._lock:
            if jobs != self._jobs:  # a job deleted (with its runs), or any other change to the jobs
                self._closed, self._jobs = {}, jobs
            for hour in _hours(start, open_from):
                kept = self._closed.get(hour)
                if kept is None or not _intact(kept, hour, oldest):
                    missing.append(hour)
                elif kept:
                    found[hour] = kept
        for first, end in _stretches(missing):
            counted = _grouped(session, first, end, postgres)
            self._remember({hour: counted.get(hour, {}) for hour in _hours(first, end)}, now, jobs)
            found.update(counted)
        found.update(_grouped(session, open_from, None, postgres))
        return found

    def _remember(self, hours: Hours, now: datetime, jobs: tuple[Any, ...]) -> None:
        with self._lock:
            if jobs != self._jobs:  # counted under jobs another request has since seen change
                return
            self._closed.update(hours)
            horizon = now - self.keep
            for hour in [h for h in self._closed if h < horizon]:
                del self._closed[hour]


def _intact(kept: dict[str, Tally], hour: datetime, oldest: dict[str, datetime | None]) -> bool:
    """No run of the hour was deleted since it was counted: for each outcome it had, a run of that
    outcome older than the hour remains (retention deletes the oldest first)."""
    return all((first := oldest.get(status)) is not None and first < hour for status in kept)


def _hours(start: datetime, end: datetime) -> list[datetime]:
    return [start + HOUR * i for i in range(max(0, int((end - start) / HOUR)))]


def _stretches(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours as (first, end) spans: one statement each."""
    spans: list[tuple[datetime, datetime]] = []
    for hour in hours:
        if spans and spans[-1][1] == hour:
            spans[-1] = (spans[-1][0], hour + HOUR)
        else:
            spans.append((hour, hour + HOUR))
    return spans


def _oldest_finishes(session: Session) -> dict[str, datetime | None]:
    return dict(zip(FINISHED, session.execute(_oldest_query()).one()))


@functools.cache
def _oldest_query() -> Any:
    """The earliest ``finished_at`` of each finished status: one index seek each."""
    return select(*(select(func.min(Run.finished_at)).where(Run.status == status).scalar_subquery()
                    for status in FINISHED))


def _grouped(session: Session, start: datetime, end: datetime | None, postgres: bool) -> Hours:
    """The runs finished in [start, end) (end None: no end), tallied per hour and status."""
    params: dict[str, Any] = {"start": start} if end is None else {"start": start, "end": end}
    found: Hours = {}
    for hour, status, finished, started, waited, busy in session.execute(_grouped_query(postgres, end is not None),
                                                                         params):
        at = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
        found.setdefault(at, {})[status] = Tally(finished, started, float(waited or 0), float(busy or 0))
    return found


@functools.cache
def _grouped_query(postgres: bool, bounded: bool) -> Any:
    """Per (hour, status): count, started count and summed waiting and running seconds, over a
    ``finished_at`` range of ix_runs_status_finished_times (one range per finished status: the
    index holds the times too, so no row is read)."""
    waited: Any
    busy: Any
    if postgres:
        hour = func.to_char(func.timezone("UTC", Run.finished_at), 'YYYY-MM-DD"T"HH24')
        waited = func.extract("epoch", Run.started_at - Run.scheduled_for)
        busy = func.extract("epoch", Run.finished_at - Run.started_at)
    else:
        hour = func.strftime("%Y-%m-%dT%H", Run.finished_at)
        waited = (func.julianday(Run.started_at) - func.julianday(Run.scheduled_for)) * 86400.0
        busy = (func.julianday(Run.finished_at) - func.julianday(Run.started_at)) * 86400.0
    conditions = [Run.status.in_(FINISHED), Run.finished_at >= bindparam("start", type_=Run.finished_at.type)]
    if bounded:
        conditions.append(Run.finished_at < bindparam("end", type_=Run.finished_at.type))
    return (select(hour.label("hour"), Run.status, func.count(), func.count(Run.started_at),
                   func.sum(cast(waited, Float)), func.sum(cast(busy, Float)))
            .where(*conditions).group_by("hour", Run.status))
