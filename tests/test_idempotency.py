"""Idempotent enqueue (``lexyjobs.flow.unique``): the ``Idempotency-Key`` header of
``POST /api/jobs/<name>/run``, ``key=`` of ``lexyjobs.enqueue`` and ``Client.run``, ``--key`` of
``lexyjobs run``. The same key for the same job within LEXYJOBS_IDEMPOTENCY_WINDOW answers with the
first run; concurrent requests with one key (threads, processes, a real HTTP server) make one run."""
from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import PYTHON, ROOT, ApiClient, subprocess_env
from liveserver import E2E_TOKEN, running_server

import lexyjobs
from lexyjobs import runs
from lexyjobs.cli import main
from lexyjobs.db import Database, utcnow
from lexyjobs.flow.unique import InvalidIdempotencyKey, idempotency_key
from lexyjobs.runtime import Runtime
from lexyjobs.states import RUNS

SITE = {"site_id": {"type": "integer", "required": True}}


def run_ids(db: Database, job: str) -> list[int]:
    with db.read() as session:
        return [row.id for row in session.execute(RUNS.select().where(RUNS.c.job_name == job).order_by(RUNS.c.id))]


def post_run(api_client: ApiClient, job: str, key: str | None, params: dict[str, Any] | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api_client.post(f"/api/jobs/{job}/run", role="operator", json={"params": params or {"site_id": 1}},
                           headers=headers)


def test_a_repeated_key_answers_200_with_the_first_run(api_client: ApiClient, make_job: Any, db: Database) -> None:
    make_job("crawl", params=SITE)
    first = api_client.ok(post_run(api_client, "crawl", "order-42"), 202)
    assert first["existing"] is False and "message" not in first
    again = post_run(api_client, "crawl", "order-42")
    repeat = api_client.ok(again, 200)
    assert repeat["run_id"] == first["run_id"] and repeat["existing"] is True
    assert repeat["status"] == "queued" and again.headers["Location"] == first["status_url"]
    assert repeat["message"] == (f"run {first['run_id']} of job crawl was enqueued with the same idempotency key "
                                 "'order-42' (it is queued); not enqueued again")
    assert run_ids(db, "crawl") == [first["run_id"]]
    assert api_client.ok(post_run(api_client, "crawl", None), 202)["run_id"] != first["run_id"]  # no key: new


def test_the_same_key_on_another_job_is_another_run(api_client: ApiClient, make_job: Any) -> None:
    make_job("crawl", params=SITE)
    make_job("index", params=SITE)
    one = api_client.ok(post_run(api_client, "crawl", "k-1"), 202)
    other = api_client.ok(post_run(api_client, "index", "k-1"), 202)
    assert one["run_id"] != other["run_id"]


def test_a_key_older_than_the_window_makes_a_new_run(api_client: ApiClient, make_job: Any, lj: Runtime) -> None:
    make_job("crawl", params=SITE)
    first = api_client.ok(post_run(api_client, "crawl", "nightly"), 202)["run_id"]
    window = lj.settings.idempotency_window
    assert window == 24 * 3600  # the default
    with lj.db.write() as session:  # the first run was made just over a window ago
        session.execute(RUNS.update().where(RUNS.c.id == first).values(
            created_at=utcnow() - timedelta(seconds=window + 5)))
    second = api_client.ok(post_run(api_client, "crawl", "nightly"), 202)["run_id"]
    assert second != first
    assert api_client.ok(post_run(api_client, "crawl", "nightly"), 200)["run_id"] == second


def test_the_same_key_with_other_params_is_refused(api_client: ApiClient, make_job: Any, db: Database) -> None:
    make_job("crawl", params=SITE)
    first = api_client.ok(post_run(api_client, "crawl", "same-key", {"site_id": 1}), 202)["run_id"]
    error = api_client.error(post_run(api_client, "crawl", "same-key", {"site_id": 2}), 422, "idempotency_key_reused")
    assert error["message"] == (f"idempotency key 'same-key' was used for run {first} of job crawl with other params; "
                                "send a new key for a different request")
    assert error["details"] == {"run_id": first, "params": {"site_id": 1}}
    assert run_ids(db, "crawl") == [first]


@pytest.mark.parametrize("key", ["", "x" * 201, " padded", "trailing ", "tab\there", "caf\u00e9"],
                         ids=["empty", "201-chars", "leading-space", "trailing-space", "control", "not-ascii"])
def test_a_bad_key_is_refused_with_the_header_named(api_client: ApiClient, make_job: Any, db: Database,
                                                    key: str) -> None:
    make_job("crawl", params=SITE)
    error = api_client.error(post_run(api_client, "crawl", key), 422, "invalid_field", field="Idempotency-Key")
    assert "1–200 printable ASCII characters" in error["message"]
    assert run_ids(db, "crawl") == []


def test_the_longest_key_and_inner_spaces_are_taken() -> None:
    assert idempotency_key("k" * 200).text == "k" * 200
    assert idempotency_key("order 42 / retry #1").text == "order 42 / retry #1"
    with pytest.raises(InvalidIdempotencyKey):
        idempotency_key(42)


def test_python_enqueue_with_key_returns_the_first_run(lj: Runtime, make_job: Any) -> None:
    make_job("crawl", params=SITE)
    first = lexyjobs.enqueue("crawl", {"site_id": 7}, key="import-7", runtime=lj)
    again = lexyjobs.enqueue("crawl", {"site_id": 7}, key="import-7", runtime=lj)
    assert not first.existing and first.message is None
    assert again.existing and again.id == first.id and again.status == "queued"
    assert again.message is not None and "same idempotency key 'import-7'" in again.message
    with pytest.raises(lexyjobs.LexyjobsError, match="key: must be 1–200 printable ASCII"):
        lexyjobs.enqueue("crawl", {"site_id": 7}, key="", runtime=lj)
    assert run_ids(lj.db, "crawl") == [first.id]


def test_a_key_inside_the_hosts_transaction_counts_once_committed(lj: Runtime, make_job: Any) -> None:
    make_job("crawl", params=SITE)
    with lj.db.engine.connect() as conn:  # a host's connection on the same database
        with conn.begin() as transaction:
            inside = lexyjobs.enqueue("crawl", {"site_id": 1}, key="host-1", session=conn, runtime=lj)
            twice = lexyjobs.enqueue("crawl", {"site_id": 1}, key="host-1", session=conn, runtime=lj)
            assert twice.existing and twice.id == inside.id  # its own uncommitted run answers
            transaction.rollback()
    after = lexyjobs.enqueue("crawl", {"site_id": 1}, key="host-1", runtime=lj)  # rolled back: gone
    assert not after.existing and run_ids(lj.db, "crawl") == [after.id]


def test_the_cli_key_prints_the_existing_run(db_url: str, db: Database, make_job: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    make_job("crawl", params=SITE)
    monkeypatch.chdir(tmp_path)
    env = {"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": ""}

    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)
    first = cli("run", "crawl", "-p", "site_id=3", "--key", "cli-3")
    assert first.exit_code == 0 and first.stdout.startswith("run ")
    run_id = run_ids(db, "crawl")[0]
    again = cli("run", "crawl", "-p", "site_id=3", "--key", "cli-3")
    assert again.exit_code == 0
    assert again.stdout.strip() == (f"run {run_id} of job crawl was enqueued with the same idempotency key 'cli-3' "
                                    "(it is queued); not enqueued again")
    bad = cli("run", "crawl", "-p", "site_id=3", "--key", "x" * 201)
    assert bad.exit_code == 2 and "--key: must be 1–200 printable ASCII" in bad.output
    assert "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1
    assert run_ids(db, "crawl") == [run_id]


# ---------------------------------------------------------------- concurrency


def test_threads_enqueueing_one_key_make_one_run(lj: Runtime, make_job: Any) -> None:
    make_job("crawl", params=SITE)
    barrier, handles, errors = threading.Barrier(20), [], []

    def enqueue() -> None:
        barrier.wait()
        try:
            handles.append(lexyjobs.enqueue("crawl", {"site_id": 1}, key="race", runtime=lj))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=enqueue) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len({h.id for h in handles}) == 1 and sum(not h.existing for h in handles) == 1
    assert run_ids(lj.db, "crawl") == [handles[0].id]


