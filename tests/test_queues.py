"""Named queues: LEXYJOBS_QUEUES / ``--queues`` (which queues a process serves, with thread caps),
the worker's claim under them (in-process threads and a real second process), and pausing a
queue (persisted, obeyed by another process within a second, resumed runs proceed, schedules
still fire into a paused queue)."""
from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import PYTHON, ROOT, subprocess_env, wait_for
from sqlalchemy import func, select

from lexyjobs import actions, runs
from lexyjobs.accounts import Identity
from lexyjobs.config import load_settings
from lexyjobs.db import Database, utcnow
from lexyjobs.errors import NotFound
from lexyjobs.flow import queue_state
from lexyjobs.flow.queues import ServedQueues, parse_served
from lexyjobs.models import QueueState, Run, WorkerProcess
from lexyjobs.scheduler import Scheduler

ADMIN = actions.Actor(Identity("tester", "admin", "cli"))


def pause(db: Database, name: str, paused: bool = True) -> bool:
    return actions.set_queue_paused(db, ADMIN, name, paused, stale_after=30)


def statuses(db: Database, job: str) -> dict[str, int]:
    with db.read() as session:
        return dict(session.execute(select(Run.status, func.count()).where(Run.job_name == job)
                                    .group_by(Run.status)).all())


def running_in(db: Database, queue: str) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).where(Run.queue == queue, Run.status == "running")) or 0


def enqueue(db: Database, job: str, count: int, **params: Any) -> list[int]:
    return [runs.enqueue(db, job, params or None, trigger="api") for _ in range(count)]


# ---------------------------------------------------------------- LEXYJOBS_QUEUES


def test_queues_setting_is_parsed_into_names_and_caps() -> None:
    served = load_settings(environ={"LEXYJOBS_QUEUES": " default , ai:2,crawl.eu-1:10 "}).queues
    assert served == ServedQueues((("default", None), ("ai", 2), ("crawl.eu-1", 10)))
    assert served is not None and served.entries() == ["default", "ai:2", "crawl.eu-1:10"]
    assert str(served) == "default,ai:2,crawl.eu-1:10"
    assert served.room({"ai": 1, "default": 7}) == {"default": None, "ai": 1, "crawl.eu-1": 10}
    assert served.room({"ai": 3}) == {"default": None, "ai": 0, "crawl.eu-1": 10}


def test_an_empty_queues_setting_serves_every_queue() -> None:
    assert load_settings(environ={"LEXYJOBS_QUEUES": ""}).queues is None
    assert load_settings(environ={}).queues is None
    assert load_settings({"queues": " , "}, environ={}).queues is None
    assert load_settings({"queues": ["ai:1", "default"]}, environ={}).queues == parse_served("ai:1,default")


@pytest.mark.parametrize("value, message", [
    ("AI", "'AI', which is not a queue name"),
    ("ai:0", "'ai:0': the thread cap after ':' must be a whole number from 1"),
    ("ai:x", "'ai:x': the thread cap"),
    ("ai:-1", "'ai:-1': the thread cap"),
    ("ai:2,ai", "names queue 'ai' twice"),
    ("ai bots", "'ai bots', which is not a queue name"),
    ("default;ai", "'default;ai', which is not a queue name"),
])
def test_a_bad_queues_setting_is_refused_in_one_line_naming_it(value: str, message: str) -> None:
    with pytest.raises(SystemExit) as stop:
        load_settings(environ={"LEXYJOBS_QUEUES": value})
    text = str(stop.value)
    assert text.startswith(f"lexyjobs: LEXYJOBS_QUEUES={value!r} is invalid: ") and message in text, text
    assert "\n" not in text


# ---------------------------------------------------------------- the worker serves its queues


def test_a_worker_serving_only_ai_never_runs_a_default_run(db, make_job, start_worker) -> None:
    make_job("plain", max_concurrency=0)
    make_job("llm", queue="ai", max_concurrency=0)
    plain, llm = enqueue(db, "plain", 6), enqueue(db, "llm", 6)
    worker = start_worker("ai-only", queues=parse_served("ai"))
    wait_for(lambda: statuses(db, "llm") == {"succeeded": 6})
    time.sleep(0.5)  # several more claim cycles: still nothing of the default queue
    assert statuses(db, "plain") == {"queued": 6}
    assert {runs.get_run(db, i).worker for i in llm} == {"ai-only"}
    with db.read() as session:
        assert session.get(WorkerProcess, "ai-only").queues == ["ai"]  # type: ignore[union-attr]
    worker.stop(grace=0)
    other = start_worker("everything")  # a worker without LEXYJOBS_QUEUES takes them
    wait_for(lambda: statuses(db, "plain") == {"succeeded": 6})
    assert {runs.get_run(db, i).worker for i in plain} == {"everything"}
    with db.read() as session:
        assert session.get(WorkerProcess, other.name).queues is None  # type: ignore[union-attr]


