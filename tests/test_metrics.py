"""Prometheus ``GET /metrics`` (lexyjobs.metrics): the text parses with prometheus_client's own
parser and its values match the runs, fires and workers each test creates; who may read it
(LEXYJOBS_METRICS_TOKEN, API tokens, a panel login, LEXYJOBS_METRICS_PUBLIC); an empty or an
unreachable database. SQLite and Postgres."""
from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import ApiClient, PanelSession, drive_run
from flask import Flask
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from lexyjobs import __version__, accounts, create_app, runs
from lexyjobs.config import Settings, load_settings
from lexyjobs.db import Database, utcnow
from lexyjobs.panel.settings import effective_settings
from lexyjobs.runs import RunRequest
from lexyjobs.scheduler import fire_key
from lexyjobs.states import RunStatus

TOKEN = "metrics-token-0123456789"
MakeJob = Callable[..., str]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def scraper(make_api_app: Callable[..., Flask]) -> Callable[..., Samples]:
    """``scrape()``: GET /metrics with LEXYJOBS_METRICS_TOKEN, parsed into {(name, labels): value}."""
    app = make_api_app(metrics_token=TOKEN)

    def scrape() -> Samples:
        response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/plain"
        return parsed(response.get_data(as_text=True))
    return scrape


def parsed(text: str) -> Samples:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


# ---------------------------------------------------------------- values


def test_runs_are_counted_by_job_and_status(scraper: Callable[..., Samples], db: Database, make_job: MakeJob) -> None:
    make_job("alpha", max_concurrency=0)
    make_job("beta", max_concurrency=0)
    for status in (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.RUNNING, RunStatus.CANCELED):
        drive_run(db, runs.enqueue(db, "alpha"), status)
    runs.enqueue(db, "beta")
    runs.record_not_run(db, "beta", RunStatus.SKIPPED, reason="overlap", trigger="schedule")
    samples = scraper()
    counts = {dict(labels)["job"] + ":" + dict(labels)["status"]: n
              for labels, n in series(samples, "lexyjobs_runs").items() if n}
    assert counts == {"alpha:succeeded": 2, "alpha:failed": 1, "alpha:running": 1, "alpha:canceled": 1,
                      "beta:queued": 1, "beta:skipped": 1}
    assert len(series(samples, "lexyjobs_runs")) == 2 * len(RunStatus)  # zeros too: every job, every status


def test_queue_depth_running_and_the_oldest_wait(scraper: Callable[..., Samples], db: Database,
                                                 make_job: MakeJob) -> None:
    make_job("queue", max_concurrency=0)
    now = utcnow()
    runs.enqueue_many(db, [RunRequest("queue")], now=now - timedelta(seconds=120))  # due for two minutes
    runs.enqueue(db, "queue")
    runs.enqueue(db, "queue", scheduled_for=now + timedelta(hours=1))  # later: queued, not due
    drive_run(db, runs.enqueue(db, "queue"), RunStatus.RUNNING)
    samples = scraper()
    assert value(samples, "lexyjobs_queue_depth") == 2
    assert value(samples, "lexyjobs_queued_runs") == 3
    assert value(samples, "lexyjobs_running_runs") == 1
    oldest = value(samples, "lexyjobs_oldest_queued_age_seconds")
    assert oldest is not None and 120 <= oldest < 150


def test_the_last_success_of_each_job(scraper: Callable[..., Samples], db: Database, make_job: MakeJob) -> None:
    make_job("steady", max_concurrency=0)
    make_job("broken")
    first, last = runs.enqueue(db, "steady"), runs.enqueue(db, "steady")
    drive_run(db, first, RunStatus.SUCCEEDED, queued_for=-600)  # ten minutes ago
    drive_run(db, last, RunStatus.SUCCEEDED)
    drive_run(db, runs.enqueue(db, "steady"), RunStatus.FAILED, queued_for=60)  # a later failure changes nothing
    drive_run(db, runs.enqueue(db, "broken"), RunStatus.FAILED)
    finished = runs.get_run(db, last).finished_at
    assert finished is not None
    assert series(scraper(), "lexyjobs_last_success_timestamp_seconds") == {
        (("job", "steady"),): pytest.approx(finished.timestamp(), abs=1e-3)}


