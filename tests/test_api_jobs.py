"""The jobs routes of the JSON API (/api/jobs…): list, create, read, replace, patch, delete, run
now, pause and resume — each with its effect in the database and the audit log — and the input
they refuse, naming the field. Tokens and roles for every route: test_api_system.py."""
from __future__ import annotations

from lexyjobs import code_jobs

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import jobfuncs
import pytest
from conftest import ApiClient, drive_run
from flask import Flask

from lexyjobs import audit, registry, runs, store
from lexyjobs.db import Database
from lexyjobs.models import AuditEntry, Job, Run
from lexyjobs.runtime import Runtime
from lexyjobs.states import RunStatus

ROUTES = {("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", "/api/jobs/{name}"), ("PUT", "/api/jobs/{name}"),
          ("PATCH", "/api/jobs/{name}"), ("DELETE", "/api/jobs/{name}"), ("POST", "/api/jobs/{name}/run"),
          ("POST", "/api/jobs/{name}/pause"), ("POST", "/api/jobs/{name}/resume")}
PYTHON_JOB = {"kind": "python", "func": "jobfuncs:noop"}
MakeJob = Callable[..., str]


def job_row(db: Database, name: str) -> Job | None:
    with db.read() as session:
        return store.get_job(session, name)


def runs_of(db: Database, name: str) -> list[Run]:
    with db.read() as session:
        return store.list_runs(session, job=name, limit=100)


def entries(db: Database, action: str | None = None) -> list[AuditEntry]:
    return audit.search(db, action=action).entries


# ---------------------------------------------------------------- list and read


def test_the_job_list_shows_schedule_next_fire_and_health_with_filters(api_client: ApiClient,
                                                                       make_job: MakeJob) -> None:
    make_job("daily-report", schedule="0 6 * * *", category="Reports", title="Daily report")
    make_job("cleanup", kind="shell", argv=["true"], enabled=False)
    listing = api_client.ok(api_client.get("/api/jobs", role="viewer"))
    by_name = {j["name"]: j for j in listing["jobs"]}
    assert listing["total"] == 2 and set(by_name) == {"daily-report", "cleanup"}
    report = by_name["daily-report"]
    assert (report["title"], report["category"], report["source"], report["editable"]) == (
        "Daily report", "Reports", "db", True)
    assert report["schedule"] == "0 6 * * *" and report["next_fire"] is not None
    assert report["schedule_description"] and report["schedule_description"] != "manual"
    assert report["health"]["state"] == "unknown"
    assert by_name["cleanup"]["enabled"] is False and by_name["cleanup"]["next_fire"] is None

    def names(**query: str) -> set[str]:
        listing = api_client.ok(api_client.get("/api/jobs", role="viewer", query_string=query))
        return {j["name"] for j in listing["jobs"]}
    assert names(category="Reports") == {"daily-report"}
    assert names(kind="shell") == {"cleanup"}
    assert names(paused="true") == {"cleanup"} and names(paused="false") == {"daily-report"}
    assert names(source="file") == set()
    for arg, value in [("kind", "bogus"), ("source", "elsewhere"), ("paused", "1"), ("paused", "yes"), ("paused", ""),
                       ("archived", "TRUE"), ("category", "")]:  # exactly as the OpenAPI document says
        api_client.error(api_client.get("/api/jobs", query_string={arg: value}), 400, "bad_request", field=arg)


def test_archived_jobs_are_listed_only_when_asked(api_client: ApiClient, lj: Runtime, tmp_path: Path,
                                                  make_api_app: Callable[..., Flask]) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[jobs.from-file]\nkind = "shell"\nargv = ["true"]\n', encoding="utf-8")
    make_api_app(jobs_file=str(jobs_file))
    jobs_file.write_text("", encoding="utf-8")
    assert registry.sync_jobs(lj.db, jobs_file=str(jobs_file), archive_missing=True).archived == ["from-file"]
    assert api_client.ok(api_client.get("/api/jobs"))["jobs"] == []
    archived = api_client.ok(api_client.get("/api/jobs", query_string={"archived": "true"}))["jobs"]
    assert [(j["name"], j["archived"], j["editable"]) for j in archived] == [("from-file", True, True)]


