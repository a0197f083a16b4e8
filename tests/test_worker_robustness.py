"""What a job can throw at the worker must never stop the worker, lose a run or run it twice
(regressions found in review), on both databases."""
from __future__ import annotations

import threading
from datetime import timedelta

from conftest import wait_for

from lexyjobs import claiming, runs, store
from lexyjobs.db import utcnow

TERMINAL = ("succeeded", "failed", "canceled")


def _done(db, run_id):  # type: ignore[no-untyped-def]
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in TERMINAL and r, timeout=15)


def test_a_result_the_database_cannot_store_fails_that_run_and_the_others_go_on(db, make_job, start_worker):
    make_job("nan", func="jobfuncs:returns_nan", max_attempts=1)
    make_job("fine", func="jobfuncs:noop", max_concurrency=0)
    start_worker()
    bad = runs.enqueue(db, "nan")
    good = [runs.enqueue(db, "fine") for _ in range(3)]
    assert "not JSON data" in _done(db, bad).error
    assert [_done(db, run_id).status for run_id in good] == ["succeeded"] * 3


def test_nul_characters_in_log_progress_and_error_are_stored_escaped(db, make_job, start_worker):
    make_job("nul", func="jobfuncs:nul_everywhere", max_attempts=1)
    start_worker()
    run = _done(db, runs.enqueue(db, "nul"))
    assert run.status == "failed" and "bad\\x00byte" in run.error
    with db.read() as session:
        text, _, _ = store.read_log(session, run.id)
    assert "before\\x00after" in text


def test_details_that_are_not_json_are_replaced_by_a_note(db, make_job, start_worker):
    make_job("details", func="jobfuncs:bad_details")
    start_worker()
    run = _done(db, runs.enqueue(db, "details"))
    assert run.status == "succeeded" and run.result == "ok"
    assert "details dropped" in run.details["note"]


def test_sys_exit_in_a_job_fails_the_run_and_the_worker_keeps_working(db, make_job, start_worker):
    make_job("exits", func="jobfuncs:exits", max_attempts=1)
    start_worker(workers=1)
    run = _done(db, runs.enqueue(db, "exits"))
    assert run.status == "failed" and run.error.startswith("SystemExit")
    assert _done(db, runs.enqueue(db, "exits")).status == "failed"  # the only thread is still alive


def test_a_progress_message_that_is_not_text_is_shown_as_text(db, make_job, start_worker):
    make_job("odd", func="jobfuncs:odd_progress")
    worker = start_worker()
    run = _done(db, runs.enqueue(db, "odd"))
    assert run.status == "succeeded" and run.progress_message == "123"
    assert worker.alive()


def test_a_canceled_run_that_ignores_cancel_keeps_its_heartbeat_and_runs_once(db, make_job, start_worker):
    make_job("stubborn", func="jobfuncs:stubborn", params={"seconds": 3.0})
    start_worker(stale_after=1.0, heartbeat_interval=0.2)
    run_id = runs.enqueue(db, "stubborn")
    wait_for(lambda: runs.get_run(db, run_id).status == "running")
    assert runs.cancel(db, run_id) == "cancel requested"
    run = _done(db, run_id)
    assert (run.status, run.attempt) == ("canceled", 1)  # never rescued and started again


def test_a_run_asked_to_cancel_is_not_retried_when_its_attempt_fails(db, make_job, start_worker):
    make_job("fails", func="jobfuncs:fail_after", max_attempts=3, backoff="0s", params={"seconds": 0.6})
    start_worker()
    run_id = runs.enqueue(db, "fails")
    wait_for(lambda: runs.get_run(db, run_id).status == "running")
    runs.cancel(db, run_id)
    run = _done(db, run_id)
    assert (run.status, run.attempt) == ("canceled", 1)


def test_processes_rescuing_at_the_same_time_move_each_run_once(db, make_job):
    make_job("stale", max_concurrency=0)
    ids = [runs.enqueue(db, "stale") for _ in range(20)]
    with db.write() as session:
        claiming.claim_runs(session, 20, worker="dead:1", now=utcnow(), postgres=db.is_postgres)
    later = utcnow() + timedelta(minutes=5)  # the claimer's heartbeats are 5 minutes old by then
    results: list[list[tuple[int, str]]] = []
    errors: list[BaseException] = []

    def rescue() -> None:
        try:
            results.append(runs.rescue_stale(db, stale_after=60, now=later))
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
    threads = [threading.Thread(target=rescue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    moved = [run_id for result in results for run_id, _ in result]
    assert sorted(moved) == sorted(ids)  # each run moved exactly once


def test_a_database_that_keeps_failing_makes_the_dispatcher_back_off(db, make_job, start_worker, caplog):
    import logging
    import time

    from sqlalchemy import text

    start_worker()
    with db.write() as session:  # every claim now fails until the table is back
        session.execute(text("ALTER TABLE runs RENAME TO runs_gone"))
    try:
        with caplog.at_level(logging.ERROR, logger="lexyjobs.worker"):
            time.sleep(1.5)
        failures = [r for r in caplog.records if "could not write a batch" in r.getMessage()]
        assert 1 <= len(failures) <= 8  # 0.1 s, 0.2 s, 0.4 s … apart, not a tight loop
    finally:
        with db.write() as session:
            session.execute(text("ALTER TABLE runs_gone RENAME TO runs"))