def test_the_last_hours_durations_waits_and_outcomes(scraper: Callable[..., Samples], db: Database,
                                                    make_job: MakeJob) -> None:
    make_job("timed", max_concurrency=0)
    for ran, waited, status in ((0.3, 0.02, RunStatus.SUCCEEDED), (2.0, 3.0, RunStatus.SUCCEEDED),
                                (20.0, 40.0, RunStatus.FAILED)):
        drive_run(db, runs.enqueue(db, "timed"), status, queued_for=waited, ran_for=ran)
    drive_run(db, runs.enqueue(db, "timed"), RunStatus.SUCCEEDED, queued_for=-7200, ran_for=5)  # two hours ago
    runs.record_not_run(db, "timed", RunStatus.BLOCKED, reason="upstream failed", trigger="dependency")
    samples = scraper()
    assert {dict(k)["status"]: v for k, v in series(samples, "lexyjobs_finished_runs").items()} == {
        "succeeded": 2, "failed": 1, "blocked": 1}
    duration = {dict(k)["le"]: v for k, v in series(samples, "lexyjobs_run_duration_seconds_bucket").items()}
    assert (duration["0.1"], duration["0.5"], duration["1"], duration["5"], duration["30"], duration["+Inf"]) == (
        0, 1, 1, 2, 3, 3)  # the blocked run never ran: no duration
    assert value(samples, "lexyjobs_run_duration_seconds_gcount", job="timed") == 3
    assert value(samples, "lexyjobs_run_duration_seconds_gsum", job="timed") == pytest.approx(22.3, abs=0.01)
    wait = {dict(k)["le"]: v for k, v in series(samples, "lexyjobs_queue_wait_seconds_bucket").items()}
    assert (wait["0.01"], wait["0.05"], wait["1"], wait["5"], wait["30"], wait["60"], wait["+Inf"]) == (
        0, 1, 1, 2, 2, 3, 3)
    assert value(samples, "lexyjobs_queue_wait_seconds_gsum", job="timed") == pytest.approx(43.02, abs=0.01)


def test_the_scheduler_lag_of_each_jobs_latest_fire(scraper: Callable[..., Samples], db: Database,
                                                    make_job: MakeJob) -> None:
    make_job("cron", schedule="every 5m", max_concurrency=0)
    make_job("by-hand")
    fired = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    for at, late in ((fired - timedelta(minutes=5), 9.0), (fired, 1.5)):  # the latest fire was 1.5 s late
        runs.enqueue_many(db, [RunRequest("cron", trigger="schedule", fire_key=fire_key("cron", at))],
                          now=at + timedelta(seconds=late))
    runs.enqueue(db, "cron")  # a manual run after it is not a fire
    runs.enqueue(db, "by-hand")
    samples = scraper()
    assert series(samples, "lexyjobs_scheduler_lag_seconds") == {(("job", "cron"),): pytest.approx(1.5, abs=1e-3)}
    assert value(samples, "lexyjobs_scheduler_last_fire_timestamp_seconds", job="cron") == fired.timestamp()


def test_live_workers_and_their_heartbeats(scraper: Callable[..., Samples], start_worker: Callable[..., Any]) -> None:
    start_worker("metrics:1", workers=3)
    samples = scraper()
    assert value(samples, "lexyjobs_workers") == 1
    assert value(samples, "lexyjobs_worker_info", worker="metrics:1", host=socket.gethostname(), pid=str(os.getpid()),
                 version=__version__) == 1
    assert value(samples, "lexyjobs_worker_threads", worker="metrics:1") == 3
    assert value(samples, "lexyjobs_worker_running_runs", worker="metrics:1") == 0
    beat = value(samples, "lexyjobs_worker_heartbeat_timestamp_seconds", worker="metrics:1")
    started = value(samples, "lexyjobs_worker_started_timestamp_seconds", worker="metrics:1")
    assert beat is not None and started is not None and started <= beat <= utcnow().timestamp()


