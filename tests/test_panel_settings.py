"""The settings page (admins: API tokens shown once, users, effective settings without secrets);
SQLite and Postgres. The workers page: test_panel_workers.py."""
from __future__ import annotations

import hashlib
import re
from typing import Any, Callable

import pytest
from conftest import PANEL_CSRF, PanelSession
from flask import Flask
from sqlalchemy import select

from lexyjobs import accounts, audit
from lexyjobs.config import Settings
from lexyjobs.db import Database
from lexyjobs.models import ApiToken, AuditEntry
from lexyjobs.panel.settings import effective_settings, masked_url

PanelAs = Callable[[str], PanelSession]
MakeJob = Callable[..., str]
NEW_TOKEN = re.compile(r'id="new-token" readonly value="([^"]+)"')
ALERT = re.compile(r'class="form-error" role="alert">([^<]+)<')
PASSWORD = "a-good-password"


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def alert(response: Any) -> str:
    found = ALERT.search(text(response))
    assert found, text(response)
    return found.group(1).replace("&#39;", "'")


def create_token(admin: PanelSession, name: str = "ci", role: str = "operator") -> tuple[Any, str]:
    response = admin.post("/settings/tokens", data={"name": name, "role": role})
    assert response.status_code == 200, text(response)
    found = NEW_TOKEN.search(text(response))
    assert found, text(response)
    return response, found.group(1)


def token_row(db: Database, name: str) -> ApiToken:
    with db.read() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == name)).one()
    return row


def audit_of(db: Database, target: str) -> list[AuditEntry]:
    return list(reversed(audit.search(db, target=target).entries))


def user_role(db: Database, username: str) -> str | None:
    with db.read() as session:
        user = accounts.get_user(session, username)
    return None if user is None else user.role


def me(app: Flask, token: str) -> Any:
    return app.test_client().get("/api/me", headers={"Authorization": f"Bearer {token}"})


# ---------------------------------------------------------------- who may see it


def test_an_admin_sees_every_section(panel_as: PanelAs) -> None:
    admin = panel_as("admin")
    response = admin.get("/settings")
    assert response.status_code == 200
    html = text(response)
    for heading in ("API tokens", "Users", "Notifications", "Effective settings"):
        assert f">{heading}</h2>" in html
    assert "No API tokens yet" in html  # the empty state says what to do
    assert "panel-admin</td>" not in html and "panel-admin <span class=\"sub\">(you)</span>" in html
    assert "issue 7" not in html and "No alert target yet: nothing is sent" in html
    assert "LEXYJOBS_DATABASE_URL" in html and "LEXYJOBS_WORKERS" in html
    assert 'href="/settings"' in text(admin.get("/workers"))  # in the navigation


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_others_are_refused_the_page_and_every_change(panel_as: PanelAs, db: Database, role: str) -> None:
    accounts.create_token(db, "existing", "viewer")
    accounts.add_user(db, "bob", PASSWORD, "viewer")
    who = panel_as(role)
    assert 'href="/settings"' not in text(who.get("/workers"))  # not in their navigation
    assert who.get("/settings").status_code == 403
    assert who.get("/settings/users/bob/remove").status_code == 403
    posts = [("/settings/tokens", {"name": "sneaky", "role": "admin"}),
             ("/settings/tokens/existing/revoke", {}),
             ("/settings/users", {"username": "eve", "role": "admin", "password": PASSWORD, "confirm": PASSWORD}),
             (f"/settings/users/{who.username}/role", {"role": "admin"}),
             ("/settings/users/bob/remove", {"confirm": "yes"})]
    for path, data in posts:
        response = who.post(path, data=data)
        assert response.status_code == 403, (path, text(response))
        assert NEW_TOKEN.search(text(response)) is None
    assert [t.name for t in accounts.list_tokens(db)] == ["existing"]
    assert token_row(db, "existing").revoked_at is None
    assert {u.username: u.role for u in accounts.list_users(db)} == {"bob": "viewer", who.username: role}


def test_a_post_without_the_csrf_token_is_refused(panel_as: PanelAs, db: Database) -> None:
    admin = panel_as("admin")
    accounts.create_token(db, "existing", "viewer")
    accounts.add_user(db, "bob", PASSWORD, "viewer")
    for path, data in [("/settings/tokens", {"name": "x", "role": "admin"}),
                       ("/settings/tokens/existing/revoke", {}),
                       ("/settings/users", {"username": "eve", "role": "admin", "password": PASSWORD,
                                            "confirm": PASSWORD}),
                       ("/settings/users/bob/role", {"role": "admin"}),
                       ("/settings/users/bob/remove", {"confirm": "yes"})]:
        assert admin.post(path, data=data, csrf=False).status_code == 403, path
    assert [t.name for t in accounts.list_tokens(db)] == ["existing"]
    assert token_row(db, "existing").revoked_at is None
    assert user_role(db, "bob") == "viewer" and user_role(db, "eve") is None


