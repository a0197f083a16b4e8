"""The ``python`` kind end to end: a real worker runs functions from tests/jobfuncs.py on both
databases; results, errors, tracebacks, progress, logs, cancel and timeout are stored on the run."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from lexyjobs import runs, store
from lexyjobs.models import Run

TERMINAL = ("succeeded", "failed", "canceled")


def finished(db: Any, run_id: int, timeout: float = 10.0) -> Run:
    """Wait until the run reaches a terminal status and return it."""
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in TERMINAL and r, timeout)


def running(db: Any, run_id: int) -> Run:
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status == "running" and r)


def log_text(db: Any, run_id: int) -> str:
    with db.read() as session:
        return store.read_log(session, run_id)[0]


def test_the_return_value_becomes_the_result(db, make_job, start_worker):
    make_job("echo", func="jobfuncs:echo_params",
             params={"city": {"type": "string"}, "days": {"type": "integer", "default": 7}})
    start_worker()
    run = finished(db, runs.enqueue(db, "echo", {"city": "Lyon"}))
    assert run.status == "succeeded"
    assert run.result == {"city": "Lyon", "days": 7}
    assert run.error is None and run.traceback is None


def test_an_exception_fails_the_run_with_its_type_message_and_traceback(db, make_job, start_worker):
    make_job("boom", func="jobfuncs:boom", max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "boom"))
    assert run.status == "failed"
    assert run.error == "ValueError: boom: something broke"
    assert run.traceback is not None
    assert run.traceback.startswith("Traceback")
    assert 'jobfuncs.py", line' in run.traceback and "in boom" in run.traceback


def test_job_failed_records_its_message_without_a_traceback(db, make_job, start_worker):
    make_job("clean-fail", func="jobfuncs:fail_cleanly", max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "clean-fail"))
    assert run.status == "failed"
    assert run.error == "expected failure"
    assert run.traceback is None


def test_progress_and_log_lines_are_visible_while_running_and_kept_after(db, make_job, start_worker, tmp_path: Path):
    gate = tmp_path / "gate"
    make_job("gated", func="jobfuncs:progress_until_gate", params={"gate": {"type": "string"}})
    start_worker()
    run_id = runs.enqueue(db, "gated", {"gate": str(gate)})
    live = wait_for(lambda: (r := runs.get_run(db, run_id)).progress == 40 and r)
    assert live.status == "running"
    assert live.progress_message == "loading"
    wait_for(lambda: "loaded the first half" in log_text(db, run_id))
    assert runs.get_run(db, run_id).status == "running"
    gate.touch()
    run = finished(db, run_id)
    assert run.status == "succeeded" and run.result == "released"
    assert (run.progress, run.progress_message) == (40, "loading")
    assert "INFO loaded the first half" in log_text(db, run_id)


def test_every_progress_step_and_log_line_is_stored(db, make_job, start_worker):
    make_job("steps", func="jobfuncs:with_progress", params={"pause": {"type": "number", "default": 0.0}})
    start_worker()
    run_id = runs.enqueue(db, "steps")
    run = finished(db, run_id)
    assert run.status == "succeeded"
    assert (run.progress, run.progress_message) == (100, "step 4")
    lines = [line for line in log_text(db, run_id).splitlines() if line]
    assert [line.split(" INFO ")[1] for line in lines] == ["step 1", "step 2", "step 3", "step 4"]


def test_a_cooperative_function_is_canceled_promptly(db, make_job, start_worker):
    make_job("sleepy", func="jobfuncs:sleepy", params={"seconds": {"type": "number", "default": 30}})
    start_worker()
    run_id = runs.enqueue(db, "sleepy")
    running(db, run_id)
    started = time.monotonic()
    assert runs.cancel(db, run_id) == "cancel requested"
    run = finished(db, run_id, timeout=5)
    assert time.monotonic() - started < 3
    assert run.status == "canceled"
    assert run.result is None
    with db.read() as session:
        events = [(e.from_status, e.to_status) for e in store.run_events(session, run_id)]
    assert events == [("queued", "running"), ("running", "running"), ("running", "canceled")]  # the request, then the end


def test_a_function_that_ignores_cancel_is_marked_canceled_when_it_returns(db, make_job, start_worker):
    make_job("stubborn", func="jobfuncs:stubborn", params={"seconds": {"type": "number", "default": 1.0}})
    start_worker()
    run_id = runs.enqueue(db, "stubborn")
    running(db, run_id)
    assert runs.cancel(db, run_id) == "cancel requested"
    # the function cannot be interrupted: the run keeps running until it returns by itself
    assert runs.get_run(db, run_id).status == "running"
    run = finished(db, run_id)
    assert run.status == "canceled"
    assert run.result is None  # its return value ("done") is discarded
    assert run.started_at is not None and run.finished_at is not None
    assert (run.finished_at - run.started_at).total_seconds() >= 0.9


def test_a_result_that_is_not_json_fails_without_retrying(db, make_job, start_worker):
    make_job("not-json", func="jobfuncs:not_json", max_attempts=3, backoff="0s")
    start_worker()
    run = finished(db, runs.enqueue(db, "not-json"))
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith("the result is not JSON data")
    assert "object" in run.error
    assert run.attempt == 1
    assert run.result is None


@pytest.mark.parametrize("func, problem", [
    ("jobfuncs_no_such_module:run", "ModuleNotFoundError"),
    ("jobfuncs:no_such_function", "AttributeError"),
])
def test_a_function_that_cannot_be_imported_fails_with_cannot_load(db, make_job, start_worker, func, problem):
    make_job("missing", func=func, max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "missing"))
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.startswith(f"cannot load {func}: {problem}")
    assert run.traceback is None


def test_a_cooperative_function_past_its_timeout_fails_as_timed_out(db, make_job, start_worker):
    make_job("slow", func="jobfuncs:sleepy", timeout="1s", max_attempts=1,
             params={"seconds": {"type": "number", "default": 30}})
    start_worker()
    run_id = runs.enqueue(db, "slow")
    running(db, run_id)
    started = time.monotonic()
    run = finished(db, run_id, timeout=6)
    assert 0.5 < time.monotonic() - started < 3
    assert run.status == "failed"
    assert run.error == "timed out after 1s"
