"""The door: every request is authenticated before its view runs, locked by default.

- ``/api/…`` takes ``Authorization: Bearer <token>`` only (a session cookie never authorizes it).
- Panel pages take the login session; state-changing panel requests also need the CSRF token
  (form field ``csrf_token`` or header ``X-CSRF-Token``, which htmx sends from a meta tag).
- Only views marked ``@public`` (login, ``/healthz``) and static files skip the check.
- Every response carries the security headers (CSP without inline script, no framing…)."""
from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any, Callable, TypeVar

from flask import (Flask, Response, current_app, g, jsonify, make_response, redirect, render_template, request, session,
                   url_for)
from flask.sessions import SecureCookieSessionInterface

from lexyjobs import accounts
from lexyjobs.accounts import Identity
from lexyjobs.actions import Actor
from lexyjobs.config import Settings
from lexyjobs.proxies import TrustedProxies
from lexyjobs.runtime import current

F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ENDPOINTS = frozenset({"static", "htmx.static"})
CSRF_HEADER = "X-CSRF-Token"
SESSION_LIFETIME = timedelta(hours=12)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def public(view: F) -> F:
    """Mark a view as reachable without logging in."""
    view._lexyjobs_public = True  # type: ignore[attr-defined]
    return view


def identity() -> Identity:
    """Who is making the current request (set by the guard)."""
    return g.identity  # type: ignore[no-any-return]


def actor() -> Actor:
    return Actor(g.identity, client=request.remote_addr)


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def start_session(who: Identity) -> None:
    """Log ``who`` in: a fresh session (new CSRF token), so nothing from before login survives."""
    session.clear()
    session.permanent = True
    session.update(uid=who.user_id, epoch=who.session_epoch, csrf=secrets.token_urlsafe(32))


class _Cookies(SecureCookieSessionInterface):
    """Session cookies marked Secure per LEXYJOBS_SECURE_COOKIES (``auto``: when served over https)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def get_cookie_secure(self, app: Flask) -> bool:
        return self.mode == "true" or (self.mode == "auto" and request.is_secure)


def init_app(app: Flask, settings: Settings) -> None:
    app.config.update(SESSION_COOKIE_NAME="lexyjobs_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
                      MAX_CONTENT_LENGTH=settings.max_body)
    app.session_interface = _Cookies(settings.secure_cookies)
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies,  # type: ignore[method-assign]
                                  settings.trusted_proxy_addresses)
    app.before_request(_authorize)
    app.after_request(_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token


def _authorize() -> Response | None:
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return None  # no such route: 404/405 as usual
    if request.blueprint == "api":
        return _authorize_api()
    if request.method not in SAFE_METHODS and not _csrf_ok():
        return _refuse(403, "csrf_failed", "the form expired or did not come from this site; reload the page and try again")
    if getattr(view, "_lexyjobs_public", False) or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    who = _session_identity()
    if who is None:
        if request.method in SAFE_METHODS and not request.headers.get("HX-Request"):
            return redirect(url_for("login.login", next=request.full_path.rstrip("?")))  # type: ignore[return-value]
        response = _refuse(401, "login_required", "log in first")
        response.headers["HX-Redirect"] = url_for("login.login")
        return response
    g.identity = who
    return None


def _authorize_api() -> Response | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _refuse(401, "unauthorized", "send an API token as 'Authorization: Bearer <token>'")
    lexy = current()
    who = accounts.token_identity(lexy.db, token.strip(), env_token=lexy.settings.api_token)
    if who is None:
        return _refuse(401, "unauthorized", "the API token is unknown or revoked")
    g.identity = who
    return None


def _session_identity() -> Identity | None:
    uid, epoch = session.get("uid"), session.get("epoch")
    if not isinstance(uid, int) or not isinstance(epoch, int):
        return None
    return accounts.session_identity(current().db, uid, epoch)


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token", "")
    return isinstance(expected, str) and bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


def _refuse(status: int, code: str, message: str) -> Response:
    """JSON for the API and htmx, an error page for a browser form."""
    if request.blueprint == "api" or request.headers.get("HX-Request"):
        response = jsonify(error={"code": code, "message": message, "details": None})
    else:
        response = make_response(render_template("error.html", status=status, message=message))
    response.status_code = status
    if status == 401 and request.blueprint == "api":
        response.headers["WWW-Authenticate"] = 'Bearer realm="lexyjobs"'
    return response


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint not in PUBLIC_ENDPOINTS:
        response.headers.setdefault("Cache-Control", "no-store")
    return response
