"""The Timeline page: a row per job with its runs as linked bars, fire ticks and the now line;
the window selector; viewers may see it; it works under a URL prefix, escapes what jobs and runs
say, refuses a bad window with a 400 and answers its poll with 204 while nothing moved. SQLite
and Postgres."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from conftest import PanelSession, drive_run

from lexyjobs import runs
from lexyjobs.db import Database, utcnow
from lexyjobs.runs import RunRequest
from lexyjobs.states import RunStatus

PanelAs = Callable[[str], PanelSession]
MakeJob = Callable[..., str]
STAMP = re.compile(r'hx-get="/timeline\?window=(\w+)&amp;stamp=([0-9a-f]+)"')


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def run_at(db: Database, job: str, at: datetime, status: RunStatus, *, queued_for: float = 5, ran_for: float = 60) -> int:
    """A run of ``job`` created (and due) at ``at``, then driven to ``status``."""
    [run_id] = runs.enqueue_many(db, [RunRequest(job)], now=at)
    drive_run(db, run_id, status, queued_for=queued_for, ran_for=ran_for)
    return run_id


def bars(html: str) -> dict[int, str]:
    """Run id → the bar's markup."""
    return {int(m.group(1)): m.group(0) for m in re.finditer(r'<a href="/runs/(\d+)" class="tl-bar".*?</a>', html, re.DOTALL)}


def test_every_job_is_a_row_and_its_runs_are_bars_linking_to_them(panel_as: PanelAs, db: Database, make_job: MakeJob) -> None:
    make_job("etl", schedule="every 30m", category="Data")
    make_job("report", category="Reports")
    now = utcnow()
    ok = run_at(db, "etl", now - timedelta(hours=2), RunStatus.SUCCEEDED)
    failed = run_at(db, "etl", now - timedelta(hours=1), RunStatus.FAILED, queued_for=600, ran_for=30)
    running = run_at(db, "etl", now - timedelta(minutes=10), RunStatus.RUNNING)
    old = run_at(db, "report", now - timedelta(hours=30), RunStatus.SUCCEEDED)
    html = text(panel_as("viewer").get("/timeline"))
    assert '<a href="/timeline" aria-current="page">Timeline</a>' in html
    assert re.findall(r'<text class="tl-name"[^>]*>([^<]+)</text>', html) == ["etl", "report"]
    assert re.findall(r'<text class="tl-band-label"[^>]*>([^<]+?) <tspan', html) == ["Data", "Reports"]
    drawn = bars(html)
    assert set(drawn) == {ok, failed, running}  # the 30 h old one is outside the default 24 h
    assert 'tl-ran tl-failed' in drawn[failed] and "tl-wait" in drawn[failed]
    assert f"etl · run {failed} · failed" in drawn[failed] and "waited 10 min" in drawn[failed] and "(30 s)" in drawn[failed]
    assert "tl-ran tl-running" in drawn[running] and "→ now" in drawn[running]
    assert html.count('class="tl-fire"') >= 6  # every 30 min over the next 3 h
    assert 'class="tl-now"' in html and 'aria-current="page">Last 24 hours</a>' in html
    week = text(panel_as("viewer").get("/timeline?window=7d"))
    assert old in bars(week) and 'aria-current="page">Last 7 days</a>' in week
    hour = text(panel_as("viewer").get("/timeline?window=1h"))
    assert set(bars(hour)) == {failed, running}  # it waited from before the hour: its bar starts at the edge
    assert 'class="tl-wait" x="0.0"' in bars(hour)[failed]


