"""Issue 17's small fixes on the job pages, in a real browser (Debian's chromium via playwright, as
test_browser_panel.py), on SQLite and Postgres: links take the theme's colours in light and dark
mode; a pipeline's first job has one "Run pipeline" button (and a manual-only job no Pause); a
job others depend on cannot be deleted, its page saying which; the job form's verify_tls is a
checkbox whose value survives a save; help texts show `code` as code; the schedule preview takes
"every 2 hours" and names a bad cron field. With ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes
docs/screenshots/job-pipeline-first-*, job-delete-refused-* and job-form-http-* (light, dark)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser_panel import SHOTS, TAKE_SHOTS, Panel, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow

LIGHT_LINK, DARK_LINK = "rgb(31, 86, 194)", "rgb(143, 179, 255)"   # --link in app.css
BROWSER_BLUE = "rgb(0, 0, 238)"
NOOP = {"kind": "python", "func": "jobfuncs:noop"}


@pytest.fixture
def panel(db_url: str, tmp_path: Path) -> Iterator[Panel]:
    """The server with extract → transform (manual jobs from the API) and a chromium page."""
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite")) as panel:
        panel.create_job("extract", title="Extract orders", category="Warehouse", **NOOP)
        panel.create_job("transform", title="Transform orders", category="Warehouse", depends_on=["extract"], **NOOP)
        if panel.shoot:
            SHOTS.mkdir(parents=True, exist_ok=True)
        yield panel


def _color(panel: Panel, selector: str) -> str:
    return str(panel.page.locator(selector).first.evaluate("el => getComputedStyle(el).color"))


def test_links_take_the_theme_colours_in_light_and_dark(panel: Panel) -> None:
    page = panel.page
    panel.visit("/jobs/transform")
    nav = _color(panel, "header nav a:not([aria-current])")
    for scheme, link in (("light", LIGHT_LINK), ("dark", DARK_LINK)):
        page.emulate_media(color_scheme=scheme)
        assert _color(panel, "p.crumbs a") == link, scheme          # a link in the text
        assert _color(panel, "section a[href='/jobs/extract']") == link, scheme
        assert _color(panel, "header nav a:not([aria-current])") == nav  # the header keeps its own
        assert _color(panel, "a.button.primary, button.primary") == "rgb(255, 255, 255)"  # buttons too
    page.emulate_media(color_scheme="light")
    assert LIGHT_LINK != BROWSER_BLUE
    panel.assert_clean()


def test_a_pipelines_first_job_has_one_run_pipeline_button_and_no_pause(panel: Panel) -> None:
    page = panel.page
    panel.visit("/jobs/extract")
    actions = page.locator(".job-actions")
    expect(actions.locator("a, button")).to_have_text(["Run pipeline", "Backfill…"])  # not Run + "Run pipeline from here"
    panel.screenshot("job-pipeline-first")
    panel.visit("/jobs/transform")  # the last step: Run only (manual: nothing to pause)
    expect(page.locator(".job-actions a, .job-actions button")).to_have_text(["Run", "Backfill…"])

    panel.visit("/jobs/extract")
    page.click(".job-actions button:has-text('Run pipeline')")
    page.wait_for_url(f"{panel.base}/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    run = panel.wait_status(run_id, "succeeded")
    assert run["pipeline_id"], run
    follows = panel.api("GET", "/api/runs?job=transform")["runs"]
    assert follows == [] or follows[0]["pipeline_id"] == run["pipeline_id"]
    panel.assert_clean()


def test_an_upstream_job_cannot_be_deleted_and_its_page_says_which_jobs_depend_on_it(panel: Panel) -> None:
    page = panel.page
    panel.visit("/jobs/extract/edit")
    zone = page.locator(".danger-zone")
    expect(zone).to_contain_text("extract cannot be deleted: this job depends on it.")
    expect(zone.locator("input, button")).to_have_count(0)  # no name box, no Delete button
    panel.visit("/jobs/extract/delete")
    expect(page.locator(".danger-zone input, .danger-zone button")).to_have_count(0)
    panel.screenshot("job-delete-refused")
    page.click(".danger-zone ul.dependents a:has-text('transform')")
    page.wait_for_url(f"{panel.base}/jobs/transform")
    panel.assert_clean()

    panel.visit("/jobs/transform/delete")  # nothing depends on it: the name is asked for
    page.fill("input[name=confirm]", "transform")
    page.click("button:has-text('Delete')")
    page.wait_for_url(f"{panel.base}/jobs")
    panel.api("GET", "/api/jobs/transform", expect_status=404)
    panel.assert_clean()


def test_verify_tls_is_a_checkbox_and_help_shows_code(panel: Panel) -> None:
    page = panel.page
    panel.visit("/jobs/new")
    page.select_option("#f_kind", "http")
    checkbox = page.locator("#k_verify_tls")
    expect(checkbox).to_have_attribute("type", "checkbox")
    expect(checkbox).to_be_checked()
    expect(page.locator("#kind-fields label[for=k_url] code").first).to_have_text("http://")
    assert "`" not in page.locator("form.job-form").inner_text()
    page.fill("#f_name", "self-signed")
    page.fill("#k_url", "https://10.0.0.5/hook")
    checkbox.uncheck()
    page.locator("#kind-fields").scroll_into_view_if_needed()
    panel.screenshot("job-form-http")
    page.click("button:has-text('Create job')")
    page.wait_for_url(f"{panel.base}/jobs/self-signed")
    assert panel.api("GET", "/api/jobs/self-signed")["definition"]["verify_tls"] is False

    panel.visit("/jobs/self-signed/edit")
    expect(page.locator("#k_verify_tls")).not_to_be_checked()  # the saved false
    page.check("#k_verify_tls")
    page.click("button:has-text('Save')")
    page.wait_for_url(f"{panel.base}/jobs/self-signed")
    assert panel.api("GET", "/api/jobs/self-signed")["definition"]["verify_tls"] is True
    panel.assert_clean()


def test_the_schedule_preview_takes_words_and_names_a_bad_cron_field(panel: Panel) -> None:
    page = panel.page
    panel.visit("/jobs/new")
    page.locator("#f_schedule").press_sequentially("every 2 hours", delay=10)
    expect(page.locator("#cron-preview strong")).to_have_text("Every 2 hours (interval)")
    page.fill("#f_schedule", "")
    page.locator("#f_schedule").press_sequentially("every day at 02:00", delay=10)
    expect(page.locator("#cron-preview strong")).to_have_text("At 02:00 every day (UTC)")
    page.fill("#f_schedule", "")
    page.locator("#f_schedule").press_sequentially("61 25 * * *", delay=10)
    expect(page.locator("#cron-preview .form-error")).to_have_text(
        "schedule: minute 61 is out of range 0–59; hour 25 is out of range 0–23")
    panel.assert_clean()
