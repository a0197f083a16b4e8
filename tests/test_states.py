"""The run state machine (lexyjobs.states): every allowed and forbidden move, compare-and-set on
the expected status and the lease, the event written with each move, and claimers racing for
the same runs (threads on both databases, separate processes on Postgres)."""
from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from conftest import PYTHON, ROOT, subprocess_env
from sqlalchemy import event

from lexyjobs import claiming, runs, store
from lexyjobs.db import Database
from lexyjobs.errors import TransitionConflict
from lexyjobs.models import RunEvent
from lexyjobs.states import ALLOWED, TERMINAL, RunStatus, transition, transition_many

# A fixed clock far enough ahead that every run enqueued "now" (scheduled_for = real time) is due.
T0 = datetime(2100, 1, 1, 12, 0, tzinfo=timezone.utc)

ALLOWED_MOVES = [(a, b) for a in RunStatus for b in sorted(ALLOWED[a])]
FORBIDDEN_MOVES = [(a, b) for a in RunStatus for b in RunStatus if b not in ALLOWED[a]]


def _move_id(move: tuple[RunStatus, RunStatus]) -> str:
    return f"{move[0]}->{move[1]}"


@pytest.fixture
def job(make_job: Callable[..., str]) -> str:
    """A job without a concurrency limit, so several of its runs may be running at once."""
    return make_job("machine", max_concurrency=0)


def claim(db: Database, limit: int = 1, *, worker: str = "test:1", now: datetime = T0) -> list[claiming.ClaimedRun]:
    with db.write() as session:
        return claiming.claim_runs(session, limit, worker=worker, now=now, postgres=db.is_postgres)


def run_in(db: Database, job: str, status: RunStatus) -> int:
    """A new run of ``job`` brought to ``status`` through real enqueue, claim and transitions."""
    if status in (RunStatus.BLOCKED, RunStatus.SKIPPED):  # created in that state, never moved into it
        return runs.record_not_run(db, job, status, reason=f"test: {status}", trigger="schedule")
    run_id = runs.enqueue(db, job)
    if status == RunStatus.QUEUED:
        return run_id
    with db.write() as session:
        if status == RunStatus.CANCELED:
            transition(session, run_id, RunStatus.CANCELED, expected=RunStatus.QUEUED, at=T0)
            return run_id
    claimed = claim(db)
    assert [c.id for c in claimed] == [run_id]
    if status != RunStatus.RUNNING:
        with db.write() as session:
            transition(session, run_id, status, expected=RunStatus.RUNNING, lease=claimed[0].lease, at=T0)
    return run_id


def events_of(db: Database, run_id: int) -> list[RunEvent]:
    with db.read() as session:
        return store.run_events(session, run_id)


def status_of(db: Database, run_id: int) -> str:
    return runs.get_run(db, run_id).status


def test_the_allowed_moves_are_exactly_those_the_spec_describes() -> None:
    assert {(str(a), str(b)) for a, b in ALLOWED_MOVES} == {
        ("queued", "running"), ("queued", "canceled"),
        ("running", "succeeded"), ("running", "failed"), ("running", "canceled"), ("running", "queued")}
    assert {str(s) for s in TERMINAL} == {"succeeded", "failed", "canceled", "blocked", "skipped"}
    assert all(not ALLOWED[s] for s in TERMINAL)


@pytest.mark.parametrize("move", ALLOWED_MOVES, ids=_move_id)
def test_every_allowed_move_succeeds_and_writes_one_event(db: Database, job: str,
                                                           move: tuple[RunStatus, RunStatus]) -> None:
    origin, target = move
    run_id = run_in(db, job, origin)
    before = events_of(db, run_id)
    at = T0 + timedelta(seconds=5)
    with db.write() as session:
        row = transition(session, run_id, target, expected=origin, at=at, note=f"moving to {target}",
                         progress_message="moved")
    run = runs.get_run(db, run_id)
    assert run.status == target
    assert run.progress_message == "moved"  # extra values are written in the same UPDATE
    assert (row.id, row.job_name, row.attempt, row.lease) == (run_id, job, run.attempt, run.lease)
    after = events_of(db, run_id)
    assert [e.id for e in after[:-1]] == [e.id for e in before]
    new = after[-1]
    assert (new.from_status, new.to_status, new.attempt, new.note, new.at) == \
        (origin, target, run.attempt, f"moving to {target}", at)


