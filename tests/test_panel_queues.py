"""The Queues page (per queue: depth, oldest wait, running, throughput, pause state, processes
serving it; pause / resume for operators with htmx and CSRF), its 204 poll, and the per-category
pause / resume button of the jobs page. SQLite and Postgres."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from conftest import PanelSession, drive_run

from lexyjobs import runs, store, workers
from lexyjobs.db import Database, utcnow
from lexyjobs.models import QueueState
from lexyjobs.states import RunStatus

PanelAs = Callable[[str], PanelSession]
MakeJob = Callable[..., str]
STAMP = re.compile(r'hx-get="/queues\?stamp=([0-9a-f]+)"')


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def cells(html: str, queue: str) -> list[str]:
    """The text of the cells of the queue's row (tags dropped, spaces squeezed)."""
    row = re.search(rf'<tr id="queue-{re.escape(queue)}".*?</tr>', html, re.DOTALL)
    assert row, html
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.DOTALL)]


def is_paused(db: Database, queue: str) -> bool:
    with db.read() as session:
        row = session.get(QueueState, queue)
        return bool(row and row.paused)


def test_the_page_shows_each_queue_with_depth_wait_running_throughput_and_workers(panel_as: PanelAs, db: Database,
                                                                                  make_job: MakeJob) -> None:
    make_job("llm", queue="ai", max_concurrency=0)
    make_job("plain", max_concurrency=0)
    queued = [runs.enqueue(db, "llm") for _ in range(4)]
    runs.enqueue(db, "llm", scheduled_for=utcnow() + timedelta(hours=2))
    drive_run(db, queued[0], RunStatus.RUNNING, queued_for=0)
    for _ in range(5):
        drive_run(db, runs.enqueue(db, "plain"), RunStatus.SUCCEEDED, queued_for=0, ran_for=0.1)
    now = utcnow()
    with db.write() as session:
        workers.register(session, workers.Registration("gpu-box:7", "gpu-box", 7, "1", 4, now, ("ai:2",)), now=now)
        workers.register(session, workers.Registration("all:8", "box", 8, "1", 4, now), now=now)
    html = text(panel_as("viewer").get("/queues"))
    assert '<a href="/queues" aria-current="page">Queues</a>' in html
    assert [q for q in re.findall(r'<tr id="queue-([^"]+)"', html)] == ["default", "ai"]
    ai = cells(html, "ai")
    assert ai[0] == "ai 1 job" and ai[1] == "active"
    assert ai[2] == "4 3 due now" and ai[4] == "1"  # queued (one later), running
    assert re.fullmatch(r"\d+(\.\d+)? ?m?s", ai[3]), ai[3]  # the oldest due run's wait
    assert ai[6] == "all:8 , gpu-box:7 max 2"
    default = cells(html, "default")
    assert default[2] == "0" and default[3] == "—" and default[5] == "1"  # 5 done in the last 5 min: 1/min
    assert "Pause" not in ai[7]  # a viewer gets no buttons


