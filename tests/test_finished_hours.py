"""Finished runs tallied per hour (lexyjobs.finished_hours): closed hours counted once and
remembered, open hours and the part of an hour a window starts in counted on every call, and an
hour retention deleted runs from counted again. Times are passed in (year 2100), on SQLite and
Postgres."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from conftest import drive_run
from lexyjobs import runs, store
from lexyjobs.db import Database
from lexyjobs.finished_hours import FinishedHours, Tally, add_up
from lexyjobs.retention import Policy, prune
from lexyjobs.runs import RunRequest
from lexyjobs.states import RunStatus

T = datetime(2100, 1, 1, 10, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def finished(db: Database, job: str, at: datetime, status: RunStatus = RunStatus.SUCCEEDED) -> None:
    """A run of ``job`` that waited 1 s and ran 2 s, finishing at ``at``."""
    (run_id,) = runs.enqueue_many(db, [RunRequest(job, scheduled_for=at - timedelta(seconds=3))],
                                  now=at - timedelta(seconds=3))
    drive_run(db, run_id, status, queued_for=1.0, ran_for=2.0)


def tallies(db: Database, memory: FinishedHours, since: datetime, now: datetime) -> dict[datetime, dict[str, int]]:
    with db.read() as session:
        return {hour: {status: tally.finished for status, tally in found.items()}
                for hour, found in memory.since(session, since, now=now, postgres=db.is_postgres).items()}


def test_hours_are_tallied_with_counts_and_times(db: Database, make_job: Callable[..., str]) -> None:
    job = make_job("tallied", max_concurrency=0)
    for at, status in ((T - 3 * HOUR + timedelta(minutes=10), RunStatus.SUCCEEDED),
                       (T - 3 * HOUR + timedelta(minutes=50), RunStatus.FAILED), (T - HOUR / 2, RunStatus.SUCCEEDED)):
        finished(db, job, at, status)
    with db.read() as session:
        found = FinishedHours().since(session, T - 4 * HOUR, now=T, postgres=db.is_postgres)
    assert rounded(found) == {T - 3 * HOUR: {"succeeded": Tally(1, 1, 1.0, 2.0), "failed": Tally(1, 1, 1.0, 2.0)},
                              T - HOUR: {"succeeded": Tally(1, 1, 1.0, 2.0)}}
    assert rounded({T: add_up(found.values())}) == {T: {"succeeded": Tally(2, 2, 2.0, 4.0),
                                                        "failed": Tally(1, 1, 1.0, 2.0)}}


def rounded(hours: dict[datetime, dict[str, Tally]]) -> dict[datetime, dict[str, Tally]]:
    """Seconds to the millisecond (SQLite's julianday arithmetic is off by microseconds)."""
    return {hour: {status: Tally(t.finished, t.started, round(t.waited, 3), round(t.busy, 3)) for status, t in found.items()}
            for hour, found in hours.items()}


def test_a_window_starting_inside_an_hour_counts_that_hour_from_its_start(db: Database,
                                                                            make_job: Callable[..., str]) -> None:
    job = make_job("windowed", max_concurrency=0)
    for minutes in (5, 25, 45):
        finished(db, job, T - 5 * HOUR + timedelta(minutes=minutes))
    memory = FinishedHours()
    assert tallies(db, memory, T - 5 * HOUR + timedelta(minutes=20), T) == {T - 5 * HOUR: {"succeeded": 2}}
    assert tallies(db, memory, T - 6 * HOUR, T) == {T - 5 * HOUR: {"succeeded": 3}}  # the hour, whole
    assert tallies(db, memory, T - 5 * HOUR + timedelta(minutes=40), T) == {T - 5 * HOUR: {"succeeded": 1}}


def test_a_closed_hour_is_counted_once_and_the_open_hours_on_every_call(db: Database,
                                                                          make_job: Callable[..., str]) -> None:
    job = make_job("remembered", max_concurrency=0)
    finished(db, job, T - 5 * HOUR)  # the oldest run: hours after it are checked against it
    finished(db, job, T - 3 * HOUR + timedelta(minutes=30))
    finished(db, job, T - timedelta(minutes=10))
    memory = FinishedHours()
    first = tallies(db, memory, T - 4 * HOUR, T)
    assert first == {T - 3 * HOUR: {"succeeded": 1}, T - HOUR: {"succeeded": 1}}

    finished(db, job, T - 3 * HOUR + timedelta(minutes=40))  # into a closed hour: no clock does this
    finished(db, job, T - timedelta(minutes=8))  # an hour that ended 2 minutes ago is still open
    finished(db, job, T + timedelta(seconds=30))
    assert tallies(db, memory, T - 4 * HOUR, T) == {T - 3 * HOUR: {"succeeded": 1},  # remembered
                                                    T - HOUR: {"succeeded": 2}, T: {"succeeded": 1}}
    assert tallies(db, FinishedHours(), T - 4 * HOUR, T)[T - 3 * HOUR] == {"succeeded": 2}  # what a new process counts


def test_an_hour_retention_deleted_runs_from_is_counted_again(db: Database, make_job: Callable[..., str]) -> None:
    job = make_job("pruned", max_concurrency=0)
    for at in (T - 30 * HOUR + timedelta(minutes=10), T - 30 * HOUR + timedelta(minutes=40),
               T - 20 * HOUR + timedelta(minutes=10)):
        finished(db, job, at)
    finished(db, job, T - 30 * HOUR + timedelta(minutes=20), RunStatus.FAILED)  # kept: failed runs stay longer
    memory = FinishedHours()
    before = tallies(db, memory, T - 48 * HOUR, T)
    assert before[T - 30 * HOUR] == {"succeeded": 2, "failed": 1} and before[T - 20 * HOUR] == {"succeeded": 1}

    report = prune(db, Policy(days=1, failed_days=0, audit_days=0), now=T - 6 * HOUR + timedelta(minutes=30))
    assert report.runs == {"succeeded": 1, "canceled": 0, "blocked": 0, "skipped": 0}  # the oldest succeeded run
    after = tallies(db, memory, T - 48 * HOUR, T)
    assert after == tallies(db, FinishedHours(), T - 48 * HOUR, T)
    assert after[T - 30 * HOUR] == {"succeeded": 1, "failed": 1} and after[T - 20 * HOUR] == {"succeeded": 1}


def test_hours_older_than_it_keeps_are_forgotten(db: Database, make_job: Callable[..., str]) -> None:
    job = make_job("old", max_concurrency=0)
    finished(db, job, T - 30 * HOUR)
    finished(db, job, T - 20 * HOUR)
    memory = FinishedHours(keep=timedelta(hours=24))
    assert tallies(db, memory, T - 40 * HOUR, T) == {T - 30 * HOUR: {"succeeded": 1}, T - 20 * HOUR: {"succeeded": 1}}
    assert min(memory._closed) >= T - 24 * HOUR


def test_a_deleted_job_takes_its_runs_out_of_the_remembered_hours(db: Database, make_job: Callable[..., str]) -> None:
    kept, gone = make_job("kept", max_concurrency=0), make_job("gone", max_concurrency=0)
    for job in (kept, gone, gone):
        finished(db, job, T - 3 * HOUR + timedelta(minutes=30))
    finished(db, kept, T - 5 * HOUR)
    memory = FinishedHours()
    assert tallies(db, memory, T - 4 * HOUR, T) == {T - 3 * HOUR: {"succeeded": 3}}
    with db.write() as session:
        assert store.delete_job(session, gone)  # its runs go with it (by cascade)
    assert tallies(db, memory, T - 4 * HOUR, T) == {T - 3 * HOUR: {"succeeded": 1}}