def test_a_second_host_transaction_waits_for_the_first_and_gets_its_run(lj: Runtime, make_job: Any) -> None:
    """Two host transactions with one key: the second waits (advisory lock / SQLite write lock)
    until the first commits, then answers with the first's run."""
    make_job("crawl", params=SITE)
    first_in, second_done = threading.Event(), threading.Event()
    answers: dict[str, Any] = {}

    def host(name: str, wait_for: threading.Event | None, hold: float) -> None:
        if wait_for is not None:
            wait_for.wait(10)
        with lj.db.engine.connect() as conn, conn.begin():
            answers[name] = lexyjobs.enqueue("crawl", {"site_id": 1}, key="two-hosts", session=conn, runtime=lj)
            first_in.set()
            second_done.wait(hold)  # hold the transaction open; the second must not finish meanwhile
    first = threading.Thread(target=host, args=("first", None, 0.5))
    second = threading.Thread(target=host, args=("second", first_in, 0))
    first.start()
    second.start()
    second.join(20)
    second_done.set()
    first.join(20)
    assert answers["first"].existing is False
    assert answers["second"].existing is True and answers["second"].id == answers["first"].id
    assert run_ids(lj.db, "crawl") == [answers["first"].id]


ENQUEUER = """
import json, os, sys, threading, time
import lexyjobs
go, threads = sys.argv[1], int(sys.argv[2])
from lexyjobs.runtime import resolve  # the runtime comes from the environment (LEXYJOBS_DATABASE_URL)
from lexyjobs.enqueueing import prepare_once
prepare_once(resolve())
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
out = []
def one():
    run = lexyjobs.enqueue(sys.argv[3], json.loads(sys.argv[4]), key=sys.argv[5] or None)
    out.append([run.id, run.existing])
ts = [threading.Thread(target=one) for _ in range(threads)]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps(out), flush=True)
"""


