"""Real child processes on real databases: several workers draining one queue, a stalled worker
whose late writes are fenced off, crashes (SIGKILL) and graceful stops (SIGTERM).

Children are ``python -m lexyjobs worker`` and ``python app.py --port 0`` started with
``conftest.subprocess_env``; their output goes to a file in tmp_path. Readiness is awaited by
polling that file or the database, never by fixed sleeps. Every child is killed in teardown."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import PYTHON, ROOT, subprocess_env, wait_for
from sqlalchemy import create_engine, text

from lexyjobs import runs, store
from lexyjobs.db import Database
from lexyjobs.runs import RunRequest

pytestmark = pytest.mark.slow

# Fast intervals for children: a run is stale 1.5 s after its last heartbeat.
CHILD_ENV = {"LEXYJOBS_POLL_INTERVAL": "0.05", "LEXYJOBS_HEARTBEAT_INTERVAL": "0.3", "LEXYJOBS_STALE_AFTER": "1.5",
             "LEXYJOBS_SHUTDOWN_GRACE": "2", "LEXYJOBS_KILL_GRACE": "1"}
READY = {"worker": "lexyjobs worker ", "app": "lexyjobs serving on http://127.0.0.1:"}
COMMANDS = {"worker": [PYTHON, "-m", "lexyjobs", "worker"], "app": [PYTHON, "app.py", "--port", "0"]}


@dataclass
class Child:
    """A lexyjobs child process and the file holding its stdout and stderr."""

    kind: str
    proc: subprocess.Popen[bytes]
    output_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def name(self) -> str:
        """The name its worker writes into ``runs.worker`` (host:pid)."""
        return f"{socket.gethostname()}:{self.proc.pid}"

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for the start-up line (printed after the worker pool started)."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.kind} exited with {self.proc.returncode}:\n{self.output()}")
            return READY[self.kind] in self.output()
        wait_for(ready, timeout)

    def wait_handles_sigterm(self, timeout: float = 20.0) -> None:
        """Wait until the process catches SIGTERM (its stop handler is installed a moment after
        the start-up line; a SIGTERM before that would simply kill it). Reads /proc (Linux)."""
        def caught() -> bool:
            status = Path(f"/proc/{self.proc.pid}/status").read_text(encoding="ascii")
            mask = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
            return bool(mask & (1 << (signal.SIGTERM - 1)))
        wait_for(caught, timeout)

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start lexyjobs children: ``spawn("worker" | "app", db_url, **env)``. Killed after the test."""
    jobs_file = tmp_path / "empty-jobs.toml"
    jobs_file.write_text("# no file jobs: the tests create their jobs in the database\n", encoding="utf-8")
    children: list[Child] = []

    def start(kind: str, db_url: str, **env: str) -> Child:
        environment = subprocess_env(db_url, LEXYJOBS_JOBS_FILE=str(jobs_file), **{**CHILD_ENV, **env})
        output_path = tmp_path / f"{kind}-{len(children)}.log"
        with open(output_path, "wb") as out:
            proc = subprocess.Popen(COMMANDS[kind], cwd=ROOT, env=environment, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        child = Child(kind, proc, output_path)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.proc.poll() is None:
            child.signal(signal.SIGCONT)  # a stopped process cannot die until it is continued
            child.proc.kill()
        child.proc.wait(timeout=10)


def status_counts(db: Database, job: str | None = None) -> dict[str, int]:
    with db.read() as session:
        return store.count_runs_by_status(session, job)


def events_of(db: Database, run_id: int) -> list[tuple[str | None, str, int, str | None]]:
    with db.read() as session:
        return [(e.from_status, e.to_status, e.attempt, e.note) for e in store.run_events(session, run_id)]


def status_is(db: Database, run_id: int, status: str) -> Any:
    run = runs.get_run(db, run_id)
    return run if run.status == status else None


# ---------------------------------------------------------------- several workers, one queue


def test_several_worker_processes_execute_every_run_exactly_once(db, db_url, make_job, spawn):
    # Postgres is the scale-out store: the full 3,000; SQLite (one writer at a time) a smaller batch.
    total = 3000 if db.is_postgres else 600
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE executions (run_id BIGINT NOT NULL, attempt INTEGER NOT NULL, "
                          "pid INTEGER NOT NULL)"))
    make_job("record", func="jobfuncs:record", max_concurrency=0)
    # Default heartbeat and stale window: under CI load a 1.5 s window can pass while a busy
    # worker waits for SQLite's write lock, and a rescued run is legitimately run twice.
    workers = [spawn("worker", db_url, LEXYJOBS_HEARTBEAT_INTERVAL="5", LEXYJOBS_STALE_AFTER="30")
               for _ in range(3)]
    for worker in workers:
        worker.wait_ready()

    ids: list[int] = []
    for start in range(0, total, 500):
        ids += runs.enqueue_many(db, [RunRequest("record") for _ in range(start, min(start + 500, total))])
    assert len(set(ids)) == total

    wait_for(lambda: not {"queued", "running"} & status_counts(db).keys(), timeout=120, interval=0.1)
    assert status_counts(db) == {"succeeded": total}
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT run_id, attempt, pid FROM executions")).all()
        by_worker = dict(conn.execute(text("SELECT worker, count(*) FROM runs GROUP BY worker")).all())
    executions = Counter(r.run_id for r in rows)
    repeated = {run_id: events_of(db, run_id) for run_id, n in executions.items() if n > 1}
    assert not repeated, f"runs executed more than once: {repeated}"
    assert sorted(executions) == sorted(ids) and len(rows) == total  # each run executed exactly once
    assert {r.attempt for r in rows} == {1}
    pids = Counter(r.pid for r in rows)
    assert set(pids) <= {w.pid for w in workers}
    assert len(pids) > 1, f"only one process did any work: {pids}"
    assert sum(by_worker.values()) == total and set(by_worker) <= {w.name for w in workers}