def test_a_queue_cap_is_never_exceeded_while_other_queues_use_the_other_threads(db, make_job, start_worker) -> None:
    make_job("llm", queue="ai", func="jobfuncs:sleepy", params={"seconds": 0.25}, max_concurrency=0)
    make_job("plain", func="jobfuncs:sleepy", params={"seconds": 0.25}, max_concurrency=0)
    enqueue(db, "llm", 8)
    enqueue(db, "plain", 8)
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def sample() -> None:  # what the database says runs, claimed-ahead runs included
        while not done.is_set():
            seen.append((running_in(db, "ai"), running_in(db, "default")))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        start_worker("capped", workers=4, prefetch=8, queues=parse_served("default,ai:2"))
        wait_for(lambda: statuses(db, "llm") == {"succeeded": 8} and statuses(db, "plain") == {"succeeded": 8}, 30)
    finally:
        done.set()
        sampler.join()
    assert max(ai for ai, _ in seen) == 2, "the ai queue never reached its cap, or passed it"
    assert any(ai == 2 and plain >= 2 for ai, plain in seen), "the default queue did not use the other threads"
    assert max(ai + plain for ai, plain in seen) <= 4 + 4 * 8  # at most threads + claimed ahead


# ---------------------------------------------------------------- a real second process


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``spawn_worker(db_url, "--queues", "ai:1", LEXYJOBS_X="…")``: a ``lexyjobs worker`` child
    process (killed after the test), returned once it says it runs."""
    jobs_file = tmp_path / "empty.toml"
    jobs_file.write_text("# jobs are in the database\n")
    children: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(db_url: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(children)}.log"
        environment = subprocess_env(db_url, **{"LEXYJOBS_JOBS_FILE": str(jobs_file), "LEXYJOBS_POLL_INTERVAL": "0.1",
                                                "LEXYJOBS_HEARTBEAT_INTERVAL": "0.5", "LEXYJOBS_STALE_AFTER": "5", **env})
        with open(log, "wb") as out:
            proc = subprocess.Popen([PYTHON, "-m", "lexyjobs", "worker", *args], cwd=ROOT, env=environment,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        children.append((proc, log))

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}:\n{log.read_text()}")
            return "lexyjobs worker " in log.read_text()
        wait_for(ready, 20)
        return proc
    yield start
    for proc, _ in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def test_a_worker_process_given_queues_serves_only_them_under_its_cap(db, db_url, make_job, spawn_worker) -> None:
    make_job("llm", queue="ai", func="jobfuncs:sleepy", params={"seconds": 0.3}, max_concurrency=0)
    make_job("plain", max_concurrency=0)
    plain = enqueue(db, "plain", 3)
    llm = enqueue(db, "llm", 5)
    child = spawn_worker(db_url, "--queues", "ai:2", "--threads", "4")
    name = f"{socket.gethostname()}:{child.pid}"
    most = 0
    deadline = time.monotonic() + 30
    while statuses(db, "llm") != {"succeeded": 5}:
        most = max(most, running_in(db, "ai"))
        assert time.monotonic() < deadline, statuses(db, "llm")
        time.sleep(0.01)
    assert most == 2
    assert {runs.get_run(db, i).worker for i in llm} == {name}
    assert statuses(db, "plain") == {"queued": 3} and all(runs.get_run(db, i).worker is None for i in plain)
    with db.read() as session:
        assert session.get(WorkerProcess, name).queues == ["ai:2"]  # type: ignore[union-attr]


@pytest.mark.parametrize("command", [["worker"], ["serve", "--port", "0"]])
def test_a_bad_queues_option_stops_the_process_in_one_line(db, db_url, command: list[str]) -> None:
    result = subprocess.run([PYTHON, "-m", "lexyjobs", *command, "--queues", "ai:0"], cwd=ROOT,
                            env=subprocess_env(db_url), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --queues 'ai:0' has 'ai:0': the thread cap after ':' must be a whole number from 1 to 10,000 "
        "(leave ':N' out for no cap)"]


# ---------------------------------------------------------------- pause and resume


def test_a_paused_queue_is_not_claimed_by_another_process_and_resumes(db, db_url, make_job, spawn_worker) -> None:
    make_job("llm", queue="ai", max_concurrency=0)
    make_job("plain", max_concurrency=0)
    # A long poll: after the resume only the wake-up (NOTIFY, SQLite's data_version watch) can
    # make this idle worker claim within the few seconds allowed.
    spawn_worker(db_url, LEXYJOBS_POLL_INTERVAL="30")
    [first] = enqueue(db, "llm", 1)
    wait_for(lambda: runs.get_run(db, first).status == "succeeded")
    assert pause(db, "ai") is True
    paused_at = time.monotonic()
    held = enqueue(db, "llm", 3)
    [other] = enqueue(db, "plain", 1)
    wait_for(lambda: runs.get_run(db, other).status == "succeeded")  # the process claims, just not from ai
    time.sleep(max(0.0, paused_at + 1.5 - time.monotonic()))
    assert [runs.get_run(db, i).status for i in held] == ["queued"] * 3
    with db.read() as session:
        row = session.get(QueueState, "ai")
        assert row is not None and row.paused and row.paused_by == "cli:tester" and row.paused_at is not None
    resumed = time.monotonic()
    assert pause(db, "ai", False) is True
    wait_for(lambda: all(runs.get_run(db, i).status == "succeeded" for i in held), 10)
    assert time.monotonic() - resumed < 5, "the resume did not wake the idle worker"
    with db.read() as session:
        row = session.get(QueueState, "ai")
        assert row is not None and not row.paused and row.paused_at is None and row.paused_by is None


def test_pausing_twice_keeps_the_first_pause_and_unknown_queues_are_refused(db, make_job) -> None:
    make_job("llm", queue="ai")
    assert pause(db, "ai") is True
    with db.read() as session:
        first = session.get(QueueState, "ai").paused_at  # type: ignore[union-attr]
    assert pause(db, "ai") is False
    with db.read() as session:
        assert session.get(QueueState, "ai").paused_at == first  # type: ignore[union-attr]
    with pytest.raises(NotFound, match=r"no queue named 'aii' \(queues: default, ai\)"):
        pause(db, "aii")
    assert pause(db, "default") is True  # the default queue is always known


def test_a_scheduled_fire_while_its_queue_is_paused_still_queues_a_run(db, make_job, start_worker) -> None:
    make_job("hourly", queue="reports", schedule="every 1h")
    pause(db, "reports")
    start_worker("any")
    scheduler = Scheduler(db)
    at = utcnow().replace(microsecond=0)
    outcome = scheduler.fire("hourly", [at], now=at + timedelta(milliseconds=50))
    [run_id] = outcome.queued
    time.sleep(0.6)
    run = runs.get_run(db, run_id)
    assert (run.status, run.trigger, run.queue) == ("queued", "schedule", "reports")
    pause(db, "reports", False)
    wait_for(lambda: runs.get_run(db, run_id).status == "succeeded")


def test_the_overview_counts_each_queue_from_jobs_runs_table_and_workers(db, make_job, start_worker) -> None:
    make_job("llm", queue="ai", func="jobfuncs:sleepy", params={"seconds": 0.1}, max_concurrency=0)
    make_job("plain", max_concurrency=0)
    pause(db, "ai")
    later = runs.enqueue(db, "llm", scheduled_for=utcnow() + timedelta(hours=1))
    enqueue(db, "llm", 2)
    enqueue(db, "plain", 2)
    start_worker("gpu", queues=parse_served("ai:1,batch"))
    start_worker("all")
    wait_for(lambda: statuses(db, "plain") == {"succeeded": 2})
    now = utcnow()
    with db.read() as session:
        found = {q.name: q for q in queue_state.overview(session, now=now, stale_after=30)}
    assert list(found) == ["default", "ai", "batch"]
    ai, default, batch = found["ai"], found["default"], found["batch"]
    assert (ai.paused, ai.paused_by, ai.queued, ai.due, ai.running, ai.jobs) == (True, "cli:tester", 3, 2, 0, 1)
    assert ai.oldest_wait(now) is not None and ai.oldest_wait(now) < 30  # type: ignore[operator]
    assert ai.workers == [("all", None), ("gpu", 1)]
    assert (default.queued, default.finished_recently, default.per_minute, default.workers) == (0, 2, 0.4, [("all", None)])
    assert (batch.jobs, batch.queued, batch.workers) == (0, 0, [("all", None), ("gpu", None)])
    assert runs.get_run(db, later).queue == "ai"


def test_two_operators_pausing_a_queue_at_once_change_it_once(db, make_job) -> None:
    make_job("llm", queue="ai")
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def pause_now() -> None:
        barrier.wait()
        try:
            results.append(pause(db, "ai"))
        except Exception as exc:  # the failure this test guards against: reported below
            results.append(exc)

    threads = [threading.Thread(target=pause_now) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [False, False, False, True]
    with db.read() as session:
        assert session.scalars(select(QueueState)).all()[0].paused


def test_the_server_process_honours_the_queues_setting(db, db_url, make_job, tmp_path: Path) -> None:
    from liveserver import E2E_TOKEN, running_server

    make_job("llm", queue="ai", max_concurrency=0)
    make_job("plain", max_concurrency=0)
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs are in the database\n")
    with running_server(db_url, jobs_file, LEXYJOBS_QUEUES="ai:1") as srv:
        plain = enqueue(db, "plain", 2)
        enqueue(db, "llm", 2)
        wait_for(lambda: statuses(db, "llm") == {"succeeded": 2})
        status, answer = srv.call("GET", "/api/workers", E2E_TOKEN)
        assert status == 200 and [w["queues"] for w in answer["workers"]] == [["ai:1"]]
        time.sleep(0.5)
        assert [runs.get_run(db, i).status for i in plain] == ["queued", "queued"]
