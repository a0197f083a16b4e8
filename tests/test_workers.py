"""The workers registry (lexyjobs.workers): registration at start, heartbeats, removal on a clean
stop, pruning of dead processes, current runs, ``lexyjobs workers`` and ``GET /api/workers``;
a worker in a child process is seen from this one. SQLite and Postgres."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from click.testing import CliRunner, Result
from conftest import PYTHON, ROOT, ApiClient, drive_run, subprocess_env, wait_for
from sqlalchemy import select

from lexyjobs import __version__, runs, workers
from lexyjobs.cli import main
from lexyjobs.db import Database, utcnow
from lexyjobs.models import WorkerProcess
from lexyjobs.states import RunStatus
from lexyjobs.worker import Worker

StartWorker = Callable[..., Worker]
MakeJob = Callable[..., str]
STALE = 2.0  # conftest.FAST's stale_after
NAP_PARAMS = {"seconds": {"type": "number", "default": 30}}


def live(db: Database) -> dict[str, workers.WorkerInfo]:
    with db.read() as session:
        return {w.name: w for w in workers.live_workers(session, now=utcnow(), stale_after=STALE)}


def rows(db: Database) -> dict[str, WorkerProcess]:
    """Every row of the registry, live or not."""
    with db.read() as session:
        return {row.name: row for row in session.scalars(select(WorkerProcess))}


def registration(name: str, *, threads: int = 2, pid: int = 4242) -> workers.Registration:
    return workers.Registration(name, "elsewhere", pid, "0.0.9", threads, utcnow() - timedelta(hours=2))


def add_row(db: Database, name: str, *, heartbeat_age: float) -> None:
    """A registry row as another process would leave it, its last heartbeat ``heartbeat_age`` s ago."""
    with db.write() as session:
        workers.register(session, registration(name), now=utcnow() - timedelta(seconds=heartbeat_age))


# ---------------------------------------------------------------- lifecycle


def test_a_started_worker_registers_its_host_pid_version_and_threads(db: Database, start_worker: StartWorker) -> None:
    before = utcnow()
    start_worker("reg:1", workers=3)
    found = live(db)["reg:1"]
    assert (found.host, found.pid, found.version, found.threads) == (socket.gethostname(), os.getpid(), __version__, 3)
    assert before - timedelta(seconds=1) <= found.started_at <= found.heartbeat_at <= utcnow()
    assert found.runs == ()


def test_the_heartbeat_advances_while_the_worker_is_idle(db: Database, start_worker: StartWorker) -> None:
    start_worker("beat:1")  # heartbeat_interval 0.2 s
    first = live(db)["beat:1"].heartbeat_at
    second = wait_for(lambda: (beat := live(db)["beat:1"].heartbeat_at) > first and beat, timeout=3)
    wait_for(lambda: live(db)["beat:1"].heartbeat_at > second, timeout=3)


def test_a_clean_stop_removes_the_worker(db: Database, start_worker: StartWorker) -> None:
    staying, leaving = start_worker("stays:1"), start_worker("leaves:1")
    assert {"stays:1", "leaves:1"} <= set(rows(db))
    leaving.stop(grace=0)
    assert "leaves:1" not in rows(db) and "stays:1" in rows(db)
    assert staying.alive()


def test_a_live_worker_prunes_dead_processes_and_keeps_fresh_ones(db: Database, start_worker: StartWorker) -> None:
    add_row(db, "dead:1", heartbeat_age=3600)
    add_row(db, "fresh:1", heartbeat_age=0)
    assert set(live(db)) == {"fresh:1"}  # a dead row is never listed, even before it is pruned
    start_worker("pruner:1")  # prunes at start, then every stale_after / 4
    assert set(rows(db)) == {"fresh:1", "pruner:1"}
    add_row(db, "dead:2", heartbeat_age=STALE + 1)
    wait_for(lambda: "dead:2" not in rows(db), timeout=5)
    assert {"fresh:1", "pruner:1"} <= set(rows(db))


def test_prune_dead_deletes_only_rows_older_than_the_window(db: Database) -> None:
    add_row(db, "old", heartbeat_age=STALE + 0.5)
    add_row(db, "recent", heartbeat_age=STALE - 0.5)
    assert workers.prune_dead(db, now=utcnow(), stale_after=STALE) == ["old"]
    assert set(rows(db)) == {"recent"}
    assert workers.prune_dead(db, now=utcnow(), stale_after=STALE) == []


def test_a_heartbeat_writes_back_a_row_that_was_pruned(db: Database) -> None:
    me = registration("stalled:1")
    with db.write() as session:
        workers.register(session, me, now=utcnow())
    with db.write() as session:
        assert workers.heartbeat(session, me, now=utcnow()) is True
        workers.unregister(session, me.name)  # as a peer's prune would, while this process stalled
    with db.write() as session:
        assert workers.heartbeat(session, me, now=utcnow()) is False
    assert rows(db)["stalled:1"].threads == 2


def test_registering_again_replaces_the_row_of_the_same_name(db: Database) -> None:
    """A restarted container is the same host with the same pid (1): it must not fail to start."""
    add_row(db, "box:1", heartbeat_age=600)
    with db.write() as session:
        workers.register(session, registration("box:1", threads=8, pid=1), now=utcnow())
    row = rows(db)["box:1"]
    assert (row.threads, row.pid) == (8, 1) and "box:1" in live(db)


# ---------------------------------------------------------------- current runs


def test_a_workers_current_runs_are_listed_until_they_finish(db: Database, make_job: MakeJob,
                                                            start_worker: StartWorker) -> None:
    make_job("nap", func="jobfuncs:sleepy", max_concurrency=0, params=NAP_PARAMS)
    make_job("quick")
    start_worker("busy:1", workers=3)  # two naps, and a thread for the quick run
    naps = [runs.enqueue(db, "nap", {"seconds": 30}) for _ in range(2)]
    done = runs.enqueue(db, "quick")
    wait_for(lambda: runs.get_run(db, done).status == "succeeded")
    wait_for(lambda: len(live(db)["busy:1"].runs) == 2)
    current = live(db)["busy:1"].runs
    assert [(r.id, r.job) for r in current] == [(naps[0], "nap"), (naps[1], "nap")]
    assert all(r.started_at is not None for r in current)
    for run_id in naps:
        runs.cancel(db, run_id, by="test")
    wait_for(lambda: live(db)["busy:1"].runs == ())


def test_runs_of_other_workers_are_not_listed_as_current(db: Database, make_job: MakeJob) -> None:
    make_job("elsewhere")
    add_row(db, "test:api", heartbeat_age=0)  # drive_run's runs carry worker "test:api"
    add_row(db, "idle:1", heartbeat_age=0)
    running = runs.enqueue(db, "elsewhere")
    drive_run(db, running, RunStatus.RUNNING)
    drive_run(db, runs.enqueue(db, "elsewhere"), RunStatus.SUCCEEDED)
    found = live(db)
    assert [r.id for r in found["test:api"].runs] == [running] and found["idle:1"].runs == ()


# ---------------------------------------------------------------- lexyjobs workers


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False,
                                  env={"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": "",
                                       "LEXYJOBS_STALE_AFTER": str(STALE), "LEXYJOBS_HEARTBEAT_INTERVAL": "0.2"})
    return invoke


def test_the_workers_command_prints_a_table_of_live_workers(cli: Callable[..., Result], db: Database,
                                                            make_job: MakeJob, start_worker: StartWorker) -> None:
    make_job("nap", func="jobfuncs:sleepy", params=NAP_PARAMS)
    start_worker("cli:1", workers=3)
    run_id = runs.enqueue(db, "nap", {"seconds": 30})
    wait_for(lambda: live(db)["cli:1"].runs)
    add_row(db, "dead:1", heartbeat_age=3600)
    result = cli("workers")
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split() == ["NAME", "HOST", "PID", "VERSION", "THREADS", "STARTED", "HEARTBEAT", "RUNNING"]
    assert len(lines) == 1 and "dead:1" not in result.output
    cells = lines[0].split()
    assert cells[:5] == ["cli:1", socket.gethostname(), str(os.getpid()), __version__, "3"]
    assert re.search(rf"\d+m?s ago +1: {run_id} \(nap\)$", lines[0]), lines[0]
    runs.cancel(db, run_id, by="test")


def test_the_workers_command_prints_json(cli: Callable[..., Result], db: Database, start_worker: StartWorker) -> None:
    start_worker("cli:2", workers=2)
    result = cli("workers", "--json")
    assert result.exit_code == 0, result.output
    [found] = json.loads(result.output)
    assert set(found) == {"name", "host", "pid", "version", "threads", "queues", "started_at", "heartbeat_at", "runs"}
    assert (found["name"], found["pid"], found["threads"], found["runs"]) == ("cli:2", os.getpid(), 2, [])
    assert found["queues"] is None  # every queue
    heartbeat = datetime.fromisoformat(found["heartbeat_at"])
    assert heartbeat.tzinfo is not None and utcnow() - timedelta(seconds=STALE) <= heartbeat <= utcnow()
    assert datetime.fromisoformat(found["started_at"]) <= heartbeat


def test_the_workers_command_without_workers_prints_only_the_header(cli: Callable[..., Result], db: Database) -> None:
    result = cli("workers")
    assert result.exit_code == 0 and result.output.split() == [
        "NAME", "HOST", "PID", "VERSION", "THREADS", "STARTED", "HEARTBEAT", "RUNNING"]
    assert json.loads(cli("workers", "--json").output) == []


# ---------------------------------------------------------------- GET /api/workers


def test_the_api_lists_live_workers_with_their_runs(api_client: ApiClient, db: Database, make_job: MakeJob,
                                                    start_worker: StartWorker) -> None:
    make_job("nap", func="jobfuncs:sleepy", params=NAP_PARAMS)
    start_worker("api:1", workers=2)
    run_id = runs.enqueue(db, "nap", {"seconds": 30})
    wait_for(lambda: live(db)["api:1"].runs)
    body = api_client.ok(api_client.get("/api/workers", role="viewer"))  # checked against the OpenAPI schema
    assert body["total"] == 1
    [found] = body["workers"]
    assert (found["name"], found["host"], found["threads"]) == ("api:1", socket.gethostname(), 2)
    assert [(r["id"], r["job"]) for r in found["runs"]] == [(run_id, "nap")]
    runs.cancel(db, run_id, by="test")


# ---------------------------------------------------------------- another process


@pytest.fixture
def child_worker(db_url: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``python -m lexyjobs worker`` on the test database (fast heartbeats); killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(threads: int) -> subprocess.Popen[bytes]:
        env = subprocess_env(db_url, LEXYJOBS_JOBS_FILE="", LEXYJOBS_WORKERS=str(threads),
                             LEXYJOBS_HEARTBEAT_INTERVAL="0.2", LEXYJOBS_STALE_AFTER=str(STALE),
                             LEXYJOBS_POLL_INTERVAL="0.05", LEXYJOBS_SHUTDOWN_GRACE="1")
        with open(tmp_path / f"child-{len(started)}.log", "wb") as out:
            proc = subprocess.Popen([PYTHON, "-m", "lexyjobs", "worker"], cwd=ROOT, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_a_worker_in_another_process_is_seen_and_leaves_on_sigterm(db: Database, child_worker: Any) -> None:
    proc = child_worker(threads=2)
    name = f"{socket.gethostname()}:{proc.pid}"
    found = wait_for(lambda: live(db).get(name), timeout=20)
    assert (found.pid, found.threads, found.version) == (proc.pid, 2, __version__)
    wait_for(lambda: live(db)[name].heartbeat_at > found.heartbeat_at, timeout=5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert name not in rows(db)


@pytest.mark.slow
def test_a_killed_worker_process_is_pruned_by_a_live_one(db: Database, child_worker: Any,
                                                         start_worker: StartWorker) -> None:
    proc = child_worker(threads=1)
    name = f"{socket.gethostname()}:{proc.pid}"
    wait_for(lambda: name in live(db), timeout=20)
    proc.kill()
    proc.wait(timeout=10)
    assert name in rows(db)  # nobody cleaned up after it yet
    start_worker("survivor:1")
    wait_for(lambda: name not in rows(db), timeout=STALE + 5)
    assert set(live(db)) == {"survivor:1"}
