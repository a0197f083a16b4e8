"""Unique runs (``lexyjobs.flow.unique``): a job with ``unique = ["site_id"]`` has at most one run
per site_id that is queued (``unique_while = "queued"``) or queued or running (``"active"``, the
default); a duplicate enqueue from the API, the CLI, the panel, Python, a retry or a schedule
answers with that run and says so."""
from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import event
from click.testing import CliRunner
from conftest import ApiClient, PanelSession, drive_run
from test_idempotency import SITE, race_processes, run_ids

import lexyjobs
from lexyjobs import audit, pipelines, runs
from lexyjobs.cli import main
from lexyjobs.db import Database, utcnow
from lexyjobs.runtime import Runtime
from lexyjobs.scheduler import Scheduler
from lexyjobs.states import RunStatus, transition


def enqueue(db: Database, job: str, site: int | None = None) -> runs.Enqueued:
    return runs.submit(db, job, {"site_id": site} if site is not None else None)


def test_unique_while_queued_answers_with_the_queued_run_only(db: Database, make_job: Any) -> None:
    make_job("crawl", params=SITE, unique=["site_id"], unique_while="queued")
    first = enqueue(db, "crawl", 1)
    assert first.existing is None
    again = enqueue(db, "crawl", 1)
    assert again.run_id == first.run_id and again.existing is not None
    assert again.existing.message == (f"run {first.run_id} of job crawl is already queued with the same site_id=1; "
                                      "not enqueued again")
    other_site = enqueue(db, "crawl", 2)
    assert other_site.existing is None and other_site.run_id != first.run_id
    drive_run(db, first.run_id, RunStatus.RUNNING)
    while_running = enqueue(db, "crawl", 1)  # "queued": a running crawl does not count
    assert while_running.existing is None and while_running.run_id != first.run_id
    assert enqueue(db, "crawl", 1).run_id == while_running.run_id


def test_unique_while_active_answers_with_the_running_run_until_it_ends(db: Database, make_job: Any) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])  # unique_while = "active" is the default
    first = enqueue(db, "crawl", 4).run_id
    drive_run(db, first, RunStatus.RUNNING)
    again = enqueue(db, "crawl", 4)
    assert again.run_id == first and again.existing is not None and again.existing.status == "running"
    assert again.existing.reason == f"run {first} of job crawl is already running with the same site_id=4"
    with db.write() as session:  # it ends
        transition(session, first, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, at=utcnow(),
                   finished_at=utcnow())
    after = enqueue(db, "crawl", 4)
    assert after.existing is None and after.run_id != first


def test_unique_with_no_params_allows_one_active_run_of_the_job(db: Database, make_job: Any) -> None:
    make_job("report", unique=[])
    first = enqueue(db, "report")
    again = enqueue(db, "report")
    assert again.run_id == first.run_id and again.existing is not None
    assert again.existing.message == f"run {first.run_id} of job report is already queued; not enqueued again"


def test_a_batch_repeating_itself_inserts_once(db: Database, make_job: Any) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])
    done = runs.submit_many(db, [runs.RunRequest("crawl", {"site_id": 1}), runs.RunRequest("crawl", {"site_id": 1}),
                                 runs.RunRequest("crawl", {"site_id": 2})])
    assert done[0].existing is None and done[1].run_id == done[0].run_id and done[1].existing is not None
    assert done[2].existing is None and run_ids(db, "crawl") == [done[0].run_id, done[2].run_id]


def test_the_api_says_the_run_is_existing(api_client: ApiClient, make_job: Any) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])
    first = api_client.ok(api_client.post("/api/jobs/crawl/run", role="operator", json={"params": {"site_id": 3}}),
                          202)
    again = api_client.ok(api_client.post("/api/jobs/crawl/run", role="operator", json={"params": {"site_id": 3}}),
                          200)
    assert again == {"run_id": first["run_id"], "status": "queued", "status_url": first["status_url"],
                     "existing": True, "message": f"run {first['run_id']} of job crawl is already queued with the "
                                                  "same site_id=3; not enqueued again"}