def test_reading_a_job_includes_its_run_counts_and_latest_run(api_client: ApiClient, lj: Runtime,
                                                              make_job: MakeJob) -> None:
    make_job("counted", max_concurrency=0)
    first, latest = runs.enqueue(lj.db, "counted"), runs.enqueue(lj.db, "counted")
    drive_run(lj.db, first, RunStatus.SUCCEEDED)
    job = api_client.ok(api_client.get("/api/jobs/counted", role="viewer"))
    assert job["name"] == "counted" and job["definition"] == {**PYTHON_JOB, "max_concurrency": 0}
    assert job["runs"]["stats"] == {"total": 2, "queued": 1, "running": 0, "succeeded": 1, "failed": 0,
                                    "canceled": 0, "blocked": 0, "skipped": 0}
    assert job["runs"]["latest_run_id"] == latest
    listed = api_client.ok(api_client.get(job["runs"]["list_url"], role="viewer"))
    assert [r["id"] for r in listed["runs"]] == [latest, first]


def test_reading_a_job_matches_the_documented_schema(api_client: ApiClient, make_job: MakeJob) -> None:
    make_job("documented")
    api_client.ok(api_client.get("/api/jobs/documented", role="viewer"))


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("PUT", ""), ("PATCH", ""), ("DELETE", ""),
                                                ("POST", "/run"), ("POST", "/pause"), ("POST", "/resume")])
def test_an_unknown_job_is_a_404_naming_it(api_client: ApiClient, method: str, suffix: str) -> None:
    body = PYTHON_JOB if method in ("PUT", "PATCH") else None
    error = api_client.error(api_client.request(method, f"/api/jobs/ghost{suffix}", json=body), 404, "not_found")
    assert "ghost" in error["message"] and error["details"] == {"job": "ghost"}


# ---------------------------------------------------------------- create, replace, patch, delete


def test_creating_a_job_stores_it_and_audits_who_did(api_client: ApiClient, lj: Runtime) -> None:
    definition = {**PYTHON_JOB, "schedule": "0 3 * * *", "timezone": "Europe/Paris", "category": "Reports",
                  "params": {"day": {"type": "string", "required": True}}}
    response = api_client.post("/api/jobs", json={"name": "nightly", **definition})
    job = api_client.ok(response, 201)
    assert response.headers["Location"] == "/api/jobs/nightly"
    assert (job["name"], job["source"], job["editable"], job["timezone"]) == ("nightly", "db", True, "Europe/Paris")
    assert job["definition"] == definition and job["next_fire"] is not None
    assert job["params"] == [{"name": "day", "type": "string", "required": True, "help": ""}]
    row = job_row(lj.db, "nightly")
    assert row is not None and (row.source, row.spec, row.schedule) == ("db", definition, "0 3 * * *")
    entry = entries(lj.db, "job.create")[0]
    assert (entry.actor, entry.target, entry.client) == ("token:ci-admin", "nightly", "127.0.0.1")
    assert api_client.ok(api_client.get("/api/jobs/nightly"))["definition"] == definition


def test_creating_a_job_under_a_taken_name_is_a_conflict(api_client: ApiClient, lj: Runtime,
                                                         make_job: MakeJob) -> None:
    make_job("taken", description="the first")
    response = api_client.post("/api/jobs", json={"name": "taken", "kind": "shell", "argv": ["true"]})
    api_client.error(response, 409, "conflict")
    row = job_row(lj.db, "taken")
    assert row is not None and row.spec["description"] == "the first" and entries(lj.db) == []


