"""The Python API (issue 15 §3): ``lexyjobs.enqueue`` and ``@job(...).enqueue``, the ``Run``
handle, and the read helpers that cover seed 004's QueueService. Real databases, real workers."""
from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import pytest

import jobfuncs
import lexyjobs
from conftest import PYTHON, ROOT, subprocess_env
from lexyjobs import audit, code_jobs, registry
from lexyjobs.runtime import Runtime


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch, lj: Runtime) -> object:
    """``jobfuncs.add`` declared with ``@job`` (a private registry) and synced into the database."""
    monkeypatch.setattr(code_jobs, "_CODE_JOBS", {})
    func = code_jobs.job("adder", params={"a": {"type": "integer", "required": True}, "b": {"type": "integer", "default": 0}})(jobfuncs.add)
    registry.sync_jobs(lj.db, jobs_file=None)
    return func


def test_enqueue_returns_a_queued_run_that_a_worker_finishes(lj, make_job, start_worker) -> None:
    make_job("echo", func="jobfuncs:echo_params", params={"who": "world"})
    run = lexyjobs.enqueue("echo", {"who": "ada"}, runtime=lj)
    assert run.status == "queued" and not run.finished and run.job == "echo"
    assert run.status_url == f"/api/runs/{run.id}"
    start_worker()
    assert run.wait(timeout=10) is run
    assert run.succeeded and run.finished and run.result == {"who": "ada"} and run.error is None
    assert run.to_dict()["status_url"] == run.status_url and run.to_dict()["id"] == run.id


def test_a_job_function_gains_enqueue(lj, declared, start_worker) -> None:
    run = declared.enqueue(a=2, b=3, priority=7)  # type: ignore[attr-defined]
    assert run.params == {"a": 2, "b": 3} and run.to_dict()["priority"] == 7
    start_worker()
    assert run.wait(10).result == 5
    assert lexyjobs.enqueue(declared, {"a": 1, "b": 1}).wait(10).result == 2  # the function names the job too


def test_params_are_validated_as_the_api_does_with_one_exception_type(lj, declared) -> None:
    with pytest.raises(lexyjobs.InvalidParams) as caught:
        declared.enqueue(b="x", c=1)  # type: ignore[attr-defined]
    assert caught.value.code == "invalid_params" and set(caught.value.details) == {"a", "b", "c"}
    for bad, code in (({"priority": 11}, "bad_request"), ({"run_at": datetime(2030, 1, 1)}, "invalid_field"),
                      ({"delay": -1}, "invalid_field"), ({"delay": "soon"}, "invalid_field"),
                      ({"run_at": datetime.now(timezone.utc), "delay": 5}, "invalid_field")):
        with pytest.raises(lexyjobs.LexyjobsError) as refused:
            lexyjobs.enqueue("adder", {"a": 1}, **bad)  # type: ignore[arg-type]
        assert refused.value.code == code and refused.value.message, bad
    with pytest.raises(lexyjobs.JobNotFound):
        lexyjobs.enqueue("no-such-job")
    assert lexyjobs.stats()["total"] == 0  # nothing was written


def test_run_at_and_delay_put_the_run_off(lj, make_job) -> None:
    make_job("later")
    at = datetime.now(timezone.utc) + timedelta(hours=2)
    assert lexyjobs.enqueue("later", run_at=at).to_dict()["scheduled_for"] == at.isoformat()
    delayed = datetime.fromisoformat(lexyjobs.enqueue("later", delay=timedelta(minutes=5)).to_dict()["scheduled_for"])
    assert abs((delayed - datetime.now(timezone.utc)) - timedelta(minutes=5)) < timedelta(seconds=30)
    seconds = datetime.fromisoformat(lexyjobs.enqueue("later", delay=90).to_dict()["scheduled_for"])
    assert timedelta(seconds=60) < seconds - datetime.now(timezone.utc) <= timedelta(seconds=90)


def test_enqueue_is_audited_as_code(lj, make_job) -> None:
    make_job("noted")
    first = lexyjobs.enqueue("noted")
    second = lexyjobs.enqueue("noted", by="alice")
    entries = audit.search(lj.db, action="run.create").entries
    assert [(e.actor, e.target, e.details) for e in reversed(entries)] == [
        ("code", "noted", {"run_id": first.id}), ("code:alice", "noted", {"run_id": second.id})]
    assert lexyjobs.get_run(second.id).to_dict()["created_by"] == "code:alice"