@pytest.mark.parametrize("move", FORBIDDEN_MOVES, ids=_move_id)
def test_every_forbidden_move_raises_before_touching_the_database(db: Database, job: str,
                                                                   move: tuple[RunStatus, RunStatus]) -> None:
    origin, target = move
    run_id = run_in(db, job, origin)
    before = [(e.from_status, e.to_status) for e in events_of(db, run_id)]
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with db.write() as session:
        session.connection()  # begin first, so only what transition() itself sends is recorded
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            with pytest.raises(ValueError, match=f"from {origin} to {target}"):
                transition(session, run_id, target, expected=origin, at=T0, note="forbidden")
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    assert statements == []
    assert status_of(db, run_id) == origin
    assert [(e.from_status, e.to_status) for e in events_of(db, run_id)] == before


def test_a_transition_from_a_status_the_run_is_not_in_conflicts_and_writes_nothing(db: Database, job: str) -> None:
    run_id = run_in(db, job, RunStatus.QUEUED)
    with db.write() as session:
        with pytest.raises(TransitionConflict) as caught:
            transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, at=T0)
    assert caught.value.details == {"run_id": run_id, "expected": "running", "to": "succeeded"}
    assert status_of(db, run_id) == RunStatus.QUEUED
    assert events_of(db, run_id) == []


def test_a_finished_run_cannot_be_moved_again_by_a_second_writer(db: Database, job: str) -> None:
    run_id = run_in(db, job, RunStatus.RUNNING)
    lease = runs.get_run(db, run_id).lease
    with db.write() as session:
        transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=lease, at=T0)
    with db.write() as session:
        with pytest.raises(TransitionConflict):
            transition(session, run_id, RunStatus.FAILED, expected=RunStatus.RUNNING, lease=lease, at=T0)
    assert status_of(db, run_id) == RunStatus.SUCCEEDED
    assert [(e.from_status, e.to_status) for e in events_of(db, run_id)] == \
        [("queued", "running"), ("running", "succeeded")]


def test_a_transition_with_a_stale_lease_conflicts(db: Database, job: str) -> None:
    run_id = run_in(db, job, RunStatus.RUNNING)
    current = runs.get_run(db, run_id).lease
    with db.write() as session:
        with pytest.raises(TransitionConflict, match=f"lease {current - 1}"):
            transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=current - 1, at=T0)
    assert status_of(db, run_id) == RunStatus.RUNNING
    assert len(events_of(db, run_id)) == 1
    with db.write() as session:
        transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=current, at=T0)
    assert status_of(db, run_id) == RunStatus.SUCCEEDED


def test_a_rolled_back_transition_leaves_neither_the_status_nor_the_event(db: Database, job: str) -> None:
    run_id = run_in(db, job, RunStatus.QUEUED)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        with db.write() as session:
            transition(session, run_id, RunStatus.CANCELED, expected=RunStatus.QUEUED, at=T0)
            assert [e.to_status for e in store.run_events(session, run_id)] == ["canceled"]
            raise Abort
    assert status_of(db, run_id) == RunStatus.QUEUED
    assert events_of(db, run_id) == []


def test_transition_many_moves_only_the_runs_still_in_the_expected_status(db: Database, job: str) -> None:
    queued = [run_in(db, job, RunStatus.QUEUED) for _ in range(3)]
    canceled = run_in(db, job, RunStatus.CANCELED)
    with db.write() as session:
        moved = transition_many(session, [*queued, canceled], RunStatus.CANCELED, expected=RunStatus.QUEUED,
                                at=T0, note="bulk")
    assert sorted(m.id for m in moved) == queued
    assert all(status_of(db, i) == RunStatus.CANCELED for i in queued)
    assert [len(events_of(db, i)) for i in queued] == [1, 1, 1]
    assert len(events_of(db, canceled)) == 1  # only the event of its own earlier cancel
    with db.write() as session:
        assert transition_many(session, [], RunStatus.CANCELED, expected=RunStatus.QUEUED, at=T0) == []


