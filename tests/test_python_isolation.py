"""python jobs with ``isolation = "process"``: real child processes, a real worker. Cancel and
timeout stop a function that never checks for cancellation within the kill grace; progress, log
lines, details, results and failures come back; the child is gone after a cancel and when its
server is killed (SIGKILL). Storage does not matter here: SQLite only."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON, ROOT, subprocess_env, wait_for

from lexyjobs import children, runs, store
from lexyjobs.errors import InvalidDefinition
from lexyjobs.models import Run

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

TERMINAL = ("succeeded", "failed", "canceled")
GRACE = 1.0
MARGIN = 8.0  # generous: child start-up and the worker's cycle on a loaded machine; the job sleeps 20 s


def finished(db: Any, run_id: int, timeout: float = 30.0) -> Run:
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in TERMINAL and r, timeout)


def log_text(db: Any, run_id: int) -> str:
    with db.read() as session:
        return store.read_log(session, run_id)[0]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie may wait for a reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def child_pid(pid_file: Path) -> int:
    return int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=30))


@pytest.mark.parametrize("ignore_sigterm", [False, True])
def test_a_cancel_stops_a_function_that_never_checks_within_the_kill_grace(db, make_job, start_worker, tmp_path,
                                                                          ignore_sigterm):
    pid_file = tmp_path / "pid"
    make_job("stubborn-child", func="jobfuncs:mark_then_sleep", isolation="process",
             params={"pid_file": {"type": "string"}, "ignore_sigterm": {"type": "boolean", "default": False}})
    start_worker(kill_grace=GRACE)
    run_id = runs.enqueue(db, "stubborn-child", {"pid_file": str(pid_file), "ignore_sigterm": ignore_sigterm})
    pid = child_pid(pid_file)
    assert pid != os.getpid() and alive(pid)
    asked = time.monotonic()
    assert runs.cancel(db, run_id) == "cancel requested"
    run = finished(db, run_id)
    assert time.monotonic() - asked < GRACE + MARGIN  # the function would sleep 20 s
    assert run.status == "canceled" and run.result is None
    assert not alive(pid)
    assert run.details is not None and run.details["pid"] == pid


def test_the_childs_process_group_is_recorded_on_the_run_for_the_rescue(db, make_job, start_worker, tmp_path):
    # A rescue on this host ends the recorded group before the next attempt (lexyjobs.children),
    # as for shell jobs: the child must be recorded, and marked as the run's.
    pid_file = tmp_path / "pid"
    make_job("recorded-child", func="jobfuncs:mark_then_sleep", isolation="process",
             params={"pid_file": {"type": "string"}})
    start_worker(kill_grace=GRACE)
    run_id = runs.enqueue(db, "recorded-child", {"pid_file": str(pid_file)})
    pid = child_pid(pid_file)
    run = wait_for(lambda: (r := runs.get_run(db, run_id)).process_group and r)
    assert run.process_group == pid and run.process_host == children.HOST
    assert children.group_alive(pid, marker=children.run_marker(run_id))
    runs.cancel(db, run_id)
    assert finished(db, run_id).status == "canceled"


def test_a_timeout_stops_a_function_that_never_checks(db, make_job, start_worker, tmp_path):
    pid_file = tmp_path / "pid"
    # 6 s: the child's start-up counts against the timeout, and the function must have started
    make_job("slow-child", func="jobfuncs:mark_then_sleep", isolation="process", timeout="6s", max_attempts=1,
             params={"pid_file": {"type": "string"}})
    start_worker(kill_grace=GRACE)
    run_id = runs.enqueue(db, "slow-child", {"pid_file": str(pid_file)})
    pid = child_pid(pid_file)
    run = finished(db, run_id)
    assert run.status == "failed" and run.error == "timed out after 6s"
    assert run.started_at is not None and run.finished_at is not None
    assert (run.finished_at - run.started_at).total_seconds() < 6 + GRACE + MARGIN  # the function sleeps 20 s
    assert not alive(pid)


def test_progress_log_lines_details_and_the_result_come_back_from_the_child(db, make_job, start_worker):
    make_job("chatty", func="jobfuncs:talks_every_way", isolation="process", params={"city": {"type": "string"}})
    start_worker()
    run = finished(db, runs.enqueue(db, "chatty", {"city": "Lyon"}))
    assert run.status == "succeeded", run.error
    assert run.result["params"] == {"city": "Lyon"}
    assert run.result["pid"] != os.getpid()  # it ran elsewhere
    assert (run.progress, run.progress_message) == (60, "most of it")
    assert run.details == {"pid": run.result["pid"], "rows": 3}
    text = log_text(db, run.id)
    for line in ("INFO through ctx.log", "through ctx.write", "through print", "WARNING through logging",
                 "through stderr"):
        assert line in text


def test_an_exception_in_the_child_fails_the_run_with_its_type_message_and_traceback(db, make_job, start_worker):
    make_job("child-boom", func="jobfuncs:boom", isolation="process", max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "child-boom"))
    assert run.status == "failed"
    assert run.error == "ValueError: boom: something broke"
    assert run.traceback is not None and run.traceback.startswith("Traceback")
    assert 'jobfuncs.py", line' in run.traceback and "in boom" in run.traceback


def test_job_failed_in_the_child_keeps_its_message_and_retry_after(db, make_job, start_worker):
    make_job("child-limited", func="jobfuncs:rate_limited", isolation="process", max_attempts=2, backoff="0s",
             backoff_jitter=0, params={"retry_after": {"type": "number"}})
    start_worker()
    run_id = runs.enqueue(db, "child-limited", {"retry_after": 40})
    run = wait_for(lambda: (r := runs.get_run(db, run_id)).status == "queued" and r.attempt == 1 and r, timeout=30)
    assert run.error == "slow down" and run.traceback is None
    with db.read() as session:
        requeued = store.run_events(session, run_id)[-1]
    assert run.scheduled_for - requeued.at == timedelta(seconds=40)


def test_a_function_that_cannot_be_loaded_fails_in_the_child_with_cannot_load(db, make_job, start_worker):
    make_job("child-missing", func="jobfuncs:no_such_function", isolation="process", max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "child-missing"))
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith("cannot load jobfuncs:no_such_function: AttributeError")


@pytest.mark.parametrize("fields, field", [
    ({"isolation": "fork"}, "isolation"),
    ({"isolation": "process", "env_passthrough": "LEXYJOBS_*"}, "env_passthrough"),
    ({"env_passthrough": ["LEXYJOBS_DATABASE_URL"]}, "env_passthrough"),  # a thread shares the server's env
])
def test_bad_isolation_fields_are_refused_naming_the_field(make_job, fields, field):
    with pytest.raises(InvalidDefinition) as refused:
        make_job("bad-isolation", func="jobfuncs:noop", **fields)
    assert refused.value.field == field


def test_killing_the_server_kills_the_child(db, db_url, make_job, tmp_path):
    pid_file = tmp_path / "pid"
    make_job("orphan-candidate", func="jobfuncs:mark_then_sleep", isolation="process",
             params={"pid_file": {"type": "string"}, "seconds": {"type": "number", "default": 60}})
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# none\n", encoding="utf-8")
    env = subprocess_env(db_url, LEXYJOBS_JOBS_FILE=str(jobs_file), LEXYJOBS_POLL_INTERVAL="0.05")
    with open(tmp_path / "worker.log", "wb") as out:
        server = subprocess.Popen([PYTHON, "-m", "lexyjobs", "worker"], cwd=ROOT, env=env,
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        runs.enqueue(db, "orphan-candidate", {"pid_file": str(pid_file)})
        pid = child_pid(pid_file)
        assert alive(pid)
        server.send_signal(signal.SIGKILL)
        assert server.wait(timeout=10) == -signal.SIGKILL
        wait_for(lambda: not alive(pid), timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        if pid_file.exists() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_the_job_form_offers_isolation_and_saves_it_with_env_passthrough(panel_as, db):
    admin = panel_as("admin")
    fields = admin.get("/jobs/kind-fields", query_string={"kind": "python"}).get_data(as_text=True)
    assert 'name="k_isolation"' in fields and "<option>process</option>" in fields
    assert 'name="k_env_passthrough"' in fields
    response = admin.post("/jobs/new", data={"name": "isolated", "kind": "python", "k_func": "jobfuncs:noop",
                                             "k_isolation": "process", "enabled": "true",
                                             "k_env_passthrough": '["LEXYJOBS_DATA_*"]'})
    assert response.status_code == 302, response.get_data(as_text=True)
    with db.read() as session:
        job = store.get_job(session, "isolated")
    assert job is not None
    assert (job.spec["isolation"], job.spec["env_passthrough"]) == ("process", ["LEXYJOBS_DATA_*"])
    detail = admin.get("/jobs/isolated").get_data(as_text=True)
    assert "isolation" in detail and "process" in detail
    edit = admin.get("/jobs/isolated/edit").get_data(as_text=True)
    assert "<option selected>process</option>" in edit
