"""The Scheduled view's query (lexyjobs.flow.scheduled): queued runs due later, soonest first
across every priority, paginated; on SQLite each of its eleven parts reads a range of
ix_runs_queue (Postgres plans by statistics: its order and counts are checked on both)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

import pytest
from sqlalchemy import event

from lexyjobs import runs
from lexyjobs.db import Database, utcnow
from lexyjobs.flow.scheduled import count_scheduled, scheduled_runs
from lexyjobs.queries import RunFilter


def test_it_merges_every_priority_by_due_time_and_pages(db: Database, make_job: Callable[..., str]) -> None:
    make_job("report", max_concurrency=0)
    make_job("other", max_concurrency=0)
    now = utcnow()
    later = [runs.enqueue(db, "report", scheduled_for=now + timedelta(minutes=60 - i), priority=i % 11) for i in range(30)]
    runs.enqueue(db, "report")  # due now: not in the view
    runs.enqueue(db, "other", scheduled_for=now + timedelta(minutes=1))
    soonest_first = list(reversed(later))
    now = utcnow()  # after the run due now was enqueued
    with db.read() as session:
        where = RunFilter(job="report")
        assert [r.id for r in scheduled_runs(session, where, now=now, limit=10)] == soonest_first[:10]
        assert [r.id for r in scheduled_runs(session, where, now=now, limit=10, offset=25)] == soonest_first[25:]
        assert count_scheduled(session, where, now=now) == 30
        assert count_scheduled(session, RunFilter(), now=now) == 31


def test_on_sqlite_each_part_reads_a_range_of_the_queue_index(db: Database, make_job: Callable[..., str]) -> None:
    if db.is_postgres:
        pytest.skip("SQLite's planner only: Postgres chooses by statistics")
    make_job("report", max_concurrency=0)
    now = utcnow()
    runs.enqueue_many(db, [runs.RunRequest("report", priority=i % 11, scheduled_for=now + timedelta(seconds=i + 1))
                           for i in range(300)])
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, parameters))
    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.read() as session:
            assert len(scheduled_runs(session, RunFilter(), now=now, limit=50)) == 50
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    sql, params = next((s, p) for s, p in statements if "UNION ALL" in s)
    with db.engine.connect() as connection:
        plan = [str(row[3]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
    reads = [step for step in plan if step.startswith(("SEARCH runs", "SCAN runs"))]
    assert reads == ["SEARCH runs USING INDEX ix_runs_queue (priority=? AND scheduled_for>?)"] * 11, plan
