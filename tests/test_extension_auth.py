"""The host app's login: ``Lexyjobs(app, authorize=callable)``. Roles from the callable decide what
the panel and the API allow, audit entries name the host's user, None is 403 everywhere, a Response
from the callable is passed on (the API answers 401 JSON instead), our own login is not used, our
CSRF check keeps working next to Flask-WTF's CSRFProtect set up before or after us."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, redirect, session

from hostapp import csrf_of, make_host, our_get_urls, seed
from lexyjobs import HostUser, audit

BASE = "/admin/jobs"
ROLE_OF = {"vera": "viewer", "otto": "operator", "ada": "admin"}


def host_authorize(request: Any) -> Any:
    """The host's rule: its logged-in user's role; strangers are sent to the host's login page."""
    user = session.get("host_user")
    if user is None:
        return redirect("/account/login?next=" + request.full_path)
    role = ROLE_OF.get(user)
    return HostUser(user, role) if role else None


def _host(tmp_path: Path, db_url: str, authorize: Any = host_authorize, **options: Any) -> tuple[Flask, Any]:
    app, jobs = make_host(tmp_path, db_url, url_prefix=BASE, authorize=authorize, **options)
    jobs.runtime.prepare()
    return app, jobs


def _as(app: Flask, user: str) -> Any:
    client = app.test_client()
    client.get(f"/remember/{user}")
    return client