# ---------------------------------------------------------------- API tokens


def test_a_new_token_is_shown_once_and_stored_only_as_its_hash(panel_as: PanelAs, db: Database) -> None:
    admin = panel_as("admin")
    response, token = create_token(admin, "ci", "operator")
    assert token.startswith(accounts.TOKEN_PREFIX) and len(token) > 40
    assert "Copy it now; it is not shown again." in text(response)
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers
    with admin.client.session_transaction() as session:  # not in a flash message or anywhere in the cookie
        assert token not in repr(dict(session))
    row = token_row(db, "ci")
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(row.prefix) and row.prefix != token
    assert (row.role, row.created_by) == ("operator", "panel-admin")
    again = text(admin.get("/settings"))
    assert token not in again and f"<code>{row.prefix}…</code>" in again
    [entry] = audit_of(db, "ci")
    assert (entry.actor, entry.action, entry.details) == ("panel-admin", "token.create", {"role": "operator"})
    assert token not in repr((entry.target, entry.details))


def test_a_panel_token_works_on_the_api_until_revoked(app: Flask, panel_as: PanelAs, db: Database) -> None:
    admin = panel_as("admin")
    _, token = create_token(admin, "deploy", "operator")
    response = me(app, token)
    assert response.status_code == 200
    assert response.get_json() == {"name": "deploy", "role": "operator", "kind": "token"}
    revoked = admin.post("/settings/tokens/deploy/revoke")
    assert revoked.status_code == 303 and revoked.headers["Location"] == "/settings#tokens"
    assert me(app, token).status_code == 401
    assert [e.action for e in audit_of(db, "deploy")] == ["token.create", "token.revoke"]
    html = text(admin.get("/settings"))
    assert "Revoked token deploy" in html and '<tr class="revoked">' in html
    assert "/settings/tokens/deploy/revoke" not in html  # no button for a revoked token


def test_token_refusals_are_shown_on_the_page(panel_as: PanelAs, db: Database) -> None:
    admin = panel_as("admin")
    create_token(admin, "ci")
    blank = admin.post("/settings/tokens", data={"name": "  ", "role": "viewer"})
    assert blank.status_code == 422 and "token name must be 1–100 printable characters" in alert(blank)
    twice = admin.post("/settings/tokens", data={"name": "ci", "role": "viewer"})
    assert twice.status_code == 409 and alert(twice) == "a token named 'ci' already exists"
    assert 'value="ci"' in text(twice) and NEW_TOKEN.search(text(twice)) is None
    bad_role = admin.post("/settings/tokens", data={"name": "other", "role": "root"})
    assert bad_role.status_code == 422 and "role 'root' is not one of" in alert(bad_role)
    unknown = admin.post("/settings/tokens/nope/revoke")
    assert unknown.status_code == 404 and alert(unknown) == "no active token named 'nope'"
    admin.post("/settings/tokens/ci/revoke")
    assert admin.post("/settings/tokens/ci/revoke").status_code == 404
    assert [t.name for t in accounts.list_tokens(db)] == ["ci"]
    assert [e.action for e in audit_of(db, "ci")] == ["token.create", "token.revoke"]


def test_token_names_are_escaped_and_any_printable_name_can_be_revoked(app: Flask, panel_as: PanelAs,
                                                                      db: Database) -> None:
    admin = panel_as("admin")
    name = '<script>alert("x")</script> ci/prod #1?'
    response, token = create_token(admin, name, "viewer")
    for html in (text(response), text(admin.get("/settings"))):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; ci/prod #1?" in html
    action = re.search(r'action="(/settings/tokens/[^"]+/revoke)"', text(response))
    assert action and "<" not in action.group(1)
    assert admin.post(action.group(1).replace("&amp;", "&")).status_code == 303
    assert token_row(db, name).revoked_at is not None and me(app, token).status_code == 401


# ---------------------------------------------------------------- users


