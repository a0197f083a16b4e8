"""Shared fixtures. Every storage test runs twice: on a temp SQLite file and on Postgres
(``LEXYJOBS_TEST_POSTGRES_URL``, one fresh schema per test); without that variable the Postgres
variants skip with the reason. In CI (``CI=true``) a missing Postgres fails instead."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import create_engine, text

from lexyjobs import create_app, registry, run_counts
from lexyjobs.db import Database
from lexyjobs.registry import JobCatalog
from lexyjobs.runtime import Runtime
from lexyjobs.worker import Worker

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PG_ENV = "LEXYJOBS_TEST_POSTGRES_URL"
TEST_SECRET_KEY = "test-only-secret-key-0123456789abcdef"
FAST = {"poll_interval": 0.05, "heartbeat_interval": 0.2, "stale_after": 2.0, "shutdown_grace": 2.0,
        "kill_grace": 1.0}


def postgres_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _pg_or_skip() -> str:
    url = postgres_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set in CI")
        pytest.skip(f"Postgres tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return url


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A Postgres URL whose search_path is a fresh, empty schema (dropped afterwards)."""
    base = _pg_or_skip().replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(autouse=True)
def _code_jobs_restored() -> Iterator[None]:
    """``@job`` declarations made during a test (importing a module that declares jobs, such as
    the example host app) are forgotten after it, so no later app syncs them."""
    from lexyjobs import code_jobs

    declared, before = code_jobs._CODE_JOBS, dict(code_jobs._CODE_JOBS)
    yield
    code_jobs._CODE_JOBS = declared
    declared.clear()
    declared.update(before)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: a temp SQLite file, then a fresh Postgres schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def app_config(db_url: str, tmp_path: Path) -> dict[str, Any]:
    return {"database_url": db_url, "jobs_file": None, "workers": 4, "data_dir": str(tmp_path), **FAST}


@pytest.fixture
def app(app_config: dict[str, Any]):  # type: ignore[no-untyped-def]
    application = create_app(app_config)
    yield application
    application.extensions["lexyjobs"].db.dispose()


@pytest.fixture
def lj(app) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    """The app's Runtime with the schema migrated (no threads started). After the test, the run
    counters (lexyjobs.run_counts) must still agree with the runs: every test that writes runs
    checks that each path it took kept them."""
    lexy: Runtime = app.extensions["lexyjobs"]
    lexy.prepare()
    yield lexy
    assert_counts_agree(lexy.db)


def assert_counts_agree(db: Database) -> None:
    """The counters equal a count of the runs (a few tries: a thread of the test may still be
    finishing a transaction). A test whose schema no longer has the counters is left alone."""
    from sqlalchemy import inspect

    if not inspect(db.engine).has_table("run_counts"):
        return
    for _ in range(20):
        with db.read() as session:
            found = run_counts.drift(session)
        if not found:
            return
        time.sleep(0.1)
    raise AssertionError(f"run counters drifted from the runs ((job, status): (counted, actual)): {found}")


@pytest.fixture
def db(lj: Runtime):  # type: ignore[no-untyped-def]
    return lj.db


@pytest.fixture
def make_job(lj: Runtime) -> Callable[..., str]:
    """Create a database job: ``make_job("name", kind="python", func="jobfuncs:noop", ...)``."""
    def make(name: str, **fields: Any) -> str:
        fields.setdefault("kind", "python")
        if fields["kind"] == "python":
            fields.setdefault("func", "jobfuncs:noop")
        registry.create_job(lj.db, name, fields)
        return name
    return make


@pytest.fixture
def start_worker(lj: Runtime) -> Iterator[Callable[..., Worker]]:
    """Start in-process workers (fast intervals); they are stopped after the test."""
    started: list[Worker] = []

    def start(name: str | None = None, **overrides: Any) -> Worker:
        settings = dataclasses.replace(lj.settings, **overrides)
        worker = Worker(lj.db, settings, JobCatalog(lj.db), name=name or f"test:{len(started)}")
        worker.start()
        started.append(worker)
        return worker
    yield start
    for worker in started:
        if not worker.pool.closed.is_set():
            worker.stop(grace=0)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def subprocess_env(db_url: str, **extra: str) -> dict[str, str]:
    """Environment for a child lexyjobs process on ``db_url`` that can import tests/jobfuncs.py."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEXYJOBS_")}
    env.update({"LEXYJOBS_DATABASE_URL": db_url, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
                "PYTHONUNBUFFERED": "1", "LEXYJOBS_SECRET_KEY": TEST_SECRET_KEY, **extra})
    return env


PYTHON = sys.executable


# ---------------------------------------------------------------- JSON API (tests/test_api_*.py)

from datetime import timedelta  # noqa: E402

from flask import Flask  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402
from werkzeug.test import TestResponse  # noqa: E402

from lexyjobs import accounts, runs  # noqa: E402
from lexyjobs.states import INCREMENT, TERMINAL, RunStatus, transition, transition_many  # noqa: E402

API_ROLES = ("viewer", "operator", "admin")


def json_schema_errors(schema: dict[str, Any], instance: Any) -> list[str] | None:
    """What is wrong with ``instance`` under JSON Schema 2020-12 ``schema`` (``$ref`` resolved
    inside ``schema``), or None when no validator is installed (``jsonschema``, else
    ``jsonschema_rs``, which schemathesis brings along)."""
    try:
        import jsonschema
    except ImportError:
        try:
            import jsonschema_rs
        except ImportError:
            return None
        checker = jsonschema_rs.validator_for(schema, validate_formats=True)
        return [f"{e.message} at {list(e.instance_path)}" for e in checker.iter_errors(instance)]
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(instance)]


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/api/runs/<int:run_id>`` → ``/api/runs/{run_id}``."""
    import re
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


