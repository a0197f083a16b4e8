"""The runs routes of the JSON API (/api/runs…): search with filters, pagination and status
counts; the run detail with queue and processing time, events and retries; cancel; retry; and
tailing the log. Runs are driven through the state machine (``conftest.drive_run``) or, end to
end, by a real in-process worker. Tokens and roles for every route: test_api_system.py."""
from __future__ import annotations

from typing import Any, Callable

import pytest
from conftest import ApiClient, drive_run, wait_for

from lexyjobs import audit, runs, store
from lexyjobs.db import Database
from lexyjobs.runtime import Runtime
from lexyjobs.states import RunStatus

ROUTES = {("GET", "/api/runs"), ("GET", "/api/runs/{run_id}"), ("POST", "/api/runs/{run_id}/cancel"),
          ("POST", "/api/runs/{run_id}/retry"), ("GET", "/api/runs/{run_id}/log"),
          ("GET", "/api/runs/{run_id}/items")}
MakeJob = Callable[..., str]
ALL_ZERO = {status.value: 0 for status in RunStatus}


@pytest.fixture
def history(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> dict[str, int]:
    """Five runs, oldest first: alpha (category Metrics) succeeded for alice and failed for bob
    ("disk full"), beta queued by hand and running, and alpha's retry of bob's run."""
    make_job("alpha", category="Metrics", params={"who": "nobody"}, max_concurrency=0)
    make_job("beta", max_concurrency=0)
    ids: dict[str, int] = {}
    for who in ("alice", "bob"):
        ids[who] = api_client.ok(api_client.post("/api/jobs/alpha/run", json={"params": {"who": who}}), 202)["run_id"]
    ids["manual"] = runs.enqueue(lj.db, "beta", trigger="manual")
    ids["running"] = api_client.ok(api_client.post("/api/jobs/beta/run"), 202)["run_id"]
    drive_run(lj.db, ids["alice"], RunStatus.SUCCEEDED)
    drive_run(lj.db, ids["bob"], RunStatus.FAILED, error="disk full")
    drive_run(lj.db, ids["running"], RunStatus.RUNNING)
    ids["retry"] = api_client.ok(api_client.post(f"/api/runs/{ids['bob']}/retry"), 202)["run_id"]
    return ids


def listed(api_client: ApiClient, **query: Any) -> Any:
    return api_client.ok(api_client.get("/api/runs", role="viewer", query_string=query))


def ids_of(listing: dict[str, Any]) -> list[int]:
    return [r["id"] for r in listing["runs"]]


def runs_count(db: Database) -> int:
    with db.read() as session:
        return sum(store.count_runs_by_status(session).values())


# ---------------------------------------------------------------- search


def test_the_run_list_is_newest_first_with_counts_per_status(api_client: ApiClient, history: dict[str, int]) -> None:
    listing = listed(api_client)
    assert ids_of(listing) == [history[k] for k in ("retry", "running", "manual", "bob", "alice")]
    assert listing["pagination"] == {"page": 1, "limit": 50, "total": 5, "pages": 1}
    assert listing["stats"] == {**ALL_ZERO, "total": 5, "queued": 2, "running": 1, "succeeded": 1, "failed": 1}
    first = listing["runs"][0]
    assert (first["job"], first["trigger"], first["retry_of"], first["params"]) == (
        "alpha", "retry", history["bob"], {"who": "bob"})


@pytest.mark.parametrize(("query", "expected"), [
    ({"status": "queued"}, ["retry", "manual"]),
    ({"status": "succeeded,failed"}, ["bob", "alice"]),
    ({"status": "running,succeeded"}, ["running", "alice"]),
    ({"job": "beta"}, ["running", "manual"]),
    ({"category": "Metrics"}, ["retry", "bob", "alice"]),
    ({"trigger": "manual"}, ["manual"]),
    ({"trigger": "retry"}, ["retry"]),
    ({"trigger": "manual,retry"}, ["retry", "manual"]),
    ({"q": "alice"}, ["alice"]),
    ({"q": "ALICE"}, ["alice"]),
    ({"q": "disk"}, ["bob"]),
    ({"q": "bob"}, ["retry", "bob"]),
    ({"q": "%"}, []),
    ({"status": "queued", "job": "alpha"}, ["retry"]),
], ids=lambda v: "&".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None)
def test_the_run_list_filters(api_client: ApiClient, history: dict[str, int], query: dict[str, str],
                              expected: list[str]) -> None:
    listing = listed(api_client, **query)
    assert ids_of(listing) == [history[k] for k in expected]
    assert listing["pagination"]["total"] == len(expected)


def test_the_counts_ignore_the_status_filter_but_honour_the_others(api_client: ApiClient,
                                                                   history: dict[str, int]) -> None:
    listing = listed(api_client, job="alpha", status="failed")
    assert ids_of(listing) == [history["bob"]]
    assert listing["stats"] == {**ALL_ZERO, "total": 3, "queued": 1, "succeeded": 1, "failed": 1}
    assert listed(api_client, status="failed", trigger="manual")["stats"] == {**ALL_ZERO, "total": 1, "queued": 1}


def test_the_run_list_filters_by_creation_time(api_client: ApiClient, lj: Runtime, history: dict[str, int]) -> None:
    cut = runs.get_run(lj.db, history["manual"]).created_at
    assert runs.get_run(lj.db, history["bob"]).created_at < cut
    assert ids_of(listed(api_client, since=cut.isoformat())) == [history[k] for k in ("retry", "running", "manual")]
    assert ids_of(listed(api_client, until=cut.isoformat())) == [history[k] for k in ("bob", "alice")]
    naive_utc = cut.replace(tzinfo=None).isoformat()  # without an offset it is UTC
    assert ids_of(listed(api_client, since=naive_utc, until=cut.isoformat())) == []
    zulu = cut.isoformat().replace("+00:00", "Z")
    assert ids_of(listed(api_client, since=zulu)) == ids_of(listed(api_client, since=cut.isoformat()))


def test_the_run_list_pages(api_client: ApiClient, history: dict[str, int]) -> None:
    newest_first = [history[k] for k in ("retry", "running", "manual", "bob", "alice")]
    for page, expected in [(1, newest_first[:2]), (2, newest_first[2:4]), (3, newest_first[4:]), (4, [])]:
        listing = listed(api_client, page=str(page), limit="2")
        assert ids_of(listing) == expected
        assert listing["pagination"] == {"page": page, "limit": 2, "total": 5, "pages": 3}
    assert ids_of(listed(api_client, limit="200")) == newest_first


@pytest.mark.parametrize(("arg", "value"), [
    ("page", "0"), ("page", "-1"), ("page", "abc"), ("limit", "0"), ("limit", "201"), ("limit", "abc"),
    ("limit", "1.5"), ("status", "bogus"), ("status", "queued,bogus"), ("trigger", "bogus"), ("since", "notadate"),
    ("until", "2025-02-30T00:00:00"), ("q", "x" * 201),
    # exactly as the OpenAPI document says: no empty values, no blanks or empty items in lists, digits only
    ("since", ""), ("until", ""), ("job", ""), ("q", ""), ("status", ""), ("status", " running , succeeded "),
    ("status", "queued,,failed"), ("trigger", "manual,"), ("page", "1_0"), ("page", " 2"), ("page", "+2"), ("limit", "9" * 5000)])
def test_the_run_list_refuses_bad_query_arguments(api_client: ApiClient, arg: str, value: str) -> None:
    error = api_client.error(api_client.get("/api/runs", query_string={arg: value}), 400, "bad_request", field=arg)
    assert error["message"].startswith(f"{arg}: ")


# ---------------------------------------------------------------- detail


def test_the_run_detail_has_times_events_and_retries(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("timed")
    run_id = api_client.ok(api_client.post("/api/jobs/timed/run"), 202)["run_id"]
    queued = api_client.ok(api_client.get(f"/api/runs/{run_id}", role="viewer"))
    assert (queued["status"], queued["queue_seconds"], queued["processing_seconds"]) == ("queued", None, None)
    assert (queued["events"], queued["retried_by"], queued["log_size"]) == ([], [], 0)
    drive_run(lj.db, run_id, RunStatus.FAILED, queued_for=5.0, ran_for=2.5, error="timed out")
    retry_id = api_client.ok(api_client.post(f"/api/runs/{run_id}/retry"), 202)["run_id"]
    run = api_client.ok(api_client.get(f"/api/runs/{run_id}", role="viewer"))
    assert (run["status"], run["error"], run["attempt"]) == ("failed", "timed out", 1)
    assert (run["queue_seconds"], run["processing_seconds"]) == (5.0, 2.5)
    assert [(e["from"], e["to"], e["attempt"]) for e in run["events"]] == [("queued", "running", 1),
                                                                          ("running", "failed", 1)]
    assert run["retried_by"] == [retry_id] and run["log_url"] == f"/api/runs/{run_id}/log"
    assert "traceback" in run and run["worker"] == "test:api"


def test_the_run_detail_matches_the_documented_schema(api_client: ApiClient, make_job: MakeJob) -> None:
    make_job("documented")
    run_id = api_client.ok(api_client.post("/api/jobs/documented/run"), 202)["run_id"]
    api_client.ok(api_client.get(f"/api/runs/{run_id}"))


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/cancel"), ("POST", "/retry"), ("GET", "/log")])
def test_an_unknown_run_is_a_404(api_client: ApiClient, method: str, suffix: str) -> None:
    for run_id in (424242, 2**63 - 1):
        error = api_client.error(api_client.request(method, f"/api/runs/{run_id}{suffix}"), 404, "not_found")
        assert str(run_id) in error["message"]


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/cancel"), ("POST", "/retry"), ("GET", "/log")])
def test_a_run_id_too_large_for_the_database_is_a_404(api_client: ApiClient, method: str, suffix: str) -> None:
    for run_id in (2**63, 10**30):
        api_client.error(api_client.request(method, f"/api/runs/{run_id}{suffix}"), 404, "not_found")


# ---------------------------------------------------------------- cancel and retry


def test_canceling_a_queued_run_cancels_it_at_once(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("stoppable")
    run_id = runs.enqueue(lj.db, "stoppable")
    assert api_client.ok(api_client.post(f"/api/runs/{run_id}/cancel", role="operator")) == {
        "run_id": run_id, "status": "canceled", "outcome": "canceled", "message": "it had not started",
        "status_url": f"/api/runs/{run_id}"}
    run = runs.get_run(lj.db, run_id)
    assert run.status == RunStatus.CANCELED and run.finished_at is not None
    with lj.db.read() as session:
        assert store.run_events(session, run_id)[-1].note == "canceled by token:ci-operator"
    entry = audit.search(lj.db, action="run.cancel").entries[0]
    assert (entry.actor, entry.target, entry.client, entry.details) == (
        "token:ci-operator", str(run_id), "127.0.0.1", {"outcome": "canceled"})


def test_canceling_a_running_run_asks_its_worker_to_stop(api_client: ApiClient, lj: Runtime,
                                                         make_job: MakeJob) -> None:
    make_job("long")
    run_id = runs.enqueue(lj.db, "long")
    drive_run(lj.db, run_id, RunStatus.RUNNING)
    answer = api_client.ok(api_client.post(f"/api/runs/{run_id}/cancel", role="operator", json={}), 202)
    assert answer == {"run_id": run_id, "status": "running", "outcome": "cancel requested",
                      "message": answer["message"], "status_url": f"/api/runs/{run_id}"}
    assert "ends canceled" in answer["message"] and "it finished first" in answer["message"]
    run = runs.get_run(lj.db, run_id)
    assert (run.status, run.cancel_requested) == (RunStatus.RUNNING, True)
    with lj.db.read() as session:
        request = store.run_events(session, run_id)[-1]
    assert (request.from_status, request.to_status, request.note) == ("running", "running",
                                                                      "cancel requested by token:ci-operator")
    assert audit.search(lj.db, action="run.cancel").entries[0].details == {"outcome": "cancel requested"}


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED])
def test_canceling_a_finished_run_is_a_conflict(api_client: ApiClient, lj: Runtime, make_job: MakeJob,
                                                status: RunStatus) -> None:
    make_job("done")
    run_id = runs.enqueue(lj.db, "done")
    drive_run(lj.db, run_id, status)
    error = api_client.error(api_client.post(f"/api/runs/{run_id}/cancel"), 409, "conflict")
    assert status.value in error["message"] and error["details"] == {"run_id": run_id, "status": status.value}
    assert runs.get_run(lj.db, run_id).status == status and audit.search(lj.db).entries == []


def test_retrying_a_failed_run_enqueues_a_new_one(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("flaky", params={"size": 1})
    run_id = runs.enqueue(lj.db, "flaky", {"size": 4}, priority=6)
    drive_run(lj.db, run_id, RunStatus.FAILED, error="flaked")
    response = api_client.post(f"/api/runs/{run_id}/retry", role="operator")
    accepted = api_client.ok(response, 202)
    new_id = accepted["run_id"]
    assert accepted == {"run_id": new_id, "status": "queued", "status_url": f"/api/runs/{new_id}", "retry_of": run_id,
                        "existing": False}
    assert response.headers["Location"] == accepted["status_url"]
    new = runs.get_run(lj.db, new_id)
    assert (new.status, new.trigger, new.created_by, new.retry_of, new.params, new.priority) == (
        RunStatus.QUEUED, "retry", "token:ci-operator", run_id, {"size": 4}, 6)
    entry = audit.search(lj.db, action="run.retry").entries[0]
    assert (entry.actor, entry.target, entry.details) == ("token:ci-operator", str(run_id), {"run_id": new_id})


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING])
def test_retrying_an_unfinished_run_is_a_conflict(api_client: ApiClient, lj: Runtime, make_job: MakeJob,
                                                  status: RunStatus) -> None:
    make_job("busy")
    run_id = runs.enqueue(lj.db, "busy")
    drive_run(lj.db, run_id, status)
    error = api_client.error(api_client.post(f"/api/runs/{run_id}/retry"), 409, "conflict")
    assert status.value in error["message"]
    assert runs_count(lj.db) == 1 and audit.search(lj.db).entries == []


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_cancel_and_retry_take_no_fields(api_client: ApiClient, lj: Runtime, make_job: MakeJob, action: str) -> None:
    make_job("fieldless")
    run_id = runs.enqueue(lj.db, "fieldless")
    if action == "retry":
        drive_run(lj.db, run_id, RunStatus.FAILED)
    before = runs.get_run(lj.db, run_id).status
    response = api_client.post(f"/api/runs/{run_id}/{action}", json={"force": True})
    api_client.error(response, 422, "invalid_field", field="force")
    assert runs.get_run(lj.db, run_id).status == before and runs_count(lj.db) == 1


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_cancel_and_retry_document_their_422(api_client: ApiClient, lj: Runtime, make_job: MakeJob,
                                             action: str) -> None:
    make_job("fieldless")
    run_id = runs.enqueue(lj.db, "fieldless")
    api_client.error(api_client.post(f"/api/runs/{run_id}/{action}", json={"force": True}), 422, "invalid_field")


