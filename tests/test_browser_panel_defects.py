"""Issue 17's defects A2–A5 seen in real Chromium against a real ``python app.py`` (SQLite and
Postgres), each through the pages an operator uses:

- A2: a finished pipeline run keeps the steps it started with when a job is added downstream later;
- A3: Pause, the Enabled box, the jobs list and the API say the same thing, whichever one changed it;
- A4: the dashboard's status cards (canceled among them) add up to the total;
- A5: a parameter default holding ``<``, ``>`` and ``&`` shows those characters on the job page,
  not tojson's ``\\u003c`` escapes, and nothing in it becomes markup."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_browser_panel import Panel, panel  # noqa: F401  (the fixture)

from conftest import wait_for

pytestmark = pytest.mark.slow

HOSTILE = '"><img src=x id=pwned> & <b>bold</b>'


def _later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_a_finished_pipeline_run_keeps_its_steps_when_a_job_is_added_downstream(panel: Panel) -> None:
    root = panel.run_job("collect-keywords")
    pipeline_id = panel.api("GET", f"/api/runs/{root}")["pipeline_id"]
    assert pipeline_id

    def steps_succeeded() -> bool:
        runs = panel.api("GET", "/api/runs?limit=50")["runs"]
        mine = [r for r in runs if r["pipeline_id"] == pipeline_id]
        return len(mine) == 4 and all(r["status"] == "succeeded" for r in mine)
    wait_for(steps_succeeded, timeout=30)
    panel.visit(f"/pipelines/{pipeline_id}")
    summary = panel.page.locator(".pipeline-summary")
    before = summary.inner_text()
    assert "succeeded" in before and "4 succeeded" in before and "of 4 steps" in before, before

    panel.create_job("corpus-report", title="Corpus report", kind="python", func="lexyjobs.demo:ingest_corpus",
                     depends_on=["ingest-corpus-metrics"])
    panel.visit(f"/pipelines/{pipeline_id}")
    after = summary.inner_text()
    assert after == before, (before, after)
    assert "incomplete" not in after and "not reached" not in after
    node = panel.page.locator('svg.pipeline-graph a.node[data-job="corpus-report"]')
    assert "step-not-in-this-pipeline" in (node.get_attribute("class") or "")


def test_pause_and_the_enabled_box_are_one_truth(panel: Panel) -> None:
    panel.create_job("nightly-export", title="Nightly export", kind="shell", argv=["true"], schedule="0 3 * * *")
    page = panel.page

    def api_enabled() -> bool:
        return bool(panel.api("GET", "/api/jobs/nightly-export")["enabled"])

    def shown_everywhere(enabled: bool) -> None:
        assert api_enabled() is enabled
        panel.visit("/jobs/nightly-export")
        assert page.get_by_role("button", name="Pause" if enabled else "Resume", exact=True).count() == 1
        assert page.get_by_role("button", name="Resume" if enabled else "Pause", exact=True).count() == 0
        panel.visit("/jobs/nightly-export/edit")
        assert page.is_checked("input[name=enabled]") is enabled
        panel.visit("/jobs")
        row = page.locator("tr", has=page.locator("code", has_text="nightly-export"))
        assert row.get_by_role("button", name="Resume" if enabled else "Pause", exact=True).count() == 0
        assert row.get_by_role("button", name="Pause" if enabled else "Resume", exact=True).count() == 1

    shown_everywhere(True)
    panel.visit("/jobs/nightly-export")
    page.get_by_role("button", name="Pause", exact=True).click()  # paused from the job page
    wait_for(lambda: not api_enabled(), timeout=5)
    shown_everywhere(False)

    panel.visit("/jobs/nightly-export/edit")  # resumed by ticking Enabled and saving the form
    page.check("input[name=enabled]")
    page.locator("form button[type=submit]", has_text="Save").click()
    page.wait_for_url(f"{panel.base}/jobs/nightly-export")
    shown_everywhere(True)

    panel.visit("/jobs/nightly-export/edit")  # paused by unticking it; Resume on the page undoes it
    page.uncheck("input[name=enabled]")
    page.locator("form button[type=submit]", has_text="Save").click()
    page.wait_for_url(f"{panel.base}/jobs/nightly-export")
    shown_everywhere(False)
    page.get_by_role("button", name="Resume", exact=True).click()
    wait_for(api_enabled, timeout=5)
    shown_everywhere(True)


def test_the_dashboards_status_cards_add_up_to_the_total(panel: Panel) -> None:
    panel.create_job("later", title="Later", kind="shell", argv=["true"])
    done = panel.run_job("later")
    panel.wait_status(done, "succeeded")
    for _ in range(2):  # due in an hour: canceled while still queued
        queued = int(panel.api("POST", "/api/jobs/later/run", {"run_at": _later(3600)}, expect_status=202)["run_id"])
        panel.api("POST", f"/api/runs/{queued}/cancel")
    panel.api("POST", "/api/jobs/later/run", {"run_at": _later(3600)}, expect_status=202)
    panel.visit("/")
    cards = panel.page.locator('section.cards[aria-label="Runs by status"] a.card')
    figures: dict[str, int] = {}
    for i in range(cards.count()):
        label, figure = cards.nth(i).inner_text().split()
        figures[label] = int(figure)
    assert figures["canceled"] == 2 and figures["queued"] == 1 and figures["succeeded"] == 1, figures
    total = figures.pop("total")
    assert sum(figures.values()) == total, figures


def test_a_parameter_default_shows_its_own_characters(panel: Panel) -> None:
    panel.create_job("greet", title="Greet", kind="shell", argv=["echo", "hi"],
                     params={"greeting": {"type": "string", "default": HOSTILE}})
    panel.visit("/jobs/greet")
    page = panel.page
    text = page.locator("main").inner_text()
    assert HOSTILE in text, text
    assert "\\u003c" not in text and "\\u003e" not in text and "\\u0026" not in text
    assert page.locator("#pwned").count() == 0 and page.locator("main b", has_text="bold").count() == 0
    panel.visit("/jobs/greet/run")  # the run form's box holds the same characters
    assert page.input_value("input[name=greeting]") == HOSTILE


def test_a_run_pages_event_table_is_laid_out_as_a_table(panel: Panel) -> None:
    """The Timeline page's ``div.timeline`` styles (a flex row) stay off the run page's
    ``table.timeline`` of events, whose header and rows once sat side by side."""
    run_id = panel.run_job("collect-keywords")
    panel.wait_status(run_id, "succeeded")
    panel.visit(f"/runs/{run_id}")
    table = panel.page.locator("table.timeline")
    assert table.evaluate("e => getComputedStyle(e).display") == "table"
    header, first = table.locator("th").first.bounding_box(), table.locator("tbody td").first.bounding_box()
    assert header and first and first["y"] > header["y"], (header, first)