@pytest.mark.parametrize(("body", "field"), [
    ({**PYTHON_JOB}, "name"),
    ({"name": 7, **PYTHON_JOB}, "name"),
    ({"name": "Bad Name!", **PYTHON_JOB}, "name"),
    ({"name": "x", **PYTHON_JOB, "colour": "blue"}, "colour"),
    ({"name": "x", "func": "jobfuncs:noop"}, "kind"),
    ({"name": "x", **PYTHON_JOB, "schedule": "61 * * * *"}, "schedule"),
    ({"name": "x", **PYTHON_JOB, "schedule": "every blue moon"}, "schedule"),
    ({"name": "x", **PYTHON_JOB, "priority": "high"}, "priority"),
    ({"name": "x", **PYTHON_JOB, "priority": 11}, "priority"),
    ({"name": "x", **PYTHON_JOB, "params": ["a", "b"]}, "params"),
    ({"name": "x", **PYTHON_JOB, "timezone": "Mars/Olympus"}, "timezone"),
    ({"name": "x", **PYTHON_JOB, "depends_on": ["nope"]}, "depends_on"),
    ({"name": "x", "kind": "http", "url": "ftp://example.invalid"}, "url"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_creating_a_job_refuses_bad_fields_naming_them(api_client: ApiClient, lj: Runtime, body: dict[str, Any],
                                                       field: str) -> None:
    api_client.error(api_client.post("/api/jobs", json=body), 422, field=field)
    assert api_client.ok(api_client.get("/api/jobs"))["total"] == 0 and entries(lj.db) == []


def test_an_empty_body_is_refused_where_one_is_required(api_client: ApiClient, make_job: MakeJob) -> None:
    make_job("needs-body")
    for method, path in [("POST", "/api/jobs"), ("PUT", "/api/jobs/needs-body"), ("PATCH", "/api/jobs/needs-body")]:
        response = api_client.request(method, path, data=b"  ", content_type="application/json")
        api_client.error(response, 400, field="body")


def test_replacing_a_job_drops_the_fields_left_out(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("replaced", description="old text", priority=3, schedule="0 6 * * *")
    version = job_row(lj.db, "replaced").version  # type: ignore[union-attr]
    new = {**PYTHON_JOB, "schedule": "@hourly", "category": "Moved"}
    job = api_client.ok(api_client.put("/api/jobs/replaced", json={"name": "replaced", **new}))
    assert job["definition"] == new and job["category"] == "Moved" and job["description"] == ""
    row = job_row(lj.db, "replaced")
    assert row is not None and row.spec == new and row.schedule == "@hourly" and row.version == version + 1
    entry = entries(lj.db, "job.update")[0]
    assert (entry.actor, entry.target) == ("token:ci-admin", "replaced")


def test_patching_a_job_merges_fields_and_null_removes_one(api_client: ApiClient, lj: Runtime,
                                                           make_job: MakeJob) -> None:
    make_job("patched", description="old text", priority=3, schedule="0 6 * * *")
    change = {"priority": 5, "description": None, "title": "Patched"}
    job = api_client.ok(api_client.patch("/api/jobs/patched", json=change))
    expected = {**PYTHON_JOB, "priority": 5, "schedule": "0 6 * * *", "title": "Patched"}
    assert job["definition"] == expected and job["title"] == "Patched"
    assert job_row(lj.db, "patched").spec == expected  # type: ignore[union-attr]
    assert [e.action for e in entries(lj.db)] == ["job.update"]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize(("change", "status", "field"), [
    ({"schedule": "61 * * * *"}, 422, "schedule"), ({"schedule": "bad"}, 422, "schedule"),
    ({"priority": "high"}, 422, "priority"), ({"surprise": True}, 422, "surprise"), ({"name": "renamed"}, 422, "name")])
def test_changing_a_job_refuses_bad_fields_and_keeps_it(api_client: ApiClient, lj: Runtime, make_job: MakeJob,
                                                        method: str, change: dict[str, Any], status: int,
                                                        field: str) -> None:
    make_job("kept", schedule="0 6 * * *")
    before = job_row(lj.db, "kept")
    body = {**PYTHON_JOB, "schedule": "0 6 * * *", **change} if method == "PUT" else change
    api_client.error(api_client.request(method, "/api/jobs/kept", json=body), status, field=field)
    after = job_row(lj.db, "kept")
    assert after is not None and before is not None and (after.spec, after.version) == (before.spec, before.version)
    assert entries(lj.db) == []


@pytest.mark.parametrize(("schedule", "message"), [
    ("61 25 * * *", "minute 61 is out of range 0–59; hour 25 is out of range 0–23"),
    ("0 0 * * */0", "day-of-week step '0' in '*/0' must be a whole number of 1 or more"),
    ("every fortnight", "'every fortnight' is not a schedule lexyjobs reads; use every 15m, every 2 hours")])
def test_a_bad_schedule_is_a_422_naming_the_cron_field(api_client: ApiClient, schedule: str, message: str) -> None:
    error = api_client.error(api_client.post("/api/jobs", json={"name": "timed", **PYTHON_JOB, "schedule": schedule}),
                             422, field="schedule")
    assert message in error["message"], error


def test_a_schedule_in_words_is_accepted_and_described(api_client: ApiClient) -> None:
    job = api_client.ok(api_client.post("/api/jobs", json={"name": "words", **PYTHON_JOB, "schedule": "every 2 hours"}),
                        201)
    assert job["definition"]["schedule"] == "every 2 hours"
    job = api_client.ok(api_client.post("/api/jobs", json={"name": "at-two", **PYTHON_JOB,
                                                           "schedule": "every day at 02:00"}), 201)
    assert job["definition"]["schedule"] == "every day at 02:00"


def test_a_masked_secret_sent_back_keeps_the_stored_value(api_client: ApiClient, lj: Runtime) -> None:
    hook = {"kind": "http", "url": "https://example.invalid/hook", "headers": {"X-Api-Key": "literal-secret-value"}}
    created = api_client.ok(api_client.post("/api/jobs", json={"name": "hook", **hook}), 201)
    shown = api_client.ok(api_client.get("/api/jobs/hook"))
    assert created["definition"]["headers"] == shown["definition"]["headers"] == {"X-Api-Key": "****"}
    assert "literal-secret-value" not in api_client.get("/api/jobs").get_data(as_text=True)
    definition = {**shown["definition"], "description": "edited"}
    api_client.ok(api_client.put("/api/jobs/hook", json=definition))
    assert job_row(lj.db, "hook").spec["headers"] == {"X-Api-Key": "literal-secret-value"}  # type: ignore[union-attr]
    api_client.ok(api_client.patch("/api/jobs/hook", json={"headers": {"X-Api-Key": "****", "X-Trace": "on"}}))
    assert job_row(lj.db, "hook").spec["headers"] == {  # type: ignore[union-attr]
        "X-Api-Key": "literal-secret-value", "X-Trace": "on"}
    api_client.ok(api_client.patch("/api/jobs/hook", json={"headers": {"X-Api-Key": "a-new-secret"}}))
    assert job_row(lj.db, "hook").spec["headers"] == {"X-Api-Key": "a-new-secret"}  # type: ignore[union-attr]


def test_environment_references_are_shown_unexpanded(api_client: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXY_API_TEST_HOST", "internal-host.example")
    monkeypatch.setenv("LEXY_API_TEST_TOKEN", "expanded-token-value")
    definition = {"kind": "http", "url": "https://${LEXY_API_TEST_HOST}/hook",
                  "headers": {"Authorization": "Bearer ${LEXY_API_TEST_TOKEN}"}}
    api_client.ok(api_client.post("/api/jobs", json={"name": "env-hook", **definition}), 201)
    for response in (api_client.get("/api/jobs/env-hook"), api_client.get("/api/jobs")):
        text = response.get_data(as_text=True)
        assert "internal-host.example" not in text and "expanded-token-value" not in text
    assert api_client.ok(api_client.get("/api/jobs/env-hook"))["definition"] == definition


@pytest.fixture(params=["code", "file"])
def read_only_job(request: pytest.FixtureRequest, lj: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  make_api_app: Callable[..., Flask]) -> str:
    """A job defined in code (@job) or in a jobs file, synced into the database."""
    if request.param == "code":
        monkeypatch.setattr(code_jobs, "_CODE_JOBS", {})  # a private registry: nothing leaks into other tests
        code_jobs.job("from-code")(jobfuncs.code_job_target)
        registry.sync_jobs(lj.db, jobs_file=None)
        return "from-code"
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[jobs.from-file]\nkind = "shell"\nargv = ["true"]\n', encoding="utf-8")
    make_api_app(jobs_file=str(jobs_file))
    return "from-file"


def test_code_and_file_jobs_are_read_only(api_client: ApiClient, lj: Runtime, read_only_job: str) -> None:
    before = job_row(lj.db, read_only_job)
    assert before is not None and before.source in ("code", "file")
    listed = api_client.ok(api_client.get(f"/api/jobs/{read_only_job}"))
    assert listed["editable"] is False
    for method in ("PUT", "PATCH", "DELETE"):
        body = {**listed["definition"], "description": "edited"} if method != "DELETE" else None
        api_client.error(api_client.request(method, f"/api/jobs/{read_only_job}", json=body), 409, "read_only_job")
    after = job_row(lj.db, read_only_job)
    assert after is not None and (after.spec, after.version) == (before.spec, before.version)
    api_client.ok(api_client.post(f"/api/jobs/{read_only_job}/run", role="operator"), 202)  # but it can be run


def test_deleting_a_job_removes_it_and_its_runs(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("doomed")
    run_id = runs.enqueue(lj.db, "doomed")
    assert api_client.ok(api_client.delete("/api/jobs/doomed"), 204) is None
    assert job_row(lj.db, "doomed") is None
    api_client.error(api_client.get(f"/api/runs/{run_id}"), 404, "not_found")
    entry = entries(lj.db, "job.delete")[0]
    assert (entry.actor, entry.target) == ("token:ci-admin", "doomed")


def test_deleting_an_upstream_job_is_a_conflict(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("upstream")
    make_job("downstream", depends_on=["upstream"])
    error = api_client.error(api_client.delete("/api/jobs/upstream"), 409, "conflict")
    assert error["details"]["dependents"] == ["downstream"]
    assert job_row(lj.db, "upstream") is not None


# ---------------------------------------------------------------- run now, pause, resume


def test_running_a_job_enqueues_an_api_run_and_answers_where_to_follow_it(api_client: ApiClient, lj: Runtime,
                                                                          make_job: MakeJob) -> None:
    make_job("on-demand")
    response = api_client.post("/api/jobs/on-demand/run", role="operator")
    accepted = api_client.ok(response, 202)
    assert set(accepted) == {"run_id", "status", "status_url", "existing"} and accepted["status"] == "queued"
    assert accepted["existing"] is False
    assert accepted["status_url"] == f"/api/runs/{accepted['run_id']}" == response.headers["Location"]
    run = api_client.ok(api_client.get(accepted["status_url"], role="viewer"))
    assert (run["id"], run["status"], run["trigger"], run["created_by"]) == (
        accepted["run_id"], "queued", "api", "token:ci-operator")
    stored = runs.get_run(lj.db, accepted["run_id"])
    assert (stored.job_name, stored.trigger, stored.created_by, stored.params) == (
        "on-demand", "api", "token:ci-operator", {})
    entry = entries(lj.db, "run.create")[0]
    assert (entry.actor, entry.target, entry.client, entry.details) == (
        "token:ci-operator", "on-demand", "127.0.0.1", {"run_id": accepted["run_id"]})


def test_running_a_job_validates_params_against_its_schema(api_client: ApiClient, lj: Runtime,
                                                           make_job: MakeJob) -> None:
    make_job("typed", params={"n": {"type": "integer", "required": True, "max": 5}, "who": "world"})
    accepted = api_client.ok(api_client.post("/api/jobs/typed/run", json={"params": {"n": 3}, "priority": 7}), 202)
    stored = runs.get_run(lj.db, accepted["run_id"])
    assert (stored.params, stored.priority) == ({"n": 3, "who": "world"}, 7)
    for params, name in [({"n": 9}, "n"), ({}, "n"), ({"n": "three"}, "n"), ({"n": 1, "extra": 1}, "extra")]:
        error = api_client.error(api_client.post("/api/jobs/typed/run", json={"params": params}), 422, "invalid_params")
        assert f"param '{name}'" in error["message"] and name in error["details"]
    assert [r.id for r in runs_of(lj.db, "typed")] == [accepted["run_id"]]


@pytest.mark.parametrize(("run_at", "timezone_name", "expected"), [
    ("2099-01-01T09:30:00+00:00", "UTC", datetime(2099, 1, 1, 9, 30, tzinfo=timezone.utc)),
    ("2099-01-01T09:30:00Z", "UTC", datetime(2099, 1, 1, 9, 30, tzinfo=timezone.utc)),
    ("2099-06-01T09:30", "Europe/Paris", datetime(2099, 6, 1, 7, 30, tzinfo=timezone.utc))])
def test_run_at_in_the_future_delays_the_run(api_client: ApiClient, lj: Runtime, make_job: MakeJob, run_at: str,
                                             timezone_name: str, expected: datetime) -> None:
    make_job("later", timezone=timezone_name)
    accepted = api_client.ok(api_client.post("/api/jobs/later/run", role="operator", json={"run_at": run_at}), 202)
    assert runs.get_run(lj.db, accepted["run_id"]).scheduled_for == expected
    run = api_client.ok(api_client.get(accepted["status_url"]))
    assert datetime.fromisoformat(run["scheduled_for"]) == expected


@pytest.mark.parametrize(("body", "field"), [
    ({"priority": "high"}, "priority"), ({"priority": 11}, "priority"), ({"priority": -1}, "priority"),
    ({"priority": True}, "priority"), ({"priority": 2.5}, "priority"), ({"params": ["a"]}, "params"),
    ({"params": "n=1"}, "params"), ({"run_at": "tomorrow"}, "run_at"), ({"run_at": 1700000000}, "run_at"),
    ({"when": "now"}, "when"), ({"priority": None}, "priority"), ({"params": None}, "params"), ({"run_at": ""}, "run_at")],
    ids=lambda v: v if isinstance(v, str) else None)
def test_running_a_job_refuses_bad_fields_naming_them(api_client: ApiClient, lj: Runtime, make_job: MakeJob,
                                                      body: dict[str, Any], field: str) -> None:
    make_job("strict")
    api_client.error(api_client.post("/api/jobs/strict/run", json=body), 422, "invalid_field", field=field)
    assert runs_of(lj.db, "strict") == [] and entries(lj.db) == []


def test_pausing_and_resuming_a_job_changes_its_schedule_and_is_audited(api_client: ApiClient, lj: Runtime,
                                                                        make_job: MakeJob) -> None:
    make_job("toggled", schedule="*/10 * * * *")
    paused = api_client.ok(api_client.post("/api/jobs/toggled/pause", role="operator"))
    assert (paused["enabled"], paused["next_fire"]) == (False, None)
    assert job_row(lj.db, "toggled").enabled is False  # type: ignore[union-attr]
    accepted = api_client.ok(api_client.post("/api/jobs/toggled/run", role="operator"), 202)  # still runs by hand
    assert runs.get_run(lj.db, accepted["run_id"]).status == RunStatus.QUEUED
    resumed = api_client.ok(api_client.post("/api/jobs/toggled/resume", role="operator"))
    assert resumed["enabled"] is True and resumed["next_fire"] is not None
    assert job_row(lj.db, "toggled").enabled is True  # type: ignore[union-attr]
    assert [(e.action, e.actor, e.target) for e in entries(lj.db) if e.action.startswith("job.")] == [
        ("job.resume", "token:ci-operator", "toggled"), ("job.pause", "token:ci-operator", "toggled")]
