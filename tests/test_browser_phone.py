"""Every panel page at phone width (390 × 844) in a real browser (Debian's chromium via playwright,
as test_browser_panel.py), on SQLite and Postgres, with realistic content: no page is wider than
the screen (``document.documentElement.scrollWidth <= 390``: nothing makes the page scroll
sideways, tables scroll inside their own box or become cards), on the Jobs page every Run
button, and on Settings the Revoke and Remove buttons, are on screen without scrolling sideways. With ``LEXYJOBS_SCREENSHOTS=1`` the
SQLite run writes docs/screenshots/jobs-phone.png and settings-phone.png."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser_panel import JOBS_FILE, PHONE, SHOTS, TAKE_SHOTS, Panel, _populate, open_panel

pytestmark = pytest.mark.slow

WIDTH = PHONE["width"]
# What sticks out past the right edge of the screen (for the failure message).
OVERFLOWING = """(width) => [...document.querySelectorAll('body *')]
    .filter(el => { const box = el.getBoundingClientRect(); return box.width > 0 && box.right > width + 0.5; })
    .slice(0, 8).map(el => `${el.tagName.toLowerCase()}.${el.className} right=${Math.round(el.getBoundingClientRect().right)}`)"""


@pytest.fixture
def panel(db_url: str, tmp_path: Path) -> Iterator[Panel]:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS_FILE)
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite"),
                    LEXYJOBS_DEMO_DIR=str(tmp_path / "demo-data")) as panel:
        yield panel


def _fits(panel: Panel, path: str) -> None:
    panel.visit(path)
    width = panel.page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"{path} is {width} px wide at {WIDTH} px: {panel.page.evaluate(OVERFLOWING, WIDTH)}"


def test_every_page_fits_a_phone_and_the_run_buttons_are_on_screen(panel: Panel) -> None:
    page = panel.page
    _populate(panel)
    panel.create_job("wide-" + "x" * 60, title="A job with a very long name that has to wrap somewhere sensible",
                     category="Imports", kind="shell", argv=["sh", "-c", "true"], schedule="every 2 hours")
    run_id = panel.api("GET", "/api/runs?job=crunch-numbers&limit=1")["runs"][0]["id"]
    page.set_viewport_size(PHONE)
    panel.visit("/pipelines")
    pipeline_run = page.locator("table.pipeline-runs a").first.get_attribute("href")
    assert pipeline_run and pipeline_run.startswith("/pipelines/")
    for path in ("/", "/jobs", "/jobs/crunch-numbers", "/jobs/collect-keywords", "/jobs/new",
                 "/jobs/crunch-numbers/edit", "/jobs/crunch-numbers/run", "/jobs/crunch-numbers/delete",
                 "/runs", f"/runs/{run_id}", "/pipelines", pipeline_run, "/queues", "/workers", "/alerts",
                 "/audit", "/settings"):
        _fits(panel, path)

    panel.visit("/jobs")
    runs = page.locator("table.jobs td.actions").get_by_text("Run", exact=True)  # a link or a button
    assert runs.count() == page.locator("table.jobs tbody tr").count() == 9
    for i in range(runs.count()):
        box = runs.nth(i).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, (i, box)
    if panel.shoot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "jobs-phone.png"))

    # Settings: a token and a second user, made with the page's own forms; their buttons on screen
    panel.visit("/settings")
    page.fill("form.settings-form input[name=name]", "ci-deploy")
    page.click("form.settings-form button:has-text('Create token')")
    page.wait_for_load_state()
    panel.visit("/settings")
    users = page.locator("#users form.settings-form")
    users.locator("input[name=username]").fill("ann.operator")
    users.locator("select[name=role]").select_option("operator")
    users.locator("input[name=password]").fill("ann-password-0123456789")
    users.locator("input[name=confirm]").fill("ann-password-0123456789")
    users.locator("button[type=submit]").click()
    page.wait_for_load_state()
    _fits(panel, "/settings")
    for button in (page.get_by_role("button", name="Revoke"), page.locator("#users a.button", has_text="Remove")):
        assert button.count() == 1
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, box
    if panel.shoot:
        page.evaluate("document.getElementById('tokens').scrollIntoView()")
        page.screenshot(path=str(SHOTS / "settings-phone.png"))

    page.click("header form.who button")  # log out: the login page too
    page.wait_for_url(f"{panel.base}/login*")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"/login is {width} px wide"
    panel.assert_clean()


# A wide table scrolling inside a box that is not positioned, its last header visually hidden:
# the shape that made /jobs 679 px and /settings 523 px wide on a 390 px phone.
WIDE_TABLE_WITH_HIDDEN_HEADER = """() => {
    const box = document.createElement('div');
    box.style.overflowX = 'auto';
    const table = document.createElement('table');
    table.style.width = '1000px';
    table.style.display = 'table';
    const row = table.insertRow();
    row.insertCell().textContent = 'a wide cell';
    const th = document.createElement('th');
    const hidden = document.createElement('span');
    hidden.className = 'visually-hidden';
    hidden.textContent = 'Actions';
    th.appendChild(hidden);
    row.appendChild(th);
    box.appendChild(table);
    document.querySelector('main').appendChild(box);
}"""


def test_a_visually_hidden_label_at_the_end_of_a_scrolling_table_does_not_widen_the_page(panel: Panel) -> None:
    page = panel.page
    page.set_viewport_size(PHONE)
    panel.visit("/audit")
    page.evaluate(WIDE_TABLE_WITH_HIDDEN_HEADER)
    assert page.locator("main .visually-hidden", has_text="Actions").count() == 1
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"the page is {width} px wide: {page.evaluate(OVERFLOWING, WIDTH)}"
    panel.assert_clean()