def test_the_cli_prints_one_line_for_a_duplicate(db_url: str, db: Database, make_job: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])
    monkeypatch.chdir(tmp_path)
    env = {"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": ""}
    first = CliRunner().invoke(main, ["run", "crawl", "-p", "site_id=8"], env=env, catch_exceptions=False)
    run_id = run_ids(db, "crawl")[0]
    assert first.exit_code == 0 and first.stdout == f"run {run_id} queued (crawl)\n"
    again = CliRunner().invoke(main, ["run", "crawl", "-p", "site_id=8"], env=env, catch_exceptions=False)
    assert again.exit_code == 0
    assert again.stdout == f"run {run_id} of job crawl is already queued with the same site_id=8; not enqueued again\n"


def test_python_enqueue_says_existing(lj: Runtime, make_job: Any) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])
    first = lexyjobs.enqueue("crawl", {"site_id": 2}, runtime=lj)
    again = lexyjobs.enqueue("crawl", {"site_id": 2}, runtime=lj)
    assert again.id == first.id and again.existing and "already queued with the same site_id=2" in (again.message or "")


def test_a_scheduled_fire_of_a_unique_job_is_recorded_as_skipped(db: Database, make_job: Any) -> None:
    make_job("sweep", schedule="@hourly", unique=[])
    manual = runs.enqueue(db, "sweep")
    sched = Scheduler(db)
    sched.start(paused=True)
    try:
        at = utcnow().replace(microsecond=0)
        outcome = sched.fire("sweep", [at], now=at + timedelta(milliseconds=30))
        assert outcome.queued == [] and len(outcome.skipped) == 1
        entry = runs.get_run(db, outcome.skipped[0])
        assert (entry.status, entry.trigger) == ("skipped", "schedule") and entry.fire_key is not None
        assert entry.error == f"run {manual} of job sweep is already queued (unique)"
        drive_run(db, manual, RunStatus.SUCCEEDED)
        later = at + timedelta(hours=1)
        assert len(sched.fire("sweep", [later], now=later + timedelta(milliseconds=30)).queued) == 1
    finally:
        sched.stop()


def test_a_retry_while_a_duplicate_is_active_answers_with_that_run(api_client: ApiClient, db: Database,
                                                                   make_job: Any) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])
    failed = enqueue(db, "crawl", 5).run_id
    drive_run(db, failed, RunStatus.FAILED, error="boom")
    active = enqueue(db, "crawl", 5).run_id
    answer = api_client.ok(api_client.post(f"/api/runs/{failed}/retry", role="operator"), 200)
    assert answer == {"run_id": active, "status": "queued", "status_url": f"/api/runs/{active}", "retry_of": failed,
                      "existing": True, "message": f"run {active} of job crawl is already queued with the same "
                                                   "site_id=5; not enqueued again"}
    assert runs.retry_many(db, [failed], by="test") == 0  # the bulk retry counts no new run
    assert run_ids(db, "crawl") == [failed, active]


def test_the_panel_run_now_goes_to_the_existing_run_with_a_flash(panel_as: Callable[[str], PanelSession],
                                                                  db: Database, make_job: Any) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])
    existing = enqueue(db, "crawl", 6).run_id
    panel = panel_as("operator")
    response = panel.post("/jobs/crawl/run", data={"site_id": "6", "priority": "", "run_at": ""})
    assert response.status_code in (302, 303) and response.headers["Location"].endswith(f"/runs/{existing}")
    page = panel.get(f"/runs/{existing}").get_data(as_text=True)
    assert f"run {existing} of job crawl is already queued with the same site_id=6; not enqueued again" in page
    assert run_ids(db, "crawl") == [existing]


def test_the_panel_retry_goes_to_the_active_duplicate_with_a_flash(panel_as: Callable[[str], PanelSession],
                                                                    db: Database, make_job: Any) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])
    failed = enqueue(db, "crawl", 7).run_id
    drive_run(db, failed, RunStatus.FAILED, error="boom")
    active = enqueue(db, "crawl", 7).run_id
    panel = panel_as("operator")
    response = panel.post(f"/runs/{failed}/retry", hx=True)
    assert response.headers["HX-Redirect"].endswith(f"/runs/{active}")
    assert "already queued with the same site_id=7" in panel.get(f"/runs/{active}").get_data(as_text=True)


