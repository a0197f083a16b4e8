"""Claiming ahead (LEXYJOBS_PREFETCH): while runs are short, a worker claims more runs than it has
free threads, and those wait in memory. They must behave like runs still in the queue: a
cancel stops them before they begin, a shutdown gives them back whatever the job, and long runs
are never claimed ahead. SQLite and Postgres."""
from __future__ import annotations

import dataclasses

import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from conftest import wait_for

from lexyjobs import runs, store
from lexyjobs.db import Database
from lexyjobs.registry import JobCatalog
from lexyjobs.worker import Worker

GATE = {"gate": {"type": "string", "required": True}}
MakeJob = Callable[..., str]
StartWorker = Callable[..., Worker]


def statuses(db: Database, job: str) -> dict[str, int]:
    with db.read() as session:
        return store.count_runs_by_status(session, job)


def taught_worker(db: Database, make_job: MakeJob, start_worker: StartWorker) -> Worker:
    """A one-thread worker claiming 3 ahead, that has seen short runs (so it claims ahead)."""
    make_job("quick", max_concurrency=0)
    worker = start_worker(workers=1, prefetch=3)
    runs.enqueue_many(db, [runs.RunRequest("quick") for _ in range(5)])
    wait_for(lambda: statuses(db, "quick") == {"succeeded": 5})
    return worker


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return tmp_path / "gate"


def test_short_runs_are_claimed_ahead_of_the_free_threads(db: Database, make_job: MakeJob,
                                                          start_worker: StartWorker, gate: Path) -> None:
    taught_worker(db, make_job, start_worker)
    make_job("gated", func="jobfuncs:progress_until_gate", max_concurrency=0, params=GATE)
    runs.enqueue_many(db, [runs.RunRequest("gated", params={"gate": str(gate)}) for _ in range(6)])
    wait_for(lambda: statuses(db, "gated") == {"running": 4, "queued": 2})  # one executing, three waiting
    time.sleep(0.3)
    assert statuses(db, "gated") == {"running": 4, "queued": 2}
    gate.touch()
    wait_for(lambda: statuses(db, "gated") == {"succeeded": 6})


def test_a_run_canceled_while_it_waits_never_begins(db: Database, make_job: MakeJob, start_worker: StartWorker,
                                                    gate: Path, caplog: pytest.LogCaptureFixture) -> None:
    taught_worker(db, make_job, start_worker)
    make_job("gated", func="jobfuncs:progress_until_gate", max_concurrency=0, params=GATE)
    first, waiting = runs.enqueue_many(db, [runs.RunRequest("gated", params={"gate": str(gate)}) for _ in range(2)])
    wait_for(lambda: statuses(db, "gated") == {"running": 2})
    caplog.set_level(logging.INFO, logger="lexyjobs")
    assert runs.cancel(db, waiting, by="test") == "cancel requested"
    wait_for(lambda: runs.get_run(db, waiting).status == "canceled", timeout=3)  # not after the first run
    assert runs.get_run(db, first).status == "running"
    gate.touch()
    wait_for(lambda: runs.get_run(db, first).status == "succeeded")
    assert not [r for r in caplog.records if r.getMessage().startswith(f"run {waiting} (gated) started")]
    assert runs.get_run(db, waiting).error == "canceled"


def test_stopping_gives_back_a_waiting_run_even_of_a_job_that_is_not_idempotent(
        db: Database, make_job: MakeJob, start_worker: StartWorker, gate: Path) -> None:
    worker = taught_worker(db, make_job, start_worker)
    make_job("once", func="jobfuncs:progress_until_gate", max_concurrency=0, idempotent=False, params=GATE)
    executing, waiting = runs.enqueue_many(db, [runs.RunRequest("once", params={"gate": str(gate)}) for _ in range(2)])
    wait_for(lambda: statuses(db, "once") == {"running": 2})
    wait_for(lambda: runs.get_run(db, executing).progress == 40)  # its body runs (not only claimed for a thread)
    worker.stop(grace=0)
    begun, never_begun = runs.get_run(db, executing), runs.get_run(db, waiting)
    assert (begun.status, begun.error) == ("failed", "interrupted: worker stopped before the run finished")
    assert (never_begun.status, never_begun.attempt, never_begun.worker) == ("queued", 0, None)


def test_long_runs_are_not_claimed_ahead(db: Database, make_job: MakeJob, start_worker: StartWorker) -> None:
    make_job("slow", func="jobfuncs:sleepy", max_concurrency=0, params={"seconds": {"type": "number", "default": 0.6}})
    start_worker(workers=1, prefetch=3)
    runs.enqueue_many(db, [runs.RunRequest("slow") for _ in range(3)])
    most = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        most = max(most, statuses(db, "slow").get("running", 0))
        time.sleep(0.02)
    assert most == 1


def test_a_worker_claims_ahead_what_its_threads_start_within_a_tenth_of_a_second(lj: Any) -> None:
    worker = Worker(lj.db, dataclasses.replace(lj.settings, workers=4, prefetch=8), JobCatalog(lj.db))
    assert worker.dispatcher._ahead() == 0  # no run seen yet
    for typical, ahead in ((0.001, 32), (0.02, 20), (0.1, 4), (0.3, 1), (0.5, 0), (5.0, 0)):
        worker.pool.typical_run = typical
        assert worker.dispatcher._ahead() == ahead, typical
    lazy = Worker(lj.db, dataclasses.replace(lj.settings, workers=4, prefetch=0), JobCatalog(lj.db))
    lazy.pool.typical_run = 0.001
    assert lazy.dispatcher._ahead() == 0


def test_a_jobs_first_run_here_does_not_set_the_pace(lj: Any) -> None:
    """A job's first run in a process pays its imports (its kind's module, its own): counted in
    the pace, one slow first run kept the worker from claiming ahead for many runs after it."""
    pool = Worker(lj.db, dataclasses.replace(lj.settings, workers=1), JobCatalog(lj.db)).pool

    def finish(job: str, took: float) -> None:
        active = SimpleNamespace(finished=False, executing=True, started=time.monotonic() - took,
                                 claim=SimpleNamespace(job_name=job, queue="default"))
        pool.busy, pool.busy_by_queue["default"] = pool.busy + 1, pool.busy_by_queue["default"] + 1
        pool.release(active, SimpleNamespace())  # type: ignore[arg-type]

    finish("importer", 0.5)
    assert pool.typical_run is None
    finish("importer", 0.002)
    finish("other", 0.4)  # another job's first run
    finish("importer", 0.002)
    assert pool.typical_run is not None and pool.typical_run < 0.01
