"""A ``${VAR}`` that is not set is a configuration error, not a transient failure: every kind
that expands ``${VAR}`` (http, shell, openai) fails the run at its first attempt with a message
naming the variable; and the job says so before it runs (``unset_env`` in /api/jobs, a notice on
its panel page). No request leaves: the expansion fails before it."""
from __future__ import annotations

import html
from typing import Any

import pytest
from conftest import wait_for

from lexyjobs import runs
from lexyjobs.kinds import unset_env
from lexyjobs.models import Run

UNSET = "H3_SURELY_UNSET_VARIABLE"
JOBS: dict[str, dict[str, Any]] = {
    "http": {"kind": "http", "url": "http://127.0.0.1:9/hook", "headers": {"Authorization": f"Bearer ${{{UNSET}}}"}},
    "shell": {"kind": "shell", "argv": ["echo", "hello"], "env": {"TOKEN": f"${{{UNSET}}}"}},
    "openai": {"kind": "openai", "prompt": "Say hi", "model": "m", "api_key": f"${{{UNSET}}}",
               "base_url": "http://127.0.0.1:9/v1"},
}


@pytest.fixture(autouse=True)
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSET, raising=False)


def finished(db: Any, run_id: int) -> Run:
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in ("succeeded", "failed", "canceled") and r, 30)


@pytest.mark.parametrize("kind", list(JOBS))
def test_an_unset_variable_fails_the_run_at_once_naming_it(db, make_job, start_worker, kind):
    make_job("needs-var", max_attempts=3, backoff="0s", backoff_jitter=0, **JOBS[kind])
    start_worker()
    run = finished(db, runs.enqueue(db, "needs-var"))
    assert run.status == "failed"
    assert run.attempt == 1  # not retried: another attempt would not find it either
    assert run.error == f"environment variable {UNSET} is not set"


@pytest.mark.parametrize("kind", list(JOBS))
def test_the_api_names_the_unset_variables_of_a_job_until_they_are_set(api_client, make_job, monkeypatch, kind):
    make_job("needs-var", **JOBS[kind])
    job = api_client.ok(api_client.get("/api/jobs/needs-var", role="viewer"))
    assert job["unset_env"] == [UNSET]
    listed = api_client.ok(api_client.get("/api/jobs", role="viewer"))["jobs"]
    assert [j["unset_env"] for j in listed if j["name"] == "needs-var"] == [[UNSET]]
    monkeypatch.setenv(UNSET, "now-set")
    assert api_client.ok(api_client.get("/api/jobs/needs-var", role="viewer"))["unset_env"] == []


def test_the_job_page_warns_about_an_unset_variable(panel_as, make_job, monkeypatch):
    make_job("needs-var", **JOBS["http"])
    make_job("fine", kind="shell", argv=["echo", "${HOME}"])
    monkeypatch.setenv("HOME", "/root")
    viewer = panel_as("viewer")
    page = html.unescape(viewer.get("/jobs/needs-var").get_data(as_text=True))
    assert "Its runs will fail at once" in page and f"<code>{UNSET}</code>" in page
    assert "Its runs will fail at once" not in viewer.get("/jobs/fine").get_data(as_text=True)


def test_only_the_fields_a_kind_expands_count():
    environ = {"SET": "1"}
    assert unset_env("openai", {"prompt": "literal ${NOT_EXPANDED}", "model": "${MODEL}", "api_key": "${SET}"},
                     environ) == ["MODEL"]
    assert unset_env("shell", {"argv": ["x", "${A}"], "env": {"K": "${B}${A}"}, "cwd": "${C}"}, environ) == ["A", "B"]
    assert unset_env("python", {"func": "m:f"}, environ) == []
