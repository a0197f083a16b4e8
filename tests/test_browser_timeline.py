"""The Timeline page in a real browser (Debian's chromium via playwright, as test_browser_panel.py),
SQLite and Postgres: a day of history for a handful of jobs (overlapping runs, waits, failures, a
run still running, one still queued) drawn as bars; clicking a bar opens its run; a run enqueued
meanwhile appears without a reload; at 390 px only the chart scrolls sideways, never the page. No
script or console errors, CSP violations or requests off the loopback server. With
``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes docs/screenshots/timeline-light.png, -dark.png and
-phone.png."""
from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import drive_run
from test_browser_panel import PHONE, TAKE_SHOTS, Panel, open_panel

from lexyjobs.db import Database
from lexyjobs.runs import RunRequest, enqueue_many
from lexyjobs.states import RunStatus

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow

# name, category, title, schedule, minutes between runs (None: by hand), typical minutes a run takes
JOBS = (
    ("crawl-sites", "Data Collection", "Crawl the tracked sites", "every 20m", 20, 7),
    ("collect-keywords", "Data Collection", "Collect keywords", "0 */4 * * *", 240, 35),
    ("keyword-metrics", "Metrics", "Keyword metrics collection", "30 * * * *", 60, 12),
    ("social-metrics", "Metrics", "Social metrics", "every 45m", 45, 4),
    ("nightly-report", "Reports", "Nightly report", "0 2 * * *", 1440, 50),
    ("sync-invoices", "Billing", "Sync invoices with the ledger", "15 * * * *", 60, 3),
    ("embed-corpus", "AI Corpus", "Embed new documents", None, 150, 95),
    ("vacuum-db", "Maintenance", "Vacuum the database", "0 */6 * * *", 360, 18),
)


@pytest.fixture
def panel(db_url: str, tmp_path: Path) -> Iterator[Panel]:
    """The server with no worker threads (the history below stays as written; a heartbeat goes
    stale only after a day) and a chromium page logged in as admin."""
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite"),
                    LEXYJOBS_WORKERS="0", LEXYJOBS_STALE_AFTER="86400") as panel:
        yield panel


def make_history(panel: Panel, db_url: str) -> dict[str, int]:
    """A day of runs of JOBS, oldest first; returns a few run ids worth a look."""
    for name, category, title, schedule, _, _ in JOBS:
        panel.create_job(name, title=title, category=category, kind="shell", argv=["sh", "-c", "true"],
                         max_concurrency=0, **({"schedule": schedule} if schedule else {}))
    rng, now = random.Random(17), datetime.now(UTC)
    planned: list[tuple[datetime, str, RunStatus, float, float]] = []
    for name, _, _, _, every, takes in JOBS:
        at = now - timedelta(hours=25) + timedelta(minutes=rng.uniform(0, every))
        while at < now - timedelta(minutes=takes + 2):
            draw = rng.random()
            status = RunStatus.FAILED if draw < 0.08 else RunStatus.CANCELED if draw < 0.1 else RunStatus.SUCCEEDED
            waited = rng.choice((2, 5, 20, 90)) if rng.random() < 0.8 else rng.uniform(300, 1500)
            planned.append((at, name, status, waited, takes * 60 * rng.uniform(0.5, 1.4)))
            at += timedelta(minutes=every * rng.uniform(0.9, 1.1) if name != "embed-corpus" else every * rng.uniform(0.2, 1.2))
    planned.append((now - timedelta(minutes=40), "embed-corpus", RunStatus.RUNNING, 30, 0))
    planned.append((now - timedelta(minutes=25), "embed-corpus", RunStatus.RUNNING, 60, 0))
    planned.append((now - timedelta(minutes=6), "vacuum-db", RunStatus.QUEUED, 0, 0))
    planned.sort(key=lambda plan: plan[0])
    db, found = Database(db_url), {}
    try:
        for at, name, status, waited, took in planned:
            [run_id] = enqueue_many(db, [RunRequest(name)], now=at)
            drive_run(db, run_id, status, queued_for=waited, ran_for=took)
            found[f"{name}:{status}"] = run_id  # the newest of each
    finally:
        db.dispose()
    return found


def test_the_timeline_draws_the_day_and_a_bar_opens_its_run(panel: Panel, db_url: str) -> None:
    page = panel.page
    runs = make_history(panel, db_url)
    panel.visit("/timeline")
    expect(page.locator(".timeline-labels .tl-name")).to_have_count(len(JOBS))
    assert page.locator("a.tl-bar").count() > 60
    expect(page.locator(f'a.tl-bar[data-run="{runs["embed-corpus:running"]}"] rect.tl-ran.tl-running')).to_have_count(1)
    assert page.locator(".tl-fire").count() >= 9 and page.locator("line.tl-now").count() == 1
    panel.screenshot("timeline")

    failed = runs["sync-invoices:failed"]
    page.click(f'a.tl-bar[data-run="{failed}"]')
    page.wait_for_url(f"{panel.base}/runs/{failed}")
    expect(page.locator("h1")).to_contain_text(str(failed))
    panel.assert_clean()


def test_a_new_run_appears_without_a_reload(panel: Panel, db_url: str) -> None:
    page = panel.page
    panel.create_job("ping", title="Ping", category="Checks", kind="shell", argv=["sh", "-c", "true"])
    panel.visit("/timeline?window=1h")
    page.evaluate("window.__noReload = true")  # gone if the page reloads
    expect(page.locator("a.tl-bar")).to_have_count(0)
    run_id = panel.run_job("ping")  # no worker: it waits, a growing hatched bar
    expect(page.locator(f'a.tl-bar[data-run="{run_id}"]')).to_have_count(1, timeout=10_000)
    assert page.evaluate("window.__noReload") is True
    panel.assert_clean()


def test_on_a_phone_only_the_chart_scrolls_sideways_and_it_opens_at_now(panel: Panel, db_url: str) -> None:
    page = panel.page
    make_history(panel, db_url)
    page.set_viewport_size(PHONE)
    panel.visit("/timeline")
    sizes = page.evaluate("""() => {
        const scroll = document.querySelector('.timeline-scroll');
        return {page: document.documentElement.scrollWidth, view: window.innerWidth,
                chart: scroll.scrollWidth, box: scroll.clientWidth, left: scroll.scrollLeft};
    }""")
    assert sizes["page"] <= sizes["view"], sizes                  # the page does not scroll sideways
    assert sizes["chart"] > sizes["box"], sizes                   # the chart does, inside its box
    assert sizes["left"] >= sizes["chart"] - sizes["box"] - 1, sizes  # opened at its right end: now
    if panel.shoot:
        page.emulate_media(color_scheme="light")
        page.screenshot(path=str(Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "timeline-phone.png"))

    # a reader who scrolled back keeps the place when the chart refreshes
    panel.visit("/timeline?window=1h")
    page.evaluate("document.querySelector('.timeline-scroll').scrollLeft = 40")
    run_id = panel.run_job("vacuum-db")
    expect(page.locator(f'a.tl-bar[data-run="{run_id}"]')).to_have_count(1, timeout=10_000)
    assert page.evaluate("document.querySelector('.timeline-scroll').scrollLeft") == 40
