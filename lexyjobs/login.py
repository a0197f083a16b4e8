"""Logging in and out of the panel. Attempts go through the login throttle (lexyjobs.ratelimit:
it slows whoever fails, never refuses a right password from an address that has not failed);
successes are written to the audit log, refusals counted there (``audit.record_refused``).
Only ``POST`` logs in: ``GET`` and ``HEAD`` (which skips the CSRF check) show the form."""
from __future__ import annotations

import math
import time

from flask import Blueprint, Flask, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import accounts, audit, sso
from lexyjobs.guard import end_session, identity, public, start_session
from lexyjobs.ratelimit import LoginThrottle, address_key
from lexyjobs.redirects import safe_next
from lexyjobs.runtime import current

bp = Blueprint("login", __name__)


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> BaseResponse | tuple[str, int] | tuple[str, int, dict[str, str]]:
    target = safe_next(request.values.get("next")) or url_for("lexyjobs.panel.dashboard")
    if request.method != "POST":
        return render_template("lexyjobs/login.html", next=target, error=None), 200
    if not current().settings.password_login:
        message = "Password login is turned off here; use single sign-on."
        return render_template("lexyjobs/login.html", next=target, error=message), 403
    username = request.form.get("username", "").strip().lower()[:100]
    password = request.form.get("password", "")
    lexy, client = current(), request.remote_addr
    attempt = _throttle().attempt(address_key(client), username)
    if attempt.refused_for:
        audit.record_refused(lexy.db, "login.rate_limited", username, client=client)
        wait = math.ceil(attempt.refused_for)
        message = f"Too many login attempts. Try again in {wait} seconds."
        page = render_template("lexyjobs/login.html", next=target, error=message, username=username)
        return page, 429, {"Retry-After": str(wait)}
    time.sleep(attempt.delay)  # this username is under attack: everyone's attempts on it are slower
    who = accounts.authenticate(lexy.db, username, password) if username and password else None
    if who is None:
        audit.record_refused(lexy.db, "login.failure", username, client=client)
        return render_template("lexyjobs/login.html", next=target, error="Wrong username or password.", username=username), 401
    attempt.succeeded()
    start_session(who)
    audit.record(lexy.db, who.actor, "login.success", who.name, client=client)
    return redirect(target)


@bp.post("/logout")
def logout() -> BaseResponse:
    """End every session of the user, everywhere (sessions carry the user's epoch)."""
    who = identity()
    lexy = current()
    if who.user_id is not None:
        accounts.end_sessions(lexy.db, who.user_id)
    audit.record(lexy.db, who.actor, "logout", who.name, client=request.remote_addr)
    end_session()
    return redirect(url_for("lexyjobs.login.login"))


def _throttle() -> LoginThrottle:
    return current_app.extensions["lexyjobs_login_throttle"]  # type: ignore[no-any-return]


def init_app(app: Flask, parent: Blueprint) -> None:
    settings = app.extensions["lexyjobs"].settings
    app.extensions["lexyjobs_login_throttle"] = LoginThrottle(settings.login_attempts_per_minute)
    parent.register_blueprint(bp)
    sso.init_app(app, parent)
