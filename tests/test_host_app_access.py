"""Who may use lexyjobs mounted in the example host app (examples/host_app): every route of the
``lexyjobs`` blueprint, read from ``app.url_map`` with its path variables filled with real
names and ids, is tried with each of its methods: a logged-in host user who is not an admin gets
403 everywhere; an anonymous visitor is sent to the host's /login (pages) or gets a JSON 401
(API); the host's admin gets in. Then the same on a real ``python -m examples.host_app``."""
from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import TEST_SECRET_KEY
from flask import Flask
from flask.testing import FlaskClient
from example_host import ADMIN, ADMIN_PASSWORD, USER, USER_PASSWORD, HostClient, spawn_host, start_waitress, example_module  # noqa: F401
from werkzeug.routing import Rule

from lexyjobs import runs
from lexyjobs.runtime import Runtime

PREFIX = "/admin/jobs"
# Served to anyone on purpose: CSS/JS files (the login-free assets of the panel's pages) and the
# load balancer's health check, which says only "ok"/"unavailable".
PUBLIC_ENDPOINT_ENDINGS = ("static", ".healthz")
# Prometheus' endpoint takes a bearer token (LEXYJOBS_METRICS_TOKEN), never a session: 401 for all.
TOKEN_ONLY = {"lexyjobs.metrics.metrics"}
# lexyjobs' own login is not used when the host authorizes: it sends everyone to the panel's
# front page, where the host's authorize() decides.
OWN_LOGIN = ("lexyjobs.login.", "lexyjobs.sso.")  # single sign-on is part of it
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def host(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    create_app = example_module().create_app
    monkeypatch.setenv("LEXYJOBS_JOBS_FILE", "")
    monkeypatch.setenv("LEXYJOBS_DATA_DIR", str(tmp_path))
    app = create_app(database_url=db_url, secret_key=TEST_SECRET_KEY)
    yield app
    app.extensions["host_app.jobs"].runtime.db.dispose()


@pytest.fixture
def runtime(host: Flask) -> Runtime:
    lexy: Runtime = host.extensions["host_app.jobs"].runtime
    lexy.prepare()
    return lexy


def logged_in(app: Flask, username: str, password: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def lexyjobs_rules(app: Flask) -> list[Rule]:
    found = [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("lexyjobs.")]
    assert len(found) > 40, [r.rule for r in found]  # the whole panel and API, not a part of it
    assert all(rule.rule.startswith(PREFIX + "/") or rule.rule == PREFIX for rule in found)
    return found


def filled(rule: Rule, values: dict[str, Any]) -> str:
    """The rule's path with every variable filled from ``values`` (by variable name)."""
    missing = rule.arguments - values.keys()
    assert not missing, f"no value for {missing} in {rule.rule}"
    return rule.build({name: values[name] for name in rule.arguments}, append_unknown=False)[1]


def requests_to_try(app: Flask, run_id: int) -> list[tuple[str, str, Rule]]:
    values = {"name": "crawl", "run_id": run_id, "pipeline_id": str(run_id), "username": ADMIN,
              "filename": "x.js", "category": "Crawls", "target_id": 1, "kind": "webhook",
              "backfill_id": 1}
    found = []
    for rule in lexyjobs_rules(app):
        if rule.endpoint.endswith(PUBLIC_ENDPOINT_ENDINGS):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, filled(rule, values), rule))
    return found


def login_target(location: str) -> str:
    """Where the host's /login will send the visitor back to (its ``next``)."""
    parts = urllib.parse.urlsplit(location)
    assert parts.path == "/login", location
    return urllib.parse.parse_qs(parts.query)["next"][0]


def is_api(path: str) -> bool:
    return path.startswith(f"{PREFIX}/api/") or path == f"{PREFIX}/api"


def check_special(rule: Rule, response: Any) -> None:
    """lexyjobs' own login routes send to the panel; the metrics endpoint wants its token."""
    if rule.endpoint in TOKEN_ONLY:
        assert response.status_code == 401, (rule.rule, response.status_code)
        assert "lexyjobs_" not in response.get_data(as_text=True), rule.rule  # no metric leaks out
    else:
        assert response.status_code in (302, 303, 403), (rule.rule, response.status_code)
        if response.status_code != 403:
            assert response.headers["Location"] == f"{PREFIX}/", (rule.rule, response.headers)


