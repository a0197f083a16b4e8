"""``waiting_for`` where people read it: the API (GET /api/runs/<id> and /api/runs, checked
against the OpenAPI document), the CLI (``lexyjobs show`` and ``lexyjobs runs``), the panel's run
page, runs list (waiting-for and due columns, due / retry badges), the Scheduled view
(``/runs?view=scheduled``, soonest first whatever the priority) and the job page's limits."""
from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner, Result
from conftest import ApiClient
from sqlalchemy import delete, update
from test_flow_waiting import claim, pause_queue, register

from lexyjobs import runs
from lexyjobs.cli import main
from lexyjobs.db import Database, utcnow
from lexyjobs.models import Run

MakeJob = Callable[..., str]


def text_of(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


# ------------------------------------------------------------------ API


def test_the_api_says_why_a_queued_run_waits_and_null_for_others(api_client: ApiClient, db: Database,
                                                                 make_job: MakeJob) -> None:
    make_job("report", max_concurrency=1)
    register(db, "w:1")
    holder, waiting = runs.enqueue(db, "report"), runs.enqueue(db, "report")
    assert claim(db) == [holder]
    data = api_client.ok(api_client.get(f"/api/runs/{waiting}", role="viewer"))
    assert data["waiting_for"] == {
        "reason": "job_limit", "until": None, "queue": "default", "holders": [holder], "key": None, "bucket": None,
        "limit": 1, "idle_threads": None,
        "message": f"Its job 'report' runs at most 1 at a time (max_concurrency): run #{holder} is running."}
    assert api_client.ok(api_client.get(f"/api/runs/{holder}", role="viewer"))["waiting_for"] is None
    listed = api_client.ok(api_client.get("/api/runs?job=report", role="viewer"))["runs"]
    assert {r["id"]: (r["waiting_for"] or {}).get("reason") for r in listed} == {waiting: "job_limit", holder: None}


def test_the_api_gives_the_due_time_of_a_delayed_run(api_client: ApiClient, db: Database, make_job: MakeJob) -> None:
    make_job("report")
    at = (utcnow() + timedelta(hours=3)).replace(microsecond=0)
    run_id = runs.enqueue(db, "report", scheduled_for=at)
    why = api_client.ok(api_client.get(f"/api/runs/{run_id}", role="viewer"))["waiting_for"]
    assert (why["reason"], why["until"]) == ("due", at.isoformat())


# ------------------------------------------------------------------ CLI


@pytest.fixture
def cli(db_url: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), catch_exceptions=False,
                             env={"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": ""})
    return invoke