def test_an_operator_pauses_and_resumes_a_queue_with_htmx(panel_as: PanelAs, db: Database, make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    operator = panel_as("operator")
    assert 'aria-label="Pause queue ai"' in text(operator.get("/queues"))
    response = operator.post("/queues/ai/pause", hx=True)
    assert response.status_code == 200 and is_paused(db, "ai")
    html = text(response)
    assert 'id="queues-live"' in html and "<html" not in html
    row = cells(html, "ai")
    assert row[1].startswith("paused by panel-operator") and "schedules still fire" in row[1]
    assert 'aria-label="Resume queue ai"' in html
    response = operator.post("/queues/ai/resume")  # without htmx: back to the page, with a message
    assert response.status_code == 302 and response.headers["Location"].endswith("/queues")
    assert not is_paused(db, "ai")
    assert "Queue ai resumed." in text(operator.get("/queues"))


def test_pausing_needs_the_operator_role_and_the_csrf_token(panel_as: PanelAs, db: Database, make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    assert panel_as("viewer").post("/queues/ai/pause", hx=True).status_code == 403
    assert panel_as("operator").post("/queues/ai/pause", csrf=False).status_code == 403
    assert panel_as("operator").post("/queues/ai/pause", csrf=False, hx=True).status_code == 403
    assert not is_paused(db, "ai")


def test_an_unknown_or_malformed_queue_is_404(panel_as: PanelAs, db: Database) -> None:
    operator = panel_as("operator")
    assert operator.post("/queues/nosuch/pause").status_code == 404
    assert operator.post("/queues/No%20Such/pause").status_code == 404
    with db.read() as session:
        assert session.get(QueueState, "nosuch") is None


def test_the_poll_answers_204_until_something_shown_changes(panel_as: PanelAs, db: Database, make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    viewer = panel_as("viewer")
    stamp = STAMP.search(text(viewer.get("/queues")))
    assert stamp
    assert viewer.get(f"/queues?stamp={stamp.group(1)}", hx=True).status_code == 204
    runs.enqueue(db, "llm")
    changed = viewer.get(f"/queues?stamp={stamp.group(1)}", hx=True)
    assert changed.status_code == 200 and cells(text(changed), "ai")[2] == "1"


def test_the_page_and_its_buttons_work_under_a_url_prefix(tmp_path: Path, db_url: str, db: Database,
                                                          make_job: MakeJob) -> None:
    from hostapp import make_host

    make_job("llm", queue="ai")
    app, jobs = make_host(tmp_path, db_url, url_prefix="/ops/jobs", authorize=lambda request: "operator",
                          workers=0, scheduler=False)
    try:
        client = app.test_client()
        html = text(client.get("/ops/jobs/queues"))
        assert 'action="/ops/jobs/queues/ai/pause"' in html and 'hx-get="/ops/jobs/queues?stamp=' in html
        assert '<a href="/ops/jobs/queues" aria-current="page">Queues</a>' in html
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
        assert csrf
        response = client.post("/ops/jobs/queues/ai/pause", data={"csrf_token": csrf.group(1)})
        assert response.status_code == 302 and response.headers["Location"].endswith("/ops/jobs/queues")
        assert is_paused(db, "ai")
    finally:
        jobs.runtime.db.dispose()


# ---------------------------------------------------------------- the jobs page: a whole category


def test_the_jobs_page_pauses_and_resumes_a_whole_category(panel_as: PanelAs, db: Database, make_job: MakeJob) -> None:
    make_job("a", category="Metrics")
    make_job("b", category="Metrics")
    make_job("c", category="Other")
    operator = panel_as("operator")
    html = text(operator.get("/jobs"))
    assert 'action="/categories/Metrics/pause"' in html and "Pause all" in html
    response = operator.post("/categories/Metrics/pause")
    assert response.status_code == 302 and response.headers["Location"].endswith("/jobs")
    with db.read() as session:
        assert {j.name: j.enabled for j in store.list_jobs(session)} == {"a": False, "b": False, "c": True}
    html = text(operator.get("/jobs"))
    assert "Paused 2 jobs of Metrics." in html and 'action="/categories/Metrics/resume"' in html
    assert panel_as("viewer").post("/categories/Metrics/resume").status_code == 403
    assert operator.post("/categories/Metrics/resume", csrf=False).status_code == 403
    assert operator.post("/categories/Nothing/resume").status_code == 404
    assert 'action="/categories/' not in text(panel_as("viewer").get("/jobs"))


def test_the_workers_page_says_which_queues_a_worker_serves(panel_as: PanelAs, db: Database) -> None:
    now = utcnow()
    with db.write() as session:
        workers.register(session, workers.Registration("gpu-box:7", "gpu-box", 7, "1", 4, now, ("ai:2", "default")),
                         now=now)
        workers.register(session, workers.Registration("all:8", "box", 8, "1", 4, now), now=now)
    html = text(panel_as("viewer").get("/workers"))
    gpu = re.search(r"<tr><td><code>gpu-box:7</code>.*?</td>", html, re.DOTALL)
    every = re.search(r"<tr><td><code>all:8</code>.*?</td>", html, re.DOTALL)
    assert gpu and "queues ai:2, default" in gpu.group(0)
    assert every and "queues" not in every.group(0)  # every queue: nothing to say
