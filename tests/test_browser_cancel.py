"""Cancel in the panel, in a real browser (Debian chromium) against a real ``python app.py``, on
SQLite and Postgres: a run that finished before its worker acted on a cancel request shows its
real outcome with "cancel requested at T; it finished first" and the request (who, when) in its
timeline; the Cancel button says what a request means, and the run ends canceled with the
request in its timeline. Screenshots: test-artifacts/cancel-*.png."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import ROOT, wait_for
from liveserver import Server, running_server
from test_browser import ADMIN_PASSWORD, CHROMIUM, CHROMIUM_ARGS, TOKEN, _browser_or_skip

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # _browser_or_skip says so
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow
SHOTS = ROOT / "test-artifacts"
FINISHED_FIRST = re.compile(r"cancel requested at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC; it finished first")


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    _browser_or_skip()
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[jobs.quick]\nkind = "shell"\nargv = ["sh", "-c", "sleep 0.15; echo done"]\n'
                         'max_attempts = 1\n\n'
                         '[jobs.long]\nkind = "shell"\nargv = ["sleep", "30"]\nmax_attempts = 1\n')
    with running_server(db_url, jobs_file, LEXYJOBS_API_TOKEN=TOKEN, LEXYJOBS_ADMIN_PASSWORD=ADMIN_PASSWORD) as srv:
        yield srv


def _run(srv: Server, run_id: int) -> dict[str, Any]:
    status, run = srv.call("GET", f"/api/runs/{run_id}", TOKEN)
    assert status == 200, run
    return run


def _a_run_that_finished_first(srv: Server) -> dict[str, Any]:
    """Cancel runs of ``quick`` right after they start until one finishes before its worker acts
    (its worker sees requests within about a second: most do)."""
    for _ in range(20):
        status, started = srv.call("POST", "/api/jobs/quick/run", TOKEN, {})
        assert status == 202, started
        run_id = started["run_id"]
        wait_for(lambda: _run(srv, run_id)["started_at"], timeout=10)
        status, answer = srv.call("POST", f"/api/runs/{run_id}/cancel", TOKEN)
        run = wait_for(lambda: (r := _run(srv, run_id))["status"] in ("succeeded", "failed", "canceled") and r)
        if status == 202 and run["status"] == "succeeded":
            return run
    raise AssertionError("no run finished before its cancel took effect in 20 tries")


def _log_in(page: Page, srv: Server) -> None:
    page.goto(f"{srv.url}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()


def _click_cancel(page: Page, srv: Server, run_id: int) -> None:
    """Press the run page's Cancel until the request is recorded. The live block is replaced by
    its poll every 2 s; on a loaded machine a click can land on the block being replaced."""
    for _ in range(3):
        page.locator("#run-live button.danger").click()
        try:
            wait_for(lambda: _run(srv, run_id)["cancel_requested_at"], timeout=5)
            return
        except AssertionError:
            page.goto(f"{srv.url}/runs/{run_id}")
    raise AssertionError("the Cancel button never recorded a cancel request")


def test_the_run_page_shows_cancel_requests_and_a_finished_first_note(live_server: Server, db_url: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    database = "postgres" if db_url.startswith("postgresql") else "sqlite"
    run = _a_run_that_finished_first(live_server)
    assert FINISHED_FIRST.fullmatch(run["cancel_note"] or ""), run
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            _log_in(page, live_server)
            page.goto(f"{live_server.url}/runs/{run['id']}")
            assert page.locator(".run-status .badge").first.inner_text().strip() == "succeeded"
            assert page.locator(".cancel-note").inner_text() == run["cancel_note"]
            timeline = page.locator("table.timeline tbody").inner_text()
            assert "cancel requested by token:LEXYJOBS_API_TOKEN" in timeline and "(no change)" in timeline
            assert run["cancel_note"] in timeline  # the note of the run's last change
            page.screenshot(path=str(SHOTS / f"cancel-finished-first-{database}.png"), full_page=True)

            status, started = live_server.call("POST", "/api/jobs/long/run", TOKEN, {})
            assert status == 202
            wait_for(lambda: _run(live_server, started["run_id"])["status"] == "running", timeout=10)
            run_id = started["run_id"]
            page.goto(f"{live_server.url}/runs/{run_id}")
            _click_cancel(page, live_server, run_id)
            notice = page.locator("#run-live .notice")
            if notice.count():  # the live block answered the click (unless its 2 s poll replaced it first)
                assert notice.inner_text().startswith("cancel requested: its worker stops it within about a second")
            wait_for(lambda: _run(live_server, run_id)["status"] == "canceled", timeout=15)
            page.goto(f"{live_server.url}/runs/{run_id}")
            page.locator("#run-live .run-status .badge.canceled").wait_for(timeout=15_000)
            assert "cancel requested by admin" in page.locator("table.timeline tbody").inner_text()
            assert page.locator(".cancel-note").count() == 0
            page.screenshot(path=str(SHOTS / f"cancel-canceled-{database}.png"), full_page=True)
        finally:
            browser.close()
    print(f"screenshots: {SHOTS}/cancel-*-{database}.png")
