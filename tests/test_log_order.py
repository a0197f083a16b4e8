"""A run's log lines are stored in the order they were written, and a finished run already has
all of them. The race: the monitor takes a run's new lines for its periodic flush; before it
commits them, the run finishes and the dispatcher commits the run's end with its last lines. The
lines the monitor took then land after the last ones (or, until they land, a finished run shows
an incomplete log)."""
from __future__ import annotations

import threading
import time
from typing import Any

import jobfuncs
from conftest import wait_for

from lexyjobs import runs, store
from lexyjobs.worker.monitor import Monitor


def log_text(db: Any, run_id: int) -> str:
    with db.read() as session:
        return store.read_log(session, run_id)[0]


def test_lines_the_monitor_took_are_stored_before_the_runs_last_lines(db, make_job, start_worker, monkeypatch):
    release = threading.Event()
    original = Monitor._flush

    def slow_flush(self: Monitor, session: Any, active: Any, progress: Any, text: str) -> bool:
        if "first" in text:  # the monitor took "first": hold it back until the test releases it
            jobfuncs.LOG_ORDER_TAKEN.set()
            release.wait(10)
        return original(self, session, active, progress, text)

    jobfuncs.LOG_ORDER_TAKEN.clear()
    monkeypatch.setattr(Monitor, "_flush", slow_flush)
    make_job("ordered-log", func="jobfuncs:writes_around_a_flush")
    start_worker()
    run_id = runs.enqueue(db, "ordered-log")
    assert jobfuncs.LOG_ORDER_TAKEN.wait(10)
    deadline = time.monotonic() + 2  # give the run time to finish while "first" is held back
    while time.monotonic() < deadline and runs.get_run(db, run_id).status != "succeeded":
        time.sleep(0.05)
    finished_while_held = runs.get_run(db, run_id).status == "succeeded"
    if finished_while_held:  # it must not look finished with a log that lacks "first"
        assert log_text(db, run_id) == "first\nsecond\n"
    release.set()
    wait_for(lambda: runs.get_run(db, run_id).status == "succeeded")
    assert wait_for(lambda: "first" in (text := log_text(db, run_id)) and text) == "first\nsecond\n"
