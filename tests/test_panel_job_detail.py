"""The panel's job detail page: configuration (secrets masked), schedule with next fires and DST
days, duration sparkline, paginated live run history, pipeline links and buttons; SQLite and Postgres."""
from __future__ import annotations

from lexyjobs import code_jobs

import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import jobfuncs
import pytest
from conftest import PanelSession, drive_run, wait_for

from lexyjobs import audit, registry, runs, store
from lexyjobs.db import Database
from lexyjobs.definitions import parse_definition
from lexyjobs.models import Job, Run
from lexyjobs.panel import job_detail
from lexyjobs.panel.job_detail import dst_days_between, sparkline, upcoming_fires
from lexyjobs.runtime import Runtime
from lexyjobs.states import TERMINAL, RunStatus

MakeJob = Callable[..., str]
PanelAs = Callable[[str], PanelSession]
STAMPED_POLL = re.compile(r'hx-get="([^"]*stamp=[^"]+)"')


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def poll_url(html: str) -> str:
    found = STAMPED_POLL.search(html)
    assert found, "no stamped poll in the page"
    return found.group(1).replace("&amp;", "&")


def run_ids_of(db: Database, job: str) -> list[int]:
    with db.read() as session:
        return [run.id for run in store.list_runs(session, job=job, limit=10_000)]


def definition(**fields: Any) -> Any:
    return parse_definition("probe", {"kind": "python", "func": "jobfuncs:noop", **fields})


@pytest.fixture
def etl(make_job: MakeJob, db: Database) -> None:
    """extract → transform → load; transform is scheduled in Berlin, has params and a history."""
    make_job("extract", title="Extract", max_attempts=1)
    make_job("transform", title="Transform rows", category="Warehouse", description="Cleans the raw rows.",
             schedule="0 3 * * *", timezone="Europe/Berlin", depends_on=["extract"], max_attempts=1,
             params={"limit": {"type": "integer", "default": 10, "min": 1, "help": "rows per batch"},
                     "mode": {"type": "choice", "choices": ["fast", "full"], "default": "fast"}})
    make_job("load", title="Load", depends_on=["transform"], max_attempts=1)
    for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SUCCEEDED):
        drive_run(db, runs.enqueue(db, "transform"), status, error="disk full" if status == "failed" else None)


# ------------------------------------------------------------------ the page


def test_the_page_shows_every_section_of_a_scheduled_job(panel_as: PanelAs, etl: None) -> None:
    page = text(panel_as("operator").get("/jobs/transform"))
    assert "<h1>Transform rows</h1>" in page and "<code>transform</code>" in page and "Warehouse" in page
    assert ">panel / API<" in page and "Created in the panel or the API." in page
    assert 'class="health ok"' in page and "last success" in page
    assert "Cleans the raw rows." in page
    # schedule in words, next fires in Berlin time
    assert "At 03:00 every day (Europe/Berlin)" in page
    fires = re.findall(r"(\w{3} \d{4}-\d\d-\d\d 03:00) <span class=\"sub\">(CES?T) \(UTC\+0[12]00\)</span>", page)
    assert len(fires) == 5
    # params table
    params = page[page.index('class="params"'):]
    assert "<code>limit</code>" in params and "rows per batch" in params and "<code>10</code>" in params
    assert "(fast, full)" in params
    # configuration as stored, effective settings
    config = page[page.index('class="kv-table"'):]
    assert "<code>schedule</code>" in config and "0 3 * * *" in config and "Europe/Berlin" in config
    assert "up to 1;" in page
    # pipeline neighbours link to their pages
    assert '<a href="/jobs/extract">extract</a>' in page and '<a href="/jobs/load">load</a>' in page
    # sparkline: one bar per finished run, the failure in red
    assert page.count('<rect class="spark-bar ') == 3
    assert page.count('class="spark-bar failed"') == 1 and 'fill="#d0342c"' in page and "1 failed (red)" in page
    # run history with a stamped poll; buttons
    history = page[page.index('id="job-runs"'):]
    assert history.count('<span class="badge succeeded">') == 2 and "disk full" in history
    assert STAMPED_POLL.search(history)
    assert 'href="/jobs/transform/run"' in page and 'action="/jobs/transform/pause"' in page
    assert 'action="/jobs/transform/run-pipeline"' in page