def test_a_row_with_more_runs_than_it_draws_says_how_many_more(panel_as: PanelAs, db: Database,
                                                             make_job: MakeJob, monkeypatch: Any) -> None:
    from lexyjobs.panel import timeline
    monkeypatch.setattr(timeline, "CAP", 3)
    make_job("busy", max_concurrency=0)
    now = utcnow()
    made = [run_at(db, "busy", now - timedelta(minutes=50 - i), RunStatus.SUCCEEDED, ran_for=10) for i in range(7)]
    html = text(panel_as("viewer").get("/timeline?window=1h"))
    assert set(bars(html)) == set(made[-3:])
    assert ">+4 more</text>" in html and "4 more runs of busy in the window" in html  # left of its oldest bar
    assert '<a href="/runs?job=busy&amp;since=' in html
    make_job("dense", max_concurrency=0)  # its newest runs begin the hour: no room left of them, the label says it
    [run_at(db, "dense", now - timedelta(minutes=59.5 - i / 2), RunStatus.SUCCEEDED, queued_for=0, ran_for=5)
     for i in range(5)]
    html = text(panel_as("viewer").get("/timeline?window=1h"))
    assert 'class="tl-caption tl-caption-more" x="8" y="' in html and ">manual · +2 more</text>" in html


def test_hostile_names_and_titles_are_escaped(panel_as: PanelAs, db: Database, make_job: MakeJob) -> None:
    make_job("x-job", title='<script>alert(1)</script>"', category='<img src=x onerror=alert(2)>')
    run_at(db, "x-job", utcnow() - timedelta(minutes=5), RunStatus.SUCCEEDED)
    html = text(panel_as("viewer").get("/timeline"))
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html


def test_a_bad_window_is_a_400_saying_which_windows_there_are(panel_as: PanelAs) -> None:
    response = panel_as("viewer").get("/timeline?window=2y")
    assert response.status_code == 400 and "window: must be one of 1h, 24h, 7d" in text(response)


def test_the_poll_answers_204_until_something_changes(panel_as: PanelAs, db: Database, make_job: MakeJob) -> None:
    make_job("etl")
    viewer = panel_as("viewer")
    window, stamp = STAMP.search(text(viewer.get("/timeline?window=7d"))).groups()  # type: ignore[union-attr]
    assert window == "7d"
    assert viewer.get(f"/timeline?window=7d&stamp={stamp}", hx=True).status_code == 204
    runs.enqueue(db, "etl")
    changed = viewer.get(f"/timeline?window=7d&stamp={stamp}", hx=True)
    assert changed.status_code == 200 and text(changed).startswith("{#") is False and 'id="timeline-live"' in text(changed)
    assert "<h1>" not in text(changed)


def test_the_page_works_under_a_url_prefix(tmp_path: Path, db_url: str, db: Database, make_job: MakeJob) -> None:
    from hostapp import make_host

    make_job("etl", schedule="every 1h")
    run_id = run_at(db, "etl", utcnow() - timedelta(minutes=20), RunStatus.SUCCEEDED)
    app, jobs = make_host(tmp_path, db_url, url_prefix="/ops/jobs", authorize=lambda request: "viewer",
                          workers=0, scheduler=False)
    try:
        html = text(app.test_client().get("/ops/jobs/timeline"))
        assert '<a href="/ops/jobs/timeline" aria-current="page">Timeline</a>' in html
        assert f'<a href="/ops/jobs/runs/{run_id}" class="tl-bar"' in html
        assert 'href="/ops/jobs/jobs/etl"' in html and 'hx-get="/ops/jobs/timeline?window=24h&amp;stamp=' in html
        assert 'href="/ops/jobs/timeline?window=7d"' in html
    finally:
        jobs.runtime.db.dispose()


def test_without_jobs_the_page_says_so(panel_as: PanelAs) -> None:
    assert "No jobs yet: the timeline draws a row for every job." in text(panel_as("viewer").get("/timeline"))


def test_it_is_behind_the_login_and_every_role_sees_it(app: Any, panel_as: PanelAs, make_job: MakeJob) -> None:
    make_job("etl")
    response = app.test_client().get("/timeline")
    assert response.status_code in (302, 303) and "/login" in response.headers["Location"]
    for role in ("viewer", "operator", "admin"):
        assert '<text class="tl-name" x="8"' in text(panel_as(role).get("/timeline"))
