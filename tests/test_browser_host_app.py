"""The example host app (examples/host_app) in real Chromium, served by a real
``python -m examples.host_app`` (waitress) on SQLite and Postgres: the host's admin logs in
through the host's own /login, opens the panel mounted at /admin/jobs, runs the crawl job from
its run-now form and watches the run finish on its page without a reload; then the host's own
page calls ``POST /api/crawls`` (202 {jobId, statusUrl}) and polls the statusUrl until the crawl
is done. Screenshots go to test-artifacts/host-app-*.png."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from example_host import ADMIN, ADMIN_PASSWORD, spawn_host, start_waitress  # noqa: F401 (fixture)
from liveserver import keep_on_loopback
from sqlalchemy import create_engine, text
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _browser_or_skip
from test_browser_panel import RECORD_STATUSES, STATUS_BADGE

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # _browser_or_skip says so
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow

PREFIX = "/admin/jobs"
CREATE_AND_POLL = """async ([url, maxPages]) => {
    const created = await fetch('/api/crawls', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                 body: JSON.stringify({url, maxPages})});
    const answer = {status: created.status, body: await created.json(), polls: []};
    for (let i = 0; i < 150; i++) {
        const polled = await fetch(answer.body.statusUrl);
        const body = await polled.json();
        answer.polls.push(body.status);
        if (polled.status !== 200 || ['succeeded', 'failed', 'canceled'].includes(body.status)) {
            answer.final = {status: polled.status, body};
            break;
        }
        await new Promise(resolve => setTimeout(resolve, 100));
    }
    return answer;
}"""


@pytest.fixture
def browser_page(db_url: str, spawn_host) -> Iterator[tuple[Page, str, list[str]]]:  # type: ignore[no-untyped-def]
    _browser_or_skip()
    _, base = start_waitress(spawn_host, db_url)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        blocked: list[str] = []
        keep_on_loopback(context, base, blocked)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
        yield page, base, problems
        problems.extend(f"left loopback: {url}" for url in blocked)
        browser.close()


def shot(page: Page, name: str, db_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"host-app-{name}-{db_url.split(':')[0].split('+')[0]}.png"), full_page=True)


def log_in_through_the_host(page: Page, base: str) -> None:
    page.goto(f"{base}{PREFIX}/")
    page.wait_for_url(lambda url: url.startswith(f"{base}/login?next="))  # the host's login page, not lexyjobs' own
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}{PREFIX}/")


def in_seconds(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def test_the_host_admin_runs_a_job_from_the_mounted_panel_and_watches_it_finish(browser_page, db_url) -> None:
    page, base, problems = browser_page
    log_in_through_the_host(page, base)
    shot(page, "dashboard", db_url)
    page.goto(f"{base}{PREFIX}/jobs")
    row = page.locator("tr", has=page.locator("code", has_text="crawl"))
    row.locator(f"a[href$='{PREFIX}/jobs/crawl/run']").click()
    page.wait_for_url(f"{base}{PREFIX}/jobs/crawl/run")
    page.fill("input[name=url]", f"{base}/")
    page.fill("input[name=max_pages]", "2")
    page.click("summary:has-text('Priority and time')")
    page.fill("input[name=run_at]", in_seconds(3))  # due in 3 s: its page opens while it is still queued
    shot(page, "run-form", db_url)
    page.click("button:has-text('Run now')")

    page.wait_for_url(lambda url: url.startswith(f"{base}{PREFIX}/runs/"))
    page.evaluate(RECORD_STATUSES)
    expect(page.locator(STATUS_BADGE)).to_have_text("queued")
    expect(page.locator(STATUS_BADGE)).to_have_text("succeeded", timeout=20_000)
    assert page.evaluate("window.__noReload") is True, "the run page reloaded instead of updating live"
    statuses = page.evaluate("window.__statuses")
    assert statuses[0] == "queued" and statuses[-1] == "succeeded", statuses
    expect(page.locator("body")).to_contain_text("pagesCrawled")
    shot(page, "run-succeeded", db_url)
    # Every link of the mounted panel stays under the prefix (a link to /runs would leave it).
    hrefs = page.eval_on_selector_all("a[href^='/']", "links => links.map(a => a.getAttribute('href'))")
    assert hrefs and all(h.startswith(PREFIX) or h in ("/", "/admin") for h in hrefs), hrefs
    assert problems == []


def test_the_hosts_202_route_enqueues_with_its_row_and_its_status_url_follows_the_run(
        browser_page, db_url) -> None:
    page, base, problems = browser_page
    log_in_through_the_host(page, base)
    page.goto(f"{base}/admin")
    answer: dict[str, Any] = page.evaluate(CREATE_AND_POLL, [f"{base}/", 5])
    assert answer["status"] == 202, answer
    job_id, status_url = answer["body"]["jobId"], answer["body"]["statusUrl"]
    assert isinstance(job_id, int) and status_url == f"/api/crawls/{job_id}", answer
    assert answer["final"]["status"] == 200 and answer["final"]["body"]["status"] == "succeeded", answer
    # /, /about and /login: the whole site as an anonymous visitor sees it
    assert answer["final"]["body"]["result"] == {"pagesCrawled": 3, "linksFound": 11}, answer
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT url, max_pages, requested_by, run_id FROM crawl_requests")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(f"{base}/", 5, ADMIN, job_id)]
    page.goto(f"{base}{PREFIX}/runs/{job_id}")
    expect(page.locator(STATUS_BADGE)).to_have_text("succeeded")
    expect(page.locator("#run-live .run-progress")).to_contain_text("100%")
    expect(page.locator("body")).to_contain_text(f"{base}/about: 4 links")  # the job's log
    shot(page, "api-crawl-run", db_url)
    bad = page.evaluate("""async () => { const r = await fetch('/api/crawls', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({url: 'file:///etc/passwd'})});
        return [r.status, await r.json()]; }""")
    assert bad[0] == 400 and "url" in bad[1]["error"], bad
    assert problems == []
    print(json.dumps(answer["polls"]))