def test_a_job_without_runs_explains_what_to_do(panel_as: PanelAs, make_job: MakeJob) -> None:
    make_job("fresh")
    page = text(panel_as("operator").get("/jobs/fresh"))
    assert "No runs yet. Press <strong>Run</strong> to start one." in page
    assert "No finished runs yet" in page and "<svg" not in page
    assert "No schedule: it runs when started by hand" in page and "takes no parameters" in page
    assert "run-pipeline" not in page  # nothing downstream


def test_secrets_are_masked_and_env_references_shown_as_written(panel_as: PanelAs, make_job: MakeJob) -> None:
    make_job("hook", kind="http", url="http://127.0.0.1:9/hook",
             headers={"Authorization": "Bearer literal-secret-xyz", "X-Api-Key": "${HOOK_KEY}"})
    page = text(panel_as("viewer").get("/jobs/hook"))
    assert "literal-secret-xyz" not in page
    assert "****" in page and "${HOOK_KEY}" in page and "http://127.0.0.1:9/hook" in page


def test_xss_in_title_and_description_is_escaped(panel_as: PanelAs, make_job: MakeJob) -> None:
    make_job("evil", title="<script>alert(1)</script>", description='<img src=x onerror="alert(2)">',
             params={"p": {"type": "string", "default": "<b>x</b>", "help": "<i>help</i>"}})
    page = text(panel_as("viewer").get("/jobs/evil"))
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<i>help</i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=" in page


def test_an_unknown_job_is_a_404_page(panel_as: PanelAs, lj: Runtime) -> None:
    panel = panel_as("viewer")
    response = panel.get("/jobs/no-such-job")
    assert response.status_code == 404 and "no job named &#39;no-such-job&#39;" in text(response)
    assert panel.get("/jobs/no-such-job", hx=True).status_code == 404
    assert panel.post("/jobs/no-such-job/run-pipeline").status_code == 403  # viewer: refused first
    assert panel_as("operator").post("/jobs/no-such-job/run-pipeline").status_code == 404


