"""A cancel request is never lost: every request for a running run is a run event naming who
asked; the run then ends ``canceled``, or — when its body finished before the worker acted on
the request — keeps its real outcome with the note "cancel requested at T; it finished first"
(in its last event, the API's ``cancel_note`` and the panel). Real python and shell runs,
cancelled right after they start, many times, on SQLite and Postgres."""
from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import cancel_jobs
import pytest
from click.testing import CliRunner, Result
from conftest import ApiClient, drive_run, wait_for

from lexyjobs import cancels, runs, store
from lexyjobs.cli import main
from lexyjobs.db import utcnow
from lexyjobs.states import RunStatus

FINISHED_FIRST = re.compile(r"^cancel requested at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC; it finished first$")
TERMINAL = ("succeeded", "failed", "canceled")


@pytest.fixture
def cli(db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cli("cancel", "3")``: the real CLI on the test database."""
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False,
                                  env={"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": ""})
    return invoke


def finished(api_client: ApiClient, run_id: int) -> dict[str, Any]:
    return wait_for(lambda: (r := api_client.ok(api_client.get(f"/api/runs/{run_id}", role="viewer")))["status"]
                    in TERMINAL and r, timeout=20)


def cancel_right_after_start(api_client: ApiClient, db: Any, job: str) -> tuple[int, dict[str, Any] | None]:
    """Start a run of ``job``, cancel it (API, operator token) 0.1 s after it started; the
    cancel answer (None when the run had already finished: 409)."""
    run_id = api_client.ok(api_client.post(f"/api/jobs/{job}/run"), 202)["run_id"]
    wait_for(lambda: runs.get_run(db, run_id).started_at is not None, timeout=10)
    time.sleep(0.1)
    response = api_client.post(f"/api/runs/{run_id}/cancel", role="operator")
    if response.status_code == 409:
        return run_id, None
    return run_id, api_client.ok(response, 202)


@pytest.mark.parametrize("kind", ["python", "shell"])
def test_every_cancel_right_after_start_is_recorded_and_never_silently_lost(db, make_job, start_worker,
                                                                           api_client, kind):
    if kind == "python":  # a body that does not check for cancellation: it may well finish first
        make_job("short", func="jobfuncs:stubborn", params={"seconds": 0.12}, max_attempts=1)
    else:
        make_job("short", kind="shell", argv=["sh", "-c", "sleep 0.12; echo done"], max_attempts=1)
    start_worker()
    outcomes: Counter[str] = Counter()
    for _ in range(10):
        run_id, answer = cancel_right_after_start(api_client, db, "short")
        run = finished(api_client, run_id)
        if answer is None:  # finished before the request: refused, nothing to record
            assert run["status"] != "canceled" and not run["cancel_requested"]
            outcomes["409 (already finished)"] += 1
            continue
        assert answer["outcome"] == "cancel requested" and answer["message"] == cancels.REQUESTED_MEANING
        requests = [e for e in run["events"] if e["note"] == "cancel requested by token:ci-operator"]
        assert len(requests) == 1 and requests[0]["from"] == requests[0]["to"] == "running", run["events"]
        assert run["cancel_requested_at"] is not None
        if run["status"] == "canceled":
            assert run["cancel_note"] is None
        else:  # its body finished first: its real outcome, and the record says so
            assert FINISHED_FIRST.match(run["cancel_note"]), run
            assert run["events"][-1]["to"] == run["status"] and run["cancel_note"] in run["events"][-1]["note"]
        outcomes[run["status"]] += 1
    print(f"{kind}: {dict(outcomes)}")


def test_a_run_that_finished_before_its_worker_acted_keeps_its_outcome_with_the_note(db, make_job, start_worker,
                                                                                     api_client, cli):
    """The request lands between the body's return and the worker's write of the outcome: held
    there by the test's own write transaction (the row lock on Postgres, the write lock on SQLite)."""
    cancel_jobs.AT_END.clear()
    cancel_jobs.RETURN.clear()
    make_job("quick", func="cancel_jobs:held_at_the_end", max_attempts=1)
    worker = start_worker()
    run_id = runs.enqueue(db, "quick")
    assert cancel_jobs.AT_END.wait(10)
    asked = utcnow()
    with db.write() as session:
        assert cancels.request(session, run_id, by="alice", now=asked)
        cancel_jobs.RETURN.set()
        wait_for(lambda: (active := worker.pool.active.get(run_id)) is None or active.finished, timeout=10)
    run = finished(api_client, run_id)
    assert (run["status"], run["result"], run["error"]) == ("succeeded", "done", None)
    note = cancels.finished_first(asked)
    assert FINISHED_FIRST.match(note) and run["cancel_note"] == note
    assert [(e["from"], e["to"], e["note"]) for e in run["events"]][-2:] == [
        ("running", "running", "cancel requested by alice"), ("running", "succeeded", note)]
    shown = cli("show", str(run_id)).output
    assert f"cancel_note: {note}" in shown and "running -> running (attempt 1) cancel requested by alice" in shown


def test_a_run_stopped_by_its_worker_ends_canceled_with_the_request_in_its_timeline(db, make_job, start_worker,
                                                                                   api_client, cli):
    make_job("long", func="jobfuncs:sleepy", params={"seconds": 30}, max_attempts=3)
    start_worker()
    run_id = runs.enqueue(db, "long")
    wait_for(lambda: runs.get_run(db, run_id).status == "running")
    printed = cli("cancel", str(run_id))
    assert printed.exit_code == 0
    assert printed.output == f"run {run_id}: cancel requested: {cancels.REQUESTED_MEANING}\n"
    running = api_client.ok(api_client.get(f"/api/runs/{run_id}", role="viewer"))
    if running["status"] == "running":
        assert running["cancel_note"].endswith("; its worker is stopping it")
    run = finished(api_client, run_id)
    assert (run["status"], run["error"], run["cancel_note"]) == ("canceled", "canceled", None)
    assert [(e["from"], e["to"], e["note"]) for e in run["events"]][-2:] == [
        ("running", "running", "cancel requested by cli"), ("running", "canceled", None)]


def test_a_bulk_cancel_records_each_running_runs_request(db, make_job):
    make_job("many")
    queued, running = runs.enqueue(db, "many"), runs.enqueue(db, "many")
    drive_run(db, running, RunStatus.RUNNING)
    assert runs.cancel_many(db, [running, queued], by="carol") == (1, 1)
    with db.read() as session:
        notes = {run_id: [(e.from_status, e.to_status, e.note) for e in store.run_events(session, run_id)][-1]
                 for run_id in (queued, running)}
    assert notes == {queued: ("queued", "canceled", "canceled by carol"),
                     running: ("running", "running", "cancel requested by carol")}
    assert runs.get_run(db, running).cancel_requested_at is not None