def race_processes(db_url: str, tmp_path: Path, job: str, params: dict[str, Any], key: str,
                   processes: int = 2, threads: int = 8) -> list[list[Any]]:
    """Start ``processes`` Python processes that each enqueue from ``threads`` threads at once."""
    go = tmp_path / "go"
    env = subprocess_env(db_url, LEXYJOBS_JOBS_FILE="", LEXYJOBS_WORKERS="0")
    started = [subprocess.Popen([PYTHON, "-c", ENQUEUER, str(go), str(threads), job, json.dumps(params), key],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(processes)]
    for process in started:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    go.write_text("go")
    answers = []
    for process in started:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        answers += json.loads(out.strip().splitlines()[-1])
    return answers


def test_two_processes_enqueueing_one_key_make_one_run(db_url: str, lj: Runtime, make_job: Any,
                                                       tmp_path: Path) -> None:
    make_job("crawl", params=SITE)
    answers = race_processes(db_url, tmp_path, "crawl", {"site_id": 5}, "across-processes")
    assert len(answers) == 16 and len({run_id for run_id, _ in answers}) == 1
    assert sum(not existing for _, existing in answers) == 1
    assert run_ids(lj.db, "crawl") == [answers[0][0]]


JOBS_TOML = """
[jobs.crawl]
kind = "python"
func = "jobfuncs:noop"
params = { site_id = { type = "integer", required = true } }
"""


def _post(url: str, key: str, params: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps({"params": params}).encode(), method="POST", headers={
        "Authorization": f"Bearer {E2E_TOKEN}", "Content-Type": "application/json", "Idempotency-Key": key})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_fifty_concurrent_http_requests_with_one_key_make_one_run(db_url: str, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS_TOML)
    with running_server(db_url, jobs_file, LEXYJOBS_HTTP_THREADS="16", LEXYJOBS_WORKERS="0") as srv:
        barrier, answers = threading.Barrier(50), []

        def send() -> None:
            barrier.wait()
            answers.append(_post(srv.url + "/api/jobs/crawl/run", "one-key-50", {"site_id": 9}))
        threads = [threading.Thread(target=send) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200] * 49 + [202], answers
        assert len({body["run_id"] for _, body in answers}) == 1
        assert sorted(body["existing"] for _, body in answers) == [False] + [True] * 49
        run_id = answers[0][1]["run_id"]
        status, listing = srv.call("GET", "/api/runs?job=crawl", E2E_TOKEN)
        assert status == 200 and [run["id"] for run in listing["runs"]] == [run_id]
        client = lexyjobs.Client(srv.url, E2E_TOKEN)  # the Client sends the header too
        again = client.run("crawl", {"site_id": 9}, key="one-key-50")
        assert again.id == run_id and again.existing and "same idempotency key 'one-key-50'" in (again.message or "")
        fresh = client.run("crawl", {"site_id": 9}, key="another-key")
        assert fresh.id != run_id and not fresh.existing and fresh.message is None
        with pytest.raises(lexyjobs.ClientError) as refused:
            client.run("crawl", {"site_id": 10}, key="one-key-50")
        assert refused.value.status == 422 and refused.value.code == "idempotency_key_reused"


def test_enqueue_many_without_keys_or_unique_jobs_skips_the_checks(db: Database, make_job: Any) -> None:
    """The plain path is as before: no lock, no lookup of runs (seen on the connection)."""
    from sqlalchemy import event

    make_job("plain")
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)
    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        runs.enqueue_many(db, [runs.RunRequest("plain"), runs.RunRequest("plain")])
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert not any("advisory" in s or "idempotency_key =" in s or "unique_key =" in s or "WHERE 0" in s
                   for s in statements), statements
    assert not any(s.lstrip().upper().startswith("SELECT") and "FROM RUNS" in s.upper() for s in statements)
    assert any(s.lstrip().upper().startswith("INSERT INTO RUNS") for s in statements)
