"""``/api/queues`` (list, pause, resume), ``/api/categories/<category>/pause|resume`` and their
CLI twins ``lexyjobs queues``, ``lexyjobs queue pause|resume`` and ``lexyjobs category
pause|resume``: the effect in the database, the audit entry, the roles, and bad names."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner, Result
from conftest import ApiClient

from lexyjobs import runs, store
from lexyjobs.cli import main
from lexyjobs.db import Database
from lexyjobs.models import AuditEntry, QueueState
from lexyjobs.runtime import Runtime
from sqlalchemy import select

MakeJob = Callable[..., str]
ROUTES = {("GET", "/api/queues"), ("POST", "/api/queues/{name}/pause"), ("POST", "/api/queues/{name}/resume"),
          ("POST", "/api/categories/{category}/pause"), ("POST", "/api/categories/{category}/resume")}


def audit_rows(db: Database, prefix: str) -> list[tuple[str, str, str | None, Any]]:
    with db.read() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id))
        return [(e.action, e.actor, e.target, e.details) for e in rows]


def queue_row(db: Database, name: str) -> QueueState | None:
    with db.read() as session:
        return session.get(QueueState, name)


def enabled(db: Database) -> dict[str, bool]:
    with db.read() as session:
        return {j.name: j.enabled for j in store.list_jobs(session)}


# ---------------------------------------------------------------- /api/queues


def test_the_queue_list_shows_every_known_queue_with_its_figures(api_client: ApiClient, lj: Runtime,
                                                                 make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    make_job("plain")
    for _ in range(3):
        runs.enqueue(lj.db, "llm")
    body = api_client.ok(api_client.get("/api/queues", role="viewer"))
    assert body["total"] == 2 and [q["name"] for q in body["queues"]] == ["default", "ai"]
    ai = body["queues"][1]
    assert {k: ai[k] for k in ("paused", "paused_at", "paused_by", "queued", "due", "running", "jobs", "workers")} == {
        "paused": False, "paused_at": None, "paused_by": None, "queued": 3, "due": 3, "running": 0, "jobs": 1,
        "workers": []}
    assert ai["oldest_wait_seconds"] >= 0 and ai["finished_per_minute"] == 0


def test_pausing_and_resuming_a_queue_is_stored_and_audited(api_client: ApiClient, lj: Runtime,
                                                            make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    paused = api_client.ok(api_client.post("/api/queues/ai/pause", role="operator"))
    assert paused["changed"] is True and paused["queue"]["paused"] is True
    assert paused["queue"]["paused_by"] == "token:ci-operator" and paused["queue"]["paused_at"]
    again = api_client.ok(api_client.post("/api/queues/ai/pause", role="operator"))
    assert again["changed"] is False and again["queue"]["paused_at"] == paused["queue"]["paused_at"]
    row = queue_row(lj.db, "ai")
    assert row is not None and row.paused
    listed = api_client.ok(api_client.get("/api/queues", role="viewer"))["queues"]
    assert [q["paused"] for q in listed] == [False, True]
    resumed = api_client.ok(api_client.post("/api/queues/ai/resume", role="admin"))
    assert resumed["changed"] is True and resumed["queue"]["paused"] is False
    assert audit_rows(lj.db, "queue.") == [("queue.pause", "token:ci-operator", "ai", {"changed": True}),
                                           ("queue.pause", "token:ci-operator", "ai", {"changed": False}),
                                           ("queue.resume", "token:ci-admin", "ai", {"changed": True})]


def test_a_viewer_cannot_pause_a_queue(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    api_client.error(api_client.post("/api/queues/ai/pause", role="viewer"), 403, "forbidden")
    api_client.error(api_client.post("/api/queues/ai/pause", role=None), 401, "unauthorized")
    assert queue_row(lj.db, "ai") is None and audit_rows(lj.db, "queue.") == []


@pytest.mark.parametrize("path", ["/api/queues/nosuch/pause", "/api/queues/AI/pause", "/api/queues/a%20b/resume",
                                  "/api/queues/-x/pause"])
def test_an_unknown_or_malformed_queue_is_404(api_client: ApiClient, lj: Runtime, make_job: MakeJob,
                                              path: str) -> None:
    make_job("llm", queue="ai")
    response = api_client.post(path, role="operator")
    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "not_found"
    with lj.db.read() as session:
        assert session.scalars(select(QueueState)).all() == []


def test_a_panel_session_cannot_pause_a_queue_through_the_api(panel_as: Callable[..., Any], lj: Runtime,
                                                                    make_job: MakeJob) -> None:
    """The panel's session does not authorize /api (bearer tokens only), so a cookie-carrying
    cross-site POST does nothing."""
    make_job("llm", queue="ai")
    operator = panel_as("operator")
    response = operator.client.post("/api/queues/ai/pause")
    assert response.status_code == 401
    assert queue_row(lj.db, "ai") is None


# ---------------------------------------------------------------- /api/categories


def test_a_category_is_paused_and_resumed_in_one_action(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("a", category="Reports/Daily", schedule="*/5 * * * *")
    make_job("b", category="Reports/Daily")
    make_job("c", category="Other")
    body = api_client.ok(api_client.post("/api/categories/Reports/Daily/pause", role="operator"))
    assert body == {"category": "Reports/Daily", "paused": True, "changed": ["a", "b"]}
    assert enabled(lj.db) == {"a": False, "b": False, "c": True}
    assert api_client.ok(api_client.post("/api/categories/Reports/Daily/pause", role="operator"))["changed"] == []
    body = api_client.ok(api_client.post("/api/categories/Reports%2FDaily/resume", role="operator"))
    assert body["changed"] == ["a", "b"] and enabled(lj.db) == {"a": True, "b": True, "c": True}
    assert audit_rows(lj.db, "category.") == [
        ("category.pause", "token:ci-operator", "Reports/Daily", {"jobs": ["a", "b"]}),
        ("category.pause", "token:ci-operator", "Reports/Daily", {"jobs": []}),
        ("category.resume", "token:ci-operator", "Reports/Daily", {"jobs": ["a", "b"]})]


@pytest.mark.parametrize("category", ["Nothing", "x" * 150, "with%00nul"])
def test_a_category_without_jobs_is_404(api_client: ApiClient, lj: Runtime, make_job: MakeJob, category: str) -> None:
    make_job("a", category="General")
    api_client.error(api_client.post(f"/api/categories/{category}/pause", role="operator"), 404, "not_found")
    assert enabled(lj.db) == {"a": True} and audit_rows(lj.db, "category.") == []


def test_a_viewer_cannot_pause_a_category(api_client: ApiClient, lj: Runtime, make_job: MakeJob) -> None:
    make_job("a", category="General")
    api_client.error(api_client.post("/api/categories/General/pause", role="viewer"), 403, "forbidden")
    assert enabled(lj.db) == {"a": True}


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def cli(db_url: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False,
                                  env={"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": ""})
    return invoke


def test_the_queue_commands_pause_resume_and_list(cli: Callable[..., Result], db: Database, make_job: MakeJob) -> None:
    make_job("llm", queue="ai")
    runs.enqueue(db, "llm")
    result = cli("queue", "pause", "ai")
    assert (result.exit_code, result.output) == (0, "paused queue ai\n")
    assert cli("queue", "pause", "ai").output == "queue ai was already paused\n"
    lines = cli("queues").output.splitlines()
    assert lines[0].split() == ["QUEUE", "STATE", "QUEUED", "DUE", "OLDEST", "WAIT", "RUNNING", "DONE/MIN", "WORKERS"]
    assert lines[1].split() == ["default", "active", "0", "0", "-", "0", "0", "none"]
    assert lines[2].split()[:3] == ["ai", "paused", "by"] and lines[2].split()[3].startswith("cli:")
    assert lines[2].split()[4:6] == ["1", "1"]  # queued, due
    listed = json.loads(cli("queues", "--json").output)
    assert [(q["name"], q["paused"], q["queued"]) for q in listed] == [("default", False, 0), ("ai", True, 1)]
    assert cli("queue", "resume", "ai").output == "resumed queue ai\n"
    assert [a for a, *_ in audit_rows(db, "queue.")] == ["queue.pause", "queue.pause", "queue.resume"]
    assert all(actor.startswith("cli:") for _, actor, *_ in audit_rows(db, "queue."))


def test_the_queue_commands_refuse_an_unknown_queue_in_one_line(cli: Callable[..., Result], db: Database) -> None:
    result = cli("queue", "pause", "nosuch")
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: no queue named 'nosuch' (queues: default)"), line


def test_the_category_commands_pause_and_resume_every_job_of_it(cli: Callable[..., Result], db: Database,
                                                                make_job: MakeJob) -> None:
    make_job("a", category="Metrics")
    make_job("b", category="Metrics")
    make_job("c")
    assert cli("category", "pause", "Metrics").output == "paused 2 jobs of category Metrics: a, b\n"
    assert enabled(db) == {"a": False, "b": False, "c": True}
    assert cli("category", "resume", "Metrics").output == "resumed 2 jobs of category Metrics: a, b\n"
    assert cli("category", "resume", "Metrics").output == "every job of category Metrics was already resumed\n"
    make_job("d", category="Solo")
    assert cli("category", "pause", "Solo").output == "paused 1 job of category Solo: d\n"
    result = cli("category", "pause", "Nope")
    assert result.exit_code == 2 and result.output.startswith("error: no job has the category 'Nope'")
