"""Prepared hot statements (lexyjobs.prepared): values written and read exactly as through
SQLAlchemy's own execution, IN lists of any length in padded chunks, and executemany rows that
share values."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest
from sqlalchemy import bindparam, select, text, update

from lexyjobs import prepared, runs
from lexyjobs.db import Database
from lexyjobs.states import RUNS

T0 = datetime(2100, 1, 1, 12, 0, 0, 0, tzinfo=timezone.utc)  # whole seconds: the text form differs if careless

_WRITE = (update(RUNS).where(RUNS.c.id == bindparam("b_id"))
          .values(finished_at=bindparam("v_at"), result=bindparam("v_result"), error=bindparam("v_error")))
_READ = select(RUNS.c.id, RUNS.c.finished_at, RUNS.c.result, RUNS.c.params).where(RUNS.c.id == bindparam("b_id"))


def test_a_prepared_write_stores_what_sqlalchemy_would_and_reads_it_back_alike(db: Database,
                                                                               make_job: Callable[..., str]) -> None:
    job = make_job("plain", max_concurrency=0)
    ours, theirs = runs.enqueue(db, job), runs.enqueue(db, job)
    values = {"v_at": T0, "v_result": {"a": [1, 2], "b": None}, "v_error": "x"}
    with db.write() as session:
        prepared.run(session, _WRITE, {"b_id": ours, **values})
        session.execute(_WRITE, {"b_id": theirs, **values})
    with db.read() as session:
        raw = {row.id: row for row in session.execute(
            select(RUNS.c.id, RUNS.c.finished_at.cast(RUNS.c.error.type).label("text"))
            .where(RUNS.c.id.in_([ours, theirs])))}
        mine = prepared.run(session, _READ, {"b_id": ours})[0]
        reference = session.execute(_READ, {"b_id": ours}).one()
    assert raw[ours].text == raw[theirs].text  # the very same stored form (SQLite: the text of the time)
    assert tuple(mine) == tuple(reference) and mine.finished_at == T0 and mine.result == values["v_result"]


def test_none_into_a_json_column_is_stored_as_sqlalchemy_stores_it(db: Database, make_job: Callable[..., str]) -> None:
    job = make_job("nulls", max_concurrency=0)
    ours, theirs = runs.enqueue(db, job), runs.enqueue(db, job)
    with db.write() as session:
        prepared.run_many(session, _WRITE, [{"b_id": ours, "v_at": None, "v_result": None, "v_error": None}])
        session.execute(_WRITE, [{"b_id": theirs, "v_at": None, "v_result": None, "v_error": None}])
    with db.read() as session:
        null_json = {row.id: row.is_null for row in session.execute(
            select(RUNS.c.id, RUNS.c.result.is_(None).label("is_null")).where(RUNS.c.id.in_([ours, theirs])))}
    assert null_json[ours] == null_json[theirs]


def test_an_executemany_whose_rows_share_values_writes_each_row_its_own(db: Database,
                                                                        make_job: Callable[..., str]) -> None:
    job = make_job("many", max_concurrency=0)
    ids = runs.enqueue_many(db, [runs.RunRequest(job) for _ in range(5)])
    shared = {"same": True}
    rows = [{"b_id": run_id, "v_at": T0 + timedelta(seconds=i % 2), "v_result": shared if i < 3 else {"i": i},
             "v_error": None} for i, run_id in enumerate(ids)]
    with db.write() as session:
        prepared.run_many(session, _WRITE, rows)
    with db.read() as session:
        found = {row.id: row for row in prepared.run(session, _READ_ALL, {})}
    assert [(found[i].finished_at, found[i].result) for i in ids] == [(r["v_at"], r["v_result"]) for r in rows]


_READ_ALL = select(RUNS.c.id, RUNS.c.finished_at, RUNS.c.result).order_by(RUNS.c.id)


def test_id_chunks_cover_every_id_in_padded_chunks_of_at_most_max_ids() -> None:
    ids = list(range(1000, 1000 + 2 * prepared.MAX_IDS + 3))
    chunks = list(prepared.id_chunks(ids))
    assert [size for size, _ in chunks] == [prepared.MAX_IDS, prepared.MAX_IDS, 4]
    assert sorted({v for _, values in chunks for v in values.values()}) == ids
    assert all(len(values) == size for size, values in chunks)


def test_a_read_of_more_ids_than_one_chunk_finds_them_all(db: Database, make_job: Callable[..., str]) -> None:
    job = make_job("wide", max_concurrency=0)
    ids = runs.enqueue_many(db, [runs.RunRequest(job) for _ in range(prepared.MAX_IDS + 7)])
    with db.read() as session:
        found = [row.id for size, values in prepared.id_chunks(ids)
                 for row in prepared.run(session, select(RUNS.c.id).where(prepared.ids_in(RUNS.c.id, size)[0]), values)]
    assert sorted(found) == ids


def test_a_finished_batch_stores_each_runs_values_as_a_single_transition_would(
        db: Database, make_job: Callable[..., str]) -> None:
    """``transition_each`` (Postgres: one UPDATE over arrays; SQLite: executemany) against
    ``transition`` (SQLAlchemy's own binds): JSON values and JSON null, times, floats, text."""
    from lexyjobs import claiming
    from lexyjobs.states import Change, RunStatus, transition, transition_each

    job = make_job("batch", max_concurrency=0)
    runs.enqueue_many(db, [runs.RunRequest(job) for _ in range(6)])
    with db.write() as session:
        claimed = claiming.claim_runs(session, 6, worker="w", now=T0, postgres=db.is_postgres)
    shapes = [{"finished_at": T0, "result": {"n": [1, None]}, "error": None, "details": None, "progress": 50.5},
              {"finished_at": T0 + timedelta(microseconds=7), "result": None, "error": "x\ny", "details": {"a": "b"},
               "progress": None},
              {"finished_at": None, "result": [1, 2], "error": "", "details": {}, "progress": 0.0}]
    batch, single = claimed[:3], claimed[3:]
    with db.write() as session:
        moved = transition_each(session, [Change(c.id, c.lease, RunStatus.SUCCEEDED, values)
                                          for c, values in zip(batch, shapes)],
                                expected=RunStatus.RUNNING, at=T0, postgres=db.is_postgres)
        for c, values in zip(single, shapes):
            transition(session, c.id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=c.lease, at=T0, **values)
    assert sorted(moved) == sorted(c.id for c in batch)
    columns = (RUNS.c.status, RUNS.c.finished_at, RUNS.c.result, RUNS.c.error, RUNS.c.details, RUNS.c.progress,
               RUNS.c.result.is_(None).label("result_sql_null"), RUNS.c.details.is_(None).label("details_sql_null"))
    with db.read() as session:
        stored = {row[0]: tuple(row[1:]) for row in session.execute(select(RUNS.c.id, *columns))}
    assert [stored[c.id] for c in batch] == [stored[c.id] for c in single]
    assert stored[batch[0].id][2] == {"n": [1, None]} and stored[batch[1].id][1] == T0 + timedelta(microseconds=7)


def test_a_postgres_connection_keeps_its_prepared_statements_across_read_sessions(pg_schema_url: str) -> None:
    """psycopg prepares a statement on its fifth execution and forgets them all on a ROLLBACK:
    read sessions that ended rolled back would never get there, each read parsed afresh."""
    db = Database(pg_schema_url, pool_size=1)  # every session gets the same connection
    try:
        for _ in range(8):
            with db.read() as session:
                session.execute(text("SELECT count(*) FROM pg_class WHERE relkind = :k"), {"k": "r"}).one()
        with db.read() as session:
            kept = session.scalar(text("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%relkind%'"))
    finally:
        db.dispose()
    assert kept == 1


def test_a_read_session_that_fails_is_rolled_back_and_the_next_one_works(db: Database) -> None:
    with pytest.raises(ZeroDivisionError):
        with db.read() as session:
            session.execute(select(RUNS.c.id)).all()
            raise ZeroDivisionError
    with db.read() as session:
        assert session.execute(select(RUNS.c.id)).all() == []
