"""Failure alerts (lexyjobs.alerts): one alert per state change, to a real local webhook server and
a real local SMTP server (aiosmtpd), on both databases. ``Alerter.check(now)`` is driven by hand,
with runs brought to their outcomes through the state machine; one test goes through a worker."""
from __future__ import annotations

import dataclasses
import json
import socket
import threading
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from conftest import drive_run, wait_for
from sqlalchemy import select

from lexyjobs import runs
from lexyjobs.alerts.alerter import ALERTS, Alerter
from lexyjobs.alerts.notifiers import SIGNATURE_HEADER, signature
from lexyjobs.alerts.rules import AlertRule
from lexyjobs.cli import main
from lexyjobs.config import load_settings
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import parse_definition
from lexyjobs.errors import InvalidDefinition
from lexyjobs.runtime import Runtime
from lexyjobs.states import RunStatus


class Hooks:
    """A local HTTP server recording the JSON POSTed to it; ``status`` is what it answers."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.lock = threading.Lock()
        self.url = ""

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r["json"] for r in self.received if r["path"] == path]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    state = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.received.append({"path": self.path, "raw": body, "json": json.loads(body),
                                       "headers": dict(self.headers)})
            self.send_response(state.status)
            self.end_headers()
            self.wfile.write(b"ok" if state.status < 300 else b"hook is down")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with socket.socket() as probe:  # aiosmtpd's controller cannot take port 0: find a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def alerter(lj: Runtime, hooks: Hooks) -> Callable[..., Alerter]:
    """An Alerter with the global rule sending to the local webhook, settings overridable."""
    def make(**overrides: Any) -> Alerter:
        values = {"alert_webhook": hooks.url + "/hook", "alert_webhook_secret": "s3cret",
                  "base_url": "https://jobs.example.com/", **overrides}
        return Alerter(lj.db, dataclasses.replace(lj.settings, **values))
    return make


def finish(db: Database, job: str, status: RunStatus, error: str | None = "boom") -> int:
    run_id = runs.enqueue_many(db, [runs.RunRequest(job, trigger="api")])[0]
    drive_run(db, run_id, status, queued_for=0.0, ran_for=0.0, error=error if status == RunStatus.FAILED else None)
    return run_id


def alerts_in(db: Database) -> list[Any]:
    with db.read() as session:
        return session.execute(select(ALERTS).order_by(ALERTS.c.id)).all()


LATER = timedelta(seconds=1)  # drive_run's outcomes lie up to a moment ahead of utcnow()


def test_a_failure_alerts_once_then_recovery_alerts_once(db: Database, make_job: Callable[..., str],
                                                          alerter: Callable[..., Alerter], hooks: Hooks) -> None:
    make_job("etl", title="Nightly ETL")
    check = alerter().check
    finish(db, "etl", RunStatus.SUCCEEDED)
    assert check(utcnow() + LATER) == []
    failed = finish(db, "etl", RunStatus.FAILED, error="disk full")
    assert len(check(utcnow() + LATER)) == 1
    assert check(utcnow() + LATER) == []                    # the same state: nothing new
    finish(db, "etl", RunStatus.FAILED, error="disk full")  # the streak goes on: still one alert
    assert check(utcnow() + LATER) == []

    [alert] = hooks.received
    body = alert["json"]
    assert body["event"] == "failed" and body["job"] == "etl" and body["run_id"] == failed
    assert body["message"] == "Nightly ETL failed: disk full"
    assert body["url"] == f"https://jobs.example.com/runs/{failed}"
    assert alert["headers"][SIGNATURE_HEADER] == signature(alert["raw"], "s3cret")

    finish(db, "etl", RunStatus.SUCCEEDED)
    assert len(check(utcnow() + LATER)) == 1
    assert check(utcnow() + LATER) == []
    assert [b["event"] for b in hooks.bodies("/hook")] == ["failed", "recovered"]
    assert hooks.bodies("/hook")[1]["message"] == "Nightly ETL succeeded again after failing."

    finish(db, "etl", RunStatus.FAILED, error="again")      # a new episode alerts again
    check(utcnow() + LATER)
    assert [b["event"] for b in hooks.bodies("/hook")] == ["failed", "recovered", "failed"]
    assert [(a.event, a.status, a.deliveries) for a in alerts_in(db)] == [
        ("failed", "sent", {"webhook": "ok"}), ("recovered", "sent", {"webhook": "ok"}),
        ("failed", "sent", {"webhook": "ok"})]


def test_after_failures_waits_for_that_many_failures_in_a_row(db: Database, make_job: Callable[..., str],
                                                                 alerter: Callable[..., Alerter], hooks: Hooks) -> None:
    make_job("etl")
    check = alerter(alert_after_failures=3).check
    for _ in range(2):
        finish(db, "etl", RunStatus.FAILED)
        assert check(utcnow() + LATER) == []
    finish(db, "etl", RunStatus.SUCCEEDED)  # breaks the streak: no alert, and nothing to recover from
    for _ in range(3):
        finish(db, "etl", RunStatus.FAILED)
        check(utcnow() + LATER)
    assert [b["message"] for b in hooks.bodies("/hook")] == ["etl failed 3 times in a row: boom"]


def test_a_run_with_attempts_left_is_not_a_failure_yet(db: Database, make_job: Callable[..., str],
                                                        alerter: Callable[..., Alerter], hooks: Hooks,
                                                        start_worker: Callable[..., Any]) -> None:
    make_job("flaky", func="jobfuncs:fail_cleanly", max_attempts=2, backoff="0s", backoff_jitter=0)
    check = alerter().check
    run_id = runs.enqueue_many(db, [runs.RunRequest("flaky")])[0]
    start_worker()
    wait_for(lambda: runs.get_run(db, run_id).status == RunStatus.FAILED)
    check(utcnow() + LATER)
    assert runs.get_run(db, run_id).attempt == 2
    [body] = hooks.bodies("/hook")
    assert body["event"] == "failed" and body["run_id"] == run_id and body["details"]["failure_streak"] == 1


def test_a_job_without_success_in_its_window_alerts_stale_once_per_episode(
        db: Database, make_job: Callable[..., str], alerter: Callable[..., Alerter], hooks: Hooks) -> None:
    make_job("report", stale_after="1h")
    check = alerter().check
    finish(db, "report", RunStatus.SUCCEEDED)
    assert check(utcnow() + LATER) == []
    later = utcnow() + timedelta(hours=2)
    assert len(check(later)) == 1 and check(later + timedelta(minutes=5)) == []
    finish(db, "report", RunStatus.SUCCEEDED)
    assert check(utcnow() + LATER) == []
    assert len(check(utcnow() + timedelta(hours=3))) == 1  # stale again after the newer success
    bodies = hooks.bodies("/hook")
    assert [b["event"] for b in bodies] == ["stale", "stale"]
    assert bodies[0]["message"] == "report is stale: last success 2h ago, window 1h."
    assert bodies[0]["url"] == "https://jobs.example.com/jobs/report"


def test_a_skipped_fire_alerts_as_missed(db: Database, make_job: Callable[..., str],
                                         alerter: Callable[..., Alerter], hooks: Hooks) -> None:
    make_job("hourly", schedule="@hourly")
    check = alerter().check
    skipped = runs.record_not_run(db, "hourly", RunStatus.SKIPPED, reason="missed the fire at 10:00 while no "
                                  "scheduler was running", trigger="schedule")
    assert len(check()) == 1 and check() == []
    [body] = hooks.bodies("/hook")
    assert body["event"] == "missed" and body["run_id"] == skipped
    assert body["message"] == "hourly missed the fire at 10:00 while no scheduler was running."


def test_a_job_can_silence_or_redirect_its_alerts(db: Database, make_job: Callable[..., str],
                                                  alerter: Callable[..., Alerter], hooks: Hooks) -> None:
    make_job("quiet", alerts=False)
    make_job("team-b", alerts={"slack": hooks.url + "/slack", "events": ["failed"], "webhook": hooks.url + "/b"})
    check = alerter().check
    for job in ("quiet", "team-b"):
        finish(db, job, RunStatus.FAILED)
    check(utcnow() + LATER)
    assert hooks.bodies("/hook") == []
    assert [b["job"] for b in hooks.bodies("/b")] == ["team-b"]
    [slack] = hooks.bodies("/slack")
    assert set(slack) == {"text"} and slack["text"].startswith("[lexyjobs] team-b failed\nteam-b failed: boom")
    finish(db, "team-b", RunStatus.SUCCEEDED)  # recovered is not among its events
    assert check(utcnow() + LATER) == []


def test_without_targets_nothing_is_recorded(db: Database, make_job: Callable[..., str],
                                             alerter: Callable[..., Alerter]) -> None:
    make_job("etl")
    finish(db, "etl", RunStatus.FAILED)
    assert alerter(alert_webhook=None).check(utcnow() + LATER) == []
    assert alerts_in(db) == []


def test_a_failing_target_is_recorded_and_logged_and_the_others_still_get_it(
        db: Database, make_job: Callable[..., str], alerter: Callable[..., Alerter], hooks: Hooks,
        caplog: pytest.LogCaptureFixture) -> None:
    make_job("etl")
    hooks.status = 500
    run_id = finish(db, "etl", RunStatus.FAILED)
    unreachable = "http://127.0.0.1:9/slack"  # discard port: nothing listens
    check = alerter(alert_slack=unreachable).check
    check(utcnow() + LATER)
    [alert] = alerts_in(db)
    assert alert.status == "failed"
    assert alert.deliveries == {"webhook": "HTTP 500 Internal Server Error: hook is down",
                                "slack": "could not connect"}
    assert "not delivered" in caplog.text and "could not connect" in caplog.text
    assert check(utcnow() + LATER) == []  # recorded: not sent again on every check
    assert runs.get_run(db, run_id).status == RunStatus.FAILED


def test_two_processes_seeing_the_same_failure_send_one_alert(db: Database, make_job: Callable[..., str],
                                                              alerter: Callable[..., Alerter], hooks: Hooks) -> None:
    make_job("etl")
    finish(db, "etl", RunStatus.FAILED)
    first, second = alerter(), alerter()
    now = utcnow() + LATER
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda a=a: results.append(a.check(now))) for a in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r) for r in results) == [0, 1]
    assert len(hooks.bodies("/hook")) == 1


def test_alerts_are_mailed(db: Database, make_job: Callable[..., str], alerter: Callable[..., Alerter],
                           smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    make_job("etl", title="Nightly ETL")
    run_id = finish(db, "etl", RunStatus.FAILED, error="disk full")
    alerter(alert_webhook=None, alert_email=("ops@example.com", "dev@example.com"), smtp_host="127.0.0.1",
            smtp_port=port, smtp_tls="none", smtp_from="jobs@example.com").check(utcnow() + LATER)
    [(recipients, message)] = box.messages
    assert recipients == ["ops@example.com", "dev@example.com"]
    assert message["Subject"] == "[lexyjobs] Nightly ETL failed" and message["From"] == "jobs@example.com"
    body = message.get_payload()
    assert "Nightly ETL failed: disk full" in body and f"https://jobs.example.com/runs/{run_id}" in body


def test_the_alerts_field_is_validated() -> None:
    base = {"kind": "shell", "argv": ["true"]}
    for alerts, problem in (("yes", "must be false or a table"), ({"events": ["exploded"]}, "events must be"),
                            ({"after_failures": 0}, "after_failures"), ({"slack": "ftp://x"}, "slack must be"),
                            ({"email": ["nobody"]}, "email must be"), ({"pager": "x"}, "unknown key 'pager'")):
        with pytest.raises(InvalidDefinition, match=problem):
            parse_definition("job", {**base, "alerts": alerts})
    assert parse_definition("job", {**base, "alerts": {"email": "a@b.c"}}).alerts == {"email": ["a@b.c"]}


def test_alert_settings_are_validated() -> None:
    assert load_settings(environ={"LEXYJOBS_ALERT_EVENTS": "failed, missed"}).alert_events == ("failed", "missed")
    for environ, problem in (({"LEXYJOBS_ALERT_EVENTS": "failed,late"}, "LEXYJOBS_ALERT_EVENTS has 'late'"),
                             ({"LEXYJOBS_ALERT_EMAIL": "a@b.c"}, "needs LEXYJOBS_SMTP_HOST"),
                             ({"LEXYJOBS_SMTP_TLS": "maybe"}, "LEXYJOBS_SMTP_TLS must be"),
                             ({"LEXYJOBS_ALERT_AFTER_FAILURES": "0"}, "at least 1")):
        with pytest.raises(SystemExit, match=problem):
            load_settings(environ=environ)


def test_the_cli_sends_a_test_alert_and_lists_the_alerts(db_url: str, db: Database, make_job: Callable[..., str],
                                                         alerter: Callable[..., Alerter], hooks: Hooks,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": "", "LEXYJOBS_ALERT_WEBHOOK": hooks.url + "/cli"}
    result = CliRunner().invoke(main, ["alerts", "test"], env=env, catch_exceptions=False)
    assert result.exit_code == 0 and result.output == "webhook: ok\n"
    assert hooks.bodies("/cli")[0]["details"] == {"test": True}

    make_job("etl")
    finish(db, "etl", RunStatus.FAILED)
    alerter().check(utcnow() + LATER)
    listed = CliRunner().invoke(main, ["alerts", "list", "--json"], env=env, catch_exceptions=False)
    [row] = json.loads(listed.output)
    assert (row["job"], row["event"], row["status"]) == ("etl", "failed", "sent")
    assert row["deliveries"] == {"webhook": "ok"}

    hooks.status = 503
    failing = CliRunner().invoke(main, ["alerts", "test"], env=env, catch_exceptions=False)
    assert failing.exit_code == 1 and "webhook: HTTP 503" in failing.output


def test_the_api_and_the_panel_show_alerts_with_each_targets_answer(
        db: Database, make_job: Callable[..., str], alerter: Callable[..., Alerter], hooks: Hooks,
        api_client: Any, panel_as: Callable[[str], Any]) -> None:
    make_job("etl")
    make_job("report")
    finish(db, "report", RunStatus.FAILED)
    alerter().check(utcnow() + LATER)  # report: sent
    hooks.status = 500
    failed_run = finish(db, "etl", RunStatus.FAILED, error="disk full")
    alerter().check(utcnow() + LATER)  # etl: the webhook answered 500

    body = api_client.ok(api_client.get("/api/alerts", role="viewer"))
    assert [(a["job"], a["event"], a["status"]) for a in body["alerts"]] == [("etl", "failed", "failed"),
                                                                             ("report", "failed", "sent")]
    assert body["alerts"][0]["deliveries"] == {"webhook": "HTTP 500 Internal Server Error: hook is down"}
    assert body["alerts"][0]["run_id"] == failed_run and body["pagination"]["total"] == 2
    only_sent = api_client.ok(api_client.get("/api/alerts?status=sent&job=report", role="viewer"))
    assert [a["job"] for a in only_sent["alerts"]] == ["report"]
    assert api_client.ok(api_client.get("/api/alerts?event=recovered,stale", role="viewer"))["alerts"] == []
    api_client.error(api_client.get("/api/alerts?event=late", role="viewer"), 400, field="event")

    page = panel_as("viewer").get("/alerts")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'href="/alerts"' in html  # and in the navigation
    assert "HTTP 500 Internal Server Error: hook is down" in html and f'href="/runs/{failed_run}"' in html
    filtered = panel_as("viewer").get("/alerts?status=sent").get_data(as_text=True)
    assert 'id="alert-' in filtered and "hook is down" not in filtered and ">report</a>" in filtered
    assert panel_as("viewer").get("/alerts?status=lost").status_code == 400


def test_a_rule_says_in_words_what_it_sends_and_where_without_urls() -> None:
    rule = AlertRule(webhook="https://hooks.example/secret-path", slack="https://hooks.slack.example/T/B/x",
                     email=("ops@example.com", "dev@example.com"))
    assert rule.describe() == "every event → webhook, Slack, email to 2 addresses"
    assert dataclasses.replace(rule, events=("failed", "too_long")).describe() == "failed, too_long → webhook, Slack, email to 2 addresses"
    job = rule.for_job({"events": ["failed"], "after_failures": 3, "webhook": None, "slack": None})
    assert job.describe() == "failed (failed after 3 failures in a row) → email to 2 addresses"
    assert rule.for_job(False).describe() == "none: this job's alerts are off"
    assert AlertRule().describe() == "none: no alert target is set"


def test_the_job_page_says_who_is_alerted_and_links_its_alerts(panel_as: Callable[[str], Any],
                                                               make_job: Callable[..., str]) -> None:
    make_job("quiet")
    make_job("loud", alerts={"slack": "${SLACK_HOOK}", "events": ["failed"]})
    quiet = panel_as("viewer").get("/jobs/quiet").get_data(as_text=True)
    assert "none: no alert target is set" in quiet and 'href="/alerts?job=quiet"' in quiet
    loud = panel_as("viewer").get("/jobs/loud").get_data(as_text=True)
    assert "failed → Slack" in loud and "SLACK_HOOK" in loud  # the reference, as written, in the configuration