# ---------------------------------------------------------------- fencing a stalled worker


def _pause_outside_a_transaction(child: Child, db_url: str, app_name: str) -> None:
    """SIGSTOP ``child`` at a moment when it holds no open transaction. A process frozen inside
    one would keep its row locks (Postgres) or the write lock (SQLite) and block the rescuer until
    it is continued, which is not the case under test (a stall between database calls)."""
    for _ in range(200):
        child.signal(signal.SIGSTOP)
        if not _in_transaction(db_url, app_name):
            return
        child.signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError("the child was always inside a transaction")


def _in_transaction(db_url: str, app_name: str) -> bool:
    if db_url.startswith("sqlite"):
        probe = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True  # somebody (the child) holds the write lock
        finally:
            probe.close()
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                                          "AND state <> 'idle'"), {"name": app_name}).scalar())
    finally:
        engine.dispose()


def test_a_stalled_workers_late_writes_are_rejected_after_its_run_was_rescued(
        db, db_url, make_job, spawn, start_worker, tmp_path):
    make_job("stall", func="jobfuncs:first_attempt_stalls", params={"seconds": 3.0, "done_file": ""})
    done_file = tmp_path / "old-attempt-done"
    app_name = f"lexy-stalled-{os.getpid()}"
    old = spawn("worker", db_url, LEXYJOBS_WORKERS="1", PGAPPNAME=app_name)
    run_id = runs.enqueue(db, "stall", {"done_file": str(done_file)})
    # Attempt 1 has started in the child and its first progress report reached the database.
    wait_for(lambda: (r := runs.get_run(db, run_id)).progress_message == f"attempt 1 in pid {old.pid} started" and r)
    assert runs.get_run(db, run_id).worker == old.name

    _pause_outside_a_transaction(old, db_url, app_name)
    moved = wait_for(lambda: runs.rescue_stale(db, stale_after=1.5), timeout=10)
    assert moved == [(run_id, "queued")]

    new = start_worker(stale_after=1.5, heartbeat_interval=0.3)
    run = wait_for(lambda: status_is(db, run_id, "succeeded"))
    assert (run.attempt, run.worker, run.result) == (2, new.name, {"attempt": 2, "pid": os.getpid()})

    old.signal(signal.SIGCONT)
    wait_for(done_file.exists, timeout=10)  # the old attempt finished its sleep and returned
    old.signal(signal.SIGTERM)  # stopping writes whatever it still holds, so every late write is done
    assert old.proc.wait(timeout=10) == 0
    assert f"run {run_id}: lease 1 lost" in old.output()

    run = runs.get_run(db, run_id)
    assert (run.status, run.attempt, run.worker, run.result) == ("succeeded", 2, new.name, {"attempt": 2, "pid": os.getpid()})
    assert (run.progress, run.progress_message) == (100, f"attempt 2 in pid {os.getpid()} finished")
    with db.read() as session:
        log_text = store.read_log(session, run_id)[0]
    assert f"attempt 2 in pid {os.getpid()} finished" in log_text
    assert f"attempt 1 in pid {old.pid} finished" not in log_text
    events = events_of(db, run_id)
    assert [(e[0], e[1], e[2]) for e in events] == [
        ("queued", "running", 1), ("running", "queued", 1), ("queued", "running", 2), ("running", "succeeded", 2)]
    assert events[1][3] is not None and events[1][3].startswith(f"rescued: worker {old.name} stopped heartbeating")


# ---------------------------------------------------------------- crash (SIGKILL)


