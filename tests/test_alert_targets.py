"""Alert targets added in Settings (lexyjobs.alerts.targets, target_forms; panel.alert_targets):
sealed secrets, the form's checks, the alerter sending to panel and environment targets (a real
local HTTP server and aiosmtpd), a target added through one app used by another, the panel's
add / edit / test / remove for admins only (CSRF, audit), and no URL or secret in any page.
SQLite and Postgres."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner
from conftest import PanelSession
from flask import Flask
from sqlalchemy import select
from test_alerts import LATER, Hooks, Mailbox, alerts_in, finish, hooks, smtp  # noqa: F401 (fixtures)

from lexyjobs import audit
from lexyjobs.actions import Actor
from lexyjobs.alerts.alerter import Alerter
from lexyjobs.alerts.notifiers import SIGNATURE_HEADER, signature
from lexyjobs.alerts.target_forms import InvalidTarget, add, parse
from lexyjobs.alerts.targets import UNREADABLE, panel_targets
from lexyjobs.accounts import Identity
from lexyjobs.cli import main
from lexyjobs.db import Database, utcnow
from lexyjobs.models import AlertTargetRow
from lexyjobs.runtime import Runtime
from lexyjobs.sealing import Unreadable, open_sealed, seal
from lexyjobs.states import RunStatus

PanelAs = Callable[[str], PanelSession]
MakeJob = Callable[..., str]
ALL = ["failed", "recovered", "stale", "missed"]
ROOT = Actor(Identity(name="root", role="admin", kind="user"))
SLACK_PATH = "/services/T000/B000/slack-token-xyz"
SIGNING = "signing-secret-123"


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def add_target(lj: Runtime, **form: Any) -> int:
    events = form.pop("events", ALL)
    values = {"enabled": "on", **{k: str(v) for k, v in form.items()}}
    return add(lj.db, ROOT, parse(values, events, lj.db, lj.settings), lj.settings)


def stored(db: Database) -> list[AlertTargetRow]:
    with db.read() as session:
        return list(session.scalars(select(AlertTargetRow).order_by(AlertTargetRow.id)))


# ---------------------------------------------------------------- sealing and the form's checks


def test_a_sealed_secret_opens_with_its_key_only() -> None:
    sealed = seal("https://hooks.slack.com/services/T/B/x", "k" * 64)
    assert "hooks.slack" not in sealed and sealed.startswith("v1.")
    assert open_sealed(sealed, "k" * 64) == "https://hooks.slack.com/services/T/B/x"
    assert seal("same", "k" * 64) != seal("same", "k" * 64)  # a fresh nonce each time
    for broken in (sealed[:-4] + "AAAA", "v1.!!", "plain"):
        with pytest.raises(Unreadable):
            open_sealed(broken, "k" * 64)
    with pytest.raises(Unreadable):
        open_sealed(sealed, "other" * 13)


def test_the_form_says_what_is_wrong(lj: Runtime, make_job: MakeJob) -> None:
    make_job("etl", category="Billing")
    good = {"kind": "webhook", "name": "ops", "url": "http://127.0.0.1:8080/hook", "after_failures": "2",
            "jobs": "etl", "categories": "Billing"}
    target = parse(good, ["failed", "recovered"], lj.db, lj.settings)
    assert (target.destination, target.jobs, target.categories, target.after_failures) == (
        "http://127.0.0.1:8080/…", ["etl"], ["Billing"], 2)  # loopback is allowed
    cases = [({"kind": "pager"}, ALL, "kind", "choose webhook, Slack or e-mail"),
             ({"name": " "}, ALL, "name", "give the target a name"),
             ({"name": "Slack"}, ALL, "name", "names an environment target"),
             ({"url": ""}, ALL, "url", "enter the URL alerts are POSTed to"),
             ({"url": "ftp://files.example.com/x"}, ALL, "url", "enter an http:// or https:// URL"),
             ({"url": "javascript:alert(1)"}, ALL, "url", "enter an http:// or https:// URL"),
             ({}, [], "events", "tick at least one event"),
             ({}, ["exploded"], "events", "'exploded' is not an event"),
             ({"after_failures": "0"}, ALL, "after_failures", "from 1 to 1000"),
             ({"after_failures": "many"}, ALL, "after_failures", "from 1 to 1000"),
             ({"jobs": "etl, nope"}, ALL, "jobs", "there is no job named 'nope'"),
             ({"categories": "Marketing"}, ALL, "categories", "no job is in a category named 'Marketing'"),
             ({"kind": "email", "email": "ops@example.com, nobody"}, ALL, "email", "'nobody' is not an e-mail address"),
             ({"kind": "email", "email": ""}, ALL, "email", "enter one or more e-mail addresses"),
             ({"kind": "email", "email": "ops@example.com"}, ALL, "email", "e-mail needs an SMTP server: set LEXYJOBS_SMTP_HOST")]
    for change, events, field, message in cases:
        with pytest.raises(InvalidTarget, match=re.escape(message)) as refused:
            parse({**good, **change}, events, lj.db, lj.settings)
        assert refused.value.field == field
    with_smtp = dataclasses.replace(lj.settings, smtp_host="127.0.0.1")
    mail = parse({**good, "kind": "email", "email": "ops@example.com dev@example.com"}, ALL, lj.db, with_smtp)
    assert mail.destination == "ops@example.com, dev@example.com" and mail.url is None


# ---------------------------------------------------------------- the alerter


def test_alerts_go_to_panel_and_environment_targets(lj: Runtime, make_job: MakeJob, hooks: Hooks,
                                                    smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    settings = dataclasses.replace(lj.settings, alert_webhook=hooks.url + "/env", smtp_host="127.0.0.1",
                                   smtp_port=port, smtp_tls="none", smtp_from="jobs@example.com")
    lj.settings = settings
    add_target(lj, kind="webhook", name="ops-hook", url=hooks.url + "/panel", signing_secret=SIGNING)
    add_target(lj, kind="slack", name="ops-slack", url=hooks.url + SLACK_PATH, events=["failed"])
    add_target(lj, kind="email", name="ops-mail", email="ops@example.com")
    [row] = [r for r in stored(lj.db) if r.name == "ops-slack"]
    assert "slack-token" not in (row.secret or "") and row.destination == f"{hooks.url}/…"

    make_job("etl")
    finish(lj.db, "etl", RunStatus.FAILED)
    Alerter(lj.db, settings).check(utcnow() + LATER)
    [alert] = alerts_in(lj.db)
    assert alert.deliveries == {"webhook": "ok", "ops-hook": "ok", "ops-slack": "ok", "ops-mail": "ok"}
    assert [b["job"] for b in hooks.bodies("/env")] == ["etl"] and hooks.bodies("/panel")[0]["event"] == "failed"
    [signed] = [r for r in hooks.received if r["path"] == "/panel"]
    assert signed["headers"][SIGNATURE_HEADER] == signature(signed["raw"], SIGNING)
    assert hooks.bodies(SLACK_PATH)[0]["text"].startswith("[lexyjobs] etl failed")
    [(recipients, message)] = box.messages
    assert recipients == ["ops@example.com"] and message["Subject"] == "[lexyjobs] etl failed"

    finish(lj.db, "etl", RunStatus.SUCCEEDED)  # Slack wants only "failed"
    Alerter(lj.db, settings).check(utcnow() + LATER)
    recovered = alerts_in(lj.db)[-1]
    assert recovered.event == "recovered" and set(recovered.deliveries) == {"webhook", "ops-hook", "ops-mail"}


def test_a_target_covers_its_jobs_and_categories_and_alerts_false_silences_every_target(
        lj: Runtime, make_job: MakeJob, hooks: Hooks) -> None:
    make_job("etl", category="Billing")
    make_job("report", category="Reports")
    make_job("invoice", category="Billing", alerts=False)
    make_job("other")
    add_target(lj, kind="webhook", name="billing", url=hooks.url + "/billing", categories="Billing")
    add_target(lj, kind="webhook", name="reports", url=hooks.url + "/reports", jobs="report")
    add_target(lj, kind="webhook", name="off", url=hooks.url + "/off", enabled="")
    for job in ("etl", "report", "invoice", "other"):
        finish(lj.db, job, RunStatus.FAILED)
    Alerter(lj.db, lj.settings).check(utcnow() + LATER)
    assert [b["job"] for b in hooks.bodies("/billing")] == ["etl"]
    assert [b["job"] for b in hooks.bodies("/reports")] == ["report"]
    assert hooks.bodies("/off") == [] and sorted(a.job_name for a in alerts_in(lj.db)) == ["etl", "report"]


def test_a_target_with_its_own_threshold_gets_its_own_failed_alert_then_the_recovery(
        lj: Runtime, make_job: MakeJob, hooks: Hooks) -> None:
    settings = dataclasses.replace(lj.settings, alert_webhook=hooks.url + "/env")
    add_target(lj, kind="webhook", name="patient", url=hooks.url + "/patient", after_failures="3")
    make_job("etl")
    check = Alerter(lj.db, settings).check
    finish(lj.db, "etl", RunStatus.FAILED)
    check(utcnow() + LATER)
    assert len(hooks.bodies("/env")) == 1 and hooks.bodies("/patient") == []
    for _ in range(2):
        finish(lj.db, "etl", RunStatus.FAILED)
        check(utcnow() + LATER)
    assert len(hooks.bodies("/env")) == 1  # the streak goes on: no second alert
    [third] = hooks.bodies("/patient")
    assert third["details"]["failure_streak"] == 3
    assert [a.key.split(":")[0] for a in alerts_in(lj.db)] == ["failed", "failed/3"]
    finish(lj.db, "etl", RunStatus.SUCCEEDED)
    check(utcnow() + LATER)
    assert check(utcnow() + LATER) == []
    assert [b["event"] for b in hooks.bodies("/env")] == ["failed", "recovered"]
    assert [b["event"] for b in hooks.bodies("/patient")] == ["failed", "recovered"]
    assert alerts_in(lj.db)[-1].deliveries == {"webhook": "ok", "patient": "ok"}


def test_a_target_whose_secret_cannot_be_read_says_so(lj: Runtime, make_job: MakeJob, hooks: Hooks) -> None:
    add_target(lj, kind="webhook", name="ops-hook", url=hooks.url + "/panel")
    other_key = dataclasses.replace(lj.settings, secret_key="another-key-" * 4)
    [target] = panel_targets(lj.db, other_key)
    assert target.problem == UNREADABLE and target.url is None
    make_job("etl")
    finish(lj.db, "etl", RunStatus.FAILED)
    Alerter(lj.db, other_key).check(utcnow() + LATER)
    assert alerts_in(lj.db)[0].deliveries == {"ops-hook": UNREADABLE} and hooks.received == []


def test_a_target_added_in_one_app_is_used_by_another(panel_as: PanelAs, make_api_app: Callable[..., Flask],
                                                       make_job: MakeJob, hooks: Hooks, lj: Runtime) -> None:
    other: Runtime = make_api_app().extensions["lexyjobs"]
    watcher = Alerter(other.db, other.settings)  # made before the target exists, as a running process is
    make_job("etl")
    admin = panel_as("admin")
    response = admin.post("/settings/alert-targets", data={"kind": "webhook", "name": "ops", "url": hooks.url + "/x",
                                                           "events": ["failed"], "after_failures": "1", "enabled": "on"})
    assert response.status_code == 303, text(response)
    finish(lj.db, "etl", RunStatus.FAILED)
    assert len(watcher.check(utcnow() + LATER)) == 1
    assert [b["job"] for b in hooks.bodies("/x")] == ["etl"]
    [row] = stored(lj.db)
    assert admin.post(f"/settings/alert-targets/{row.id}/remove", data={"confirm": "yes"}).status_code == 303
    finish(lj.db, "etl", RunStatus.SUCCEEDED)
    finish(lj.db, "etl", RunStatus.FAILED)
    assert watcher.check(utcnow() + LATER) == []  # removed in the first app: the second sends nothing


def test_the_cli_tests_panel_targets_too(db_url: str, lj: Runtime, hooks: Hooks, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    add_target(lj, kind="webhook", name="ops-hook", url=hooks.url + "/panel")
    monkeypatch.chdir(tmp_path)
    env = {"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": "", "LEXYJOBS_ALERT_WEBHOOK": hooks.url + "/env",
           "LEXYJOBS_DATA_DIR": str(lj.settings.data_dir)}
    result = CliRunner().invoke(main, ["alerts", "test"], env=env, catch_exceptions=False)
    assert result.exit_code == 0 and result.output == "webhook: ok\nops-hook: ok\n", result.output
    assert hooks.bodies("/panel")[0]["details"] == {"test": True}


# ---------------------------------------------------------------- the panel


def add_form(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "webhook", "name": "ops-hook", "url": url, "signing_secret": SIGNING, "events": ["failed", "missed"],
            "after_failures": "2", "jobs": "", "categories": "", "enabled": "on", **extra}


def test_admins_add_test_edit_and_remove_a_target_and_secrets_never_show(
        panel_as: PanelAs, make_api_app: Callable[..., Flask], lj: Runtime, hooks: Hooks) -> None:
    admin = panel_as("admin")
    added = admin.post("/settings/alert-targets", data=add_form(hooks.url + SLACK_PATH))
    assert added.status_code == 303 and added.headers["Location"].endswith("/settings#notifications")
    page = text(admin.get("/settings"))
    section = page[page.index('id="notifications"'):].split("</section>")[0]
    assert "ops-hook" in section and f"{hooks.url}/…" in section and "(signed)" in section
    assert "failed, missed" in section and "failed after 2 in a row" in section and "every job" in section
    [row] = stored(lj.db)
    assert SIGNING not in (row.secret or "") and "slack-token" not in json.dumps([row.destination, row.secret])

    tested = admin.post(f"/settings/alert-targets/{row.id}/test", hx=True)
    assert tested.status_code == 200 and f'id="answer-{row.id}"' in text(tested)
    assert "Test alert delivered. The target answered: <code>HTTP 200 OK: ok</code>" in text(tested)
    [sent] = [r for r in hooks.received if r["path"] == SLACK_PATH]
    assert sent["json"]["details"] == {"test": True} and sent["headers"][SIGNATURE_HEADER] == signature(sent["raw"], SIGNING)
    hooks.status = 503
    failing = text(admin.post(f"/settings/alert-targets/{row.id}/test", hx=True))
    assert "Test alert not delivered: <code>HTTP 503 Service Unavailable: hook is down</code>" in failing
    whole = text(admin.post(f"/settings/alert-targets/{row.id}/test"))  # without htmx: the page, with the answer
    assert '<html' in whole and "HTTP 503 Service Unavailable: hook is down" in whole
    hooks.status = 200

    edit = text(admin.get(f"/settings?edit={row.id}"))
    form = edit[edit.index('id="target-form"'):].split("</form>")[0]
    assert f'action="/settings/alert-targets/{row.id}"' in form and f"empty: keep {hooks.url}/…" in form
    assert 'value="ops-hook"' in form and "Stop signing" in form
    saved = admin.post(f"/settings/alert-targets/{row.id}", data={**add_form(""), "name": "ops", "signing_secret": "",
                                                                   "events": ["failed"]})
    assert saved.status_code == 303, text(saved)
    text(admin.post(f"/settings/alert-targets/{row.id}/test", hx=True))
    kept = [r for r in hooks.received if r["path"] == SLACK_PATH][-1]  # the empty URL and secret kept the stored ones
    assert kept["headers"][SIGNATURE_HEADER] == signature(kept["raw"], SIGNING)
    assert admin.post(f"/settings/alert-targets/{row.id}", data={**add_form(""), "clear_secret": "on",
                                                                 "signing_secret": ""}).status_code == 303
    text(admin.post(f"/settings/alert-targets/{row.id}/test", hx=True))
    assert SIGNATURE_HEADER not in [r for r in hooks.received if r["path"] == SLACK_PATH][-1]["headers"]

    everything = [text(admin.get(path)) for path in ("/settings", f"/settings?edit={row.id}", "/audit")]
    for shown in everything:
        assert "slack-token" not in shown and SIGNING not in shown and "/services/T000" not in shown

    confirm = text(admin.get(f"/settings/alert-targets/{row.id}/remove"))
    assert "Remove the alert target ops-hook?" in confirm
    assert admin.post(f"/settings/alert-targets/{row.id}/remove", data={"confirm": "yes"}).status_code == 303
    assert stored(lj.db) == []
    entries = [(e.action, e.target) for e in reversed(audit.search(lj.db, actor=admin.username).entries)]
    assert [e for e in entries if e[0].startswith("alert_target")] == [
        ("alert_target.add", "ops-hook"), ("alert_target.test", "ops-hook"), ("alert_target.test", "ops-hook"),
        ("alert_target.test", "ops-hook"), ("alert_target.edit", "ops"), ("alert_target.test", "ops"),
        ("alert_target.edit", "ops-hook"), ("alert_target.test", "ops-hook"), ("alert_target.remove", "ops-hook")]


def test_a_refused_form_keeps_what_was_typed_but_not_the_url_or_secret(panel_as: PanelAs, lj: Runtime) -> None:
    admin = panel_as("admin")
    refused = admin.post("/settings/alert-targets", data=add_form("https://hooks.example.com/p/typed-token",
                                                                  after_failures="0"))
    assert refused.status_code == 422
    html = text(refused)
    assert 'class="form-error" role="alert">failures in a row must be a whole number from 1 to 1000<' in html
    assert 'value="ops-hook"' in html and "typed-token" not in html and SIGNING not in html
    assert admin.post("/settings/alert-targets", data=add_form("https://hooks.example.com/a")).status_code == 303
    twice = admin.post("/settings/alert-targets", data=add_form("https://hooks.example.com/b"))
    assert twice.status_code == 409 and "there is already an alert target named &#39;ops-hook&#39;" in text(twice)
    assert admin.get("/settings?edit=999").status_code == 404
    assert admin.post("/settings/alert-targets/999/test").status_code == 404


def test_only_admins_manage_targets_and_every_form_needs_the_csrf_token(panel_as: PanelAs, lj: Runtime) -> None:
    target_id = add_target(lj, kind="webhook", name="ops", url="http://127.0.0.1:9/x")
    posts = ["/settings/alert-targets", f"/settings/alert-targets/{target_id}", f"/settings/alert-targets/{target_id}/test",
             f"/settings/alert-targets/{target_id}/remove", "/settings/alert-targets/environment/webhook/test"]
    for role in ("viewer", "operator"):
        persona = panel_as(role)
        assert persona.get("/settings").status_code == 403
        assert persona.get(f"/settings/alert-targets/{target_id}/remove").status_code == 403
        for path in posts:
            assert persona.post(path, data={**add_form("http://127.0.0.1:9/y"), "confirm": "yes"}).status_code == 403, path
    admin = panel_as("admin")
    for path in posts:
        refused = admin.post(path, csrf=False, data={**add_form("http://127.0.0.1:9/y"), "confirm": "yes"})
        assert refused.status_code == 403 and "reload the page and try again" in text(refused), path
    assert [r.name for r in stored(lj.db)] == ["ops"]
    assert [e.action for e in audit.search(lj.db).entries if e.action.startswith("alert_target")] == ["alert_target.add"]


def test_environment_targets_show_as_their_source_and_can_be_tested(
        make_api_app: Callable[..., Flask], lj: Runtime, hooks: Hooks) -> None:
    from lexyjobs import accounts
    from test_panel_settings import PASSWORD, log_in

    accounts.add_user(lj.db, "root", PASSWORD, "admin")
    other = make_api_app(alert_webhook=hooks.url + "/env?token=webhook-token-abc", alert_webhook_secret="hmac-secret-xyz")
    client = log_in(other, "root", PASSWORD)
    html = text(client.get("/settings"))
    row = html[html.index('id="target-env-webhook"'):].split("</tr>")[0]
    assert 'data-source="environment"' in row and "<code>LEXYJOBS_ALERT_WEBHOOK</code>" in row
    assert f"{hooks.url}/…" in row and "(signed)" in row and "Edit" not in row
    assert "webhook-token-abc" not in html and "hmac-secret-xyz" not in html
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert csrf
    answer = text(client.post("/settings/alert-targets/environment/webhook/test", data={"csrf_token": csrf.group(1)},
                              headers={"HX-Request": "true"}))
    assert 'id="answer-env-webhook"' in answer and "HTTP 200 OK: ok" in answer
    assert hooks.bodies("/env?token=webhook-token-abc")[0]["details"] == {"test": True}


def test_an_email_target_is_tested_with_the_servers_reply(panel_as: PanelAs, make_api_app: Callable[..., Flask],
                                                           lj: Runtime, smtp: tuple[Mailbox, int]) -> None:
    from lexyjobs import accounts
    from test_panel_settings import PASSWORD, log_in

    box, port = smtp
    accounts.add_user(lj.db, "root", PASSWORD, "admin")
    other = make_api_app(smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none", smtp_from="jobs@example.com")
    client = log_in(other, "root", PASSWORD)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', text(client.get("/settings")))
    assert csrf
    added = client.post("/settings/alert-targets", data={"csrf_token": csrf.group(1), "kind": "email", "name": "ops-mail",
                                                         "email": "ops@example.com, dev@example.com", "events": "failed",
                                                         "after_failures": "1", "enabled": "on"})
    assert added.status_code == 303, text(added)
    [row] = stored(lj.db)
    assert (row.destination, row.secret) == ("ops@example.com, dev@example.com", None)
    answer = text(client.post(f"/settings/alert-targets/{row.id}/test", data={"csrf_token": csrf.group(1)},
                              headers={"HX-Request": "true"}))
    assert "Test alert delivered. The target answered: <code>SMTP 250 OK</code>" in answer
    [(recipients, message)] = box.messages
    assert recipients == ["ops@example.com", "dev@example.com"] and "test alert to &#39;ops-mail&#39;" not in message.as_string()
    assert "this is a test alert to 'ops-mail'" in message.get_payload()
    # without an SMTP server (the first app), an e-mail target is refused with the reason
    refused = panel_as("admin").post("/settings/alert-targets", data={"kind": "email", "name": "x", "email": "a@b.example",
                                                                      "events": "failed"})
    assert refused.status_code == 422 and "e-mail needs an SMTP server: set LEXYJOBS_SMTP_HOST" in text(refused)


def test_the_job_page_names_the_panel_targets_that_cover_it(panel_as: PanelAs, lj: Runtime, make_job: MakeJob) -> None:
    make_job("etl", category="Billing")
    make_job("report")
    make_job("quiet", category="Billing", alerts=False)
    add_target(lj, kind="slack", name="billing-slack", url="https://hooks.slack.example/services/T/B/x",
               categories="Billing", events=["failed"], after_failures="2")
    viewer = panel_as("viewer")
    assert "billing-slack (Slack, panel): failed, failed after 2 in a row" in text(viewer.get("/jobs/etl"))
    assert "none: no alert target is set" in text(viewer.get("/jobs/report"))
    quiet = text(viewer.get("/jobs/quiet"))
    assert "none: this job&#39;s alerts are off" in quiet and "billing-slack" not in quiet
