"""The example host app's seed-004 routes (examples/host_app), through the Flask test client on
SQLite and Postgres: ``POST /api/crawls`` writes the host's crawl_requests row and the run in one
transaction and answers 202 {jobId, statusUrl}; bad input gets a 400 naming the field and writes
nothing; the status route shows a crawl to the user who asked for it and to admins only."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from conftest import TEST_SECRET_KEY
from flask import Flask
from flask.testing import FlaskClient
from example_host import ADMIN, ADMIN_PASSWORD, USER, USER_PASSWORD, example_module
from sqlalchemy import func, select

from lexyjobs import runs
from lexyjobs.runtime import Runtime


@pytest.fixture
def host(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    create_app = example_module().create_app
    monkeypatch.setenv("LEXYJOBS_JOBS_FILE", "")
    monkeypatch.setenv("LEXYJOBS_DATA_DIR", str(tmp_path))
    app = create_app(database_url=db_url, secret_key=TEST_SECRET_KEY)
    app.extensions["host_app.jobs"].runtime.prepare()  # lexyjobs' tables, and the crawl job
    yield app
    app.extensions["host_app.jobs"].runtime.db.dispose()
    app.extensions["host_app.db"].kw["bind"].dispose()


def logged_in(app: Flask, username: str, password: str) -> FlaskClient:
    client = app.test_client()
    assert client.post("/login", data={"username": username, "password": password}).status_code == 302
    return client


def crawl_rows(app: Flask) -> list[tuple[str, int, str, int | None]]:
    from examples.host_app import CrawlRequest

    with app.extensions["host_app.db"]() as db:
        return [(r.url, r.max_pages, r.requested_by, r.run_id) for r in db.scalars(select(CrawlRequest))]


def run_count(runtime: Runtime) -> int:
    from lexyjobs.models import Run

    with runtime.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)


def test_a_crawl_request_and_its_run_are_written_together(host: Flask) -> None:
    client = logged_in(host, USER, USER_PASSWORD)
    response = client.post("/api/crawls", json={"url": "https://example.com/", "maxPages": 3})
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"jobId", "statusUrl"} and body["statusUrl"] == f"/api/crawls/{body['jobId']}"
    assert crawl_rows(host) == [("https://example.com/", 3, USER, body["jobId"])]
    runtime: Runtime = host.extensions["host_app.jobs"].runtime
    run = runs.get_run(runtime.db, body["jobId"])
    assert (run.job_name, run.status, run.params) == ("crawl", "queued", {"url": "https://example.com/", "max_pages": 3})
    assert run.created_by == f"code:{USER}"  # the host's user, as the audit names it
    status = client.get(body["statusUrl"])
    assert status.status_code == 200 and status.get_json()["status"] == "queued"


@pytest.mark.parametrize(("payload", "field"), [
    ({"url": "file:///etc/passwd"}, "url"), ({"url": "javascript:alert(1)"}, "url"), ({}, "url"),
    ({"url": "https://example.com/" + "a" * 500}, "url"),
    ({"url": "https://example.com/", "maxPages": 0}, "maxPages"),
    ({"url": "https://example.com/", "maxPages": "ten"}, "maxPages"),
    ({"url": "https://example.com/", "maxPages": True}, "maxPages"), (["https://example.com/"], "JSON object")])
def test_bad_input_gets_a_400_naming_the_field_and_writes_nothing(host: Flask, payload: object, field: str) -> None:
    client = logged_in(host, ADMIN, ADMIN_PASSWORD)
    response = client.post("/api/crawls", json=payload)
    assert response.status_code == 400 and field in response.get_json()["error"], response.get_data(as_text=True)
    assert crawl_rows(host) == [] and run_count(host.extensions["host_app.jobs"].runtime) == 0


def test_a_form_post_or_an_anonymous_caller_is_refused(host: Flask) -> None:
    assert host.test_client().post("/api/crawls", json={"url": "https://example.com/"}).status_code == 401
    client = logged_in(host, ADMIN, ADMIN_PASSWORD)
    assert client.post("/api/crawls", data={"url": "https://example.com/"}).status_code == 400
    assert crawl_rows(host) == []


def test_a_crawl_is_shown_to_whoever_asked_for_it_and_to_admins_only(host: Flask) -> None:
    bob, alice = logged_in(host, USER, USER_PASSWORD), logged_in(host, ADMIN, ADMIN_PASSWORD)
    alices = alice.post("/api/crawls", json={"url": "https://example.com/a"}).get_json()["statusUrl"]
    bobs = bob.post("/api/crawls", json={"url": "https://example.com/b"}).get_json()["statusUrl"]
    assert bob.get(alices).status_code == 404  # not even its existence
    assert bob.get(bobs).status_code == 200 and alice.get(bobs).status_code == 200
    assert host.test_client().get(bobs).status_code == 401
    assert bob.get("/api/crawls/999999").status_code == 404
