"""A worker that polls rarely still starts a run at once when another process enqueues it:
Postgres through LISTEN/NOTIFY, SQLite by watching ``PRAGMA data_version``. The other process
is stood in for by a second ``Database`` on the same URL (its enqueues wake no one in-process)."""
from __future__ import annotations

import time
from typing import Callable

from conftest import wait_for

from lexyjobs import runs
from lexyjobs.db import Database
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