def test_wait_times_out_with_a_clear_error(lj, make_job) -> None:
    make_job("never-picked")
    run = lexyjobs.enqueue("never-picked")
    with pytest.raises(lexyjobs.RunTimeout) as caught:
        run.wait(timeout=0.3)
    assert isinstance(caught.value, TimeoutError) and "still queued after 0.3s" in caught.value.message


def test_read_helpers_cover_the_queue_service(lj, make_job, start_worker) -> None:
    make_job("crawl", func="jobfuncs:echo_params", params={"site": {"type": "integer", "required": True}})
    make_job("analyse", func="jobfuncs:boom", max_attempts=1)
    crawls = [lexyjobs.enqueue("crawl", {"site": n}) for n in range(3)]
    failing = lexyjobs.enqueue("analyse")
    assert lexyjobs.get_run(crawls[0].id).params == {"site": 0}  # getJobStatus
    with pytest.raises(lexyjobs.RunNotFound):
        lexyjobs.get_run(10_000)
    assert lexyjobs.cancel(crawls[2].id) == "canceled"  # cancelJob
    with pytest.raises(lexyjobs.Conflict):
        crawls[2].cancel()
    start_worker()
    assert failing.wait(10).status == "failed" and "boom" in (failing.error or "")
    crawls[0].wait(10), crawls[1].wait(10)
    assert [r.id for r in lexyjobs.list_runs(job="crawl")] == [c.id for c in reversed(crawls)]  # getJobs
    assert [r.id for r in lexyjobs.list_runs(status="failed")] == [failing.id]
    assert [r.id for r in lexyjobs.list_runs(status=["canceled", "failed"], limit=1)] == [failing.id]
    with pytest.raises(lexyjobs.LexyjobsError, match="'pending' is not one of"):
        lexyjobs.list_runs(status="pending")
    counts = lexyjobs.stats()  # getJobStats
    assert (counts["total"], counts["succeeded"], counts["failed"], counts["canceled"]) == (4, 2, 1, 1)
    assert lexyjobs.stats(job="crawl")["total"] == 3
    again = failing.retry()
    assert again.id != failing.id and again.to_dict()["retry_of"] == failing.id
    assert again.wait(10).status == "failed"
    actions = {e.action for e in audit.search(lj.db, actor="code").entries}
    assert {"run.create", "run.cancel", "run.retry"} <= actions


def test_prune_deletes_old_finished_runs(lj, make_job, start_worker) -> None:
    make_job("old")
    run = lexyjobs.enqueue("old")
    start_worker()
    run.wait(10)
    assert lexyjobs.prune(days=1, dry_run=True).total == 0  # cleanupOldJobs(1): nothing that old
    with lj.db.write() as session:
        session.execute(lexyjobs_runs_table().update().values(finished_at=datetime.now(timezone.utc) - timedelta(days=3)))
    assert lexyjobs.prune(days=1).total == 1
    with pytest.raises(lexyjobs.RunNotFound):
        run.refresh()
    with pytest.raises(lexyjobs.LexyjobsError, match="days"):
        lexyjobs.prune(days=-1)


def lexyjobs_runs_table():  # type: ignore[no-untyped-def]
    from lexyjobs.states import RUNS
    return RUNS


def test_a_script_enqueues_on_a_fresh_database_without_starting_anything(tmp_path) -> None:
    """Outside any app: the runtime comes from the environment and is prepared on first use."""
    script = ("import threading, lexyjobs\n"
              "from lexyjobs import job\n"
              "@job()\n"
              "def hello(ctx):\n    return 'hi'\n"
              "run = hello.enqueue()\n"
              "print(run.id, run.status, lexyjobs.stats()['queued'], threading.active_count())\n")
    done = subprocess.run([PYTHON, "-c", script], cwd=ROOT, env=subprocess_env(f"sqlite:///{tmp_path / 'fresh.db'}"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "queued", "1", "1"]  # no thread was started