@pytest.mark.parametrize("kind", ["worker", "app"])
def test_runs_of_a_killed_process_are_rescued_by_the_next_one(db, db_url, make_job, spawn, kind):
    make_job("resumable", func="jobfuncs:first_attempt_stalls", params={"seconds": 60.0})
    make_job("at-most-once", func="jobfuncs:first_attempt_stalls", params={"seconds": 60.0}, idempotent=False)
    make_job("backlog", max_concurrency=0)
    # Both threads of the first process are taken by the two sleepers (claimed first: oldest ids);
    # the backlog stays queued behind them.
    resumable, at_most_once, *backlog = runs.enqueue_many(
        db, [RunRequest("resumable"), RunRequest("at-most-once")] + [RunRequest("backlog") for _ in range(4)])

    first = spawn(kind, db_url, LEXYJOBS_WORKERS="2")
    wait_for(lambda: status_counts(db).get("running") == 2, timeout=20)
    assert status_counts(db) == {"running": 2, "queued": 4}
    first.signal(signal.SIGKILL)
    assert first.proc.wait(timeout=10) == -signal.SIGKILL

    fresh = spawn(kind, db_url, LEXYJOBS_WORKERS="2")
    wait_for(lambda: status_is(db, resumable, "succeeded") and status_is(db, at_most_once, "failed"), timeout=20)
    wait_for(lambda: status_counts(db, "backlog") == {"succeeded": 4})
    assert fresh.proc.poll() is None

    run = runs.get_run(db, resumable)
    assert (run.attempt, run.worker, run.result) == (2, fresh.name, {"attempt": 2, "pid": fresh.pid})
    notes = [e[3] or "" for e in events_of(db, resumable) if (e[0], e[1]) == ("running", "queued")]
    assert len(notes) == 1 and notes[0].startswith(f"rescued: worker {first.name} stopped heartbeating")

    run = runs.get_run(db, at_most_once)
    assert (run.attempt, run.error, run.result) == (1, "interrupted: worker died", None)
    assert [(e[0], e[1]) for e in events_of(db, at_most_once)] == [("queued", "running"), ("running", "failed")]

    assert status_counts(db) == {"succeeded": 5, "failed": 1}  # nothing running, nothing lost


# ---------------------------------------------------------------- graceful stop (SIGTERM)


@pytest.mark.parametrize("kind", ["worker", "app"])
def test_sigterm_finishes_short_runs_and_requeues_long_ones(db, db_url, make_job, spawn, kind):
    make_job("short", func="jobfuncs:sleepy", params={"seconds": 0.5})
    make_job("long", func="jobfuncs:sleepy", params={"seconds": 30.0})
    short, long = runs.enqueue_many(db, [RunRequest("short"), RunRequest("long")])
    child = spawn(kind, db_url, LEXYJOBS_WORKERS="2", LEXYJOBS_SHUTDOWN_GRACE="2")
    child.wait_ready()
    child.wait_handles_sigterm()
    wait_for(lambda: status_counts(db).get("running") == 2, timeout=20)

    stopped_at = time.monotonic()
    child.signal(signal.SIGTERM)
    assert child.proc.wait(timeout=10) == 0
    assert time.monotonic() - stopped_at < 2 + 3  # the grace, plus a little

    run = runs.get_run(db, short)
    assert (run.status, run.attempt, run.result) == ("succeeded", 1, "slept")
    run = runs.get_run(db, long)
    assert (run.status, run.attempt, run.worker, run.heartbeat_at) == ("queued", 0, None, None)
    last_from, last_to, last_attempt, note = events_of(db, long)[-1]
    assert (last_from, last_to, last_attempt) == ("running", "queued", 0)
    assert note is not None and "re-queued" in note and child.name in note


# Libraries a process loads only when it needs them (a run of that kind, a scrape, an alert):
# start-up time and idle memory (bench.startup) stay those of what every process uses.
LOADED_ON_DEMAND = ("requests", "openai", "httpx", "prometheus_client", "smtplib", "jinja2.sandbox",
                    "lexyjobs.kinds.http", "lexyjobs.kinds.openai_kind", "alembic")


def test_a_started_server_has_not_imported_what_only_some_runs_need(db_url: str, tmp_path: Path) -> None:
    """The app restarted on a migrated database (worker, scheduler, alerter and retention threads
    running) and answering /healthz and an unauthenticated /metrics: none of LOADED_ON_DEMAND
    is imported."""
    probe = (
        "import sys, json\n"
        "from lexyjobs import create_app\n"
        "app = create_app({'jobs_file': None})\n"
        "lexy = app.extensions['lexyjobs']\n"
        "lexy.start()\n"
        "client = app.test_client()\n"
        "assert client.get('/healthz').status_code == 200\n"
        "assert client.get('/metrics').status_code == 401\n"
        "loaded = [m for m in %r if m in sys.modules]\n"
        "lexy.stop(0)\n"
        "print(json.dumps(loaded))\n" % (LOADED_ON_DEMAND,))
    # the first start migrates the fresh test database (alembic): the restart is the one measured
    subprocess.run([PYTHON, "-c", probe], cwd=tmp_path, env=subprocess_env(db_url), check=True, capture_output=True)
    done = subprocess.run([PYTHON, "-c", probe], cwd=tmp_path, env=subprocess_env(db_url), check=True,
                          capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
