"""A worker that polls rarely still starts a run at once when another process enqueues it:
Postgres through LISTEN/NOTIFY, SQLite by watching ``PRAGMA data_version``. The other process
is stood in for by a second ``Database`` on the same URL (its enqueues wake no one in-process)."""
from __future__ import annotations

import time
from typing import Callable

import psycopg
import pytest
from conftest import wait_for
from sqlalchemy import event

from lexyjobs import runs
from lexyjobs.db import NOTIFY_CHANNEL, Database
from lexyjobs.runtime import Runtime
from lexyjobs.worker import Worker


def test_an_enqueue_from_another_connection_wakes_an_idle_worker(db: Database, db_url: str, make_job: Callable[..., str],
                                                                  start_worker: Callable[..., Worker]) -> None:
    make_job("woken", max_concurrency=0)
    start_worker(poll_interval=30.0)
    elsewhere = Database(db_url)
    try:
        for _ in range(3):
            time.sleep(0.2)  # idle: the worker waits on its 30 s poll
            run_id = runs.enqueue(elsewhere, "woken")
            started = time.monotonic()
            wait_for(lambda: runs.get_run(db, run_id).status == "succeeded", timeout=5)
            assert time.monotonic() - started < 2.0
    finally:
        elsewhere.dispose()


def test_a_postgres_enqueue_notifies_once_in_its_insert(lj: Runtime, make_job: Callable[..., str]) -> None:
    """One run: the INSERT itself sends the NOTIFY (no statement of its own, a round trip less);
    several: one NOTIFY statement. Either way a listener hears one notification naming the schema."""
    if not lj.db.is_postgres:
        pytest.skip("NOTIFY is Postgres'")
    make_job("announced", max_concurrency=0)
    statements: list[str] = []
    event.listen(lj.db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with psycopg.connect(lj.db.psycopg_conninfo(), autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        schema = listener.execute("SELECT current_schema()").fetchone()
        runs.enqueue(lj.db, "announced")
        one = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
        runs.enqueue_many(lj.db, [runs.RunRequest("announced"), runs.RunRequest("announced")])
        many = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
    assert schema is not None and one == many == [schema[0]]
    notifying = [s for s in statements if "pg_notify" in s]
    assert len(notifying) == 2 and notifying[0].startswith("INSERT INTO runs")
