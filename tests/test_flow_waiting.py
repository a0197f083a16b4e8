"""Why a queued run waits (lexyjobs.flow.waiting), each reason produced from a real database
state on SQLite and Postgres: holders made by real claims (claiming.claim_runs), a run held by a
real claim over a rate limit, a retry backoff left by a real worker, workers registered (and
gone stale) through lexyjobs.workers; and the cost: a page of 50 queued runs takes as many
statements as a page of 3."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

import pytest
from conftest import wait_for
from sqlalchemy import event, update

from lexyjobs import claiming, runs, workers
from lexyjobs.db import Database, utcnow
from lexyjobs.flow.waiting import WaitingFor, waiting_for
from lexyjobs.models import QueueState, Run
from lexyjobs.states import RunStatus

STALE_AFTER = 30.0
MakeJob = Callable[..., str]


def register(db: Database, name: str, *, queues: list[str] | None = None, threads: int = 4,
             at: datetime | None = None) -> None:
    """A worker process in the registry, as ``Worker.start`` writes it (``queues``: what it serves)."""
    me = workers.Registration(name, "host", 1, "test", threads, at or utcnow())
    with db.write() as session:
        workers.register(session, me, now=at or utcnow())
        session.execute(update(workers.WORKERS).where(workers.WORKERS.c.name == name).values(queues=queues))


def claim(db: Database, limit: int = 1, *, worker: str = "w:1") -> list[int]:
    with db.write() as session:
        return [c.id for c in claiming.claim_runs(session, limit, worker=worker, now=utcnow(), postgres=db.is_postgres)]


def why(db: Database, run_id: int, *, now: datetime | None = None) -> WaitingFor:
    with db.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return waiting_for(session, [run], now=now or utcnow(), stale_after=STALE_AFTER)[run_id]


def pause_queue(db: Database, name: str) -> None:
    with db.write() as session:
        session.add(QueueState(name=name, paused=True, paused_at=utcnow(), paused_by="test"))


# ------------------------------------------------------------------ each reason


def test_a_delayed_run_is_due_at_its_time(db: Database, make_job: MakeJob) -> None:
    make_job("report")
    register(db, "w:1")
    at = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    run_id = runs.enqueue(db, "report", scheduled_for=at)
    found = why(db, run_id)
    assert (found.reason, found.until, found.short) == ("due", at, f"due {at:%H:%M}")
    assert found.message == f"Delayed: due at {at:%Y-%m-%d %H:%M:%S} UTC."


def test_a_failed_attempt_waits_out_its_retry_backoff(db: Database, make_job: MakeJob, start_worker: Any) -> None:
    make_job("flaky", func="jobfuncs:boom", max_attempts=3, backoff="1h", backoff_jitter=0)
    run_id = runs.enqueue(db, "flaky")
    worker = start_worker()
    wait_for(lambda: (r := runs.get_run(db, run_id)).status == RunStatus.QUEUED.value and r.attempt == 1)
    worker.stop(grace=0)
    register(db, "w:1")
    run = runs.get_run(db, run_id)
    found = why(db, run_id)
    assert found.reason == "due" and found.until == run.scheduled_for > utcnow() + timedelta(minutes=59)
    assert found.short == f"retry at {run.scheduled_for:%H:%M}"
    assert found.message.startswith("Retry backoff after attempt 1 of 3 failed: due again at ")


def test_a_paused_queue_holds_its_runs_but_not_a_delayed_one(db: Database, make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    register(db, "w:1")
    pause_queue(db, "ai")
    now_id = runs.enqueue(db, "llm")
    later = runs.enqueue(db, "llm", scheduled_for=utcnow() + timedelta(hours=1))
    found = why(db, now_id)
    assert (found.reason, found.queue) == ("queue_paused", "ai")
    assert found.message == "Queue 'ai' is paused: its runs wait until the queue is resumed."
    assert why(db, later).reason == "due"  # due later comes first: it says when


def test_without_any_worker_process_it_says_so(db: Database, make_job: MakeJob) -> None:
    make_job("report")
    run_id = runs.enqueue(db, "report")
    found = why(db, run_id)
    assert found.reason == "no_worker" and "No worker process is running" in found.message
    assert "lexyjobs worker" in found.message


def test_a_queue_no_live_worker_serves_is_named(db: Database, make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    register(db, "w:1", queues=["default"])
    register(db, "w:gone", queues=["ai"], at=utcnow() - timedelta(seconds=STALE_AFTER + 5))  # died: stale
    run_id = runs.enqueue(db, "llm")
    found = why(db, run_id)
    assert (found.reason, found.queue, found.short) == ("no_worker", "ai", "no worker for ai")
    assert found.message == ("No live worker serves queue 'ai': start one with `lexyjobs worker --queues ai` "
                             "or add it to LEXYJOBS_QUEUES.")
    register(db, "w:2", queues=["default", "ai:2"])
    assert why(db, run_id).reason == "worker"


def test_a_run_held_by_a_real_claim_over_its_rate_limit_says_its_next_slot(db: Database, make_job: MakeJob) -> None:
    make_job("api-call", rate_limit="1/h", max_concurrency=0)
    register(db, "w:1")
    first, second = runs.enqueue(db, "api-call"), runs.enqueue(db, "api-call")
    assert claim(db, 2) == [first]  # the second is over the limit: the claim holds it
    held = runs.get_run(db, second)
    assert held.held_until is not None and held.held_by == "job:api-call"
    found = why(db, second)
    assert (found.reason, found.until, found.bucket) == ("rate_limit", held.held_until, "job:api-call")
    assert found.message == f"Over the rate limit of job api-call: its next slot is at {held.held_until:%Y-%m-%d %H:%M:%S} UTC."


def test_the_jobs_concurrency_limit_names_the_running_runs(db: Database, make_job: MakeJob) -> None:
    make_job("report", max_concurrency=2)
    register(db, "w:1")
    ids = [runs.enqueue(db, "report") for _ in range(3)]
    assert claim(db, 3) == ids[:2]
    found = why(db, ids[2])
    assert (found.reason, found.holders, found.limit) == ("job_limit", tuple(ids[:2]), 2)
    assert found.message == (f"Its job 'report' runs at most 2 at a time (max_concurrency): runs #{ids[0]}, "
                             f"#{ids[1]} are running.")


def test_a_concurrency_key_names_its_holders_and_other_keys_are_ready(db: Database, make_job: MakeJob) -> None:
    params = {"site_id": {"type": "string"}}
    make_job("crawl", concurrency_key="site:{site_id}", max_concurrency=0, params=params)
    make_job("recrawl", concurrency_key="site:{site_id}", max_concurrency=0, params=params)
    register(db, "w:1", threads=4)
    holder = runs.enqueue(db, "crawl", {"site_id": "a"})
    assert claim(db) == [holder]
    same_site = runs.enqueue(db, "recrawl", {"site_id": "a"})  # another job, the same key space
    other_site = runs.enqueue(db, "crawl", {"site_id": "b"})
    found = why(db, same_site)
    assert (found.reason, found.key, found.holders, found.limit) == ("key_limit", "site:a", (holder,), 1)
    assert found.message == f"Concurrency key 'site:a' allows 1 run at a time: run #{holder} holds it."
    ready = why(db, other_site)
    assert (ready.reason, ready.idle_threads) == ("worker", 3)  # 4 threads, one busy with the holder
    assert ready.message == "Ready: a worker picks it up now (3 idle threads serve queue 'default')."


def test_a_worker_shutting_down_says_so_until_it_is_gone(db: Database, make_job: MakeJob, start_worker: Any,
                                                         tmp_path: Any) -> None:
    gate = tmp_path / "gate"
    make_job("hold", func="jobfuncs:progress_until_gate", max_concurrency=0,
             params={"gate": {"type": "string", "required": True}})
    worker = start_worker(workers=1, prefetch=0)
    running = runs.enqueue(db, "hold", {"gate": str(gate)})
    wait_for(lambda: runs.get_run(db, running).progress == 40)
    waiting = runs.enqueue(db, "hold", {"gate": str(gate)})
    assert why(db, waiting).reason == "worker"  # its one thread is busy; nothing else holds it
    stopper = threading.Thread(target=worker.stop, kwargs={"grace": 30})
    stopper.start()
    try:
        found = wait_for(lambda: (w := why(db, waiting)).reason == "shutting_down" and w)
        assert found.message == (f"Every worker serving queue 'default' is shutting down ({worker.name}): it "
                                 "starts on the next worker that serves the queue.")
        assert runs.get_run(db, waiting).status == RunStatus.QUEUED.value
    finally:
        gate.touch()
        stopper.join(timeout=30)
    assert runs.get_run(db, running).status == RunStatus.SUCCEEDED.value
    assert why(db, waiting).reason == "no_worker"  # its row is gone with it


def test_ready_but_every_thread_serving_the_queue_is_busy(db: Database, make_job: MakeJob) -> None:
    make_job("slow", max_concurrency=0)
    register(db, "w:1", threads=4, queues=["default:1"])  # one thread for the default queue
    busy = runs.enqueue(db, "slow")
    assert claim(db, worker="w:1") == [busy]
    waiting = runs.enqueue(db, "slow")
    found = why(db, waiting)
    assert (found.reason, found.idle_threads, found.short) == ("worker", 0, "workers busy")
    assert "every worker thread serving queue 'default' is busy" in found.message


def test_only_queued_runs_get_a_reason(db: Database, make_job: MakeJob) -> None:
    make_job("report", max_concurrency=0)
    first, second = runs.enqueue(db, "report"), runs.enqueue(db, "report")
    assert claim(db) == [first]
    with db.read() as session:
        found = waiting_for(session, [session.get(Run, i) for i in (first, second)], now=utcnow(),
                            stale_after=STALE_AFTER)
    assert list(found) == [second]


# ------------------------------------------------------------------ cost


@pytest.fixture
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)
    event.listen(db.engine, "before_cursor_execute", count)
    yield seen
    event.remove(db.engine, "before_cursor_execute", count)


def _page_cost(db: Database, ids: list[int], statements: list[str]) -> int:
    with db.read() as session:
        rows = [session.get(Run, i) for i in ids]  # loaded first: the page's own query is not counted
        before = len(statements)
        found = waiting_for(session, rows, now=utcnow(), stale_after=STALE_AFTER)
        assert set(found) == set(ids)
        return len(statements) - before


def test_a_page_of_50_queued_runs_costs_the_same_few_statements_as_a_page_of_3(
        db: Database, make_job: MakeJob, statements: list[str]) -> None:
    params = {"site_id": {"type": "string"}}
    make_job("crawl", concurrency_key="site:{site_id}", max_concurrency=0, params=params)
    make_job("report", max_concurrency=1)
    make_job("llm", queue="ai", rate_limit="1/h", max_concurrency=0)
    register(db, "w:1", threads=8, queues=["default"])
    mixed = []
    for i in range(50):  # every reason on the page: keys, job limit, rate limit, no worker, delayed
        kind = i % 5
        if kind == 0:
            mixed.append(runs.enqueue(db, "crawl", {"site_id": str(i % 3)}))
        elif kind == 1:
            mixed.append(runs.enqueue(db, "report"))
        elif kind == 2:
            mixed.append(runs.enqueue(db, "llm"))
        elif kind == 3:
            mixed.append(runs.enqueue(db, "report", scheduled_for=utcnow() + timedelta(minutes=i)))
        else:
            mixed.append(runs.enqueue(db, "crawl", {"site_id": f"x{i}"}))
    claimed = set(claim(db, 5))
    page = [i for i in mixed if i not in claimed]
    with db.read() as session:
        reasons = {w.reason for w in waiting_for(session, [session.get(Run, i) for i in page], now=utcnow(),
                                                  stale_after=STALE_AFTER).values()}
    assert {"due", "no_worker", "job_limit", "key_limit", "worker"} <= reasons
    small, large = _page_cost(db, page[:3], statements), _page_cost(db, page, statements)
    assert small == large <= 4, statements[-large:]
