"""Backfill and health signals in a real browser (Debian's chromium via playwright, as
test_browser_panel.py) against a real ``python app.py`` on SQLite and Postgres: "Backfill…" on a
job's page, the form's preview, Start, the group's page following its progress to "7 of 7 fire
times done" by itself, Cancel of a slow group; the dashboard, the Jobs list and a job's page
showing each health signal with its reason. No script or console errors, CSP violations or
requests off the loopback server. With ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes
docs/screenshots/backfill-form-*, backfill-group-* and health-signals-* (light, dark, phone)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser_panel import TAKE_SHOTS, Panel, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow


@pytest.fixture
def panel(db_url: str, tmp_path: Path) -> Iterator[Panel]:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite"), LEXYJOBS_WORKERS="4") as panel:
        yield panel


def test_a_broken_week_is_backfilled_from_the_job_page(panel: Panel) -> None:
    panel.create_job("keyword-metrics", title="Keyword metrics", category="Metrics", kind="python",
                     func="jobfuncs:fire_time", schedule="0 2 * * *")
    page = panel.page
    panel.visit("/jobs/keyword-metrics")
    page.click(".job-actions a:has-text('Backfill…')")
    expect(page).to_have_url(re.compile(r"/jobs/keyword-metrics/backfill$"))
    expect(page.locator("h1")).to_have_text("Backfill Keyword metrics")
    expect(page.locator("input[name=per][value=fire]")).to_be_checked()

    page.click("button:has-text('Preview')")
    preview = page.locator(".backfill-preview")
    expect(preview).to_contain_text("7 runs of 7 fire times in the range.")
    expect(preview.locator("ol.backfill-times li")).to_have_count(7)
    panel.assert_clean()
    panel.screenshot("backfill-form")

    page.click("button:has-text('Start backfill')")
    expect(page).to_have_url(re.compile(r"/backfills/\d+$"))
    expect(page.locator("main > .flash")).to_contain_text("queued 7 runs.")
    # the runs go one after the other (concurrency 1); the page follows without a reload
    expect(page.locator(".backfill-summary")).to_have_text("7 of 7 fire times done", timeout=30_000)
    expect(page.locator("table.backfill-runs td.status .badge")).to_have_text(["succeeded"] * 7)
    fires = page.locator("table.backfill-runs tbody tr td:first-child").all_inner_texts()
    assert fires == sorted(fires) and all(" 02:00 " in f for f in fires), fires
    assert page.locator("button:has-text('Cancel backfill')").count() == 0  # finished: nothing to cancel
    first_run = page.locator("table.backfill-runs tbody tr a").first.inner_text().lstrip("#")
    assert panel.api("GET", f"/api/runs/{first_run}")["result"] == fires[0].replace(" UTC", "").replace(" ", "T") + ":00+00:00"
    panel.assert_clean()
    panel.screenshot("backfill-group")

    panel.visit("/jobs/keyword-metrics")
    expect(page.locator("table.backfills")).to_contain_text("7 of 7 fire times done")


def test_a_slow_backfill_is_canceled_as_a_group(panel: Panel) -> None:
    panel.create_job("ingest", title="Corpus ingestion", kind="shell", argv=["sh", "-c", "sleep 60"], max_concurrency=0)
    page = panel.page
    panel.visit("/jobs/ingest/backfill")
    expect(page.locator("input[name=per][value=day]")).to_be_checked()  # no schedule: per day
    page.fill("input[name=concurrency]", "2")
    page.click("button:has-text('Start backfill')")
    expect(page.locator(".backfill-summary")).to_have_text("0 of 7 days done")
    expect(page.locator("table.backfill-runs td.status .badge:has-text('running')")).to_have_count(2, timeout=15_000)
    page.click("button:has-text('Cancel backfill')")
    expect(page.locator("main > .flash")).to_contain_text("Canceled 5 queued runs")
    expect(page.locator(".backfill-summary")).to_have_text("0 of 7 days done, canceled")
    expect(page.locator("table.backfill-runs td.status .badge")).to_have_text(["canceled"] * 7, timeout=15_000)
    expect(page.locator("main > .flash")).to_contain_text("Canceled 5 queued runs")  # through the refreshes
    panel.assert_clean()


def test_the_health_signals_are_shown_with_their_reasons(panel: Panel) -> None:
    panel.create_job("keyword-metrics", title="Keyword metrics", category="Metrics", kind="python",
                     func="jobfuncs:noop", expected_duration="10m..40m")
    panel.create_job("brand-collection", title="Brand collection", category="Crawls", kind="python",
                     func="jobfuncs:noop", max_runs_per_hour=2)
    panel.create_job("corpus-ingest", title="Corpus ingestion", category="Corpus", kind="shell",
                     argv=["sh", "-c", "sleep 60"], expected_duration="..2s")
    panel.wait_status(panel.run_job("keyword-metrics"), "succeeded")
    for _ in range(3):
        panel.wait_status(panel.run_job("brand-collection"), "succeeded")
    slow = panel.run_job("corpus-ingest")
    panel.wait_status(slow, "running")
    page = panel.page
    page.wait_for_timeout(2500)  # past its expected 2 s
    panel.visit("/")
    signals = page.locator("table.health-signals")
    expect(signals.locator("tbody tr")).to_have_count(3)
    expect(signals).to_contain_text("too short")
    expect(signals).to_contain_text("(expected 10m..40m; too short under 10m)")
    expect(signals).to_contain_text("3 runs in the last hour (at most 2: max_runs_per_hour)")
    expect(signals).to_contain_text(f"run {slow} running")
    panel.assert_clean()
    panel.screenshot("health-signals")
    panel.screenshot("health-signals", phone=True)

    panel.visit("/jobs/corpus-ingest")
    expect(page.locator("#job-health .signal")).to_have_text("too long")
    expect(page.locator("#job-health")).to_contain_text("(expected ..2s; too long after 2s)")
    panel.visit("/jobs?health=warning")
    # by category: Corpus, Crawls, Metrics
    expect(page.locator("td[data-label=Health] .signal")).to_have_text(["too long", "too often", "too short"])
    panel.api("POST", f"/api/runs/{slow}/cancel")
