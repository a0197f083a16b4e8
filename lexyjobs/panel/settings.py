"""Panel page: settings (admins: API tokens, users, the effective configuration). Account
changes go through ``lexyjobs.actions`` (role check + audit entry); their refusals are shown on
the page, not as error pages. A new API token is shown once, in the response to the POST that
made it — never in a redirect, a flash message or a log."""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Callable

from flask import flash, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import accounts, actions
from lexyjobs.accounts import InvalidAccount
from lexyjobs.alerts.targets import shown_url
from lexyjobs.config import ENV_VARS, Settings
from lexyjobs.errors import Conflict, NotFound
from lexyjobs.guard import actor, identity
from lexyjobs.panel import bp
from lexyjobs.runtime import current

ACCOUNT_ERRORS = (InvalidAccount, Conflict, NotFound)
# alert_slack is a secret too: an incoming-webhook URL is its own credential.
SECRET_FIELDS = frozenset({"secret_key", "admin_password", "api_token", "metrics_token", "smtp_password",
                           "alert_webhook_secret", "alert_slack", "oidc_client_secret"})
SECRET_URL_PARAMS = ("password", "secret", "token")  # query parameters of database_url never shown

Page = str | tuple[str, int]


# ---------------------------------------------------------------- settings (admins)


@bp.get("/settings")
def settings() -> Page:
    actor().require("admin")
    edit = request.args.get("edit", type=int)
    if edit is None:
        return _page()
    from lexyjobs.panel.alert_targets import context

    alerts = context(edit=edit)
    if alerts["editing"] is None:
        return settings_page(alert_targets=context(error=f"There is no alert target with id {edit}; it may have been "
                                                         "removed.")), 404
    return settings_page(alert_targets=alerts)


@bp.post("/settings/tokens")
def token_create() -> Page:
    """Create a token and show it on this response only (never redirect with it)."""
    who = actor()
    who.require("admin")
    form = {"name": request.form.get("name", "").strip(), "role": request.form.get("role", "viewer")}
    try:
        token = actions.create_token(current().db, who, form["name"], form["role"])
    except ACCOUNT_ERRORS as exc:
        return _page(errors={"tokens": exc.message}, forms={"tokens": form}), exc.status_code
    return _page(created={"name": form["name"], "role": form["role"], "token": token})


@bp.post("/settings/tokens/<path:name>/revoke")
def token_revoke(name: str) -> BaseResponse | Page:
    who = actor()
    who.require("admin")
    return _after("tokens", lambda: actions.revoke_token(current().db, who, name),
                  f"Revoked token {name}: requests bearing it are refused from now on.")


@bp.post("/settings/users")
def user_add() -> BaseResponse | Page:
    who = actor()
    who.require("admin")
    form = {"username": request.form.get("username", "").strip(), "role": request.form.get("role", "viewer")}
    return _after("users", lambda: actions.add_user(current().db, who, form["username"], _new_password(), form["role"]),
                  f"Added {form['username']} ({form['role']}).", form=form)


@bp.post("/settings/users/<username>/role")
def user_role(username: str) -> BaseResponse | Page:
    who = actor()
    who.require("admin")
    role = request.form.get("role", "")
    if username == identity().name and role != "admin":  # demoting yourself: this page is no longer yours
        return _after("users", lambda: actions.set_role(current().db, who, username, role), None,
                      to=url_for("lexyjobs.panel.dashboard"))
    return _after("users", lambda: actions.set_role(current().db, who, username, role), f"{username} is now {role}.")


@bp.route("/settings/users/<username>/remove", methods=["GET", "POST"])
def user_remove(username: str) -> BaseResponse | Page:
    """GET (or a POST without ``confirm=yes``) asks first; the confirmed POST removes."""
    who = actor()
    who.require("admin")
    if request.method != "POST" or request.form.get("confirm") != "yes":
        return _page(confirm_remove=username)
    return _after("users", lambda: actions.remove_user(current().db, who, username),
                  f"Removed {username}; their sessions ended.")


def _after(section: str, action: Callable[[], None], message: str | None, *,
           form: dict[str, str] | None = None, to: str | None = None) -> BaseResponse | Page:
    """Do ``action``, then back to the page (or ``to``) with ``message``; a refusal is shown in
    ``section`` of the page (422/409/404) with what was typed (never a password)."""
    try:
        action()
    except ACCOUNT_ERRORS as exc:
        return _page(errors={section: exc.message}, forms={section: form or {}}), exc.status_code
    if message:
        flash(message)
    return redirect(to or url_for("lexyjobs.panel.settings", _anchor=section), code=303)


def _new_password() -> str:
    password = request.form.get("password", "")
    if password != request.form.get("confirm", ""):
        raise InvalidAccount("the password and its confirmation differ; type the same password twice",
                             details={"field": "confirm"})
    return password


def _page(*, errors: dict[str, str] | None = None, forms: dict[str, dict[str, str]] | None = None,
          created: dict[str, str] | None = None, confirm_remove: str | None = None,
          alert_targets: dict[str, Any] | None = None) -> str:
    from lexyjobs.panel.alert_targets import answer_key, context

    lexy = current()
    return render_template("lexyjobs/settings.html", tokens=accounts.list_tokens(lexy.db), users=accounts.list_users(lexy.db),
                           roles=accounts.ROLES, min_password=accounts.MIN_PASSWORD_LENGTH,
                           effective=effective_settings(lexy.settings),
                           sso_maps_roles=bool(lexy.settings.oidc_issuer and lexy.settings.oidc_roles),
                           alerts=alert_targets if alert_targets is not None else context(), answer_key=answer_key,
                           errors=errors or {}, forms=forms or {},
                           created=created, confirm_remove=confirm_remove, me=identity().name)


def settings_page(*, alert_targets: dict[str, Any]) -> str:
    """The page with the Notifications section in the given state (lexyjobs.panel.alert_targets)."""
    return _page(alert_targets=alert_targets)


@dataclass(frozen=True)
class SettingRow:
    """One setting as the page shows it: secrets only as "set" / "not set"."""

    name: str
    env: str
    meaning: Markup
    value: str
    is_default: bool


def effective_settings(settings: Settings) -> list[SettingRow]:
    """Every setting with its env var and value as shown to admins. Secret values never appear:
    the SECRET_FIELDS read "set"/"not set"; database_url loses its
    password (and any password/secret/token query parameter)."""
    rows = []
    for field in fields(Settings):
        value = getattr(settings, field.name)
        env, meaning = ENV_VARS[field.name]
        rows.append(SettingRow(field.name, env, _code_spans(meaning), _shown(field.name, value, settings),
                               value == field.default))
    return rows


def _code_spans(text: str) -> Markup:
    """The README's `code` spans as <code> (the text is escaped first)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _shown(name: str, value: Any, settings: Settings) -> str:
    if name in SECRET_FIELDS:
        if value:
            return "set"
        if name == "secret_key":
            return f"not set (a generated key is kept in {settings.data_path() / 'secret_key'})"
        return "not set"
    if name == "database_url":
        return masked_url(value)
    if name == "alert_webhook" and value:
        return shown_url(value)  # its path or query may hold a token
    if value is None or value == ():
        return "–"
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value)


def masked_url(url: str) -> str:
    """A database URL without its password: ``postgresql+psycopg://app:***@db/jobs``."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "set (not shown: it is not a valid URL)"
    query = {key: ("hidden" if any(word in key.lower() for word in SECRET_URL_PARAMS) else value)
             for key, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)

