"""The security battery of issue 4, on SQLite and Postgres. Each check computes a count that must
be 0 (or stay within a bound), prints it as ``battery: <what> = <n>`` (run with ``-s`` to see the
numbers) and asserts it: unauthenticated reach, CSRF, XSS in the raw HTML, a secret canary in
every output, login brute force, API tokens, shell-param injection, the Werkzeug debugger,
session cookies and headers, and the secret key / first admin password."""
from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import stat
import string
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from conftest import wait_for
from flask import Flask
from flask.testing import FlaskClient
from liveserver import E2E_TOKEN, running_server
from oidc_provider import OidcProvider, authorize
from markupsafe import escape
from sqlalchemy import inspect, text
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from lexyjobs import accounts, create_app, runs
from lexyjobs.db import Database

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"
SESSION_COOKIE = "lexyjobs_session"
TERMINAL = ("succeeded", "failed", "canceled")
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Reachable without logging in: the login page, single sign-on's start and return, static files
# (ours and htmx's) and /healthz.
SSO_ROUTES = {"lexyjobs.sso.start", "lexyjobs.sso.callback"}
ALLOWED_PUBLIC = {"lexyjobs.login.login", "lexyjobs.static", "lexyjobs.htmx.static", "lexyjobs.core.healthz"} | SSO_ROUTES
# Past the guard, but checking credentials itself: a refusal (401) without them; a bearer token
# (LEXYJOBS_METRICS_TOKEN or an API token) opens it, as Prometheus needs (tests/test_metrics.py).
SELF_GUARDED = {"lexyjobs.metrics.metrics"}
# Files and the SSE stream (it runs for minutes; tests/test_panel_events.py covers it) are not pages to scan.
NOT_PAGES = ("lexyjobs.static", "lexyjobs.htmx.static", "lexyjobs.panel.events")
CANARY_ENV = "LJ_CANARY_SECRET"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
ROUTE_ARG = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
ENV_TO_CLEAR = ("LEXYJOBS_SECRET_KEY", "LEXYJOBS_API_TOKEN", "LEXYJOBS_ADMIN_PASSWORD", "LEXYJOBS_SECURE_COOKIES",
                "LEXYJOBS_LOGIN_ATTEMPTS_PER_MINUTE", "LEXYJOBS_TRUSTED_PROXIES", "FLASK_DEBUG")


def battery(label: str, count: int) -> int:
    """Print one count of the battery (for the closing note) and return it."""
    print(f"battery: {label} = {count}")
    return count


@pytest.fixture(autouse=True)
def _clean_security_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No security setting leaks in from the environment running the tests."""
    for name in ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------ helpers: world, routes, login

@dataclass
class World:
    """Names and ids that exist, used to fill the path parameters of every route."""

    jobs: list[str]
    runs: list[int]

    def candidates(self, converter: str | None, arg: str) -> list[str]:
        if arg == "filename" or converter == "path":
            return ["app.css"]
        if arg == "username":
            return [ADMIN]
        if converter in ("int", "float") or arg.endswith("id"):
            return [str(r) for r in self.runs]
        return list(self.jobs)


def urls(rule: Rule, world: World) -> list[str]:
    """The rule's URL with its parameters filled by every combination of existing values."""
    args = ROUTE_ARG.findall(rule.rule)
    choices = [world.candidates(converter or None, arg) for converter, arg in args]
    filled = []
    for combination in itertools.product(*choices):
        values = dict(zip([arg for _, arg in args], combination))
        filled.append(ROUTE_ARG.sub(lambda m: quote(values[m.group(2)], safe=""), rule.rule))
    return filled


def routes(app: Flask, world: World, *, api: bool | None = None) -> Iterator[tuple[Rule, str, str]]:
    """(rule, method, url) for every method of every registered route (``api``: only / no /api)."""
    for rule in app.url_map.iter_rules():
        if api is not None and rule.rule.startswith("/api") != api:
            continue
        for method in sorted(rule.methods or ()):
            for url in urls(rule, world):
                yield rule, method, url


