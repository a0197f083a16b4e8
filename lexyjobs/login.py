"""Logging in and out of the panel. Attempts are rate-limited per client address and per username;
each success, failure and refusal is written to the audit log."""
from __future__ import annotations

import math

from flask import Blueprint, Flask, current_app, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import accounts, audit
from lexyjobs.guard import identity, public, start_session
from lexyjobs.ratelimit import SlidingWindow
from lexyjobs.runtime import current

bp = Blueprint("login", __name__)


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> BaseResponse | tuple[str, int] | tuple[str, int, dict[str, str]]:
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next=target, error=None), 200
    username = request.form.get("username", "").strip().lower()[:100]
    password = request.form.get("password", "")
    lexy = current()
    wait = _limiter().retry_after(f"ip:{request.remote_addr}", f"user:{username}")
    if wait:
        audit.record(lexy.db, username or "-", "login.rate_limited", username or None, client=request.remote_addr)
        message = f"Too many login attempts. Try again in {math.ceil(wait)} seconds."
        page = render_template("login.html", next=target, error=message, username=username)
        return page, 429, {"Retry-After": str(math.ceil(wait))}
    who = accounts.authenticate(lexy.db, username, password) if username and password else None
    if who is None:
        audit.record(lexy.db, username or "-", "login.failure", username or None, client=request.remote_addr)
        return render_template("login.html", next=target, error="Wrong username or password.", username=username), 401
    start_session(who)
    audit.record(lexy.db, who.actor, "login.success", who.name, client=request.remote_addr)
    return redirect(target)


@bp.post("/logout")
def logout() -> BaseResponse:
    """End every session of the user, everywhere (sessions carry the user's epoch)."""
    who = identity()
    lexy = current()
    if who.user_id is not None:
        accounts.end_sessions(lexy.db, who.user_id)
    audit.record(lexy.db, who.actor, "logout", who.name, client=request.remote_addr)
    session.clear()
    return redirect(url_for("login.login"))


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no ``//host`` or scheme), else the dashboard."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("panel.dashboard")


def _limiter() -> SlidingWindow:
    return current_app.extensions["lexyjobs_login_limiter"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    settings = app.extensions["lexyjobs"].settings
    app.extensions["lexyjobs_login_limiter"] = SlidingWindow(settings.login_attempts_per_minute)
    app.register_blueprint(bp)
