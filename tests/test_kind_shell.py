"""The ``shell`` kind end to end with real subprocesses, on both databases: exit codes, live
output, ``::progress`` lines, params as environment variables, no shell, and killing the whole
process group on timeout and cancel."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from conftest import PYTHON, wait_for

from lexyjobs import runs, store
from lexyjobs.models import Run

TERMINAL = ("succeeded", "failed", "canceled")
# waits (at most 10 s) until the file "$1" exists; used to hold a script while the test looks at it
WAIT_FOR_GATE = 'i=0; while [ ! -e "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done'


def finished(db: Any, run_id: int, timeout: float = 10.0) -> Run:
    """Wait until the run reaches a terminal status and return it."""
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in TERMINAL and r, timeout)


def log_text(db: Any, run_id: int) -> str:
    with db.read() as session:
        return store.read_log(session, run_id)[0]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def test_exit_code_zero_succeeds_with_the_exit_code_as_result(db, make_job, start_worker):
    make_job("ok", kind="shell", argv=["sh", "-c", "echo all good"])
    start_worker()
    run_id = runs.enqueue(db, "ok")
    run = finished(db, run_id)
    assert run.status == "succeeded"
    assert run.result == {"exit_code": 0}
    assert run.details is not None and run.details["exit_code"] == 0
    assert log_text(db, run_id) == "all good\n"


def test_a_non_zero_exit_code_fails_the_run(db, make_job, start_worker):
    make_job("exit3", kind="shell", argv=["sh", "-c", "echo about to fail; exit 3"], max_attempts=1)
    start_worker()
    run_id = runs.enqueue(db, "exit3")
    run = finished(db, run_id)
    assert run.status == "failed"
    assert run.error == "exit code 3"
    assert run.details is not None and run.details["exit_code"] == 3
    assert "about to fail" in log_text(db, run_id)


def test_output_streams_into_the_log_while_the_process_runs(db, make_job, start_worker, tmp_path: Path):
    gate = tmp_path / "gate"
    make_job("stream", kind="shell", argv=["sh", "-c", f"echo first line; {WAIT_FOR_GATE}; echo second line",
                                           "sh", str(gate)])
    start_worker()
    run_id = runs.enqueue(db, "stream")
    wait_for(lambda: "first line" in log_text(db, run_id))
    assert runs.get_run(db, run_id).status == "running"
    assert "second line" not in log_text(db, run_id)
    gate.touch()
    run = finished(db, run_id)
    assert run.status == "succeeded"
    assert log_text(db, run_id) == "first line\nsecond line\n"


def test_progress_lines_set_the_run_progress_and_stay_out_of_the_log(db, make_job, start_worker, tmp_path: Path):
    gate = tmp_path / "gate"
    make_job("progress", kind="shell", argv=["sh", "-c", f"echo working; echo '::progress 40 halfway there'; "
                                             f"{WAIT_FOR_GATE}", "sh", str(gate)])
    start_worker()
    run_id = runs.enqueue(db, "progress")
    live = wait_for(lambda: (r := runs.get_run(db, run_id)).progress is not None and r)
    assert live.status == "running"
    assert (live.progress, live.progress_message) == (40, "halfway there")
    gate.touch()
    run = finished(db, run_id)
    assert run.status == "succeeded"
    assert (run.progress, run.progress_message) == (40, "halfway there")
    assert log_text(db, run_id) == "working\n"


def test_params_arrive_as_lexyjobs_param_environment_variables(db, make_job, start_worker):
    script = ("import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
              "if k.startswith('LEXYJOBS_PARAM_')}))")
    make_job("params", kind="shell", argv=[PYTHON, "-c", script],
             params={"city": {"type": "string"}, "days": {"type": "integer", "default": 3},
                     "dry_run": {"type": "boolean", "default": False}})
    start_worker()
    run_id = runs.enqueue(db, "params", {"city": "São Paulo"})
    run = finished(db, run_id)
    assert run.status == "succeeded"
    assert json.loads(log_text(db, run_id)) == {
        "LEXYJOBS_PARAM_CITY": "São Paulo", "LEXYJOBS_PARAM_DAYS": "3", "LEXYJOBS_PARAM_DRY_RUN": "false"}


def test_params_and_argv_are_never_interpreted_by_a_shell(db, make_job, start_worker, tmp_path: Path):
    from_param, from_argv = tmp_path / "from-param", tmp_path / "from-argv"
    make_job("inject", kind="shell",
             argv=[PYTHON, "-c", "import os, sys; print(os.environ['LEXYJOBS_PARAM_TARGET']); print(sys.argv[1])",
                   f"x; touch {from_argv}"],
             params={"target": {"type": "string"}})
    start_worker()
    hostile = f"report.csv; touch {from_param} $(touch {from_param})"
    run_id = runs.enqueue(db, "inject", {"target": hostile})
    run = finished(db, run_id)
    assert run.status == "succeeded"
    assert log_text(db, run_id) == f"{hostile}\nx; touch {from_argv}\n"
    assert not from_param.exists()
    assert not from_argv.exists()


def test_a_timeout_kills_the_process_and_fails_the_run(db, make_job, start_worker):
    make_job("slow", kind="shell", argv=["sleep", "30"], timeout="1s", max_attempts=1)
    start_worker()
    run_id = runs.enqueue(db, "slow")
    wait_for(lambda: runs.get_run(db, run_id).status == "running")
    started = time.monotonic()
    run = finished(db, run_id, timeout=8)
    assert time.monotonic() - started < 4
    assert run.status == "failed"
    assert run.error is not None and "timed out" in run.error
    assert run.details is not None
    assert not pid_alive(run.details["pid"])


def test_cancel_kills_the_whole_process_group_including_grandchildren(db, make_job, start_worker, tmp_path: Path):
    pid_file = tmp_path / "grandchild.pid"
    make_job("family", kind="shell",
             argv=["sh", "-c", 'sleep 60 & echo $! > "$1"; echo spawned; wait', "sh", str(pid_file)])
    start_worker()
    run_id = runs.enqueue(db, "family")
    wait_for(lambda: "spawned" in log_text(db, run_id))
    grandchild = int(pid_file.read_text())
    assert pid_alive(grandchild)
    started = time.monotonic()
    assert runs.cancel(db, run_id) == "cancel requested"
    wait_for(lambda: not pid_alive(grandchild), timeout=5)
    run = finished(db, run_id, timeout=5)
    assert time.monotonic() - started < 4
    assert run.status == "canceled"


def test_cancel_kills_a_grandchild_that_ignores_sigterm_after_the_kill_grace(db, make_job, start_worker,
                                                                            tmp_path: Path):
    pid_file = tmp_path / "grandchild.pid"
    # the grandchild ignores SIGTERM and keeps the output pipe open: only SIGKILL ends the run
    make_job("stubborn", kind="shell",
             argv=["sh", "-c", '(trap "" TERM; exec sleep 60) & echo $! > "$1"; echo spawned; wait',
                   "sh", str(pid_file)])
    start_worker(kill_grace=0.5)
    run_id = runs.enqueue(db, "stubborn")
    wait_for(lambda: "spawned" in log_text(db, run_id))
    grandchild = int(pid_file.read_text())
    assert pid_alive(grandchild)
    runs.cancel(db, run_id)
    wait_for(lambda: not pid_alive(grandchild), timeout=5)
    assert finished(db, run_id, timeout=5).status == "canceled"


def test_a_missing_executable_fails_with_a_clear_error(db, make_job, start_worker, tmp_path: Path):
    missing = str(tmp_path / "no-such-program")
    make_job("missing", kind="shell", argv=[missing, "--flag"], max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "missing"))
    assert run.status == "failed"
    assert run.error == f"cannot start {missing}: No such file or directory"
    assert run.traceback is None
