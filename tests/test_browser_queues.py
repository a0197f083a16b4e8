"""The Queues page in a real browser (Debian's chromium via playwright, as test_browser_panel.py):
a real ``python app.py`` and a second process, ``lexyjobs worker --queues ai:1``, on one database,
SQLite and Postgres. The page lists each queue with its depth, running runs and the processes
serving it; an operator pauses a queue with its button (the table updates without a reload), runs
enqueued meanwhile stay queued, and resuming lets them run; the jobs page pauses a whole category
with one button. No script or console errors, CSP violations or requests off the loopback server.
With ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes docs/screenshots/queues-light.png, -dark.png
and -phone.png."""
from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, wait_for
from test_browser_panel import SHOTS, TAKE_SHOTS, Panel, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow

ROW = "#queues-live table.queues tbody tr#queue-{}"


@pytest.fixture
def panel(db_url: str, tmp_path: Path) -> Iterator[Panel]:
    """The server (2 worker threads, no jobs file) and a chromium page logged in as admin."""
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite"),
                    LEXYJOBS_WORKERS="2") as panel:
        yield panel


@pytest.fixture
def ai_worker(panel: Panel, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``lexyjobs worker --queues ai:1`` on the server's database; SIGTERM afterwards."""
    with open(tmp_path / "worker.log", "wb") as out:
        proc = subprocess.Popen([PYTHON, "-m", "lexyjobs", "worker", "--queues", "ai:1", "--threads", "2"], cwd=ROOT,
                                env=panel.srv.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_the_queues_page_shows_pauses_and_resumes_queues_live(panel: Panel, ai_worker: subprocess.Popen[bytes]) -> None:
    page = panel.page
    panel.create_job("summarize", title="Summarize with an LLM", category="AI", kind="shell", queue="ai",
                     max_concurrency=0, argv=["sh", "-c", "sleep 4"])
    panel.create_job("crawl-site", title="Crawl a site", category="Crawling", kind="shell", queue="crawl",
                     max_concurrency=0, argv=["sh", "-c", "sleep 0.2"])
    panel.create_job("nightly-report", title="Nightly report", category="Reports", kind="shell",
                     schedule="0 3 * * *", argv=["sh", "-c", "true"])
    second = f"{socket.gethostname()}:{ai_worker.pid}"
    panel.visit("/queues")
    page.evaluate("window.__noReload = true")  # gone if the page reloads
    expect(page.locator("#queues-live tbody tr")).to_have_count(3)
    expect(page.locator(ROW.format("ai") + " td.served")).to_contain_text(f"{second} max 1", timeout=20_000)

    # pause the crawl queue with its button: the table changes in place
    page.click(f"{ROW.format('crawl')} button:has-text('Pause')")
    expect(page.locator(ROW.format("crawl"))).to_contain_text("paused by admin")
    expect(page.locator(ROW.format("crawl"))).to_contain_text("schedules still fire")
    crawls = [panel.run_job("crawl-site") for _ in range(4)]
    summaries = [panel.run_job("summarize") for _ in range(3)]
    for run_id in summaries:
        panel.wait_status(run_id, "running")
    expect(page.locator(f"{ROW.format('crawl')} td.num").first).to_contain_text("4")  # brought by the poll
    expect(page.locator(f"{ROW.format('ai')} td.num").nth(1)).to_have_text("3")     # running
    time.sleep(1.5)
    assert [panel.api("GET", f"/api/runs/{run_id}")["status"] for run_id in crawls] == ["queued"] * 4
    panel.assert_clean()
    if panel.shoot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        panel.screenshot("queues")
        panel.screenshot("queues", phone=True)

    page.click(f"{ROW.format('crawl')} button:has-text('Resume')")
    expect(page.locator(ROW.format("crawl"))).to_contain_text("active")
    for run_id in crawls:
        panel.wait_status(run_id, "succeeded")
    assert page.evaluate("window.__noReload") is True
    panel.assert_clean()

    # the jobs page: a whole category in one action
    page.click("header nav >> text=Jobs")
    page.wait_for_url(f"{panel.base}/jobs")
    page.click("section.job-group:has(h2:has-text('Reports')) form.category-action button")
    page.wait_for_url(f"{panel.base}/jobs")
    expect(page.locator(".flash")).to_contain_text("Paused 1 job of Reports.")
    expect(page.locator("section.job-group:has(h2:has-text('Reports')) .paused-badge")).to_have_count(1)
    expect(page.locator("section.job-group:has(h2:has-text('Reports')) form.category-action button")).to_have_text(
        "Resume all")
    assert panel.api("GET", "/api/jobs/nightly-report")["enabled"] is False
    panel.assert_clean()
    for run_id in summaries:
        panel.api("POST", f"/api/runs/{run_id}/cancel")
    wait_for(lambda: all(panel.api("GET", f"/api/runs/{run_id}")["status"] in ("canceled", "succeeded")
                         for run_id in summaries), timeout=20)
