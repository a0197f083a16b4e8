"""The panel's jobs list, pause/resume and the run-now form, on SQLite and Postgres."""
from __future__ import annotations

import re
from typing import Any, Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import drive_run
from lexyjobs import accounts, audit, definitions, runs, store
from lexyjobs.db import Database
from lexyjobs.runtime import Runtime
from lexyjobs.states import RunStatus

MakeJob = Callable[..., str]
PASSWORD = "panel-password"
HX = {"HX-Request": "true"}


class Panel:
    """A logged-in test client that knows its CSRF token."""

    def __init__(self, client: FlaskClient, csrf: str) -> None:
        self.client, self.csrf = client, csrf

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.client.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)


@pytest.fixture
def login(app: Flask, lj: Runtime) -> Callable[[str], Panel]:
    """``login("operator")``: a client logged in as a user with that role."""
    def log_in(role: str) -> Panel:
        accounts.add_user(lj.db, role, PASSWORD, role)
        client = app.test_client()
        form = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        assert client.post("/login", data={"username": role, "password": PASSWORD, "csrf_token": token}).status_code == 302
        page = client.get("/jobs").get_data(as_text=True)
        return Panel(client, re.search(r'name="csrf-token" content="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    return log_in


@pytest.fixture
def jobs_world(make_job: MakeJob, db: Database) -> dict[str, int]:
    make_job("keywords", title="Collect keywords", category="Metrics", schedule="0 3 * * *",
             timezone="Europe/Berlin", params={"limit": {"type": "integer", "default": 10, "min": 1, "max": 100,
                                                         "help": "how many keywords"},
                                               "source": {"type": "choice", "choices": ["web", "api"], "required": True},
                                               "dry_run": {"type": "boolean", "default": False}})
    make_job("social", title="Social metrics", category="Metrics", schedule="every 1h")
    make_job("cleanup", title="Cleanup", category="Maintenance")
    ok = runs.enqueue(db, "social")
    drive_run(db, ok, RunStatus.SUCCEEDED)
    failed = [runs.enqueue(db, "cleanup") for _ in range(2)]
    for run_id in failed:
        drive_run(db, run_id, RunStatus.FAILED, error="disk full")
    return {"ok": ok, "failed": failed[-1]}


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def run_count(db: Database) -> int:
    with db.read() as session:
        return len(store.list_runs(session, limit=10_000))


def test_jobs_are_grouped_by_category_with_health_schedule_and_last_run(login: Callable[[str], Panel],
                                                                       jobs_world: dict[str, int]) -> None:
    page = text(login("viewer").get("/jobs"))
    assert page.index("<h2>Maintenance") < page.index("<h2>Metrics")  # categories in order
    assert "Collect keywords" in page and "Social metrics" in page and "Cleanup" in page
    assert "At 03:00" in page and "(Europe/Berlin)" in page and "next <time" in page
    assert "2 failures in a row" in page and "failed 2 times in a row: disk full" in page
    assert "never ran" in page and 'class="health ok"' in page and 'class="health error"' in page
    assert "took 2.5 s" in page
    assert ">panel / API<" in page


def test_viewers_see_no_run_or_pause_buttons_operators_do(login: Callable[[str], Panel],
                                                         jobs_world: dict[str, int]) -> None:
    assert "/jobs/cleanup/run" not in text(login("viewer").get("/jobs"))
    page = text(login("operator").get("/jobs"))
    assert 'href="/jobs/cleanup/run"' in page and 'action="/jobs/social/pause"' in page


@pytest.mark.parametrize(("query", "shown", "hidden"), [
    ("category=Maintenance", ["Cleanup"], ["Social metrics", "Collect keywords"]),
    ("health=error", ["Cleanup"], ["Social metrics", "Collect keywords"]),
    ("health=ok,unknown", ["Social metrics", "Collect keywords"], ["Cleanup"]),
    ("q=SOCIAL", ["Social metrics"], ["Cleanup", "Collect keywords"]),
    ("q=nothing-like-this", ["No job matches this filter."], ["Cleanup"]),
])
def test_the_jobs_list_filters(login: Callable[[str], Panel], jobs_world: dict[str, int], query: str,
                               shown: list[str], hidden: list[str]) -> None:
    table = text(login("viewer").get(f"/jobs?{query}", headers=HX))
    assert "<html" not in table
    assert all(s in table for s in shown) and not any(h in table for h in hidden)


def test_a_bad_filter_is_a_400_naming_it(login: Callable[[str], Panel], jobs_world: dict[str, int]) -> None:
    response = login("viewer").get("/jobs?health=purple")
    assert response.status_code == 400 and "health" in text(response)


def test_an_unchanged_poll_is_a_204_and_a_change_re_renders(login: Callable[[str], Panel], db: Database,
                                                             jobs_world: dict[str, int]) -> None:
    panel = login("viewer")
    poll = re.search(r'hx-get="([^"]+)"', text(panel.get("/jobs?category=Metrics", headers=HX))).group(1)  # type: ignore[union-attr]
    assert "category=Metrics" in poll
    poll = poll.replace("&amp;", "&")
    assert panel.get(poll, headers=HX).status_code == 204
    runs.enqueue(db, "social")
    assert panel.get(poll, headers=HX).status_code == 200


def test_the_empty_state_tells_a_newcomer_what_to_do(login: Callable[[str], Panel]) -> None:
    page = text(login("viewer").get("/jobs"))
    assert "No jobs yet" in page and "jobs.toml" in page


def test_pause_and_resume_from_the_list(login: Callable[[str], Panel], db: Database, jobs_world: dict[str, int]) -> None:
    panel = login("operator")
    row = panel.post("/jobs/social/pause", headers=HX)
    assert row.status_code == 200 and "Resume" in text(row) and "<html" not in text(row)
    with db.read() as session:
        assert store.get_job(session, "social").enabled is False  # type: ignore[union-attr]
    assert panel.post("/jobs/social/resume").headers["Location"] == "/jobs"
    with db.read() as session:
        assert store.get_job(session, "social").enabled is True  # type: ignore[union-attr]
    actions = [e.action for e in audit.search(db, target="social").entries]
    assert actions == ["job.resume", "job.pause"]


def test_pause_needs_the_operator_role_and_the_csrf_token(login: Callable[[str], Panel], db: Database,
                                                        jobs_world: dict[str, int]) -> None:
    assert login("viewer").post("/jobs/social/pause").status_code == 403
    operator = login("operator")
    assert operator.client.post("/jobs/social/pause").status_code == 403  # no token
    with db.read() as session:
        assert store.get_job(session, "social").enabled is True  # type: ignore[union-attr]


def test_the_run_form_is_generated_from_the_param_schema(login: Callable[[str], Panel],
                                                         jobs_world: dict[str, int]) -> None:
    form = text(login("operator").get("/jobs/keywords/run"))
    assert re.search(r'name="limit" value="10"\s+type="number" step="1"', form)
    assert "how many keywords" in form
    assert '<select id="p-2" name="source">' in form and '<option value="api"' in form
    assert 'type="checkbox" name="dry_run"' in form and "checked" not in form
    assert 'name="run_at" type="datetime-local"' in form and "in Europe/Berlin" in form


def test_running_with_valid_params_enqueues_and_redirects(login: Callable[[str], Panel], db: Database,
                                                          jobs_world: dict[str, int]) -> None:
    response = login("operator").post("/jobs/keywords/run", {"limit": "25", "source": "api", "dry_run": "true",
                                                             "priority": "7"})
    assert response.status_code == 302
    run_id = int(response.headers["Location"].rsplit("/", 1)[1])
    run = runs.get_run(db, run_id)
    assert (run.params, run.priority, run.trigger, run.created_by) == (
        {"limit": 25, "source": "api", "dry_run": True}, 7, "manual", "operator")


def test_an_htmx_submit_redirects_with_a_header(login: Callable[[str], Panel], jobs_world: dict[str, int]) -> None:
    response = login("operator").post("/jobs/cleanup/run", headers=HX)
    assert response.status_code == 204 and response.headers["HX-Redirect"].startswith("/runs/")


def test_bad_params_are_shown_inline_and_nothing_is_enqueued(login: Callable[[str], Panel], db: Database,
                                                             jobs_world: dict[str, int]) -> None:
    before = run_count(db)
    response = login("operator").post("/jobs/keywords/run", {"limit": "500", "priority": "11",
                                                             "run_at": "next tuesday"})
    page = text(response)
    assert response.status_code == 422
    assert "at most 100" in page or "100" in page
    assert "must be a whole number from 0 to 10" in page and "ISO 8601" in page
    assert 'value="500"' in page  # what was typed is kept
    assert run_count(db) == before


def test_a_missing_required_param_is_named(login: Callable[[str], Panel], jobs_world: dict[str, int]) -> None:
    response = login("operator").post("/jobs/keywords/run", {"limit": "5"})
    assert response.status_code == 422 and "is required" in text(response)


def test_run_at_in_the_jobs_timezone_delays_the_run(login: Callable[[str], Panel], db: Database,
                                                    jobs_world: dict[str, int]) -> None:
    response = login("operator").post("/jobs/keywords/run", {"source": "web", "run_at": "2031-07-01T09:30"})
    run = runs.get_run(db, int(response.headers["Location"].rsplit("/", 1)[1]))
    assert run.scheduled_for.isoformat() == "2031-07-01T07:30:00+00:00"  # Berlin summer time is UTC+2


def test_re_run_with_changes_prefills_the_form(login: Callable[[str], Panel], db: Database,
                                               jobs_world: dict[str, int]) -> None:
    run_id = runs.enqueue(db, "keywords", {"limit": 42, "source": "api", "dry_run": True}, priority=3)
    form = text(login("operator").get(f"/jobs/keywords/run?from_run={run_id}"))
    assert 'name="limit" value="42"' in form and '<option value="api" selected>' in form
    assert 'name="dry_run" value="true" checked' in form and 'name="priority" type="number" min="0" max="10" step="1" value="3"' in form
    other = runs.enqueue(db, "cleanup")
    response = login("admin").get(f"/jobs/keywords/run?from_run={other}")
    assert response.status_code == 400 and "cleanup" in text(response)


def test_viewers_cannot_run(login: Callable[[str], Panel], db: Database, jobs_world: dict[str, int]) -> None:
    viewer = login("viewer")
    assert "Viewers cannot start runs." in text(viewer.get("/jobs/cleanup/run"))
    assert viewer.post("/jobs/cleanup/run").status_code == 403


def test_unknown_jobs_are_404(login: Callable[[str], Panel]) -> None:
    panel = login("operator")
    assert panel.get("/jobs/ghost/run").status_code == 404
    assert panel.post("/jobs/ghost/pause").status_code == 404


def test_titles_and_errors_are_escaped(login: Callable[[str], Panel], make_job: MakeJob, db: Database) -> None:
    make_job("xss", title="<script>alert(1)</script>", category="<b>cat</b>",
             params={"p": {"type": "string", "help": "<img src=x onerror=alert(1)>"}})
    run_id = runs.enqueue(db, "xss")
    drive_run(db, run_id, RunStatus.FAILED, error="<svg onload=alert(1)>")
    panel = login("operator")
    for page in (text(panel.get("/jobs")), text(panel.get("/jobs/xss/run"))):
        assert "<script>alert(1)</script>" not in page and "<img src=x" not in page and "<svg onload" not in page
        assert "<b>cat</b>" not in page


def test_the_run_form_lists_parameters_in_the_order_written(login: Callable[[str], Panel], make_job: Any) -> None:
    order = ["customer_segment", "day", "limit", "a", "include_archived_rows"]  # no order jsonb would keep
    make_job("ordered", params={name: {"type": "string", "default": "x"} for name in order})
    definitions._parsed.clear()  # as after a restart: the definition is parsed from the stored spec
    form = text(login("operator").get("/jobs/ordered/run"))
    shown = [name for name in re.findall(r'<input id="p-\d+" name="([a-z_]+)"', form) if name in order]
    assert shown == order, shown
