"""Why runs wait, in a real browser (Debian's chromium via playwright, as test_browser_panel.py)
against a real ``python app.py`` (4 worker threads) on SQLite and Postgres: the runs list says
for each queued run what holds it back — the job's limit, a concurrency key, a rate limit — and
badges delayed and retrying runs with their time; the Scheduled view lists those soonest first;
a waiting run's page names the run holding its job's limit and, without a reload, shows it
starting once that run is canceled; the job page shows its limits in use. No script or console
errors, CSP violations or requests off the loopback server. With ``LEXYJOBS_SCREENSHOTS=1`` the
SQLite run writes docs/screenshots/runs-waiting-*, runs-scheduled-*, run-waiting-* and
job-limits-* (light, dark, 390 px phone)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import wait_for
from test_browser_panel import DESKTOP, PHONE, SHOTS, TAKE_SHOTS, Panel, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow

SLEEP = ["sh", "-c", "sleep 60"]


@pytest.fixture
def panel(db_url: str, tmp_path: Path) -> Iterator[Panel]:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite"), LEXYJOBS_WORKERS="4") as panel:
        yield panel


def row(panel: Panel, run_id: int):  # type: ignore[no-untyped-def]
    return panel.page.locator(f"tr#run-{run_id}")


def shoot(panel: Panel, name: str, focus: str) -> None:
    """Light and dark at desktop size with ``focus`` in view, and a 390 px phone shot of it."""
    if not panel.shoot:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = panel.page
    page.locator(focus).first.scroll_into_view_if_needed()
    panel.screenshot(name)
    page.set_viewport_size(PHONE)
    page.locator(focus).first.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(SHOTS / f"{name}-phone.png"))
    page.set_viewport_size(DESKTOP)
    page.evaluate("window.scrollTo(0, 0)")


def test_every_waiting_run_says_why_and_delayed_ones_show_their_time(panel: Panel) -> None:
    panel.create_job("nightly-report", title="Nightly report", category="Reports", kind="shell", argv=SLEEP)
    panel.create_job("crawl-site", title="Crawl a site", category="Crawls", kind="shell", argv=SLEEP, max_concurrency=0,
                     concurrency_key="site:{site_id}", params={"site_id": {"type": "string", "default": "acme"}})
    panel.create_job("call-openai", title="Call OpenAI", category="AI", kind="shell", argv=["true"],
                     max_concurrency=0, rate_limit="1/h")
    panel.create_job("sync-brand", title="Sync brand", category="Brands", kind="shell", argv=["sh", "-c", "exit 3"],
                     max_attempts=3, backoff="1h", backoff_jitter=0)
    report_holder = panel.run_job("nightly-report")
    panel.wait_status(report_holder, "running")
    report_waiting = panel.run_job("nightly-report")
    crawl_holder = panel.run_job("crawl-site", {"site_id": "acme"})
    panel.wait_status(crawl_holder, "running")
    crawl_waiting = panel.run_job("crawl-site", {"site_id": "acme"})
    openai_first = panel.run_job("call-openai")
    panel.wait_status(openai_first, "succeeded")
    openai_held = panel.run_job("call-openai")
    retrying = panel.run_job("sync-brand")
    retry = wait_for(lambda: (r := panel.api("GET", f"/api/runs/{retrying}"))["attempt"] == 1  # failed once,
                     and r["status"] == "queued" and r, timeout=20)                        # queued again
    assert retry["waiting_for"]["reason"] == "due"
    run_at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    delayed = int(panel.api("POST", "/api/jobs/nightly-report/run", {"run_at": run_at.isoformat()},
                            expect_status=202)["run_id"])
    wait_for(lambda: panel.api("GET", f"/api/runs/{openai_held}")["waiting_for"]["reason"] == "rate_limit", timeout=20)

    panel.visit("/runs")
    expect(row(panel, report_waiting).locator("td.waiting")).to_contain_text(
        f"runs at most 1 at a time (max_concurrency): run #{report_holder} is running")
    expect(row(panel, crawl_waiting).locator("td.waiting")).to_contain_text(
        f"Concurrency key 'site:acme' allows 1 run at a time: run #{crawl_holder} holds it")
    expect(row(panel, openai_held).locator("td.waiting")).to_contain_text("Over the rate limit of job call-openai")
    expect(row(panel, delayed).locator(".due-badge")).to_have_text(f"due {run_at:%H:%M}")
    expect(row(panel, retrying).locator(".due-badge.retry")).to_contain_text("retry at")
    expect(row(panel, report_waiting).locator(".due-badge")).to_have_count(0)  # held back, not delayed
    panel.assert_clean()
    shoot(panel, "runs-waiting", "table.runs")

    panel.visit("/runs?view=scheduled")
    ids = [int(i.split("-")[1]) for i in panel.page.locator("table.runs tbody tr[id]").evaluate_all(
        "rows => rows.map(r => r.id)")]
    assert ids == [retrying, delayed]  # the retry is due in 1 h, the delayed run in 2 h
    panel.assert_clean()
    shoot(panel, "runs-scheduled", "nav.tabs")

    panel.visit("/jobs/crawl-site")
    limits = panel.page.locator("#job-limits")
    expect(limits).to_contain_text("site:acme: 1 running of 1")
    expect(limits).to_contain_text("site:{site_id}")
    panel.assert_clean()
    shoot(panel, "job-limits", "#job-limits")

    panel.visit(f"/runs/{report_waiting}")
    page = panel.page
    page.evaluate("window.__noReload = true")
    expect(page.locator(".waiting-for")).to_contain_text(f"run #{report_holder} is running")
    expect(page.locator(f".waiting-for a[href='/runs/{report_holder}']")).to_be_visible()
    assert "waits in the queue until a worker" not in page.content()
    shoot(panel, "run-waiting", "h1")
    panel.api("POST", f"/api/runs/{report_holder}/cancel")  # the holder goes: the waiting run starts
    expect(page.locator("#run-live .run-status .badge.running")).to_be_visible(timeout=15_000)
    expect(page.locator(".waiting-for")).to_have_count(0)
    assert page.evaluate("window.__noReload") is True
    panel.assert_clean()
    for run_id in (report_waiting, crawl_holder, crawl_waiting, openai_held, retrying, delayed):
        panel.api("POST", f"/api/runs/{run_id}/cancel")
