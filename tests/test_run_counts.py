"""The run counters (lexyjobs.run_counts) on SQLite and Postgres: they follow every insert,
transition and deletion, a rolled-back transaction leaves them alone, a job's deletion takes its
counters along, the migration and ``lexyjobs db recount`` count an existing history, and the
dashboard, runs list and API read them instead of counting runs. (Every test that uses the
``lj`` fixture also checks, at its end, that the counters equal a count of the runs.)"""
from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any, Callable

import pytest
from click.testing import CliRunner
from conftest import drive_run, subprocess_env, wait_for
from alembic import command
from sqlalchemy import inspect, text, update

from lexyjobs import registry, retention, run_counts, runs, schema, store
from lexyjobs.cli import main
from lexyjobs.db import Database, utcnow
from lexyjobs.runtime import Runtime
from lexyjobs.states import RunStatus


def truth(db: Database, job: str | None = None) -> dict[str, int]:
    with db.read() as session:
        return store.count_runs_by_status(session, job)


def counted(db: Database, job: str | None = None) -> dict[str, int]:
    with db.read() as session:
        return run_counts.totals(session, job)


def test_the_counters_follow_a_drain_with_cancels_retries_and_failures(
        db: Database, make_job: Callable[..., str], start_worker: Callable[..., Any]) -> None:
    make_job("ok")
    make_job("boom", func="jobfuncs:fail_cleanly", max_attempts=1)
    later = utcnow() + timedelta(hours=1)
    ids = runs.enqueue_many(db, [runs.RunRequest("ok") for _ in range(60)] + [runs.RunRequest("boom")] * 5)
    waiting = runs.enqueue_many(db, [runs.RunRequest("ok", scheduled_for=later) for _ in range(4)])
    for run_id in waiting[:3]:
        runs.cancel(db, run_id, by="test")
    start_worker(workers=4)
    wait_for(lambda: truth(db).get("queued", 0) == 1 and not truth(db).get("running"), timeout=30)
    runs.retry(db, ids[-1], by="test")
    wait_for(lambda: truth(db, "boom").get("failed") == 6, timeout=20)
    assert counted(db, "ok") == truth(db, "ok") == {"succeeded": 60, "canceled": 3, "queued": 1}
    assert counted(db, "boom") == truth(db, "boom") == {"failed": 6}
    assert counted(db) == truth(db)


def test_a_rolled_back_transaction_leaves_the_counters_alone(db: Database, make_job: Callable[..., str]) -> None:
    make_job("etl")
    runs.enqueue(db, "etl")

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        with db.write() as session:
            runs.insert_requests(session, [runs.RunRequest("etl")] * 3, now=utcnow())
            raise Abort
    assert counted(db) == truth(db) == {"queued": 1}


def test_retention_and_a_job_deletion_take_their_runs_off_the_counters(
        db: Database, make_job: Callable[..., str]) -> None:
    make_job("etl")
    make_job("gone")
    old = runs.enqueue_many(db, [runs.RunRequest("etl")] * 3, now=utcnow() - timedelta(days=40))
    for run_id in old:
        drive_run(db, run_id, RunStatus.SUCCEEDED)
    runs.enqueue_many(db, [runs.RunRequest("etl"), runs.RunRequest("gone"), runs.RunRequest("gone")])
    retention.prune(db, retention.Policy(days=30, failed_days=90))
    assert counted(db, "etl") == truth(db, "etl") == {"queued": 1}
    registry.delete_job(db, "gone")
    assert counted(db, "gone") == {} and counted(db) == truth(db) == {"queued": 1}


def test_the_migration_counts_the_runs_already_there(lj: Runtime, make_job: Callable[..., str]) -> None:
    db = lj.db
    make_job("etl")
    runs.enqueue_many(db, [runs.RunRequest("etl")] * 5)
    config = schema.alembic_config()
    with db.engine.begin() as connection:  # back to before the counters
        config.attributes["connection"] = connection
        command.downgrade(config, "0019")
    assert not inspect(db.engine).has_table("run_counts")
    with db.engine.begin() as conn:  # what an older lexyjobs did meanwhile
        conn.execute(text("UPDATE runs SET status = 'failed' WHERE id IN (SELECT min(id) FROM runs)"))
    schema.upgrade(db)
    assert counted(db) == truth(db) == {"queued": 4, "failed": 1}


def test_db_recount_rebuilds_counters_that_went_wrong(lj: Runtime, db_url: str, tmp_path: Any,
                                                      make_job: Callable[..., str], monkeypatch: Any) -> None:
    db = lj.db
    make_job("etl")
    runs.enqueue_many(db, [runs.RunRequest("etl")] * 3)
    with db.engine.begin() as conn:  # a restore or a hand edit the counters never saw
        conn.execute(text("UPDATE runs SET status = 'canceled' WHERE id IN (SELECT min(id) FROM runs)"))
    with db.read() as session:
        assert run_counts.drift(session) == {("etl", "queued"): (3, 2), ("etl", "canceled"): (0, 1)}
    for key, value in subprocess_env(db_url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["db", "recount"])
    assert result.exit_code == 0, result.output
    assert result.output == "counted 3 runs\n"
    assert counted(db) == truth(db) == {"queued": 2, "canceled": 1}


def test_the_pages_and_the_api_read_the_counters(lj: Runtime, make_job: Callable[..., str], panel_as: Any,
                                                  api_client: Any) -> None:
    db = lj.db
    make_job("etl")
    runs.enqueue_many(db, [runs.RunRequest("etl")] * 2)
    with db.write() as session:  # counters that say something no count of the runs would
        session.execute(update(run_counts.RUN_COUNTS).values(n=12345))
    try:
        assert ">12345<" in panel_as("viewer").get("/").get_data(as_text=True)
        assert "Export CSV (12,345 runs)" in panel_as("viewer").get("/runs?job=etl").get_data(as_text=True)
        assert api_client.get("/api/jobs/etl").json["runs"]["stats"]["queued"] == 12345
    finally:
        with db.write() as session:
            run_counts.recount(session)


def test_concurrent_writers_on_postgres_keep_exact_counters(db: Database, db_url: str,
                                                             make_job: Callable[..., str]) -> None:
    """Eight threads enqueue, cancel and finish runs at once: no deadlock between the counters
    and the runs' row locks, and the slots add up."""
    if not db.is_postgres:
        pytest.skip("row locks and slots are Postgres' (SQLite has one writer at a time)")
    make_job("etl")
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        try:
            for i in range(15):
                ids = runs.enqueue_many(db, [runs.RunRequest("etl")] * 4)
                runs.cancel_many(db, ids[:2], by=f"t{seed}")
                drive_run(db, ids[2], RunStatus.SUCCEEDED if i % 2 else RunStatus.FAILED)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert counted(db) == truth(db) == {"queued": 120, "canceled": 240, "succeeded": 56, "failed": 64}