def csrf_of(html: str) -> str:
    found = CSRF_META.search(html) or CSRF_FIELD.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def log_in(client: FlaskClient, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> str:
    """Log in through the form; returns the CSRF token of the new session."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get("/")
    assert page.status_code == 200
    return csrf_of(page.get_data(as_text=True))


def attempt(client: FlaskClient, username: str, password: str, **headers: str) -> TestResponse:
    """One login attempt through the form (with this client's CSRF token)."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       headers=headers)


def client_from(app: Flask, address: str) -> FlaskClient:
    """A test client whose requests come from ``address``."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(SESSION_COOKIE)
    return None if cookie is None else cookie.value


def set_cookie_header(response: TestResponse) -> str:
    found = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{SESSION_COOKIE}=")]
    assert found, f"no session cookie set by {response.request.path}"
    return found[-1]


def redirects_to_login(response: TestResponse) -> bool:
    return response.status_code in (301, 302, 303, 307, 308) and urlsplit(response.location).path == "/login"


def refused(response: TestResponse, method: str, *, api: bool) -> bool:
    """401/403 before the view ran: JSON ``{"error": …}`` for the API (and htmx), the error page
    for a browser form."""
    if response.status_code not in (401, 403):
        return False
    if response.mimetype != "application/json":
        return not api and response.mimetype == "text/html"
    return method == "HEAD" or "error" in (response.get_json(silent=True) or {})


def finished(db: Database, run_ids: Iterable[int], timeout: float = 20.0) -> list[Any]:
    """Wait until every run is terminal; returns the runs."""
    ids = list(run_ids)

    def done() -> list[Any] | None:
        found = [runs.get_run(db, i) for i in ids]
        return found if all(r.status in TERMINAL for r in found) else None
    return wait_for(done, timeout)  # type: ignore[no-any-return]


def stored_texts(db: Database) -> Iterator[tuple[str, str, str]]:
    """Every non-null cell of every table, as text: (table, column, text)."""
    with db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    if isinstance(value, (dict, list)):
                        value = json.dumps(value, ensure_ascii=False)
                    elif isinstance(value, (bytes, memoryview)):
                        value = bytes(value).decode("utf-8", "replace")
                    yield table, column, str(value)


@pytest.fixture
def app_config(app_config: dict[str, Any], oidc_provider: OidcProvider) -> dict[str, Any]:
    """The shared app config with the login limit of the brute-force check (10 a minute) and
    single sign-on through a real provider, so that every check covers its routes too."""
    client_id, secret = oidc_provider.register("http://localhost/login/sso/callback")
    return {**app_config, "login_attempts_per_minute": 10, "oidc_issuer": oidc_provider.url,
            "oidc_client_id": client_id, "oidc_client_secret": secret, "oidc_roles": "lexyjobs-admins=admin"}


@pytest.fixture
def admin_user(db: Database) -> str:
    accounts.add_user(db, ADMIN, ADMIN_PASSWORD, "admin")
    return ADMIN


@pytest.fixture
def world(db: Database, make_job: Any, admin_user: str) -> World:
    """One job with one run, so every route with a name or run id has something real to show."""
    make_job("sec-job")
    return World(jobs=["sec-job"], runs=[runs.enqueue(db, "sec-job")])


@pytest.fixture
def api_token(db: Database) -> str:
    return accounts.create_token(db, "battery-admin", "admin")


# ------------------------------------------------------------------ a local HTTP server that echoes

@dataclass
class EchoServer:
    """``/echo`` answers 200 with the request as JSON, ``/echo500`` answers 500 with it, ``/cut500``
    answers 500 with the bearer secret straddling character 500 of the body."""

    base: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


def _echo_handler(server: EchoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
            echo = {"path": parts.path, "query": parts.query, "headers": dict(self.headers.items()), "body": body}
            server.received.append(echo)
            status, payload = (500 if parts.path.endswith("500") else 200), json.dumps(echo)
            if parts.path == "/cut500":
                secret = self.headers.get("Authorization", "").removeprefix("Bearer ")
                payload = "x" * (500 - len(secret) // 2) + secret
            data = payload.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


@pytest.fixture
def echo_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EchoServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    echo = EchoServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _echo_handler(echo))
    httpd.daemon_threads = True
    echo.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, name="security-echo", daemon=True).start()
    yield echo
    httpd.shutdown()
    httpd.server_close()


# ------------------------------------------------------------------ 1. unauthenticated reach

def test_no_route_but_login_static_and_healthz_answers_without_logging_in(app, world):
    client = app.test_client()
    leaks, open_routes = [], set()
    for rule, method, url in routes(app, world):
        response = client.open(url, method=method)
        if response.status_code < 300:
            open_routes.add(rule.endpoint)
        api = rule.rule.startswith("/api")
        self_guarded = rule.endpoint in SELF_GUARDED and response.status_code == 405  # no automatic OPTIONS
        if rule.endpoint not in ALLOWED_PUBLIC and not (redirects_to_login(response) or self_guarded
                                                         or refused(response, method, api=api or rule.endpoint in SELF_GUARDED)):
            leaks.append(f"{method} {url} -> {response.status_code}")
    marked = {name for name, view in app.view_functions.items() if getattr(view, "_lexyjobs_public", False)}
    extra_public = (open_routes | marked) - ALLOWED_PUBLIC - SELF_GUARDED
    assert battery("unauthenticated reachable", len(leaks)) == 0, leaks
    assert battery("routes open without login outside {login, static, healthz}", len(extra_public)) == 0, extra_public
    assert {"lexyjobs.login.login", "lexyjobs.static", "lexyjobs.core.healthz"} <= open_routes  # the allowed ones do answer


def test_a_session_cookie_never_opens_the_api_and_a_token_never_opens_the_panel(app, world, api_token):
    client = app.test_client()
    log_in(client)
    api_leaks = [f"{m} {u} -> {r.status_code}" for _, m, u in routes(app, world, api=True)
                 if (r := client.open(u, method=m)).status_code != 401 or not refused(r, m, api=True)]
    bearer = {"Authorization": f"Bearer {api_token}"}
    anonymous = app.test_client()
    panel_leaks = [f"GET {u} -> {r.status_code}" for rule, m, u in routes(app, world, api=False)
                   if m == "GET" and rule.endpoint not in ALLOWED_PUBLIC | SELF_GUARDED
                   and not redirects_to_login(r := anonymous.get(u, headers=bearer))]
    assert battery("api answered to a session cookie", len(api_leaks)) == 0, api_leaks
    assert battery("panel answered to a bearer token", len(panel_leaks)) == 0, panel_leaks
    assert client.get("/api/me", headers=bearer).status_code == 200


# ------------------------------------------------------------------ 2. CSRF

def test_no_state_changing_panel_request_is_accepted_without_the_session_csrf_token(app, world):
    attacker = app.test_client()
    foreign_token = log_in(attacker)  # a valid token, of another session
    client = app.test_client()
    token = log_in(client)
    forged = {"missing": ({}, {}), "wrong": ({"csrf_token": "x" * 43}, {"X-CSRF-Token": "x" * 43}),
              "other session's": ({"csrf_token": foreign_token}, {"X-CSRF-Token": foreign_token})}
    accepted, tried = [], 0
    for _, method, url in routes(app, world, api=False):
        if method not in UNSAFE:
            continue
        for label, (form, headers) in forged.items():
            for data, hdrs in ((form, {}), ({}, headers)):
                tried += 1
                response = client.open(url, method=method, data=data, headers=hdrs)
                if response.status_code < 400:
                    accepted.append(f"{method} {url} with {label} token -> {response.status_code}")
    assert tried >= 12  # /login and /logout at least
    assert battery("forged panel requests accepted", len(accepted)) == 0, accepted
    assert client.get("/").status_code == 200  # the forged /logout ended nothing
    response = client.post("/logout", data={"csrf_token": token})  # the real one works
    assert redirects_to_login(response) and redirects_to_login(client.get("/"))


def test_login_itself_needs_the_csrf_token(app, admin_user):
    attacker = app.test_client()
    foreign = csrf_of(attacker.get("/login").get_data(as_text=True))
    victim = app.test_client()
    victim.get("/login")
    accepted = 0
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": foreign}):
        response = victim.post("/login", data={"username": ADMIN, "password": ADMIN_PASSWORD, **data})
        accepted += response.status_code != 403 or not redirects_to_login(victim.get("/"))
    assert battery("login posts accepted without the token", accepted) == 0


def sso_start(client: FlaskClient, next_path: str | None = None) -> str:
    response = client.get("/login/sso", query_string={"next": next_path} if next_path is not None else None)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response.location


def sso_return(client: FlaskClient, location: str) -> TestResponse:
    parts = urlsplit(location)
    return client.get(f"{parts.path}?{parts.query}")


def test_no_forged_single_sign_on_return_signs_anyone_in(app, lj, oidc_provider):
    """Login CSRF and replay: a return with a made-up, missing or another browser's state, or one
    already used, never opens a session; only the browser that started a sign-in completes it."""
    oidc_provider.set_user("eve", email="eve@example.com", groups=["lexyjobs-admins"])
    attacker, victim = app.test_client(), app.test_client()
    attackers_return = authorize(sso_start(attacker), "eve")
    victim.get("/login")
    own = victim.get("/login/sso")
    code = dict(parse_qsl(urlsplit(attackers_return).query))["code"]
    forged = [f"/login/sso/callback?{query}" for query in (
        "", "code=x", "state=x", f"code={code}", f"code={code}&state=", f"code={code}&state=forged",
        f"code={code}&state=None", "error=access_denied&state=x")]
    forged.append(attackers_return)
    signed_in = 0
    for path in forged:
        answer = sso_return(victim, path)
        signed_in += answer.status_code != 403 or not redirects_to_login(victim.get("/"))
    assert battery("forged single sign-on returns that signed in", signed_in) == 0
    assert own.status_code == 302  # the victim's own sign-in, started before the forgeries, still completes
    assert sso_return(victim, authorize(own.location, "eve")).status_code == 302
    assert victim.get("/").status_code == 200
    uses = [sso_return(attacker, attackers_return).status_code for _ in range(2)]
    assert battery("single sign-on returns accepted twice", int(uses != [302, 403])) == 0, uses


def test_single_sign_on_never_redirects_off_site(app, lj, oidc_provider):
    from test_redirects import HOSTILE, browser_target

    oidc_provider.set_user("rita", email="rita@example.com", groups=["lexyjobs-admins"])
    off_site = []
    for target in HOSTILE:
        client = app.test_client()
        answer = sso_return(client, authorize(sso_start(client, target), "rita"))
        if answer.status_code != 302 or urlsplit(browser_target(answer.location)).netloc != "localhost":
            off_site.append(f"{target!r} -> {answer.status_code} {answer.location}")
    assert battery("single sign-on redirects off site", len(off_site)) == 0, off_site


# ------------------------------------------------------------------ 3. XSS

PAYLOADS = {
    "script": "<script>alert(1)</script>",
    "img": '"><img src=x onerror=alert(1)>',
    "svg": "'><svg/onload=alert(1)>",
    "js": "javascript:alert(1)",
    "ssti": "ssti-{{7*7}}",
}


class _Markup(HTMLParser):
    """Counts what a browser would run: script elements, event-handler attributes and
    ``javascript:`` URLs in the parsed markup (escaped text never becomes a tag)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and not dict(attrs).get("src"):
            self.found.append("inline <script>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…>")
            url_attribute = name in ("href", "src", "action", "formaction")
            if url_attribute and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:…>")

    handle_startendtag = handle_starttag


def unescaped(html: str) -> list[str]:
    parser = _Markup()
    parser.feed(html)
    raw = [p for p in ("<script>alert(1)", "<img src=x onerror", "<svg/onload", "ssti-49") if p in html]
    return parser.found + raw


def csp_allows_inline_script(response: TestResponse) -> bool:
    header = response.headers.get("Content-Security-Policy", "")
    policy = {part.strip().split(" ", 1)[0]: part for part in header.split(";")}
    directive = policy.get("script-src") or policy.get("default-src") or "'unsafe-inline'"  # none: anything runs
    return "'unsafe-inline'" in directive or "'unsafe-eval'" in directive


@pytest.fixture
def xss_world(db, make_job, admin_user, echo_server, start_worker) -> World:
    """Jobs whose title, description, category and params carry the payloads, with runs whose
    params, log lines (shell), result (python) and error (http 500) carry them too."""
    jobs, run_ids = [], []
    for key, payload in PAYLOADS.items():
        text_fields = {"title": f"T {payload}", "description": payload, "category": payload,
                       "params": {"note": {"type": "string", "default": payload, "help": payload}}}
        jobs += [make_job(f"xss-shell-{key}", kind="shell", argv=["sh", "-c", 'echo "$LEXYJOBS_PARAM_NOTE"'],
                          **text_fields),
                 make_job(f"xss-python-{key}", kind="python", func="jobfuncs:echo_params", **text_fields),
                 make_job(f"xss-http-{key}", kind="http", method="POST", url=echo_server.url("/echo500"),
                          max_attempts=1, **text_fields)]
    start_worker()
    run_ids = [runs.enqueue(db, name, {"note": PAYLOADS[name.rsplit("-", 1)[1]]}) for name in jobs]
    done = finished(db, run_ids)
    assert {r.status for r in done} == {"succeeded", "failed"}
    assert any(PAYLOADS["script"] in (r.error or "") for r in done)  # the payload did reach an error
    return World(jobs=jobs, runs=run_ids)


def test_no_payload_reaches_the_panel_html_unescaped(app, xss_world):
    client = app.test_client()
    # failed logins show the name again and put it in the audit log (actor and target)
    pages = {f"POST /login as {key}": attempt(client, payload, "wrong-password") for key, payload in PAYLOADS.items()}
    token = log_in(client)
    pages.update({f"GET {u}": client.get(u) for rule, m, u in routes(app, xss_world, api=False)
                  if m == "GET" and rule.endpoint not in NOT_PAGES})
    for payload in PAYLOADS.values():
        q = quote(payload, safe="")
        for url in (f"/audit?actor={q}&action={q}&target={q}", f"/audit?page={q}", f"/login?next=/{q}",
                    f"/no-such-page/{q}", f"/?x={q}"):
            pages[f"GET {url}"] = client.get(url)
    pages["PUT / (405)"] = client.put("/", headers={"X-CSRF-Token": token})
    html = {name: r.get_data(as_text=True) for name, r in pages.items() if r.mimetype == "text/html"}
    found = {name: hits for name, body in html.items() if (hits := unescaped(body))}
    unsafe_csp = [name for name, r in pages.items() if csp_allows_inline_script(r)]
    shown = [p for p in PAYLOADS.values() if not any(str(escape(p)) in body for body in html.values())]
    assert battery("unescaped payloads in panel html", sum(map(len, found.values()))) == 0, found
    assert battery("pages whose CSP allows inline script", len(unsafe_csp)) == 0, unsafe_csp
    assert shown == [], "these payloads were never rendered, so the check proves nothing for them"
    assert len(html) >= 20 and any(r.status_code in (400, 404, 405) for r in pages.values())


# ------------------------------------------------------------------ 4. secret canary

@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    monkeypatch.setenv(CANARY_ENV, value)
    return value


def canary_hits(text_: str, secret: str) -> int:
    """Occurrences of either half of the secret (so a truncated secret counts too)."""
    return text_.count(secret[:16]) + text_.count(secret[16:])


def every_api_body(client: FlaskClient, app: Flask, world: World, token: str) -> dict[str, str]:
    bearer = {"Authorization": f"Bearer {token}"}
    bodies = {f"GET {u}": client.get(u, headers=bearer).get_data(as_text=True)
              for _, m, u in routes(app, world, api=True) if m == "GET"}
    for url in ("/api/runs/999999999", "/api/jobs/no-such-job", "/api/runs?limit=200", "/api/runs?page=x"):
        bodies[f"GET {url}"] = client.get(url, headers=bearer).get_data(as_text=True)
    return bodies


def every_panel_body(client: FlaskClient, app: Flask, world: World) -> dict[str, str]:
    bodies = {f"GET {u}": client.get(u).get_data(as_text=True) for rule, m, u in routes(app, world, api=False)
              if m == "GET" and rule.endpoint not in NOT_PAGES}
    for url in ("/no-such-page", "/audit?page=x", "/login"):
        bodies[f"GET {url}"] = client.get(url).get_data(as_text=True)
    return bodies


def test_a_secret_canary_appears_nowhere(app, db, make_job, admin_user, api_token, echo_server, start_worker,
                                         canary, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="lexyjobs")
    auth = {"Authorization": f"Bearer ${{{CANARY_ENV}}}"}
    env = {"TOKEN": f"${{{CANARY_ENV}}}"}
    jobs = [make_job("canary-http", kind="http", url=echo_server.url("/echo"), headers=auth),
            make_job("canary-http-500", kind="http", url=echo_server.url("/echo500"), headers=auth, max_attempts=1),
            make_job("canary-shell", kind="shell", env=env,
                     argv=["sh", "-c", 'echo "token=$TOKEN"; echo "::progress 50 $TOKEN"; echo "$TOKEN" >&2']),
            make_job("canary-shell-fails", kind="shell", env=env, argv=["sh", "-c", 'echo "$TOKEN"; exit 7'],
                     max_attempts=1)]
    start_worker()
    run_ids = [runs.enqueue(db, name) for name in jobs]
    done = {r.job_name: r for r in finished(db, run_ids)}
    assert [done[n].status for n in jobs] == ["succeeded", "failed", "succeeded", "failed"]
    assert sum(r["headers"].get("Authorization") == f"Bearer {canary}" for r in echo_server.received) == 2
    world = World(jobs=jobs, runs=run_ids)
    client = app.test_client()
    log_in(client)
    outputs = {**every_api_body(client, app, world, api_token), **every_panel_body(client, app, world)}
    leaked = {name: n for name, body in outputs.items() if (n := canary_hits(body, canary))}
    stored = [(table, column) for table, column, value in stored_texts(db) if canary_hits(value, canary)]
    captured = capfd.readouterr()
    in_logs = canary_hits(caplog.text, canary) + canary_hits(captured.out + captured.err, canary)
    assert any(f"${{{CANARY_ENV}}}" in value for table, _, value in stored_texts(db) if table == "jobs")
    assert battery("canary in api responses and panel pages", sum(leaked.values())) == 0, leaked
    assert battery("canary in database cells", len(stored)) == 0, stored
    assert battery("canary in log output", in_logs) == 0
    assert "token=****" in outputs[f"GET /api/runs/{run_ids[2]}/log"]  # the shell did print it, masked
    assert len(caplog.records) > 0  # the worker did log (at DEBUG), so the scan saw something


def test_a_secret_echoed_across_the_error_cut_is_not_stored_in_part(db, make_job, echo_server, start_worker, canary):
    make_job("canary-cut", kind="http", url=echo_server.url("/cut500"), max_attempts=1,
             headers={"Authorization": f"Bearer ${{{CANARY_ENV}}}"})
    start_worker()
    run = finished(db, [runs.enqueue(db, "canary-cut")])[0]
    assert run.status == "failed" and "xxxx" in (run.error or "")
    stored = [(table, column) for table, column, value in stored_texts(db) if canary_hits(value, canary)]
    assert battery("half canary in database cells (error cut)", len(stored)) == 0, stored


def test_a_secret_in_an_http_url_stays_out_of_debug_logs(db, make_job, echo_server, start_worker, canary, caplog):
    caplog.set_level(logging.DEBUG)
    make_job("canary-url", kind="http", url=echo_server.url(f"/echo?key=${{{CANARY_ENV}}}"), max_attempts=1)
    start_worker()
    assert finished(db, [runs.enqueue(db, "canary-url")])[0].status == "succeeded"
    assert echo_server.received[0]["query"] == f"key={canary}"
    assert battery("canary in DEBUG logs (secret in the url)", canary_hits(caplog.text, canary)) == 0


# ------------------------------------------------------------------ 5. login brute force: tests/test_login_throttle.py


# ------------------------------------------------------------------ 6. API tokens

def test_tokens_are_stored_hashed_and_a_revoked_token_opens_nothing(app, db, world, caplog):
    caplog.set_level(logging.DEBUG)
    client = app.test_client()
    tokens = {name: accounts.create_token(db, name, role) for name, role in
              (("ci", "operator"), ("reader", "viewer"), ("ops", "admin"))}
    for name, token in tokens.items():
        response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.get_json()["name"] == name
    secrets_ = [part for t in tokens.values() for part in (t, t.removeprefix(accounts.TOKEN_PREFIX))]
    cells = list(stored_texts(db))
    plaintext = [(table, column) for table, column, value in cells for s in secrets_ if s in value]
    assert battery("plaintext tokens stored", len(plaintext)) == 0, plaintext
    assert battery("plaintext tokens in log output", sum(caplog.text.count(s) for s in secrets_)) == 0
    assert {accounts.hash_token(t) for t in tokens.values()} <= {v for _, c, v in cells if c == "token_hash"}
    accounts.revoke_token(db, "ops")
    revoked = {"Authorization": f"Bearer {tokens['ops']}"}
    answered = [f"{m} {u} -> {r.status_code}" for _, m, u in routes(app, world, api=True)
                if (r := client.open(u, method=m, headers=revoked)).status_code != 401]
    assert battery("revoked token accepted", len(answered)) == 0, answered
    assert client.get("/api/me", headers={"Authorization": f"Bearer {tokens['ci']}"}).status_code == 200


# ------------------------------------------------------------------ 7. shell-param and http injection

INJECTIONS = ["$(touch {canary})", "; touch {canary}", "`touch {canary}`", "| touch {canary}",
              "\"; touch {canary}; echo \"", "&& touch {canary}", "\ntouch {canary}", "${{IFS}}touch${{IFS}}{canary}"]


def test_shell_params_are_data_never_code(app, db, make_job, api_token, start_worker, tmp_path):
    make_job("echo-name", kind="shell", argv=["sh", "-c", 'echo "$LEXYJOBS_PARAM_NAME"'],
             params={"name": {"type": "string"}})
    start_worker()
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {api_token}"}
    sent: dict[int, tuple[str, Path]] = {}
    for i, template in enumerate(INJECTIONS):
        marker = tmp_path / f"pwned-{i}"
        value = template.format(canary=marker)
        response = client.post("/api/jobs/echo-name/run", json={"params": {"name": value}}, headers=bearer)
        assert response.status_code == 202, response.get_json()
        sent[response.get_json()["run_id"]] = (value, marker)
    done = finished(db, sent)
    assert {r.status for r in done} == {"succeeded"}
    created = [str(marker) for _, marker in sent.values() if marker.exists()]
    logs = {rid: client.get(f"/api/runs/{rid}/log", headers=bearer).get_json()["text"] for rid in sent}
    not_literal = [value for rid, (value, _) in sent.items() if logs[rid] != value + "\n"]
    assert battery("files created by injected shell params", len(created)) == 0, created
    assert battery("shell logs not showing the literal param", len(not_literal)) == 0, not_literal


def test_http_params_never_change_where_the_request_goes(app, db, make_job, api_token, echo_server,
                                                         start_worker):
    for method in ("GET", "POST"):
        make_job(f"call-{method.lower()}", kind="http", method=method, url=echo_server.url("/echo"),
                 params={"url": {"type": "string"}, "host": {"type": "string"}}, max_attempts=1)
    start_worker()
    client = app.test_client()
    params = {"url": "http://evil.invalid/", "host": "evil"}
    run_ids = [client.post(f"/api/jobs/{name}/run", json={"params": params},
                           headers={"Authorization": f"Bearer {api_token}"}).get_json()["run_id"]
               for name in ("call-get", "call-post")]
    done = finished(db, run_ids)
    host = urlsplit(echo_server.base).netloc
    arrived = [r for r in echo_server.received if r["path"] == "/echo" and r["headers"].get("Host") == host]
    assert battery("http runs that did not reach the configured server", len(run_ids) - len(arrived)) == 0
    assert [r.status for r in done] == ["succeeded", "succeeded"]
    get, post = sorted(arrived, key=lambda r: bool(r["body"]))
    assert "url=http%3A%2F%2Fevil.invalid%2F" in get["query"] and "host=evil" in get["query"]
    assert json.loads(post["body"]) == params and post["query"] == ""


# ------------------------------------------------------------------ 8. no Werkzeug debugger

TRACE_MARKERS = ("boom-xyz", "Traceback", "RuntimeError", "Werkzeug", "__debugger__", 'File "')


def test_an_unexpected_error_shows_no_traceback_and_there_is_no_console(app, admin_user, caplog):
    def explode() -> str:
        raise RuntimeError("boom-xyz")
    app.add_url_rule("/battery-boom", "battery_boom", explode)
    assert app.debug is False
    client = app.test_client()
    log_in(client)
    answers = {"html": client.get("/battery-boom"),
               "json": client.get("/battery-boom", headers={"Accept": "application/json"})}
    assert [r.status_code for r in answers.values()] == [500, 500]
    assert answers["json"].get_json()["error"]["code"] == "internal_error"
    shown = [f"{kind}: {m}" for kind, r in answers.items() for m in TRACE_MARKERS if m in r.get_data(as_text=True)]
    assert battery("traceback markers in 500 responses", len(shown)) == 0, shown
    assert "boom-xyz" in caplog.text  # the details went to the server log instead
    consoles = [client.get("/console"), app.test_client().get("/console"),
                client.get("/console?__debugger__=yes&cmd=resource&f=debugger.js")]
    assert battery("debugger consoles answering", sum(r.status_code != 404 for r in consoles)) == 0


@pytest.mark.slow
def test_the_real_server_has_no_debugger_even_with_flask_debug_set(db_url, tmp_path, canary):
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[jobs.canary-shell]\nkind = "shell"\nargv = ["sh", "-c", "echo token=$TOKEN"]\n'
                         f'env = {{ TOKEN = "${{{CANARY_ENV}}}" }}\n')
    with running_server(db_url, jobs_file, FLASK_DEBUG="1") as server:
        answers = [server.get("/console"), server.get("/console?__debugger__=yes&cmd=resource&f=debugger.js"),
                   server.get("/login?__debugger__=yes&cmd=resource&f=debugger.js")]
        ran = server.cli("run", "canary-shell", "--wait", "--timeout", "30s")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        run_id = re.search(r"^run (\d+) queued", ran.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
        bodies = [server.get(p, token=E2E_TOKEN)[1] for p in ("/api/runs", f"/api/runs/{run_id}",
                                                              f"/api/runs/{run_id}/log")]
        stderr = "".join(server.stderr)
    assert [status for status, _ in answers[:2]] == [404, 404]
    debugger = sum("Werkzeug" in body or "debugger" in body.lower() for _, body in answers)
    assert battery("real server debugger markers", debugger) == 0
    assert "token=****" in bodies[2]
    leaks = sum(canary_hits(t, canary) for t in [stderr, ran.stdout, ran.stderr, *bodies])
    assert battery("canary in the real server's stderr, cli output and api", leaks) == 0


# ------------------------------------------------------------------ 9. session cookie and headers

def cookie_flags(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


def test_the_session_cookie_is_httponly_lax_and_secure_when_it_should_be(app, app_config, admin_user):
    plain = cookie_flags(set_cookie_header(app.test_client().get("/login")))
    https = cookie_flags(set_cookie_header(app.test_client().get("/login", base_url="https://localhost")))
    always_app = create_app({**app_config, "secure_cookies": "true"})
    try:
        always = cookie_flags(set_cookie_header(always_app.test_client().get("/login")))
    finally:
        always_app.extensions["lexyjobs"].db.dispose()
    wrong = [name for name, flags, secure in (("http", plain, False), ("https", https, True), ("true", always, True))
             if not {"httponly", "samesite=lax"} <= flags or ("secure" in flags) != secure]
    assert battery("session cookies with wrong flags", len(wrong)) == 0, wrong


def test_logging_in_rotates_the_session_and_logging_out_ends_every_one(app, db, admin_user):
    client = app.test_client()
    before_token = csrf_of(client.get("/login").get_data(as_text=True))
    before_cookie = session_cookie(client)
    token = log_in(client)
    elsewhere = app.test_client()
    log_in(elsewhere)
    assert token != before_token and session_cookie(client) not in (None, before_cookie)
    logged_in_cookie = session_cookie(client)
    assert redirects_to_login(client.post("/logout", data={"csrf_token": token}))
    replays = []
    for cookie in (before_cookie, logged_in_cookie):
        replay = app.test_client()
        replay.set_cookie(SESSION_COOKIE, cookie or "")
        replays.append(replay.get("/"))
    replays.append(elsewhere.get("/"))  # logout ends the user's sessions everywhere
    assert battery("sessions alive after logout", sum(not redirects_to_login(r) for r in replays)) == 0


def test_changing_the_password_ends_the_sessions(app, db, admin_user):
    client = app.test_client()
    log_in(client)
    accounts.set_password(db, ADMIN, "a-new-password-2")
    assert battery("sessions alive after set-password", int(not redirects_to_login(client.get("/")))) == 0


def test_every_kind_of_response_carries_the_security_headers(app, admin_user, api_token):
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {api_token}"}
    answers = {"/login": client.get("/login"), "/healthz": client.get("/healthz"), "/": client.get("/"),
               "/static/app.css": client.get("/static/app.css"), "/nope": client.get("/nope"),
               "/api/me 401": client.get("/api/me"), "/api/me": client.get("/api/me", headers=bearer),
               "/api/jobs": client.get("/api/jobs", headers=bearer),
               "/api/runs/999 404": client.get("/api/runs/999", headers=bearer),
               "POST /login 403": client.post("/login")}
    missing = [f"{name}: {header}" for name, r in answers.items() for header, ok in (
        ("CSP frame-ancestors 'none'", "frame-ancestors 'none'" in r.headers.get("Content-Security-Policy", "")),
        ("X-Content-Type-Options", r.headers.get("X-Content-Type-Options") == "nosniff"),
        ("Referrer-Policy", r.headers.get("Referrer-Policy") in ("same-origin", "no-referrer", "strict-origin",
                                                                  "strict-origin-when-cross-origin")),
    ) if not ok]
    assert battery("missing security headers", len(missing)) == 0, missing


# ------------------------------------------------------------------ 10. secret key and first admin

def test_a_short_secret_key_stops_the_start_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("LEXYJOBS_SECRET_KEY", "x" * 31)
    with pytest.raises(SystemExit) as stopped:
        create_app({"database_url": f"sqlite:///{tmp_path / 'jobs.db'}", "jobs_file": None})
    assert "LEXYJOBS_SECRET_KEY must be at least 32 bytes" in str(stopped.value)
    assert not (tmp_path / "secret_key").exists()


def test_the_generated_secret_key_is_private_and_survives_a_restart(app, app_config, tmp_path, admin_user):
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert app.secret_key == key_file.read_text().strip() and len(key_file.read_text().strip()) >= 32
    client = app.test_client()
    log_in(client)
    restarted = create_app(app_config)
    try:
        assert restarted.secret_key == app.secret_key
        carried = restarted.test_client()
        carried.set_cookie(SESSION_COOKIE, session_cookie(client) or "")
        assert carried.get("/").status_code == 200  # the session outlived the restart
    finally:
        restarted.extensions["lexyjobs"].db.dispose()


PRINTED_PASSWORD = re.compile(r"created user 'admin' with password: (\S+)")


def test_the_first_start_prints_a_generated_admin_password_once(app, app_config, lj, db, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    capfd.readouterr()
    lj.prepare(authoritative=True)
    first = capfd.readouterr()
    printed = PRINTED_PASSWORD.findall(first.err)
    assert len(printed) == 1 and first.out == ""
    lj.prepare(authoritative=True)
    restarted = create_app(app_config)
    try:
        restarted.extensions["lexyjobs"].prepare(authoritative=True)
    finally:
        restarted.extensions["lexyjobs"].db.dispose()
    again = capfd.readouterr()
    assert battery("generated passwords printed on later starts", len(PRINTED_PASSWORD.findall(again.err))) == 0
    password = printed[0]
    assert accounts.authenticate(db, ADMIN, password) is not None
    stored = [(t, c) for t, c, v in stored_texts(db) if password in v]
    assert battery("generated password stored or logged in clear", len(stored) + caplog.text.count(password)) == 0


def test_the_admin_password_setting_creates_then_updates_the_admin(app_config, lj, db, monkeypatch, capfd):
    def start(password: str) -> None:
        monkeypatch.setenv("LEXYJOBS_ADMIN_PASSWORD", password)
        started = create_app(app_config)
        try:
            started.extensions["lexyjobs"].prepare(authoritative=True)
        finally:
            started.extensions["lexyjobs"].db.dispose()
    start("first-password-1")
    first = accounts.authenticate(db, ADMIN, "first-password-1")
    assert first is not None and first.role == "admin"
    start("second-password-2")
    assert accounts.authenticate(db, ADMIN, "first-password-1") is None
    assert accounts.authenticate(db, ADMIN, "second-password-2") is not None
    assert "password:" not in capfd.readouterr().err  # nothing generated, nothing printed