def test_roles_from_the_host_decide_and_the_audit_names_the_host_user(tmp_path: Path, db_url: str) -> None:
    app, jobs = _host(tmp_path, db_url)
    job, _run = seed(jobs.runtime.db)
    viewer, operator = _as(app, "vera"), _as(app, "otto")
    page = viewer.get(f"{BASE}/jobs/{job}/run")
    assert page.status_code == 200 and "vera · viewer" in page.get_data(as_text=True)
    assert "Log out" not in page.get_data(as_text=True)  # the host's login: no logout of ours
    refused = viewer.post(f"{BASE}/jobs/{job}/run", data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    assert refused.status_code == 403
    token = csrf_of(operator.get(f"{BASE}/jobs/{job}/run").get_data(as_text=True))
    assert operator.post(f"{BASE}/jobs/{job}/run", data={}).status_code == 403  # no CSRF token
    done = operator.post(f"{BASE}/jobs/{job}/run", data={"csrf_token": token})
    assert done.status_code == 302 and done.headers["Location"].startswith(f"{BASE}/runs/")
    entries = audit.search(jobs.runtime.db, action="run.create").entries
    assert entries and entries[0].actor == "otto", [(e.actor, e.action) for e in entries]
    admin = _as(app, "ada")
    assert admin.get(f"{BASE}/settings").status_code == 200
    assert operator.get(f"{BASE}/settings").status_code == 403


def test_none_is_403_on_every_route_and_a_response_is_passed_on(tmp_path: Path, db_url: str) -> None:
    app, jobs = _host(tmp_path, db_url)
    job, run_id = seed(jobs.runtime.db)
    stranger, nobody = app.test_client(), _as(app, "mallory")  # not logged in / logged in, no role
    public = {"lexyjobs.static", "lexyjobs.htmx.static", "lexyjobs.core.healthz", "lexyjobs.metrics.metrics",
              "lexyjobs.login.login", "lexyjobs.login.logout", "lexyjobs.sso.start", "lexyjobs.sso.callback"}
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("lexyjobs.") or rule.endpoint in public:
            continue
        url = next(u for e, u in _all_urls(app, job, run_id) if e == rule.endpoint)
        api = rule.endpoint.startswith("lexyjobs.api.")
        for method in sorted((rule.methods or set()) - {"OPTIONS"}):
            response = nobody.open(url, method=method)
            assert response.status_code == 403, (method, url, response.status_code)
            if api and method != "HEAD":
                assert response.json["error"]["code"] == "forbidden"
            away = stranger.open(url, method=method)
            if method not in ("GET", "HEAD") and not api:  # no CSRF token: refused before anything else
                assert away.status_code == 403, (method, url, away.status_code)
            elif api:
                assert away.status_code == 401, (method, url)
            else:
                assert away.status_code == 302 and away.headers["Location"].startswith("/account/login?next="), (method, url)
            checked += 1
    assert checked >= 50, checked
    # our own login is not used: its page sends to the dashboard
    assert _as(app, "ada").get(f"{BASE}/login").headers["Location"] == f"{BASE}/"
    assert nobody.post(f"{BASE}/logout").headers["Location"] == f"{BASE}/"


def _all_urls(app: Flask, job: str, run_id: int) -> list[tuple[str, str]]:
    found = list(our_get_urls(app, job, run_id))
    values = {"name": job, "run_id": str(run_id), "username": "ada", "target_id": "1", "kind": "webhook",
              "backfill_id": "1"}
    arg = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("lexyjobs.") and "GET" not in (rule.methods or ()):
            found.append((rule.endpoint, arg.sub(lambda m: values.get(m.group(2), "x"), rule.rule)))
    found.append(("lexyjobs.panel.events", f"{BASE}/events"))
    return found


def test_the_api_takes_the_host_login_with_our_csrf_header_or_a_bearer_token(tmp_path: Path, db_url: str) -> None:
    from lexyjobs import accounts
    app, jobs = _host(tmp_path, db_url)
    job, _run = seed(jobs.runtime.db)
    operator = _as(app, "otto")
    assert operator.get(f"{BASE}/api/me").json["name"] == "otto"
    no_header = operator.post(f"{BASE}/api/jobs/{job}/run", json={})
    assert no_header.status_code == 403 and no_header.json["error"]["code"] == "csrf_failed"
    token = csrf_of(operator.get(f"{BASE}/jobs").get_data(as_text=True))
    started = operator.post(f"{BASE}/api/jobs/{job}/run", json={}, headers={"X-CSRF-Token": token})
    assert started.status_code == 202, started.json
    assert started.json["status_url"] == f"{BASE}/api/runs/{started.json['run_id']}"
    assert operator.get(started.json["status_url"]).status_code == 200
    bearer = accounts.create_token(jobs.runtime.db, "ci", "operator")
    by_token = app.test_client().post(f"{BASE}/api/jobs/{job}/run", json={}, headers={"Authorization": f"Bearer {bearer}"})
    assert by_token.status_code == 202
    assert app.test_client().get(f"{BASE}/api/me", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_role_string_names_the_actor_host_without_flask_login(tmp_path: Path, db_url: str) -> None:
    app, jobs = _host(tmp_path, db_url, authorize=lambda request: "operator")
    job, _run = seed(jobs.runtime.db)
    client = app.test_client()
    token = csrf_of(client.get(f"{BASE}/jobs/{job}/run").get_data(as_text=True))
    assert client.post(f"{BASE}/jobs/{job}/run", data={"csrf_token": token}).status_code == 302
    assert audit.search(jobs.runtime.db, action="run.create").entries[0].actor == "host"


def test_a_wrong_answer_from_authorize_is_a_clear_500_not_a_way_in(tmp_path: Path, db_url: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    app, _jobs = _host(tmp_path, db_url, authorize=lambda request: "superuser")
    response = app.test_client().get(f"{BASE}/runs")
    assert response.status_code == 500
    assert "superuser" in caplog.text and "expected one of viewer, operator, admin" in caplog.text


@pytest.mark.parametrize("order", ["csrfprotect_first", "lexyjobs_first"])
def test_flask_wtf_csrfprotect_leaves_our_forms_alone_and_keeps_guarding_the_host(tmp_path: Path, db_url: str,
                                                                                   order: str) -> None:
    from flask_wtf.csrf import CSRFProtect, generate_csrf

    csrf = CSRFProtect()
    app = Flask("wtfhost", root_path=str(tmp_path))
    app.config.update(SECRET_KEY="host-secret", LEXYJOBS_DATABASE_URL=db_url)

    @app.route("/profile", methods=["GET", "POST"])
    def profile() -> str:
        return generate_csrf() if session.get("host_user") or True else ""

    @app.get("/remember/<value>")
    def remember(value: str) -> str:
        session["host_user"] = value
        return "ok"

    from conftest import FAST
    from lexyjobs import Lexyjobs
    options: dict[str, Any] = {"url_prefix": BASE, "authorize": host_authorize,
                               "config": {"jobs_file": None, "data_dir": str(tmp_path), **FAST}}
    if order == "csrfprotect_first":
        csrf.init_app(app)
        jobs = Lexyjobs(app, **options)
    else:
        jobs = Lexyjobs(app, **options)
        csrf.init_app(app)
    jobs.runtime.prepare()
    job, _run = seed(jobs.runtime.db)
    client = app.test_client()
    client.get("/remember/otto")
    token = csrf_of(client.get(f"{BASE}/jobs/{job}/run").get_data(as_text=True))
    assert client.post(f"{BASE}/jobs/{job}/run", data={"csrf_token": token}).status_code == 302  # our form
    hx = client.post(f"{BASE}/jobs/{job}/pause", headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert hx.status_code in (200, 204), hx.get_data(as_text=True)
    assert client.post(f"{BASE}/jobs/{job}/resume", data={"csrf_token": "forged"}).status_code == 403  # ours still checks
    assert client.post("/profile").status_code == 400  # the host's forms are still Flask-WTF's
    wtf_token = client.get("/profile").get_data(as_text=True)
    assert client.post("/profile", data={"csrf_token": wtf_token}).status_code == 200


def test_a_role_string_with_flask_login_names_its_current_user(tmp_path: Path, db_url: str) -> None:
    from flask_login import LoginManager, UserMixin, current_user, login_user

    class User(UserMixin):
        def __init__(self, username: str) -> None:
            self.id, self.username = username, username

    app, jobs = _host(tmp_path, db_url, authorize=lambda request: "operator" if current_user.is_authenticated else None)
    manager = LoginManager(app)
    manager.user_loader(User)

    @app.get("/flask-login/<username>")
    def sign_in(username: str) -> str:
        login_user(User(username))
        return "signed in"

    job, _run = seed(jobs.runtime.db)
    client = app.test_client()
    assert client.get(f"{BASE}/jobs").status_code == 403
    client.get("/flask-login/grace")
    token = csrf_of(client.get(f"{BASE}/jobs/{job}/run").get_data(as_text=True))
    assert client.post(f"{BASE}/jobs/{job}/run", data={"csrf_token": token}).status_code == 302
    assert audit.search(jobs.runtime.db, action="run.create").entries[0].actor == "grace"