def test_the_cli_shows_why_a_run_waits(cli: Callable[..., Result], db: Database, make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    make_job("report")
    register(db, "w:1", queues=["ai"])
    pause_queue(db, "ai")
    paused = runs.enqueue(db, "llm")
    later = runs.enqueue(db, "report", scheduled_for=utcnow() + timedelta(hours=1))
    shown = cli("show", str(paused))
    assert shown.exit_code == 0
    assert "       waiting_for: Queue 'ai' is paused: its runs wait until the queue is resumed." in shown.stdout
    listing = cli("runs")
    lines = listing.stdout.splitlines()
    assert "WAITING FOR" in lines[0]
    assert re.search(rf"^{paused}\s+llm\s+queued\s+.*queue ai paused", listing.stdout, re.M)
    due = runs.get_run(db, later).scheduled_for
    assert re.search(rf"^{later}\s+report\s+queued\s+.*due {due:%H:%M}", listing.stdout, re.M)
    as_json = {r["id"]: r["waiting_for"] for r in json.loads(cli("runs", "--json").stdout)}
    assert as_json[paused]["reason"] == "queue_paused" and as_json[later]["reason"] == "due"
    assert json.loads(cli("show", str(later), "--json").stdout)["waiting_for"]["until"] == due.isoformat()


# ------------------------------------------------------------------ panel


def test_the_run_page_says_the_job_limit_and_links_the_holder(panel_as: Any, db: Database, make_job: MakeJob) -> None:
    make_job("report", max_concurrency=1)
    register(db, "w:1")
    holder, waiting = runs.enqueue(db, "report"), runs.enqueue(db, "report")
    claim(db)
    page = text_of(panel_as("viewer").get(f"/runs/{waiting}"))
    assert f"Waiting for: Its job 'report' runs at most 1 at a time (max_concurrency): run #{holder} is running." \
        in re.sub(r"<[^>]+>", "", page)
    assert f'href="/runs/{holder}"' in page
    assert "waits in the queue until a worker" not in page


def test_the_run_page_poll_answers_when_the_reason_changes(panel_as: Any, db: Database, make_job: MakeJob) -> None:
    make_job("report")
    run_id = runs.enqueue(db, "report")
    viewer = panel_as("viewer")
    stamp = re.search(r'hx-get="/runs/\d+\?stamp=([0-9a-f]+)"', viewer.get(f"/runs/{run_id}").get_data(as_text=True))
    assert stamp
    assert viewer.get(f"/runs/{run_id}?stamp={stamp.group(1)}", hx=True).status_code == 204
    register(db, "w:1")  # a worker starts: nothing about the run changed, but why it waits did
    fresh = viewer.get(f"/runs/{run_id}?stamp={stamp.group(1)}", hx=True)
    assert fresh.status_code == 200 and "Ready: a worker picks it up now" in text_of(fresh)


def test_the_runs_list_tells_delayed_and_retrying_runs_from_stuck_ones(panel_as: Any, db: Database,
                                                                        make_job: MakeJob) -> None:
    make_job("report", max_concurrency=0)
    make_job("llm", queue="ai")
    register(db, "w:1", queues=["default"])
    at = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    delayed = runs.enqueue(db, "report", scheduled_for=at)
    retrying = runs.enqueue(db, "report")
    with db.write() as session:  # as the worker leaves a failed attempt: queued again, attempt 1, later
        session.execute(update(Run).where(Run.id == retrying).values(attempt=1, scheduled_for=at + timedelta(minutes=5)))
    stuck = runs.enqueue(db, "llm")
    page = text_of(panel_as("viewer").get("/runs"))
    rows = {int(m.group(1)): m.group(0) for m in re.finditer(r'<tr id="run-(\d+)">.*?</tr>', page, re.S)}
    assert f'<span class="due-badge" title="Delayed: due at {at:%Y-%m-%d %H:%M:%S} UTC.">due {at:%H:%M}</span>' \
        in rows[delayed]
    retry_at = at + timedelta(minutes=5)
    assert f">retry at {retry_at:%H:%M}</span>" in rows[retrying] and 'class="due-badge retry"' in rows[retrying]
    assert "due-badge" not in rows[stuck]
    assert "No live worker serves queue 'ai'" in rows[stuck]
    assert "<th>Waiting for</th><th>Due</th>" in page


def test_the_scheduled_view_lists_runs_due_later_soonest_first(panel_as: Any, db: Database, make_job: MakeJob) -> None:
    make_job("report", max_concurrency=0)
    now = utcnow()
    soonest = runs.enqueue(db, "report", scheduled_for=now + timedelta(minutes=5), priority=0)
    middle = runs.enqueue(db, "report", scheduled_for=now + timedelta(minutes=10), priority=9)
    last = runs.enqueue(db, "report", scheduled_for=now + timedelta(minutes=20), priority=3)
    due_now = runs.enqueue(db, "report")
    viewer = panel_as("viewer")
    page = text_of(viewer.get("/runs?view=scheduled"))
    shown = [int(i) for i in re.findall(r'<tr id="run-(\d+)">', page)]
    assert shown == [soonest, middle, last] and due_now not in shown
    assert 'aria-current="page">Scheduled' in page
    assert text_of(viewer.get("/runs?view=scheduled&limit=2&page=2")).count('<tr id="run-') == 1
    assert viewer.get("/runs?view=sometime").status_code == 400
    operator = text_of(panel_as("operator").get("/runs?view=scheduled"))
    assert "Cancel selected" in operator and "Cancel all matching" not in operator  # "all matching" means the filter
    assert "Export CSV" not in operator and 'name="status"' not in operator


def test_the_runs_list_poll_refreshes_once_a_shown_due_time_passes(panel_as: Any, db: Database,
                                                                  make_job: MakeJob) -> None:
    make_job("report")
    runs.enqueue(db, "report", scheduled_for=utcnow() + timedelta(hours=1))
    viewer = panel_as("viewer")
    poll = re.search(r'id="runs-table" hx-get="([^"]+)"', viewer.get("/runs").get_data(as_text=True))
    assert poll and "due=" in poll.group(1)
    url = html.unescape(poll.group(1))
    assert viewer.get(url, hx=True).status_code == 204  # nothing changed, the due time is ahead
    passed = re.sub(r"due=[^&]+", "due=2000-01-01T00%3A00%3A00%2B00%3A00", url)
    assert viewer.get(passed, hx=True).status_code == 200  # a shown time has come: the reasons changed


def test_the_job_page_shows_its_limits_with_their_use(panel_as: Any, db: Database, make_job: MakeJob) -> None:
    params = {"site_id": {"type": "string"}}
    make_job("crawl", concurrency_key="site:{site_id}", concurrency_limit=1, max_concurrency=3, rate_limit="2/h",
             params=params, queue="crawls")
    register(db, "w:1", queues=["crawls"])
    runs.enqueue(db, "crawl", {"site_id": "a"})
    runs.enqueue(db, "crawl", {"site_id": "b"})
    assert len(claim(db, 2)) == 2  # two keys: both start, and take both slots of the rate limit
    pause_queue(db, "crawls")
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text_of(panel_as("viewer").get("/jobs/crawl"))))
    assert "Queue crawls paused its runs wait until the queue is resumed" in page
    assert "served by 1 of 1 live worker process" in page
    assert "2 running of 3 (max_concurrency)" in page
    assert "site:{site_id}, 1 run at once per value" in page and "site:a: 1 running of 1 full" in page
    assert "its own: 2/h · 2 of 2 started in the last hour full next slot in " in page, page[page.find("Limits"):][:900]