def test_an_empty_database_gives_zeros_not_an_error(scraper: Callable[..., Samples]) -> None:
    samples = scraper()
    for name in ("lexyjobs_queue_depth", "lexyjobs_queued_runs", "lexyjobs_running_runs",
                 "lexyjobs_oldest_queued_age_seconds", "lexyjobs_workers"):
        assert value(samples, name) == 0, name
    assert not series(samples, "lexyjobs_runs") and not series(samples, "lexyjobs_run_duration_seconds_bucket")


def test_openmetrics_is_served_when_asked_for(make_api_app: Callable[..., Flask], db: Database,
                                              make_job: MakeJob) -> None:
    make_job("om")
    drive_run(db, runs.enqueue(db, "om"), RunStatus.SUCCEEDED)
    response = make_api_app(metrics_token=TOKEN).test_client().get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/openmetrics-text"})
    assert response.status_code == 200 and response.mimetype == "application/openmetrics-text"
    types = {family.name: family.type for family in parse_openmetrics(response.get_data(as_text=True))}
    assert types["lexyjobs_run_duration_seconds"] == "gaugehistogram" and types["lexyjobs_runs"] == "gauge"


# ---------------------------------------------------------------- who may read it


def test_without_credentials_it_is_refused(app: Flask, db: Database) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token-at-all"}, {"Authorization": f"Basic {TOKEN}"}):
        response = app.test_client().get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="lexyjobs"'
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert "lexyjobs_" not in response.get_data(as_text=True)


def test_the_metrics_token_works_and_only_when_set(app: Flask, make_api_app: Callable[..., Flask],
                                                  db: Database) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert app.test_client().get("/metrics", headers=bearer).status_code == 401  # not configured here
    assert make_api_app(metrics_token=TOKEN).test_client().get("/metrics", headers=bearer).status_code == 200
    assert make_api_app(metrics_token=TOKEN + "x").test_client().get("/metrics", headers=bearer).status_code == 401


def test_the_metrics_token_opens_nothing_else(make_api_app: Callable[..., Flask], db: Database) -> None:
    client = make_api_app(metrics_token=TOKEN).test_client()
    assert client.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401


def test_api_tokens_of_every_role_and_the_env_token_work(api_client: ApiClient, make_api_app: Callable[..., Flask],
                                                          db: Database) -> None:
    for role in ("viewer", "operator", "admin"):
        response = api_client.get("/metrics", role=role)
        assert response.status_code == 200 and parsed(response.get_data(as_text=True)), role
    accounts.revoke_token(db, "ci-viewer")
    assert api_client.get("/metrics", role="viewer").status_code == 401
    env_token = "env-admin-token-0123456789"
    other = make_api_app(api_token=env_token).test_client()
    assert other.get("/metrics", headers={"Authorization": f"Bearer {env_token}"}).status_code == 200


def test_a_viewer_logged_in_to_the_panel_can_read_it(panel_as: Callable[[str], PanelSession]) -> None:
    response = panel_as("viewer").get("/metrics")
    assert response.status_code == 200 and "lexyjobs_queue_depth" in response.get_data(as_text=True)


def test_the_public_setting_needs_no_credentials(make_api_app: Callable[..., Flask], db: Database) -> None:
    response = make_api_app(metrics_public=True).test_client().get("/metrics")
    assert response.status_code == 200 and value(parsed(response.get_data(as_text=True)), "lexyjobs_workers") == 0
    assert load_settings(environ={"LEXYJOBS_METRICS_PUBLIC": "true"}).metrics_public is True
    assert load_settings(environ={}).metrics_public is False


def test_a_short_metrics_token_is_refused_and_the_token_is_never_shown() -> None:
    with pytest.raises(SystemExit, match="LEXYJOBS_METRICS_TOKEN must be at least 16 characters"):
        load_settings(environ={"LEXYJOBS_METRICS_TOKEN": "short"})
    rows = {row.name: row.value for row in effective_settings(Settings(metrics_token=TOKEN))}
    assert rows["metrics_token"] == "set" and TOKEN not in " ".join(rows.values())


def test_an_unreachable_database_answers_503(tmp_path: Path) -> None:
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'missing' / 'jobs.db'}", "jobs_file": None,
                      "data_dir": str(tmp_path), "metrics_public": True})
    try:
        response = app.test_client().get("/metrics")
    finally:
        app.extensions["lexyjobs"].db.dispose()
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "database_unavailable"
