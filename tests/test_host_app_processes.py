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
from collections import Counter
from datetime import datetime, timedelta

import pytest
from conftest import PYTHON, wait_for
from hostapp import GUNICORN, GUNICORN_CONF, Proc, spawn_host  # noqa: F401 (fixture)
from sqlalchemy import text

from lexyjobs import registry, store
from lexyjobs.db import Database, utcnow
from lexyjobs.models import Run

pytestmark = pytest.mark.slow

SCHEDULER_STARTED = r"lexyjobs: scheduler started in pid (\d+)"


def tick_runs(db: Database) -> list[Run]:
    with db.read() as session:
        return list(store.list_runs(session, job="tick", limit=1000))


def fire_times(db: Database) -> list[datetime]:
    return sorted(datetime.fromisoformat(r.fire_key.split("@", 1)[1]) for r in tick_runs(db) if r.fire_key)


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
                                     "max_concurrency": 0, "max_attempts": 1})
    separate = layout == "web-plus-workers"
    web_env = {"BIND": "127.0.0.1:0", "WEB_CONCURRENCY": "2" if separate else "3"}
    if separate:
        web_env["WEB_RUNS_JOBS"] = "false"
    web = spawn_host([GUNICORN, "-c", GUNICORN_CONF, "examples.host_app:create_app()"], db_url, name="gunicorn",
                     **web_env)
    size = int(web_env["WEB_CONCURRENCY"])
    wait_for(lambda: len(scheduler_pids(alive(web))) >= size, timeout=60)
    workers = [spawn_host([PYTHON, "-m", "flask", "--app", "examples.host_app", "lexyjobs", "worker"], db_url,
                          name="worker") for _ in range(2 if separate else 0)]
    for worker in workers:
        worker.wait_for_line(r"lexyjobs worker ")
    web_pids = scheduler_pids(web)
    assert web.proc.pid not in web_pids  # the gunicorn master fires nothing: its forked web processes do

    ready = utcnow()
    wait_for(lambda: fired_after(db, ready + timedelta(seconds=3)), timeout=20)
    os.kill(min(web_pids), signal.SIGKILL)  # one web process dies; the others go on firing its timers
    killed = utcnow()
    wait_for(lambda: fired_after(db, killed + timedelta(seconds=3)), timeout=20)
    last = fire_times(db)[-1]
    wait_for(lambda: all(r.status == "succeeded" for r in tick_runs(db)
                         if r.fire_key and datetime.fromisoformat(r.fire_key.split("@", 1)[1]) <= last),
             timeout=20)
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
    done = [r for r in runs if r.status == "succeeded"]
    executed = Counter(run_id for run_id, _ in executions(db))
    assert {r.id for r in done} <= set(executed) and all(n == 1 for n in executed.values()), executed
    executing_pids = {pid for _, pid in executions(db)}
    scheduling_pids = {int(r.created_by.split(":")[-1].rstrip(")")) for r in runs}
    if separate:
        worker_pids = {w.proc.pid for w in workers}
        assert executing_pids <= worker_pids, (executing_pids, worker_pids)
        assert {r.worker for r in done} <= {f"{socket.gethostname()}:{pid}" for pid in worker_pids}
        assert scheduling_pids <= scheduler_pids(web)  # only web processes fire timers
    else:
        assert executing_pids <= scheduler_pids(web)
        assert len(executing_pids) >= 2  # runs spread over the web processes