def test_an_admin_adds_a_user_changes_their_role_and_removes_them(app: Flask, panel_as: PanelAs,
                                                                 db: Database) -> None:
    admin = panel_as("admin")
    added = admin.post("/settings/users", data={"username": "carol", "role": "viewer", "password": PASSWORD,
                                                "confirm": PASSWORD})
    assert added.status_code == 303 and added.headers["Location"] == "/settings#users"
    assert "Added carol (viewer)." in text(admin.get("/settings"))
    assert accounts.authenticate(db, "carol", PASSWORD) is not None
    changed = admin.post("/settings/users/carol/role", data={"role": "operator"})
    assert changed.status_code == 303 and user_role(db, "carol") == "operator"
    asked = admin.get("/settings/users/carol/remove")
    assert asked.status_code == 200 and ">Remove carol?</h3>" in text(asked)
    unconfirmed = admin.post("/settings/users/carol/remove")
    assert unconfirmed.status_code == 200 and user_role(db, "carol") == "operator"
    removed = admin.post("/settings/users/carol/remove", data={"confirm": "yes"})
    assert removed.status_code == 303 and user_role(db, "carol") is None
    assert [(e.actor, e.action, e.details) for e in audit_of(db, "carol")] == [
        ("panel-admin", "user.add", {"role": "viewer"}),
        ("panel-admin", "user.set_role", {"from": "viewer", "to": "operator"}),
        ("panel-admin", "user.remove", None)]


def test_a_removed_users_session_ends_at_once(panel_as: PanelAs, db: Database) -> None:
    viewer, admin = panel_as("viewer"), panel_as("admin")
    assert viewer.get("/workers").status_code == 200
    assert admin.post("/settings/users/panel-viewer/remove", data={"confirm": "yes"}).status_code == 303
    assert viewer.get("/workers").status_code == 302  # back to the login page


GOOD = {"password": PASSWORD, "confirm": PASSWORD}


@pytest.mark.parametrize(("form", "status", "message"), [
    ({"username": "dave", "password": "q7Zx!", "confirm": "q7Zx!"}, 422, "password must be at least 8 characters"),
    ({"username": "dave", **GOOD, "confirm": PASSWORD + "!"}, 422, "the password and its confirmation differ"),
    ({"username": "<b>dave</b>", **GOOD}, 422, "username must be 1–100 characters"),
    ({"username": "panel-admin", **GOOD}, 409, "a user named 'panel-admin' already exists"),
    ({"username": "dave", **GOOD, "role": "root"}, 422, "role 'root' is not one of"),
])
def test_a_refused_new_user_is_explained_and_the_form_kept(panel_as: PanelAs, db: Database, form: dict[str, str],
                                                          status: int, message: str) -> None:
    response = panel_as("admin").post("/settings/users", data={"role": "operator", **form})
    assert response.status_code == status and message in alert(response)
    html = text(response)
    assert form["password"] not in html  # a password is never sent back
    assert "<b>dave" not in html and f'value="{form["username"].replace("<", "&lt;").replace(">", "&gt;")}"' in html
    assert user_role(db, "dave") is None and audit.search(db, action="user.add").total == 0


def test_the_last_admin_cannot_be_demoted(panel_as: PanelAs, db: Database) -> None:
    admin = panel_as("admin")
    response = admin.post("/settings/users/panel-admin/role", data={"role": "viewer"})
    assert response.status_code == 409
    assert alert(response) == "'panel-admin' is the last admin; make another user admin first"
    assert user_role(db, "panel-admin") == "admin" and audit.search(db, action="user.set_role").total == 0


def test_an_admin_cannot_remove_themselves(panel_as: PanelAs, db: Database) -> None:
    accounts.add_user(db, "root2", PASSWORD, "admin")  # not the last admin: still refused
    admin = panel_as("admin")
    assert "/settings/users/panel-admin/remove" not in text(admin.get("/settings"))  # no button
    response = admin.post("/settings/users/panel-admin/remove", data={"confirm": "yes"})
    assert response.status_code == 409 and alert(response) == "you cannot remove yourself; ask another admin to do it"
    assert user_role(db, "panel-admin") == "admin"
    assert admin.post("/settings/users/root2/remove", data={"confirm": "yes"}).status_code == 303
    assert user_role(db, "root2") is None


def test_an_admin_who_demotes_themselves_goes_to_the_dashboard(panel_as: PanelAs, db: Database) -> None:
    accounts.add_user(db, "root2", PASSWORD, "admin")
    admin = panel_as("admin")
    response = admin.post("/settings/users/panel-admin/role", data={"role": "operator"})
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert user_role(db, "panel-admin") == "operator" and admin.get("/settings").status_code == 403
    with admin.client.session_transaction() as session:
        assert "_flashes" not in session  # no message left over for a page they cannot see