def test_run_pipeline_from_a_unique_job_with_an_active_duplicate_starts_nothing(
        panel_as: Callable[[str], PanelSession], db: Database, make_job: Any) -> None:
    make_job("extract", unique=[])
    make_job("load", depends_on=["extract"])
    active = runs.enqueue(db, "extract")
    panel = panel_as("operator")
    response = panel.post("/jobs/extract/run-pipeline")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/runs/{active}")
    assert f"run {active} of job extract is already queued; not enqueued again" in \
        panel.get(f"/runs/{active}").get_data(as_text=True)
    assert audit.search(db, action="pipeline.start").entries == [] and run_ids(db, "extract") == [active]


def test_a_pipeline_step_is_not_deduplicated_but_holds_the_key(db: Database, make_job: Any) -> None:
    """A pipeline needs its own run of each step to go on; that run then answers duplicates."""
    make_job("extract")
    make_job("load", depends_on=["extract"], unique=[])
    manual = runs.enqueue(db, "load")
    upstream = runs.get_run(db, runs.enqueue(db, "extract"))
    assert upstream.pipeline_id is not None
    drive_run(db, upstream.id, RunStatus.SUCCEEDED)
    with db.write() as session:
        assert pipelines.advance(session, [pipelines.Finished(upstream.id, "extract", upstream.pipeline_id,
                                                              RunStatus.SUCCEEDED)], now=utcnow(),
                                 postgres=db.is_postgres) == 1
    step = run_ids(db, "load")[-1]
    assert step != manual and runs.get_run(db, step).pipeline_id == upstream.pipeline_id
    drive_run(db, manual, RunStatus.SUCCEEDED)
    again = enqueue(db, "load")
    assert again.run_id == step and again.existing is not None


# ---------------------------------------------------------------- concurrency


def test_threads_enqueueing_a_duplicate_make_one_run(lj: Runtime, make_job: Any) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])
    barrier, handles = threading.Barrier(16), []

    def one() -> None:
        barrier.wait()
        handles.append(lexyjobs.enqueue("crawl", {"site_id": 1}, runtime=lj))
    threads = [threading.Thread(target=one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(handles) == 16 and len({h.id for h in handles}) == 1 and sum(not h.existing for h in handles) == 1


def test_two_processes_enqueueing_a_duplicate_make_one_run(db_url: str, lj: Runtime, make_job: Any,
                                                           tmp_path: Path) -> None:
    make_job("crawl", params=SITE, unique=["site_id"])
    answers = race_processes(db_url, tmp_path, "crawl", {"site_id": 3}, "")
    assert len({run_id for run_id, _ in answers}) == 1 and sum(not existing for _, existing in answers) == 1
    assert run_ids(lj.db, "crawl") == [answers[0][0]]


def test_the_lookups_use_their_partial_indexes_on_sqlite(lj: Runtime, db: Database, make_job: Any) -> None:
    """The duplicate lookups walk ix_runs_unique_key and ix_runs_idempotency, so their cost does
    not grow with the history. (Postgres plans by statistics.)"""
    if db.is_postgres:
        pytest.skip("SQLite's planner only: Postgres chooses by statistics")
    make_job("crawl", params=SITE, unique=["site_id"])
    runs.enqueue_many(db, [runs.RunRequest("crawl", {"site_id": n}) for n in range(200)])
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, parameters))
    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        lexyjobs.enqueue("crawl", {"site_id": 1}, key="planned", runtime=lj)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    plans = {}
    with db.engine.connect() as connection:
        for sql, params in statements:
            if sql.lstrip().startswith("SELECT") and "FROM runs" in sql:
                rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
                plans[sql] = " | ".join(str(row[3]) for row in rows)
    assert len(plans) == 2, plans
    assert any("INDEX ix_runs_idempotency" in plan for plan in plans.values()), plans
    assert any("INDEX ix_runs_unique_key" in plan for plan in plans.values()), plans