# ---------------------------------------------------------------- racing claimers


def _race(db: Database, threads: int, limit: int = 1) -> list[list[int]]:
    """``threads`` claimers released together, each in its own write transaction."""
    barrier = threading.Barrier(threads)

    def one(i: int) -> list[int]:
        barrier.wait(timeout=10)
        return [c.id for c in claim(db, limit, worker=f"thread:{i}")]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(threads)))


def test_racing_threads_never_claim_the_same_run_twice(db: Database, job: str) -> None:
    claimed: list[int] = []
    enqueued: list[int] = []
    for _ in range(20):
        run_id = runs.enqueue(db, job)
        enqueued.append(run_id)
        results = _race(db, 8)
        winners = [r for r in results if r]
        assert winners == [[run_id]], f"round for run {run_id}: {results}"
        claimed += winners[0]
    assert claimed == enqueued
    for run_id in enqueued:
        run = runs.get_run(db, run_id)
        assert (run.status, run.attempt, run.lease) == ("running", 1, 1)
        assert [(e.from_status, e.to_status) for e in events_of(db, run_id)] == [("queued", "running")]


def test_racing_threads_give_a_jobs_last_concurrency_slot_to_exactly_one(db: Database,
                                                                          make_job: Callable[..., str]) -> None:
    solo = make_job("solo", max_concurrency=1)
    queued = [runs.enqueue(db, solo) for _ in range(8)]
    for round_no in range(len(queued)):
        results = _race(db, 8)
        winners = [r for r in results if r]
        assert len(winners) == 1 and len(winners[0]) == 1, f"round {round_no}: {results}"
        (run_id,) = winners[0]
        with db.read() as session:
            assert store.count_runs_by_status(session, solo).get("running") == 1
        with db.write() as session:
            transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, at=T0)
    with db.read() as session:
        assert store.count_runs_by_status(session, solo) == {"succeeded": len(queued)}


_CLAIMER = """
import json, sys
from datetime import datetime
from lexyjobs import claiming, store
from lexyjobs.db import Database

db = Database(sys.argv[1])
name, now = sys.argv[2], datetime.fromisoformat(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()  # the start signal, so both processes claim at the same time
claimed = []
while True:
    with db.write() as session:
        got = claiming.claim_runs(session, 1, worker=name, now=now, postgres=db.is_postgres)
    claimed += [c.id for c in got]
    if not got:
        with db.read() as session:
            if not store.count_runs_by_status(session).get("queued"):
                break
print(json.dumps(claimed), flush=True)
db.dispose()
"""


@pytest.mark.slow
def test_racing_processes_claim_every_run_exactly_once(db: Database, db_url: str, job: str) -> None:
    if not db.is_postgres:
        pytest.skip("separate claiming processes are tested on Postgres (FOR UPDATE SKIP LOCKED)")
    ids = runs.enqueue_many(db, [runs.RunRequest(job) for _ in range(200)])
    names = ["proc:a", "proc:b"]
    procs = [subprocess.Popen([PYTHON, "-c", _CLAIMER, db_url, name, T0.isoformat()], cwd=ROOT,
                              env=subprocess_env(db_url), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in names]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    claimed = {name: json.loads(out) for name, (out, _) in zip(names, outputs)}
    everything = claimed["proc:a"] + claimed["proc:b"]
    assert len(everything) == len(set(everything)), "a run was claimed by both processes"
    assert sorted(everything) == sorted(ids)
    assert claimed["proc:a"] and claimed["proc:b"], "one process took every run; the race did not happen"
    owner = {run_id: name for name, got in claimed.items() for run_id in got}
    rows = [runs.get_run(db, i) for i in ids]
    assert all((r.status, r.attempt, r.lease, r.worker) == ("running", 1, 1, owner[r.id]) for r in rows)
    with db.read() as session:
        assert all([e.to_status for e in store.run_events(session, i)] == ["running"] for i in ids)
