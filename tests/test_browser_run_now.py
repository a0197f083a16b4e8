"""One-click runs and the runs list as a work surface, in a real browser (Debian's chromium via
playwright) against a real ``python app.py``, on SQLite and Postgres: seed 000's manual sequence
(collect keywords → keyword metrics → social metrics → ingest to corpus) takes 4 clicks on the
Jobs list, each answered by a toast linking to its run while the page stays; the dashboard's Run
does the same; "Run again" on a finished run's page runs it again with its params; the runs list
sorts by a header click and remembers "Compact rows" across reloads, rendered compact by the server
(no flash). Screenshots (LEXYJOBS_SCREENSHOTS=1, SQLite): jobs-one-click-{light,dark}.png,
runs-sorted-{light,dark}.png and runs-compact-light.png (runs-{light,dark,phone}.png: test_browser_panel)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_browser_panel import JOBS_FILE, PIPELINE_JOBS, SHOTS, TAKE_SHOTS, open_panel

pytestmark = pytest.mark.slow

# The titles of seed 000's jobs, in the order its "Manual Execution Steps" run them.
SEED_000_STEPS = ("Collect keywords", "Keyword metrics collection", "Social metrics", "Ingest metrics to corpus")


def _jobs_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(JOBS_FILE)
    return path


def test_seed_000s_manual_sequence_takes_four_clicks_on_the_jobs_list(db_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shoot = TAKE_SHOTS and db_url.startswith("sqlite")
    with open_panel(db_url, _jobs_file(tmp_path), shoot=shoot, LEXYJOBS_WORKERS="0") as panel:
        page = panel.page
        panel.visit("/jobs")
        page.evaluate("window.__noReload = true")
        toasts = page.locator("#run-toasts .toast")
        for clicks, title in enumerate(SEED_000_STEPS, start=1):
            page.get_by_role("button", name=f"Run {title} now").click()  # one click per step
            expect(toasts).to_have_count(min(clicks, 3))  # the newest three stay
            expect(toasts.first).to_contain_text(f"of {title}.")
        assert page.url == f"{panel.base}/jobs" and page.evaluate("window.__noReload") is True  # stayed on the page
        listing = panel.api("GET", "/api/runs?limit=10", expect_status=200)["runs"]
        assert [run["job"] for run in reversed(listing)] == list(PIPELINE_JOBS)  # 4 runs, in the seed's order
        assert {run["trigger"] for run in listing} == {"manual"} and {run["status"] for run in listing} == {"queued"}
        newest = toasts.first  # the last click's toast, on top
        expect(newest).to_have_attribute("role", "status")
        expect(newest.get_by_role("link")).to_have_attribute("href", f"/runs/{listing[0]['id']}")
        panel.screenshot("jobs-one-click")
        newest.get_by_role("button", name="Dismiss this message").click()
        expect(toasts).to_have_count(2)
        panel.assert_clean()


def test_the_dashboards_run_button_answers_with_a_toast_linking_to_the_run(db_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with open_panel(db_url, _jobs_file(tmp_path), LEXYJOBS_WORKERS="0") as panel:
        page = panel.page
        panel.visit("/")
        page.get_by_role("button", name="Run Social metrics now").click()
        toast = page.locator("#run-toasts .toast")
        expect(toast).to_contain_text("Queued run #")
        assert page.url == f"{panel.base}/"
        [run] = panel.api("GET", "/api/runs?job=social-metrics", expect_status=200)["runs"]
        expect(toast).to_contain_text(f"Queued run #{run['id']} of Social metrics.")
        # an expired form (another CSRF token): the refusal's words in a toast, nothing run
        page.evaluate("document.querySelectorAll('meta[name=csrf-token], input[name=csrf_token]')"
                      ".forEach(el => { el.content = 'expired'; el.value = 'expired'; })")
        page.get_by_role("button", name="Run Social metrics now").click()
        expect(page.locator("#run-toasts .toast.refused")).to_have_text(re.compile("^The form expired .* try again\\.×$"))
        assert len(panel.api("GET", "/api/runs?job=social-metrics", expect_status=200)["runs"]) == 1
        refused = [e for e in panel.watch.console_errors if "status of 403" in e and "/run-now" in e]
        assert len(refused) == 1  # the browser's own note of the refusal provoked here
        panel.watch.console_errors.remove(refused[0])
        toast = page.locator("#run-toasts .toast:not(.refused)")
        toast.get_by_role("link", name=f"Open run #{run['id']}").click()
        page.wait_for_url(f"{panel.base}/runs/{run['id']}")
        expect(page.locator("h1")).to_contain_text("Social metrics")  # the title, the name as a hint
        expect(page.locator("h1 .job-name")).to_have_text("social-metrics")
        panel.assert_clean()


def test_run_again_on_a_finished_run_runs_it_with_the_same_params(db_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with open_panel(db_url, _jobs_file(tmp_path)) as panel:
        panel.create_job("quick", title="Quick sum", category="Demo", kind="python", func="jobfuncs:noop",
                         params={"n": {"type": "integer", "required": True}})
        first = panel.run_job("quick", {"n": 41})
        panel.wait_status(first, "succeeded")
        page = panel.page
        panel.visit(f"/runs/{first}")
        page.evaluate("window.__noReload = true")
        page.get_by_role("button", name="Run again").click()
        toast = page.locator("#run-toasts .toast")
        expect(toast).to_contain_text("Queued run #")
        again = int(re.search(r"#(\d+)", toast.inner_text()).group(1))  # type: ignore[union-attr]
        assert again != first and page.url == f"{panel.base}/runs/{first}" and page.evaluate("window.__noReload")
        run = panel.wait_status(again, "succeeded")
        assert run["params"] == {"n": 41} and run["trigger"] == "manual", run
        expect(page.get_by_role("link", name="Re-run with changes")).to_be_visible()
        panel.assert_clean()


def test_the_runs_list_sorts_by_a_header_and_remembers_compact_rows(db_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shoot = TAKE_SHOTS and db_url.startswith("sqlite")
    with open_panel(db_url, _jobs_file(tmp_path), shoot=shoot) as panel:
        panel.create_job("report", title="Weekly <report>", category="Reports", kind="python", func="jobfuncs:sleepy",
                         params={"seconds": {"type": "number", "default": 0}})
        for pause in (0.6, 0.3, 0.9):
            panel.wait_status(panel.run_job("report", {"seconds": pause}), "succeeded")
        panel.create_job("flaky", title="Flaky import", category="Imports", kind="python", func="jobfuncs:boom")
        panel.wait_status(panel.run_job("flaky"), "failed")
        page = panel.page
        panel.visit("/runs")
        expect(page.locator("table.runs th[aria-sort]")).to_have_text("Created ↓")
        page.get_by_role("link", name="Duration").click()
        page.wait_for_url(re.compile(r"/runs\?sort=duration&dir=desc$"))
        expect(page.locator("table.runs th[aria-sort=descending]")).to_contain_text("Duration")
        durations = page.locator("table.runs tbody td.params-summary").all_inner_texts()
        assert durations[:3] == ["seconds=0.9", "seconds=0.6", "seconds=0.3"], durations  # longest first
        expect(page.locator("table.runs tbody td.job").first).to_contain_text("Weekly <report>")
        panel.screenshot("runs-sorted")

        toggle = page.get_by_role("button", name="Compact rows")
        expect(toggle).to_have_attribute("aria-pressed", "false")
        roomy = page.locator("table.runs tbody tr").first.bounding_box()
        toggle.click()
        expect(page.locator("#runs-table")).to_have_attribute("data-density", "compact")
        compact = page.locator("table.runs tbody tr").first.bounding_box()
        assert roomy and compact and compact["height"] < roomy["height"], (roomy, compact)
        response = page.reload()
        assert response is not None and '<div id="runs-table" data-density="compact"' in response.text()  # no flash
        expect(page.get_by_role("button", name="Compact rows")).to_have_attribute("aria-pressed", "true")
        assert page.evaluate("localStorage.getItem('lexyjobs.density')") == "compact"
        if shoot:
            page.screenshot(path=str(SHOTS / "runs-compact-light.png"))
        page.get_by_role("button", name="Compact rows").click()
        response = page.reload()
        assert response is not None and 'data-density="compact"' not in response.text()
        expect(page.locator("#runs-table")).not_to_have_attribute("data-density", "compact")
        panel.assert_clean()
