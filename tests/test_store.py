"""Named queries (lexyjobs.store) and run operations (lexyjobs.runs) on both databases: claim
order, delays, concurrency limits, batch claims, lease fencing, the bounded log, cancel, retry,
rescue of stale runs, enqueue validation, and how job definitions are saved."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import event

from lexyjobs import claiming, registry, runs, states, store
from lexyjobs.db import Database, utcnow
from lexyjobs.errors import Conflict, InvalidParams, JobNotFound, LexyjobsError, RunNotFound
from lexyjobs.states import RunStatus, transition

# A fixed clock far enough ahead that every run enqueued "now" (scheduled_for = real time) is due.
T0 = datetime(2100, 1, 1, 12, 0, tzinfo=timezone.utc)
MakeJob = Callable[..., str]


def claim(db: Database, limit: int = 1, *, worker: str = "test:1", now: datetime = T0) -> list[claiming.ClaimedRun]:
    with db.write() as session:
        return claiming.claim_runs(session, limit, worker=worker, now=now, postgres=db.is_postgres)


def claimed_ids(db: Database, limit: int = 1, *, now: datetime = T0) -> list[int]:
    return [c.id for c in claim(db, limit, now=now)]


def finish(db: Database, run_id: int, status: RunStatus = RunStatus.SUCCEEDED) -> None:
    with db.write() as session:
        transition(session, run_id, status, expected=RunStatus.RUNNING, at=T0, finished_at=T0)


def statuses(db: Database, job: str | None = None) -> dict[str, int]:
    with db.read() as session:
        return store.count_runs_by_status(session, job)


def events(db: Database, run_id: int) -> list[tuple[str | None, str, int]]:
    with db.read() as session:
        return [(e.from_status, e.to_status, e.attempt) for e in store.run_events(session, run_id)]


# ---------------------------------------------------------------- claim


def test_runs_are_claimed_by_priority_then_scheduled_time_then_creation(db: Database, make_job: MakeJob) -> None:
    job = make_job("ordered", max_concurrency=0)
    at = {name: T0 + timedelta(seconds=s) for name, s in [("early", 1), ("mid", 2), ("late", 3)]}
    ids = {
        "low-early-first": runs.enqueue(db, job, priority=0, scheduled_for=at["early"]),
        "high-late": runs.enqueue(db, job, priority=5, scheduled_for=at["late"]),
        "high-mid": runs.enqueue(db, job, priority=5, scheduled_for=at["mid"]),
        "low-early-second": runs.enqueue(db, job, priority=0, scheduled_for=at["early"]),
        "top-late": runs.enqueue(db, job, priority=10, scheduled_for=at["late"]),
        "low-mid": runs.enqueue(db, job, priority=0, scheduled_for=at["mid"]),
    }
    expected = [ids[n] for n in ("top-late", "high-mid", "high-late", "low-early-first", "low-early-second",
                                 "low-mid")]
    later = T0 + timedelta(minutes=1)
    one_by_one = [claimed_ids(db, 1, now=later) for _ in expected]
    assert one_by_one == [[i] for i in expected]


def test_a_batch_claim_returns_its_runs_in_queue_order(db: Database, make_job: MakeJob) -> None:
    job = make_job("batch-order", max_concurrency=0)
    priorities = (1, 9, 4, 9, 0)
    ids = [runs.enqueue(db, job, priority=p) for p in priorities]
    in_queue_order = [i for _, i in sorted(zip(priorities, ids), key=lambda pair: (-pair[0], pair[1]))]
    assert claimed_ids(db, 10) == in_queue_order


def test_a_delayed_run_is_claimed_only_once_it_is_due(db: Database, make_job: MakeJob) -> None:
    job = make_job("delayed")
    due = T0 + timedelta(hours=1)
    run_id = runs.enqueue(db, job, scheduled_for=due)
    assert claimed_ids(db, 5, now=due - timedelta(seconds=1)) == []
    assert runs.get_run(db, run_id).status == RunStatus.QUEUED
    assert claimed_ids(db, 5, now=due) == [run_id]


def test_a_past_scheduled_for_is_clamped_to_the_enqueue_time(db: Database, make_job: MakeJob) -> None:
    job = make_job("clamped", max_concurrency=0)
    first = runs.enqueue(db, job)
    backdated = runs.enqueue(db, job, scheduled_for=datetime(2000, 1, 1, tzinfo=timezone.utc))
    run = runs.get_run(db, backdated)
    assert run.scheduled_for >= run.created_at
    assert claimed_ids(db, 2) == [first, backdated]  # it does not jump ahead of older runs


def test_max_concurrency_one_keeps_a_second_run_queued_until_the_first_finishes(db: Database,
                                                                                 make_job: MakeJob) -> None:
    job = make_job("single", max_concurrency=1)
    first, second = runs.enqueue(db, job), runs.enqueue(db, job)
    assert claimed_ids(db, 5) == [first]
    assert claimed_ids(db, 5) == []
    waiting = runs.get_run(db, second)
    assert (waiting.status, waiting.attempt, waiting.worker) == ("queued", 0, None)
    finish(db, first)
    assert claimed_ids(db, 5) == [second]


def test_max_concurrency_two_allows_two_running_runs(db: Database, make_job: MakeJob) -> None:
    job = make_job("pair", max_concurrency=2)
    ids = [runs.enqueue(db, job) for _ in range(3)]
    assert claimed_ids(db, 5) == ids[:2]
    assert claimed_ids(db, 5) == []
    finish(db, ids[0], RunStatus.FAILED)
    assert claimed_ids(db, 5) == ids[2:]


def test_max_concurrency_zero_is_unlimited(db: Database, make_job: MakeJob) -> None:
    job = make_job("unlimited", max_concurrency=0)
    ids = [runs.enqueue(db, job) for _ in range(6)]
    assert claimed_ids(db, 4) == ids[:4]
    assert claimed_ids(db, 4) == ids[4:]
    assert statuses(db, job) == {"running": 6}


def test_a_saturated_jobs_queued_runs_do_not_starve_other_jobs_behind_them(db: Database, make_job: MakeJob) -> None:
    solo = make_job("solo", max_concurrency=1)
    other = make_job("other", max_concurrency=0)
    solo_runs = [runs.enqueue(db, solo, priority=10) for _ in range(3)]
    other_runs = [runs.enqueue(db, other, priority=0) for _ in range(2)]
    assert claimed_ids(db, 1) == [solo_runs[0]]
    # the two remaining solo runs head the queue, but solo is at its limit
    assert claimed_ids(db, 1) == [other_runs[0]]
    assert claimed_ids(db, 5) == [other_runs[1]]
    assert statuses(db, solo) == {"running": 1, "queued": 2}


def test_a_batch_claim_takes_several_runs_in_one_transaction(db: Database, make_job: MakeJob) -> None:
    job = make_job("batch", max_concurrency=0, max_attempts=4,
                   params={"n": {"type": "integer", "default": 0}})
    ids = [runs.enqueue(db, job, {"n": n}, trigger="api") for n in range(7)]
    with db.read() as session:
        version = store.job_versions(session, [job])[job]
    now = T0 + timedelta(seconds=30)
    with db.write() as session:
        claimed = claiming.claim_runs(session, 5, worker="host:42", now=now, postgres=db.is_postgres)
        # inside the transaction the five are already running
        assert store.count_runs_by_status(session, job) == {"running": 5, "queued": 2}
    assert [c.id for c in claimed] == ids[:5]
    assert [(c.job_name, c.job_version, c.attempt, c.lease, c.max_attempts, c.trigger) for c in claimed] == \
        [(job, version, 1, 1, 4, "api")] * 5
    assert [c.params for c in claimed] == [{"n": n} for n in range(5)]
    for run_id in ids[:5]:
        run = runs.get_run(db, run_id)
        assert (run.status, run.worker, run.started_at, run.heartbeat_at, run.attempt, run.lease) == \
            ("running", "host:42", now, now, 1, 1)
        assert events(db, run_id) == [("queued", "running", 1)]
    assert statuses(db, job) == {"running": 5, "queued": 2}


def test_the_claim_reads_the_first_queued_runs_in_index_order_without_sorting_the_queue(
        db: Database, make_job: MakeJob) -> None:
    """SQLite: the claim's candidate query walks ix_runs_queue in order (its cost does not grow
    with the queue's depth). Postgres plans by statistics; there the claim's order is tested above."""
    if db.is_postgres:
        pytest.skip("SQLite's planner only: Postgres chooses by statistics")
    job = make_job("deep", max_concurrency=0)
    runs.enqueue_many(db, [runs.RunRequest(job) for _ in range(300)])
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.write() as session:
            claiming.claim_runs(session, 4, worker="w", now=T0 + timedelta(seconds=30), postgres=False)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    candidates = [(sql, params) for sql, params in statements if "ORDER BY runs.priority DESC" in sql]
    assert len(candidates) == 1
    with db.engine.connect() as connection:
        plan = " | ".join(str(row[3]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + candidates[0][0],
                                                                              candidates[0][1]))
    assert "USING INDEX ix_runs_queue" in plan and "TEMP B-TREE" not in plan, plan


def test_claiming_a_requeued_run_bumps_its_attempt_and_lease_again(db: Database, make_job: MakeJob) -> None:
    job = make_job("again")
    run_id = runs.enqueue(db, job)
    (first,) = claim(db)
    with db.write() as session:
        transition(session, run_id, RunStatus.QUEUED, expected=RunStatus.RUNNING, lease=first.lease, at=T0,
                   worker=None, progress=50.0)
    (second,) = claim(db, worker="test:2", now=T0 + timedelta(seconds=1))
    assert (first.attempt, first.lease, second.attempt, second.lease) == (1, 1, 2, 2)
    run = runs.get_run(db, run_id)
    assert (run.worker, run.started_at, run.progress) == ("test:2", T0 + timedelta(seconds=1), None)


def test_a_claim_with_no_room_takes_nothing(db: Database, make_job: MakeJob) -> None:
    runs.enqueue(db, make_job("idle"))
    assert claim(db, 0) == []
    assert statuses(db) == {"queued": 1}


# ---------------------------------------------------------------- fencing


def test_heartbeat_refreshes_held_leases_and_reports_lost_ones(db: Database, make_job: MakeJob) -> None:
    job = make_job("beating", max_concurrency=0)
    kept, lost = runs.enqueue(db, job), runs.enqueue(db, job)
    claim(db, 2)
    with db.write() as session:
        transition(session, lost, RunStatus.QUEUED, expected=RunStatus.RUNNING, at=T0)  # e.g. rescued
    (reclaimed,) = claim(db)
    later = T0 + timedelta(seconds=10)
    with db.write() as session:
        gone = store.heartbeat(session, [store.Lease(kept, 1), store.Lease(lost, 1)], now=later)
    assert gone == [lost]
    assert runs.get_run(db, kept).heartbeat_at == later
    assert runs.get_run(db, lost).heartbeat_at == T0  # the new attempt's heartbeat is not touched
    with db.write() as session:
        assert store.heartbeat(session, [store.Lease(lost, reclaimed.lease)], now=later) == []
        assert store.heartbeat(session, [], now=later) == []


def test_save_progress_with_an_old_lease_changes_nothing(db: Database, make_job: MakeJob) -> None:
    job = make_job("progressing")
    run_id = runs.enqueue(db, job)
    (first,) = claim(db)
    old = store.Lease(run_id, first.lease)
    with db.write() as session:
        assert store.save_progress(session, old, 25.0, "a quarter")
    with db.write() as session:
        transition(session, run_id, RunStatus.QUEUED, expected=RunStatus.RUNNING, at=T0)
    (second,) = claim(db)
    current = store.Lease(run_id, second.lease)
    with db.write() as session:
        assert store.save_progress(session, old, 90.0, "stale writer") is False
    run = runs.get_run(db, run_id)
    assert (run.progress, run.progress_message) == (None, None)  # the new claim reset it; the old write did not land
    with db.write() as session:
        assert store.save_progress(session, current, 60.0, "x" * 600)
        assert store.holds_lease(session, current) and not store.holds_lease(session, old)
    run = runs.get_run(db, run_id)
    assert (run.progress, run.progress_message) == (60.0, "x" * 500)


def test_a_rescued_and_reclaimed_run_rejects_the_old_workers_transition(db: Database, make_job: MakeJob) -> None:
    job = make_job("fenced")
    run_id = runs.enqueue(db, job)
    (old,) = claim(db, worker="stalled:1")
    assert runs.rescue_stale(db, stale_after=60, now=T0 + timedelta(seconds=61)) == [(run_id, "queued")]
    (new,) = claim(db, worker="healthy:2", now=T0 + timedelta(seconds=62))
    with db.write() as session:
        with pytest.raises(Conflict):
            transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=old.lease, at=T0,
                       result="from the stalled worker")
    run = runs.get_run(db, run_id)
    assert (run.status, run.lease, run.worker, run.result) == ("running", new.lease, "healthy:2", None)
    with db.write() as session:
        transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=new.lease, at=T0)
    assert [e[:2] for e in events(db, run_id)] == [("queued", "running"), ("running", "queued"),
                                                  ("queued", "running"), ("running", "succeeded")]


# ---------------------------------------------------------------- log


def _append(db: Database, run_id: int, text: str, max_chars: int = 1000) -> None:
    with db.write() as session:
        store.append_log(session, run_id, text, max_chars=max_chars)


def _read(db: Database, run_id: int, after: int = 0) -> tuple[str, int, int]:
    with db.read() as session:
        return store.read_log(session, run_id, after)


def test_log_appends_accumulate_and_can_be_read_from_an_offset(db: Database, make_job: MakeJob) -> None:
    run_id = runs.enqueue(db, make_job("logger"))
    assert _read(db, run_id) == ("", 0, 0)
    first, second = "starting\n", "step 1 done\n"
    _append(db, run_id, first)
    _append(db, run_id, "")
    _append(db, run_id, second)
    total = len(first) + len(second)
    assert _read(db, run_id) == (first + second, total, 0)
    assert _read(db, run_id, after=len(first)) == (second, total, 0)
    assert _read(db, run_id, after=total) == ("", total, 0)


def test_a_long_log_keeps_its_newest_whole_lines_and_offsets_stay_valid(db: Database, make_job: MakeJob) -> None:
    run_id = runs.enqueue(db, make_job("chatty"))
    lines = [f"line {i:02d}\n" for i in range(10)]  # 8 characters each
    for line in lines:
        _append(db, run_id, line, max_chars=20)
    total = sum(map(len, lines))
    text, offset, trimmed = _read(db, run_id)
    assert text == "".join(lines[-2:])  # the newest lines that fit in 20 characters, cut at a line start
    assert (offset, trimmed) == (total, total - len(text))
    # an offset taken before the trim still works: it gets what came after it (as much as is kept)
    assert _read(db, run_id, after=total - len(lines[-1])) == (lines[-1], total, trimmed)
    assert _read(db, run_id, after=3) == (text, total, trimmed)
    _append(db, run_id, "z" * 50, max_chars=20)  # no line break to cut at: keep the newest characters
    assert _read(db, run_id) == ("z" * 20, total + 50, total + 30)


def test_one_large_append_is_trimmed_to_max_chars(db: Database, make_job: MakeJob) -> None:
    run_id = runs.enqueue(db, make_job("burst"))
    block = "".join(f"row {i}\n" for i in range(100))
    _append(db, run_id, block, max_chars=50)
    text, offset, trimmed = _read(db, run_id)
    assert len(text) <= 50 and block.endswith(text) and text.startswith("row ")
    assert (offset, trimmed) == (len(block), len(block) - len(text))


# ---------------------------------------------------------------- cancel and retry


def test_cancelling_a_queued_run_cancels_it_at_once(db: Database, make_job: MakeJob) -> None:
    run_id = runs.enqueue(db, make_job("cancel-me"))
    assert runs.cancel(db, run_id, by="alice") == "canceled"
    run = runs.get_run(db, run_id)
    assert run.status == RunStatus.CANCELED and run.finished_at is not None
    with db.read() as session:
        (event,) = store.run_events(session, run_id)
    assert (event.from_status, event.to_status, event.note) == ("queued", "canceled", "canceled by alice")
    assert claimed_ids(db, 5) == []


def test_cancelling_a_running_run_only_requests_it_and_records_the_request(db: Database, make_job: MakeJob) -> None:
    run_id = runs.enqueue(db, make_job("stop-me"))
    claim(db)
    assert runs.cancel(db, run_id, by="alice") == "cancel requested"
    run = runs.get_run(db, run_id)
    assert (run.status, run.cancel_requested) == ("running", True)
    with db.read() as session:
        assert store.cancel_requested(session, [run_id]) == {run_id}
        (current,) = states.read_runs(session, [run_id], postgres=db.is_postgres).values()
        assert (current.cancel_requested, current.cancel_requested_at) == (True, run.cancel_requested_at)
        request = store.run_events(session, run_id)[-1]
    assert events(db, run_id) == [("queued", "running", 1), ("running", "running", 1)]  # status unchanged
    assert (request.at, request.note) == (run.cancel_requested_at, "cancel requested by alice")
    assert runs.cancel(db, run_id, by="bob") == "cancel requested"  # a second request: its own event
    assert runs.get_run(db, run_id).cancel_requested_at == run.cancel_requested_at  # the first one's time kept
    assert len(events(db, run_id)) == 3


@pytest.mark.parametrize("end", [RunStatus.SUCCEEDED, RunStatus.FAILED])
def test_cancelling_a_finished_run_is_a_conflict(db: Database, make_job: MakeJob, end: RunStatus) -> None:
    run_id = runs.enqueue(db, make_job("done"))
    claim(db)
    finish(db, run_id, end)
    with pytest.raises(Conflict) as caught:
        runs.cancel(db, run_id)
    assert caught.value.details == {"run_id": run_id, "status": end.value}
    assert runs.get_run(db, run_id).status == end


def test_cancelling_an_unknown_run_raises_run_not_found(db: Database) -> None:
    with pytest.raises(RunNotFound):
        runs.cancel(db, 424242)


def test_retrying_a_finished_run_enqueues_a_copy(db: Database, make_job: MakeJob) -> None:
    job = make_job("flaky", params={"size": {"type": "integer", "default": 1}})
    original = runs.enqueue(db, job, {"size": 7}, priority=6, pipeline_id="pipe-1")
    claim(db)
    finish(db, original, RunStatus.FAILED)
    copy_id = runs.retry(db, original, by="bob")
    assert copy_id != original
    copy = runs.get_run(db, copy_id)
    assert (copy.status, copy.trigger, copy.params, copy.retry_of, copy.priority, copy.created_by,
            copy.pipeline_id, copy.attempt) == ("queued", "retry", {"size": 7}, original, 6, "bob", "pipe-1", 0)
    assert runs.get_run(db, original).status == RunStatus.FAILED


def test_retrying_a_queued_or_running_run_is_a_conflict(db: Database, make_job: MakeJob) -> None:
    job = make_job("busy")
    running = runs.enqueue(db, job)
    claim(db)
    queued = runs.enqueue(db, job)
    for run_id in (queued, running):
        with pytest.raises(Conflict):
            runs.retry(db, run_id)
    assert statuses(db, job) == {"queued": 1, "running": 1}
    with pytest.raises(RunNotFound):
        runs.retry(db, 424242)


# ---------------------------------------------------------------- rescue


def test_a_stale_run_is_requeued_and_a_fresh_one_left_alone(db: Database, make_job: MakeJob) -> None:
    job = make_job("rescuable", max_concurrency=0, max_attempts=3)
    stale, fresh = runs.enqueue(db, job), runs.enqueue(db, job)
    claim(db, now=T0)
    claim(db, now=T0 + timedelta(seconds=50))
    now = T0 + timedelta(seconds=70)
    due = runs.get_run(db, stale).scheduled_for
    assert runs.rescue_stale(db, stale_after=60, now=now) == [(stale, "queued")]
    run = runs.get_run(db, stale)
    # it keeps its due time, so its place in the queue (tests/test_rescue.py)
    assert (run.status, run.attempt, run.worker, run.heartbeat_at, run.scheduled_for) == ("queued", 1, None, None, due)
    assert "interrupted: worker died" in (run.error or "")
    assert events(db, stale)[-1] == ("running", "queued", 1)
    assert runs.get_run(db, fresh).status == RunStatus.RUNNING
    assert runs.rescue_stale(db, stale_after=60, now=now) == []  # nothing left to rescue twice
    assert claimed_ids(db, 1, now=now) == [stale]
    assert runs.get_run(db, stale).attempt == 2


def test_a_heartbeat_keeps_a_run_from_being_rescued(db: Database, make_job: MakeJob) -> None:
    run_id = runs.enqueue(db, make_job("alive"))
    (claimed,) = claim(db, now=T0)
    with db.write() as session:
        store.heartbeat(session, [store.Lease(run_id, claimed.lease)], now=T0 + timedelta(seconds=50))
    assert runs.rescue_stale(db, stale_after=60, now=T0 + timedelta(seconds=70)) == []
    assert runs.get_run(db, run_id).status == RunStatus.RUNNING


def test_a_stale_run_with_no_attempts_left_fails(db: Database, make_job: MakeJob) -> None:
    run_id = runs.enqueue(db, make_job("last-chance", max_attempts=1))
    claim(db, now=T0)
    now = T0 + timedelta(seconds=61)
    assert runs.rescue_stale(db, stale_after=60, now=now) == [(run_id, "failed")]
    run = runs.get_run(db, run_id)
    assert (run.status, run.finished_at) == ("failed", now)
    assert "attempts exhausted" in (run.error or "")
    assert events(db, run_id)[-1] == ("running", "failed", 1)


def test_a_stale_run_of_a_non_idempotent_job_fails_instead_of_rerunning(db: Database, make_job: MakeJob) -> None:
    run_id = runs.enqueue(db, make_job("charge-card", idempotent=False, max_attempts=5))
    claim(db, now=T0)
    assert runs.rescue_stale(db, stale_after=60, now=T0 + timedelta(seconds=61)) == [(run_id, "failed")]
    run = runs.get_run(db, run_id)
    assert (run.status, run.error, run.attempt) == ("failed", "interrupted: worker died", 1)


# ---------------------------------------------------------------- enqueue


def test_enqueue_fills_defaults_from_the_job(db: Database, make_job: MakeJob) -> None:
    job = make_job("defaults", priority=7, max_attempts=5, params={"day": {"type": "string", "default": "today"}})
    run = runs.get_run(db, runs.enqueue(db, job))
    assert (run.status, run.priority, run.max_attempts, run.params, run.trigger, run.attempt, run.lease) == \
        ("queued", 7, 5, {"day": "today"}, "manual", 0, 0)
    assert runs.get_run(db, runs.enqueue(db, job, priority=2)).priority == 2


def test_enqueue_of_an_unknown_job_raises_job_not_found(db: Database) -> None:
    with pytest.raises(JobNotFound):
        runs.enqueue(db, "no-such-job")


@pytest.mark.parametrize(("params", "bad"), [
    ({"count": "three"}, "count"),
    ({"count": 3, "colour": "red"}, "colour"),
    ({}, "count"),
])
def test_enqueue_with_bad_params_raises_invalid_params_naming_the_param(db: Database, make_job: MakeJob,
                                                                       params: dict[str, object], bad: str) -> None:
    job = make_job("typed", params={"count": {"type": "integer", "required": True}})
    with pytest.raises(InvalidParams) as caught:
        runs.enqueue(db, job, params)
    assert list(caught.value.errors) == [bad]
    assert f"'{bad}'" in caught.value.message
    assert statuses(db) == {}


@pytest.mark.parametrize("priority", [-1, 11, True, 2.5])
def test_enqueue_rejects_a_priority_outside_0_to_10(db: Database, make_job: MakeJob, priority: object) -> None:
    job = make_job("prioritized")
    with pytest.raises(LexyjobsError) as caught:
        runs.enqueue(db, job, priority=priority)
    assert caught.value.details == {"field": "priority"}
    assert statuses(db) == {}


def test_enqueue_rejects_a_naive_scheduled_for_and_an_unknown_trigger(db: Database, make_job: MakeJob) -> None:
    job = make_job("strict")
    with pytest.raises(LexyjobsError, match="timezone"):
        runs.enqueue(db, job, scheduled_for=datetime(2100, 1, 1))
    with pytest.raises(LexyjobsError, match="trigger"):
        runs.enqueue(db, job, trigger="cron")
    assert statuses(db) == {}


def test_enqueue_many_writes_nothing_when_one_request_is_bad(db: Database, make_job: MakeJob) -> None:
    job = make_job("all-or-nothing", params={"n": {"type": "integer", "default": 0}})
    good = [runs.RunRequest(job, {"n": 1}), runs.RunRequest(job, {"n": 2})]
    for bad, error in [(runs.RunRequest(job, {"n": "x"}), InvalidParams),
                       (runs.RunRequest("missing-job"), JobNotFound),
                       (runs.RunRequest(job, priority=99), LexyjobsError)]:
        with pytest.raises(error):
            runs.enqueue_many(db, [good[0], bad, good[1]])
        assert statuses(db) == {}
    ids = runs.enqueue_many(db, good)
    assert [runs.get_run(db, i).params for i in ids] == [{"n": 1}, {"n": 2}]


# ---------------------------------------------------------------- job definitions


def _write_jobs(path: Path, title: str, enabled: bool | None = None) -> None:
    extra = "" if enabled is None else f"enabled = {'true' if enabled else 'false'}\n"
    path.write_text(f'[jobs.nightly]\nkind = "python"\nfunc = "jobfuncs:noop"\ntitle = "{title}"\n{extra}',
                    encoding="utf-8")


def _job_state(db: Database, name: str = "nightly") -> tuple[int, bool, bool, str]:
    with db.read() as session:
        job = store.get_job(session, name)
        assert job is not None
        return job.version, job.enabled, job.archived, job.title


def test_a_resync_bumps_the_version_only_when_the_definition_changed(db: Database, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    _write_jobs(jobs_file, "Nightly")
    assert registry.sync_jobs(db, jobs_file=str(jobs_file)).loaded == ["nightly"]
    assert _job_state(db) == (1, True, False, "Nightly")
    registry.sync_jobs(db, jobs_file=str(jobs_file))
    assert _job_state(db) == (1, True, False, "Nightly")
    _write_jobs(jobs_file, "Nightly build")
    registry.sync_jobs(db, jobs_file=str(jobs_file))
    assert _job_state(db) == (2, True, False, "Nightly build")
    with db.read() as session:
        assert store.job_versions(session, ["nightly", "absent"]) == {"nightly": 2}


def test_a_runtime_pause_survives_resyncs_unless_the_file_changes_enabled(db: Database, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    _write_jobs(jobs_file, "Nightly")
    registry.sync_jobs(db, jobs_file=str(jobs_file))
    with db.write() as session:
        assert store.set_job_enabled(session, "nightly", False, now=utcnow())
        assert not store.set_job_enabled(session, "absent", False, now=utcnow())
    registry.sync_jobs(db, jobs_file=str(jobs_file))
    assert _job_state(db) == (1, False, False, "Nightly")
    _write_jobs(jobs_file, "Renamed")  # a change that does not touch `enabled` keeps the pause
    registry.sync_jobs(db, jobs_file=str(jobs_file))
    assert _job_state(db) == (2, False, False, "Renamed")
    _write_jobs(jobs_file, "Renamed", enabled=False)
    registry.sync_jobs(db, jobs_file=str(jobs_file))
    _write_jobs(jobs_file, "Renamed", enabled=True)  # the file itself now says enabled: it wins
    registry.sync_jobs(db, jobs_file=str(jobs_file))
    assert _job_state(db) == (4, True, False, "Renamed")


def test_a_job_removed_from_its_file_is_archived_and_cannot_be_enqueued(db: Database, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    _write_jobs(jobs_file, "Nightly")
    registry.sync_jobs(db, jobs_file=str(jobs_file), archive_missing=True)
    kept = runs.enqueue(db, "nightly")
    jobs_file.write_text("", encoding="utf-8")
    assert registry.sync_jobs(db, jobs_file=str(jobs_file), archive_missing=True).archived == ["nightly"]
    assert _job_state(db) == (2, True, True, "Nightly")
    with pytest.raises(JobNotFound):
        runs.enqueue(db, "nightly")
    assert runs.get_run(db, kept).job_name == "nightly"  # history is kept
    with db.read() as session:
        assert "nightly" not in [j.name for j in store.list_jobs(session)]
        assert "nightly" in [j.name for j in store.list_jobs(session, include_archived=True)]
    _write_jobs(jobs_file, "Nightly")
    registry.sync_jobs(db, jobs_file=str(jobs_file), archive_missing=True)
    assert _job_state(db) == (3, True, False, "Nightly")
    assert runs.enqueue(db, "nightly") > kept


def test_an_enqueue_sees_the_jobs_as_another_process_changed_them(db: Database, make_job: MakeJob) -> None:
    """The jobs an enqueue reads are kept while the jobs' stamp stands; a change made through
    another connection pool (another process) is seen by the next enqueue."""
    make_job("changing", max_concurrency=0)
    make_job("doomed", max_concurrency=0)
    runs.enqueue(db, "changing")
    runs.enqueue(db, "doomed")
    other = Database(db.url)
    try:
        registry.update_job(other, "changing", {"kind": "python", "func": "jobfuncs:noop", "max_concurrency": 0,
                                                "params": {"day": {"type": "string", "required": True}}})
        registry.delete_job(other, "doomed")
        registry.create_job(other, "newcomer", {"kind": "python", "func": "jobfuncs:noop"})
    finally:
        other.dispose()
    with pytest.raises(InvalidParams):
        runs.enqueue(db, "changing")  # its new required param
    assert runs.get_run(db, runs.enqueue(db, "changing", {"day": "2030-01-01"})).params == {"day": "2030-01-01"}
    with pytest.raises(JobNotFound):
        runs.enqueue(db, "doomed")
    assert runs.enqueue(db, "newcomer") > 0