# ---------------------------------------------------------------- log


def test_the_log_is_tailed_from_an_offset(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("chatty")
    run_id = runs.enqueue(lj.db, "chatty")
    drive_run(lj.db, run_id, RunStatus.RUNNING)

    def append(text: str, max_chars: int = 10_000) -> None:
        with lj.db.write() as session:
            store.append_log(session, run_id, text, max_chars=max_chars)

    def tail(**query: Any) -> Any:
        return api_client.ok(api_client.get(f"/api/runs/{run_id}/log", role="viewer", query_string=query))
    assert tail() == {"run_id": run_id, "text": "", "next_offset": 0, "trimmed": 0, "finished": False}
    append("line 1\nline 2\n")
    first = tail()
    assert (first["text"], first["next_offset"]) == ("line 1\nline 2\n", 14)
    append("line 3\n")
    assert (tail(after=14)["text"], tail(after=14)["next_offset"]) == ("line 3\n", 21)
    assert (tail(after=21)["text"], tail(after=21)["next_offset"]) == ("", 21)
    append("line 4\n", max_chars=15)  # the oldest lines are trimmed; offsets stay valid
    kept = tail()
    assert (kept["text"], kept["next_offset"], kept["trimmed"]) == ("line 3\nline 4\n", 28, 14)
    assert tail(after=21)["text"] == "line 4\n"
    assert api_client.ok(api_client.get(f"/api/runs/{run_id}", role="viewer"))["log_size"] == 28


@pytest.mark.parametrize("after", ["abc", "-1", "1.5", str(2**63)])
def test_the_log_refuses_a_bad_offset(api_client: ApiClient, lj: Runtime, make_job: MakeJob, after: str) -> None:
    make_job("quiet")
    run_id = runs.enqueue(lj.db, "quiet")
    response = api_client.get(f"/api/runs/{run_id}/log", query_string={"after": after})
    api_client.error(response, 400, "bad_request", field="after")


def test_a_run_enqueued_by_the_api_is_executed_and_followed_to_the_end(api_client: ApiClient, make_job: MakeJob,
                                                                       start_worker: Callable[..., Any]) -> None:
    make_job("progressing", func="jobfuncs:with_progress", params={"pause": 0.05})
    response = api_client.post("/api/jobs/progressing/run", role="operator", json={"params": {"pause": 0.01}})
    accepted = api_client.ok(response, 202)
    start_worker()

    def finished() -> Any:
        run = api_client.ok(api_client.get(accepted["status_url"], role="viewer"))
        return run if run["status"] not in ("queued", "running") else None
    run = wait_for(finished)
    assert (run["status"], run["result"], run["progress"]) == ("succeeded", "ok", 100)
    assert run["queue_seconds"] is not None and run["processing_seconds"] is not None
    assert [(e["from"], e["to"]) for e in run["events"]] == [("queued", "running"), ("running", "succeeded")]
    log = api_client.ok(api_client.get(run["log_url"], role="viewer"))
    assert "step 4" in log["text"] and log["finished"] is True and log["next_offset"] == run["log_size"]
