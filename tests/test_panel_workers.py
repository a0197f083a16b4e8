"""The workers page: this process, and the live workers of the registry with host, pid, version,
threads, start, heartbeat and links to their current runs; its poll answers 204 while nothing
shown changed. SQLite and Postgres."""
from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any, Callable

import pytest
from conftest import PanelSession, drive_run, wait_for

from lexyjobs import __version__, runs, workers
from lexyjobs.db import Database, utcnow
from lexyjobs.panel import workers as panel_workers
from lexyjobs.panel.workers import RUNS_SHOWN, worker_state
from lexyjobs.runtime import Runtime
from lexyjobs.states import RunStatus

PanelAs = Callable[[str], PanelSession]
MakeJob = Callable[..., str]
STAMP = re.compile(r'hx-get="/workers\?stamp=([0-9a-f]+)"')


@pytest.fixture(autouse=True)
def patient_late_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Late after 10 s instead of 2 heartbeats (0.4 s with the tests' fast intervals), so that a
    slow moment of the machine cannot turn the rows these tests write late (or change the stamp
    between two polls); test_the_state_is_late_after_missed_heartbeats covers the rule."""
    monkeypatch.setattr(panel_workers, "LATE_BEATS", 50)


@pytest.fixture(autouse=True)
def patient_heartbeats(lj: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry row stays live for 60 s instead of the tests' 2 (LEXYJOBS_STALE_AFTER): a slow
    moment of the machine between writing a worker's row and reading the page dropped the worker
    from the page (CI, under load)."""
    monkeypatch.setattr(lj, "settings", dataclasses.replace(lj.settings, stale_after=60.0))


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def register(db: Database, name: str, *, host: str = "box-7", pid: int = 4242, threads: int = 4,
             heartbeat_age: float = 0.0) -> None:
    now = utcnow()
    with db.write() as session:
        workers.register(session, workers.Registration(name, host, pid, "9.9.1", threads, now - timedelta(hours=3)),
                         now=now - timedelta(seconds=heartbeat_age))


def row_of(html: str, name: str) -> list[str]:
    """The cells of the live workers table's row for worker ``name``."""
    row = re.search(rf"<tr><td><code>{re.escape(name)}</code>.*?</tr>", html, re.DOTALL)
    assert row, html
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.DOTALL)


def test_the_page_lists_registered_workers_with_links_to_their_runs(panel_as: PanelAs, db: Database,
                                                                    make_job: MakeJob) -> None:
    make_job("crunch")
    register(db, "test:api", threads=3)  # drive_run's runs carry worker "test:api"
    register(db, "idle-box:9", host="box-9", pid=99)
    running = [runs.enqueue(db, "crunch") for _ in range(2)]
    for run_id in running:
        drive_run(db, run_id, RunStatus.RUNNING)
    drive_run(db, runs.enqueue(db, "crunch"), RunStatus.SUCCEEDED)
    response = panel_as("viewer").get("/workers")
    assert response.status_code == 200
    html = text(response)
    assert "Live workers <span class=\"sub\">(2)</span>" in html
    cells = row_of(html, "test:api")
    assert 'class="worker-state busy"' in cells[1]
    assert cells[2:6] == ["box-7", "4242", "9.9.1", "3"]
    assert "<time" in cells[6] and "<time" in cells[7]
    assert [int(i) for i in re.findall(r'href="/runs/(\d+)"', cells[8])] == running
    assert cells[8].strip().startswith("2:") and "crunch" in cells[8]
    idle = row_of(html, "idle-box:9")
    assert 'class="worker-state idle"' in idle[1] and idle[8].strip() == "0"
    assert "none in this process" in html


def test_a_worker_with_many_runs_links_the_first_and_counts_the_rest(panel_as: PanelAs, db: Database,
                                                                   make_job: MakeJob) -> None:
    make_job("many", max_concurrency=0)
    register(db, "test:api")
    ids = [runs.enqueue(db, "many") for _ in range(RUNS_SHOWN + 2)]
    for run_id in ids:
        drive_run(db, run_id, RunStatus.RUNNING)
    cells = row_of(text(panel_as("viewer").get("/workers")), "test:api")
    assert [int(i) for i in re.findall(r'href="/runs/(\d+)"', cells[8])] == ids[:RUNS_SHOWN]
    assert '<a href="/runs?status=running">+2 more</a>' in cells[8]


def test_dead_workers_and_an_empty_registry(panel_as: PanelAs, db: Database) -> None:
    register(db, "gone:1", heartbeat_age=3600)  # past LEXYJOBS_STALE_AFTER: not live
    html = text(panel_as("viewer").get("/workers"))
    assert "gone:1" not in html and "No worker process is running" in html


def test_the_page_shows_this_processs_worker_in_the_list(panel_as: PanelAs, lj: Runtime,
                                                        start_worker: Callable[..., Any]) -> None:
    lj.worker = start_worker("panel-test-worker", workers=2)
    try:
        html = text(panel_as("viewer").get("/workers"))
    finally:
        lj.worker = None
    assert "<code>panel-test-worker</code> · 2 threads" in html and ">alive</span>" in html
    cells = row_of(html, "panel-test-worker")
    assert "(this process)" in cells[0] and cells[4:6] == [__version__, "2"]


def test_the_state_is_late_after_missed_heartbeats(db: Database) -> None:
    now = utcnow()
    register(db, "slow:1", heartbeat_age=1.0)
    with db.read() as session:
        [found] = workers.live_workers(session, now=now, stale_after=30)
    assert worker_state(found, now, late_after=10) == "idle"
    assert worker_state(found, now, late_after=0.5) == "late"
    busy = dataclasses.replace(found, runs=(workers.CurrentRun(1, "job", now, None),))
    assert worker_state(busy, now, late_after=10) == "busy"


def test_the_poll_answers_204_until_a_worker_or_its_runs_change(panel_as: PanelAs, db: Database,
                                                                make_job: MakeJob) -> None:
    make_job("poll")
    register(db, "test:api")
    viewer = panel_as("viewer")
    stamp = STAMP.search(text(viewer.get("/workers")))
    assert stamp
    assert viewer.get(f"/workers?stamp={stamp.group(1)}", hx=True).status_code == 204
    register(db, "test:api")  # a heartbeat (here: a fresh row) alone changes nothing shown
    assert viewer.get(f"/workers?stamp={stamp.group(1)}", hx=True).status_code == 204
    drive_run(db, runs.enqueue(db, "poll"), RunStatus.RUNNING)
    fragment = viewer.get(f"/workers?stamp={stamp.group(1)}", hx=True)
    assert fragment.status_code == 200 and text(fragment).lstrip().startswith('<section id="workers-live"')
    assert "<html" not in text(fragment) and "test:api" in text(fragment)
    new_stamp = STAMP.search(text(fragment))
    assert new_stamp and new_stamp.group(1) != stamp.group(1)


def test_a_live_worker_appears_without_a_reload(panel_as: PanelAs, db: Database,
                                                start_worker: Callable[..., Any]) -> None:
    viewer = panel_as("viewer")
    stamp = STAMP.search(text(viewer.get("/workers")))
    assert stamp
    start_worker("late-comer:1")
    fragment = wait_for(lambda: (r := viewer.get(f"/workers?stamp={stamp.group(1)}", hx=True)).status_code == 200 and r)
    assert "<code>late-comer:1</code>" in text(fragment)
