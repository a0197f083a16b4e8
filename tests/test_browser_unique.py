"""A unique job in a real browser: pressing "Run now" for a site whose crawl is already queued
lands on that run's page with the flash saying so, and no second run is made (seed 004's
duplicate crawl). With ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes
docs/screenshots/run-duplicate-{light,dark,phone}.png."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_browser_panel import TAKE_SHOTS, open_panel

pytestmark = pytest.mark.slow

JOBS_FILE = """
[jobs.crawl]
title = "Crawl a site"
category = "Data Collection"
kind = "python"
func = "jobfuncs:noop"
unique = ["site_id"]
params = { site_id = { type = "integer", required = true, help = "the site to crawl" } }
"""


def test_run_now_of_a_duplicate_crawl_shows_the_queued_run_with_a_flash(db_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect  # open_panel skips the test first when playwright is missing

    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS_FILE)
    shoot = TAKE_SHOTS and db_url.startswith("sqlite")
    with open_panel(db_url, jobs_file, shoot=shoot, LEXYJOBS_WORKERS="0") as panel:
        queued = panel.run_job("crawl", {"site_id": 42})
        page = panel.page
        page.goto(f"{panel.base}/jobs/crawl/run")
        page.fill("input[name=site_id]", "42")
        page.click("form.run-form button[type=submit]")
        page.wait_for_url(f"{panel.base}/runs/{queued}")
        flash = page.locator(".flash")
        expect(flash).to_have_text(f"run {queued} of job crawl is already queued with the same site_id=42; "
                                   "not enqueued again")
        listing = panel.api("GET", "/api/runs?job=crawl", expect_status=200)
        assert [run["id"] for run in listing["runs"]] == [queued]
        panel.screenshot("run-duplicate")
        panel.screenshot("run-duplicate", phone=True)
        page.reload()
        expect(page.locator(".flash")).to_have_count(0)  # shown once
        panel.assert_clean()