@pytest.mark.parametrize("source", ["code", "file"])
def test_code_and_file_jobs_say_where_to_edit_them(panel_as: PanelAs, lj: Runtime, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    if source == "code":
        monkeypatch.setattr(code_jobs, "_CODE_JOBS", {})  # a private registry: nothing leaks into other tests
        code_jobs.job("from-code")(jobfuncs.code_job_target)
        registry.sync_jobs(lj.db, jobs_file=None)
        name, label = "from-code", "code"
    else:
        jobs_file = tmp_path / "jobs.toml"
        jobs_file.write_text('[jobs.from-file]\nkind = "shell"\nargv = ["true"]\n', encoding="utf-8")
        registry.sync_jobs(lj.db, jobs_file=str(jobs_file))
        name, label = "from-file", "jobs.toml"
    page = text(panel_as("admin").get(f"/jobs/{name}"))
    assert f"Defined in {label} — edit it there" in page and f">{label}<" in page
    assert "Created in the panel" not in page


# ------------------------------------------------------------------ schedule: fires, DST, pause


def test_next_fires_are_five_in_the_jobs_timezone_with_dst_days_flagged() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    spring = upcoming_fires(definition(schedule="30 2 * * *", timezone="Europe/Berlin"),
                            datetime(2025, 3, 28, 12, 0, tzinfo=timezone.utc))
    assert [f.at.strftime("%m-%d %H:%M %Z") for f in spring] == [
        "03-29 02:30 CET", "03-30 03:00 CEST", "03-31 02:30 CEST", "04-01 02:30 CEST", "04-02 02:30 CEST"]
    assert all(f.at.tzinfo == berlin for f in spring)
    assert [f.at.date() for f in spring if f.dst_change] == [date(2025, 3, 30)]
    autumn = upcoming_fires(definition(schedule="0 12 * * *", timezone="Europe/Berlin"),
                            datetime(2025, 10, 24, 0, 0, tzinfo=timezone.utc))
    assert len(autumn) == 5 and [f.at.date() for f in autumn if f.dst_change] == [date(2025, 10, 26)]
    utc = upcoming_fires(definition(schedule="0 12 * * *"), datetime(2025, 10, 24, tzinfo=timezone.utc))
    assert len(utc) == 5 and not any(f.dst_change for f in utc)


def test_a_clock_change_between_fires_is_named_too() -> None:
    weekly = definition(schedule="0 9 * * 1", timezone="Europe/Berlin")  # Mondays; DST starts Sunday 30 March
    now = datetime(2025, 3, 25, tzinfo=timezone.utc)
    fires = upcoming_fires(weekly, now)
    assert not any(f.dst_change for f in fires)
    assert dst_days_between(weekly, now, fires) == [date(2025, 3, 30)]


def test_one_off_and_manual_jobs_have_at_most_one_fire() -> None:
    now = datetime(2025, 3, 1, tzinfo=timezone.utc)
    once = definition(run_at="2025-03-30T02:30", timezone="Europe/Berlin")  # in the skipped hour
    fires = [(f.at.isoformat(), f.dst_change) for f in upcoming_fires(once, now)]
    assert fires == [("2025-03-30T03:30:00+02:00", True)]
    assert upcoming_fires(once, datetime(2025, 4, 1, tzinfo=timezone.utc)) == []
    assert upcoming_fires(definition(), now) == [] and upcoming_fires(None, now) == []


def test_the_page_flags_a_dst_day_among_its_fires(panel_as: PanelAs, make_job: MakeJob,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    make_job("nightly", schedule="30 2 * * *", timezone="Europe/Berlin")
    panel = panel_as("viewer")
    monkeypatch.setattr(job_detail, "utcnow", lambda: datetime(2025, 10, 23, 12, 0, tzinfo=timezone.utc))
    page = text(panel.get("/jobs/nightly"))
    assert page.count('<tr class="dst-row">') == 1 and page.count("DST change day</span>") == 1
    row = page[page.index('<tr class="dst-row">'):]
    assert "Sun 2025-10-26 02:30" in row[:row.index("</tr>")]


def test_a_paused_job_says_so_and_resumes_from_its_page(panel_as: PanelAs, make_job: MakeJob) -> None:
    make_job("nightly", schedule="@daily")
    panel = panel_as("operator")
    paused = panel.post("/jobs/nightly/pause", data={"next": "/jobs/nightly"})
    assert paused.status_code == 302 and paused.location.endswith("/jobs/nightly")
    page = text(panel.get("/jobs/nightly"))
    assert "Paused: no fires." in page and 'class="fires"' not in page and 'class="paused-badge"' in page
    assert 'action="/jobs/nightly/resume"' in page and 'name="next" value="/jobs/nightly"' in page
    assert 'href="/jobs/nightly/run"' in page  # still runnable by hand
    assert panel.post("/jobs/nightly/resume", data={"next": "/jobs/nightly"}).location.endswith("/jobs/nightly")
    page = text(panel.get("/jobs/nightly"))
    assert "Paused" not in page and page.count("<time datetime=", page.index('class="fires"')) >= 5


# ------------------------------------------------------------------ run history: pages, partial, polling


def test_run_history_is_paginated_twenty_a_page(panel_as: PanelAs, make_job: MakeJob, db: Database) -> None:
    make_job("busy", max_concurrency=0)
    runs.enqueue_many(db, [runs.RunRequest("busy") for _ in range(45)])
    ids = sorted(run_ids_of(db, "busy"), reverse=True)
    panel = panel_as("viewer")
    first = text(panel.get("/jobs/busy"))
    shown = [int(i) for i in re.findall(r'href="/runs/(\d+)">#', first)]
    assert shown == ids[:20] and "Page 1 of 3" in first and 'href="/jobs/busy?page=2"' in first
    last = text(panel.get("/jobs/busy?page=3", hx=True))
    assert "<html" not in last and last.lstrip().startswith('<section id="job-runs"')
    assert [int(i) for i in re.findall(r'href="/runs/(\d+)">#', last)] == ids[40:]
    assert 'href="/jobs/busy?page=2"' in last and "page=4" not in last
    assert "No runs on this page" in text(panel.get("/jobs/busy?page=9"))
    assert panel.get("/jobs/busy?page=0").status_code == 400


def test_an_unchanged_poll_is_a_204_and_a_change_re_renders(panel_as: PanelAs, make_job: MakeJob,
                                                             db: Database) -> None:
    make_job("polled")
    panel = panel_as("viewer")
    poll = poll_url(text(panel.get("/jobs/polled?page=2")))
    assert "page=2" in poll
    assert panel.get(poll, hx=True).status_code == 204
    assert panel.get(poll).status_code == 200  # a reload (no htmx) always renders
    other_page = poll.replace("page=2", "page=1")
    assert panel.get(other_page, hx=True).status_code == 200  # the stamp names its page
    run_id = runs.enqueue(db, "polled")
    fresh = panel.get(poll.replace("page=2", "page=1"), hx=True)
    assert fresh.status_code == 200 and f"#{run_id}<" in text(fresh)
    new_poll = poll_url(text(fresh))
    assert panel.get(new_poll, hx=True).status_code == 204
    drive_run(db, run_id, RunStatus.RUNNING)  # a status change re-renders
    assert panel.get(new_poll, hx=True).status_code == 200


# ------------------------------------------------------------------ run pipeline from here; roles


def test_run_pipeline_from_here_starts_a_pipeline_whose_downstreams_follow(panel_as: PanelAs, etl: None,
                                                                           db: Database, start_worker: Any) -> None:
    start_worker()
    panel = panel_as("operator")
    response = panel.post("/jobs/transform/run-pipeline")
    assert response.status_code == 303
    run_id = int(re.fullmatch(r".*/runs/(\d+)", response.location).group(1))  # type: ignore[union-attr]
    run = runs.get_run(db, run_id)
    assert run.job_name == "transform" and run.pipeline_id and run.trigger == "manual"
    assert run.created_by == "panel-operator"

    def settled() -> dict[str, list[str]] | None:
        with db.read() as session:
            rows = session.query(Run).filter(Run.pipeline_id == run.pipeline_id).order_by(Run.id).all()
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row.job_name, []).append(row.status)
        done = {"transform", "load"} <= set(found) and all(s in TERMINAL for ss in found.values() for s in ss)
        return found if done else None
    assert wait_for(settled, timeout=15) == {"transform": ["succeeded"], "load": ["succeeded"]}  # not extract
    entries = audit.search(db, action="pipeline.start").entries
    assert [(e.actor, e.target, e.details["run_id"]) for e in entries] == [("panel-operator", "transform", run_id)]
    assert entries[0].details["steps"] == ["transform", "load"]


def test_run_pipeline_from_here_answers_htmx_with_a_redirect_header(panel_as: PanelAs, etl: None,
                                                                    db: Database) -> None:
    response = panel_as("operator").post("/jobs/extract/run-pipeline", hx=True)
    assert response.status_code == 204 and re.fullmatch(r"/runs/\d+", response.headers["HX-Redirect"])


def test_a_job_nothing_depends_on_has_no_pipeline_button_and_refuses_the_post(panel_as: PanelAs, etl: None,
                                                                             db: Database) -> None:
    panel = panel_as("operator")
    assert "run-pipeline" not in text(panel.get("/jobs/load"))
    before = run_ids_of(db, "load")
    response = panel.post("/jobs/load/run-pipeline")
    assert response.status_code == 409 and "no job depends on" in text(response)
    assert run_ids_of(db, "load") == before


def test_a_pipeline_start_that_needs_params_goes_through_the_run_form(panel_as: PanelAs, make_job: MakeJob) -> None:
    make_job("needs", params={"day": {"type": "string", "required": True}})
    make_job("after", depends_on=["needs"])
    make_job("last", depends_on=["after"], params={"day": {"type": "string", "required": True}})
    make_job("middle", depends_on=["after"])
    make_job("after-needs", depends_on=["middle"])
    page = text(panel_as("operator").get("/jobs/needs"))  # a pipeline's first job: one button
    assert 'action="/jobs/needs/run-pipeline"' not in page
    assert re.search(r'<a class="button primary" href="/jobs/needs/run"\s[^>]*>Run pipeline…</a>', page)
    assert ">Run</a>" not in page and "Run pipeline from here" not in page


def test_a_pipelines_first_job_has_one_run_pipeline_button_and_a_middle_job_two(panel_as: PanelAs, etl: None) -> None:
    first = text(panel_as("operator").get("/jobs/extract"))
    actions = first[first.index('class="job-actions"'):first.index("</div>", first.index('class="job-actions"'))]
    assert re.findall(r">([^<>]+)</(?:a|button)>", actions) == ["Run pipeline", "Backfill…"]  # manual-only: no Pause
    assert 'action="/jobs/extract/run-pipeline"' in actions and 'class="primary"' in actions
    assert "No runs yet. Press <strong>Run pipeline</strong> to start one." in first
    middle = text(panel_as("operator").get("/jobs/transform"))
    actions = middle[middle.index('class="job-actions"'):middle.index("</div>", middle.index('class="job-actions"'))]
    assert re.findall(r">([^<>]+)</(?:a|button)>", actions) == ["Run", "Pause", "Run pipeline from here", "Backfill…"]


def test_a_manual_only_job_has_no_pause_button_but_a_paused_one_can_be_resumed(
        panel_as: PanelAs, make_job: MakeJob, db: Database) -> None:
    """Pausing only stops a job's schedule (a paused job still runs by hand and as a pipeline
    step), so a job without a schedule or run_at has nothing to pause."""
    make_job("by-hand")
    make_job("once", run_at="2999-01-01T09:00")
    make_job("was-paused", enabled=False)  # manual and paused (e.g. from a definition): Resume clears it
    operator = panel_as("operator")
    assert "/jobs/by-hand/pause" not in text(operator.get("/jobs/by-hand"))
    assert 'action="/jobs/once/pause"' in text(operator.get("/jobs/once"))
    assert 'action="/jobs/was-paused/resume"' in text(operator.get("/jobs/was-paused"))
    listing = text(operator.get("/jobs"))
    assert "/jobs/by-hand/pause" not in listing and 'href="/jobs/by-hand/run"' in listing
    assert 'action="/jobs/once/pause"' in listing and 'action="/jobs/was-paused/resume"' in listing


def test_a_viewer_gets_no_buttons_and_a_403_for_every_action(panel_as: PanelAs, etl: None, db: Database) -> None:
    viewer = panel_as("viewer")
    page = text(viewer.get("/jobs/transform"))
    assert "/jobs/transform/run" not in page and "/jobs/transform/pause" not in page
    assert "Run pipeline from here" not in page and "<button" not in page.split("</header>", 1)[1]
    before = run_ids_of(db, "transform")
    assert viewer.post("/jobs/transform/run-pipeline").status_code == 403
    assert viewer.post("/jobs/transform/pause", data={"next": "/jobs/transform"}).status_code == 403
    assert run_ids_of(db, "transform") == before
    assert audit.search(db, action="pipeline.start").entries == []


# ------------------------------------------------------------------ sparkline geometry


def test_the_sparkline_scales_to_the_longest_run_and_keeps_instant_runs_visible() -> None:
    spark = sparkline([(1, "succeeded", 10.0), (2, "failed", 5.0), (3, "succeeded", 0.0)], width=300, height=41)
    tall, half, flat = spark["bars"]
    assert (tall.height, tall.y) == (40.0, 1.0) and half.height == 20.0 and (flat.height, flat.y) == (1.0, 40.0)
    assert tall.x < half.x < flat.x and all(bar.width == 8.0 for bar in spark["bars"])  # 30 slots of 10 px
    assert (spark["longest"], spark["median"], spark["failed"]) == (10.0, 5.0, 1)
    assert sparkline([])["bars"] == []


def test_a_job_whose_stored_definition_no_longer_parses_still_shows_its_page(panel_as: PanelAs, make_job: MakeJob,
                                                                              db: Database) -> None:
    make_job("broken", schedule="@daily")
    with db.write() as session:
        job = session.get(Job, "broken")
        assert job is not None
        job.spec = {**job.spec, "kind": "teleport"}
    page = text(panel_as("operator").get("/jobs/broken"))
    assert 'class="health error"' in page and "invalid definition" in page and "teleport" in page
    assert 'class="fires"' not in page and "Effective settings" not in page


def test_the_poll_brings_the_health_line_out_of_band(panel_as: PanelAs, make_job: MakeJob, db: Database) -> None:
    make_job("watched", max_attempts=1)
    panel = panel_as("viewer")
    page = text(panel.get("/jobs/watched"))
    assert 'id="job-health"' in page and "never ran" in page and "hx-swap-oob" not in page
    poll = poll_url(page)
    drive_run(db, runs.enqueue(db, "watched"), RunStatus.FAILED, error="quota exceeded")
    fresh = text(panel.get(poll, hx=True))
    health = re.search(r'<p id="job-health" hx-swap-oob="true">(.*?)</p>', fresh, re.S)
    assert health, fresh
    assert "failed: quota exceeded" in health.group(1) and "never ran" not in fresh


def test_parameter_defaults_show_their_real_characters_escaped_as_html(panel_as: PanelAs, make_job: MakeJob) -> None:
    make_job("markup", params={"tag": {"type": "string", "default": "\"><img src=x onerror=alert(1)> & co"}})
    page = text(panel_as("operator").get("/jobs/markup"))
    assert "\\u003c" not in page and "\\u003e" not in page and "\\u0026" not in page
    assert "<code>&#34;\\&#34;&gt;&lt;img src=x onerror=alert(1)&gt; &amp; co&#34;</code>" in page
    assert "<img src=x" not in page
    form = text(panel_as("operator").get("/jobs/markup/run"))
    assert "\\u003c" not in form and "<img src=x" not in form
