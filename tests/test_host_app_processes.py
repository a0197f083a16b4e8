"""The example host app deployed as several real processes on one database (SQLite file and
Postgres): a timer firing every second is recorded exactly once per fire time, none lost, in
the two layouts the README describes:

- ``every-web-process``: gunicorn with 3 web processes, each running the scheduler and worker threads;
- ``web-plus-workers``: gunicorn with 2 web processes started with ``WEB_RUNS_JOBS=false``
  (``workers=0``: scheduler only) beside 2 ``flask --app examples.host_app lexyjobs worker``
  processes, which then execute every run.

One web process is SIGKILLed half-way: the others keep firing its timers (gunicorn starts a new one)."""
from __future__ import annotations

import os
import re
import signal
import socket
from datetime import datetime, timedelta

import pytest
from conftest import PYTHON, wait_for
from example_host import GUNICORN, GUNICORN_CONF, Proc, spawn_host  # noqa: F401 (fixture)
from sqlalchemy import text

from lexyjobs import registry, store
from lexyjobs.db import Database, utcnow
from lexyjobs.models import Run

pytestmark = pytest.mark.slow

SCHEDULER_STARTED = r"lexyjobs: scheduler started in pid (\d+)"


def tick_runs(db: Database) -> list[Run]:
    with db.read() as session:
        return list(store.list_runs(session, job="tick", limit=1000))


def fire_time(run: Run) -> datetime:
    assert run.fire_key is not None
    return datetime.fromisoformat(run.fire_key.split("@", 1)[1])


def fire_times(db: Database) -> list[datetime]:
    return sorted(fire_time(r) for r in tick_runs(db) if r.fire_key)


def fired_after(db: Database, at: datetime) -> bool:
    return any(t > at for t in fire_times(db))


def executions(db: Database) -> list[tuple[int, int]]:
    """(run id, pid) of every execution of a tick run (tests/jobfuncs.py:record)."""
    with db.engine.connect() as conn:
        return [(r.run_id, r.pid) for r in conn.execute(text("SELECT run_id, pid FROM executions"))]


def alive(proc: Proc) -> Proc:
    assert proc.proc.poll() is None, f"{proc.name} exited with {proc.proc.returncode}:\n{proc.output()}"
    return proc


def scheduler_pids(web: Proc) -> set[int]:
    return {int(pid) for pid in re.findall(SCHEDULER_STARTED, web.output())}


@pytest.mark.parametrize("layout", ["every-web-process", "web-plus-workers"])
def test_timers_fire_exactly_once_across_the_host_apps_processes(db, db_url, spawn_host, layout) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE executions (run_id BIGINT NOT NULL, attempt INTEGER NOT NULL, "
                          "pid INTEGER NOT NULL)"))
    registry.create_job(db, "tick", {"kind": "python", "func": "jobfuncs:record", "schedule": "every 1s",
                                     "max_concurrency": 0})
    separate = layout == "web-plus-workers"
    # A heartbeat window wide enough that a busy live process is never taken for a dead one.
    slow_rescue = {"LEXYJOBS_HEARTBEAT_INTERVAL": "1", "LEXYJOBS_STALE_AFTER": "6"}
    web_env = {"BIND": "127.0.0.1:0", "WEB_CONCURRENCY": "2" if separate else "3", **slow_rescue}
    if separate:
        web_env["WEB_RUNS_JOBS"] = "false"
    web = spawn_host([GUNICORN, "-c", GUNICORN_CONF, "examples.host_app:create_app()"], db_url, name="gunicorn",
                     **web_env)
    size = int(web_env["WEB_CONCURRENCY"])
    wait_for(lambda: len(scheduler_pids(alive(web))) >= size, timeout=60)
    workers = [spawn_host([PYTHON, "-m", "flask", "--app", "examples.host_app", "lexyjobs", "worker"], db_url,
                          name="worker", **slow_rescue) for _ in range(2 if separate else 0)]
    for worker in workers:
        worker.wait_for_line(r"lexyjobs worker ")
    web_pids = scheduler_pids(web)
    assert web.proc.pid not in web_pids  # the gunicorn master fires nothing: its forked web processes do

    ready = utcnow()
    wait_for(lambda: fired_after(db, ready + timedelta(seconds=3)), timeout=20)
    victim = min(web_pids)
    os.kill(victim, signal.SIGKILL)  # one web process dies; the others go on firing its timers
    killed = utcnow()
    wait_for(lambda: fired_after(db, killed + timedelta(seconds=3)), timeout=20)
    last = fire_times(db)[-1]
    wait_for(lambda: all(r.status == "succeeded" for r in tick_runs(db) if r.fire_key and fire_time(r) <= last),
             timeout=30)
    assert web.terminate() == 0, web.output()
    for worker in workers:
        assert worker.terminate() == 0, worker.output()

    times = fire_times(db)
    window = [t for t in times if ready <= t <= last]
    assert len(window) >= 6, window
    assert all(b - a == timedelta(seconds=1) for a, b in zip(window, window[1:])), f"gaps or repeats: {window}"
    runs = [r for r in tick_runs(db) if r.fire_key]
    assert len(runs) == len(set(times)) == len(times)  # one run per fire time
    assert all(r.trigger == "schedule" for r in runs)
    assert {r.status for r in runs if fire_time(r) <= last} == {"succeeded"}
    done = [r for r in runs if r.status == "succeeded"]
    by_run: dict[int, list[int]] = {}
    for run_id, pid in executions(db):
        by_run.setdefault(run_id, []).append(pid)
    assert {r.id for r in done} <= set(by_run)
    # Each run executed once, except possibly the one the killed process was executing, which
    # was rescued and run again elsewhere.
    repeated = {run_id: pids for run_id, pids in by_run.items() if len(pids) > 1}
    assert len(repeated) <= 1 and all(victim in pids for pids in repeated.values()), repeated
    executing_pids = {pid for _, pid in executions(db)}
    scheduling_pids = {int(r.created_by.split(":")[-1].rstrip(")")) for r in runs}
    if separate:
        worker_pids = {w.proc.pid for w in workers}
        assert executing_pids <= worker_pids, (executing_pids, worker_pids)
        assert {r.worker for r in done} <= {f"{socket.gethostname()}:{pid}" for pid in worker_pids}
        assert scheduling_pids <= scheduler_pids(web)  # only web processes fire timers
    else:
        assert executing_pids <= scheduler_pids(web)  # the web processes, the restarted one included