# ------------------------------------------------------------------ Python API


def test_the_python_api_handles_say_why_a_run_waits(lj: Any, db: Database, make_job: MakeJob) -> None:
    import lexyjobs

    make_job("report", max_concurrency=1)
    register(db, "w:1")
    holder = lexyjobs.enqueue("report", runtime=lj)
    waiting = lexyjobs.enqueue("report", runtime=lj)
    assert claim(db) == [holder.id]
    assert lexyjobs.get_run(waiting.id, runtime=lj).waiting_for["holders"] == [holder.id]  # type: ignore[index]
    assert waiting.refresh().waiting_for["reason"] == "job_limit"  # type: ignore[index]
    listed = {run.id: run.waiting_for for run in lexyjobs.list_runs("report", runtime=lj)}
    assert listed[holder.id] is None and listed[waiting.id]["reason"] == "job_limit"  # type: ignore[index]


def test_the_job_page_shows_shared_and_per_key_rate_limits(panel_as: Any, db: Database, make_job: MakeJob) -> None:
    from lexyjobs.models import NamedLimit

    with db.write() as session:
        session.add(NamedLimit(name="openai", spec={"rate": "3/m"}, updated_at=utcnow()))
        session.add(NamedLimit(name="nowhere", spec={"rate": "1/m"}, updated_at=utcnow()))
    make_job("summarize", max_concurrency=0, rate_limit="2/m per {customer_id}", limits=["openai", "nowhere"],
             params={"customer_id": {"type": "string"}})
    with db.write() as session:  # its table left the jobs file after the job was saved (a load deletes it)
        session.execute(delete(NamedLimit).where(NamedLimit.name == "nowhere"))
    register(db, "w:1")
    for customer in ("acme", "acme", "globex"):
        runs.enqueue(db, "summarize", {"customer_id": customer})
    assert len(claim(db, 3)) == 3
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text_of(panel_as("viewer").get("/jobs/summarize"))))
    limits = page[page.find("Rate limits"):page.find("Parameters")]
    assert "its own: 2/m per {customer_id} · busiest values in the last minute: acme 2/2, globex 1/2" in limits
    assert "shared openai: 3/m · 3 of 3 started in the last minute full next slot in " in limits
    assert "shared nowhere: not defined (no [limits.nowhere] table: it does not limit)" in limits
