"""What a rescue does with the runs of a server killed with SIGKILL (issue 14, A4 and A5): a
rescued run keeps its place in the queue, and a run claimed ahead that never began goes back
without costing an attempt (whatever the job), while one that began counts. Real servers on
SQLite and Postgres."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import wait_for
from crashes import Servers

from lexyjobs import runs, store
from lexyjobs.db import Database, utcnow
from lexyjobs.runs import NOT_BEGUN, RunRequest

pytestmark = pytest.mark.slow
GATE = {"gate": {"type": "string", "required": True}}
STALE_AFTER = 2.0  # crashes.FAST_ENV


@pytest.fixture
def servers(tmp_path: Path, db_url: str) -> Iterator[Servers]:
    started = Servers(tmp_path, db_url)
    yield started
    started.close()


def statuses(db: Database, job: str | None = None) -> dict[str, int]:
    with db.read() as session:
        return store.count_runs_by_status(session, job)


def wait_until_stale(db: Database, run_id: int) -> None:
    """Until the run's heartbeat is older than the stale window (its server is dead)."""
    wait_for(lambda: utcnow() - runs.get_run(db, run_id).heartbeat_at > timedelta(seconds=STALE_AFTER + 0.5))


def starts(db: Database, run_id: int) -> list[tuple[int, int, str | None]]:
    """(event id, attempt, note) of the run's moves to running and back to queued, in order."""
    with db.read() as session:
        return [(e.id, e.attempt, e.note) for e in store.run_events(session, run_id)
                if (e.from_status, e.to_status) in (("queued", "running"), ("running", "queued"))]


def test_a_rescued_run_is_claimed_before_the_runs_queued_after_it(
        db: Database, make_job: Callable[..., str], servers: Servers) -> None:
    make_job("stalls", func="jobfuncs:first_attempt_stalls", params={"seconds": 60.0})
    make_job("later", max_concurrency=0)
    first = servers.start(LEXYJOBS_WORKERS="1")
    rescued = runs.enqueue(db, "stalls")
    wait_for(lambda: runs.get_run(db, rescued).progress == 10, timeout=20)  # attempt 1 began
    later = runs.enqueue_many(db, [RunRequest("later") for _ in range(40)])
    servers.crash(first)
    wait_until_stale(db, rescued)

    servers.start(LEXYJOBS_WORKERS="1")  # its start-up rescue puts the run back, then it claims
    wait_for(lambda: statuses(db) == {"succeeded": 41}, timeout=30)
    second_claim = starts(db, rescued)[-1]
    assert second_claim[1] == 2
    assert second_claim[0] < min(starts(db, run_id)[0][0] for run_id in later)  # first in line


def test_runs_claimed_ahead_that_never_began_go_back_without_costing_an_attempt(
        db: Database, make_job: Callable[..., str], servers: Servers, tmp_path: Path) -> None:
    first_gate, second_gate = tmp_path / "gate-1", tmp_path / "gate-2"
    make_job("quick", max_concurrency=0)
    make_job("gated", func="jobfuncs:progress_until_gate", max_concurrency=0, params=GATE)
    make_job("gated-once", func="jobfuncs:progress_until_gate", max_concurrency=0, params=GATE, idempotent=False)
    first = servers.start(LEXYJOBS_WORKERS="1", LEXYJOBS_PREFETCH="3")
    runs.enqueue_many(db, [RunRequest("quick") for _ in range(5)])  # short runs: it now claims ahead
    wait_for(lambda: statuses(db, "quick") == {"succeeded": 5}, timeout=20)

    done, begun, once_waiting, waiting = runs.enqueue_many(db, [
        RunRequest("gated-once", {"gate": str(first_gate)}), RunRequest("gated", {"gate": str(second_gate)}),
        RunRequest("gated-once", {"gate": str(second_gate)}), RunRequest("gated", {"gate": str(second_gate)})])
    wait_for(lambda: statuses(db, "gated") == {"running": 2} and statuses(db, "gated-once") == {"running": 2})
    first_gate.touch()  # the first run ends; the thread takes up the next one, claimed ahead
    wait_for(lambda: (r := runs.get_run(db, begun)).progress == 40 and r.begun_at is not None)
    assert runs.get_run(db, done).status == "succeeded"
    assert [runs.get_run(db, r).begun_at for r in (once_waiting, waiting)] == [None, None]
    servers.crash(first)
    wait_until_stale(db, begun)

    second_gate.touch()
    servers.start(LEXYJOBS_WORKERS="1", LEXYJOBS_PREFETCH="3")
    wait_for(lambda: not {"queued", "running"} & (statuses(db).keys()), timeout=30)
    outcome = {run_id: (run.status, run.attempt) for run_id in (done, begun, once_waiting, waiting)
               if (run := runs.get_run(db, run_id))}
    assert outcome == {done: ("succeeded", 1), begun: ("succeeded", 2),  # it began: that attempt counts
                       once_waiting: ("succeeded", 1), waiting: ("succeeded", 1)}  # never began: not counted
    for run_id in (once_waiting, waiting):
        notes = [note or "" for _, _, note in starts(db, run_id)]
        assert len(notes) == 3 and notes[1].startswith(NOT_BEGUN), notes
    assert starts(db, begun)[1][2].startswith("rescued: ")


def test_a_claimed_ahead_run_of_a_job_that_is_not_idempotent_is_recorded_as_begun_before_its_body_runs(
        db: Database, db_url: str, make_job: Callable[..., str], start_worker: Callable[..., Any],
        tmp_path: Path) -> None:
    """Else a crash right after it began would look like "never began" and run it twice."""
    gate = tmp_path / "gate"
    make_job("quick", max_concurrency=0)
    params = {"gate": {"type": "string", "required": True}, "db_url": {"type": "string", "required": True}}
    make_job("once", func="jobfuncs:sees_itself_begun", max_concurrency=0, idempotent=False, params=params)
    start_worker(workers=1, prefetch=3)
    runs.enqueue_many(db, [RunRequest("quick") for _ in range(5)])  # short runs: it now claims ahead
    wait_for(lambda: statuses(db, "quick") == {"succeeded": 5})
    ids = runs.enqueue_many(db, [RunRequest("once", {"gate": str(gate), "db_url": db_url}) for _ in range(3)])
    wait_for(lambda: statuses(db, "once") == {"running": 3})  # one executing, two claimed ahead
    gate.touch()
    wait_for(lambda: statuses(db, "once") == {"succeeded": 3})
    assert [runs.get_run(db, run_id).result for run_id in ids] == [True, True, True]
