"""``next`` only ever sends the browser to a path on this site (lexyjobs.redirects.safe_next),
for the login form and every action that takes it, never with a 500; and only ``POST`` logs in or
changes anything — ``HEAD`` (which skips the CSRF check) and other methods never do. Both databases."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect, text

from lexyjobs import accounts
from lexyjobs.db import Database
from lexyjobs.redirects import safe_next

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
HOSTILE = [
    "/\t/evil.example/path", "/\n/evil.example", "/\r\nSet-Cookie: x=1", "\\\\evil.example", "/\\evil.example",
    "/\\/evil.example", "//evil.example", "///evil.example", "https://evil.example", "https:evil.example",
    "http:/evil.example", "javascript:alert(1)", "evil.example/path", " /evil.example", "\t//evil.example",
    "/%09/evil.example", "/%2F/evil.example", "%2F%2Fevil.example", "/%5Cevil.example", "/%0d%0aSet-Cookie:x=1",
    "/%252F%252Fevil.example", "/%25252F%25252Fevil.example", "/\x00/evil.example", "/\x7f/evil.example",
    "/\u3000/evil.example", "/%E3%80%80/evil.example", "/\u200b/evil.example", "/.\\evil.example",
    "/jobs?x=\r\n", "", "/" + "a" * 3000,
]
SAFE = ["/", "/jobs", "/jobs/etl", "/runs?status=failed&page=2", "/audit?actor=alice#top", "/jobs/caf%C3%A9"]


def browser_target(location: str) -> str:
    """Where a browser goes for ``Location: location`` on http://localhost/ (tabs and newlines
    dropped, backslashes read as slashes, as the URL standard says)."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip("\x00 ").replace("\\", "/")
    return urljoin("http://localhost/", cleaned)


def stays_here(location: str) -> bool:
    return urlsplit(browser_target(location)).netloc == "localhost"


@pytest.mark.parametrize("target", HOSTILE)
def test_a_hostile_next_is_not_followed(target: str) -> None:
    assert safe_next(target) is None


@pytest.mark.parametrize("target", SAFE)
def test_a_path_on_this_site_is_followed(target: str) -> None:
    assert safe_next(target) == target


@pytest.fixture
def admin_user(db: Database) -> str:
    accounts.add_user(db, ADMIN, ADMIN_PASSWORD, "admin")
    return ADMIN


def form_token(client: FlaskClient, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    found = CSRF_META.search(html) or CSRF_FIELD.search(html)
    assert found, html
    return found.group(1)


def logged_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"username": ADMIN, "password": ADMIN_PASSWORD,
                                           "csrf_token": form_token(client)})
    assert response.status_code == 302
    return client


def test_login_follows_only_same_site_paths_and_never_fails(app, admin_user) -> None:
    followed, errors = [], []
    for target in HOSTILE + SAFE:
        for where in ("form", "query"):
            client = app.test_client()
            shown = client.get("/login", query_string={"next": target})
            data = {"username": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": form_token(client)}
            if where == "form":
                response = client.post("/login", data={**data, "next": target})
            else:
                response = client.post("/login", data=data, query_string={"next": target})
            if shown.status_code != 200 or response.status_code != 302:
                errors.append((target, where, shown.status_code, response.status_code))
                continue
            if not stays_here(response.location):
                followed.append((target, where, response.location))
            elif target in HOSTILE and response.location != "/":
                followed.append((target, where, response.location))
    assert errors == [] and followed == []


def test_pause_and_resume_follow_only_same_site_paths(app, admin_user, make_job) -> None:
    make_job("etl")
    client = logged_in(app)
    token = form_token(client, "/jobs")
    wrong = []
    for target in HOSTILE:
        for action in ("pause", "resume"):
            response = client.post(f"/jobs/etl/{action}", data={"csrf_token": token, "next": target})
            if response.status_code != 302 or response.location != "/jobs":
                wrong.append((target, action, response.status_code, response.location))
    assert wrong == []
    followed = client.post("/jobs/etl/pause", data={"csrf_token": token, "next": "/jobs/etl"})
    assert followed.location == "/jobs/etl"


# ------------------------------------------------------------------ only POST logs in or changes anything

def snapshot(db: Database) -> dict[str, list[str]]:
    """Every row of every table, as text."""
    with db.engine.connect() as conn:
        return {table: sorted(str(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table}"')))
                for table in inspect(conn).get_table_names()}


def test_head_and_other_methods_on_login_never_log_in_or_write(app, db, admin_user) -> None:
    before = snapshot(db)
    client = app.test_client()
    token = form_token(client)
    body = {"username": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": token}
    statuses = {method: client.open("/login", method=method, data=body).status_code
                for method in ("HEAD", "PUT", "PATCH", "DELETE", "OPTIONS")}
    statuses["HEAD ?query"] = client.head("/login", query_string=body).status_code
    assert all(status < 500 for status in statuses.values()), statuses
    assert statuses["HEAD"] == 200
    assert client.get("/").status_code == 302  # still not logged in
    assert snapshot(db) == before  # no audit row, no last_login_at


def test_head_with_an_action_form_changes_nothing_on_any_route(app, db, admin_user, make_job) -> None:
    """HEAD skips the CSRF check, so it must never reach the POST half of a GET+POST view."""
    make_job("etl")
    accounts.add_user(db, "carol", "carol-password-1", "viewer")
    client = logged_in(app)
    token = form_token(client, "/")
    body: dict[str, Any] = {"csrf_token": token, "confirm": "yes", "name": "created-by-head", "kind": "python",
                            "func": "jobfuncs:noop", "title": "changed by HEAD", "priority": "1"}
    args = {"name": "etl", "username": "carol"}
    before = snapshot(db)
    tried = []
    for rule in app.url_map.iter_rules():
        if not {"HEAD", "POST"} <= (rule.methods or set()) or set(rule.arguments) - set(args):
            continue
        url = rule.rule
        for argument in rule.arguments:
            url = re.sub(rf"<(?:[^:<>]+:)?{argument}>", args[argument], url)
        response = client.head(url, data=body, query_string=body)
        assert response.status_code < 500, url
        tried.append(url)
    assert {"/login", "/jobs/new", "/jobs/etl/edit", "/jobs/etl/run", "/settings/users/carol/remove"} <= set(tried)
    assert snapshot(db) == before
