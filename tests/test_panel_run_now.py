"""One-click runs (``POST /jobs/<name>/run-now``): a job that needs no input runs from the Jobs list
and the dashboard with one click, answered by a toast linking to the run; "Run again" on a
finished run's page runs its job with that run's params. CSRF and the operator role are required;
a job with a required param without a default keeps "Run…" to the form; a unique job's duplicate
is answered by the existing run and the toast says so — on SQLite and Postgres."""
from __future__ import annotations

import re
from typing import Any, Callable

import pytest
from conftest import PanelSession, drive_run
from sqlalchemy import select

from lexyjobs import audit, runs
from lexyjobs.db import Database
from lexyjobs.models import Run
from lexyjobs.states import RunStatus

Login = Callable[[str], PanelSession]
RUN_NOW = re.compile(r'hx-post="(/jobs/([^/"]+)/run-now)"')


@pytest.fixture
def world(make_job: Callable[..., str]) -> None:
    make_job("plain", title="Plain <b>job</b>", category="etl")
    make_job("defaults", title="With defaults", category="etl",
             params={"site": {"type": "integer", "required": True, "default": 4}, "note": {"type": "string"}})
    make_job("needs", title="Needs a site", category="etl", params={"site": {"type": "integer", "required": True}})
    make_job("crawl", title="Crawl a site", category="etl", unique=["site_id"],
             params={"site_id": {"type": "integer", "default": 7}})


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def all_runs(db: Database) -> list[Run]:
    with db.read() as session:
        return list(session.scalars(select(Run).order_by(Run.id)))


@pytest.mark.parametrize("page", ["/jobs", "/"])
def test_jobs_without_required_input_get_one_click_and_the_others_the_form(panel_as: Login, world: None,
                                                                           page: str) -> None:
    html = text(panel_as("operator").get(page))
    assert {name for _, name in RUN_NOW.findall(html)} == {"plain", "defaults", "crawl"}
    assert 'aria-label="Run Plain &lt;b&gt;job&lt;/b&gt; now"' in html  # the title, escaped
    assert 'href="/jobs/needs/run"' in html and "Run…" in html and "Run with options…" in html
    assert 'href="/jobs/plain/run" aria-label="Run Plain &lt;b&gt;job&lt;/b&gt; with options"' in html
    assert 'id="run-toasts"' in html and "data-toasts" in html and 'hx-target="#run-toasts"' in html


@pytest.mark.parametrize("page", ["/jobs", "/"])
def test_a_viewer_sees_no_run_button_and_is_refused(panel_as: Login, db: Database, world: None, page: str) -> None:
    viewer = panel_as("viewer")
    assert "run-now" not in text(viewer.get(page))
    assert viewer.post("/jobs/plain/run-now", hx=True).status_code == 403
    assert all_runs(db) == []


def test_one_click_runs_with_the_defaults_and_answers_with_a_toast(panel_as: Login, db: Database, world: None) -> None:
    operator = panel_as("operator")
    response = operator.post("/jobs/defaults/run-now", hx=True)
    [run] = all_runs(db)
    assert response.status_code == 200 and response.headers["X-Lexyjobs-Toast"] == "1"
    toast = text(response)
    assert 'role="status"' in toast and 'aria-live="polite"' in toast
    assert f"Queued run #{run.id} of With defaults." in toast and f'<a href="/runs/{run.id}">Open run #{run.id}</a>' in toast
    assert run.params == {"site": 4} and run.trigger == "manual" and run.created_by == "panel-operator"
    assert [e.target for e in audit.search(db, action="run.create").entries] == ["defaults"]
    plain = text(operator.post("/jobs/plain/run-now", hx=True))
    assert "of Plain &lt;b&gt;job&lt;/b&gt;." in plain  # escaped


def test_one_click_needs_the_csrf_token(panel_as: Login, db: Database, world: None) -> None:
    response = panel_as("operator").post("/jobs/plain/run-now", hx=True, csrf=False)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "csrf_failed"
    assert all_runs(db) == []