def test_changing_the_role_of_an_unknown_user_is_a_404_on_the_page(panel_as: PanelAs) -> None:
    response = panel_as("admin").post("/settings/users/ghost/role", data={"role": "viewer"})
    assert response.status_code == 404 and alert(response) == "no user named 'ghost'"


# ---------------------------------------------------------------- effective settings


SECRETS = {"secret_key": "s3cret-key-" + "k" * 40, "api_token": "env-api-token-" + "t" * 20,
           "admin_password": "admin-pass-" + "p" * 12, "metrics_token": "metrics-token-" + "m" * 12,
           "smtp_password": "smtp-pass-" + "s" * 12, "alert_webhook_secret": "hmac-secret-" + "h" * 12,
           "alert_slack": "http://127.0.0.1:9/services/T000/B000/slack-secret-path"}


def log_in(app: Flask, username: str, password: str) -> Any:
    client = app.test_client()
    csrf = PANEL_CSRF.search(text(client.get("/login")))
    assert csrf
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": csrf.group(1)})
    assert response.status_code in (302, 303), text(response)
    return client


def test_effective_settings_never_show_a_secret_value(make_api_app: Callable[..., Flask], db: Database) -> None:
    accounts.add_user(db, "root", PASSWORD, "admin")
    other = make_api_app(**SECRETS, workers=3)
    html = text(log_in(other, "root", PASSWORD).get("/settings"))
    for value in SECRETS.values():
        assert value not in html
    for env in ("LEXYJOBS_SECRET_KEY", "LEXYJOBS_API_TOKEN", "LEXYJOBS_ADMIN_PASSWORD", "LEXYJOBS_METRICS_TOKEN",
                "LEXYJOBS_SMTP_PASSWORD", "LEXYJOBS_ALERT_WEBHOOK_SECRET", "LEXYJOBS_ALERT_SLACK"):
        assert re.search(rf"<code>{env}</code></th>\s*<td><code>set</code>", html), env
    assert re.search(r"<code>LEXYJOBS_WORKERS</code></th>\s*<td><code>3</code></td>", html)


def test_the_database_password_is_masked() -> None:
    url = "postgresql+psycopg://app:pa%40ss-w0rd@db.internal:5432/jobs?sslpassword=key-pass&application_name=lj"
    assert masked_url(url) == ("postgresql+psycopg://app:***@db.internal:5432/jobs"
                               "?application_name=lj&sslpassword=hidden")
    rows = {row.name: row for row in effective_settings(Settings(database_url=url, api_token=None))}
    shown = " ".join(row.value for row in rows.values())
    assert "pa@ss-w0rd" not in shown and "pa%40ss-w0rd" not in shown and "key-pass" not in shown
    assert rows["api_token"].value == "not set" and rows["secret_key"].value.startswith("not set (a generated key")
    assert rows["workers"].is_default and not rows["database_url"].is_default
    assert masked_url("not a url") == "set (not shown: it is not a valid URL)"



def test_notifications_describe_the_configured_alert_targets_and_rule(
        make_api_app: Callable[..., Flask], panel_as: PanelAs, db: Database) -> None:
    empty = text(panel_as("admin").get("/settings"))
    section = empty[empty.index('id="notifications"'):].split("</section>")[0]
    assert "issue 7" not in section and "No alert target yet: nothing is sent" in section
    accounts.add_user(db, "root", PASSWORD, "admin")
    other = make_api_app(alert_webhook="https://hooks.example.com/lexy?token=webhook-token-abc",
                         alert_webhook_secret="hmac-secret-xyz", alert_slack="http://127.0.0.1:9/services/slack-secret",
                         alert_email="ops@example.com", smtp_host="mail.example.com", alert_events="failed,stale", alert_after_failures=3)
    html = text(log_in(other, "root", PASSWORD).get("/settings"))
    section = html[html.index('id="notifications"'):].split("</section>")[0]
    assert "issue 7" not in section and "No alert target yet" not in section
    rows = {source: section.count(f'data-source="{source}"') for source in ("environment", "panel")}
    assert rows == {"environment": 3, "panel": 0}
    assert "failed, stale" in section and "(failed after 3 in a row)" in section
    assert "https://hooks.example.com/…" in section and "(signed)" in section
    assert "<code>LEXYJOBS_ALERT_WEBHOOK</code>" in section and "<code>LEXYJOBS_ALERT_SLACK</code>" in section
    assert "http://127.0.0.1:9/…" in section and "ops@example.com" in section
    assert "webhook-token-abc" not in html and "slack-secret" not in html and "hmac-secret-xyz" not in html