@pytest.fixture
def run_id(runtime: Runtime) -> int:
    return runs.enqueue(runtime.db, "crawl", {"url": "http://127.0.0.1:9/", "max_pages": 1})


def test_a_host_user_who_is_not_an_admin_gets_403_on_every_lexyjobs_route(host: Flask, run_id: int) -> None:
    client = logged_in(host, USER, USER_PASSWORD)
    answers = {}
    for method, path, rule in requests_to_try(host, run_id):
        response = client.open(path, method=method, data={"x": "1"} if method in UNSAFE else None)
        if rule.endpoint.startswith(OWN_LOGIN) or rule.endpoint in TOKEN_ONLY:
            check_special(rule, response)
        else:
            answers[f"{method} {path}"] = response.status_code
    assert len(answers) > 50 and set(answers.values()) == {403}, {k: v for k, v in answers.items() if v != 403}
    assert client.get(f"{PREFIX}/login").headers["Location"] == f"{PREFIX}/"
    assert client.get(f"{PREFIX}/").status_code == 403  # where lexyjobs' login page sends him


def test_an_anonymous_visitor_goes_to_the_host_login_or_gets_a_json_401(host: Flask, run_id: int) -> None:
    client = host.test_client()
    for method, path, rule in requests_to_try(host, run_id):
        response = client.open(path, method=method, data={"x": "1"} if method in UNSAFE else None)
        if rule.endpoint.startswith(OWN_LOGIN) or rule.endpoint in TOKEN_ONLY:
            check_special(rule, response)
        elif is_api(path):
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.is_json and response.get_json()["error"]["code"], (method, path)
        elif method == "GET":
            assert response.status_code in (302, 303), (method, path, response.status_code)
            assert login_target(response.headers["Location"]) == path, (method, path, response.headers)
        else:  # a form post cannot be resumed after logging in: refused either way
            assert response.status_code in (302, 303, 401, 403), (method, path, response.status_code)


def test_the_host_admin_gets_every_page(host: Flask, run_id: int) -> None:
    client = logged_in(host, ADMIN, ADMIN_PASSWORD)
    # Answers other than 200 that are right: a job defined in code (@job) cannot be edited or
    # deleted, a queued run has no log yet.
    expected = {"lexyjobs.panel.job_edit": 409, "lexyjobs.panel.job_delete": 409, "lexyjobs.panel.run_log": 204,
                "lexyjobs.api.run_log": 200}
    pages = [(path, rule) for method, path, rule in requests_to_try(host, run_id)
             if method == "GET" and not rule.arguments - {"name", "run_id"} and not rule.endpoint.endswith("events")
             and not rule.endpoint.startswith(OWN_LOGIN) and rule.endpoint not in TOKEN_ONLY]
    assert len(pages) > 25 and f"{PREFIX}/" in dict(pages) and f"{PREFIX}/jobs/crawl" in dict(pages)
    answers = {path: (client.get(path).status_code, expected.get(rule.endpoint, 200)) for path, rule in pages}
    assert all(got == want for got, want in answers.values()), {p: a for p, a in answers.items() if a[0] != a[1]}
    assert client.get("/admin").status_code == 200


@pytest.mark.slow
def test_the_real_host_app_refuses_a_non_admin_and_redirects_an_anonymous_visitor(db_url, spawn_host) -> None:
    server, base = start_waitress(spawn_host, db_url)
    anonymous, bob, alice = HostClient(base), HostClient(base), HostClient(base)
    bob.login(USER, USER_PASSWORD)
    alice.login(ADMIN, ADMIN_PASSWORD)
    status, headers, _ = anonymous.request("GET", f"{PREFIX}/runs?status=failed")
    assert status in (302, 303), status
    assert login_target(headers["Location"]) == f"{PREFIX}/runs?status=failed"
    assert anonymous.get_json(f"{PREFIX}/api/runs")[0] == 401
    for path in (f"{PREFIX}/", f"{PREFIX}/runs", f"{PREFIX}/api/runs", f"{PREFIX}/api/jobs/crawl"):
        assert bob.request("GET", path)[0] == 403, path
        assert alice.request("GET", path)[0] == 200, path
    assert bob.post_json(f"{PREFIX}/api/jobs/crawl/run", {"params": {"url": base + "/"}})[0] == 403
    assert bob.request("GET", "/admin")[0] == 403 and anonymous.request("GET", "/admin")[0] == 302
    assert server.terminate() == 0, server.output()  # SIGTERM: lexyjobs stops gracefully, exit 0
