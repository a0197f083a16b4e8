"""What the timeline reads (lexyjobs.timeline.runs.window_runs), on SQLite and Postgres: the runs
created in the window (the newest per job, the rest counted), the older ones that end inside it or
still wait or run, nothing else; and every statement is an index search, never a scan of runs."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

import pytest
from conftest import drive_run
from sqlalchemy import event, text

from lexyjobs import runs
from lexyjobs.db import Database, utcnow
from lexyjobs.runs import RunRequest
from lexyjobs.states import RunStatus
from lexyjobs.timeline import runs as timeline_runs
from lexyjobs.timeline.runs import window_runs

MakeJob = Callable[..., str]


def run_at(db: Database, job: str, at: datetime, status: RunStatus, *, queued_for: float = 5, ran_for: float = 60) -> int:
    [run_id] = runs.enqueue_many(db, [RunRequest(job)], now=at)
    drive_run(db, run_id, status, queued_for=queued_for, ran_for=ran_for)
    return run_id


@pytest.fixture
def history(db: Database, make_job: MakeJob) -> dict[str, Any]:
    """Runs around a window of the last hour: inside, before, spanning its start, still active.
    They are made oldest first, as ids follow creation (the query counts on it)."""
    for name in ("a", "b", "c"):
        make_job(name, max_concurrency=0)
    now = utcnow()
    minutes = lambda m: now - timedelta(minutes=m)  # noqa: E731
    plan: list[tuple[datetime, str, str, RunStatus, float]] = [
        (minutes(300), "b_stuck_queued", "b", RunStatus.QUEUED, 0),
        (minutes(180), "a_before", "a", RunStatus.SUCCEEDED, 60),
        (minutes(120), "b_before", "b", RunStatus.SUCCEEDED, 60),
        (minutes(120) + timedelta(seconds=1), "c_running", "c", RunStatus.RUNNING, 0),
        (minutes(70), "a_spanning", "a", RunStatus.FAILED, 30 * 60),
        (minutes(65), "b_spanning", "b", RunStatus.SUCCEEDED, 10 * 60),
        *((minutes(50 - 5 * i), f"a_inside_{i}", "a", RunStatus.SUCCEEDED, 60) for i in range(6)),
        (minutes(1), "c_inside", "c", RunStatus.CANCELED, 0),
    ]
    ids = {key: run_at(db, job, at, status, ran_for=ran_for) for at, key, job, status, ran_for in plan}
    ids["a_inside"] = [ids.pop(f"a_inside_{i}") for i in range(6)]  # type: ignore[assignment]
    return {"now": now, "start": now - timedelta(hours=1), "ids": ids}


def ids_of(found: Any, job: str) -> list[int]:
    return [s.id for s in found[job].spans]


def test_it_reads_the_window_newest_first_with_the_runs_that_span_its_start(db: Database, history: dict[str, Any]) -> None:
    ids, now, start = history["ids"], history["now"], history["start"]
    with db.read() as session:
        found = window_runs(session, ["a", "b", "c"], start=start, end=now, per_job=10)
    assert ids_of(found, "a") == [*reversed(ids["a_inside"]), ids["a_spanning"]]
    assert ids_of(found, "b") == [ids["b_spanning"], ids["b_stuck_queued"]]
    assert ids_of(found, "c") == [ids["c_inside"], ids["c_running"]]
    assert all(runs.more == 0 for runs in found.values())
    spanning = found["a"].spans[-1]
    assert spanning.status == "failed" and spanning.started is not None and spanning.finished is not None
    assert spanning.due < start.timestamp() < spanning.finished
    assert abs(spanning.finished - (spanning.started + 30 * 60)) < 0.01  # times as epoch seconds, exact to the ms


def test_a_full_job_keeps_its_newest_runs_and_counts_the_others(db: Database, history: dict[str, Any]) -> None:
    ids = history["ids"]
    with db.read() as session:
        found = window_runs(session, ["a", "c"], start=history["start"], end=history["now"], per_job=4)
    assert ids_of(found, "a") == list(reversed(ids["a_inside"]))[:4]
    assert found["a"].more == 2  # the other two created in the window (the one spanning its start is not read)
    assert "b" not in found and ids_of(found, "c") == [ids["c_inside"], ids["c_running"]]


def test_a_window_before_every_run_has_empty_rows(db: Database, history: dict[str, Any]) -> None:
    long_ago = history["now"] - timedelta(days=30)
    with db.read() as session:
        found = window_runs(session, ["a", "b"], start=long_ago - timedelta(hours=1), end=long_ago, per_job=10)
    assert set(found) == {"a", "b"} and ids_of(found, "a") == [] and ids_of(found, "b") == []


def test_every_statement_searches_an_index_of_runs_and_none_scans_it(db: Database, history: dict[str, Any]) -> None:
    """SQLite: EXPLAIN QUERY PLAN of each statement has no ``SCAN runs``. Postgres (sequential
    scans disabled, as the tables are tiny here): no ``Seq Scan on runs``."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "runs" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.read() as session:
            window_runs(session, ["a", "b", "c"], start=history["start"], end=history["now"], per_job=3)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert len(statements) == 5  # newest per job, count of the full ones, spanning, first id inside, active
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters in statements:
            if db.is_postgres:
                cursor.execute("SET enable_seqscan = off")
                cursor.execute("EXPLAIN " + statement, parameters)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert "Seq Scan on runs" not in plan, plan
            else:
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
                assert "SCAN runs" not in plan and "USING" in plan, plan
        raw.rollback()
    finally:
        raw.close()


def test_many_jobs_are_read_in_batches(db: Database, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch) -> None:
    from lexyjobs.timeline import runs as timeline_runs
    monkeypatch.setattr(timeline_runs, "BATCH", 2)
    names = [make_job(f"j{i}") for i in range(5)]
    now = utcnow()
    made = {name: run_at(db, name, now - timedelta(minutes=10), RunStatus.SUCCEEDED) for name in names}
    with db.read() as session:
        found = window_runs(session, names, start=now - timedelta(hours=1), end=now, per_job=5)
    assert {name: ids_of(found, name) for name in names} == {name: [run_id] for name, run_id in made.items()}
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM runs")).scalar() == 5


def test_the_runs_left_out_are_counted_up_to_a_cap(db: Database, history: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond MORE_CAP the count stops: the row says "+N+ more" (a busy week read a quarter of a
    million index entries to say it exactly)."""
    monkeypatch.setattr(timeline_runs, "MORE_CAP", 1)
    with db.read() as session:
        found = window_runs(session, ["a", "c"], start=history["start"], end=history["now"], per_job=4)
    assert found["a"].more == 1 and found["a"].more_capped  # 2 more, counted up to 1
    monkeypatch.setattr(timeline_runs, "MORE_CAP", 2)
    with db.read() as session:
        found = window_runs(session, ["a", "c"], start=history["start"], end=history["now"], per_job=4)
    assert found["a"].more == 2 and found["a"].more_capped
    monkeypatch.setattr(timeline_runs, "MORE_CAP", 3)
    with db.read() as session:
        found = window_runs(session, ["a", "c"], start=history["start"], end=history["now"], per_job=4)
    assert found["a"].more == 2 and not found["a"].more_capped and found["c"].more == 0