def test_a_job_needing_input_is_refused_with_a_link_to_the_form(panel_as: Login, db: Database, world: None) -> None:
    operator = panel_as("operator")
    response = operator.post("/jobs/needs/run-now", hx=True)
    assert response.status_code == 422 and response.headers["X-Lexyjobs-Toast"] == "1"
    assert "Needs a site was not run (site: " in text(response) and 'href="/jobs/needs/run"' in text(response)
    plain_form = operator.post("/jobs/needs/run-now")
    assert plain_form.status_code == 303 and plain_form.location.endswith("/jobs/needs/run")
    assert all_runs(db) == []


def test_a_duplicate_of_a_unique_job_is_answered_by_the_queued_run_and_says_so(panel_as: Login, db: Database,
                                                                               world: None) -> None:
    operator = panel_as("operator")
    operator.post("/jobs/crawl/run-now", hx=True)
    response = operator.post("/jobs/crawl/run-now", hx=True)
    [run] = all_runs(db)
    toast = text(response)
    assert response.status_code == 200 and 'class="toast existing"' in toast
    assert f"Run {run.id} of job crawl is already queued" in toast and "not enqueued again." in toast
    assert f'<a href="/runs/{run.id}">Open run #{run.id}</a>' in toast


def test_without_htmx_one_click_goes_to_the_runs_page(panel_as: Login, db: Database, world: None) -> None:
    response = panel_as("operator").post("/jobs/plain/run-now")
    [run] = all_runs(db)
    assert response.status_code == 303 and response.location.endswith(f"/runs/{run.id}")


def test_run_again_runs_the_job_with_the_finished_runs_params(panel_as: Login, db: Database, world: None) -> None:
    [first] = runs.enqueue_many(db, [runs.RunRequest("defaults", {"site": 9, "note": "<again>"}, priority=3)])
    drive_run(db, first, RunStatus.FAILED, error="boom")
    operator = panel_as("operator")
    page = text(operator.get(f"/runs/{first}"))
    assert 'name="from_run" value="%d"' % first in page and "Run again" in page and "Re-run with changes" in page
    assert 'id="run-toasts"' in page
    response = operator.post("/jobs/defaults/run-now", hx=True, data={"from_run": str(first)})
    again = all_runs(db)[-1]
    assert again.id != first and again.params == {"site": 9, "note": "<again>"} and again.priority == 3
    assert again.trigger == "manual" and again.retry_of is None
    assert f"Queued run #{again.id} of With defaults." in text(response)


def test_run_again_is_offered_on_finished_runs_only(panel_as: Login, db: Database, world: None) -> None:
    [queued] = runs.enqueue_many(db, [runs.RunRequest("plain")])
    assert "Run again" not in text(panel_as("operator").get(f"/runs/{queued}"))
    drive_run(db, queued, RunStatus.SUCCEEDED)
    assert "Run again" not in text(panel_as("viewer").get(f"/runs/{queued}"))


@pytest.mark.parametrize("source, message", [("abc", "must be a run id"), ("999999", "no run with id 999999")])
def test_run_again_from_a_bad_run_is_a_clear_4xx(panel_as: Login, db: Database, world: None, source: str,
                                                message: str) -> None:
    response = panel_as("operator").post("/jobs/plain/run-now", hx=True, data={"from_run": source})
    assert 400 <= response.status_code < 500 and message in text(response).lower()
    assert all_runs(db) == []


def test_run_again_from_another_jobs_run_is_refused(panel_as: Login, db: Database, world: None) -> None:
    [other] = runs.enqueue_many(db, [runs.RunRequest("crawl")])
    response = panel_as("operator").post("/jobs/plain/run-now", hx=True, data={"from_run": str(other)})
    assert response.status_code == 400 and f"run {other} is a run of crawl, not plain" in text(response)
