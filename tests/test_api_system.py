"""The JSON API as a whole: every registered /api route is tested and documented, who may call
what (no token, bad or revoked tokens, a panel session, LEXYJOBS_API_TOKEN, each role), the
body limits and malformed bodies every writing route refuses, and the system routes /api/stats,
/api/health, /api/audit, /api/me and /api/openapi.json. Jobs routes: test_api_jobs.py; runs
routes: test_api_runs.py."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Callable

import pytest
import test_api_backfills
import test_api_jobs
import test_api_queues
import test_api_runs
from conftest import API_ROLES, ApiClient, drive_run, json_schema_errors, openapi_path
from flask import Flask
from sqlalchemy import func, select

from lexyjobs import accounts, audit, backfill, runs, store
from lexyjobs.alerts import history
from lexyjobs.db import Database, utcnow
from lexyjobs.models import AuditEntry, Run
from lexyjobs.runtime import Runtime
from lexyjobs.states import RunStatus

ROUTES = {("GET", "/api/llm/usage"), ("GET", "/api/stats"), ("GET", "/api/health"), ("GET", "/api/workers"), ("GET", "/api/alerts"),
          ("GET", "/api/audit"), ("GET", "/api/me"), ("GET", "/api/openapi.json")}
PYTHON_JOB = {"kind": "python", "func": "jobfuncs:noop"}

# The least role each route needs (routes as OpenAPI paths), and a request that succeeds with it on
# the `world` fixture ({queued} / {failed} stand for run ids). A new route without an entry fails
# the first test.
ROUTE_CASES: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("GET", "/api/jobs"): ("viewer", "/api/jobs", None),
    ("POST", "/api/jobs"): ("admin", "/api/jobs", {"name": "fresh", **PYTHON_JOB}),
    ("GET", "/api/jobs/{name}"): ("viewer", "/api/jobs/sample", None),
    ("PUT", "/api/jobs/{name}"): ("admin", "/api/jobs/sample", {**PYTHON_JOB, "description": "changed"}),
    ("PATCH", "/api/jobs/{name}"): ("admin", "/api/jobs/sample", {"description": "changed"}),
    ("DELETE", "/api/jobs/{name}"): ("admin", "/api/jobs/sample", None),
    ("POST", "/api/jobs/{name}/run"): ("operator", "/api/jobs/sample/run", {}),
    ("POST", "/api/jobs/{name}/backfill"): ("operator", "/api/jobs/sample/backfill",
                                            {"start": "2026-11-01T00:00:00Z", "end": "2026-11-03T00:00:00Z"}),
    ("GET", "/api/backfills/{backfill_id}"): ("viewer", "/api/backfills/{backfill}", None),
    ("POST", "/api/backfills/{backfill_id}/cancel"): ("operator", "/api/backfills/{backfill}/cancel", None),
    ("POST", "/api/jobs/{name}/pause"): ("operator", "/api/jobs/sample/pause", None),
    ("POST", "/api/jobs/{name}/resume"): ("operator", "/api/jobs/sample/resume", None),
    ("GET", "/api/runs"): ("viewer", "/api/runs", None),
    ("GET", "/api/runs/{run_id}"): ("viewer", "/api/runs/{queued}", None),
    ("POST", "/api/runs/{run_id}/cancel"): ("operator", "/api/runs/{queued}/cancel", None),
    ("POST", "/api/runs/{run_id}/retry"): ("operator", "/api/runs/{failed}/retry", None),
    ("GET", "/api/runs/{run_id}/log"): ("viewer", "/api/runs/{queued}/log", None),
    ("GET", "/api/runs/{run_id}/items"): ("viewer", "/api/runs/{failed}/items", None),
    ("GET", "/api/llm/usage"): ("viewer", "/api/llm/usage", None),
    ("GET", "/api/queues"): ("viewer", "/api/queues", None),
    ("POST", "/api/queues/{name}/pause"): ("operator", "/api/queues/default/pause", None),
    ("POST", "/api/queues/{name}/resume"): ("operator", "/api/queues/default/resume", None),
    ("POST", "/api/categories/{category}/pause"): ("operator", "/api/categories/General/pause", None),
    ("POST", "/api/categories/{category}/resume"): ("operator", "/api/categories/General/resume", None),
    ("GET", "/api/stats"): ("viewer", "/api/stats", None),
    ("GET", "/api/health"): ("viewer", "/api/health", None),
    ("GET", "/api/workers"): ("viewer", "/api/workers", None),
    ("GET", "/api/alerts"): ("viewer", "/api/alerts", None),
    ("GET", "/api/audit"): ("admin", "/api/audit", None),
    ("GET", "/api/me"): ("viewer", "/api/me", None),
    ("GET", "/api/openapi.json"): ("viewer", "/api/openapi.json", None),
}
FORBIDDEN_CASES = [(route, role) for route, (needed, _, _) in ROUTE_CASES.items()
                   for role in API_ROLES[:API_ROLES.index(needed)]]
BODY_ROUTES = [("POST", "/api/jobs"), ("PUT", "/api/jobs/{name}"), ("PATCH", "/api/jobs/{name}"),  # they read JSON
               ("POST", "/api/jobs/{name}/run"), ("POST", "/api/runs/{run_id}/cancel"),
               ("POST", "/api/runs/{run_id}/retry"), ("POST", "/api/jobs/{name}/backfill")]


def api_routes(app: Flask) -> set[tuple[str, str]]:
    """The registered /api routes as (method, OpenAPI path)."""
    return {(method, openapi_path(rule.rule)) for rule in app.url_map.iter_rules() if rule.rule.startswith("/api")
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}


@pytest.fixture
def world(lj: Runtime, make_job: Callable[..., str]) -> dict[str, int]:
    """Job ``sample`` (scheduled daily) with a queued run and a failed one."""
    make_job("sample", schedule="0 6 * * *")
    queued = runs.enqueue(lj.db, "sample")
    failed = runs.enqueue(lj.db, "sample")
    drive_run(lj.db, failed, RunStatus.FAILED, error="it broke")
    earlier = backfill.start(lj.db, "sample", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC))
    return {"queued": queued, "failed": failed, "backfill": earlier.backfill_id}


def send(api_client: ApiClient, route: tuple[str, str], world: dict[str, int], role: str | None, **kwargs: Any) -> Any:
    _, path, body = ROUTE_CASES[route]
    extra = {"json": body} if body is not None else {}
    return api_client.request(route[0], path.format(**world), role=role, **extra, **kwargs)


def snapshot(db: Database) -> tuple[Any, ...]:
    """Everything a refused request must leave alone."""
    with db.read() as session:
        jobs = sorted((j.name, j.enabled, j.version, j.spec) for j in store.list_jobs(session, include_archived=True))
        all_runs = [(r.id, r.status, r.cancel_requested) for r in session.scalars(select(Run).order_by(Run.id))]
        entries = session.scalar(select(func.count()).select_from(AuditEntry))
    return jobs, all_runs, entries


# ---------------------------------------------------------------- coverage and the document


def test_every_registered_api_route_has_tests_and_a_role_case(app: Flask) -> None:
    registered = api_routes(app)
    assert (test_api_jobs.ROUTES | test_api_runs.ROUTES | test_api_queues.ROUTES | test_api_backfills.ROUTES
            | ROUTES == registered)
    assert set(ROUTE_CASES) == registered


def test_the_openapi_document_lists_exactly_the_registered_routes(api_client: ApiClient) -> None:
    document = api_client.ok(api_client.get("/api/openapi.json", role="viewer"))
    assert document["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    assert documented == api_routes(api_client.app)


def test_every_reference_in_the_openapi_document_resolves(api_client: ApiClient) -> None:
    document = api_client.document
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs and refs <= set(document["components"]["schemas"])


def test_response_bodies_are_checked_against_the_document(api_client: ApiClient) -> None:
    """The schema check used by every happy path can fail: a wrong body is reported."""
    document = api_client.document
    me = document["paths"]["/api/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    schema = {**me, "components": document["components"]}
    errors = json_schema_errors(schema, {"name": "x", "role": "superuser", "kind": "token"})
    if errors is None:
        pytest.skip("no JSON Schema validator installed (jsonschema or jsonschema_rs)")
    assert errors and "superuser" in errors[0]
    assert json_schema_errors(schema, {"name": "x", "role": "viewer", "kind": "token"}) == []


# ---------------------------------------------------------------- who may call what


@pytest.mark.parametrize("route", list(ROUTE_CASES), ids=" ".join)
def test_each_route_answers_the_least_role_it_needs(api_client: ApiClient, world: dict[str, int],
                                                    route: tuple[str, str]) -> None:
    role = ROUTE_CASES[route][0]
    response = send(api_client, route, world, role)
    assert 200 <= response.status_code < 300, (response.status_code, response.get_data(as_text=True))
    api_client.ok(response, response.status_code)


@pytest.mark.parametrize("route", list(ROUTE_CASES), ids=" ".join)
def test_each_route_refuses_a_request_without_a_token(api_client: ApiClient, lj: Runtime, world: dict[str, int],
                                                      route: tuple[str, str]) -> None:
    before = snapshot(lj.db)
    response = send(api_client, route, world, None)
    api_client.error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="lexyjobs"'
    assert snapshot(lj.db) == before


@pytest.mark.parametrize(("route", "role"), FORBIDDEN_CASES,
                         ids=[f"{' '.join(route)} as {role}" for route, role in FORBIDDEN_CASES])
def test_each_route_refuses_a_role_below_the_one_it_needs(api_client: ApiClient, lj: Runtime, world: dict[str, int],
                                                          route: tuple[str, str], role: str) -> None:
    before = snapshot(lj.db)
    error = api_client.error(send(api_client, route, world, role), 403, "forbidden")
    assert error["details"] == {"required_role": ROUTE_CASES[route][0], "role": role}
    assert snapshot(lj.db) == before


@pytest.mark.parametrize("header", ["Bearer lxj_no-such-token-0123456789abcdefghijklmnopq", "Bearer not-a-token",
                                    "Bearer ", "Basic Y2k6c2VjcmV0", "lxj_token-without-scheme"])
def test_an_unknown_or_malformed_token_is_refused(api_client: ApiClient, header: str) -> None:
    response = api_client.get("/api/me", role=None, headers={"Authorization": header})
    api_client.error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="lexyjobs"'


def test_a_revoked_token_is_refused(api_client: ApiClient, lj: Runtime, world: dict[str, int]) -> None:
    token = accounts.create_token(lj.db, "short-lived", "operator")
    assert api_client.ok(api_client.get("/api/me", token=token))["name"] == "short-lived"
    accounts.revoke_token(lj.db, "short-lived")
    before = snapshot(lj.db)
    error = api_client.error(api_client.post("/api/jobs/sample/run", token=token), 401, "unauthorized")
    assert "revoked" in error["message"]
    assert snapshot(lj.db) == before


def test_a_logged_in_panel_session_does_not_authorize_the_api(api_client: ApiClient, lj: Runtime,
                                                              world: dict[str, int]) -> None:
    accounts.add_user(lj.db, "root", "correct-horse-battery", "admin")
    page = api_client.client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    login = api_client.client.post("/login", data={"csrf_token": csrf.group(1), "username": "root",
                                                   "password": "correct-horse-battery", "next": "/"})
    assert login.status_code == 302
    overview = api_client.client.get("/")
    assert overview.status_code == 200  # the session works for the panel
    session_csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', overview.get_data(as_text=True))
    assert session_csrf is not None
    before = snapshot(lj.db)
    api_client.error(api_client.get("/api/me", role=None), 401, "unauthorized")
    with_csrf = {"X-CSRF-Token": session_csrf.group(1)}
    api_client.error(api_client.post("/api/jobs/sample/run", role=None, headers=with_csrf), 401, "unauthorized")
    assert snapshot(lj.db) == before


def test_the_environment_api_token_is_an_admin_token(api_client: ApiClient, lj: Runtime,
                                                     make_api_app: Callable[..., Flask]) -> None:
    env_token = "env-admin-token-0123456789"
    api_client.error(api_client.get("/api/me", token=env_token), 401)  # not configured on this app
    with_env = api_client.on(make_api_app(api_token=env_token))
    assert with_env.ok(with_env.get("/api/me", token=env_token)) == {
        "name": "LEXYJOBS_API_TOKEN", "role": "admin", "kind": "token"}
    with_env.ok(with_env.post("/api/jobs", token=env_token, json={"name": "by-env", **PYTHON_JOB}), 201)
    entry = audit.search(lj.db, action="job.create").entries[0]
    assert (entry.actor, entry.target) == ("token:LEXYJOBS_API_TOKEN", "by-env")
    with_env.error(with_env.get("/api/me", token=env_token[:-1]), 401, "unauthorized")


def test_a_token_records_when_it_was_last_used(api_client: ApiClient, lj: Runtime) -> None:
    def last_used() -> Any:
        return {t.name: t.last_used_at for t in accounts.list_tokens(lj.db)}["tracked"]
    token = accounts.create_token(lj.db, "tracked", "viewer")
    assert last_used() is None
    before = utcnow()
    api_client.ok(api_client.get("/api/me", token=token))
    first = last_used()
    assert first is not None and before <= first <= utcnow()
    api_client.ok(api_client.get("/api/me", token=token))
    assert last_used() == first  # written at most once a minute


# ---------------------------------------------------------------- what every route refuses


def test_an_unknown_api_path_is_a_json_404(api_client: ApiClient) -> None:
    for role in ("admin", None):
        api_client.error(api_client.get("/api/no-such-thing", role=role), 404, "not_found")
    api_client.error(api_client.get("/api/jobs/sample/runs"), 404, "not_found")
    api_client.error(api_client.get("/api/runs/abc"), 404, "not_found")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/api/runs", {"GET"}), ("PUT", "/api/jobs", {"GET", "POST"}), ("GET", "/api/jobs/sample/run", {"POST"}),
    ("POST", "/api/stats", {"GET"}), ("PATCH", "/api/runs/1/cancel", {"POST"})])
def test_a_wrong_method_is_a_json_405_listing_the_allowed_ones(api_client: ApiClient, method: str, path: str,
                                                               allowed: set[str]) -> None:
    response = api_client.request(method, path)
    api_client.error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["Allow"].split(",")} - {"HEAD", "OPTIONS"} == allowed


@pytest.mark.parametrize("route", BODY_ROUTES, ids=" ".join)
@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', '{"a": NaN}', "\xc3\x28"],
                         ids=["malformed", "array", "string", "nan", "not-utf8"])
def test_every_route_with_a_body_refuses_what_is_not_a_json_object(api_client: ApiClient, lj: Runtime,
                                                                   world: dict[str, int], route: tuple[str, str],
                                                                   raw: str) -> None:
    before = snapshot(lj.db)
    path = ROUTE_CASES[route][1].format(**world)
    response = api_client.request(route[0], path, data=raw.encode("latin-1"), content_type="application/json")
    api_client.error(response, 400, "bad_request", field="body")
    assert snapshot(lj.db) == before


@pytest.mark.parametrize("route", BODY_ROUTES, ids=" ".join)
def test_every_route_with_a_body_refuses_one_over_the_size_limit(api_client: ApiClient, lj: Runtime,
                                                                 world: dict[str, int], route: tuple[str, str],
                                                                 make_api_app: Callable[..., Flask]) -> None:
    small = api_client.on(make_api_app(max_body=2048))
    before = snapshot(lj.db)
    path = ROUTE_CASES[route][1].format(**world)
    body = '{"description": "' + "x" * 3000 + '"}'
    small.error(small.request(route[0], path, data=body, content_type="application/json"), 413,
                "request_entity_too_large")
    assert snapshot(lj.db) == before


@pytest.mark.parametrize(("path", "arg"), [("/api/runs", "q"), ("/api/runs", "job"), ("/api/runs", "category"),
                                         ("/api/jobs", "category"), ("/api/audit", "actor"), ("/api/audit", "target")])
def test_a_nul_character_in_a_query_argument_is_refused_naming_it(api_client: ApiClient, world: dict[str, int],
                                                                  path: str, arg: str) -> None:
    """Postgres text cannot hold NUL: the API refuses it up front on both databases."""
    api_client.error(api_client.get(path, query_string={arg: "sam\x00ple"}), 400, "bad_request", field=arg)


def test_a_nul_character_in_a_body_or_job_name_never_reaches_the_database(api_client: ApiClient, lj: Runtime,
                                                                          world: dict[str, int]) -> None:
    before = snapshot(lj.db)
    response = api_client.post("/api/jobs", json={"name": "nul", **PYTHON_JOB, "description": "a\x00b"})
    api_client.error(response, 422, field="description")
    api_client.error(api_client.patch("/api/jobs/sample", json={"title": "\x00"}), 422, field="title")
    api_client.error(api_client.post("/api/jobs/sample/run", json={"params": {"who\x00": 1}}), 422)
    api_client.error(api_client.get("/api/jobs/sam%00ple"), 404, "not_found")
    api_client.error(api_client.post("/api/jobs/sam%00ple/run"), 404, "not_found")
    assert snapshot(lj.db) == before


# ---------------------------------------------------------------- system routes


def test_me_tells_who_the_token_belongs_to(api_client: ApiClient) -> None:
    for role in API_ROLES:
        me = api_client.ok(api_client.get("/api/me", role=role))
        assert me == {"name": f"ci-{role}", "role": role, "kind": "token"}


def test_stats_count_runs_queue_last_day_and_jobs(api_client: ApiClient, lj: Runtime,
                                                  make_job: Callable[..., str]) -> None:
    base = api_client.ok(api_client.get("/api/stats", role="viewer"))["jobs"]
    make_job("scheduled", schedule="*/5 * * * *", max_concurrency=0)
    make_job("paused", enabled=False)
    ok, bad, running, due = (runs.enqueue(lj.db, "scheduled") for _ in range(4))
    later = runs.enqueue(lj.db, "scheduled", scheduled_for=utcnow() + timedelta(days=365))
    drive_run(lj.db, ok, RunStatus.SUCCEEDED, queued_for=5.0, ran_for=2.5)
    drive_run(lj.db, bad, RunStatus.FAILED, queued_for=1.0, ran_for=0.5)
    drive_run(lj.db, running, RunStatus.RUNNING)
    assert runs.get_run(lj.db, later).scheduled_for > utcnow() >= runs.get_run(lj.db, due).scheduled_for
    stats = api_client.ok(api_client.get("/api/stats", role="viewer"))
    assert stats["runs"] == {"total": 5, "queued": 2, "running": 1, "succeeded": 1, "failed": 1, "canceled": 0,
                             "blocked": 0, "skipped": 0}
    queue = stats["queue"]
    assert (queue["queued_due"], queue["running"]) == (1, 1)  # the run due in a year is not counted
    assert queue["oldest_queued_seconds"] >= 0
    assert queue["last_24h"] == {"finished": 2, "succeeded": 1, "failed": 1, "failure_rate": 0.5,
                                 "avg_queue_seconds": 3.0, "avg_processing_seconds": 1.5}
    assert stats["jobs"] == {"total": base["total"] + 2, "paused": base["paused"] + 1,
                             "scheduled": base["scheduled"] + 1}


def test_health_reports_each_job_and_the_counts_per_state(api_client: ApiClient, lj: Runtime,
                                                          make_job: Callable[..., str]) -> None:
    for name in ("green", "red", "busy", "new"):
        make_job(name, title=name.title(), category="Health")
    drive_run(lj.db, runs.enqueue(lj.db, "green"), RunStatus.SUCCEEDED, queued_for=0, ran_for=0)
    drive_run(lj.db, runs.enqueue(lj.db, "red"), RunStatus.FAILED, queued_for=0, ran_for=0, error="exploded")
    drive_run(lj.db, runs.enqueue(lj.db, "busy"), RunStatus.RUNNING, queued_for=0)
    report = api_client.ok(api_client.get("/api/health", role="viewer"))
    assert report["status"] == "ok"
    assert report["checks"] == {"database": True, "worker": None, "scheduler": None}
    assert report["counts"] == {"ok": 1, "warning": 1, "error": 1, "unknown": 1}
    states = {j["name"]: (j["state"], j["title"], j["category"]) for j in report["jobs"]}
    assert states == {"green": ("ok", "Green", "Health"), "red": ("error", "Red", "Health"),
                      "busy": ("warning", "Busy", "Health"), "new": ("unknown", "New", "Health")}
    assert [j["name"] for j in report["jobs"]] == sorted(states)
    assert "exploded" in next(j["reason"] for j in report["jobs"] if j["name"] == "red")


def test_the_audit_log_lists_actions_newest_first_with_filters_and_pages(api_client: ApiClient, lj: Runtime,
                                                                         world: dict[str, int]) -> None:
    started = utcnow()
    api_client.ok(api_client.post("/api/jobs/sample/run", role="operator"), 202)
    api_client.ok(api_client.post("/api/jobs/sample/pause", role="operator"))
    middle = utcnow()
    api_client.ok(api_client.post(f"/api/runs/{world['queued']}/cancel", role="admin"))
    api_client.ok(api_client.post("/api/jobs/sample/resume", role="admin"))
    listing = api_client.ok(api_client.get("/api/audit"))
    assert [(e["actor"], e["action"], e["target"]) for e in listing["entries"]] == [
        ("token:ci-admin", "job.resume", "sample"), ("token:ci-admin", "run.cancel", str(world["queued"])),
        ("token:ci-operator", "job.pause", "sample"), ("token:ci-operator", "run.create", "sample")]
    assert {e["client"] for e in listing["entries"]} == {"127.0.0.1"}
    assert listing["entries"][1]["details"] == {"outcome": "canceled"}
    assert listing["pagination"] == {"page": 1, "limit": 50, "total": 4, "pages": 1}

    def actions(**query: Any) -> list[str]:
        return [e["action"] for e in api_client.ok(api_client.get("/api/audit", query_string=query))["entries"]]
    assert actions(actor="token:ci-operator") == ["job.pause", "run.create"]
    assert actions(action="job.pause") == ["job.pause"]
    assert actions(target="sample", actor="token:ci-admin") == ["job.resume"]
    assert actions(since=middle.isoformat()) == ["job.resume", "run.cancel"]
    assert actions(until=middle.isoformat(), since=started.isoformat()) == ["job.pause", "run.create"]
    page = api_client.ok(api_client.get("/api/audit", query_string={"limit": 3, "page": 2}))
    assert [e["action"] for e in page["entries"]] == ["run.create"]
    assert page["pagination"] == {"page": 2, "limit": 3, "total": 4, "pages": 2}


@pytest.mark.parametrize(("arg", "value"), [("page", "0"), ("limit", "201"), ("limit", "abc"), ("since", "notadate"),
                                            ("until", "2025-13-01"), ("actor", "x" * 201)])
def test_the_audit_log_refuses_bad_query_arguments(api_client: ApiClient, arg: str, value: str) -> None:
    api_client.error(api_client.get("/api/audit", query_string={arg: value}), 400, "bad_request", field=arg)


def test_a_list_argument_naming_a_value_twice_is_refused(api_client: ApiClient) -> None:
    """Every event listed once fits the 200-character limit of a query argument; a list that
    repeats one could pass it, so the API refuses repeats (the document says ``uniqueItems``)."""
    every = ",".join(history.EVENTS)
    assert api_client.get(f"/api/alerts?event={every}", role="viewer").status_code == 200
    api_client.error(api_client.get("/api/alerts?event=failed,stale,failed", role="viewer"), 400, field="event")
    api_client.error(api_client.get("/api/runs?status=queued,queued", role="viewer"), 400, field="status")