class ApiClient:
    """The Flask test client speaking to ``/api`` as a persona: ``api_client.post(path, role="operator",
    json=...)`` sends that role's bearer token (``role=None``: no Authorization header; ``token=``:
    that exact token). ``ok()`` and ``error()`` check a response against the OpenAPI document."""

    def __init__(self, app: Flask, tokens: dict[str, str]) -> None:
        self.app, self.tokens = app, tokens
        self.client = app.test_client()
        self._document: dict[str, Any] | None = None

    def on(self, app: Flask) -> "ApiClient":
        """The same personas on another app (same database)."""
        return ApiClient(app, self.tokens)

    def request(self, method: str, path: str, *, role: str | None = "admin", token: str | None = None,
                **kwargs: Any) -> TestResponse:
        headers = dict(kwargs.pop("headers", None) or {})
        bearer = token if token is not None else (self.tokens[role] if role is not None else None)
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)

    @property
    def document(self) -> dict[str, Any]:
        if self._document is None:
            response = self.get("/api/openapi.json", role="viewer")
            assert response.status_code == 200, response.get_data(as_text=True)
            self._document = response.get_json()
        return self._document

    def operation(self, response: TestResponse) -> tuple[str, str] | None:
        """(OpenAPI path, method) of the route that answered ``response``; None for no route."""
        adapter = self.app.url_map.bind("localhost")
        try:
            rule, _ = adapter.match(response.request.path, method=response.request.method, return_rule=True)
        except HTTPException:
            return None
        return openapi_path(rule.rule), response.request.method.lower()

    def schema_problems(self, response: TestResponse, *, documented: bool = True) -> list[str]:
        """Why ``response`` does not match the document (its status must be listed for the
        operation when ``documented``; a listed JSON body must match the listed schema)."""
        found = self.operation(response)
        assert found is not None, f"no /api route answers {response.request.method} {response.request.path}"
        path, method = found
        responses = self.document["paths"][path][method]["responses"]
        listed = responses.get(str(response.status_code))
        if listed is None:
            return [f"{method.upper()} {path} does not document status {response.status_code}"] if documented else []
        schema = listed.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return []
        errors = json_schema_errors({**schema, "components": self.document["components"]}, response.get_json())
        return [f"{method.upper()} {path} {response.status_code}: {e}" for e in errors or []]

    def ok(self, response: TestResponse, status: int = 200, *, schema: bool = True) -> Any:
        """The JSON body of a success; asserts the status and (``schema``) the documented shape."""
        assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
        if schema:
            assert self.schema_problems(response) == []
        return response.get_json() if response.get_data() else None

    def error(self, response: TestResponse, status: int, code: str | None = None, *, field: str | None = None,
              documented: bool = True) -> dict[str, Any]:
        """The ``error`` object of a failure: ``{"error": {code, message, details}}`` with
        ``status``; ``field`` must be named in the message (and in details.field when it has one)."""
        assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
        assert response.mimetype == "application/json"
        body = response.get_json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
        error: dict[str, Any] = body["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
        if code is not None:
            assert error["code"] == code, error
        if field is not None:
            assert field in error["message"], error
            if isinstance(error["details"], dict) and "field" in error["details"]:
                assert error["details"]["field"] == field, error
        if self.operation(response) is not None:
            assert self.schema_problems(response, documented=documented) == []
        return error


@pytest.fixture
def api_client(app: Flask, lj: Runtime) -> ApiClient:
    """An API client with one token per role: ``ci-viewer``, ``ci-operator``, ``ci-admin``."""
    return ApiClient(app, {role: accounts.create_token(lj.db, f"ci-{role}", role) for role in API_ROLES})


@pytest.fixture
def make_api_app(app_config: dict[str, Any], lj: Runtime) -> Iterator[Callable[..., Flask]]:
    """Another app on the test database with some settings changed (``max_body=2048``,
    ``api_token=...``, ``jobs_file=...``); its schema is prepared and its jobs synced."""
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        other = create_app({**app_config, **overrides})
        made.append(other)
        other.extensions["lexyjobs"].prepare()
        return other
    yield make
    for other in made:
        other.extensions["lexyjobs"].db.dispose()


def drive_run(db: Database, run_id: int, status: RunStatus, *, queued_for: float = 5.0, ran_for: float = 2.5,
              error: str | None = None, result: Any = None) -> None:
    """Bring a queued run to ``running`` and on to ``status`` through the state machine (``queued``:
    leave it). It starts ``queued_for`` seconds after it was due and finishes ``ran_for`` seconds
    later, so its queue and processing times are exactly those (the times may lie in the future)."""
    if status == RunStatus.QUEUED:
        return
    run = runs.get_run(db, run_id)
    started = run.scheduled_for + timedelta(seconds=queued_for)
    finished = started + timedelta(seconds=ran_for)
    with db.write() as session:
        moved = transition_many(session, [run_id], RunStatus.RUNNING, expected=RunStatus.QUEUED, at=started, values={
            "started_at": started, "attempt": INCREMENT, "lease": INCREMENT, "worker": "test:api",
            "heartbeat_at": started})  # what a claim sets
        assert len(moved) == 1, f"run {run_id} is {run.status}, not queued"
        if status in TERMINAL:
            transition(session, run_id, status, expected=RunStatus.RUNNING, lease=moved[0].lease, at=finished,
                       finished_at=finished, error=error, result=result)


# ---------------------------------------------------------------- panel pages (tests/test_panel_*.py)

import re  # noqa: E402

from flask.testing import FlaskClient  # noqa: E402

PANEL_PASSWORD = "panel-persona-password"
PANEL_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class PanelSession:
    """A test client logged in to the panel as one persona. ``get``/``post`` take ``hx=True`` to
    act as htmx (``HX-Request``); ``post`` sends the session's CSRF token unless ``csrf=False``."""

    def __init__(self, client: FlaskClient, username: str, csrf: str) -> None:
        self.client, self.username, self.csrf = client, username, csrf

    def get(self, path: str, *, hx: bool = False, **kwargs: Any) -> TestResponse:
        headers = {"HX-Request": "true", **kwargs.pop("headers", {})} if hx else kwargs.pop("headers", {})
        return self.client.get(path, headers=headers, **kwargs)

    def post(self, path: str, *, hx: bool = False, csrf: bool = True, data: dict[str, Any] | None = None,
             **kwargs: Any) -> TestResponse:
        form = {**({"csrf_token": self.csrf} if csrf else {}), **(data or {})}
        headers = {"HX-Request": "true", **kwargs.pop("headers", {})} if hx else kwargs.pop("headers", {})
        return self.client.post(path, data=form, headers=headers, **kwargs)


@pytest.fixture
def panel_as(app: Flask, lj: Runtime) -> Callable[[str], PanelSession]:
    """``panel_as("operator")``: a client logged in through the login form as the persona
    ``panel-<role>`` (created on first use)."""
    def log_in(role: str) -> PanelSession:
        username = f"panel-{role}"
        with lj.db.read() as session:
            known = accounts.get_user(session, username) is not None
        if not known:
            accounts.add_user(lj.db, username, PANEL_PASSWORD, role)
        client = app.test_client()
        token = PANEL_CSRF.search(client.get("/login").get_data(as_text=True))
        assert token, "no CSRF token on the login page"
        response = client.post("/login", data={"username": username, "password": PANEL_PASSWORD,
                                               "csrf_token": token.group(1)})
        assert response.status_code in (302, 303), response.get_data(as_text=True)
        fresh = PANEL_CSRF.search(client.get("/").get_data(as_text=True))  # login starts a new session
        assert fresh, "no CSRF token after logging in"
        return PanelSession(client, username, fresh.group(1))
    return log_in


from openai_server import OpenAIServer  # noqa: E402

LLM_KEY = f"sk-test-{uuid.uuid4().hex}"


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """The OpenAI-compatible test server (tests/openai_server.py), set as ``OPENAI_BASE_URL``
    with ``OPENAI_API_KEY`` = LLM_KEY."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = OpenAIServer().start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", LLM_KEY)
    yield server
    server.stop()


from oidc_provider import OidcProvider  # noqa: E402


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """A real OpenID Connect provider process on 127.0.0.1 (tests/oidc_provider.py), shared by the session."""
    provider = OidcProvider()
    yield provider
    provider.stop()
